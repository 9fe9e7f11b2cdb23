//! The archive's suite. Each adapter test is written once, as an async fn
//! taking a [`Fixture`], and run on both adapters: the local folder in a
//! fresh temporary folder, and S3 against moto in a fresh bucket of its own
//! (so tests run in parallel), under a key prefix.
//!
//! The S3 half needs `ASCEND_SYNC_TEST_AWS_ENDPOINT` (moto's URL; `cargo
//! xtask test` sets it and the AWS test credentials) and fails without it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use time::Date;
use time::macros::date;

use crate::{Archive, BlobError, PageKey, S3Config, encode_page};

mod codec;
mod keys;

const ENDPOINT_VAR: &str = "ASCEND_SYNC_TEST_AWS_ENDPOINT";
const PREFIX: &str = "archive/v1";
const KMS_KEY: &str = "alias/ascend-sync-test";

macro_rules! on_both_adapters {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $name() {
                    let fixture = super::Fixture::local();
                    super::$name(&fixture).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $name() {
                    let fixture = super::Fixture::s3().await;
                    super::$name(&fixture).await;
                }
            )*
        }
    };
}

on_both_adapters!(
    round_trip_keeps_records_exactly,
    empty_page_round_trips,
    writing_a_page_again_replaces_it,
    list_is_in_replay_order,
    list_paginates_past_a_thousand_pages,
    practices_are_isolated,
    hostile_keys_are_refused_and_store_nothing,
    bad_records_are_refused_and_store_nothing,
    damaged_pages_are_bad_archive,
    missing_page_is_not_found,
    stored_pages_are_protected,
    stray_objects_are_skipped_by_list,
);

/// A fresh archive of one kind, and raw access to what it stores.
struct Fixture {
    archive: Archive,
    _dir: Option<TempDir>,
}

impl Fixture {
    fn local() -> Fixture {
        let dir = TempDir::new();
        let archive = Archive::local(dir.path.join("archive")).expect("the local archive opens");
        Fixture {
            archive,
            _dir: Some(dir),
        }
    }

    async fn s3() -> Fixture {
        let Ok(endpoint) = std::env::var(ENDPOINT_VAR) else {
            panic!(
                "{ENDPOINT_VAR} is not set, so the S3 tests cannot run: use `cargo xtask test`, \
                 or start moto (`.venv/bin/moto_server -H 127.0.0.1 -p 5999`) and export \
                 {ENDPOINT_VAR}=http://127.0.0.1:5999 AWS_ACCESS_KEY_ID=testing \
                 AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1"
            )
        };
        let bucket = unique_name("ascend-blob");
        let archive = Archive::s3(S3Config {
            bucket: bucket.clone(),
            prefix: Some(format!("/{PREFIX}/")),
            kms_key_id: Some(KMS_KEY.to_owned()),
            endpoint_url: Some(endpoint),
            force_path_style: true,
            region: Some("us-east-1".to_owned()),
        })
        .await
        .expect("the S3 archive is configured");
        let Archive::S3(s3) = &archive else {
            unreachable!("Archive::s3 builds an S3 archive")
        };
        s3.client
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "creating bucket {bucket} at {ENDPOINT_VAR} failed (is moto running?): {}",
                    aws_sdk_s3::error::DisplayErrorContext(&err)
                )
            });
        Fixture {
            archive,
            _dir: None,
        }
    }

    /// Stores `bytes` where the page `key` lives, bypassing the archive.
    async fn put_raw(&self, key: &PageKey, bytes: Vec<u8>) {
        match &self.archive {
            Archive::Local(local) => {
                let path = local.path_of(key);
                let folder = path.parent().expect("a page's file has a folder");
                std::fs::create_dir_all(folder).expect("page folder created");
                std::fs::write(&path, bytes).expect("raw page written");
            }
            Archive::S3(s3) => {
                s3.client
                    .put_object()
                    .bucket(s3.bucket())
                    .key(s3.full_key(key))
                    .body(ByteStream::from(bytes))
                    .send()
                    .await
                    .expect("raw object written");
            }
        }
    }

    /// Stores `bytes` under a storage key relative to the archive's root
    /// (its folder, or its bucket and prefix), bypassing the archive.
    async fn put_stray(&self, relative: &str, bytes: Vec<u8>) {
        match &self.archive {
            Archive::Local(local) => {
                let path = local.root().join(relative);
                let folder = path.parent().expect("a file has a folder");
                std::fs::create_dir_all(folder).expect("folder created");
                std::fs::write(&path, bytes).expect("stray file written");
            }
            Archive::S3(s3) => {
                s3.client
                    .put_object()
                    .bucket(s3.bucket())
                    .key(format!("{}{relative}", s3.prefix()))
                    .body(ByteStream::from(bytes))
                    .send()
                    .await
                    .expect("stray object written");
            }
        }
    }

    /// Everything stored: file paths relative to the local archive's folder,
    /// or every key in the bucket (prefix included), sorted.
    async fn stored(&self) -> Vec<String> {
        let mut found = match &self.archive {
            Archive::Local(local) => {
                let mut files = Vec::new();
                walk(local.root(), local.root(), &mut files);
                files
            }
            Archive::S3(s3) => {
                let mut keys = Vec::new();
                let mut pages = s3
                    .client
                    .list_objects_v2()
                    .bucket(s3.bucket())
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.expect("bucket listed");
                    keys.extend(
                        page.contents()
                            .iter()
                            .filter_map(|o| o.key().map(str::to_owned)),
                    );
                }
                keys
            }
        };
        found.sort();
        found
    }

    /// Where the archive stores `key`, as [`Fixture::stored`] names it.
    fn stored_name(&self, key: &PageKey) -> String {
        match &self.archive {
            Archive::Local(_) => key.object_key(),
            Archive::S3(_) => format!("{PREFIX}/{}", key.object_key()),
        }
    }
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("folder lists") {
        let path = entry.expect("entry reads").path();
        if path.is_dir() {
            walk(root, &path, files);
        } else {
            let relative = path.strip_prefix(root).expect("under the root");
            files.push(relative.to_string_lossy().into_owned());
        }
    }
}

/// A temporary folder, removed when dropped.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(unique_name("ascend-blob-test"));
        std::fs::create_dir_all(&path).expect("temporary folder created");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A name unique across the test processes and tests running at once
/// (lowercase, short enough for a bucket).
fn unique_name(stem: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{stem}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn key(practice: &str, resource: &str, date: Date, run: &str, seq: u64) -> PageKey {
    PageKey {
        practice_id: practice.to_owned(),
        resource: resource.to_owned(),
        date,
        run_id: run.to_owned(),
        seq,
    }
}

fn a_key() -> PageKey {
    key(
        "practice-1",
        "patient_procedures",
        date!(2024 - 03 - 05),
        "01HV8ZK3",
        7,
    )
}

/// Records as the API sends them: unicode, escapes, an escaped line break,
/// a NUL escape, surrounding spaces, big numbers.
const RECORDS: &[&str] = &[
    r#"{"id":"7000000000114","lastModified":"2024-03-05T10:00:00.000Z","name":"Zoë Ångström 😀 — 東京"}"#,
    r#"{"id":"2","note":"line one\nline two\r\n\ttab \"quoted\" back\\slash \u00e9 \ud83d\ude00 \u0000"}"#,
    r#"  {"id" : "3", "amount": 12345678901234567890.125, "nested": {"a": [1, 2, {"b": null}]}}  "#,
    "[]",
];

async fn round_trip_keeps_records_exactly(fixture: &Fixture) {
    let key = a_key();
    let written = fixture
        .archive
        .put_page(&key, RECORDS)
        .await
        .expect("page written");
    assert!(written > 0);

    let read = fixture.archive.get_page(&key).await.expect("page read");
    assert_eq!(read, RECORDS);
    assert_eq!(fixture.stored().await, vec![fixture.stored_name(&key)]);
    assert_eq!(
        fixture
            .archive
            .list_pages("practice-1")
            .await
            .expect("listed"),
        vec![key]
    );
}

async fn empty_page_round_trips(fixture: &Fixture) {
    let key = a_key();
    fixture
        .archive
        .put_page(&key, &[])
        .await
        .expect("empty page written");
    assert!(
        fixture
            .archive
            .get_page(&key)
            .await
            .expect("page read")
            .is_empty()
    );
}

async fn writing_a_page_again_replaces_it(fixture: &Fixture) {
    let key = a_key();
    fixture
        .archive
        .put_page(&key, &[r#"{"id":"1"}"#])
        .await
        .expect("first write");
    fixture
        .archive
        .put_page(&key, &[r#"{"id":"1","v":2}"#, r#"{"id":"2"}"#])
        .await
        .expect("second write");

    let read = fixture.archive.get_page(&key).await.expect("page read");
    assert_eq!(read, [r#"{"id":"1","v":2}"#, r#"{"id":"2"}"#]);
    // One object, no leftover temporary file.
    assert_eq!(fixture.stored().await, vec![fixture.stored_name(&key)]);
}

async fn list_is_in_replay_order(fixture: &Fixture) {
    let p = "practice-1";
    let expected = vec![
        key(p, "patients", date!(2023 - 12 - 31), "run-b", 0),
        key(p, "appointments", date!(2024 - 01 - 01), "run-a", 0),
        key(p, "appointments", date!(2024 - 01 - 01), "run-a", 1),
        key(p, "appointments", date!(2024 - 01 - 01), "run-a", 2),
        key(p, "appointments", date!(2024 - 01 - 01), "run-a", 10),
        key(p, "patients", date!(2024 - 01 - 01), "run-a", 0),
        key(p, "appointments", date!(2024 - 01 - 01), "run-c", 0),
        key(
            p,
            "appointments",
            date!(2024 - 01 - 02),
            "run-a",
            9_999_999_999,
        ),
        key(
            p,
            "appointments",
            date!(2024 - 01 - 02),
            "run-a",
            12_345_678_901,
        ),
        key(p, "appointments", date!(2024 - 01 - 02), "run-a", u64::MAX),
    ];
    // Written out of order: the list must not depend on write order.
    for index in [5, 9, 0, 3, 7, 1, 8, 2, 6, 4] {
        let record = format!(r#"{{"page":{index}}}"#);
        fixture
            .archive
            .put_page(&expected[index], &[record.as_str()])
            .await
            .expect("page written");
    }

    let listed = fixture.archive.list_pages(p).await.expect("listed");
    assert_eq!(listed, expected);
    for (index, key) in listed.iter().enumerate() {
        let read = fixture.archive.get_page(key).await.expect("page read");
        assert_eq!(read, [format!(r#"{{"page":{index}}}"#)]);
    }
}

async fn list_paginates_past_a_thousand_pages(fixture: &Fixture) {
    const PAGES: u64 = 1_005;
    let mut writers = tokio::task::JoinSet::new();
    let per_writer = PAGES.div_ceil(16);
    for first in (0..PAGES).step_by(usize::try_from(per_writer).expect("small")) {
        let archive = fixture.archive.clone();
        writers.spawn(async move {
            for seq in first..(first + per_writer).min(PAGES) {
                let key = key("big", "patients", date!(2024 - 02 - 29), "run", seq);
                archive.put_page(&key, &[]).await.expect("page written");
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer finished");
    }

    let listed = fixture.archive.list_pages("big").await.expect("listed");
    let seqs: Vec<u64> = listed.iter().map(|k| k.seq).collect();
    assert_eq!(seqs, (0..PAGES).collect::<Vec<_>>());
}

async fn practices_are_isolated(fixture: &Fixture) {
    let day = date!(2024 - 05 - 01);
    let mine = vec![
        key("p1", "patients", day, "r1", 0),
        key("p1", "patients", day, "r1", 1),
    ];
    let others = [
        key("p10", "patients", day, "r1", 0),
        key("p1-x", "patients", day, "r1", 0),
        key("p1.0", "patients", day, "r1", 0),
        key("P1", "patients", day, "r1", 0),
    ];
    for key in mine.iter().chain(&others) {
        let record = format!(r#"{{"practice":"{}"}}"#, key.practice_id);
        fixture
            .archive
            .put_page(key, &[record.as_str()])
            .await
            .expect("page written");
    }

    assert_eq!(
        fixture.archive.list_pages("p1").await.expect("listed"),
        mine
    );
    assert_eq!(
        fixture.archive.list_pages("p10").await.expect("listed"),
        [others[0].clone()]
    );
    assert!(
        fixture
            .archive
            .list_pages("p")
            .await
            .expect("listed")
            .is_empty()
    );
    assert!(
        fixture
            .archive
            .list_pages("p2")
            .await
            .expect("listed")
            .is_empty()
    );
    for key in &mine {
        assert_eq!(
            fixture.archive.get_page(key).await.expect("read"),
            [r#"{"practice":"p1"}"#]
        );
    }
}

async fn hostile_keys_are_refused_and_store_nothing(fixture: &Fixture) {
    let good = a_key();
    let mut hostile = Vec::new();
    for bad in [
        "../x",
        "..",
        ".",
        "a/b",
        "",
        "/abs",
        "a\\b",
        "x/../../y",
        "p\0",
        "sp ace",
        "é",
    ] {
        hostile.push(PageKey {
            practice_id: bad.to_owned(),
            ..good.clone()
        });
        hostile.push(PageKey {
            resource: bad.to_owned(),
            ..good.clone()
        });
        hostile.push(PageKey {
            run_id: bad.to_owned(),
            ..good.clone()
        });
    }
    hostile.push(PageKey {
        run_id: "a.b".to_owned(),
        ..good.clone()
    });
    hostile.push(PageKey {
        practice_id: "x".repeat(129),
        ..good.clone()
    });
    hostile.push(PageKey {
        date: Date::from_calendar_date(-1, time::Month::January, 1).expect("a date"),
        ..good.clone()
    });

    for key in &hostile {
        let put = fixture.archive.put_page(key, &["{}"]).await;
        assert!(
            matches!(put, Err(BlobError::InvalidKey { .. })),
            "{key:?}: {put:?}"
        );
        let get = fixture.archive.get_page(key).await;
        assert!(
            matches!(get, Err(BlobError::InvalidKey { .. })),
            "{key:?}: {get:?}"
        );
    }
    for practice in ["../x", "..", ".", "a/b", "", "/", "p1/../p2", "p1/"] {
        let listed = fixture.archive.list_pages(practice).await;
        assert!(
            matches!(listed, Err(BlobError::InvalidKey { .. })),
            "{practice:?}: {listed:?}"
        );
    }
    assert!(
        fixture.stored().await.is_empty(),
        "a hostile key stored something"
    );
}

async fn bad_records_are_refused_and_store_nothing(fixture: &Fixture) {
    let key = a_key();
    for records in [
        &["{}", "{\n  \"id\": \"1\"\n}"][..],
        &["{\"id\":\"1\"}\r"][..],
        &["{}", ""][..],
    ] {
        let put = fixture.archive.put_page(&key, records).await;
        assert!(matches!(put, Err(BlobError::BadRecord { .. })), "{put:?}");
    }
    assert!(fixture.stored().await.is_empty());
}

async fn damaged_pages_are_bad_archive(fixture: &Fixture) {
    let key = a_key();
    let good = encode_page(RECORDS.iter().copied()).expect("encodes");
    let mut trailing_garbage = good.clone();
    trailing_garbage.extend_from_slice(b"garbage after the stream");
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"this is not gzip at all".to_vec()),
        ("empty", Vec::new()),
        (
            "gzip magic then garbage",
            b"\x1f\x8b\x08\x00garbage".to_vec(),
        ),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("truncated trailer", good[..good.len() - 3].to_vec()),
        ("trailing garbage", trailing_garbage),
        ("flipped byte", flipped),
        ("not UTF-8", gzip_of(b"{\"a\":\"\xff\"}\n")),
        ("unterminated last line", gzip_of(b"{}\n{\"a\":1}")),
        ("blank line", gzip_of(b"{}\n\n{}\n")),
    ];
    for (what, bytes) in damaged {
        fixture.put_raw(&key, bytes).await;
        match fixture.archive.get_page(&key).await {
            Err(BlobError::BadArchive { location, reason }) => {
                assert!(
                    location.contains(&key.object_key()),
                    "{what}: location {location}"
                );
                assert!(!reason.is_empty());
            }
            other => panic!("{what}: expected BadArchive, got {other:?}"),
        }
    }
}

async fn missing_page_is_not_found(fixture: &Fixture) {
    let key = a_key();
    match fixture.archive.get_page(&key).await {
        Err(BlobError::NotFound { location }) => {
            assert!(location.contains(&key.object_key()), "{location}");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(
        fixture
            .archive
            .list_pages("nobody")
            .await
            .expect("listed")
            .is_empty()
    );
}

async fn stored_pages_are_protected(fixture: &Fixture) {
    let key = a_key();
    fixture
        .archive
        .put_page(&key, RECORDS)
        .await
        .expect("page written");
    match &fixture.archive {
        Archive::S3(s3) => {
            let head = s3
                .client
                .head_object()
                .bucket(s3.bucket())
                .key(s3.full_key(&key))
                .send()
                .await
                .expect("object heads");
            assert_eq!(
                head.server_side_encryption(),
                Some(&ServerSideEncryption::AwsKms)
            );
            assert!(
                head.ssekms_key_id().is_some_and(|id| id.contains(KMS_KEY)),
                "key id {:?}",
                head.ssekms_key_id()
            );
        }
        Archive::Local(local) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = |path: &Path| {
                std::fs::metadata(path)
                    .expect("metadata")
                    .permissions()
                    .mode()
                    & 0o777
            };
            let file = local.path_of(&key);
            assert_eq!(mode(&file), 0o600, "{}", file.display());
            let mut folder = file.parent();
            while let Some(dir) = folder {
                assert_eq!(mode(dir), 0o700, "{}", dir.display());
                if dir == local.root() {
                    break;
                }
                folder = dir.parent();
            }
        }
    }
}

async fn stray_objects_are_skipped_by_list(fixture: &Fixture) {
    let key = a_key();
    fixture
        .archive
        .put_page(&key, &["{}"])
        .await
        .expect("page written");
    let folder = format!(
        "raw/{}/{}/{}/{}",
        key.practice_id,
        key.resource,
        key.date_text(),
        key.run_id
    );
    fixture
        .put_stray(&format!("{folder}/notes.txt"), b"hello".to_vec())
        .await;
    fixture
        .put_stray(&format!("{folder}/7.jsonl.gz"), b"x".to_vec())
        .await;
    fixture
        .put_stray(
            &format!("{folder}/.0000000007.jsonl.gz.1-1.tmp"),
            b"x".to_vec(),
        )
        .await;
    fixture
        .put_stray(&format!("raw/{}/README", key.practice_id), b"x".to_vec())
        .await;

    assert_eq!(
        fixture
            .archive
            .list_pages(&key.practice_id)
            .await
            .expect("listed"),
        vec![key]
    );
}

fn gzip_of(text: &[u8]) -> Vec<u8> {
    crate::page::gzip(text).expect("gzips")
}

mod s3_only {
    use super::*;

    fn config(bucket: &str) -> S3Config {
        S3Config {
            bucket: bucket.to_owned(),
            prefix: None,
            kms_key_id: None,
            endpoint_url: Some(endpoint()),
            force_path_style: true,
            region: Some("us-east-1".to_owned()),
        }
    }

    #[tokio::test]
    async fn a_missing_bucket_is_named() {
        let bucket = unique_name("no-such-bucket");
        let archive = Archive::s3(config(&bucket)).await.expect("configured");
        let put = archive.put_page(&a_key(), &["{}"]).await;
        match put {
            Err(err @ BlobError::BucketMissing { .. }) => {
                let text = err.to_string();
                assert!(text.contains(&bucket), "{text}");
                assert!(text.contains("ASCEND_SYNC_ARCHIVE_BUCKET"), "{text}");
                assert!(!err.is_retryable());
            }
            other => panic!("expected BucketMissing, got {other:?}"),
        }
        let listed = archive.list_pages("p1").await;
        assert!(
            matches!(listed, Err(BlobError::BucketMissing { .. })),
            "{listed:?}"
        );
    }

    #[tokio::test]
    async fn default_key_is_still_aws_kms() {
        let fixture = Fixture::s3().await;
        let Archive::S3(with_key) = &fixture.archive else {
            unreachable!()
        };
        let archive = Archive::s3(config(with_key.bucket()))
            .await
            .expect("configured");
        let key = a_key();
        archive.put_page(&key, &["{}"]).await.expect("written");
        let Archive::S3(s3) = &archive else {
            unreachable!()
        };
        let head = s3
            .client
            .head_object()
            .bucket(s3.bucket())
            .key(s3.full_key(&key))
            .send()
            .await
            .expect("object heads");
        assert_eq!(
            head.server_side_encryption(),
            Some(&ServerSideEncryption::AwsKms)
        );
        assert_eq!(archive.get_page(&key).await.expect("read"), ["{}"]);
    }

    fn endpoint() -> String {
        std::env::var(ENDPOINT_VAR)
            .unwrap_or_else(|_| panic!("{ENDPOINT_VAR} is not set: see the S3 fixture's message"))
    }

    #[tokio::test]
    async fn bad_configuration_is_refused() {
        let config = |bucket: &str| S3Config {
            bucket: bucket.to_owned(),
            endpoint_url: Some("http://127.0.0.1:9".to_owned()),
            region: Some("us-east-1".to_owned()),
            ..S3Config::default()
        };
        for bad in [
            S3Config {
                bucket: String::new(),
                ..config("b")
            },
            S3Config {
                bucket: "b/c".to_owned(),
                ..config("b")
            },
            S3Config {
                prefix: Some("a/../b".to_owned()),
                ..config("b")
            },
            S3Config {
                kms_key_id: Some(" ".to_owned()),
                ..config("b")
            },
            S3Config {
                endpoint_url: Some("not a url".to_owned()),
                ..config("b")
            },
        ] {
            let result = Archive::s3(bad.clone()).await;
            assert!(
                matches!(result, Err(BlobError::Config { .. })),
                "{bad:?}: {result:?}"
            );
        }
    }
}
