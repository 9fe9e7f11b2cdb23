//! HTTP behaviour against a tiny canned HTTP/1.1 server on loopback (no
//! simulator: these tests only check what the client sends and how it reads
//! answers).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use url::Url;

use crate::*;

const SECRET: &str = "s3cr3t-client-secret-value";
const TOKEN: &str = "tok-very-secret-access-token";
const ORG: &str = "0123456789abcdef01234567";

/// A request the stub received.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    fn query(&self, key: &str) -> Option<String> {
        let url = Url::parse(&format!("http://x{}", self.target)).ok()?;
        url.query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    fn is_token(&self) -> bool {
        self.path() == "/oauth/token"
    }
}

/// A canned answer.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Announce a longer body than sent, then close (a broken transfer).
    short_by: usize,
}

impl Reply {
    fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body: body.into().into_bytes(),
            short_by: 0,
        }
    }

    fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

fn token_reply() -> Reply {
    Reply::json(
        200,
        format!(r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":"3600"}}"#),
    )
}

fn page_body(ids: impl IntoIterator<Item = u64>, total: Option<u64>) -> String {
    let records: Vec<String> = ids
        .into_iter()
        .map(|id| {
            format!(r#"{{"id":"{id}","lastModified":"2026-11-20T00:00:00.000Z","name":"r{id}"}}"#)
        })
        .collect();
    let total = total.map_or("null".to_string(), |t| format!("\"{t}\""));
    format!(
        r#"{{"data":[{}],"warnings":[],"errors":[],"meta":{{"pagination":{{"total":{total}}}}}}}"#,
        records.join(",")
    )
}

type Handler = dyn Fn(&Req, usize) -> Reply + Send + Sync;

/// The stub server: answers every request with `handler(request, n)`, where
/// `n` counts the API (non-token) requests so far, from 0.
struct Stub {
    base: String,
    requests: Arc<Mutex<Vec<Req>>>,
}

impl Stub {
    async fn start(handler: impl Fn(&Req, usize) -> Reply + Send + Sync + 'static) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let api_calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = Arc::clone(&handler);
                let seen = Arc::clone(&seen);
                let api_calls = Arc::clone(&api_calls);
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut reader = BufReader::new(read);
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or_default().to_string();
                    let target = parts.next().unwrap_or_default().to_string();
                    let mut headers = Vec::new();
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':') {
                            headers.push((name.trim().to_string(), value.trim().to_string()));
                        }
                    }
                    let length = headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let req = Req {
                        method,
                        target,
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    };
                    let n = if req.is_token() {
                        usize::MAX
                    } else {
                        api_calls.fetch_add(1, Ordering::SeqCst)
                    };
                    let reply = handler(&req, n);
                    seen.lock().expect("lock").push(req);
                    let mut head =
                        format!("HTTP/1.1 {} Canned\r\nConnection: close\r\n", reply.status);
                    head.push_str(&format!(
                        "Content-Length: {}\r\n",
                        reply.body.len() + reply.short_by
                    ));
                    for (name, value) in &reply.headers {
                        head.push_str(&format!("{name}: {value}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = write.write_all(head.as_bytes()).await;
                    let _ = write.write_all(&reply.body).await;
                    let _ = write.shutdown().await;
                });
            }
        });
        Stub { base, requests }
    }

    fn connection(&self) -> Connection {
        Connection {
            api_base: Url::parse(&format!("{}/api", self.base)).expect("url"),
            token_url: Url::parse(&format!("{}/oauth/token", self.base)).expect("url"),
            organization_id: ORG.parse().expect("org"),
            client_id: "the-client-id".into(),
            client_secret: SecretString::from(SECRET.to_string()),
        }
    }

    fn requests(&self) -> Vec<Req> {
        self.requests.lock().expect("lock").clone()
    }

    fn api_requests(&self) -> Vec<Req> {
        self.requests()
            .into_iter()
            .filter(|r| !r.is_token())
            .collect()
    }

    fn token_requests(&self) -> usize {
        self.requests().iter().filter(|r| r.is_token()).count()
    }
}

/// A config for tests: loopback allowed, tiny backoff (no test waits on it).
fn test_config() -> ClientConfig {
    ClientConfig {
        insecure_loopback: InsecureLoopback::allow_for_local_testing(),
        requests_per_second: std::num::NonZeroU32::new(10_000).expect("nonzero"),
        burst: std::num::NonZeroU32::new(10_000).expect("nonzero"),
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        request_timeout: Duration::from_secs(20),
        ..ClientConfig::default()
    }
}

async fn org_for(stub: &Stub) -> OrgClient {
    AscendClient::new(test_config())
        .expect("client")
        .connect(stub.connection())
        .expect("connect")
}

/// Answers token requests, and API requests with `api`.
async fn stub_with(api: impl Fn(&Req, usize) -> Reply + Send + Sync + 'static) -> Stub {
    Stub::start(move |req, n| {
        if req.is_token() {
            token_reply()
        } else {
            api(req, n)
        }
    })
    .await
}

#[tokio::test]
async fn sends_the_token_and_the_organization_and_reads_the_page() {
    let stub = stub_with(|_, _| Reply::json(200, page_body([1000, 999_999], Some(2)))).await;
    let org = org_for(&stub).await;
    let page = org
        .fetch_page(Resource::Patients, &ListQuery::new(), &Cursor::Start)
        .await
        .expect("page");
    assert_eq!(page.records.len(), 2);
    assert_eq!(page.records[1].id, AscendId(999_999));
    assert_eq!(page.total, Some(2));
    assert_eq!(page.attempts, 1);

    let requests = stub.requests();
    let token = &requests[0];
    assert!(token.is_token());
    assert_eq!(token.method, "POST");
    assert_eq!(
        token.query("grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(
        token.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        token.body,
        format!("client_id=the-client-id&client_secret={SECRET}")
    );

    let api = &requests[1];
    assert_eq!(api.method, "GET");
    assert_eq!(api.target, "/api/v1/patients?pageSize=500");
    assert_eq!(
        api.header("authorization").map(str::to_string),
        Some(format!("Bearer {TOKEN}"))
    );
    assert_eq!(api.header("organization-id"), Some(ORG));

    let stats = org.stats();
    assert_eq!(stats.calls, 1);
    assert_eq!(stats.token_refreshes, 1);
    assert_eq!(stats.bytes, page.bytes as u64);
}

#[tokio::test]
async fn a_401_gets_one_refresh_and_one_retry() {
    let stub = stub_with(|_, n| {
        if n == 0 {
            Reply::json(401, r#"{"fault":{"faultstring":"Invalid access token"}}"#)
        } else {
            Reply::json(200, page_body([1], None))
        }
    })
    .await;
    let org = org_for(&stub).await;
    let page = org
        .fetch_page(Resource::Patients, &ListQuery::new(), &Cursor::Start)
        .await
        .expect("page");
    assert_eq!(page.attempts, 2);
    assert_eq!(stub.token_requests(), 2);
    assert_eq!(org.stats().token_refreshes, 2);
}

/// A 401 on the API, then a refresh that meets a 503 at the token
/// endpoint: the retry asks for a fresh token again instead of reusing the
/// refused one, and the page arrives. Only the token endpoint refusing the
/// credentials is an auth failure (issue 12).
#[tokio::test]
async fn a_refresh_that_meets_a_503_is_retried_with_a_fresh_token() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&tokens);
    let stub = Stub::start(move |req, _| {
        if req.is_token() {
            // The first token is issued, the refresh meets a 503, the next
            // request succeeds.
            return match seen.fetch_add(1, Ordering::SeqCst) {
                1 => Reply::json(503, r#"{"message":"token service busy"}"#),
                _ => token_reply(),
            };
        }
        // The API refuses the first token it is shown, then answers.
        if seen.load(Ordering::SeqCst) == 1 {
            Reply::json(401, r#"{"fault":{"faultstring":"Invalid access token"}}"#)
        } else {
            Reply::json(200, page_body([1], None))
        }
    })
    .await;
    let org = org_for(&stub).await;
    let page = org
        .fetch_page(Resource::Patients, &ListQuery::new(), &Cursor::Start)
        .await
        .expect("a transient refresh failure is not an auth failure");
    assert_eq!(page.records.len(), 1);
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        3,
        "issued, 503, issued again"
    );
    // Never the refused token again: a fresh token comes before the retry.
    let order: Vec<bool> = stub.requests().iter().map(Req::is_token).collect();
    assert_eq!(
        order,
        [true, false, true, true, false],
        "token or API, in order"
    );
}

#[tokio::test]
async fn a_second_401_is_an_auth_error() {
    let stub =
        stub_with(|_, _| Reply::json(401, r#"{"fault":{"faultstring":"Invalid access token"}}"#))
            .await;
    let org = org_for(&stub).await;
    let error = org
        .fetch_page(Resource::Patients, &ListQuery::new(), &Cursor::Start)
        .await
        .expect_err("401");
    assert!(
        matches!(
            error,
            ClientError::Auth {
                reason: AuthFailure::TokenRefused,
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.is_retryable());
    assert_eq!(stub.api_requests().len(), 2);
    assert_eq!(stub.token_requests(), 2);
}

#[tokio::test]
async fn a_403_means_not_enabled_and_is_not_retried() {
    let stub = stub_with(|_, _| Reply::json(403, "{}")).await;
    let org = org_for(&stub).await;
    let error = org.probe().await.expect_err("403");
    assert!(
        matches!(
            error,
            ClientError::Auth {
                reason: AuthFailure::NotEnabled,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("has not enabled the integration")
    );
    assert_eq!(stub.api_requests().len(), 1);
    assert_eq!(
        stub.api_requests()[0].target,
        "/api/v1/locations?pageSize=1"
    );
}

#[tokio::test]
async fn a_404_on_a_list_means_not_offered() {
    let stub = stub_with(|_, _| Reply::json(404, r#"{"message":"no such thing"}"#)).await;
    let org = org_for(&stub).await;
    let error = org
        .fetch_page(Resource::Transactions, &ListQuery::new(), &Cursor::Start)
        .await
        .expect_err("404");
    assert!(
        matches!(
            error,
            ClientError::NotOffered {
                resource: Resource::Transactions
            }
        ),
        "{error}"
    );
    assert_eq!(stub.api_requests().len(), 1);
}

#[tokio::test]
async fn other_4xx_are_rejected_with_the_message() {
    let long = "x".repeat(5000);
    let body = format!(r#"{{"errors":[{{"message":"unknown filter field foo {long}"}}]}}"#);
    let stub = stub_with(move |_, _| Reply::json(400, body.clone())).await;
    let org = org_for(&stub).await;
    let query = ListQuery::new().with_filter(Filter::new().eq("foo", 1u64));
    let error = org
        .fetch_page(Resource::Patients, &query, &Cursor::Start)
        .await
        .expect_err("400");
    match &error {
        ClientError::Rejected { status, message } => {
            assert_eq!(*status, 400);
            assert!(message.starts_with("unknown filter field foo"), "{message}");
            assert!(
                message.len() < 400,
                "message not truncated: {} bytes",
                message.len()
            );
        }
        other => panic!("expected Rejected, got {other}"),
    }
    assert_eq!(stub.api_requests().len(), 1);
    assert_eq!(
        stub.api_requests()[0].query("filter").as_deref(),
        Some("foo==1")
    );
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let stub = stub_with(|_, n| match n {
        0 => Reply::json(503, "<html>unavailable</html>"),
        1 => Reply::json(500, "{}"),
        _ => Reply::json(200, page_body([1, 2], None)),
    })
    .await;
    let org = org_for(&stub).await;
    let page = org
        .fetch_page(Resource::Visits, &ListQuery::new(), &Cursor::Start)
        .await
        .expect("page");
    assert_eq!(page.attempts, 3);
    assert_eq!(org.stats().retries, 2);
    assert_eq!(org.stats().calls, 3);
    assert_eq!(stub.token_requests(), 1);
}

#[tokio::test]
async fn retries_are_bounded() {
    let stub = stub_with(|_, _| Reply::json(502, "bad gateway")).await;
    let config = ClientConfig {
        max_attempts: 3,
        ..test_config()
    };
    let org = AscendClient::new(config)
        .expect("client")
        .connect(stub.connection())
        .expect("connect");
    let error = org
        .fetch_page(Resource::Visits, &ListQuery::new(), &Cursor::Start)
        .await
        .expect_err("502");
    assert!(
        matches!(
            error,
            ClientError::Transient {
                status: Some(502),
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.class().as_str(), "transient");
    assert_eq!(stub.api_requests().len(), 3);
}

#[tokio::test]
async fn a_broken_transfer_is_transient() {
    let stub = stub_with(|_, n| {
        if n == 0 {
            Reply {
                short_by: 100,
                ..Reply::json(200, r#"{"data":[{"id":"1"}"#)
            }
        } else {
            Reply::json(200, page_body([1], None))
        }
    })
    .await;
    let org = org_for(&stub).await;
    let page = org
        .fetch_page(Resource::Visits, &ListQuery::new(), &Cursor::Start)
        .await
        .expect("page");
    assert_eq!(page.attempts, 2);
}

#[tokio::test]
async fn rate_limits_are_retried_after_retry_after() {
    let stub = stub_with(|_, n| {
        if n == 0 {
            Reply::json(429, "{}").with_header("Retry-After", "0")
        } else {
            Reply::json(200, page_body([1], None))
        }
    })
    .await;
    let org = org_for(&stub).await;
    let page = org
        .fetch_page(Resource::Patients, &ListQuery::new(), &Cursor::Start)
        .await
        .expect("page");
    assert_eq!(page.attempts, 2);
    assert_eq!(org.stats().rate_limited, 1);
    assert_eq!(org.stats().retries, 1);
}

#[tokio::test]
async fn a_retry_after_beyond_the_limit_is_returned_at_once() {
    let stub = stub_with(|_, _| Reply::json(429, "{}").with_header("Retry-After", "86400")).await;
    let org = org_for(&stub).await;
    let error = org
        .fetch_page(Resource::Patients, &ListQuery::new(), &Cursor::Start)
        .await
        .expect_err("429");
    match error {
        ClientError::RateLimited { retry_after } => {
            assert_eq!(retry_after, Some(Duration::from_secs(86400)))
        }
        other => panic!("expected RateLimited, got {other}"),
    }
    assert_eq!(stub.api_requests().len(), 1);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let stub = stub_with(|_, _| {
        Reply::json(302, "").with_header("Location", "https://elsewhere.example/steal")
    })
    .await;
    let org = org_for(&stub).await;
    let error = org
        .fetch_page(Resource::Patients, &ListQuery::new(), &Cursor::Start)
        .await
        .expect_err("302");
    assert_eq!(error.class().as_str(), "config", "{error}");
    assert!(error.to_string().contains("elsewhere.example"), "{error}");
    assert_eq!(stub.api_requests().len(), 1);
}

#[tokio::test]
async fn a_truncated_body_is_fetched_again_then_bad_payload() {
    let stub = stub_with(|_, _| Reply::json(200, r#"{"data":[{"id":"1"},{"id":"2","#)).await;
    let org = org_for(&stub).await;
    let cursor = Cursor::AfterId(AscendId(41));
    let error = org
        .fetch_page(Resource::Appointments, &ListQuery::new(), &cursor)
        .await
        .expect_err("truncated");
    match &error {
        ClientError::BadPayload {
            resource,
            page,
            detail,
        } => {
            assert_eq!(*resource, Resource::Appointments);
            assert_eq!(*page, cursor);
            assert!(detail.contains("truncated"), "{detail}");
        }
        other => panic!("expected BadPayload, got {other}"),
    }
    assert!(error.to_string().contains("lastId=41"));
    assert_eq!(
        stub.api_requests().len(),
        test_config().body_attempts,
        "fetched again a bounded number of times"
    );
}

#[tokio::test]
async fn a_body_cut_off_once_is_fetched_again_and_lands() {
    let stub = stub_with(|_, n| {
        if n == 0 {
            Reply::json(200, r#"{"data":[{"id":"1"},{"id":"2","#)
        } else {
            Reply::json(200, page_body([1, 2], None))
        }
    })
    .await;
    let org = org_for(&stub).await;
    let page = org
        .fetch_page(Resource::Appointments, &ListQuery::new(), &Cursor::Start)
        .await
        .expect("the second fetch is whole");
    assert_eq!(page.records.len(), 2);
    assert_eq!(page.attempts, 2);
    assert_eq!(stub.api_requests().len(), 2);
}

#[tokio::test]
async fn bad_client_credentials_are_an_auth_error_without_the_secret() {
    let stub = Stub::start(|req, _| {
        if req.is_token() {
            Reply::json(
                401,
                format!(
                    r#"{{"error":"invalid_client","error_description":"bad secret {SECRET}"}}"#
                ),
            )
        } else {
            Reply::json(200, page_body([1], None))
        }
    })
    .await;
    let org = org_for(&stub).await;
    let error = org.probe().await.expect_err("bad credentials");
    assert!(
        matches!(
            error,
            ClientError::Auth {
                reason: AuthFailure::BadCredentials { status: 401, .. },
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.is_retryable());
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("bad secret [REDACTED]"), "{shown}");
    assert_eq!(stub.token_requests(), 1);
    assert!(stub.api_requests().is_empty());
}

#[tokio::test]
async fn an_unusable_token_answer_is_an_auth_error() {
    let stub = Stub::start(|req, _| {
        if req.is_token() {
            Reply::json(200, format!(r#"{{"token":"{TOKEN}"}}"#))
        } else {
            Reply::json(200, "{}")
        }
    })
    .await;
    let org = org_for(&stub).await;
    let error = org.probe().await.expect_err("no access_token");
    assert!(
        matches!(
            error,
            ClientError::Auth {
                reason: AuthFailure::UnusableTokenResponse { .. },
                ..
            }
        ),
        "{error}"
    );
    assert!(!format!("{error} {error:?}").contains(TOKEN));
}

#[tokio::test]
async fn expires_in_as_a_number_is_accepted_and_short_lifetimes_refresh() {
    let stub = Stub::start(|req, _| {
        if req.is_token() {
            Reply::json(
                200,
                format!(r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":0}}"#),
            )
        } else {
            Reply::json(200, page_body([1], None))
        }
    })
    .await;
    let org = org_for(&stub).await;
    org.probe().await.expect("first");
    org.probe().await.expect("second");
    // A zero lifetime is due for refresh at once: one token per call.
    assert_eq!(stub.token_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_token_fetch() {
    let stub = stub_with(|_, _| Reply::json(200, page_body([1], None))).await;
    let client = AscendClient::new(test_config()).expect("client");
    let org = client.connect(stub.connection()).expect("connect");
    let other = client.connect(stub.connection()).expect("connect again");
    assert!(org.shares_budget_with(&other));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let org = if i % 2 == 0 {
            org.clone()
        } else {
            other.clone()
        };
        tasks.spawn(async move {
            org.fetch_page(Resource::Patients, &ListQuery::new(), &Cursor::Start)
                .await
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("joined").expect("page");
    }
    assert_eq!(stub.token_requests(), 1);
    assert_eq!(stub.api_requests().len(), 16);
    assert_eq!(org.stats().calls + other.stats().calls, 16);
}

#[tokio::test]
async fn new_credentials_for_an_organization_get_a_new_token_cache_but_the_same_budget() {
    let stub = stub_with(|_, _| Reply::json(200, page_body([1], None))).await;
    let client = AscendClient::new(test_config()).expect("client");
    let first = client.connect(stub.connection()).expect("connect");
    first.probe().await.expect("probe");
    let mut rotated = stub.connection();
    rotated.client_secret = SecretString::from("a-new-secret".to_string());
    let second = client.connect(rotated).expect("connect");
    assert!(first.shares_budget_with(&second));
    second.probe().await.expect("probe");
    assert_eq!(stub.token_requests(), 2);
    let other_org = Connection {
        organization_id: "fedcba9876543210fedcba98".parse().expect("org"),
        ..stub.connection()
    };
    let third = client.connect(other_org).expect("connect");
    assert!(!first.shares_budget_with(&third));
}

/// Serves ids `1..=count` in pages, by `lastId` or by `page`.
fn paged_stub_handler(count: u64) -> impl Fn(&Req, usize) -> Reply + Send + Sync + 'static {
    move |req, _| {
        let size: u64 = req
            .query("pageSize")
            .and_then(|s| s.parse().ok())
            .unwrap_or(500);
        let ids: Vec<u64> =
            if let Some(page) = req.query("page").and_then(|s| s.parse::<u64>().ok()) {
                ((page - 1) * size + 1..=count)
                    .take(size as usize)
                    .collect()
            } else {
                let after: u64 = req
                    .query("lastId")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                (after + 1..=count).take(size as usize).collect()
            };
        Reply::json(200, page_body(ids, Some(count)))
    }
}

async fn walk_keyset(org: &OrgClient, query: ListQuery) -> Vec<u64> {
    let mut pager = org.keyset(Resource::Patients, query, None);
    let mut ids = Vec::new();
    while let Some(page) = pager.next_page().await.expect("page") {
        ids.extend(page.records.iter().map(|r| r.id.0));
    }
    assert!(pager.is_done());
    ids
}

#[tokio::test]
async fn keyset_paging_ends_on_a_short_page_without_an_extra_call() {
    let stub = stub_with(paged_stub_handler(7)).await;
    let org = org_for(&stub).await;
    let ids = walk_keyset(&org, ListQuery::new().with_page_size(3)).await;
    assert_eq!(ids, (1..=7).collect::<Vec<_>>());
    let targets: Vec<String> = stub.api_requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        [
            "/api/v1/patients?pageSize=3",
            "/api/v1/patients?pageSize=3&lastId=3",
            "/api/v1/patients?pageSize=3&lastId=6"
        ]
    );
}

#[tokio::test]
async fn keyset_paging_asks_again_after_a_full_page() {
    let stub = stub_with(paged_stub_handler(6)).await;
    let org = org_for(&stub).await;
    let ids = walk_keyset(&org, ListQuery::new().with_page_size(3)).await;
    assert_eq!(ids, (1..=6).collect::<Vec<_>>());
    assert_eq!(stub.api_requests().len(), 3);
}

#[tokio::test]
async fn keyset_paging_resumes_after_an_id_and_after_an_error() {
    let failed_once = Arc::new(AtomicUsize::new(0));
    let flag = Arc::clone(&failed_once);
    let inner = paged_stub_handler(5);
    let stub = stub_with(move |req, n| {
        if req.query("lastId").as_deref() == Some("4") && flag.fetch_add(1, Ordering::SeqCst) == 0 {
            return Reply::json(400, r#"{"message":"try me again"}"#);
        }
        inner(req, n)
    })
    .await;
    let org = org_for(&stub).await;
    let mut pager = org.keyset(
        Resource::Patients,
        ListQuery::new().with_page_size(2),
        Some(AscendId(2)),
    );
    let first = pager.next_page().await.expect("page").expect("some");
    assert_eq!(first.cursor, Cursor::AfterId(AscendId(2)));
    assert_eq!(pager.after_id(), Some(AscendId(4)));
    assert!(pager.next_page().await.is_err());
    assert_eq!(pager.after_id(), Some(AscendId(4)));
    let last = pager.next_page().await.expect("page").expect("some");
    assert_eq!(last.records.iter().map(|r| r.id.0).collect::<Vec<_>>(), [5]);
    // Resumed after id 2, the pager has seen 3 of the 5 records the total
    // names, so a short page is not taken as the end: an empty page is.
    let empty = pager.next_page().await.expect("page").expect("some");
    assert!(empty.records.is_empty());
    assert!(pager.next_page().await.expect("end").is_none());
}

#[tokio::test]
async fn a_short_page_ends_keyset_paging_only_at_the_total() {
    // A gateway that serves 2 records whatever was asked, and says nothing
    // of it: 5 records in all.
    let stub = stub_with(|req, _| {
        let after: u64 = req
            .query("lastId")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let ids: Vec<u64> = (after + 1..=5).take(2).collect();
        Reply::json(200, page_body(ids, Some(5)))
    })
    .await;
    let org = org_for(&stub).await;
    let mut pager = org.keyset(Resource::Patients, ListQuery::new().with_page_size(4), None);
    let mut ids = Vec::new();
    while let Some(page) = pager.next_page().await.expect("page") {
        ids.extend(page.records.iter().map(|r| r.id.0));
    }
    assert_eq!(ids, [1, 2, 3, 4, 5], "a short page ended the paging early");
    assert_eq!(
        stub.api_requests().len(),
        3,
        "the page reaching the total ends it, without another call"
    );
}

#[tokio::test]
async fn keyset_paging_refuses_ids_that_do_not_ascend() {
    let stub = stub_with(|_, _| Reply::json(200, page_body([3, 2], None))).await;
    let org = org_for(&stub).await;
    let mut pager = org.keyset(Resource::Patients, ListQuery::new().with_page_size(2), None);
    let error = pager.next_page().await.expect_err("out of order");
    assert_eq!(error.class().as_str(), "bad_payload");
}

/// Records 1..=count; the ids in `bad` are served with an unreadable
/// `lastModified` (id 3 read as `"3x"` when `non_numeric` holds it).
fn bad_records_handler(
    count: u64,
    bad: &'static [u64],
    non_numeric: &'static [u64],
) -> impl Fn(&Req, usize) -> Reply + Send + Sync + 'static {
    move |req, _| {
        let size: u64 = req
            .query("pageSize")
            .and_then(|s| s.parse().ok())
            .unwrap_or(500);
        let after: u64 = req
            .query("lastId")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let records: Vec<String> = (after + 1..=count)
            .take(size as usize)
            .map(|id| {
                if non_numeric.contains(&id) {
                    format!(r#"{{"id":"{id}x","lastModified":"2026-11-20T00:00:00.000Z"}}"#)
                } else if bad.contains(&id) {
                    format!(r#"{{"id":"{id}","lastModified":"soon"}}"#)
                } else {
                    format!(r#"{{"id":"{id}","lastModified":"2026-11-20T00:00:00.000Z"}}"#)
                }
            })
            .collect();
        Reply::json(
            200,
            format!(
                r#"{{"data":[{}],"meta":{{"pagination":{{"total":{count}}}}}}}"#,
                records.join(",")
            ),
        )
    }
}

#[tokio::test]
async fn a_bad_record_ends_no_page_and_the_cursor_moves_past_it() {
    // 3 and 6 end their pages; 3 has no number at all.
    let stub = stub_with(bad_records_handler(7, &[6], &[3])).await;
    let org = org_for(&stub).await;
    let mut pager = org.keyset(Resource::Patients, ListQuery::new().with_page_size(3), None);
    let (mut read, mut rejected) = (Vec::new(), Vec::new());
    while let Some(page) = pager.next_page().await.expect("no page fails") {
        read.extend(page.records.iter().map(|r| r.id.0));
        rejected.extend(page.rejected.iter().filter_map(|r| r.id.clone()));
    }
    assert_eq!(read, [1, 2, 4, 5, 7]);
    // 3x is served twice (see below); the caller's quarantine keeps one.
    assert_eq!(rejected, ["3x", "3x", "6"]);
    let targets: Vec<String> = stub.api_requests().into_iter().map(|r| r.target).collect();
    // Page 1 ends on an id without a number: the next page starts after
    // the last readable one and serves the bad record once more.
    assert_eq!(
        targets,
        [
            "/api/v1/patients?pageSize=3",
            "/api/v1/patients?pageSize=3&lastId=2",
            "/api/v1/patients?pageSize=3&lastId=5",
        ]
    );
}

#[tokio::test]
async fn a_page_of_nothing_but_unreadable_ids_ends_or_fails_but_never_loops() {
    // The last record has no number: a short page that cannot move the
    // cursor ends the paging.
    let stub = stub_with(bad_records_handler(3, &[], &[3])).await;
    let org = org_for(&stub).await;
    let mut pager = org.keyset(Resource::Patients, ListQuery::new().with_page_size(2), None);
    let mut pages = 0;
    while let Some(page) = pager.next_page().await.expect("page") {
        pages += 1;
        assert!(pages < 5, "the pager loops on a bad record");
        let _ = page;
    }
    assert_eq!(stub.api_requests().len(), 2);
    // A full page of such records cannot be paged past: bad payload.
    let stub = stub_with(bad_records_handler(4, &[], &[3, 4])).await;
    let org = org_for(&stub).await;
    let mut pager = org.keyset(
        Resource::Patients,
        ListQuery::new().with_page_size(2),
        Some(AscendId(2)),
    );
    let error = pager.next_page().await.expect_err("cannot move");
    assert_eq!(error.class().as_str(), "bad_payload");
}

#[tokio::test]
async fn offset_paging_counts_pages_from_one() {
    let stub = stub_with(paged_stub_handler(5)).await;
    let org = org_for(&stub).await;
    let mut pager = org.offset(Resource::Providers, ListQuery::new().with_page_size(2));
    let mut ids = Vec::new();
    while let Some(page) = pager.next_page().await.expect("page") {
        ids.extend(page.records.iter().map(|r| r.id.0));
    }
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    let targets: Vec<String> = stub.api_requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        [
            "/api/v1/providers?page=1&pageSize=2",
            "/api/v1/providers?page=2&pageSize=2",
            "/api/v1/providers?page=3&pageSize=2"
        ]
    );
}

#[tokio::test]
async fn count_reads_the_total_of_an_ids_only_page() {
    let stub = stub_with(|_, _| Reply::json(200, page_body([7], Some(12_345)))).await;
    let org = org_for(&stub).await;
    let filter = Filter::new().ge("id", 100u64).le("id", 200u64);
    assert_eq!(
        org.count(Resource::Patients, &filter).await.expect("count"),
        12_345
    );
    let request = &stub.api_requests()[0];
    assert_eq!(request.query("pageSize").as_deref(), Some("1"));
    assert_eq!(request.query("responseFields").as_deref(), Some("id"));
    assert_eq!(request.query("filter").as_deref(), Some("id>=100,id<=200"));
}

#[tokio::test]
async fn count_without_a_total_is_bad_payload() {
    let stub = stub_with(|_, _| Reply::json(200, r#"{"data":[]}"#)).await;
    let org = org_for(&stub).await;
    let error = org
        .count(Resource::Patients, &Filter::new())
        .await
        .expect_err("no total");
    assert_eq!(error.class().as_str(), "bad_payload");
}

#[tokio::test]
async fn endpoints_are_checked_when_connecting() {
    let stub = stub_with(|_, _| Reply::json(200, page_body([1], None))).await;
    let strict = AscendClient::new(ClientConfig::default()).expect("client");
    let error = strict
        .connect(stub.connection())
        .expect_err("http refused by default");
    assert_eq!(error.class().as_str(), "config");

    let lenient = AscendClient::new(test_config()).expect("client");
    let mut remote = stub.connection();
    remote.api_base = Url::parse("http://prod.hs1api.com/ascend-gateway/api").expect("url");
    assert_eq!(
        lenient
            .connect(remote)
            .expect_err("http to a remote host")
            .class()
            .as_str(),
        "config"
    );
    let mut remote_token = stub.connection();
    remote_token.token_url =
        Url::parse("http://prod.hs1api.com/oauth/client_credential/accesstoken").expect("url");
    assert_eq!(
        lenient
            .connect(remote_token)
            .expect_err("http to a remote host")
            .class()
            .as_str(),
        "config"
    );
    let https = Connection {
        api_base: Url::parse("https://prod.hs1api.com/ascend-gateway/api").expect("url"),
        token_url: Url::parse("https://prod.hs1api.com/oauth/client_credential/accesstoken")
            .expect("url"),
        ..stub.connection()
    };
    assert!(strict.connect(https).is_ok());
}

#[tokio::test]
async fn a_bad_filter_fails_before_any_call() {
    let stub = stub_with(|_, _| Reply::json(200, page_body([1], None))).await;
    let org = org_for(&stub).await;
    let query = ListQuery::new().with_filter(Filter::new().eq("not a field", 1u64));
    let error = org
        .fetch_page(Resource::Patients, &query, &Cursor::Start)
        .await
        .expect_err("bad filter");
    assert_eq!(error.class().as_str(), "config");
    assert!(stub.requests().is_empty());
}

/// A tracing subscriber that writes every event and span field into a
/// string, to check that no secret is ever logged.
mod capture {
    use std::fmt::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    #[derive(Clone, Default)]
    pub struct Capture {
        pub text: Arc<Mutex<String>>,
        next: Arc<AtomicU64>,
    }

    /// The capture installed as the process-wide subscriber of the test
    /// binary (a scoped one misses events whose callsites other tests, on
    /// other threads, registered first).
    pub fn global() -> Capture {
        static GLOBAL: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                let capture = Capture::default();
                let _ = tracing::subscriber::set_global_default(capture.clone());
                capture
            })
            .clone()
    }

    struct Writer<'a>(&'a mut String);

    impl Visit for Writer<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, " {}={:?}", field.name(), value);
        }
    }

    impl Capture {
        fn write(&self, f: impl FnOnce(&mut Writer<'_>)) {
            if let Ok(mut text) = self.text.lock() {
                f(&mut Writer(&mut text));
                text.push('\n');
            }
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            self.write(|w| span.record(w));
            Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) + 1)
        }
        fn record(&self, _: &Id, values: &Record<'_>) {
            self.write(|w| values.record(w));
        }
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            self.write(|w| event.record(w));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

#[test]
fn secrets_never_appear_in_debug_display_or_logs() {
    let capture = capture::global();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let shown = runtime.block_on(async {
        let stub = Stub::start(|req, n| {
            if req.is_token() {
                return token_reply();
            }
            match n {
                0 => Reply::json(401, format!(r#"{{"message":"token {TOKEN} refused"}}"#)),
                1 => Reply::json(503, "{}"),
                2 => Reply::json(200, page_body([1], None)),
                _ => Reply::json(
                    400,
                    format!(r#"{{"message":"bad request with token {TOKEN}"}}"#),
                ),
            }
        })
        .await;
        let client = AscendClient::new(test_config()).expect("client");
        let connection = stub.connection();
        let org = client.connect(connection.clone()).expect("connect");
        let page = org
            .fetch_page(Resource::Patients, &ListQuery::new(), &Cursor::Start)
            .await;
        let rejected = org
            .fetch_page(Resource::Patients, &ListQuery::new(), &Cursor::Start)
            .await;
        let config = test_config();
        format!(
            "{connection:?} {org:?} {client:?} {config:?} {page:?} {rejected:?} {} {:?}",
            rejected
                .as_ref()
                .map(|_| String::new())
                .unwrap_or_else(ToString::to_string),
            org.inner_token_debug().await,
        )
    });
    let logs = capture.text.lock().map(|t| t.clone()).unwrap_or_default();
    assert!(
        logs.contains("retrying"),
        "the capture saw the retry: {logs}"
    );
    assert!(
        shown.contains("bad request with token [REDACTED]"),
        "{shown}"
    );
    for text in [&shown, &logs] {
        assert!(!text.contains(SECRET), "secret leaked: {text}");
        assert!(!text.contains(TOKEN), "token leaked: {text}");
    }
}

/// The futures the CLI and the sync engine spawn must be `Send`.
#[test]
fn futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    fn check(org: &OrgClient, pager: &mut KeysetPager, offset: &mut OffsetPager) {
        assert_send(&org.fetch_page(Resource::Patients, &ListQuery::new(), &Cursor::Start));
        assert_send(&org.count(Resource::Patients, &Filter::new()));
        assert_send(&org.probe());
        assert_send(&pager.next_page());
        assert_send(&offset.next_page());
    }
    let _ = check;
    fn assert_sync_send<T: Send + Sync + Clone + 'static>() {}
    assert_sync_send::<AscendClient>();
    assert_sync_send::<OrgClient>();
    assert_sync_send::<ClientError>();
}

/// Pages not yet dropped (not yet landed) count against
/// `max_bytes_in_flight`: a fetch that would go beyond it waits until
/// pages are dropped, whatever the page size or the number of callers.
#[tokio::test]
async fn pages_held_count_against_the_cap_and_the_next_read_waits() {
    // About 30 KiB a page.
    let body = page_body(1..=450, None);
    assert!((28_000..34_000).contains(&body.len()), "{}", body.len());
    let stub = stub_with(move |_, _| Reply::json(200, body.clone())).await;
    let config = ClientConfig {
        max_response_bytes: 64 * 1024,
        max_bytes_in_flight: 230 * 1024,
        ..test_config()
    };
    let client = AscendClient::new(config).expect("client");
    let org = client.connect(stub.connection()).expect("connect");
    let fetch = |org: OrgClient| async move {
        org.fetch_page(Resource::Patients, &ListQuery::new(), &Cursor::Start)
            .await
            .expect("page")
    };
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(fetch(org.clone()).await);
    }
    assert_eq!(client.memory_free_kib(), 230 - 6 * 31);
    // Six pages hold 186 KiB: the next read (62 KiB while it is read and
    // parsed) does not fit in the 44 left.
    let mut next = tokio::spawn(fetch(org.clone()));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut next)
            .await
            .is_err(),
        "a seventh page was read beyond the cap"
    );
    held.truncate(4);
    let page = next.await.expect("the read completes once pages land");
    assert_eq!(page.records.len(), 450);
    drop((held, page));
    assert_eq!(client.memory_free_kib(), 230);
}
