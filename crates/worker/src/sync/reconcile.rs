//! Capturing deletes in an incremental cycle (issue 13): what the cycle's
//! plan (`sync_core::reconcile::plan_cycle`) names is reconciled after its
//! pass, with the rules of `sync_core::reconcile::find_deletes`; what it
//! finds is recorded at once in `captured_deletes` (the landed rows stay
//! until the nightly role applies it), a captured record listed again is
//! cancelled, and a record Ascend lists that our copy lacks is fetched and
//! landed.

use ascend_client::{ClientError, Filter, ListQuery, OrgClient, Resource};
use model::DeleteDetection;
use store::Checkpoint;
use sync_core::Scope;
use sync_core::reconcile::{self, Ask, CONFIRM_BATCH, Question, Reconcile};
use time::OffsetDateTime;

use super::{Syncer, table};
use crate::SyncError;

/// The questions a reconciliation asks, put to one resource of an
/// organization.
struct AskOrg<'a> {
    org: &'a OrgClient,
    resource: Resource,
}

impl Ask for AskOrg<'_> {
    type Error = ClientError;

    async fn count(&mut self, filter: Filter) -> Result<u64, ClientError> {
        self.org.count(self.resource, &filter).await
    }

    async fn ids(&mut self, filter: Filter) -> Result<(Vec<i64>, u32), ClientError> {
        let query = ListQuery::new()
            .with_filter(filter)
            .with_ids_only()
            .with_page_size(500);
        let mut pager = self.org.keyset(self.resource, query, None);
        let (mut ids, mut calls) = (Vec::new(), 0u32);
        while let Some(page) = pager.next_page().await? {
            calls += 1;
            ids.extend(
                page.records
                    .iter()
                    .filter_map(|r| i64::try_from(r.id.0).ok()),
            );
        }
        Ok((ids, calls.max(1)))
    }
}

/// What a resource's reconciliation did.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Reconciled {
    /// Deletes newly captured.
    pub captured: u64,
    /// Captured deletes cancelled: the records were listed again.
    pub cancelled: u64,
    /// Records our copy lacked, fetched and landed.
    pub recovered: u64,
    /// Pages fetched to recover them (archived with the run's pages).
    pub pages: u64,
    /// Calls the reconciliation made.
    pub calls: u32,
}

impl Syncer {
    /// Reconciles `plan`'s part of a resource after its pass; `seq` is the
    /// archive sequence number its first recovered page takes.
    pub(super) async fn reconcile_resource(
        &self,
        practice_id: &str,
        org: &OrgClient,
        scope: Scope,
        plan: Reconcile,
        run_id: &str,
        seq: u64,
    ) -> Result<Reconciled, SyncError> {
        let resource = plan.resource;
        let t = table(resource);
        let started = OffsetDateTime::now_utc();
        let watermark = self
            .store
            .get_sync_state(practice_id, t)
            .await?
            .and_then(|s| s.watermark);
        let mut question = Question {
            held: &[],
            captured: &[],
            scope: scope.base_filter(resource),
            window: plan.window_filter(),
            scoped: scope.location_id.is_some() && Scope::is_location_scoped(resource),
            watermark,
        };
        let ask = &mut AskOrg { org, resource };
        // The two counts first, ours from the index: the rows are read only
        // when they differ.
        let root = reconcile::ask_root(&question, ask).await?;
        let (held_total, held_old) = self
            .store
            .reconcile_counts(
                practice_id,
                t,
                plan.start_between,
                watermark.map(reconcile::watermark_bound),
            )
            .await?;
        if root.matches(held_total, held_old) {
            if plan.is_whole() {
                self.store
                    .set_reconciled_at(practice_id, t, started)
                    .await?;
                self.store
                    .record_count(practice_id, t, root.total, held_total, started)
                    .await?;
            }
            tracing::debug!(resource = %resource, held = held_total, "reconciled: unchanged");
            return Ok(Reconciled {
                calls: root.calls(),
                ..Reconciled::default()
            });
        }
        let held = self
            .store
            .reconcile_keys(practice_id, t, plan.start_between)
            .await?;
        let captured = self.store.captured_delete_ids(practice_id, t).await?;
        question.held = &held;
        question.captured = &captured;
        let found = reconcile::find_deletes(question, Some(root), ask).await?;

        let how = if plan.daily {
            DeleteDetection::Daily
        } else {
            DeleteDetection::HotWindow
        };
        let mut done = Reconciled {
            calls: root.calls() + found.calls(),
            ..Reconciled::default()
        };
        done.captured = self
            .store
            .capture_deletes(practice_id, t, &found.deleted, how, started)
            .await?;
        done.captured += self
            .store
            .capture_deletes(
                practice_id,
                t,
                &found.left_scope,
                DeleteDetection::LeftScope,
                started,
            )
            .await?;
        let seen: Vec<i64> = found
            .listed
            .iter()
            .copied()
            .filter(|id| captured.binary_search(id).is_ok())
            .collect();
        done.cancelled = self
            .store
            .cancel_captured_deletes(practice_id, t, &seen)
            .await?;

        // Listed by Ascend, neither held nor captured: created since the
        // pass, or a record our copy lacks. Either way it is fetched and
        // landed (an older version never overwrites a newer one).
        let mut seq = seq;
        for batch in found.unknown.chunks(CONFIRM_BATCH) {
            let filter = scope
                .base_filter(resource)
                .and(Filter::new().is_in("id", batch.iter().copied()));
            let mut pager = org.keyset(resource, self.query(filter), None);
            while let Some(page) = pager.next_page().await? {
                let landing = self.start_landing(practice_id, page, run_id, seq, Checkpoint::None);
                let landed = self.finish_landing(landing).await?;
                done.recovered += landed.written;
                done.pages += 1;
                seq += 1;
            }
        }
        if plan.is_whole() {
            self.store
                .set_reconciled_at(practice_id, t, started)
                .await?;
            // The evidence is the counts as they stand after what this
            // reconciliation repaired (issue 14): ours against the total
            // Ascend gave at its start. A mismatch that remains (a record
            // created since, a record that could not be landed) is
            // reported, and a second reconciliation in a row that finds
            // one makes the practice stale.
            let (held_now, _) = self
                .store
                .reconcile_counts(practice_id, t, plan.start_between, None)
                .await?;
            self.store
                .record_count(practice_id, t, root.total, held_now, started)
                .await?;
        }
        tracing::info!(
            resource = %resource,
            whole = plan.is_whole(),
            held = held.len(),
            captured = done.captured,
            cancelled = done.cancelled,
            left_scope = found.left_scope.len(),
            recovered = done.recovered,
            calls = done.calls,
            "reconciled"
        );
        Ok(done)
    }
}
