-- Practice connections: sealed credentials, the audit log, admin tokens.
-- Mirrors the Postgres migration; timestamps are TEXT in the store's
-- fixed-width UTC form, bytes are BLOB.

-- When the practice's status last changed (auth_failed shows since when).
ALTER TABLE practices ADD COLUMN status_changed_at TEXT;

-- A practice's Ascend Client ID and Secret, sealed together by the vault
-- (envelope encryption, the encryption context naming the practice). Never
-- plaintext. One row per connected practice; removing a practice deletes
-- its row (the credentials are destroyed, the practice and its data kept).
CREATE TABLE practice_credentials (
    practice_id        TEXT NOT NULL,
    token_url          TEXT NOT NULL,
    ciphertext         BLOB NOT NULL,
    nonce              BLOB NOT NULL,
    encrypted_data_key BLOB NOT NULL,
    key_id             TEXT NOT NULL,
    sealed_at          TEXT NOT NULL,
    CONSTRAINT practice_credentials_pkey PRIMARY KEY (practice_id),
    CONSTRAINT practice_credentials_practice_fkey FOREIGN KEY (practice_id)
        REFERENCES practices (practice_id) ON DELETE CASCADE,
    CONSTRAINT practice_credentials_nonce_check CHECK (length(nonce) = 12),
    CONSTRAINT practice_credentials_key_id_check CHECK (key_id <> '')
);

-- Who did what to which practice, and whether they were allowed. Written
-- in the same transaction as the change it records; never updated. No
-- foreign key: the log outlives anything done to a practice.
CREATE TABLE audit_log (
    audit_id    INTEGER NOT NULL,
    at          TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    practice_id TEXT,
    outcome     TEXT    NOT NULL,
    detail      TEXT,
    CONSTRAINT audit_log_pkey PRIMARY KEY (audit_id),
    CONSTRAINT audit_log_actor_check CHECK (actor <> ''),
    CONSTRAINT audit_log_outcome_check CHECK (outcome IN ('done', 'refused', 'failed'))
);

CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_practice_idx ON audit_log (practice_id, at);

-- Bearer tokens of the admin API. Only the SHA-256 of a token is kept; the
-- token itself is shown once, when it is created.
CREATE TABLE admin_tokens (
    token_id    TEXT NOT NULL,
    token_hash  BLOB NOT NULL,
    role        TEXT NOT NULL,
    practice_id TEXT,
    label       TEXT NOT NULL DEFAULT '',
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT,
    CONSTRAINT admin_tokens_pkey PRIMARY KEY (token_id),
    CONSTRAINT admin_tokens_hash_key UNIQUE (token_hash),
    CONSTRAINT admin_tokens_hash_check CHECK (length(token_hash) = 32),
    CONSTRAINT admin_tokens_role_check
        CHECK (role IN ('cloud_pms_admin', 'practice_user', 'readonly')),
    -- A practice_user token belongs to exactly one practice; no other role does.
    CONSTRAINT admin_tokens_practice_check
        CHECK ((role = 'practice_user') = (practice_id IS NOT NULL))
);
