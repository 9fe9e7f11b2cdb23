//! Reading archived records back: the archive keeps each record's raw JSON
//! text, one per line; replay needs each record's id and `lastModified` to
//! land it. The same tolerant reader as the live pull reads them, so a
//! replayed row equals the row the pull landed.

use ascend_client::{ClientError, Cursor, Page, Record, Resource};

/// Parses archived record texts of `resource` into records.
pub fn records_from_archive(
    resource: Resource,
    lines: &[String],
) -> Result<Vec<Record>, ClientError> {
    let mut envelope = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 16);
    envelope.extend_from_slice(b"{\"data\":[");
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            envelope.push(b',');
        }
        envelope.extend_from_slice(line.as_bytes());
    }
    envelope.extend_from_slice(b"]}");
    Ok(Page::parse(resource, Cursor::Start, &envelope)?.records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archived_lines_read_back_with_ids_and_timestamps() {
        let lines = vec![
            r#"{"id":"1000","lastModified":"2026-11-20T00:00:00.000Z","x":[1,2]}"#.to_string(),
            r#"{"id":"999","lastModified":null}"#.to_string(),
        ];
        let records = records_from_archive(Resource::Patients, &lines).unwrap_or_default();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].id.0, 1000);
        assert!(records[0].last_modified.is_some());
        assert_eq!(records[0].raw.get(), lines[0]);
        assert!(records[1].last_modified.is_none());
    }

    #[test]
    fn a_damaged_line_is_a_bad_payload_not_a_panic() {
        let lines = vec![r#"{"id":"1","#.to_string()];
        assert!(matches!(
            records_from_archive(Resource::Patients, &lines),
            Err(ClientError::BadPayload { .. })
        ));
    }
}
