//! One pull per organization (issue 14): the organization-wide resources
//! of a practice's cycle, pulled by whichever job holds the
//! organization's lease and copied to the organization's other practices
//! (the rules are `sync_core::share`'s; the copy is `Store::share`).

use std::time::Duration;

use ascend_client::{OrgClient, Resource};
use store::{Member, PracticeStatus, Shared, Store};
use sync_core::share::{self, Copy, Plan, Share, Waiting};
use sync_core::{Scope, reconcile::Reconcile};
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use super::{Asked, ResourceOutcome, Syncer, table};
use crate::SyncError;

/// How long the organization's lease lasts without a renewal: a process
/// killed while holding it holds the organization's pulls back this long.
const LEASE_TTL: Duration = Duration::from_secs(120);

/// How long a job waits for an organization's lease it cannot do without
/// (planning, and waking the practices waiting for a finished pull).
const PLAN_LEASE_WAIT: Duration = Duration::from_secs(60);

/// A lease held (and renewed in the background) until released or
/// dropped; dropped, it runs out after [`LEASE_TTL`].
pub(super) struct OrgLease {
    store: Store,
    key: String,
    holder: String,
    renewer: JoinHandle<()>,
    released: bool,
}

impl OrgLease {
    /// Takes `key` for `holder` if it is free.
    pub(super) async fn try_take(
        store: &Store,
        key: String,
        holder: &str,
    ) -> Result<Option<OrgLease>, SyncError> {
        if !store
            .acquire_lease(
                &key,
                holder,
                time::Duration::seconds(LEASE_TTL.as_secs() as i64),
                OffsetDateTime::now_utc(),
            )
            .await?
        {
            return Ok(None);
        }
        let renewer = {
            let (store, key, holder) = (store.clone(), key.clone(), holder.to_owned());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE_TTL / 4).await;
                    match store
                        .renew_lease(
                            &key,
                            &holder,
                            time::Duration::seconds(LEASE_TTL.as_secs() as i64),
                            OffsetDateTime::now_utc(),
                        )
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(lease = %key, "the organization's lease was lost");
                            return;
                        }
                        Err(error) => {
                            tracing::warn!(lease = %key, error = %error, "could not renew the organization's lease");
                        }
                    }
                }
            })
        };
        Ok(Some(OrgLease {
            store: store.clone(),
            key,
            holder: holder.to_owned(),
            renewer,
            released: false,
        }))
    }

    /// Takes `key`, waiting up to `wait` for it.
    async fn take_within(
        store: &Store,
        key: String,
        holder: &str,
        wait: Duration,
    ) -> Result<Option<OrgLease>, SyncError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(lease) = Self::try_take(store, key.clone(), holder).await? {
                return Ok(Some(lease));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Gives the lease up.
    pub(super) async fn release(mut self) {
        self.renewer.abort();
        self.released = true;
        release(&self.store, &self.key, &self.holder).await;
    }
}

async fn release(store: &Store, key: &str, holder: &str) {
    if let Err(error) = store.release_lease(key, holder).await {
        tracing::warn!(lease = %key, error = %error, "could not release the organization's lease; it runs out by itself");
    }
}

impl Drop for OrgLease {
    /// Dropped without [`OrgLease::release`] (an early return, a cancelled
    /// job): given up in the background, so the organization does not
    /// wait for it to run out.
    fn drop(&mut self) {
        self.renewer.abort();
        if !self.released
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (store, key, holder) = (self.store.clone(), self.key.clone(), self.holder.clone());
            runtime.spawn(async move { release(&store, &key, &holder).await });
        }
    }
}

fn syncing(status: PracticeStatus) -> bool {
    matches!(status, PracticeStatus::InitialSync | PracticeStatus::Active)
}

fn copies(members: &[Member]) -> Vec<Copy<'_>> {
    members
        .iter()
        .map(|m| Copy {
            practice_id: &m.practice_id,
            syncing: syncing(m.status),
            watermark: m.watermark,
            pass: m.pass.map(|p| (p.started_at, p.after_id)),
            pulling: m.pulling > 0,
            awaiting: m.awaiting.is_some(),
        })
        .collect()
}

/// What a job woke up by sharing its finished pull: a waiting practice's
/// share chunk, now done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Woken {
    pub practice_id: String,
    pub resource: Resource,
    pub chunk_id: i64,
}

/// How [`Syncer::plan_shared`] planned a resource.
pub(super) enum SharedPlan {
    /// Copied, or waiting for a sibling's pull: nothing to plan.
    Done(String),
    /// Pull it: plan it as alone, holding this lease (if any) until its
    /// chunks are stored.
    Pull(Option<OrgLease>),
}

/// What a share chunk's job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareChunk {
    /// Copied from this practice.
    Copied(Shared),
    /// The sibling still pulls: the chunk waits (its pull's end copies it).
    Waiting { puller: String },
    /// The organization's lease is held by another job: try again soon.
    Busy,
    /// Nobody pulls it any more: the resource is unplanned again, for
    /// this practice's next plan to pull it.
    Unplanned,
}

impl Syncer {
    /// An organization-wide resource in a cycle of `practice_id`, which
    /// holds the organization's lease: first its copy is brought in step
    /// with the organization's freshest (copied whole when it is not); then
    /// it is pulled if due (`sync_core::share::pull_due`); then every other
    /// syncing practice's whole copy gets what the pass landed (or the
    /// whole copy, when out of step), verified by count when the resource
    /// was reconciled whole.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn shared_resource(
        &self,
        practice: &store::Practice,
        org: &OrgClient,
        scope: Scope,
        resource: Resource,
        run_id: &str,
        reconcile: Option<Reconcile>,
        asked: Asked,
    ) -> ResourceOutcome {
        let t = table(resource);
        let me = practice.practice_id.as_str();
        let organization = practice.organization_id.as_str();
        let mut notes: Vec<String> = Vec::new();
        let members = match self.store.organization_members(organization, t).await {
            Ok(members) => members,
            Err(error) => return ResourceOutcome::failed(resource, &error.into()),
        };
        if members.iter().filter(|m| syncing(m.status)).count() <= 1 {
            // Alone in its organization: nothing to share.
            return self
                .incremental_resource(me, org, scope, resource, run_id, reconcile)
                .await;
        }
        // 1. In step with the freshest copy.
        let copied = {
            let all = copies(&members);
            let mine = all.iter().find(|c| c.practice_id == me);
            if let (Some(reference), Some(mine)) = (share::reference(&all), mine)
                && reference.practice_id != me
                && !share::in_step(mine, reference)
            {
                match self
                    .store
                    .share(t, reference.practice_id, me, store::Copy::Whole, false)
                    .await
                {
                    Ok(done) => notes.push(format!(
                        "copied whole from {} ({} rows)",
                        reference.practice_id, done.rows
                    )),
                    Err(error) => return ResourceOutcome::failed(resource, &error.into()),
                }
                true
            } else {
                false
            }
        };
        // The copies as they stand before the pull: read again only if
        // this practice's copy just changed.
        let before = if copied {
            match self.store.organization_members(organization, t).await {
                Ok(members) => members,
                Err(error) => return ResourceOutcome::failed(resource, &error.into()),
            }
        } else {
            members
        };
        let Some(mine_before) = before.iter().find(|m| m.practice_id == me).cloned() else {
            return ResourceOutcome::failed(resource, &SyncError::UnknownPractice(me.to_owned()));
        };
        // 2. The pull, if due.
        let due = share::pull_due(
            mine_before.passed_at,
            asked.at,
            practice.sync_interval_minutes,
            asked.scheduled,
        );
        let since = OffsetDateTime::now_utc();
        let mut outcome = if due {
            self.incremental_resource(me, org, scope, resource, run_id, reconcile)
                .await
        } else {
            notes.push(match mine_before.passed_at {
                Some(at) => format!("pulled for the organization at {}", short_time(at)),
                None => "pulled for the organization".to_owned(),
            });
            ResourceOutcome::new(resource)
        };
        // 3. The others get it.
        let after = match self.store.organization_members(organization, t).await {
            Ok(members) => members,
            Err(error) => {
                outcome.error.get_or_insert((
                    ascend_client::ErrorClass::Store,
                    format!(
                        "could not list the organization's practices to share {resource}: {error}"
                    ),
                ));
                return outcome.noted(notes);
            }
        };
        let before_copies = copies(&before);
        let after_copies = copies(&after);
        let (Some(mine_b), Some(mine_a)) = (
            before_copies.iter().find(|c| c.practice_id == me),
            after_copies.iter().find(|c| c.practice_id == me),
        ) else {
            return outcome.noted(notes);
        };
        let mut shared = 0u32;
        let mut whole = Vec::new();
        for other in after_copies
            .iter()
            .filter(|c| c.practice_id != me && c.syncing && c.is_whole())
        {
            let copy = match share::share(mine_b, mine_a, other) {
                Share::Nothing if !outcome.reconciled => continue,
                Share::Nothing | Share::Pass => store::Copy::Since(since),
                Share::Whole => store::Copy::Whole,
            };
            match self
                .store
                .share(t, me, other.practice_id, copy, outcome.reconciled)
                .await
            {
                Ok(done) => {
                    shared += 1;
                    if done.whole {
                        whole.push(other.practice_id.to_owned());
                    }
                }
                Err(error) => {
                    tracing::warn!(resource = %resource, to = other.practice_id, error = %error, "could not share an organization-wide resource");
                    outcome.error.get_or_insert((
                        ascend_client::ErrorClass::Store,
                        format!(
                            "could not copy {resource} to {}: {error}; it is copied whole \
                             next cycle",
                            other.practice_id
                        ),
                    ));
                }
            }
        }
        if due {
            notes.push(format!(
                "pulled for the organization, copied to {shared} other location(s)"
            ));
        }
        if !whole.is_empty() {
            notes.push(format!("copied whole to {}", whole.join(", ")));
        }
        outcome.noted(notes)
    }

    /// How an initial sync plans an organization-wide resource of a
    /// practice with siblings: copied from a sibling's whole copy, or a
    /// share chunk that waits for a sibling's pull ([`SharedPlan::Done`]);
    /// or pulled by this practice ([`SharedPlan::Pull`], with the
    /// organization's planning lease, to be held until its chunks are
    /// stored, so no sibling decides to pull it too meanwhile).
    pub(super) async fn plan_shared(
        &self,
        practice: &store::Practice,
        resource: Resource,
        holder: &str,
    ) -> Result<SharedPlan, SyncError> {
        let t = table(resource);
        let organization = practice.organization_id.as_str();
        let me = practice.practice_id.as_str();
        let Some(plan_lease) = OrgLease::take_within(
            &self.store,
            share::org_plan_lease_key(organization),
            holder,
            PLAN_LEASE_WAIT,
        )
        .await?
        else {
            return Err(SyncError::OrganizationBusy {
                organization_id: organization.to_owned(),
            });
        };
        let members = self.store.organization_members(organization, t).await?;
        if members.iter().all(|m| m.practice_id == me) {
            plan_lease.release().await;
            return Ok(SharedPlan::Pull(None));
        }
        let all = copies(&members);
        let lease =
            OrgLease::try_take(&self.store, share::org_lease_key(organization), holder).await?;
        let decision = share::plan(me, &all, lease.is_some());
        let copied = match &decision {
            Plan::CopyFrom(from) => Some(
                self.store
                    .share(t, from, me, store::Copy::Whole, false)
                    .await,
            ),
            Plan::Pull | Plan::Await(_) => None,
        };
        if let Some(lease) = lease {
            lease.release().await;
        }
        let done = match decision {
            Plan::Pull => return Ok(SharedPlan::Pull(Some(plan_lease))),
            Plan::CopyFrom(from) => {
                let rows = copied.transpose()?.map_or(0, |s| s.rows);
                format!("copied from {from} ({rows} rows)")
            }
            Plan::Await(from) => {
                let expected = members
                    .iter()
                    .find(|m| m.practice_id == from)
                    .and_then(|m| m.expected_count);
                self.store.await_share(me, t, expected).await?;
                format!("waits for {from}'s pull")
            }
        };
        plan_lease.release().await;
        Ok(SharedPlan::Done(done))
    }

    /// A share chunk's job: copies the resource from a sibling's whole
    /// copy if there is one; else waits for the sibling that pulls it, or,
    /// when none does any more, unplans it so this practice pulls it.
    pub async fn run_share_chunk(
        &self,
        practice_id: &str,
        chunk: &store::Chunk,
        holder: &str,
    ) -> Result<ShareChunk, SyncError> {
        let practice = self
            .store
            .get_practice(practice_id)
            .await?
            .ok_or_else(|| SyncError::UnknownPractice(practice_id.to_owned()))?;
        let t = chunk.table;
        let organization = practice.organization_id.as_str();
        let Some(lease) =
            OrgLease::try_take(&self.store, share::org_lease_key(organization), holder).await?
        else {
            return Ok(ShareChunk::Busy);
        };
        let result = async {
            let members = self.store.organization_members(organization, t).await?;
            let all = copies(&members);
            Ok::<_, SyncError>(match share::waiting(practice_id, &all) {
                Waiting::CopyFrom(from) => ShareChunk::Copied(
                    self.store
                        .share(t, &from, practice_id, store::Copy::Whole, false)
                        .await?,
                ),
                Waiting::Wait(puller) => ShareChunk::Waiting { puller },
                Waiting::PullYourself => {
                    self.store.abandon_share(practice_id, t).await?;
                    ShareChunk::Unplanned
                }
            })
        }
        .await;
        lease.release().await;
        result
    }

    /// After a chunk of `practice_id`'s own pull of an organization-wide
    /// resource: if the pull is finished, every sibling waiting for it
    /// gets the copy now. Returns the share chunks done, so their jobs can
    /// finish those practices' initial syncs. If the organization's lease
    /// is busy, nothing is done: the waiting practices' own jobs copy it.
    pub async fn share_with_waiters(
        &self,
        practice_id: &str,
        resource: Resource,
        holder: &str,
    ) -> Result<Vec<Woken>, SyncError> {
        if Scope::is_location_scoped(resource) {
            return Ok(Vec::new());
        }
        let Some(practice) = self.store.get_practice(practice_id).await? else {
            return Ok(Vec::new());
        };
        let t = table(resource);
        let organization = practice.organization_id.as_str();
        let members = self.store.organization_members(organization, t).await?;
        let waiting: Vec<(String, i64)> = members
            .iter()
            .filter(|m| m.practice_id != practice_id && syncing(m.status))
            .filter_map(|m| m.awaiting.map(|chunk| (m.practice_id.clone(), chunk)))
            .collect();
        let mine = members.iter().find(|m| m.practice_id == practice_id);
        if waiting.is_empty() || !mine.is_some_and(|m| m.pulling == 0 && m.watermark.is_some()) {
            return Ok(Vec::new());
        }
        // The waiting practices' jobs stopped waiting (their chunks are
        // unqueued): this is the moment that wakes them, so it waits for
        // the lease a while rather than leave them to the scheduler.
        let Some(lease) = OrgLease::take_within(
            &self.store,
            share::org_lease_key(organization),
            holder,
            PLAN_LEASE_WAIT,
        )
        .await?
        else {
            tracing::warn!(resource = %resource, "the organization's lease stayed busy; the practices waiting for this pull copy it when the scheduler plans them again");
            return Ok(Vec::new());
        };
        let mut woken = Vec::new();
        let mut result = Ok(());
        for (other, chunk_id) in waiting {
            match self
                .store
                .share(t, practice_id, &other, store::Copy::Whole, false)
                .await
            {
                Ok(_) => woken.push(Woken {
                    practice_id: other,
                    resource,
                    chunk_id,
                }),
                Err(error) => {
                    result = Err(error.into());
                    break;
                }
            }
        }
        lease.release().await;
        result.map(|()| woken)
    }
}

fn short_time(at: OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02} UTC", at.hour(), at.minute(), at.second())
}
