//! The fleet's request budget, as the Ascend client sees it
//! ([`RequestBudget`]): every worker process, job and chunk of an
//! organization draws from the organization's one row in the store
//! (`sync_core::budget` has the rules).
//!
//! A process claims a slice of send slots at a time (as many as its tasks
//! are waiting for, at most a quarter of a second's worth) and hands them
//! out in order, one per request, each at its time. One claim is in flight
//! per organization per process; the other tasks wait for its slots. A
//! `429` drops the process's unused slots, pauses the organization here at
//! once and in the store for the fleet.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ascend_client::{BudgetFuture, BudgetRefusal, OrganizationId, RequestBudget};
use store::Store;
use sync_core::budget::{self, Claim, MAX_PAUSE, Policy};
use time::OffsetDateTime;
use tokio::time::Instant;

/// Slots left over for longer than this are not sent (they would go as a
/// burst the fleet's schedule did not plan).
const STALE: Duration = Duration::from_millis(250);

/// A slice is at most this much of the rate's sending.
const SLICE: f64 = 0.25;

/// The request budget kept in the store for the whole fleet.
pub struct FleetBudget {
    store: Store,
    policy: Policy,
    orgs: Mutex<HashMap<OrganizationId, Arc<Slot>>>,
}

impl fmt::Debug for FleetBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetBudget")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// One organization's slots in this process.
struct Slot {
    local: tokio::sync::Mutex<Local>,
    /// Tasks waiting in [`FleetBudget::acquire`].
    waiting: AtomicU32,
}

struct Local {
    /// When the next slot may be sent.
    next: Instant,
    interval: Duration,
    /// Slots claimed and not handed out.
    left: u32,
    /// When they were claimed.
    claimed_at: Instant,
    /// Most slots per claim, from the last rate seen.
    max_slice: u32,
    /// A pause seen here (a 429, or the store's).
    paused_until: Option<Instant>,
}

/// Counts a waiting task for as long as it lives.
struct Waiting<'a>(&'a AtomicU32);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicU32) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl FleetBudget {
    /// The budget in `store`, by `policy` (its default limit is the
    /// fleet's per organization).
    pub fn new(store: Store, policy: Policy) -> FleetBudget {
        FleetBudget {
            store,
            policy,
            orgs: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, organization: &OrganizationId) -> Arc<Slot> {
        let mut orgs = self.orgs.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(orgs.entry(organization.clone()).or_insert_with(|| {
            Arc::new(Slot {
                local: tokio::sync::Mutex::new(Local {
                    next: Instant::now(),
                    interval: Duration::ZERO,
                    left: 0,
                    claimed_at: Instant::now(),
                    max_slice: slice_for(self.policy.default_limit),
                    paused_until: None,
                }),
                waiting: AtomicU32::new(0),
            })
        }))
    }

    async fn take(
        &self,
        organization: &OrganizationId,
        max_wait: Duration,
    ) -> Result<(), BudgetRefusal> {
        let slot = self.slot(organization);
        let _waiting = Waiting::enter(&slot.waiting);
        loop {
            let mut local = slot.local.lock().await;
            let now = Instant::now();
            if let Some(until) = local.paused_until {
                if until > now {
                    let left = until - now;
                    if left > max_wait {
                        return Err(BudgetRefusal::Paused { left });
                    }
                    drop(local);
                    tokio::time::sleep_until(until).await;
                    continue;
                }
                local.paused_until = None;
            }
            // Slots from a claim some time ago whose time has long passed
            // (their tasks went away) are dropped, not sent as a burst.
            if local.left > 0 && local.next + STALE < now && local.claimed_at + STALE < now {
                local.left = 0;
            }
            if local.left > 0 {
                let at = local.next;
                let interval = local.interval;
                local.next += interval;
                local.left -= 1;
                drop(local);
                tokio::time::sleep_until(at).await;
                return Ok(());
            }
            let want = slot
                .waiting
                .load(Ordering::Relaxed)
                .clamp(1, local.max_slice);
            let policy = &self.policy;
            let claimed = self
                .store
                .update_budget(
                    organization.as_str(),
                    |now| budget::fresh(organization.as_str(), policy, now),
                    |b, now| (budget::claim(b, policy, now, want), now, b.rate),
                )
                .await
                .map_err(|e| BudgetRefusal::Unavailable {
                    reason: e.to_string(),
                })?;
            let received = Instant::now();
            match claimed {
                (Claim::Paused { until }, at, _) => {
                    local.paused_until = Some(received + until_from(at, until));
                }
                (
                    Claim::Granted {
                        first_at,
                        interval,
                        count,
                    },
                    at,
                    rate,
                ) => {
                    local.next = shift(received, at, first_at);
                    local.interval = interval;
                    local.left = count;
                    local.claimed_at = received;
                    local.max_slice = slice_for(rate);
                }
            }
        }
    }

    async fn report(&self, organization: &OrganizationId, retry_after: Option<Duration>) {
        let slot = self.slot(organization);
        {
            let mut local = slot.local.lock().await;
            local.left = 0;
            if let Some(wait) = retry_after {
                let until = Instant::now() + wait.min(MAX_PAUSE);
                if local.paused_until.is_none_or(|current| current < until) {
                    local.paused_until = Some(until);
                }
            }
        }
        let policy = &self.policy;
        let reported = self
            .store
            .update_budget(
                organization.as_str(),
                |now| budget::fresh(organization.as_str(), policy, now),
                |b, now| budget::throttle(b, policy, now, retry_after),
            )
            .await;
        if let Err(error) = reported {
            tracing::warn!(
                organization_id = %organization,
                error = %error,
                "a 429 could not be recorded in the fleet's budget; this worker pauses on its own"
            );
        }
    }
}

impl RequestBudget for FleetBudget {
    fn acquire<'a>(
        &'a self,
        organization: &'a OrganizationId,
        max_wait: Duration,
    ) -> BudgetFuture<'a, Result<(), BudgetRefusal>> {
        Box::pin(self.take(organization, max_wait))
    }

    fn throttled<'a>(
        &'a self,
        organization: &'a OrganizationId,
        retry_after: Option<Duration>,
    ) -> BudgetFuture<'a, ()> {
        Box::pin(self.report(organization, retry_after))
    }
}

/// Most slots per claim at `rate` requests per second.
fn slice_for(rate: f64) -> u32 {
    let slots = (rate * SLICE).floor();
    if slots.is_finite() && slots >= 1.0 {
        // Bounded above by the clamp; the cast cannot truncate.
        slots.min(64.0) as u32
    } else {
        1
    }
}

/// How long from `now` (the store's reading) until `until`.
fn until_from(now: OffsetDateTime, until: OffsetDateTime) -> Duration {
    Duration::try_from(until - now).unwrap_or(Duration::ZERO)
}

/// `first_at` (on the store's clock, read at `now`) as an instant here,
/// taking `received` as `now`. A time in the past is sent at once.
fn shift(received: Instant, now: OffsetDateTime, first_at: OffsetDateTime) -> Instant {
    match Duration::try_from(first_at - now) {
        Ok(ahead) => received + ahead,
        Err(_) => {
            let behind = Duration::try_from(now - first_at).unwrap_or(Duration::ZERO);
            received.checked_sub(behind).unwrap_or(received)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_is_a_quarter_second_of_sending_between_one_and_sixty_four() {
        assert_eq!(slice_for(0.5), 1);
        assert_eq!(slice_for(10.0), 2);
        assert_eq!(slice_for(20.0), 5);
        assert_eq!(slice_for(1e9), 64);
        assert_eq!(slice_for(f64::NAN), 1);
    }
}
