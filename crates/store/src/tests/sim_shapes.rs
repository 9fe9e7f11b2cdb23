//! The spec's JSON paths read every typed column of records shaped exactly
//! as the simulator (crates/ascend-sim/src/records.rs) serves them, when
//! the simulator fills the field.

use serde_json::{Value as Json, json};

use crate::extract::{Record, Value};
use crate::spec::Table;

fn reference(kind: &str, id: &str) -> Json {
    json!({"id": id, "type": kind, "url": format!("http://127.0.0.1:1/ascend-gateway/api/v1/x/{id}")})
}

fn sim_record(table: Table) -> Json {
    let lm = "2026-03-04T10:11:12.345Z";
    let patient = reference("PatientV1", "7000000100001");
    let provider = reference("ProviderV1", "7000000200001");
    let location = reference("LocationV1", "7000000000114");
    match table {
        Table::Locations => json!({"id": "7000000000114", "name": "Main Street Dental", "abbreviation": "MSD",
            "timezone": "America/Chicago", "phone": "(555) 555-0100",
            "address": {"street": "1 Main St", "city": "Springfield", "state": "IL", "postalCode": "62701"},
            "lastModified": lm}),
        Table::Providers => json!({"id": "7000000200001", "firstName": "Zoë", "lastName": "Núñez", "title": "DDS",
            "providerType": "DENTIST", "npi": null, "active": true, "abbreviation": "ZN", "lastModified": lm}),
        Table::Operatories => json!({"id": "7000000300001", "name": "Op 1", "shortName": "O1", "location": location,
            "active": true, "lastModified": lm}),
        Table::Patients => json!({"id": "7000000100001", "firstName": "Ann", "lastName": "Lee", "preferredName": "Annie",
            "dateOfBirth": "1980-02-29", "gender": "FEMALE", "patientStatus": "ACTIVE", "chartNumber": "LE0001",
            "phones": [{"type": "MOBILE", "number": "(555) 555-0101"}], "emailAddress": "ann@example.com",
            "primaryProvider": provider, "primaryGuarantor": patient, "preferredLocation": location,
            "firstVisitDate": "2019-07-01", "x_vendorExtension": {"source": "legacy-import", "batch": 7, "flags": ["a", "x"]},
            "lastModified": lm}),
        Table::Appointments => json!({"id": "7000000400001", "start": "2026-03-04T15:00:00.000Z",
            "end": "2026-03-04T15:30:00.000Z", "duration": 30, "status": "CONFIRMED", "bookingType": "RECARE",
            "patient": patient, "provider": provider, "operatory": reference("OperatoryV1", "7000000300001"),
            "location": location, "note": "bring x-rays", "lastModified": lm}),
        Table::TxCases => json!({"id": "7000000500001", "name": "Crown #3", "status": "NEW", "patient": patient,
            "provider": provider, "createdDate": "2026-01-05", "lastModified": lm}),
        Table::Visits => json!({"id": "7000000600001", "patient": patient, "txCase": reference("TxCaseV1", "7000000500001"),
            "location": location, "provider": provider, "date": "2026-03-04", "lastModified": lm}),
        Table::PatientProcedures => serde_json::from_str(&format!(
            r#"{{"id":"7000000700001","patient":{patient},"visit":{visit},"provider":{provider},"location":{location},
            "procedureCode":"D0120","description":"Periodic oral evaluation","fee":125.50,"status":"COMPLETED",
            "date":"2026-03-04","tooth":null,"surfaces":null,"lastModified":"{lm}"}}"#,
            visit = reference("VisitV1", "7000000600001"),
        ))
        .unwrap_or(Json::Null),
        Table::PatientInsurancePlans => json!({"id": "7000000800001", "patient": patient,
            "carrier": reference("GlobalInsuranceCarrierV1", "7000000900001"), "subscriberId": "X123",
            "groupNumber": null, "relationship": "SELF", "priority": "PRIMARY", "effectiveDate": "2025-01-01",
            "terminationDate": null, "lastModified": lm}),
        Table::InsuranceCarriers => json!({"id": "7000000900001", "name": "Delta Dental", "payerId": "94276",
            "phone": null, "lastModified": lm}),
        Table::Transactions => json!({"id": "7000001000001", "type": "CHARGE", "amount": -125.00, "patient": patient,
            "location": location, "provider": provider, "procedure": reference("PatientProcedureV1", "7000000700001"),
            "date": "2026-03-04", "paymentType": null, "description": null, "lastModified": lm}),
    }
}

#[test]
fn every_typed_column_reads_from_a_simulator_record() {
    for table in Table::ALL {
        let raw = sim_record(table).to_string();
        let record = Record::parse(&raw).expect("fixture is an object");
        for column in table.spec().columns {
            assert_ne!(
                record.column(column),
                Value::Null,
                "{table}.{} from {}",
                column.name,
                column.path
            );
        }
    }
    // Money is a JSON number with two decimals; it stays exact.
    let raw = sim_record(Table::PatientProcedures).to_string();
    let record = Record::parse(&raw).expect("object");
    let fee = Table::PatientProcedures
        .spec()
        .columns
        .iter()
        .find(|c| c.name == "fee")
        .expect("fee");
    assert_eq!(record.column(fee), Value::Decimal("125.50".into()));
}
