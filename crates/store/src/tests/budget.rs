//! The fleet's request budgets: one row per organization, changed under
//! its row lock, on both backends.

use model::OrgBudget;
use time::OffsetDateTime;
use time::macros::datetime;

use crate::Store;

on_both_backends!(
    a_budget_is_made_once_and_changes_round_trip,
    concurrent_claims_never_lose_an_update,
    an_organization_s_own_limit_is_kept_across_claims,
);

const T0: OffsetDateTime = datetime!(2026-12-04 08:00 UTC);

fn fresh(organization_id: &str) -> OrgBudget {
    OrgBudget {
        organization_id: organization_id.to_owned(),
        rate: 20.0,
        limit: 20.0,
        configured: None,
        next_at: T0,
        paused_until: None,
        decreased_at: None,
        adjusted_at: T0,
        granted: 0,
        throttled: 0,
    }
}

async fn a_budget_is_made_once_and_changes_round_trip(store: Store) {
    let seen = store
        .update_budget("org-b", |_| fresh("org-b"), |b, _| b.clone())
        .await
        .expect("a first claim makes the row");
    assert_eq!(seen, fresh("org-b"));
    let changed = OrgBudget {
        rate: 12.5,
        next_at: datetime!(2026-12-04 08:00:01.25 UTC),
        paused_until: Some(datetime!(2026-12-04 09:00 UTC)),
        decreased_at: Some(datetime!(2026-12-04 08:00:00.5 UTC)),
        adjusted_at: datetime!(2026-12-04 08:00:00.75 UTC),
        granted: 7,
        throttled: 2,
        ..fresh("org-b")
    };
    let written = changed.clone();
    store
        .update_budget(
            "org-b",
            |_| panic!("the row exists: no fresh one"),
            move |b, _| *b = written,
        )
        .await
        .expect("the change is written");
    store
        .update_budget("org-a", |_| fresh("org-a"), |_, _| ())
        .await
        .expect("a second organization");
    let all = store.budgets().await.expect("budgets list");
    assert_eq!(all, vec![fresh("org-a"), changed]);
}

async fn concurrent_claims_never_lose_an_update(store: Store) {
    let claims: Vec<_> = (0..24)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .update_budget(
                        "org",
                        |_| fresh("org"),
                        |b, _| {
                            let first = b.granted;
                            b.granted += 1;
                            first
                        },
                    )
                    .await
                    .expect("a claim")
            })
        })
        .collect();
    let mut firsts = Vec::new();
    for claim in claims {
        firsts.push(claim.await.expect("the claim's task ends"));
    }
    firsts.sort_unstable();
    // Each claim saw the one before it: slots are never handed out twice.
    assert_eq!(firsts, (0..24).collect::<Vec<i64>>());
    let all = store.budgets().await.expect("budgets list");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].granted, 24);
}

async fn an_organization_s_own_limit_is_kept_across_claims(store: Store) {
    store
        .configure_budget("org", Some(5.0), |_| fresh("org"))
        .await
        .expect("a limit for an organization with no row yet");
    let configured = store
        .update_budget(
            "org",
            |_| panic!("configuring made the row"),
            |b, _| {
                b.rate = 3.0;
                b.configured
            },
        )
        .await
        .expect("a claim");
    assert_eq!(configured, Some(5.0));
    let all = store.budgets().await.expect("budgets list");
    assert_eq!((all[0].configured, all[0].rate), (Some(5.0), 3.0));
    store
        .configure_budget("org", None, |_| fresh("org"))
        .await
        .expect("back to the default");
    let all = store.budgets().await.expect("budgets list");
    assert_eq!((all[0].configured, all[0].rate), (None, 3.0));
}
