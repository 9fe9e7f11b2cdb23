-- One landed table per Ascend resource. Every table has the same frame:
-- practice_id, id (the Ascend id as a number), the typed columns reports
-- need (read from the record by the store's table spec, crates/store/src/spec.rs:
-- a value that is missing or unparseable is NULL), last_modified (the
-- record's lastModified), raw (the whole record) and synced_at.
-- Amounts are exact: numeric(14,2). The store's schema test checks that
-- these columns are exactly the spec's.

CREATE TABLE locations (
    practice_id   text NOT NULL,
    id            bigint NOT NULL,
    name          text,
    last_modified timestamptz,
    raw           jsonb NOT NULL,
    synced_at     timestamptz NOT NULL,
    CONSTRAINT locations_pkey PRIMARY KEY (practice_id, id)
);

CREATE TABLE providers (
    practice_id   text NOT NULL,
    id            bigint NOT NULL,
    first_name    text,
    last_name     text,
    last_modified timestamptz,
    raw           jsonb NOT NULL,
    synced_at     timestamptz NOT NULL,
    CONSTRAINT providers_pkey PRIMARY KEY (practice_id, id)
);

CREATE TABLE operatories (
    practice_id   text NOT NULL,
    id            bigint NOT NULL,
    name          text,
    location_id   bigint,
    last_modified timestamptz,
    raw           jsonb NOT NULL,
    synced_at     timestamptz NOT NULL,
    CONSTRAINT operatories_pkey PRIMARY KEY (practice_id, id)
);

CREATE TABLE patients (
    practice_id           text NOT NULL,
    id                    bigint NOT NULL,
    first_name            text,
    last_name             text,
    preferred_name        text,
    date_of_birth         date,
    gender                text,
    patient_status        text,
    chart_number          text,
    email_address         text,
    primary_provider_id   bigint,
    primary_guarantor_id  bigint,
    preferred_location_id bigint,
    first_visit_date      date,
    last_modified         timestamptz,
    raw                   jsonb NOT NULL,
    synced_at             timestamptz NOT NULL,
    CONSTRAINT patients_pkey PRIMARY KEY (practice_id, id)
);

CREATE TABLE appointments (
    practice_id      text NOT NULL,
    id               bigint NOT NULL,
    start_at         timestamptz,
    end_at           timestamptz,
    duration_minutes bigint,
    status           text,
    booking_type     text,
    patient_id       bigint,
    provider_id      bigint,
    operatory_id     bigint,
    location_id      bigint,
    note             text,
    last_modified    timestamptz,
    raw              jsonb NOT NULL,
    synced_at        timestamptz NOT NULL,
    CONSTRAINT appointments_pkey PRIMARY KEY (practice_id, id)
);
CREATE INDEX appointments_start_at_idx ON appointments (practice_id, start_at);

CREATE TABLE tx_cases (
    practice_id   text NOT NULL,
    id            bigint NOT NULL,
    name          text,
    status        text,
    patient_id    bigint,
    last_modified timestamptz,
    raw           jsonb NOT NULL,
    synced_at     timestamptz NOT NULL,
    CONSTRAINT tx_cases_pkey PRIMARY KEY (practice_id, id)
);

CREATE TABLE visits (
    practice_id   text NOT NULL,
    id            bigint NOT NULL,
    patient_id    bigint,
    tx_case_id    bigint,
    location_id   bigint,
    last_modified timestamptz,
    raw           jsonb NOT NULL,
    synced_at     timestamptz NOT NULL,
    CONSTRAINT visits_pkey PRIMARY KEY (practice_id, id)
);

CREATE TABLE patient_procedures (
    practice_id    text NOT NULL,
    id             bigint NOT NULL,
    patient_id     bigint,
    visit_id       bigint,
    provider_id    bigint,
    location_id    bigint,
    procedure_code text,
    fee            numeric(14,2),
    status         text,
    procedure_date date,
    last_modified  timestamptz,
    raw            jsonb NOT NULL,
    synced_at      timestamptz NOT NULL,
    CONSTRAINT patient_procedures_pkey PRIMARY KEY (practice_id, id)
);
CREATE INDEX patient_procedures_procedure_date_idx ON patient_procedures (practice_id, procedure_date);

CREATE TABLE patient_insurance_plans (
    practice_id   text NOT NULL,
    id            bigint NOT NULL,
    patient_id    bigint,
    carrier_id    bigint,
    last_modified timestamptz,
    raw           jsonb NOT NULL,
    synced_at     timestamptz NOT NULL,
    CONSTRAINT patient_insurance_plans_pkey PRIMARY KEY (practice_id, id)
);

CREATE TABLE insurance_carriers (
    practice_id   text NOT NULL,
    id            bigint NOT NULL,
    name          text,
    last_modified timestamptz,
    raw           jsonb NOT NULL,
    synced_at     timestamptz NOT NULL,
    CONSTRAINT insurance_carriers_pkey PRIMARY KEY (practice_id, id)
);

CREATE TABLE transactions (
    practice_id      text NOT NULL,
    id               bigint NOT NULL,
    transaction_type text,
    amount           numeric(14,2),
    transaction_date date,
    patient_id       bigint,
    location_id      bigint,
    last_modified    timestamptz,
    raw              jsonb NOT NULL,
    synced_at        timestamptz NOT NULL,
    CONSTRAINT transactions_pkey PRIMARY KEY (practice_id, id)
);
CREATE INDEX transactions_transaction_date_idx ON transactions (practice_id, transaction_date);
