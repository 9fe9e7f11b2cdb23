//! Measures how fast the client reads list pages (`Page::parse`): 500
//! patient-like records per page, about 900 bytes each.
//!
//! `cargo run --release -p ascend-client --example parse_bench`
use std::time::Instant;

use ascend_client::{Cursor, Page, Resource};

fn main() {
    let mut records = Vec::new();
    for i in 0..500u64 {
        records.push(format!(
            r#"{{"id":"{}","lastModified":"2026-11-20T01:14:04.737Z","firstName":"Annabelle","lastName":"Smith-Jones","preferredName":"Ann","dateOfBirth":"1980-04-12","gender":"FEMALE","patientStatus":"ACTIVE","chartNumber":"CH{i:08}","phones":[{{"number":"555-0100","type":"MOBILE","primary":true}},{{"number":"555-0101","type":"HOME","primary":false}}],"emailAddress":"ann{i}@example.com","primaryProvider":{{"id":"7000000000114","type":"ProviderV1","url":"https://prod.hs1api.com/ascend-gateway/api/v1/providers/7000000000114"}},"primaryGuarantor":{{"id":"{}","type":"PatientV1","url":"https://prod.hs1api.com/ascend-gateway/api/v1/patients/7000000000999"}},"preferredLocation":{{"id":"7000000000001","type":"LocationV1","url":"https://prod.hs1api.com/ascend-gateway/api/v1/locations/7000000000001"}},"firstVisitDate":"2010-01-05","note":"Prefers morning appointments; allergic to latex \"important\"","balance":123.45}}"#,
            7_000_000_000_000 + i,
            7_000_000_000_000 + i
        ));
    }
    let body = format!(
        r#"{{"data":[{}],"warnings":[],"errors":[],"meta":{{"pagination":{{"page":1,"pageSize":500,"total":100000}}}}}}"#,
        records.join(",")
    );
    println!(
        "page bytes {} ({} per record)",
        body.len(),
        body.len() / 500
    );
    let rounds = 400;
    let started = Instant::now();
    let mut n = 0;
    for _ in 0..rounds {
        let page = Page::parse(Resource::Patients, Cursor::Start, body.as_bytes()).expect("valid");
        n += page.records.len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{n} records in {secs:.3} s: {:.0} records/s, {:.0} MB/s",
        n as f64 / secs,
        (body.len() * rounds) as f64 / secs / 1e6
    );
}
