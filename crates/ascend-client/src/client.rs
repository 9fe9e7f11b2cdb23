//! The process-wide client and the per-organization handle that makes calls.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use backon::Retryable;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use tracing::Instrument;
use url::Url;

use crate::Resource;
use crate::budget::{BudgetRefusal, LocalBudget, RequestBudget};
use crate::config::{ClientConfig, Connection, check_endpoint};
use crate::error::{AuthFailure, ClientError, body_message};
use crate::http::{BodyError, location, read_body, read_error_body, retry_after};
use crate::ids::AscendId;
use crate::ids::OrganizationId;
use crate::memory::{ByteBudget, Held};
use crate::page::Page;
use crate::pager::{KeysetPager, OffsetPager};
use crate::query::{Cursor, Filter, ListQuery, effective_page_size, list_url};
use crate::retry;
use crate::token::{FetchContext, TokenCache};

/// The header that names the organization on every call.
const ORGANIZATION_ID: HeaderName = HeaderName::from_static("organization-id");

/// The process-wide Ascend client: one connection pool, one request
/// budget ([`RequestBudget`]: this process's own, or the fleet's) and one
/// token cache per organization, shared by every [`OrgClient`] made from
/// it (and its clones). Create one per process and clone it.
#[derive(Clone)]
pub struct AscendClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    config: ClientConfig,
    http: reqwest::Client,
    /// Every attempt takes from its organization's budget here.
    budget: Arc<dyn RequestBudget>,
    /// Answer bytes held in memory, at most `max_bytes_in_flight`.
    memory: ByteBudget,
    orgs: Mutex<HashMap<OrganizationId, Arc<OrgShared>>>,
}

/// What every task of the process shares for one organization.
struct OrgShared {
    /// The token cache of the organization's current credentials.
    tokens: Mutex<Option<Arc<TokenCache>>>,
}

impl fmt::Debug for AscendClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let orgs = self.inner.orgs.lock().map(|o| o.len()).unwrap_or_default();
        f.debug_struct("AscendClient")
            .field("config", &self.inner.config)
            .field("organizations", &orgs)
            .finish()
    }
}

impl AscendClient {
    /// Builds the client (validating `config`), with this process's own
    /// budget per organization ([`LocalBudget`] at
    /// [`ClientConfig::requests_per_second`]). Fails with
    /// [`ClientError::Config`].
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let budget = LocalBudget::new(config.requests_per_second, config.burst);
        Self::with_budget(config, Arc::new(budget))
    }

    /// Builds the client with the request budget kept by `budget` (the
    /// fleet's). [`ClientConfig::requests_per_second`] and
    /// [`ClientConfig::burst`] are then `budget`'s business.
    pub fn with_budget(
        config: ClientConfig,
        budget: Arc<dyn RequestBudget>,
    ) -> Result<Self, ClientError> {
        config.validate()?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("ascend-sync/", env!("CARGO_PKG_VERSION")));
        if config.insecure_loopback.is_allowed() {
            // Local testing: never send loopback traffic through a proxy.
            builder = builder.no_proxy();
        } else {
            builder = builder.https_only(true);
        }
        let http = builder.build().map_err(|e| {
            ClientError::config(format!(
                "cannot build the HTTP client: {}",
                crate::error::error_chain(&e)
            ))
        })?;
        Ok(AscendClient {
            inner: Arc::new(ClientInner {
                memory: ByteBudget::new(config.max_bytes_in_flight),
                config,
                http,
                budget,
                orgs: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A handle for one organization. Checks the endpoints (https, or http
    /// to loopback with the explicit opt-in) and fails with
    /// [`ClientError::Config`]; makes no network call (see
    /// [`OrgClient::probe`]).
    ///
    /// Every handle for the same organization shares its request budget, and
    /// its token cache as long as the credentials are the same.
    pub fn connect(&self, connection: Connection) -> Result<OrgClient, ClientError> {
        let config = &self.inner.config;
        check_endpoint("api_base", &connection.api_base, config.insecure_loopback)?;
        check_endpoint("token_url", &connection.token_url, config.insecure_loopback)?;
        if connection.api_base.query().is_some() {
            return Err(ClientError::config(format!(
                "api_base {} must not have a query",
                connection.api_base
            )));
        }
        if connection.client_id.trim().is_empty() {
            return Err(ClientError::config("the Client ID is empty"));
        }
        let organization = HeaderValue::from_str(connection.organization_id.as_str())
            .map_err(|_| ClientError::config("the Organization-ID cannot be sent as a header"))?;
        let shared = {
            let mut orgs = self
                .inner
                .orgs
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(
                orgs.entry(connection.organization_id.clone())
                    .or_insert_with(|| {
                        Arc::new(OrgShared {
                            tokens: Mutex::new(None),
                        })
                    }),
            )
        };
        let tokens = {
            let mut current = shared.tokens.lock().unwrap_or_else(PoisonError::into_inner);
            match current.as_ref() {
                Some(cache) if cache.serves(&connection) => Arc::clone(cache),
                _ => {
                    let cache = Arc::new(TokenCache::new(&connection));
                    *current = Some(Arc::clone(&cache));
                    cache
                }
            }
        };
        Ok(OrgClient {
            inner: Arc::new(OrgInner {
                client: Arc::clone(&self.inner),
                organization_id: connection.organization_id,
                organization,
                api_base: connection.api_base,
                tokens,
                counters: Counters::default(),
            }),
        })
    }
}

/// Counts of what one [`OrgClient`] (and its clones) did, for sync history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// HTTP requests sent to the API (every attempt; token requests not
    /// included).
    pub calls: u64,
    /// Response body bytes received from the API.
    pub bytes: u64,
    /// Retries after a transient failure or a rate limit.
    pub retries: u64,
    /// `429` answers received.
    pub rate_limited: u64,
    /// Access tokens obtained.
    pub token_refreshes: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    bytes: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
    token_refreshes: AtomicU64,
}

/// One organization's handle: makes the API calls. Cheap to clone; clones
/// share their [`Stats`].
#[derive(Clone)]
pub struct OrgClient {
    inner: Arc<OrgInner>,
}

struct OrgInner {
    client: Arc<ClientInner>,
    organization_id: OrganizationId,
    organization: HeaderValue,
    api_base: Url,
    tokens: Arc<TokenCache>,
    counters: Counters,
}

impl fmt::Debug for OrgClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrgClient")
            .field("organization_id", &self.inner.organization_id)
            .field("api_base", &self.inner.api_base.as_str())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl OrgClient {
    /// The organization this handle calls for.
    pub fn organization_id(&self) -> &OrganizationId {
        &self.inner.organization_id
    }

    /// The client's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.client.config
    }

    /// Fetches one page of a list. Retries transient failures and rate
    /// limits; refreshes the token once on a 401.
    pub async fn fetch_page(
        &self,
        resource: Resource,
        query: &ListQuery,
        cursor: &Cursor,
    ) -> Result<Page, ClientError> {
        let page_size = effective_page_size(query, self.inner.client.config.page_size);
        let url = list_url(&self.inner.api_base, resource, query, cursor, page_size)?;
        let span = tracing::debug_span!(
            "ascend_list",
            organization_id = %self.inner.organization_id,
            resource = %resource,
            cursor = %cursor,
        );
        async move {
            // A body that cannot be read (cut off by a gateway, an HTML
            // error page with status 200) is fetched again a few times,
            // with the transient backoff, before it is the caller's.
            let config = &self.inner.client.config;
            let mut total = 0;
            let mut fetch = 0;
            let mut page = loop {
                fetch += 1;
                let ((body, mut held), attempts) = self.get(resource, cursor, &url).await?;
                total += attempts;
                match Page::parse(resource, *cursor, &body) {
                    Ok(mut page) => {
                        // The body goes; the records stay until the page
                        // is dropped.
                        held.shrink_to(body.len());
                        page.held = Some(Arc::new(held));
                        break page;
                    }
                    Err(error) if fetch < config.body_attempts.max(1) => {
                        let wait = retry::body_delay(config, fetch);
                        tracing::warn!(error = %error, bytes = body.len(), fetch, wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "unusable answer; fetching the page again");
                        self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(wait).await;
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, bytes = body.len(), fetch, "unusable answer");
                        return Err(error);
                    }
                }
            };
            let attempts = total;
            page.attempts = attempts;
            // Counts only: a rejected record's text and reason are patient
            // data.
            tracing::debug!(
                records = page.records.len(),
                rejected = page.rejected.len(),
                bytes = page.bytes,
                attempts,
                "page"
            );
            Ok(page)
        }
        .instrument(span)
        .await
    }

    /// Keyset paging over a resource in ascending id order, starting after
    /// `after` (or from the start).
    pub fn keyset(
        &self,
        resource: Resource,
        query: ListQuery,
        after: Option<AscendId>,
    ) -> KeysetPager {
        KeysetPager::new(self.clone(), resource, query, after)
    }

    /// Offset paging over a resource (1-based pages). Prefer
    /// [`OrgClient::keyset`] for bulk pulls: offset paging skips or repeats
    /// records when data changes meanwhile.
    pub fn offset(&self, resource: Resource, query: ListQuery) -> OffsetPager {
        OffsetPager::new(self.clone(), resource, query)
    }

    /// How many records match `filter`, from `meta.pagination.total` of a
    /// one-record, ids-only page.
    pub async fn count(&self, resource: Resource, filter: &Filter) -> Result<u64, ClientError> {
        let query = ListQuery {
            filter: filter.clone(),
            page_size: Some(1),
            ids_only: true,
        };
        let page = self.fetch_page(resource, &query, &Cursor::Start).await?;
        page.total.ok_or_else(|| {
            ClientError::bad_payload(
                resource,
                &Cursor::Start,
                "the answer has no meta.pagination.total",
            )
        })
    }

    /// One cheap call (one location) proving the credentials, the
    /// Organization-ID and the vendor's enablement.
    pub async fn probe(&self) -> Result<(), ClientError> {
        let query = ListQuery::new().with_page_size(1);
        match self
            .fetch_page(Resource::Locations, &query, &Cursor::Start)
            .await
        {
            Ok(_) => Ok(()),
            // Locations are every integration's first resource: a 403 there
            // means the vendor has not enabled the integration at all.
            Err(ClientError::Forbidden { .. }) => Err(ClientError::Auth {
                organization_id: self.inner.organization_id.clone(),
                reason: AuthFailure::NotEnabled,
            }),
            Err(error) => Err(error),
        }
    }

    /// What this handle and its clones have done so far.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            calls: c.calls.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            token_refreshes: c.token_refreshes.load(Ordering::Relaxed),
        }
    }

    /// GETs `url` with retries; the body and the number of HTTP attempts.
    async fn get(
        &self,
        resource: Resource,
        cursor: &Cursor,
        url: &Url,
    ) -> Result<((Vec<u8>, Held), u32), ClientError> {
        let config = &self.inner.client.config;
        let attempts = AtomicU32::new(0);
        // The generation of the first token the API refused in this call
        // (u64::MAX: none yet), across retries.
        let refused = AtomicU64::new(u64::MAX);
        let body = (|| self.attempt(resource, cursor, url, &attempts, &refused))
            .retry(retry::backoff(config))
            .sleep(tokio::time::sleep)
            .when(ClientError::is_retryable)
            .adjust(|error, ceiling| {
                ceiling.and_then(|c| {
                    retry::next_delay(error, c, retry::random_fraction(), config.max_retry_after)
                })
            })
            .notify(|error, wait| {
                self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    organization_id = %self.inner.organization_id,
                    resource = %resource,
                    cursor = %cursor,
                    attempt = attempts.load(Ordering::Relaxed),
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    error = %error,
                    "retrying"
                );
            })
            .await;
        match body {
            Ok(body) => Ok((body, attempts.load(Ordering::Relaxed))),
            Err(error) => {
                tracing::warn!(
                    organization_id = %self.inner.organization_id,
                    resource = %resource,
                    cursor = %cursor,
                    attempts = attempts.load(Ordering::Relaxed),
                    class = error.class().as_str(),
                    error = %error,
                    "call failed"
                );
                Err(error)
            }
        }
    }

    /// Reads a 2xx answer's body, after reserving room for it and its
    /// parsed records (see `memory`) before a byte is read, and counts its
    /// bytes. The reservation is held until the returned `Held` is dropped.
    async fn read_answer(
        &self,
        response: &mut reqwest::Response,
        resource: Resource,
        cursor: &Cursor,
    ) -> Result<(Vec<u8>, Held), ClientError> {
        let inner = &*self.inner;
        let config = &inner.client.config;
        let expected = response
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(config.max_response_bytes)
            .min(config.max_response_bytes);
        let held = inner.client.memory.hold(expected.saturating_mul(2)).await;
        match read_body(response, config.max_response_bytes).await {
            Ok(body) => {
                inner
                    .counters
                    .bytes
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
                Ok((body, held))
            }
            Err(BodyError::TooLarge { limit }) => Err(ClientError::bad_payload(
                resource,
                cursor,
                format!("the answer is larger than max_response_bytes ({limit} bytes)"),
            )),
            Err(BodyError::Transport(error)) => {
                Err(ClientError::from_transport(&error, config.request_timeout))
            }
        }
    }

    /// The error of a refusal every call reads alike: a `429` (the
    /// organization paused fleet-wide), a 408 or 5xx (transient), a
    /// redirect (never followed with a token), any other 4xx (rejected).
    async fn refusal(
        &self,
        status: u16,
        response: &mut reqwest::Response,
        token: &crate::token::Token,
    ) -> ClientError {
        let inner = &*self.inner;
        match status {
            429 => {
                inner.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                let retry_after = retry_after(response);
                inner
                    .client
                    .budget
                    .throttled(&inner.organization_id, retry_after)
                    .await;
                ClientError::RateLimited { retry_after }
            }
            408 | 500..=599 => {
                let message = token.redact(body_message(&read_error_body(response).await));
                ClientError::transient(Some(status), message)
            }
            300..=399 => ClientError::config(format!(
                "the API answered a redirect ({status}) to {}; redirects are not followed with a token, \
                 set api_base to the final address",
                location(response)
            )),
            _ => ClientError::Rejected {
                status,
                message: token.redact(body_message(&read_error_body(response).await)),
            },
        }
    }

    /// Waits for the organization's pause (after a 429) and for room in its
    /// request budget. A pause longer than `max_retry_after` is not waited
    /// out in place: the call ends at once with [`ClientError::RateLimited`]
    /// and the time left, so the caller can give its work back.
    async fn wait_for_budget(&self) -> Result<(), ClientError> {
        let inner = &*self.inner;
        inner
            .client
            .budget
            .acquire(&inner.organization_id, inner.client.config.max_retry_after)
            .await
            .map_err(|refusal| match refusal {
                BudgetRefusal::Paused { left } => ClientError::RateLimited {
                    retry_after: Some(left),
                },
                BudgetRefusal::Unavailable { .. } => {
                    ClientError::transient(None, refusal.to_string())
                }
            })
    }

    /// One attempt: a token, the budget, one GET (two when a 401 calls for
    /// a fresh token).
    ///
    /// A 401 forgets the refused token (no retry or other task uses it
    /// again) and asks for a fresh one. Only a token issued after that
    /// refusal and refused in turn is an auth failure; a refresh that fails
    /// on the way (a 503 at the token endpoint) is transient and retried
    /// with a fresh token request, never with the refused token.
    async fn attempt(
        &self,
        resource: Resource,
        cursor: &Cursor,
        url: &Url,
        attempts: &AtomicU32,
        refused: &AtomicU64,
    ) -> Result<(Vec<u8>, Held), ClientError> {
        let inner = &*self.inner;
        let config = &inner.client.config;
        let ctx = FetchContext {
            http: &inner.client.http,
            timeout: config.request_timeout,
            refreshes: &inner.counters.token_refreshes,
        };
        let mut stale = None;
        loop {
            let token = inner.tokens.token(&ctx, stale).await?;
            self.wait_for_budget().await?;
            let attempt = attempts.fetch_add(1, Ordering::Relaxed) + 1;
            inner.counters.calls.fetch_add(1, Ordering::Relaxed);
            let sent = inner
                .client
                .http
                .get(url.clone())
                .header(AUTHORIZATION, token.authorization.clone())
                .header(ORGANIZATION_ID, inner.organization.clone())
                .header(ACCEPT, "application/json")
                .send()
                .await;
            let mut response = match sent {
                Ok(response) => response,
                Err(error) => {
                    let error = ClientError::from_transport(&error, config.request_timeout);
                    tracing::debug!(attempt, error = %error, "no answer");
                    return Err(error);
                }
            };
            let status = response.status().as_u16();
            if (200..300).contains(&status) {
                let answer = self.read_answer(&mut response, resource, cursor).await;
                if let Ok((body, _)) = &answer {
                    tracing::debug!(status, attempt, bytes = body.len(), "answer");
                }
                return answer;
            }
            let error = match status {
                401 if refused.load(Ordering::Relaxed) >= token.generation => {
                    // The first refusal in this call (or of a token no
                    // newer than the one refused first): fetch a new one.
                    tracing::info!(status, attempt, "access token refused; fetching a new one");
                    let _ = read_error_body(&mut response).await;
                    inner.tokens.invalidate(token.generation);
                    refused.fetch_min(token.generation, Ordering::Relaxed);
                    stale = Some(token.generation);
                    continue;
                }
                401 => ClientError::Auth {
                    organization_id: inner.organization_id.clone(),
                    reason: AuthFailure::TokenRefused,
                },
                403 => ClientError::Forbidden { resource },
                404 => ClientError::NotOffered { resource },
                _ => self.refusal(status, &mut response, &token).await,
            };
            tracing::debug!(status, attempt, error = %error, "refused");
            return Err(error);
        }
    }
}

/// Whether a call's request may have been applied by the API when it
/// failed: known only for writes, where it decides whether the call may be
/// repeated.
pub(crate) struct CallFailure {
    pub(crate) error: ClientError,
    /// False when the request certainly did not reach the API (a refused
    /// connection, a throttle, a refused token, our own budget).
    pub(crate) maybe_applied: bool,
}

impl CallFailure {
    fn not_applied(error: ClientError) -> CallFailure {
        CallFailure {
            error,
            maybe_applied: false,
        }
    }

    fn maybe_applied(error: ClientError) -> CallFailure {
        CallFailure {
            error,
            maybe_applied: true,
        }
    }
}

/// One try of a JSON call: its answer, a fresh token to fetch, or a
/// failure.
enum Try {
    Answer(serde_json::Value),
    FreshToken,
    Failed(CallFailure),
}

impl OrgClient {
    /// `path` (from `/v1/...`) under the organization's API base.
    pub(crate) fn api_url(&self, path: &str) -> Url {
        let mut url = self.inner.api_base.clone();
        url.set_path(&format!(
            "{}{path}",
            self.inner.api_base.path().trim_end_matches('/')
        ));
        url.set_query(None);
        url.set_fragment(None);
        url
    }

    /// One JSON call (write-back's sends and lookups): `method url` with
    /// `body`, through the token cache and the organization's budget like
    /// every call. A read is retried like a list page. A write (`write`
    /// true) is retried in place only when its request certainly did not
    /// reach the API (a refused connection, a `429`, a refused token that a
    /// fresh one replaces); any other failure is returned at once, saying
    /// whether the write may have been applied. `resource` names what is
    /// written or read, for errors.
    pub(crate) async fn call_json(
        &self,
        method: reqwest::Method,
        url: &Url,
        body: Option<&serde_json::Value>,
        resource: Resource,
        write: bool,
    ) -> Result<serde_json::Value, CallFailure> {
        let config = &self.inner.client.config;
        let mut tries = 0usize;
        // The generation of the first token the API refused (u64::MAX:
        // none yet), and the token to replace.
        let mut refused = u64::MAX;
        let mut stale = None;
        loop {
            tries += 1;
            let failure = match self
                .try_json(
                    &method,
                    url,
                    body,
                    (resource, write),
                    &mut refused,
                    &mut stale,
                )
                .await
            {
                Try::Answer(value) => return Ok(value),
                Try::FreshToken => continue,
                Try::Failed(failure) => failure,
            };
            let again = failure.error.is_retryable() && !(write && failure.maybe_applied);
            if !again || tries >= config.max_attempts {
                return Err(failure);
            }
            let shift = u32::try_from(tries - 1).unwrap_or(u32::MAX).min(16);
            let ceiling = config
                .base_delay
                .saturating_mul(1 << shift)
                .min(config.max_delay);
            let Some(wait) = retry::next_delay(
                &failure.error,
                ceiling,
                retry::random_fraction(),
                config.max_retry_after,
            ) else {
                return Err(failure);
            };
            self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                organization_id = %self.inner.organization_id,
                resource = %resource,
                method = %method,
                attempt = tries,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                error = %failure.error,
                "retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn try_json(
        &self,
        method: &reqwest::Method,
        url: &Url,
        body: Option<&serde_json::Value>,
        (resource, write): (Resource, bool),
        refused: &mut u64,
        stale: &mut Option<u64>,
    ) -> Try {
        let inner = &*self.inner;
        let config = &inner.client.config;
        let ctx = FetchContext {
            http: &inner.client.http,
            timeout: config.request_timeout,
            refreshes: &inner.counters.token_refreshes,
        };
        let token = match inner.tokens.token(&ctx, *stale).await {
            Ok(token) => token,
            Err(error) => return Try::Failed(CallFailure::not_applied(error)),
        };
        if let Err(error) = self.wait_for_budget().await {
            return Try::Failed(CallFailure::not_applied(error));
        }
        inner.counters.calls.fetch_add(1, Ordering::Relaxed);
        let mut request = inner
            .client
            .http
            .request(method.clone(), url.clone())
            .header(AUTHORIZATION, token.authorization.clone())
            .header(ORGANIZATION_ID, inner.organization.clone())
            .header(ACCEPT, "application/json");
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                // A connection that could not be made sent nothing.
                let sent = !error.is_connect() && !error.is_builder();
                let error = ClientError::from_transport(&error, config.request_timeout);
                tracing::debug!(method = %method, error = %error, sent, "no answer");
                return Try::Failed(CallFailure {
                    error,
                    maybe_applied: sent,
                });
            }
        };
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            // An answer that cannot be read may follow a write that was
            // applied.
            let (body, _held) = match self
                .read_answer(&mut response, resource, &Cursor::Start)
                .await
            {
                Ok(answer) => answer,
                Err(error) => return Try::Failed(CallFailure::maybe_applied(error)),
            };
            tracing::debug!(method = %method, status, bytes = body.len(), "answer");
            if body.iter().all(u8::is_ascii_whitespace) {
                return Try::Answer(serde_json::Value::Null);
            }
            return match serde_json::from_slice(&body) {
                Ok(value) => Try::Answer(value),
                Err(error) => Try::Failed(CallFailure::maybe_applied(ClientError::bad_payload(
                    resource,
                    &Cursor::Start,
                    format!("the answer is not JSON: {error}"),
                ))),
            };
        }
        let failure = match status {
            401 if *refused >= token.generation => {
                tracing::info!(status, "access token refused; fetching a new one");
                let _ = read_error_body(&mut response).await;
                inner.tokens.invalidate(token.generation);
                *refused = (*refused).min(token.generation);
                *stale = Some(token.generation);
                return Try::FreshToken;
            }
            401 => CallFailure::not_applied(ClientError::Auth {
                organization_id: inner.organization_id.clone(),
                reason: AuthFailure::TokenRefused,
            }),
            403 if write => CallFailure::not_applied(ClientError::Rejected {
                status,
                message: "the vendor has not allowed this write for the integration; ask the \
                          vendor to enable it, or turn the type off for the practice"
                    .to_owned(),
            }),
            403 => CallFailure::not_applied(ClientError::Forbidden { resource }),
            // A gateway timeout or a server error may come after the
            // backend did the work.
            408 | 500..=599 => {
                CallFailure::maybe_applied(self.refusal(status, &mut response, &token).await)
            }
            _ => CallFailure::not_applied(self.refusal(status, &mut response, &token).await),
        };
        tracing::debug!(method = %method, status, error = %failure.error, "refused");
        Try::Failed(failure)
    }
}

#[cfg(test)]
impl AscendClient {
    pub(crate) fn memory_free_kib(&self) -> usize {
        self.inner.memory.available_kib()
    }
}

#[cfg(test)]
impl OrgClient {
    /// Whether two handles draw from one request budget: the same
    /// client's, for the same organization.
    pub(crate) fn shares_budget_with(&self, other: &OrgClient) -> bool {
        Arc::ptr_eq(&self.inner.client.budget, &other.inner.client.budget)
            && self.inner.organization_id == other.inner.organization_id
    }

    /// The `Debug` output of the token cache and of its current token.
    pub(crate) async fn inner_token_debug(&self) -> String {
        let ctx = FetchContext {
            http: &self.inner.client.http,
            timeout: self.inner.client.config.request_timeout,
            refreshes: &self.inner.counters.token_refreshes,
        };
        let token = self.inner.tokens.token(&ctx, None).await;
        format!("{:?} {:?}", self.inner.tokens, token)
    }
}
