//! A page's bytes: gzipped JSON Lines.
//!
//! Each record is written exactly as received, followed by `\n`; the whole
//! is one gzip member. A record holding a raw line break (`\n` or `\r`) is
//! **refused**, not re-serialized: re-serializing would change the text that
//! was received, and compact JSON (what the API and serde produce) never
//! holds one, since a line break inside a JSON string is always escaped. An
//! empty record is refused too (it would read back as a blank line).

use std::io::{self, Read, Write};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use crate::error::BlobError;

/// The largest page accepted, compressed or not (a page of the Ascend API
/// is a few megabytes at most; this stops a decompression bomb).
pub const MAX_PAGE_BYTES: u64 = 256 * 1024 * 1024;

/// The location named by [`decode_page`]'s errors; adapters replace it.
const UNPLACED: &str = "(page bytes)";

/// Encodes records as gzipped JSON Lines.
///
/// Refuses (with [`BlobError::BadRecord`], naming the record's index, never
/// its content) a record that is empty or holds a raw line break; see the
/// module documentation. The records are not otherwise parsed: the archive
/// keeps what was received.
pub fn encode_page<'a>(records: impl IntoIterator<Item = &'a str>) -> Result<Vec<u8>, BlobError> {
    gzip(&json_lines(records)?)
}

/// Decodes a page written by [`encode_page`] into its records.
///
/// Anything else (not gzip, a truncated or corrupt stream, text that is not
/// UTF-8, a last line without its newline, a blank line, more than
/// [`MAX_PAGE_BYTES`] once decompressed) is a [`BlobError::BadArchive`]
/// naming what is wrong. Never panics.
pub fn decode_page(bytes: &[u8]) -> Result<Vec<String>, BlobError> {
    let bad = |reason: String| BlobError::BadArchive {
        location: UNPLACED.to_owned(),
        reason,
    };
    match bytes {
        [] => return Err(bad("the object is empty, not gzip".to_owned())),
        [0x1f, 0x8b, ..] => {}
        [0x1f] => return Err(bad("the object is 1 byte long, not gzip".to_owned())),
        _ => {
            return Err(bad(
                "the object is not gzip (no gzip magic bytes)".to_owned()
            ));
        }
    }
    let mut text = Vec::new();
    MultiGzDecoder::new(bytes)
        .take(MAX_PAGE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|err| {
            bad(match err.kind() {
                io::ErrorKind::UnexpectedEof => {
                    "the gzip stream is truncated (the object was cut short)".to_owned()
                }
                _ => format!("the gzip stream is corrupt ({err})"),
            })
        })?;
    if text.len() as u64 > MAX_PAGE_BYTES {
        return Err(bad(format!(
            "it decompresses to more than {MAX_PAGE_BYTES} bytes"
        )));
    }
    let text = String::from_utf8(text).map_err(|err| {
        bad(format!(
            "the text is not UTF-8 (at byte {})",
            err.utf8_error().valid_up_to()
        ))
    })?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = text.strip_suffix('\n') else {
        return Err(bad(
            "the last record does not end with a newline (the page was cut short before it was \
             compressed)"
                .to_owned(),
        ));
    };
    let mut records = Vec::new();
    for (index, line) in body.split('\n').enumerate() {
        if line.is_empty() {
            return Err(bad(format!("line {} is blank", index + 1)));
        }
        records.push(line.to_owned());
    }
    Ok(records)
}

/// The records as uncompressed JSON Lines, checked.
pub(crate) fn json_lines<'a>(
    records: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<u8>, BlobError> {
    let mut text = Vec::new();
    for (index, record) in records.into_iter().enumerate() {
        if record.is_empty() {
            return Err(BlobError::BadRecord {
                index,
                reason: "it is empty",
            });
        }
        if record.bytes().any(|b| b == b'\n' || b == b'\r') {
            return Err(BlobError::BadRecord {
                index,
                reason: "it holds a raw line break (pretty-printed JSON?)",
            });
        }
        text.reserve(record.len() + 1);
        text.extend_from_slice(record.as_bytes());
        text.push(b'\n');
    }
    Ok(text)
}

/// Gzips checked JSON Lines.
///
/// Level 1 (fastest). Measured on a page of 1,000 procedure-shaped records
/// (release build, this machine): level 1 shrinks it 8x at about 270 MB/s,
/// the default level 6 shrinks it 12.5x at about 50 MB/s. At the landing
/// rate the sync engine aims for (tens of MB/s of JSON), level 6 would take
/// a core or more; level 1 a tenth of one, for objects half as large again.
pub(crate) fn gzip(text: &[u8]) -> Result<Vec<u8>, BlobError> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(text.len() / 4), Compression::fast());
    encoder
        .write_all(text)
        .and_then(|()| encoder.finish())
        .map_err(|source| BlobError::Compress { source })
}
