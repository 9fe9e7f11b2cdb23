//! Encoding and decoding pages, without storage.

use crate::page::gzip;
use crate::{BlobError, MAX_PAGE_BYTES, decode_page, encode_page};

fn bad_archive_reason(bytes: &[u8]) -> String {
    match decode_page(bytes) {
        Err(BlobError::BadArchive { location, reason }) => {
            assert_eq!(location, "(page bytes)");
            reason
        }
        other => panic!("expected BadArchive, got {other:?}"),
    }
}

#[test]
fn records_round_trip_byte_for_byte() {
    let records = super::RECORDS;
    let bytes = encode_page(records.iter().copied()).expect("encodes");
    assert_eq!(&bytes[..2], b"\x1f\x8b");
    assert_eq!(decode_page(&bytes).expect("decodes"), records);
}

#[test]
fn an_empty_page_is_an_empty_gzip() {
    let bytes = encode_page([]).expect("encodes");
    assert!(!bytes.is_empty());
    assert!(decode_page(&bytes).expect("decodes").is_empty());
}

#[test]
fn line_breaks_and_empty_records_are_refused_by_index() {
    let pretty = "{\n  \"id\": \"1\"\n}";
    for (records, index) in [
        (vec!["{}", pretty], 1),
        (vec!["{\"a\":1}\r"], 0),
        (vec!["{}", "{}", ""], 2),
    ] {
        match encode_page(records) {
            Err(err @ BlobError::BadRecord { .. }) => {
                let BlobError::BadRecord { index: got, .. } = err else {
                    unreachable!()
                };
                assert_eq!(got, index);
            }
            other => panic!("expected BadRecord, got {other:?}"),
        }
    }
}

#[test]
fn a_refused_record_is_not_quoted_in_the_error() {
    let secret = "{\"name\":\"Jane Patient\",\n\"ssn\":\"123-45-6789\"}";
    let err = encode_page([secret]).expect_err("refused");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("Jane"), "{text}");
    assert!(!text.contains("6789"), "{text}");
}

#[test]
fn garbage_is_named() {
    assert!(bad_archive_reason(b"").contains("empty"));
    assert!(bad_archive_reason(b"\x1f").contains("not gzip"));
    assert!(bad_archive_reason(b"PK\x03\x04 a zip file").contains("not gzip"));
    assert!(bad_archive_reason(b"\x1f\x8b\x08\x00\x00").contains("gzip"));
    let good = encode_page(["{\"id\":\"1\"}", "{\"id\":\"2\"}"]).expect("encodes");
    for cut in 2..good.len() {
        let reason = bad_archive_reason(&good[..cut]);
        assert!(!reason.is_empty());
    }
    assert!(bad_archive_reason(&good[..good.len() - 1]).contains("truncated"));
}

#[test]
fn every_garbage_byte_string_is_an_error_not_a_panic() {
    // A cheap deterministic fuzz: random bytes, and a valid page with bytes
    // flipped, never panic (a flipped page may still decode when the flip
    // lands in the header's unchecked fields).
    let good = encode_page(super::RECORDS.iter().copied()).expect("encodes");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..2_000 {
        let mut bytes = if round % 2 == 0 {
            let len = (next() % 64) as usize;
            let mut v: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 4 == 0 && v.len() >= 2 {
                v[0] = 0x1f;
                v[1] = 0x8b;
            }
            v
        } else {
            good.clone()
        };
        if round % 2 == 1 {
            let at = (next() as usize) % bytes.len();
            bytes[at] ^= (next() as u8) | 1;
        }
        let _ = decode_page(&bytes);
    }
}

#[test]
fn text_that_is_not_json_lines_is_named() {
    assert!(bad_archive_reason(&gzip(b"{\"a\":\"\xff\"}\n").expect("gz")).contains("UTF-8"));
    assert!(bad_archive_reason(&gzip(b"{}\n{}").expect("gz")).contains("newline"));
    assert!(bad_archive_reason(&gzip(b"{}\n\n{}\n").expect("gz")).contains("line 2 is blank"));
    assert!(bad_archive_reason(&gzip(b"\n").expect("gz")).contains("line 1 is blank"));
}

#[test]
fn a_decompression_bomb_is_refused() {
    // MAX_PAGE_BYTES + 1 zeros compress to a few hundred kilobytes.
    let size = usize::try_from(MAX_PAGE_BYTES + 1).expect("fits");
    let mut text = vec![b'0'; size];
    text[size - 1] = b'\n';
    let bytes = gzip(&text).expect("gz");
    drop(text);
    assert!(bad_archive_reason(&bytes).contains("more than"));
}

#[test]
fn concatenated_pages_are_read_whole() {
    // Several gzip members are one stream (as `cat a.gz b.gz` makes).
    let mut bytes = encode_page(["{\"a\":1}"]).expect("encodes");
    bytes.extend(encode_page(["{\"b\":2}"]).expect("encodes"));
    assert_eq!(
        decode_page(&bytes).expect("decodes"),
        ["{\"a\":1}", "{\"b\":2}"]
    );
}
