//! Connections on both backends: sealed credentials, the lifecycle with
//! its audit rows, resuming, rewrap's compare-and-swap, admin tokens.

use time::Duration;

use super::{PRACTICE, new_practice, procedure, row};
use crate::{
    AuditOutcome, Checkpoint, LandedRow, NewAdminToken, PracticeStatus, Role, SealedCredentials,
    Store, StoreError, SyncPhase, Table,
};

on_both_backends!(
    connect_stores_sealed_credentials_and_refuses_a_second_connect,
    the_lifecycle_is_audited_and_remove_keeps_data,
    a_practice_resumes_where_it_was,
    auth_failed_never_overrides_a_person,
    rewrap_is_compare_and_swap,
    admin_tokens_are_found_by_hash_only,
);

const ACTOR: &str = "cli:alice";

fn sealed(tag: u8) -> SealedCredentials {
    SealedCredentials {
        token_url: "https://test.hs1api.com/oauth/client_credential/accesstoken".to_owned(),
        ciphertext: vec![tag; 40],
        nonce: vec![tag; 12],
        encrypted_data_key: vec![tag ^ 0xff; 60],
        key_id: format!("local:{tag:02x}"),
    }
}

async fn connect(store: &Store, id: &str, tag: u8) {
    store
        .connect_practice(&new_practice(id), &sealed(tag), ACTOR)
        .await
        .expect("connects");
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

async fn connect_stores_sealed_credentials_and_refuses_a_second_connect(store: Store) {
    let practice = store
        .connect_practice(&new_practice(PRACTICE), &sealed(1), ACTOR)
        .await
        .expect("connects");
    assert_eq!(practice.status, PracticeStatus::InitialSync);
    assert!(practice.status_changed_at.is_some());
    assert_eq!(
        store.practice_credentials(PRACTICE).await.expect("reads"),
        Some(sealed(1)),
        "the sealed form round-trips byte for byte"
    );
    let due = store
        .claim_due_practices(now(), 10, Duration::minutes(5), "tick")
        .await
        .expect("claims");
    assert_eq!(due.len(), 1, "a new practice's initial sync is due at once");

    let err = store
        .connect_practice(&new_practice(PRACTICE), &sealed(2), ACTOR)
        .await
        .expect_err("already connected");
    assert!(matches!(err, StoreError::AlreadyConnected { .. }), "{err}");
    assert_eq!(
        store.practice_credentials(PRACTICE).await.expect("reads"),
        Some(sealed(1)),
        "a refused connect changes nothing"
    );

    // A practice registered without credentials (by `sync`, or before
    // credentials were stored) can be connected.
    store
        .upsert_practice(&new_practice("bare"))
        .await
        .expect("registers");
    connect(&store, "bare", 3).await;
    assert_eq!(
        store.practice_credentials("bare").await.expect("reads"),
        Some(sealed(3))
    );
    assert_eq!(
        store.all_credentials().await.expect("lists").len(),
        2,
        "one row per practice"
    );
}

async fn the_lifecycle_is_audited_and_remove_keeps_data(store: Store) {
    connect(&store, PRACTICE, 1).await;
    let raw = procedure(1, "2026-03-04T10:00:00.000Z", "10.00");
    let rows: Vec<LandedRow<'_>> = vec![row(1, Some("2026-03-04T10:00:00.000Z"), &raw)];
    store
        .land_page(PRACTICE, Table::PatientProcedures, &rows, Checkpoint::None)
        .await
        .expect("lands");
    store
        .claim_due_practices(now(), 10, Duration::minutes(5), "tick-0")
        .await
        .expect("claims");

    let paused = store
        .disable_practice(PRACTICE, ACTOR)
        .await
        .expect("disables");
    assert_eq!(paused.status, PracticeStatus::Paused);
    let later = now() + Duration::hours(2);
    assert!(
        store
            .claim_due_practices(later, 10, Duration::minutes(5), "tick-1")
            .await
            .expect("claims")
            .is_empty(),
        "a paused practice is not scheduled"
    );
    store
        .disable_practice(PRACTICE, ACTOR)
        .await
        .expect("idempotent");
    assert!(
        store
            .store_rewrapped_key(PRACTICE, &sealed(1).encrypted_data_key, &[9; 60], "k2")
            .await
            .expect("rewraps"),
        "a paused practice keeps its credentials"
    );

    let enabled = store
        .enable_practice(PRACTICE, ACTOR)
        .await
        .expect("enables");
    assert_eq!(enabled.status, PracticeStatus::InitialSync);
    assert_eq!(
        store
            .claim_due_practices(later, 10, Duration::minutes(5), "tick-2")
            .await
            .expect("claims")
            .len(),
        1,
        "an enabled practice is due at once"
    );

    let removed = store
        .remove_practice(PRACTICE, ACTOR)
        .await
        .expect("removes");
    assert_eq!(removed.status, PracticeStatus::Removed);
    assert_eq!(
        store.practice_credentials(PRACTICE).await.expect("reads"),
        None,
        "remove destroys the credentials"
    );
    assert_eq!(
        store
            .count(PRACTICE, Table::PatientProcedures)
            .await
            .expect("counts"),
        1,
        "remove keeps every landed row"
    );
    assert!(
        store
            .claim_due_practices(later + Duration::hours(1), 10, Duration::minutes(5), "t3")
            .await
            .expect("claims")
            .is_empty()
    );
    for err in [
        store
            .enable_practice(PRACTICE, ACTOR)
            .await
            .expect_err("removed"),
        store
            .disable_practice(PRACTICE, ACTOR)
            .await
            .expect_err("removed"),
        store
            .replace_credentials(PRACTICE, &sealed(5), ACTOR)
            .await
            .expect_err("removed"),
    ] {
        assert!(matches!(err, StoreError::PracticeRemoved { .. }), "{err}");
    }
    assert!(matches!(
        store.disable_practice("nobody", ACTOR).await,
        Err(StoreError::UnknownPractice { .. })
    ));

    let log = store.audit_log(Some(PRACTICE), 100).await.expect("reads");
    let actions: Vec<&str> = log.iter().rev().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "practice.add",
            "practice.disable",
            "practice.disable",
            "practice.enable",
            "practice.remove"
        ]
    );
    assert!(
        log.iter()
            .all(|r| r.actor == ACTOR && r.outcome == AuditOutcome::Done)
    );
    assert_eq!(
        log[2].detail.as_deref(),
        Some("no change: it was already so"),
        "the second disable changed nothing and says so"
    );
    assert!(
        log[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("credentials destroyed"))
    );
}

async fn a_practice_resumes_where_it_was(store: Store) {
    connect(&store, PRACTICE, 1).await;
    for table in Table::ALL {
        store
            .set_sync_phase(PRACTICE, table, SyncPhase::Incremental)
            .await
            .expect("phase");
    }
    store
        .set_practice_status(PRACTICE, PracticeStatus::Active, None)
        .await
        .expect("active");
    store
        .disable_practice(PRACTICE, ACTOR)
        .await
        .expect("disables");
    let enabled = store
        .enable_practice(PRACTICE, ACTOR)
        .await
        .expect("enables");
    assert_eq!(
        enabled.status,
        PracticeStatus::Active,
        "an initial sync that finished is not run again"
    );
    store
        .remove_practice(PRACTICE, ACTOR)
        .await
        .expect("removes");
    let again = store
        .connect_practice(&new_practice(PRACTICE), &sealed(7), ACTOR)
        .await
        .expect("a removed practice connects again");
    assert_eq!(again.status, PracticeStatus::Active);
    assert_eq!(
        store.practice_credentials(PRACTICE).await.expect("reads"),
        Some(sealed(7))
    );
}

fn failure(detail: &str, credential_version: i64) -> crate::AuthFailure {
    crate::AuthFailure {
        detail: detail.into(),
        credential_version,
        actor: "worker:w-1".into(),
    }
}

async fn auth_failed_never_overrides_a_person(store: Store) {
    connect(&store, PRACTICE, 1).await;
    let version = |store: Store| async move {
        store
            .credentials_for_job(PRACTICE)
            .await
            .expect("reads")
            .expect("connected")
            .1
    };
    let v1 = version(store.clone()).await;
    assert_eq!(
        store
            .get_practice(PRACTICE)
            .await
            .expect("reads")
            .expect("exists")
            .credential_version,
        v1
    );
    assert!(
        store
            .mark_auth_failed(PRACTICE, &failure("401 from the token endpoint", v1))
            .await
            .expect("marks")
    );
    let failed = store
        .get_practice(PRACTICE)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(failed.status, PracticeStatus::AuthFailed);
    assert_eq!(
        failed.status_detail.as_deref(),
        Some("401 from the token endpoint")
    );
    let since = failed.status_changed_at.expect("since when");
    let audit = store.audit_log(Some(PRACTICE), 10).await.expect("reads");
    assert!(
        audit
            .iter()
            .any(|r| r.action == "practice.auth_failed" && r.actor == "worker:w-1"),
        "marking auth_failed is audited: {audit:?}"
    );

    let resumed = store
        .replace_credentials(PRACTICE, &sealed(2), ACTOR)
        .await
        .expect("new credentials");
    assert_eq!(resumed.status, PracticeStatus::InitialSync);
    assert_eq!(resumed.status_detail, None);
    assert!(resumed.status_changed_at.expect("set") >= since);
    let v2 = version(store.clone()).await;
    assert!(v2 > v1, "a rotation raises the version: {v1} -> {v2}");

    // A job that opened the old credentials fails late: the rotation wins.
    assert!(
        !store
            .mark_auth_failed(PRACTICE, &failure("late 401 with the old secret", v1))
            .await
            .expect("runs"),
        "a job of an older credential version undid a rotation"
    );
    let still = store
        .get_practice(PRACTICE)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(still.status, PracticeStatus::InitialSync);

    store
        .disable_practice(PRACTICE, ACTOR)
        .await
        .expect("disables");
    assert!(
        !store
            .mark_auth_failed(PRACTICE, &failure("late failure of a running job", v2))
            .await
            .expect("runs"),
        "a running job's auth failure does not undo a person's pause"
    );
    let paused = store
        .get_practice(PRACTICE)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(paused.status, PracticeStatus::Paused);
}

async fn rewrap_is_compare_and_swap(store: Store) {
    connect(&store, PRACTICE, 1).await;
    let old = sealed(1).encrypted_data_key;
    store
        .replace_credentials(PRACTICE, &sealed(2), ACTOR)
        .await
        .expect("rotates");
    assert!(
        !store
            .store_rewrapped_key(PRACTICE, &old, &[7; 60], "k-new")
            .await
            .expect("runs"),
        "a rewrap of credentials replaced meanwhile is not stored"
    );
    assert_eq!(
        store.practice_credentials(PRACTICE).await.expect("reads"),
        Some(sealed(2))
    );
    assert!(
        store
            .store_rewrapped_key(PRACTICE, &sealed(2).encrypted_data_key, &[7; 60], "k-new")
            .await
            .expect("runs")
    );
    let now = store
        .practice_credentials(PRACTICE)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(now.encrypted_data_key, vec![7; 60]);
    assert_eq!(now.key_id, "k-new");
    assert_eq!(
        now.ciphertext,
        sealed(2).ciphertext,
        "the ciphertext is untouched"
    );
}

async fn admin_tokens_are_found_by_hash_only(store: Store) {
    connect(&store, PRACTICE, 1).await;
    let token = NewAdminToken {
        token_id: "0011223344556677".to_owned(),
        token_hash: [5; 32],
        role: Role::PracticeUser,
        practice_id: Some(PRACTICE.to_owned()),
        label: "front desk".to_owned(),
        created_by: ACTOR.to_owned(),
    };
    store.create_admin_token(&token).await.expect("creates");
    let found = store
        .admin_token_by_hash(&[5; 32])
        .await
        .expect("looks up")
        .expect("found");
    assert_eq!(found.role, Role::PracticeUser);
    assert_eq!(found.practice_id.as_deref(), Some(PRACTICE));
    assert_eq!(found.revoked_at, None);
    assert_eq!(
        store.admin_token_by_hash(&[6; 32]).await.expect("looks up"),
        None
    );
    // The database refuses a practice_user token without a practice, and
    // an admin token tied to one.
    for (role, practice_id) in [
        (Role::PracticeUser, None),
        (Role::CloudPmsAdmin, Some(PRACTICE.to_owned())),
    ] {
        let err = store
            .create_admin_token(&NewAdminToken {
                token_id: format!("bad-{role}"),
                token_hash: [role as u8 + 10; 32],
                role,
                practice_id,
                ..token.clone()
            })
            .await
            .expect_err("refused");
        assert!(matches!(err, StoreError::Constraint { .. }), "{err}");
    }
    assert!(
        store
            .revoke_admin_token(&token.token_id, ACTOR)
            .await
            .expect("revokes")
    );
    assert!(
        !store
            .revoke_admin_token(&token.token_id, ACTOR)
            .await
            .expect("runs"),
        "a revoked token is not revoked twice"
    );
    let revoked = store
        .admin_token_by_hash(&[5; 32])
        .await
        .expect("looks up")
        .expect("still listed");
    assert!(revoked.revoked_at.is_some());
    let log = store.audit_log(None, 100).await.expect("reads");
    assert!(log.iter().any(|r| r.action == "admin-token.create"));
    assert!(log.iter().any(|r| r.action == "admin-token.revoke"));
}
