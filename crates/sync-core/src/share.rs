//! One pull per organization (issue 14): who pulls an organization-wide
//! resource, and what the other practices of the organization get.
//!
//! Each location of a dental group is its own practice, with its own rows
//! of the organization-wide resources ([`Scope::is_location_scoped`] is
//! false for them). Those rows are the same for every location, so one
//! practice pulls them and its copy is shared with the others (the store's
//! `share`). The practice that pulls is whichever job holds the
//! organization's lease ([`org_lease_key`]) when the resource is due; a
//! paused, removed or failing practice never holds the others back, since
//! every syncing practice of the organization can pull.
//!
//! A practice's copy is *in step* with another's when both have the same
//! watermark and pass cursor: then the records one pass lands are all the
//! other lacks. A copy out of step (a practice connected later, or paused
//! for a while) is copied whole from the [`reference`]: the freshest copy.
//!
//! [`Scope::is_location_scoped`]: crate::Scope::is_location_scoped

use time::{Duration, OffsetDateTime};

/// The lease an organization's pulls and copies of its organization-wide
/// resources are made under.
pub fn org_lease_key(organization_id: &str) -> String {
    format!("org:{organization_id}")
}

/// The lease an organization's initial-sync planning decisions are made
/// under (held for a few statements, never during a pull).
pub fn org_plan_lease_key(organization_id: &str) -> String {
    format!("org-plan:{organization_id}")
}

/// One practice's copy of an organization-wide resource, as the rules see
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy<'a> {
    pub practice_id: &'a str,
    /// Whether the practice syncs (initial sync or active): only those
    /// pull, and only those receive copies.
    pub syncing: bool,
    pub watermark: Option<OffsetDateTime>,
    /// The pass under way: when it began and the last id it landed.
    pub pass: Option<(OffsetDateTime, Option<i64>)>,
    /// Initial-sync chunks of the resource still to pull.
    pub pulling: bool,
    /// Whether it waits to copy a sibling's pull (a share chunk).
    pub awaiting: bool,
}

impl Copy<'_> {
    /// Whether this copy is whole: its first pull finished (a watermark,
    /// no chunks left, not waiting for a sibling).
    pub fn is_whole(&self) -> bool {
        self.watermark.is_some() && !self.pulling && !self.awaiting
    }

    /// How far the copy got, for ordering: the watermark, then a pass
    /// under way, then how far that pass got.
    fn progress(&self) -> (Option<OffsetDateTime>, bool, Option<i64>) {
        (
            self.watermark,
            self.pass.is_some(),
            self.pass.and_then(|(_, after)| after),
        )
    }
}

/// Whether two copies are in step: the same watermark and pass cursor.
pub fn in_step(a: &Copy<'_>, b: &Copy<'_>) -> bool {
    a.watermark == b.watermark && a.pass == b.pass
}

/// The freshest whole copy of a syncing practice: the one an out-of-step
/// copy is copied from. Ties go to the smallest practice id, so every
/// caller picks the same.
pub fn reference<'a, 'b>(copies: &'b [Copy<'a>]) -> Option<&'b Copy<'a>> {
    copies
        .iter()
        .filter(|c| c.syncing && c.is_whole())
        .min_by(|a, b| {
            b.progress()
                .cmp(&a.progress())
                .then(a.practice_id.cmp(b.practice_id))
        })
}

/// What a practice's initial sync does with an organization-wide resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nobody has it or is pulling it: pull it.
    Pull,
    /// Copy this practice's whole copy now.
    CopyFrom(String),
    /// Wait for this practice's pull, then copy it.
    Await(String),
}

/// What `me`'s initial sync does with an organization-wide resource, given
/// every copy of the organization. `can_copy_now`: whether the
/// organization's lease is free for a copy at once.
pub fn plan(me: &str, copies: &[Copy<'_>], can_copy_now: bool) -> Plan {
    let others: Vec<Copy<'_>> = copies
        .iter()
        .filter(|c| c.practice_id != me)
        .cloned()
        .collect();
    if let Some(reference) = reference(&others) {
        return if can_copy_now {
            Plan::CopyFrom(reference.practice_id.to_owned())
        } else {
            Plan::Await(reference.practice_id.to_owned())
        };
    }
    match others.iter().find(|c| c.syncing && c.pulling) {
        Some(puller) => Plan::Await(puller.practice_id.to_owned()),
        None => Plan::Pull,
    }
}

/// What a practice waiting for a sibling's pull does when its turn comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// A whole copy exists: copy it.
    CopyFrom(String),
    /// This sibling is still pulling: wait for it.
    Wait(String),
    /// Nobody has a whole copy and nobody syncing is pulling (the puller
    /// was paused, removed or lost its credentials): pull it yourself.
    PullYourself,
}

/// See [`Waiting`].
pub fn waiting(me: &str, copies: &[Copy<'_>]) -> Waiting {
    match plan(me, copies, true) {
        Plan::CopyFrom(from) => Waiting::CopyFrom(from),
        Plan::Await(from) => Waiting::Wait(from),
        Plan::Pull => Waiting::PullYourself,
    }
}

/// Whether an organization-wide resource is pulled by a job that was
/// asked for at `requested_at` (its message's enqueue time, on the clock
/// of whoever asked): not when a pass of it began after that (a sibling's
/// job pulled it since, so the copy is as fresh as the job asked). A
/// scheduled job also leaves it when its last pass began less than half
/// the practice's interval before the job was asked: the locations of a
/// group fall due at different moments, and each would otherwise pull it
/// again; so the group pulls it about twice per interval whatever its
/// number of locations, and each location's copy is at most half an
/// interval older than its own cycle. A person's Force Sync Now (and an
/// administrator's sync) always gets a pass begun after it asked.
pub fn pull_due(
    passed_at: Option<OffsetDateTime>,
    requested_at: OffsetDateTime,
    interval_minutes: i16,
    scheduled: bool,
) -> bool {
    let Some(at) = passed_at else {
        return true;
    };
    if at >= requested_at {
        return false;
    }
    !(scheduled && requested_at - at < Duration::seconds(i64::from(interval_minutes.max(1)) * 30))
}

/// What a copy that is not the puller's gets after the puller's pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// Nothing: it is in step with the copy as it is now.
    Nothing,
    /// What the pass landed: it was in step with the copy before the pass.
    Pass,
    /// The whole copy: it was out of step.
    Whole,
}

/// See [`Share`]. `before`, `after`: the puller's copy before and after
/// its pass; `other`: a syncing practice's whole copy.
pub fn share(before: &Copy<'_>, after: &Copy<'_>, other: &Copy<'_>) -> Share {
    if in_step(other, after) && in_step(other, before) {
        Share::Nothing
    } else if in_step(other, before) {
        Share::Pass
    } else {
        Share::Whole
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const T0: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);

    fn copy(id: &str, watermark: Option<OffsetDateTime>) -> Copy<'_> {
        Copy {
            practice_id: id,
            syncing: true,
            watermark,
            pass: None,
            pulling: false,
            awaiting: false,
        }
    }

    #[test]
    fn the_reference_is_the_freshest_whole_copy_of_a_syncing_practice() {
        let t1 = T0 + Duration::minutes(15);
        let mut paused = copy("a", Some(t1 + Duration::hours(1)));
        paused.syncing = false;
        let mut pulling = copy("b", Some(t1 + Duration::hours(2)));
        pulling.pulling = true;
        let old = copy("c", Some(T0));
        let fresh = copy("d", Some(t1));
        let mut mid_pass = copy("e", Some(t1));
        mid_pass.pass = Some((t1, Some(40)));
        let copies = [
            paused,
            pulling,
            old.clone(),
            fresh.clone(),
            mid_pass.clone(),
        ];
        assert_eq!(reference(&copies).map(|c| c.practice_id), Some("e"));
        // Ties: the smallest id.
        let twin = copy("b", Some(t1));
        assert_eq!(
            reference(&[fresh.clone(), twin]).map(|c| c.practice_id),
            Some("b")
        );
        assert_eq!(reference(&[copy("x", None)]), None);
    }

    #[test]
    fn planning_copies_a_whole_copy_waits_for_a_pull_or_pulls() {
        let whole = copy("a", Some(T0));
        let mut pulling = copy("b", Some(T0));
        pulling.pulling = true;
        let me = copy("me", None);
        assert_eq!(
            plan("me", &[whole.clone(), me.clone()], true),
            Plan::CopyFrom("a".into())
        );
        assert_eq!(
            plan("me", &[whole.clone(), me.clone()], false),
            Plan::Await("a".into())
        );
        assert_eq!(
            plan("me", &[pulling.clone(), me.clone()], true),
            Plan::Await("b".into())
        );
        assert_eq!(plan("me", std::slice::from_ref(&me), true), Plan::Pull);
        // A puller that stopped syncing is not waited for.
        let mut stopped = pulling.clone();
        stopped.syncing = false;
        assert_eq!(waiting("me", &[stopped, me.clone()]), Waiting::PullYourself);
        assert_eq!(
            waiting("me", &[pulling, me.clone()]),
            Waiting::Wait("b".into())
        );
        // Its own copy is never its reference.
        let mut mine = copy("me", Some(T0));
        mine.awaiting = false;
        assert_eq!(plan("me", &[mine], true), Plan::Pull);
    }

    #[test]
    fn a_pull_is_due_unless_a_pass_began_since_it_was_asked_or_recently() {
        let asked = T0 + Duration::minutes(20);
        assert!(pull_due(None, asked, 15, true));
        // The previous cycle, 15 minutes before: due.
        assert!(pull_due(
            Some(asked - Duration::minutes(15)),
            asked,
            15,
            true
        ));
        // Another location's job pulled after this one was asked: never.
        assert!(!pull_due(
            Some(asked + Duration::seconds(1)),
            asked,
            15,
            true
        ));
        assert!(!pull_due(Some(asked), asked, 15, false));
        // Pulled a minute before it was asked: a scheduled job leaves it,
        // a person's asks again.
        assert!(!pull_due(
            Some(asked - Duration::minutes(1)),
            asked,
            15,
            true
        ));
        assert!(pull_due(
            Some(asked - Duration::minutes(1)),
            asked,
            15,
            false
        ));
        // Half the interval is the line.
        assert!(pull_due(Some(asked - Duration::minutes(1)), asked, 2, true));
        assert!(!pull_due(
            Some(asked - Duration::seconds(59)),
            asked,
            2,
            true
        ));
    }

    #[test]
    fn after_a_pass_in_step_copies_get_the_pass_and_the_rest_the_whole() {
        let before = copy("p", Some(T0));
        let after = copy("p", Some(T0 + Duration::minutes(15)));
        let in_step_before = copy("a", Some(T0));
        let already = copy("b", Some(T0 + Duration::minutes(15)));
        let behind = copy("c", Some(T0 - Duration::days(3)));
        let mut mid = copy("d", Some(T0));
        mid.pass = Some((T0, Some(7)));
        assert_eq!(share(&before, &after, &in_step_before), Share::Pass);
        assert_eq!(share(&before, &after, &behind), Share::Whole);
        assert_eq!(share(&before, &after, &mid), Share::Whole);
        // A pass that moved nothing: in step before and after.
        assert_eq!(share(&before, &before, &in_step_before), Share::Nothing);
        // Ahead of the puller's old copy but equal to the new: nothing.
        assert_eq!(share(&after, &after, &already), Share::Nothing);
    }
}
