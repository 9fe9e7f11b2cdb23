//! Who may do what.
//!
//! - [`Action`]: everything a person can ask of ascend-sync, each naming the
//!   practice it touches, if any.
//! - [`decide`]: the rules, as one pure function of a [`Principal`] and an
//!   [`Action`]. Every role against every action is a table in the tests.
//! - [`Gate`]: the one place the admin API (and the CLI, for tokens) calls.
//!   It turns a bearer token into a principal, checks an action with
//!   [`decide`], and writes every refusal to the audit log.
//!
//! # The roles
//! | role | may |
//! |---|---|
//! | `cloud_pms_admin` | every action on every practice |
//! | `practice_user` | its own practice only: view it and its history, change its settings (write-back switches included), Force Sync Now, submit write-back requests |
//! | `readonly` | view every practice, its history, the dead letters and the audit log; change nothing |
//!
//! Connecting, rotating credentials, disabling, enabling and removing a
//! practice, resyncing it, retrying its write-back items given up,
//! redriving dead letters, rewrapping keys, managing tokens and setting an
//! organization's request budget are the Cloud PMS Admin team's (the
//! product's FAQ: "The Cloud PMS Admin
//! team can disable or remove the integration").
//!
//! # Tokens
//! A token is `asy_{id}_{secret}`: `id` 16 hex digits (public: it names the
//! token in the audit log and in `admin-token revoke`), `secret` 32 random
//! bytes in 64 hex digits. The store keeps only the SHA-256 of the whole
//! token: tokens are random and long, so a fast hash is as strong as a slow
//! one, and lookups are one index probe. A token is shown once, when it is
//! created.

mod token;

#[cfg(test)]
mod tests;

use std::fmt;

use secrecy::SecretString;
use store::{AdminToken, AuditEntry, AuditOutcome, NewAdminToken, Store, StoreError};

pub use store::Role;
pub use token::{hash_token, mint_token};

/// Everything a person can ask of ascend-sync.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// The fleet: every practice's status, the dead letters, the audit log.
    ViewFleet,
    /// One practice's status and sync history.
    ViewPractice(String),
    /// One practice's settings (interval, write-back types).
    UpdateSettings(String),
    /// Force Sync Now for one practice.
    ForceSync(String),
    /// Pull one practice's history again (all or some resources).
    Resync(String),
    /// Send a write-back item of one practice that was given up again.
    RetryWriteback(String),
    /// Connect a new practice (or connect a removed one again).
    AddPractice(String),
    /// Replace a practice's Client ID and Secret.
    RotateCredentials(String),
    /// Pause a practice's syncs.
    DisablePractice(String),
    /// Resume a paused practice.
    EnablePractice(String),
    /// Destroy a practice's credentials and stop it for good (data kept).
    RemovePractice(String),
    /// Move dead-lettered jobs back to their queue.
    RedriveDeadLetters,
    /// Re-encrypt every data key under another key.
    RewrapKeys,
    /// Create, list and revoke admin tokens.
    ManageTokens,
    /// Put a write-back request into one practice's outbox (sent only if
    /// its type is on for the practice: [`Action::UpdateSettings`]).
    SubmitWriteback(String),
    /// Give an organization its own request budget, or back the fleet's.
    SetBudget,
}

impl Action {
    /// The practice the action touches, if any.
    pub fn practice_id(&self) -> Option<&str> {
        match self {
            Action::ViewPractice(p)
            | Action::UpdateSettings(p)
            | Action::ForceSync(p)
            | Action::Resync(p)
            | Action::RetryWriteback(p)
            | Action::AddPractice(p)
            | Action::RotateCredentials(p)
            | Action::DisablePractice(p)
            | Action::EnablePractice(p)
            | Action::RemovePractice(p)
            | Action::SubmitWriteback(p) => Some(p),
            Action::ViewFleet
            | Action::RedriveDeadLetters
            | Action::RewrapKeys
            | Action::ManageTokens
            | Action::SetBudget => None,
        }
    }

    /// The action's name in the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            Action::ViewFleet => "fleet.view",
            Action::ViewPractice(_) => "practice.view",
            Action::UpdateSettings(_) => "practice.settings",
            Action::ForceSync(_) => "practice.force-sync",
            Action::Resync(_) => "practice.resync",
            Action::RetryWriteback(_) => "writeback.retry",
            Action::AddPractice(_) => "practice.add",
            Action::RotateCredentials(_) => "practice.rotate-credentials",
            Action::DisablePractice(_) => "practice.disable",
            Action::EnablePractice(_) => "practice.enable",
            Action::RemovePractice(_) => "practice.remove",
            Action::RedriveDeadLetters => "dlq.redrive",
            Action::RewrapKeys => "keys.rewrap",
            Action::ManageTokens => "admin-token.manage",
            Action::SubmitWriteback(_) => "writeback.submit",
            Action::SetBudget => "budget.set",
        }
    }

    /// Whether the action changes nothing.
    pub fn is_read(&self) -> bool {
        matches!(self, Action::ViewFleet | Action::ViewPractice(_))
    }
}

/// Someone acting: a token's holder, or an operator at the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Who, for the audit log: `token:{id}` or `cli:{user}`.
    pub actor: String,
    pub role: Role,
    /// The practice of a `practice_user`; None for the other roles.
    pub practice_id: Option<String>,
}

impl Principal {
    /// An operator running the CLI against the database directly: they
    /// hold the database's credentials, so every action is theirs. `user`
    /// is their operating-system login (the CLI reads it from the system,
    /// never from a flag): the actor is `cli:{user}`.
    pub fn operator(user: &str) -> Principal {
        Principal {
            actor: format!("cli:{user}"),
            role: Role::CloudPmsAdmin,
            practice_id: None,
        }
    }
}

/// Why an action was refused, in words for the person refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the {role} role may not {action}")]
    RoleMayNot { role: Role, action: &'static str },
    #[error("a practice_user token may act only on its own practice ({own:?}), not on {asked:?}")]
    OtherPractice { own: String, asked: String },
    #[error("a practice_user token without a practice may do nothing")]
    NoPractice,
}

/// The rules: may `who` do `action`? Pure; see the crate documentation.
pub fn decide(who: &Principal, action: &Action) -> Result<(), Refusal> {
    let refuse = || Refusal::RoleMayNot {
        role: who.role,
        action: action.name(),
    };
    match who.role {
        Role::CloudPmsAdmin => Ok(()),
        Role::Readonly if action.is_read() => Ok(()),
        Role::Readonly => Err(refuse()),
        Role::PracticeUser => {
            let own = who.practice_id.as_deref().ok_or(Refusal::NoPractice)?;
            let allowed = matches!(
                action,
                Action::ViewPractice(_)
                    | Action::UpdateSettings(_)
                    | Action::ForceSync(_)
                    | Action::SubmitWriteback(_)
            );
            if !allowed {
                return Err(refuse());
            }
            match action.practice_id() {
                Some(asked) if asked == own => Ok(()),
                Some(asked) => Err(Refusal::OtherPractice {
                    own: own.to_owned(),
                    asked: asked.to_owned(),
                }),
                None => Err(refuse()),
            }
        }
    }
}

/// Errors of the [`Gate`].
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No token, a token of the wrong form, an unknown or a revoked token.
    /// Deliberately says no more (the API answers 401).
    #[error("the bearer token is not valid: ask a Cloud PMS Admin for a token")]
    Unauthenticated,
    /// The principal may not do this (the API answers 403). Audited.
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    /// A token's role and practice do not go together.
    #[error("{0}")]
    BadToken(String),
    /// The operating system's random source failed: no token can be made.
    #[error("the system's random source failed; no token was created")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A freshly created token: shown once, then only its hash exists.
pub struct CreatedToken {
    pub token: SecretString,
    pub record: AdminToken,
}

impl fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedToken")
            .field("token", &"[REDACTED]")
            .field("record", &self.record)
            .finish()
    }
}

/// The one authorization check: authenticate tokens, decide, audit
/// refusals. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Gate {
    store: Store,
}

impl Gate {
    pub fn new(store: Store) -> Gate {
        Gate { store }
    }

    /// The principal a bearer token stands for. Unknown, malformed and
    /// revoked tokens are all [`AccessError::Unauthenticated`].
    pub async fn authenticate(&self, token: &SecretString) -> Result<Principal, AccessError> {
        let Some(hash) = token::hash_if_well_formed(token) else {
            return Err(AccessError::Unauthenticated);
        };
        match self.store.admin_token_by_hash(&hash).await? {
            Some(record) if record.revoked_at.is_none() => Ok(Principal {
                actor: format!("token:{}", record.token_id),
                role: record.role,
                practice_id: record.practice_id,
            }),
            _ => Err(AccessError::Unauthenticated),
        }
    }

    /// Checks `action` for `who`; a refusal is written to the audit log
    /// (who, what, which practice, why) before it is returned.
    pub async fn authorize(&self, who: &Principal, action: &Action) -> Result<(), AccessError> {
        match decide(who, action) {
            Ok(()) => Ok(()),
            Err(refusal) => {
                self.store
                    .record_audit(&AuditEntry {
                        actor: who.actor.clone(),
                        action: action.name().to_owned(),
                        practice_id: action.practice_id().map(str::to_owned),
                        outcome: AuditOutcome::Refused,
                        detail: Some(refusal.to_string()),
                    })
                    .await?;
                Err(AccessError::Refused(refusal))
            }
        }
    }

    /// Revokes the live token `token_id` (it stops authenticating at
    /// once), authorized as [`Action::ManageTokens`] for `by` and audited:
    /// false when no live token has that id.
    pub async fn revoke_token(&self, by: &Principal, token_id: &str) -> Result<bool, AccessError> {
        self.authorize(by, &Action::ManageTokens).await?;
        Ok(self.store.revoke_admin_token(token_id, &by.actor).await?)
    }

    /// Creates a token for `role` (a `practice_user` token needs its
    /// practice, the other roles none), authorized as
    /// [`Action::ManageTokens`] for `by` and audited.
    pub async fn create_token(
        &self,
        by: &Principal,
        role: Role,
        practice_id: Option<&str>,
        label: &str,
    ) -> Result<CreatedToken, AccessError> {
        self.authorize(by, &Action::ManageTokens).await?;
        match (role, practice_id) {
            (Role::PracticeUser, None) => {
                return Err(AccessError::BadToken(
                    "a practice_user token needs --practice".into(),
                ));
            }
            (Role::CloudPmsAdmin | Role::Readonly, Some(_)) => {
                return Err(AccessError::BadToken(format!(
                    "a {role} token is not tied to a practice: drop --practice"
                )));
            }
            _ => {}
        }
        if let Some(practice_id) = practice_id
            && self.store.get_practice(practice_id).await?.is_none()
        {
            return Err(AccessError::Store(StoreError::UnknownPractice {
                practice_id: practice_id.to_owned(),
            }));
        }
        let minted = mint_token()?;
        let new = NewAdminToken {
            token_id: minted.token_id.clone(),
            token_hash: minted.hash,
            role,
            practice_id: practice_id.map(str::to_owned),
            label: label.to_owned(),
            created_by: by.actor.clone(),
        };
        self.store.create_admin_token(&new).await?;
        let record = self
            .store
            .admin_token_by_hash(&minted.hash)
            .await?
            .ok_or_else(|| {
                AccessError::BadToken("the new token was not found after it was stored".into())
            })?;
        Ok(CreatedToken {
            token: minted.token,
            record,
        })
    }
}
