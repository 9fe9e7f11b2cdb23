//! Full generated records: typed structs that serialise straight into the
//! response buffer (no `serde_json::Value` on the hot path).
//!
//! [`generate`] builds record `i` of a resource from the [`World`]. The
//! attributes the world computes cheaply (id, `lastModified`, location,
//! patient) are taken from it, so a record always agrees with what filters
//! saw; the rest comes from a [`SplitMix`] seeded by the record.
//!
//! Edges the real API has, on purpose: `null` where a field is usually set
//! (`preferredName`, `emailAddress`, `note`, `dateOfBirth`), an unknown extra
//! field `x_vendorExtension` on about 3% of records, unicode in names and
//! notes, money as JSON numbers with two decimals (`125.00`).

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use crate::clock::{Date, MS_PER_DAY, Ts};
use crate::hash::{SplitMix, weighted};
use crate::resource::Resource;
use crate::tables;
use crate::textbuf::TextBuf;
use crate::world::{TxType, World};

/// An id, serialised as a JSON string of decimal digits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdStr(pub u64);

impl Serialize for IdStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut b = TextBuf::<20>::new();
        b.push_u64(self.0);
        s.serialize_str(b.as_str().unwrap_or_default())
    }
}

/// A reference: `{"id":"..","type":"PatientV1","url":"<api_base>/v1/patients/<id>"}`.
/// `prefix` is `<api_base>/v1/<path>/` (see [`World::url_prefix`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RefTo<'a> {
    pub id: u64,
    pub res: Resource,
    pub prefix: &'a str,
}

impl Serialize for RefTo<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("id", &IdStr(self.id))?;
        m.serialize_entry("type", self.res.ref_type())?;
        let mut url = TextBuf::<192>::new();
        url.push_str(self.prefix).push_u64(self.id);
        match url.as_str() {
            Some(u) => m.serialize_entry("url", u)?,
            None => m.serialize_entry("url", &format!("{}{}", self.prefix, self.id))?,
        }
        m.end()
    }
}

/// The JSON value of a reference, for records built as `serde_json::Value`.
pub(crate) fn ref_value(base: &str, res: Resource, id: u64) -> serde_json::Value {
    serde_json::json!({
        "id": id.to_string(),
        "type": res.ref_type(),
        "url": format!("{base}/v1/{}/{id}", res.path()),
    })
}

/// An amount in cents, serialised as a JSON number with two decimals.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Money(pub i64);

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        match RawValue::from_string(format!("{sign}{}.{:02}", abs / 100, abs % 100)) {
            Ok(raw) => raw.serialize(s),
            Err(_) => s.serialize_f64(self.0 as f64 / 100.0),
        }
    }
}

/// The unknown extra field some records carry.
#[derive(Serialize, Debug)]
pub(crate) struct VendorExt {
    source: &'static str,
    batch: u32,
    flags: [&'static str; 2],
}

fn vendor_ext(r: &mut SplitMix) -> Option<VendorExt> {
    r.percent(3).then(|| VendorExt {
        source: r.pick_str(&["legacy-import", "partner-sync", "ascend-migration"]),
        batch: r.below(10_000) as u32,
        flags: [r.pick_str(&["a", "b", "c"]), r.pick_str(&["x", "y"])],
    })
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Address {
    street: String,
    city: &'static str,
    state: &'static str,
    postal_code: String,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Location {
    id: IdStr,
    name: String,
    abbreviation: String,
    timezone: &'static str,
    phone: String,
    address: Address,
    last_modified: Ts,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Provider {
    id: IdStr,
    first_name: &'static str,
    last_name: &'static str,
    title: &'static str,
    provider_type: &'static str,
    npi: Option<String>,
    active: bool,
    abbreviation: String,
    #[serde(rename = "x_vendorExtension", skip_serializing_if = "Option::is_none")]
    x_vendor_extension: Option<VendorExt>,
    last_modified: Ts,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Operatory<'a> {
    id: IdStr,
    name: String,
    short_name: String,
    location: RefTo<'a>,
    active: bool,
    last_modified: Ts,
}

#[derive(Serialize, Debug)]
pub(crate) struct Phone {
    #[serde(rename = "type")]
    kind: &'static str,
    number: String,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Patient<'a> {
    id: IdStr,
    first_name: &'static str,
    last_name: &'static str,
    preferred_name: Option<&'static str>,
    date_of_birth: Option<Date>,
    gender: &'static str,
    patient_status: &'static str,
    chart_number: Option<String>,
    phones: Vec<Phone>,
    email_address: Option<String>,
    primary_provider: Option<RefTo<'a>>,
    primary_guarantor: RefTo<'a>,
    preferred_location: RefTo<'a>,
    first_visit_date: Option<Date>,
    #[serde(rename = "x_vendorExtension", skip_serializing_if = "Option::is_none")]
    x_vendor_extension: Option<VendorExt>,
    last_modified: Ts,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Appointment<'a> {
    id: IdStr,
    start: Ts,
    end: Ts,
    duration: u32,
    status: &'static str,
    booking_type: &'static str,
    patient: RefTo<'a>,
    provider: RefTo<'a>,
    operatory: RefTo<'a>,
    location: RefTo<'a>,
    note: Option<&'static str>,
    #[serde(rename = "x_vendorExtension", skip_serializing_if = "Option::is_none")]
    x_vendor_extension: Option<VendorExt>,
    last_modified: Ts,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TxCase<'a> {
    id: IdStr,
    name: &'static str,
    status: &'static str,
    patient: RefTo<'a>,
    provider: RefTo<'a>,
    created_date: Date,
    last_modified: Ts,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Visit<'a> {
    id: IdStr,
    patient: RefTo<'a>,
    tx_case: Option<RefTo<'a>>,
    location: RefTo<'a>,
    provider: RefTo<'a>,
    date: Date,
    last_modified: Ts,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PatientProcedure<'a> {
    id: IdStr,
    patient: RefTo<'a>,
    visit: Option<RefTo<'a>>,
    provider: RefTo<'a>,
    location: RefTo<'a>,
    procedure_code: &'static str,
    description: &'static str,
    fee: Money,
    status: &'static str,
    date: Option<Date>,
    tooth: Option<String>,
    surfaces: Option<&'static str>,
    #[serde(rename = "x_vendorExtension", skip_serializing_if = "Option::is_none")]
    x_vendor_extension: Option<VendorExt>,
    last_modified: Ts,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PatientInsurancePlan<'a> {
    id: IdStr,
    patient: RefTo<'a>,
    carrier: RefTo<'a>,
    subscriber_id: String,
    group_number: Option<String>,
    relationship: &'static str,
    priority: &'static str,
    effective_date: Date,
    termination_date: Option<Date>,
    last_modified: Ts,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GlobalInsuranceCarrier {
    id: IdStr,
    name: String,
    payer_id: String,
    phone: Option<String>,
    #[serde(rename = "x_vendorExtension", skip_serializing_if = "Option::is_none")]
    x_vendor_extension: Option<VendorExt>,
    last_modified: Ts,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Transaction<'a> {
    id: IdStr,
    #[serde(rename = "type")]
    kind: &'static str,
    amount: Money,
    patient: RefTo<'a>,
    location: RefTo<'a>,
    provider: RefTo<'a>,
    procedure: Option<RefTo<'a>>,
    date: Date,
    payment_type: Option<&'static str>,
    description: Option<&'static str>,
    last_modified: Ts,
}

/// Any generated record; serialises as the inner record.
#[derive(Serialize, Debug)]
#[serde(untagged)]
pub(crate) enum GenRecord<'a> {
    Location(Location),
    Provider(Provider),
    Operatory(Operatory<'a>),
    Patient(Patient<'a>),
    Appointment(Appointment<'a>),
    TxCase(TxCase<'a>),
    Visit(Visit<'a>),
    PatientProcedure(PatientProcedure<'a>),
    PatientInsurancePlan(PatientInsurancePlan<'a>),
    GlobalInsuranceCarrier(GlobalInsuranceCarrier),
    Transaction(Transaction<'a>),
}

fn phone_number(r: &mut SplitMix) -> String {
    format!("({}) 555-{:04}", 200 + r.below(790), r.below(10_000))
}

struct Gen<'w> {
    w: &'w World,
    res: Resource,
    i: u64,
    r: SplitMix,
}

impl<'w> Gen<'w> {
    fn reference(&self, res: Resource, index: u64) -> RefTo<'w> {
        RefTo {
            id: self.w.id(res, index),
            res,
            prefix: self.w.url_prefix(res),
        }
    }

    fn random_ref(&mut self, res: Resource) -> RefTo<'w> {
        let n = self.w.count(res);
        let i = self.r.below(n);
        self.reference(res, i)
    }

    fn own_location(&self) -> RefTo<'w> {
        self.reference(
            Resource::Locations,
            self.w.location_of(self.res, self.i).unwrap_or(0),
        )
    }

    fn own_patient_index(&self) -> u64 {
        self.w.patient_of(self.res, self.i).unwrap_or(0)
    }

    fn own_patient(&self) -> RefTo<'w> {
        self.reference(Resource::Patients, self.own_patient_index())
    }

    fn id(&self) -> IdStr {
        IdStr(self.w.id(self.res, self.i))
    }

    fn last_modified(&self) -> Ts {
        Ts(self.w.last_modified(self.res, self.i))
    }

    fn created(&self) -> i64 {
        self.w.created(self.res, self.i)
    }

    fn name(
        &mut self,
        table: &'static [(&'static str, &'static str)],
    ) -> (&'static str, &'static str) {
        self.r.pick(table).copied().unwrap_or(("", ""))
    }
}

/// Record `i` of `res` (`i < world.count(res)`).
pub(crate) fn generate(w: &World, res: Resource, i: u64) -> GenRecord<'_> {
    let mut g = Gen {
        w,
        res,
        i,
        r: SplitMix::new(w.record_seed(res, i)),
    };
    match res {
        Resource::Locations => GenRecord::Location(location(&mut g)),
        Resource::Providers => GenRecord::Provider(provider(&mut g)),
        Resource::Operatories => GenRecord::Operatory(operatory(&mut g)),
        Resource::Patients => GenRecord::Patient(patient(&mut g)),
        Resource::Appointments => GenRecord::Appointment(appointment(&mut g)),
        Resource::TxCases => GenRecord::TxCase(txcase(&mut g)),
        Resource::Visits => GenRecord::Visit(visit(&mut g)),
        Resource::PatientProcedures => GenRecord::PatientProcedure(procedure(&mut g)),
        Resource::PatientInsurancePlans => GenRecord::PatientInsurancePlan(plan(&mut g)),
        Resource::GlobalInsuranceCarriers => GenRecord::GlobalInsuranceCarrier(carrier(&mut g)),
        Resource::Transactions => GenRecord::Transaction(transaction(&mut g)),
    }
}

fn location(g: &mut Gen<'_>) -> Location {
    let brand = tables::PRACTICE_BRANDS
        [crate::hash::below(g.w.seed, tables::PRACTICE_BRANDS.len() as u64) as usize];
    let (area, city, state) = tables::LOCATION_AREAS[g.i as usize % tables::LOCATION_AREAS.len()];
    let street = format!(
        "{} {}",
        100 + g.r.below(9000),
        g.r.pick_str(tables::STREETS)
    );
    Location {
        id: g.id(),
        name: format!("{brand} - {area}"),
        abbreviation: format!("{}{}", &area[..3].to_uppercase(), g.i + 1),
        timezone: tables::TIMEZONES[g.i as usize % tables::TIMEZONES.len()],
        phone: phone_number(&mut g.r),
        address: Address {
            street,
            city,
            state,
            postal_code: format!("{:05}", 10_000 + g.r.below(89_999)),
        },
        last_modified: g.last_modified(),
    }
}

fn provider(g: &mut Gen<'_>) -> Provider {
    let (first, _) = g.name(tables::FIRST_NAMES);
    let (last, _) = g.name(tables::LAST_NAMES);
    let (title, kind) = match weighted(g.r.next_u64(), &[5, 4, 1]) {
        0 => (g.r.pick_str(&["DDS", "DMD"]), "DENTIST"),
        1 => ("RDH", "HYGIENIST"),
        _ => ("RDA", "ASSISTANT"),
    };
    Provider {
        id: g.id(),
        first_name: first,
        last_name: last,
        title,
        provider_type: kind,
        npi: (!g.r.percent(10)).then(|| format!("1{:09}", g.r.below(1_000_000_000))),
        active: !g.r.percent(15),
        abbreviation: format!("{}{}", if kind == "DENTIST" { "DR" } else { "HY" }, g.i + 1),
        x_vendor_extension: vendor_ext(&mut g.r),
        last_modified: g.last_modified(),
    }
}

fn operatory<'w>(g: &mut Gen<'w>) -> Operatory<'w> {
    let n = g.i % g.w.ops_per_location.max(1) + 1;
    let hygiene = n > 2 && n.is_multiple_of(2);
    Operatory {
        id: g.id(),
        name: if hygiene {
            format!("Hygiene {n}")
        } else {
            format!("Op {n}")
        },
        short_name: format!("{}{n}", if hygiene { "H" } else { "OP" }),
        location: g.own_location(),
        active: !g.r.percent(5),
        last_modified: g.last_modified(),
    }
}

fn patient<'w>(g: &mut Gen<'w>) -> Patient<'w> {
    let (first, first_stem) = g.name(tables::FIRST_NAMES);
    let (last, last_stem) = g.name(tables::LAST_NAMES);
    let created = g.created();
    let birth_year = 1930 + g.r.below(92) as i64;
    let dob = crate::clock::days_from_civil(
        birth_year,
        1 + g.r.below(12) as i64,
        1 + g.r.below(28) as i64,
    );
    let mut phones = Vec::new();
    if !g.r.percent(5) {
        phones.push(Phone {
            kind: g.r.pick_str(&["MOBILE", "MOBILE", "HOME", "WORK"]),
            number: phone_number(&mut g.r),
        });
        if g.r.percent(30) {
            phones.push(Phone {
                kind: "HOME",
                number: phone_number(&mut g.r),
            });
        }
    }
    let email = (!g.r.percent(20)).then(|| {
        format!(
            "{first_stem}.{last_stem}{}@{}",
            g.r.below(1000),
            g.r.pick_str(tables::EMAIL_DOMAINS)
        )
    });
    let guarantor = if g.r.percent(75) {
        g.reference(Resource::Patients, g.i)
    } else {
        g.random_ref(Resource::Patients)
    };
    Patient {
        id: g.id(),
        first_name: first,
        last_name: last,
        preferred_name: g
            .r
            .percent(12)
            .then(|| g.r.pick_str(tables::PREFERRED_NAMES)),
        date_of_birth: (!g.r.percent(2)).then_some(Date(dob)),
        gender: match weighted(g.r.next_u64(), &[48, 48, 3, 1]) {
            0 => "FEMALE",
            1 => "MALE",
            2 => "UNKNOWN",
            _ => "OTHER",
        },
        patient_status: match weighted(g.r.next_u64(), &[75, 15, 4, 4, 1, 1]) {
            0 => "ACTIVE",
            1 => "INACTIVE",
            2 => "NON_PATIENT",
            3 => "ARCHIVED",
            4 => "DECEASED",
            _ => "PROSPECT",
        },
        chart_number: (!g.r.percent(3)).then(|| {
            if g.r.percent(10) {
                format!("LEG-{:05}", g.i)
            } else {
                format!("{:06}", 1000 + g.i)
            }
        }),
        phones,
        email_address: email,
        primary_provider: (!g.r.percent(5)).then(|| g.random_ref(Resource::Providers)),
        primary_guarantor: guarantor,
        preferred_location: g.own_location(),
        first_visit_date: (!g.r.percent(10)).then_some(Date::of_ms(created)),
        x_vendor_extension: vendor_ext(&mut g.r),
        last_modified: g.last_modified(),
    }
}

/// Appointments starting within this long after the anchor are being
/// confirmed; later ones mostly are not yet.
const CONFIRMING_MS: i64 = 14 * MS_PER_DAY;

fn appointment<'w>(g: &mut Gen<'w>) -> Appointment<'w> {
    let start = g.w.appointment_start(g.i);
    let duration =
        *g.r.pick(&[30u32, 45, 60, 60, 60, 90, 120, 15])
            .unwrap_or(&60);
    let anchor = g.w.anchor_ms();
    let status = if start < anchor {
        // Seen (or missed) already.
        match weighted(g.r.next_u64(), &[80, 8, 7, 5]) {
            0 => "COMPLETE",
            1 => "BROKEN",
            2 => "CANCELLED",
            _ => "CHECKED_OUT",
        }
    } else if start < anchor + MS_PER_DAY {
        // Today's.
        match weighted(g.r.next_u64(), &[70, 15, 10, 5]) {
            0 => "CONFIRMED",
            1 => "IN_CHAIR",
            2 => "UNCONFIRMED",
            _ => "LEFT_MESSAGE",
        }
    } else if start < anchor + CONFIRMING_MS {
        match weighted(g.r.next_u64(), &[25, 55, 20]) {
            0 => "UNCONFIRMED",
            1 => "CONFIRMED",
            _ => "LEFT_MESSAGE",
        }
    } else {
        match weighted(g.r.next_u64(), &[85, 10, 5]) {
            0 => "UNCONFIRMED",
            1 => "CONFIRMED",
            _ => "LEFT_MESSAGE",
        }
    };
    let location = g.w.location_of(g.res, g.i).unwrap_or(0);
    let k = g.w.ops_per_location.max(1);
    let op = (location * k + g.r.below(k)).min(g.w.count(Resource::Operatories).saturating_sub(1));
    Appointment {
        id: g.id(),
        start: Ts(start),
        end: Ts(start + i64::from(duration) * 60_000),
        duration,
        status,
        booking_type: match weighted(g.r.next_u64(), &[35, 40, 10, 15]) {
            0 => "TREATMENT",
            1 => "RECARE",
            2 => "NEW_PATIENT",
            _ => "EXISTING_PATIENT",
        },
        patient: g.own_patient(),
        provider: g.random_ref(Resource::Providers),
        operatory: g.reference(Resource::Operatories, op),
        location: g.reference(Resource::Locations, location),
        note: g
            .r
            .percent(40)
            .then(|| g.r.pick_str(tables::APPOINTMENT_NOTES)),
        x_vendor_extension: vendor_ext(&mut g.r),
        last_modified: g.last_modified(),
    }
}

fn txcase<'w>(g: &mut Gen<'w>) -> TxCase<'w> {
    TxCase {
        id: g.id(),
        name: g.r.pick_str(tables::TXCASE_NAMES),
        status: match weighted(g.r.next_u64(), &[20, 25, 30, 10, 13, 2]) {
            0 => "NEW",
            1 => "PROPOSED",
            2 => "ACCEPTED",
            3 => "REJECTED",
            4 => "COMPLETED",
            _ => "ON_HOLD",
        },
        patient: g.own_patient(),
        provider: g.random_ref(Resource::Providers),
        created_date: Date::of_ms(g.created()),
        last_modified: g.last_modified(),
    }
}

fn visit<'w>(g: &mut Gen<'w>) -> Visit<'w> {
    Visit {
        id: g.id(),
        patient: g.own_patient(),
        tx_case: g
            .w
            .txcase_of(g.i)
            .map(|t| g.reference(Resource::TxCases, t)),
        location: g.own_location(),
        provider: g.random_ref(Resource::Providers),
        date: Date::of_ms(g.created()),
        last_modified: g.last_modified(),
    }
}

fn procedure<'w>(g: &mut Gen<'w>) -> PatientProcedure<'w> {
    let (code, description, _) = tables::PROCEDURES[g.w.procedure_code(g.i)];
    let visit = g.w.visit_of(g.i);
    let status = match visit {
        Some(_) if g.r.percent(3) => "IN_PROGRESS",
        Some(_) => "COMPLETED",
        None if g.r.percent(5) => "REFERRED",
        None => "PLANNED",
    };
    let date = match visit {
        Some(v) => Some(Date::of_ms(g.w.created(Resource::Visits, v))),
        None => g.r.percent(50).then(|| Date::of_ms(g.created())),
    };
    let tooth_specific = code.starts_with("D2") || code.starts_with("D3") || code.starts_with("D7");
    PatientProcedure {
        id: g.id(),
        patient: g.own_patient(),
        visit: visit.map(|v| g.reference(Resource::Visits, v)),
        provider: g.random_ref(Resource::Providers),
        location: g.own_location(),
        procedure_code: code,
        description,
        fee: Money(g.w.procedure_fee(g.i)),
        status,
        date,
        tooth: tooth_specific.then(|| (1 + g.r.below(32)).to_string()),
        surfaces: (code.starts_with("D23") || code.starts_with("D21"))
            .then(|| g.r.pick_str(tables::SURFACES)),
        x_vendor_extension: vendor_ext(&mut g.r),
        last_modified: g.last_modified(),
    }
}

fn plan<'w>(g: &mut Gen<'w>) -> PatientInsurancePlan<'w> {
    let carriers = g.w.count(Resource::GlobalInsuranceCarriers);
    // Most patients are with one of the twenty big carriers.
    let carrier = if g.r.percent(70) {
        g.r.below(carriers.min(20))
    } else {
        g.r.below(carriers)
    };
    let created = g.created();
    PatientInsurancePlan {
        id: g.id(),
        patient: g.own_patient(),
        carrier: g.reference(Resource::GlobalInsuranceCarriers, carrier),
        subscriber_id: format!(
            "{}{:09}",
            g.r.pick_str(&["XGH", "W", "U", "", "DDP"]),
            g.r.below(1_000_000_000)
        ),
        group_number: (!g.r.percent(15)).then(|| format!("{:06}", g.r.below(1_000_000))),
        relationship: match weighted(g.r.next_u64(), &[60, 20, 18, 2]) {
            0 => "SELF",
            1 => "SPOUSE",
            2 => "CHILD",
            _ => "OTHER",
        },
        priority: if g.r.percent(85) {
            "PRIMARY"
        } else {
            "SECONDARY"
        },
        effective_date: Date::of_ms(created - g.r.below(400) as i64 * MS_PER_DAY),
        termination_date: g
            .r
            .percent(10)
            .then(|| Date::of_ms(created + (30 + g.r.below(700) as i64) * MS_PER_DAY)),
        last_modified: g.last_modified(),
    }
}

fn carrier(g: &mut Gen<'_>) -> GlobalInsuranceCarrier {
    let bases = tables::CARRIER_BASES;
    let b = g.i as usize % bases.len();
    let round = g.i as usize / bases.len();
    let name = if round == 0 {
        bases[b].to_string()
    } else {
        format!(
            "{} of {}",
            bases[b],
            tables::STATES[(round - 1) % tables::STATES.len()]
        )
    };
    GlobalInsuranceCarrier {
        id: g.id(),
        name: if round > tables::STATES.len() {
            format!("{name} ({round})")
        } else {
            name
        },
        payer_id: format!(
            "{}{:04}",
            ["CD", "MT", "AE", "CX", "GI"][b % 5],
            g.r.below(10_000)
        ),
        phone: (!g.r.percent(20)).then(|| format!("(800) 555-{:04}", g.r.below(10_000))),
        x_vendor_extension: vendor_ext(&mut g.r),
        last_modified: g.last_modified(),
    }
}

fn transaction<'w>(g: &mut Gen<'w>) -> Transaction<'w> {
    let proc_index = g.w.procedure_of(g.i);
    let fee = g.w.procedure_fee(proc_index);
    let date = Date::of_ms(g.created());
    let (kind, amount, procedure, payment_type, description) = match g.w.transaction_type(g.i) {
        TxType::Charge => (
            "CHARGE",
            fee,
            Some(g.reference(Resource::PatientProcedures, proc_index)),
            None,
            None,
        ),
        TxType::Payment => {
            let share = 20 + g.r.below(81) as i64;
            let kind = g.r.pick_str(&[
                "CASH",
                "CHECK",
                "CREDIT_CARD",
                "CREDIT_CARD",
                "INSURANCE_CHECK",
                "CARE_CREDIT",
            ]);
            let desc = if kind == "INSURANCE_CHECK" {
                "Insurance payment"
            } else {
                "Patient payment"
            };
            (
                "PAYMENT",
                -(fee * share / 100),
                None,
                Some(kind),
                Some(desc),
            )
        }
        TxType::Adjustment => {
            let amount = (fee * (5 + g.r.below(30) as i64) / 100).max(100);
            let credit = !g.r.percent(15);
            let desc = g.r.pick_str(tables::TRANSACTION_DESCRIPTIONS);
            (
                "ADJUSTMENT",
                if credit { -amount } else { amount },
                None,
                None,
                Some(desc),
            )
        }
    };
    Transaction {
        id: g.id(),
        kind,
        amount: Money(amount),
        patient: g.own_patient(),
        location: g.own_location(),
        provider: g.random_ref(Resource::Providers),
        procedure,
        date,
        payment_type,
        description,
        last_modified: g.last_modified(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Size;

    #[test]
    fn every_resource_serialises_with_id_last_modified_and_real_refs()
    -> Result<(), serde_json::Error> {
        let w = World::new(
            3,
            1,
            Size::Small,
            crate::world::TEST_DAY,
            "http://h/ascend-gateway/api".into(),
        );
        for res in Resource::ALL {
            for i in (0..w.count(res)).step_by(7) {
                let v = serde_json::to_value(generate(&w, res, i))?;
                assert_eq!(v["id"], serde_json::Value::String(w.id(res, i).to_string()));
                assert_eq!(
                    v["lastModified"],
                    Ts(w.last_modified(res, i)).to_string().as_str()
                );
                if let Some(field) = res.location_field() {
                    let loc = w.location_of(res, i).unwrap_or(u64::MAX);
                    assert_eq!(
                        v[field]["id"],
                        w.id(Resource::Locations, loc).to_string().as_str()
                    );
                    assert_eq!(v[field]["type"], "LocationV1");
                }
                if res == Resource::Appointments {
                    // The operatory is one of the appointment's location.
                    let op: u64 = v["operatory"]["id"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    let op_index = w.space(Resource::Operatories).index_of(op);
                    assert!(op_index.is_some());
                    let op_loc = op_index.and_then(|o| w.location_of(Resource::Operatories, o));
                    assert_eq!(op_loc, w.location_of(res, i));
                }
                if res.has_patient() {
                    let p = w.patient_of(res, i).unwrap_or(u64::MAX);
                    let id = w.id(Resource::Patients, p);
                    assert_eq!(v["patient"]["id"], id.to_string().as_str());
                    assert_eq!(
                        v["patient"]["url"],
                        format!("http://h/ascend-gateway/api/v1/patients/{id}").as_str()
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn appointments_are_completed_behind_today_and_scheduled_ahead() -> Result<(), serde_json::Error>
    {
        let w = World::new(
            5,
            0,
            Size::Small,
            crate::world::TEST_DAY,
            "http://h/ascend-gateway/api".into(),
        );
        let anchor = w.anchor_ms();
        let (mut past, mut ahead) = (0, 0);
        for i in 0..w.count(Resource::Appointments) {
            let v = serde_json::to_value(generate(&w, Resource::Appointments, i))?;
            let text = |field: &str| v[field].as_str().unwrap_or_default().to_owned();
            let start = crate::clock::parse_instant(&text("start")).unwrap_or(i64::MIN);
            let end = crate::clock::parse_instant(&text("end")).unwrap_or(i64::MIN);
            let last_modified = crate::clock::parse_instant(&text("lastModified"));
            assert_eq!(start, w.appointment_start(i));
            assert_eq!(
                Some(end - start),
                v["duration"].as_i64().map(|d| d * 60_000)
            );
            assert!(last_modified.is_some_and(|lm| lm <= anchor), "{v}");
            let status = text("status");
            if start < anchor {
                past += 1;
                assert!(
                    ["COMPLETE", "BROKEN", "CANCELLED", "CHECKED_OUT"].contains(&status.as_str()),
                    "{v}"
                );
            } else {
                ahead += 1;
                assert!(
                    ["UNCONFIRMED", "CONFIRMED", "LEFT_MESSAGE", "IN_CHAIR"]
                        .contains(&status.as_str()),
                    "{v}"
                );
                // Booked before today, and not touched since.
                assert!(last_modified.is_some_and(|lm| lm < start), "{v}");
            }
        }
        assert!(past > 1000 && ahead > 50, "{past} past, {ahead} ahead");
        Ok(())
    }

    #[test]
    fn money_has_two_decimals() -> Result<(), serde_json::Error> {
        assert_eq!(serde_json::to_string(&Money(12_500))?, "125.00");
        assert_eq!(serde_json::to_string(&Money(-1_205))?, "-12.05");
        assert_eq!(serde_json::to_string(&Money(7))?, "0.07");
        Ok(())
    }
}
