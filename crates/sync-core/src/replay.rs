//! Reading records back: the archive keeps each record's raw JSON text, one
//! per line, and the quarantine each record it set aside; replay and the
//! quarantine's retry need each record's id and `lastModified` to land it.
//! The same tolerant reader as the live pull reads them, so a replayed row
//! equals the row the pull landed, and a record the pull could not read is
//! rejected again on its own (not the page).

use ascend_client::{ClientError, Cursor, Page, Record, Resource};

/// Parses archived record texts of `resource` into a page: its records,
/// and those it cannot read ([`Page::rejected`]). Fails only when a line
/// is not JSON (a damaged archive).
pub fn records_from_archive(resource: Resource, lines: &[String]) -> Result<Page, ClientError> {
    let mut envelope = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 16);
    envelope.extend_from_slice(b"{\"data\":[");
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            envelope.push(b',');
        }
        envelope.extend_from_slice(line.as_bytes());
    }
    envelope.extend_from_slice(b"]}");
    Page::parse(resource, Cursor::Start, &envelope)
}

/// Reads one record's text again, as the live pull reads it (a
/// quarantined record's retry): the record when it can be read now, else
/// why not (patient data: never logged).
pub fn reread(resource: Resource, text: &str) -> Result<Record, String> {
    let mut envelope = Vec::with_capacity(text.len() + 16);
    envelope.extend_from_slice(b"{\"data\":[");
    envelope.extend_from_slice(text.as_bytes());
    envelope.extend_from_slice(b"]}");
    let mut page = Page::parse(resource, Cursor::Start, &envelope)
        .map_err(|_| "the record's text is not valid JSON".to_owned())?;
    match (page.records.pop(), page.rejected.pop()) {
        (Some(record), None) if page.records.is_empty() => Ok(record),
        (None, Some(rejected)) if page.rejected.is_empty() => Err(rejected.reason),
        _ => Err("the text holds more than one record".to_owned()),
    }
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
        let page = records_from_archive(Resource::Patients, &lines).expect("read");
        let records = page.records;
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

    #[test]
    fn a_bad_archived_record_is_rejected_alone() {
        let lines = vec![
            r#"{"id":"1","lastModified":"2026-11-20T00:00:00.000Z"}"#.to_string(),
            r#"{"id":"x"}"#.to_string(),
        ];
        let page = records_from_archive(Resource::Patients, &lines).expect("read");
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.rejected.len(), 1);
        assert_eq!(page.rejected[0].id.as_deref(), Some("x"));
    }

    #[test]
    fn a_record_is_read_again_alone() {
        let record =
            reread(Resource::Patients, r#"{"id":"7","lastModified":null}"#).expect("readable now");
        assert_eq!(record.id.0, 7);
        let reason = reread(Resource::Patients, r#"{"id":"7","lastModified":"soon"}"#)
            .expect_err("still unreadable");
        assert!(reason.contains("lastModified"), "{reason}");
        assert!(reread(Resource::Patients, r#"{"id":"#).is_err());
        assert!(reread(Resource::Patients, r#"{"id":"1"},{"id":"2"}"#).is_err());
    }
}
