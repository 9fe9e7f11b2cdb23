-- One landed table per Ascend resource. Every table has the same frame:
-- practice_id, id (the Ascend id as a number), the typed columns reports
-- need (read from the record by the store's table spec, crates/store/src/spec.rs:
-- a value that is missing or unparseable is NULL), last_modified (the
-- record's lastModified), raw (the whole record as JSON text) and synced_at.
-- Dates are TEXT 'YYYY-MM-DD'; timestamps TEXT 'YYYY-MM-DDTHH:MM:SS.ffffffZ'
-- (UTC, fixed width: text order is time order); amounts TEXT holding the
-- exact decimal with two places ('125.50'). The store's schema test checks
-- that these columns are exactly the spec's.

CREATE TABLE locations (
    practice_id   TEXT NOT NULL,
    id            INTEGER NOT NULL,
    name          TEXT,
    last_modified TEXT,
    raw           TEXT NOT NULL,
    synced_at     TEXT NOT NULL,
    CONSTRAINT locations_pkey PRIMARY KEY (practice_id, id)
);

CREATE TABLE providers (
    practice_id   TEXT NOT NULL,
    id            INTEGER NOT NULL,
    first_name    TEXT,
    last_name     TEXT,
    last_modified TEXT,
    raw           TEXT NOT NULL,
    synced_at     TEXT NOT NULL,
    CONSTRAINT providers_pkey PRIMARY KEY (practice_id, id)
);

CREATE TABLE operatories (
    practice_id   TEXT NOT NULL,
    id            INTEGER NOT NULL,
    name          TEXT,
    location_id   INTEGER,
    last_modified TEXT,
    raw           TEXT NOT NULL,
    synced_at     TEXT NOT NULL,
    CONSTRAINT operatories_pkey PRIMARY KEY (practice_id, id)
);

CREATE TABLE patients (
    practice_id           TEXT NOT NULL,
    id                    INTEGER NOT NULL,
    first_name            TEXT,
    last_name             TEXT,
    preferred_name        TEXT,
    date_of_birth         TEXT,
    gender                TEXT,
    patient_status        TEXT,
    chart_number          TEXT,
    email_address         TEXT,
    primary_provider_id   INTEGER,
    primary_guarantor_id  INTEGER,
    preferred_location_id INTEGER,
    first_visit_date      TEXT,
    last_modified         TEXT,
    raw                   TEXT NOT NULL,
    synced_at             TEXT NOT NULL,
    CONSTRAINT patients_pkey PRIMARY KEY (practice_id, id)
);

CREATE TABLE appointments (
    practice_id      TEXT NOT NULL,
    id               INTEGER NOT NULL,
    start_at         TEXT,
    end_at           TEXT,
    duration_minutes INTEGER,
    status           TEXT,
    booking_type     TEXT,
    patient_id       INTEGER,
    provider_id      INTEGER,
    operatory_id     INTEGER,
    location_id      INTEGER,
    note             TEXT,
    last_modified    TEXT,
    raw              TEXT NOT NULL,
    synced_at        TEXT NOT NULL,
    CONSTRAINT appointments_pkey PRIMARY KEY (practice_id, id)
);
CREATE INDEX appointments_start_at_idx ON appointments (practice_id, start_at);

CREATE TABLE tx_cases (
    practice_id   TEXT NOT NULL,
    id            INTEGER NOT NULL,
    name          TEXT,
    status        TEXT,
    patient_id    INTEGER,
    last_modified TEXT,
    raw           TEXT NOT NULL,
    synced_at     TEXT NOT NULL,
    CONSTRAINT tx_cases_pkey PRIMARY KEY (practice_id, id)
);

CREATE TABLE visits (
    practice_id   TEXT NOT NULL,
    id            INTEGER NOT NULL,
    patient_id    INTEGER,
    tx_case_id    INTEGER,
    location_id   INTEGER,
    last_modified TEXT,
    raw           TEXT NOT NULL,
    synced_at     TEXT NOT NULL,
    CONSTRAINT visits_pkey PRIMARY KEY (practice_id, id)
);

CREATE TABLE patient_procedures (
    practice_id    TEXT NOT NULL,
    id             INTEGER NOT NULL,
    patient_id     INTEGER,
    visit_id       INTEGER,
    provider_id    INTEGER,
    location_id    INTEGER,
    procedure_code TEXT,
    fee            TEXT,
    status         TEXT,
    procedure_date TEXT,
    last_modified  TEXT,
    raw            TEXT NOT NULL,
    synced_at      TEXT NOT NULL,
    CONSTRAINT patient_procedures_pkey PRIMARY KEY (practice_id, id)
);
CREATE INDEX patient_procedures_procedure_date_idx ON patient_procedures (practice_id, procedure_date);

CREATE TABLE patient_insurance_plans (
    practice_id   TEXT NOT NULL,
    id            INTEGER NOT NULL,
    patient_id    INTEGER,
    carrier_id    INTEGER,
    last_modified TEXT,
    raw           TEXT NOT NULL,
    synced_at     TEXT NOT NULL,
    CONSTRAINT patient_insurance_plans_pkey PRIMARY KEY (practice_id, id)
);

CREATE TABLE insurance_carriers (
    practice_id   TEXT NOT NULL,
    id            INTEGER NOT NULL,
    name          TEXT,
    last_modified TEXT,
    raw           TEXT NOT NULL,
    synced_at     TEXT NOT NULL,
    CONSTRAINT insurance_carriers_pkey PRIMARY KEY (practice_id, id)
);

CREATE TABLE transactions (
    practice_id      TEXT NOT NULL,
    id               INTEGER NOT NULL,
    transaction_type TEXT,
    amount           TEXT,
    transaction_date TEXT,
    patient_id       INTEGER,
    location_id      INTEGER,
    last_modified    TEXT,
    raw              TEXT NOT NULL,
    synced_at        TEXT NOT NULL,
    CONSTRAINT transactions_pkey PRIMARY KEY (practice_id, id)
);
CREATE INDEX transactions_transaction_date_idx ON transactions (practice_id, transaction_date);
