//! The rules as a table: every role against every action, on its own
//! practice and on another; then the gate against a real store.

use secrecy::{ExposeSecret, SecretString};
use store::{AuditOutcome, NewPractice, Store};

use crate::{AccessError, Action, Gate, Principal, Refusal, Role, decide};

const OWN: &str = "practice-own";
const OTHER: &str = "practice-other";

fn principal(role: Role) -> Principal {
    Principal {
        actor: format!("token:{role}"),
        role,
        practice_id: (role == Role::PracticeUser).then(|| OWN.to_owned()),
    }
}

/// Each action on `practice`, by its row label.
fn actions(practice: &str) -> Vec<Action> {
    let p = || practice.to_owned();
    vec![
        Action::ViewFleet,
        Action::ViewPractice(p()),
        Action::UpdateSettings(p()),
        Action::ForceSync(p()),
        Action::Resync(p()),
        Action::RetryWriteback(p()),
        Action::AddPractice(p()),
        Action::RotateCredentials(p()),
        Action::DisablePractice(p()),
        Action::EnablePractice(p()),
        Action::RemovePractice(p()),
        Action::RedriveDeadLetters,
        Action::RewrapKeys,
        Action::ManageTokens,
        Action::SubmitWriteback(p()),
        Action::SetBudget,
    ]
}

/// Expected answers, written out by hand: action name, then whether
/// cloud_pms_admin, practice_user (own practice), practice_user (another
/// practice) and readonly may do it.
const TABLE: &[(&str, bool, bool, bool, bool)] = &[
    // action                        admin  own    other  readonly
    ("fleet.view", true, false, false, true),
    ("practice.view", true, true, false, true),
    ("practice.settings", true, true, false, false),
    ("practice.force-sync", true, true, false, false),
    ("practice.resync", true, false, false, false),
    ("writeback.retry", true, false, false, false),
    ("practice.add", true, false, false, false),
    ("practice.rotate-credentials", true, false, false, false),
    ("practice.disable", true, false, false, false),
    ("practice.enable", true, false, false, false),
    ("practice.remove", true, false, false, false),
    ("dlq.redrive", true, false, false, false),
    ("keys.rewrap", true, false, false, false),
    ("admin-token.manage", true, false, false, false),
    ("writeback.submit", true, true, false, false),
    ("budget.set", true, false, false, false),
];

#[test]
fn every_role_against_every_action() {
    let own = actions(OWN);
    let other = actions(OTHER);
    assert_eq!(own.len(), TABLE.len(), "the table covers every action");
    for ((own_action, other_action), &(name, admin, user_own, user_other, readonly)) in
        own.iter().zip(&other).zip(TABLE)
    {
        assert_eq!(own_action.name(), name, "the table's rows are in order");
        let cases = [
            (Role::CloudPmsAdmin, own_action, admin),
            (Role::CloudPmsAdmin, other_action, admin),
            (Role::PracticeUser, own_action, user_own),
            (Role::PracticeUser, other_action, user_other),
            (Role::Readonly, own_action, readonly),
            (Role::Readonly, other_action, readonly),
        ];
        for (role, action, allowed) in cases {
            let got = decide(&principal(role), action);
            assert_eq!(
                got.is_ok(),
                allowed,
                "{role} on {action:?}: expected {}, got {got:?}",
                if allowed { "allowed" } else { "refused" }
            );
        }
    }
}

#[test]
fn a_practice_user_on_another_practice_is_told_why() {
    let got = decide(
        &principal(Role::PracticeUser),
        &Action::ForceSync(OTHER.to_owned()),
    );
    assert_eq!(
        got,
        Err(Refusal::OtherPractice {
            own: OWN.to_owned(),
            asked: OTHER.to_owned()
        })
    );
    let orphan = Principal {
        practice_id: None,
        ..principal(Role::PracticeUser)
    };
    assert_eq!(
        decide(&orphan, &Action::ViewPractice(OWN.to_owned())),
        Err(Refusal::NoPractice)
    );
}

async fn store_with_practices() -> Store {
    let store = Store::connect("sqlite::memory:")
        .await
        .expect("SQLite opens");
    store.migrate().await.expect("migrations apply");
    for id in [OWN, OTHER] {
        store
            .upsert_practice(&NewPractice {
                practice_id: id.to_owned(),
                organization_id: "0123456789abcdef01234567".to_owned(),
                location_id: 1,
                api_base: "https://test.hs1api.com/ascend-gateway/api".to_owned(),
                sync_interval_minutes: 15,
            })
            .await
            .expect("practice registers");
    }
    store
}

#[tokio::test]
async fn tokens_authenticate_as_their_role_and_refusals_are_audited() {
    let store = store_with_practices().await;
    let gate = Gate::new(store.clone());
    let operator = Principal::operator("alice");
    let user = gate
        .create_token(&operator, Role::PracticeUser, Some(OWN), "front desk")
        .await
        .expect("an admin creates a practice_user token");
    let reader = gate
        .create_token(&operator, Role::Readonly, None, "analyst")
        .await
        .expect("an admin creates a readonly token");

    let who = gate.authenticate(&user.token).await.expect("authenticates");
    assert_eq!(who.role, Role::PracticeUser);
    assert_eq!(who.practice_id.as_deref(), Some(OWN));
    assert_eq!(who.actor, format!("token:{}", user.record.token_id));

    gate.authorize(&who, &Action::ForceSync(OWN.to_owned()))
        .await
        .expect("its own practice");
    let err = gate
        .authorize(&who, &Action::ForceSync(OTHER.to_owned()))
        .await
        .expect_err("another practice");
    assert!(matches!(
        err,
        AccessError::Refused(Refusal::OtherPractice { .. })
    ));
    let audit = store.audit_log(Some(OTHER), 10).await.expect("reads");
    assert_eq!(audit.len(), 1, "the refusal is audited: {audit:?}");
    assert_eq!(audit[0].actor, who.actor);
    assert_eq!(audit[0].action, "practice.force-sync");
    assert_eq!(audit[0].outcome, AuditOutcome::Refused);
    assert!(
        audit[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains(OWN) && d.contains(OTHER))
    );

    // A readonly holder cannot mint tokens for itself; that is audited too.
    let reader_who = gate.authenticate(&reader.token).await.expect("auth");
    let err = gate
        .create_token(&reader_who, Role::CloudPmsAdmin, None, "escalate")
        .await
        .expect_err("readonly cannot create tokens");
    assert!(matches!(err, AccessError::Refused(_)));
    let log = store.audit_log(None, 50).await.expect("reads");
    assert!(log.iter().any(|r| r.actor == reader_who.actor
        && r.action == "admin-token.manage"
        && r.outcome == AuditOutcome::Refused));
    assert_eq!(
        log.iter()
            .filter(|r| r.action == "admin-token.create")
            .count(),
        2,
        "each created token is audited, the refused one is not created"
    );

    // Revoked, altered, malformed and empty tokens authenticate as no one.
    let err = gate
        .revoke_token(&reader_who, &user.record.token_id)
        .await
        .expect_err("a readonly token may not revoke");
    assert!(matches!(err, AccessError::Refused(_)), "{err}");
    assert!(
        gate.revoke_token(&operator, &user.record.token_id)
            .await
            .expect("revokes")
    );
    assert!(
        !gate
            .revoke_token(&operator, &user.record.token_id)
            .await
            .expect("answers"),
        "a revoked token is not live"
    );
    let mut altered = reader.token.expose_secret().to_owned();
    altered.pop();
    altered.push(if reader.token.expose_secret().ends_with('0') {
        '1'
    } else {
        '0'
    });
    for bad in [
        user.token.expose_secret().to_owned(),
        altered,
        "Bearer x".to_owned(),
        String::new(),
        format!("asy_{}_zz", user.record.token_id),
    ] {
        let err = gate
            .authenticate(&SecretString::from(bad))
            .await
            .expect_err("not a live token");
        assert!(matches!(err, AccessError::Unauthenticated));
    }
}

#[tokio::test]
async fn token_roles_and_practices_must_go_together() {
    let store = store_with_practices().await;
    let gate = Gate::new(store.clone());
    let operator = Principal::operator("alice");
    for (role, practice) in [
        (Role::PracticeUser, None),
        (Role::Readonly, Some(OWN)),
        (Role::CloudPmsAdmin, Some(OWN)),
        (Role::PracticeUser, Some("no-such-practice")),
    ] {
        let err = gate
            .create_token(&operator, role, practice, "")
            .await
            .expect_err("refused");
        assert!(
            matches!(err, AccessError::BadToken(_) | AccessError::Store(_)),
            "{role} {practice:?}: {err}"
        );
    }
    assert!(store.list_admin_tokens().await.expect("lists").is_empty());
}

#[test]
fn minted_tokens_are_distinct_and_hash_to_what_is_stored() {
    let a = crate::mint_token().expect("mints");
    let b = crate::mint_token().expect("mints");
    assert_ne!(a.token.expose_secret(), b.token.expose_secret());
    assert_ne!(a.token_id, b.token_id);
    assert_eq!(crate::hash_token(a.token.expose_secret()), a.hash);
    assert!(a.token.expose_secret().starts_with("asy_"));
    assert!(a.token.expose_secret().contains(&a.token_id));
    assert_eq!(a.token.expose_secret().len(), 4 + 16 + 1 + 64);
}
