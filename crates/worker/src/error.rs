use ascend_client::{ClientError, ErrorClass};

/// Why a sync step failed, and so what to do.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The Ascend API answered with an error (its class says what to do).
    #[error("Ascend API: {0}")]
    Api(#[from] ClientError),
    /// The database refused or failed.
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    /// The raw archive refused or failed.
    #[error("raw archive: {0}")]
    Archive(#[from] blob::BlobError),
    /// A stored plan could not be read.
    #[error("plan: {0}")]
    Plan(#[from] sync_core::plan::PlanError),
    /// A page's landing task died (the runtime is shutting down).
    #[error("landing a page was interrupted: {0}; the page is fetched again on the next attempt")]
    Interrupted(String),
    /// The practice is not known to the store.
    #[error("practice {0:?} is not registered; add it first")]
    UnknownPractice(String),
    /// Every resource answered 403.
    #[error(
        "every resource of practice {practice_id:?} answered 403: the vendor has not enabled the \
         integration for this organization; a person must act (ask the vendor to enable it)"
    )]
    NotEnabled { practice_id: String },
    /// Another job of the organization held its planning lease for too
    /// long (issue 14).
    #[error(
        "another job of organization {organization_id} kept its planning lease for 30 s; the plan \
         is tried again (if this persists, look for a stuck worker holding `org-plan:` in job_leases)"
    )]
    OrganizationBusy { organization_id: String },
}

impl SyncError {
    /// The wait Ascend asked for, when this is its rate limit.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            SyncError::Api(ClientError::RateLimited { retry_after }) => *retry_after,
            _ => None,
        }
    }

    /// A short stable class for history and metrics.
    pub fn class(&self) -> ErrorClass {
        match self {
            SyncError::Api(e) => e.class(),
            SyncError::Store(_) => ErrorClass::Store,
            SyncError::Archive(_) => ErrorClass::Archive,
            SyncError::Plan(_) => ErrorClass::Plan,
            SyncError::Interrupted(_) => ErrorClass::Interrupted,
            SyncError::UnknownPractice(_) => ErrorClass::State,
            SyncError::NotEnabled { .. } => ErrorClass::Auth,
            SyncError::OrganizationBusy { .. } => ErrorClass::Transient,
        }
    }
}
