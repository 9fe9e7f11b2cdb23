//! Where an organization's request budget is kept.
//!
//! Every HTTP attempt first takes one request from its organization's
//! [`RequestBudget`], and every `429` is reported to it. The client knows
//! nothing of where the budget lives: [`LocalBudget`] keeps it in this
//! process (a `governor` limiter and a pause per organization); a fleet of
//! worker processes shares one budget per organization through an
//! implementation kept in a database, so adding workers adds no load on
//! Ascend.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use crate::ids::OrganizationId;

/// A boxed future, for [`RequestBudget`]'s methods.
pub type BudgetFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where each organization's request budget is kept.
pub trait RequestBudget: Send + Sync + fmt::Debug {
    /// Waits until one more request for `organization` may be sent. A
    /// pause longer than `max_wait` is not waited out:
    /// [`BudgetRefusal::Paused`] says how long is left.
    fn acquire<'a>(
        &'a self,
        organization: &'a OrganizationId,
        max_wait: Duration,
    ) -> BudgetFuture<'a, Result<(), BudgetRefusal>>;

    /// Ascend answered `429` for `organization`, with `Retry-After` if it
    /// said one: no request of the organization is sent before it has
    /// passed, and the budget may slow down.
    fn throttled<'a>(
        &'a self,
        organization: &'a OrganizationId,
        retry_after: Option<Duration>,
    ) -> BudgetFuture<'a, ()>;
}

/// Why no request may be sent now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetRefusal {
    /// The organization is paused (a `Retry-After`) for longer than the
    /// caller waits.
    #[error("the organization's requests are paused for {}s more (Retry-After)", left.as_secs())]
    Paused {
        /// How long the pause still lasts.
        left: Duration,
    },
    /// The budget could not be read (its database is unreachable). The
    /// call fails transiently and is retried.
    #[error("the request budget cannot be read: {reason}")]
    Unavailable {
        /// Why, for an operator.
        reason: String,
    },
}

/// Each organization's budget in this process only: a steady rate with a
/// burst (`governor`), and a pause after a `429` with `Retry-After` (at
/// most a day). For one process (the `pull` command, tests); a fleet
/// shares its budget through the database instead.
pub struct LocalBudget {
    quota: Quota,
    orgs: Mutex<HashMap<OrganizationId, Arc<LocalOrg>>>,
}

struct LocalOrg {
    limiter: DefaultDirectRateLimiter,
    paused_until: Mutex<Option<Instant>>,
}

impl fmt::Debug for LocalBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalBudget")
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

/// The longest pause a `Retry-After` can set.
const MAX_PAUSE: Duration = Duration::from_secs(24 * 3600);

impl LocalBudget {
    /// `requests_per_second` per organization, up to `burst` at once.
    pub fn new(requests_per_second: NonZeroU32, burst: NonZeroU32) -> LocalBudget {
        LocalBudget {
            quota: Quota::per_second(requests_per_second).allow_burst(burst),
            orgs: Mutex::new(HashMap::new()),
        }
    }

    fn org(&self, organization: &OrganizationId) -> Arc<LocalOrg> {
        let mut orgs = self.orgs.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(orgs.entry(organization.clone()).or_insert_with(|| {
            Arc::new(LocalOrg {
                limiter: RateLimiter::direct(self.quota),
                paused_until: Mutex::new(None),
            })
        }))
    }
}

impl RequestBudget for LocalBudget {
    fn acquire<'a>(
        &'a self,
        organization: &'a OrganizationId,
        max_wait: Duration,
    ) -> BudgetFuture<'a, Result<(), BudgetRefusal>> {
        Box::pin(async move {
            let org = self.org(organization);
            loop {
                let until = *org
                    .paused_until
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match until {
                    Some(until) if until > Instant::now() => {
                        let left = until - Instant::now();
                        if left > max_wait {
                            return Err(BudgetRefusal::Paused { left });
                        }
                        tokio::time::sleep_until(until).await;
                    }
                    _ => break,
                }
            }
            org.limiter.until_ready().await;
            Ok(())
        })
    }

    fn throttled<'a>(
        &'a self,
        organization: &'a OrganizationId,
        retry_after: Option<Duration>,
    ) -> BudgetFuture<'a, ()> {
        Box::pin(async move {
            let Some(wait) = retry_after else { return };
            let org = self.org(organization);
            let until = Instant::now() + wait.min(MAX_PAUSE);
            let mut paused = org
                .paused_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if paused.is_none_or(|current| current < until) {
                *paused = Some(until);
            }
        })
    }
}
