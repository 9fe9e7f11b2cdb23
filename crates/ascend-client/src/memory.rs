//! The process's cap on answer bytes held in memory
//! ([`crate::ClientConfig::max_bytes_in_flight`]).
//!
//! An answer's bytes are reserved before its body is read (twice its
//! `Content-Length` while it is read and parsed, or twice
//! `max_response_bytes` when the length is not said) and, once parsed,
//! what the page's records take stays reserved until the [`Page`] is
//! dropped (the worker drops it when the page has landed). So pages
//! fetched ahead of landing, at any page size and any concurrency, never
//! hold more than the cap: the next read waits instead.
//!
//! No reservation is larger than the whole cap, so one answer never waits
//! for ever; and a reservation is only ever waited for by a task holding
//! none, so readers never wait on each other in a circle.
//!
//! [`Page`]: crate::Page

use std::fmt;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes are reserved in KiB.
const UNIT: usize = 1024;

/// The cap, shared by every handle of one [`crate::AscendClient`].
#[derive(Clone)]
pub(crate) struct ByteBudget {
    units: Arc<Semaphore>,
    capacity: u32,
}

/// Bytes reserved until dropped.
pub(crate) struct Held {
    permit: Option<OwnedSemaphorePermit>,
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kib = self
            .permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits);
        write!(f, "Held({kib} KiB)")
    }
}

impl ByteBudget {
    /// A cap of `bytes` (at least 1 KiB).
    pub(crate) fn new(bytes: usize) -> ByteBudget {
        let capacity = u32::try_from(bytes / UNIT)
            .unwrap_or(u32::MAX)
            .clamp(1, u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        ByteBudget {
            units: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
        }
    }

    /// Waits until `bytes` (at most the whole cap) can be held.
    pub(crate) async fn hold(&self, bytes: usize) -> Held {
        let units = self.units_for(bytes);
        let permit = Arc::clone(&self.units).acquire_many_owned(units).await.ok();
        Held { permit }
    }

    /// KiB units now free (tests).
    #[cfg(test)]
    pub(crate) fn available_kib(&self) -> usize {
        self.units.available_permits()
    }

    fn units_for(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.capacity)
    }
}

impl Held {
    /// Gives back what is held beyond `bytes` (rounded up to a KiB).
    pub(crate) fn shrink_to(&mut self, bytes: usize) {
        let keep = bytes.div_ceil(UNIT).max(1);
        if let Some(permit) = self.permit.as_mut()
            && permit.num_permits() > keep
        {
            drop(permit.split(permit.num_permits() - keep));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn holding_waits_for_room_and_never_asks_more_than_the_cap() {
        let budget = ByteBudget::new(64 * 1024);
        let mut first = budget.hold(50 * 1024).await;
        assert_eq!(budget.available_kib(), 14);
        let second = budget.clone();
        let waiting = tokio::spawn(async move { second.hold(40 * 1024).await });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "40 KiB held beside 50 KiB under a 64 KiB cap"
        );
        first.shrink_to(10 * 1024 + 1);
        let held = waiting.await.expect("the waiting hold completes");
        assert_eq!(budget.available_kib(), 64 - 11 - 40);
        drop((first, held));
        // A reservation larger than the cap is the whole cap, not a wait
        // for ever.
        let all = budget.hold(10 << 20).await;
        assert_eq!(budget.available_kib(), 0);
        drop(all);
        assert_eq!(budget.available_kib(), 64);
    }
}
