//! Page keys, without storage.

use time::macros::date;

use crate::{BlobError, PageKey};

fn sample() -> PageKey {
    PageKey {
        practice_id: "org-1.loc_7".to_owned(),
        resource: "patient_procedures".to_owned(),
        date: date!(2024 - 03 - 05),
        run_id: "01HV8ZK3QF_x-1".to_owned(),
        seq: 42,
    }
}

#[test]
fn object_key_is_the_documented_form() {
    assert_eq!(
        sample().object_key(),
        "raw/org-1.loc_7/patient_procedures/2024-03-05/01HV8ZK3QF_x-1/0000000042.jsonl.gz"
    );
    let early = PageKey {
        date: date!(0001 - 01 - 09),
        seq: u64::MAX,
        ..sample()
    };
    assert!(
        early
            .object_key()
            .ends_with("/0001-01-09/01HV8ZK3QF_x-1/18446744073709551615.jsonl.gz")
    );
}

#[test]
fn parse_reads_back_object_key() {
    for key in [
        sample(),
        PageKey { seq: 0, ..sample() },
        PageKey {
            seq: 9_999_999_999,
            ..sample()
        },
        PageKey {
            seq: 10_000_000_000,
            ..sample()
        },
        PageKey {
            seq: u64::MAX,
            ..sample()
        },
        PageKey {
            date: date!(2024 - 02 - 29),
            ..sample()
        },
        PageKey {
            date: date!(0000 - 01 - 01),
            ..sample()
        },
        PageKey {
            practice_id: "a".to_owned(),
            resource: "b".to_owned(),
            run_id: "c".to_owned(),
            ..sample()
        },
    ] {
        key.validate().expect("valid");
        assert_eq!(PageKey::parse(&key.object_key()).expect("parses"), key);
    }
}

#[test]
fn parse_refuses_anything_else() {
    for text in [
        "",
        "raw",
        "raw/p/r/2024-03-05/run/0000000001.jsonl.gz/",
        "/raw/p/r/2024-03-05/run/0000000001.jsonl.gz",
        "cooked/p/r/2024-03-05/run/0000000001.jsonl.gz",
        "raw/../r/2024-03-05/run/0000000001.jsonl.gz",
        "raw/p/../2024-03-05/run/0000000001.jsonl.gz",
        "raw/./r/2024-03-05/run/0000000001.jsonl.gz",
        "raw/p/r/s/2024-03-05/run/0000000001.jsonl.gz",
        "raw//r/2024-03-05/run/0000000001.jsonl.gz",
        "raw/p/r/2024-3-5/run/0000000001.jsonl.gz",
        "raw/p/r/2024-02-30/run/0000000001.jsonl.gz",
        "raw/p/r/2024-13-01/run/0000000001.jsonl.gz",
        "raw/p/r/+024-03-05/run/0000000001.jsonl.gz",
        "raw/p/r/2024-03-05/ru.n/0000000001.jsonl.gz",
        "raw/p/r/2024-03-05/run/1.jsonl.gz",
        "raw/p/r/2024-03-05/run/00000000001.jsonl.gz",
        "raw/p/r/2024-03-05/run/+000000001.jsonl.gz",
        "raw/p/r/2024-03-05/run/99999999999999999999.jsonl.gz",
        "raw/p/r/2024-03-05/run/0000000001.json.gz",
        "raw/p/r/2024-03-05/run/0000000001.jsonl.gz.tmp",
        "raw/p/r/2024-03-05/run/.0000000001.jsonl.gz.1-2.tmp",
        "raw/p\u{e9}/r/2024-03-05/run/0000000001.jsonl.gz",
    ] {
        match PageKey::parse(text) {
            Err(BlobError::NotAPageKey { .. }) => {}
            other => panic!("{text:?}: expected NotAPageKey, got {other:?}"),
        }
    }
}

#[test]
fn hostile_components_are_refused() {
    for bad in [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "a\\b",
        "x..y",
        "a b",
        "a\0",
        "é",
        "\u{202e}x",
    ] {
        for key in [
            PageKey {
                practice_id: bad.to_owned(),
                ..sample()
            },
            PageKey {
                resource: bad.to_owned(),
                ..sample()
            },
            PageKey {
                run_id: bad.to_owned(),
                ..sample()
            },
        ] {
            assert!(
                matches!(key.validate(), Err(BlobError::InvalidKey { .. })),
                "{key:?}"
            );
        }
    }
    let long = PageKey {
        resource: "r".repeat(129),
        ..sample()
    };
    assert!(long.validate().is_err());
    assert!(
        PageKey {
            resource: "r".repeat(128),
            ..sample()
        }
        .validate()
        .is_ok()
    );
    assert!(
        PageKey {
            run_id: "a.b".to_owned(),
            ..sample()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn hostile_values_are_escaped_and_cut_in_errors() {
    let key = PageKey {
        practice_id: format!("../{}\n\u{1b}[31m", "x".repeat(500)),
        ..sample()
    };
    let text = key.validate().expect_err("refused").to_string();
    assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text}");
    assert!(text.len() < 1_000, "{text}");
}

#[test]
fn order_is_replay_order() {
    let base = sample();
    let mut keys = [
        PageKey {
            seq: 2,
            ..base.clone()
        },
        PageKey {
            resource: "appointments".to_owned(),
            seq: 9,
            ..base.clone()
        },
        PageKey {
            run_id: "01HV8ZK3QA".to_owned(),
            ..base.clone()
        },
        PageKey {
            date: date!(2024 - 03 - 04),
            run_id: "zzz".to_owned(),
            ..base.clone()
        },
        PageKey {
            seq: 10,
            ..base.clone()
        },
    ];
    keys.sort();
    let summary: Vec<(String, &str, &str, u64)> = keys
        .iter()
        .map(|k| {
            (
                k.date.to_string(),
                k.run_id.as_str(),
                k.resource.as_str(),
                k.seq,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("2024-03-04".to_owned(), "zzz", "patient_procedures", 42),
            (
                "2024-03-05".to_owned(),
                "01HV8ZK3QA",
                "patient_procedures",
                42
            ),
            ("2024-03-05".to_owned(), "01HV8ZK3QF_x-1", "appointments", 9),
            (
                "2024-03-05".to_owned(),
                "01HV8ZK3QF_x-1",
                "patient_procedures",
                2
            ),
            (
                "2024-03-05".to_owned(),
                "01HV8ZK3QF_x-1",
                "patient_procedures",
                10
            ),
        ]
    );
}
