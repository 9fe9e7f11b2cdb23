//! The simulator over HTTP, as a client sees it.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ascend_sim::{
    Counters, FaultConfig, FaultKind, MutateRequest, MutateResult, OrgInfo, RequestLogEntry,
    RunningSim, ScriptedFault, SimConfig, Size, SnapshotEntry, WriteRecord,
};
use serde_json::{Value, json};

struct Harness {
    sim: RunningSim,
    http: reqwest::Client,
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("not JSON ({}): {}", self.status, self.body))
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn start(config: SimConfig) -> Result<Harness> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = ascend_sim::spawn(config, listener).await?;
    Ok(Harness {
        sim,
        http: reqwest::Client::new(),
    })
}

async fn small(orgs: usize) -> Result<Harness> {
    start(SimConfig {
        orgs,
        ..SimConfig::default()
    })
    .await
}

impl Harness {
    fn org(&self, i: usize) -> Result<&OrgInfo> {
        self.sim.orgs().get(i).context("no such org")
    }

    async fn token_answer(&self, org: &OrgInfo, secret: &str) -> Result<Answer> {
        let r = self
            .http
            .post(format!("{}?grant_type=client_credentials", org.token_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "client_id={}&client_secret={}",
                enc(&org.client_id),
                enc(secret)
            ))
            .send()
            .await?;
        answer(r).await
    }

    async fn token(&self, i: usize) -> Result<String> {
        let org = self.org(i)?;
        let a = self.token_answer(org, &org.client_secret).await?;
        ensure!(a.status == 200, "token: {} {}", a.status, a.body);
        Ok(a.json()?["access_token"]
            .as_str()
            .context("no token")?
            .to_string())
    }

    /// A call to the API of org `i` with `token` and that org's Organization-ID.
    async fn call(
        &self,
        method: reqwest::Method,
        i: usize,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer> {
        let org = self.org(i)?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", org.api_base))
            .header("Authorization", format!("Bearer {token}"))
            .header("Organization-ID", &org.organization_id);
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await?).await
    }

    async fn get(&self, token: &str, path: &str) -> Result<Answer> {
        self.call(reqwest::Method::GET, 0, token, path, None).await
    }

    async fn get_ok(&self, token: &str, path: &str) -> Result<Value> {
        let a = self.get(token, path).await?;
        ensure!(a.status == 200, "GET {path}: {} {}", a.status, a.body);
        a.json()
    }

    fn control(&self, path: &str) -> String {
        format!("{}/_sim{path}", self.sim.base_url())
    }

    async fn mutate(&self, req: &MutateRequest) -> Result<MutateResult> {
        let org = &self.org(0)?.organization_id;
        let r = self
            .http
            .post(self.control(&format!("/orgs/{org}/mutate")))
            .json(req)
            .send()
            .await?;
        ensure!(r.status().is_success(), "mutate: {}", r.status());
        Ok(r.json().await?)
    }

    async fn snapshot(&self, resource: &str, full: bool) -> Result<Vec<SnapshotEntry>> {
        let org = &self.org(0)?.organization_id;
        let q = if full { "?full=true" } else { "" };
        let r = self
            .http
            .get(self.control(&format!("/orgs/{org}/snapshot/{resource}{q}")))
            .send()
            .await?;
        ensure!(r.status().is_success(), "snapshot: {}", r.status());
        Ok(r.json().await?)
    }

    async fn set_faults(&self, config: &FaultConfig) -> Result<()> {
        let org = &self.org(0)?.organization_id;
        let r = self
            .http
            .put(self.control(&format!("/orgs/{org}/faults")))
            .json(config)
            .send()
            .await?;
        ensure!(r.status().is_success(), "faults: {}", r.status());
        Ok(())
    }

    /// Every record of a resource by keyset paging; also returns the pages' totals.
    async fn pull(
        &self,
        token: &str,
        resource: &str,
        filter: &str,
        page_size: usize,
    ) -> Result<(Vec<Value>, BTreeSet<u64>)> {
        let mut out = Vec::new();
        let mut totals = BTreeSet::new();
        let mut last: Option<String> = None;
        loop {
            let mut path = format!("/v1/{resource}?pageSize={page_size}");
            if !filter.is_empty() {
                path.push_str(&format!("&filter={}", enc(filter)));
            }
            if let Some(l) = &last {
                path.push_str(&format!("&lastId={l}"));
            }
            let page = self.get_ok(token, &path).await?;
            totals.insert(
                page["meta"]["pagination"]["total"]
                    .as_u64()
                    .context("total")?,
            );
            let data = page["data"].as_array().context("data")?.clone();
            let n = data.len();
            if let Some(l) = data.last() {
                last = Some(l["id"].as_str().context("id")?.to_string());
            }
            out.extend(data);
            if n < page_size {
                break;
            }
        }
        Ok((out, totals))
    }
}

async fn answer(r: reqwest::Response) -> Result<Answer> {
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    Ok(Answer {
        status,
        retry_after,
        body: r.text().await?,
    })
}

fn id_of(v: &Value) -> Result<u64> {
    Ok(v["id"].as_str().context("id not a string")?.parse()?)
}

#[tokio::test]
async fn tokens_and_auth_failures_look_like_apigee() -> Result<()> {
    let h = small(2).await?;
    let org = h.org(0)?;
    let a = h.token_answer(org, &org.client_secret).await?;
    let t = a.json()?;
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], "3600", "expires_in is a string");
    let token = t["access_token"].as_str().context("token")?.to_string();

    let basic = h
        .http
        .post(format!("{}?grant_type=client_credentials", org.token_url))
        .basic_auth(&org.client_id, Some(&org.client_secret))
        .send()
        .await?;
    assert_eq!(
        basic.status().as_u16(),
        200,
        "HTTP Basic credentials work too"
    );
    let no_grant = h
        .http
        .post(&org.token_url)
        .body("client_id=x")
        .send()
        .await?;
    assert_eq!(no_grant.status().as_u16(), 400);
    let bad = h.token_answer(org, "wrong").await?;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json()?["ErrorCode"], "invalid_client");

    assert_eq!(h.get(&token, "/v1/patients").await?.status, 200);
    let invalid = h.get("nonsense", "/v1/patients").await?;
    assert_eq!(invalid.status, 401);
    assert_eq!(
        invalid.json()?,
        json!({"fault":{"faultstring":"Invalid access token","detail":{"errorcode":"oauth.v2.InvalidAccessToken"}}})
    );
    let no_auth = h
        .http
        .get(format!("{}/v1/patients", org.api_base))
        .header("Organization-ID", &org.organization_id)
        .send()
        .await?;
    assert_eq!(no_auth.status().as_u16(), 401);

    // A token of org 0 used for org 1 is forbidden.
    let cross = h
        .call(reqwest::Method::GET, 1, &token, "/v1/patients", None)
        .await?;
    assert_eq!(cross.status, 403);
    let missing_org = h
        .http
        .get(format!("{}/v1/patients", org.api_base))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(missing_org.status().as_u16(), 400);

    // Revoked tokens are invalid; new ones work.
    let r = h
        .http
        .post(h.control(&format!("/orgs/{}/revoke-tokens", org.organization_id)))
        .send()
        .await?;
    assert!(r.status().is_success());
    assert_eq!(h.get(&token, "/v1/patients").await?.status, 401);
    let fresh = h.token(0).await?;
    assert_eq!(h.get(&fresh, "/v1/patients").await?.status, 200);

    // Tokens issued with a zero lifetime are expired at once.
    let r = h
        .http
        .put(h.control("/token-ttl"))
        .json(&json!({"seconds": 0}))
        .send()
        .await?;
    assert!(r.status().is_success());
    let t0 = h.token_answer(org, &org.client_secret).await?.json()?;
    assert_eq!(t0["expires_in"], "0");
    let expired = h
        .get(
            t0["access_token"].as_str().context("token")?,
            "/v1/patients",
        )
        .await?;
    assert_eq!(expired.status, 401);
    assert_eq!(
        expired.json()?["fault"]["detail"]["errorcode"],
        "keymanagement.service.access_token_expired"
    );
    assert_eq!(
        h.get(&fresh, "/v1/patients").await?.status,
        200,
        "older tokens keep their lifetime"
    );

    let counters: Counters = h
        .http
        .get(h.control(&format!("/orgs/{}/counters", org.organization_id)))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(counters.token_requests, 5);
    assert!(counters.responses_by_status.get(&401).copied().unwrap_or(0) >= 4);
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn forbidden_orgs_and_resources_not_offered() -> Result<()> {
    let h = small(1).await?;
    let token = h.token(0).await?;
    h.set_faults(&FaultConfig {
        not_offered: vec!["transactions".into()],
        ..FaultConfig::default()
    })
    .await?;
    assert_eq!(h.get(&token, "/v1/transactions").await?.status, 404);
    assert_eq!(h.get(&token, "/v1/patients").await?.status, 200);
    h.set_faults(&FaultConfig {
        forbidden: true,
        ..FaultConfig::default()
    })
    .await?;
    let f = h.get(&token, "/v1/patients").await?;
    assert_eq!(f.status, 403);
    assert!(f.body.contains("not enabled"), "{}", f.body);
    h.set_faults(&FaultConfig::default()).await?;
    assert_eq!(h.get(&token, "/v1/transactions").await?.status, 200);
    assert_eq!(h.get(&token, "/v1/nothing").await?.status, 404);
    assert_eq!(h.get(&token, "/v1/patients/12abc").await?.status, 404);
    Ok(())
}

#[tokio::test]
async fn keyset_paging_over_mutated_data_matches_the_snapshot() -> Result<()> {
    let h = small(1).await?;
    let token = h.token(0).await?;
    let changes = h
        .mutate(&MutateRequest {
            resource: Some("patients".into()),
            creates: 7,
            updates: 25,
            deletes: 11,
            seed: 3,
        })
        .await?;
    assert_eq!(
        (
            changes.created.len(),
            changes.updated.len(),
            changes.deleted.len()
        ),
        (7, 25, 11)
    );
    let (records, totals) = h.pull(&token, "patients", "", 50).await?;
    let snapshot = h.snapshot("patients", true).await?;
    assert_eq!(totals.len(), 1, "total is the same on every page");
    assert_eq!(totals.first().copied(), Some(snapshot.len() as u64));
    assert_eq!(records.len(), snapshot.len());
    for (r, s) in records.iter().zip(&snapshot) {
        assert_eq!(r["id"].as_str(), Some(s.id.as_str()));
        assert_eq!(r["lastModified"].as_str(), Some(s.last_modified.as_str()));
        assert_eq!(
            Some(r),
            s.record.as_ref(),
            "served exactly as the snapshot says"
        );
    }
    let ids: Vec<u64> = records.iter().map(id_of).collect::<Result<_>>()?;
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending numeric ids");
    assert!(
        ids.contains(&999) && ids.contains(&1000)
            || changes.deleted.iter().any(|d| d == "999" || d == "1000")
    );
    let lengths: BTreeSet<usize> = ids.iter().map(|i| i.to_string().len()).collect();
    assert!(
        lengths.contains(&13) && lengths.iter().any(|l| *l <= 4),
        "{lengths:?}"
    );
    for d in &changes.deleted {
        assert!(!ids.contains(&d.parse()?));
    }
    for c in &changes.created {
        assert!(ids.contains(&c.parse()?));
    }
    // No page was fetched twice.
    let log: Vec<RequestLogEntry> = h
        .http
        .get(h.control(&format!("/orgs/{}/requests", h.org(0)?.organization_id)))
        .send()
        .await?
        .json()
        .await?;
    let pages: Vec<&RequestLogEntry> = log
        .iter()
        .filter(|e| e.template == "/v1/patients")
        .collect();
    let distinct: BTreeSet<&str> = pages.iter().map(|e| e.query.as_str()).collect();
    assert_eq!(distinct.len(), pages.len());
    assert_eq!(pages.len(), records.len() / 50 + 1);
    Ok(())
}

#[tokio::test]
async fn offset_paging_filters_and_totals() -> Result<()> {
    let h = small(1).await?;
    let token = h.token(0).await?;
    h.mutate(&MutateRequest {
        resource: Some("appointments".into()),
        creates: 5,
        updates: 5,
        deletes: 30,
        seed: 9,
    })
    .await?;
    let (all, _) = h.pull(&token, "appointments", "", 500).await?;
    let mut partitioned = 0;
    for loc in &h.org(0)?.location_ids {
        let filter = format!("location.id=={loc}");
        let (keyset, totals) = h.pull(&token, "appointments", &filter, 100).await?;
        assert!(keyset.iter().all(|r| r["location"]["id"] == loc.as_str()));
        assert_eq!(
            totals.into_iter().collect::<Vec<_>>(),
            vec![keyset.len() as u64]
        );
        // Offset paging gives the same records; the last page is short.
        let mut offset = Vec::new();
        for page in 1.. {
            let p = h
                .get_ok(
                    &token,
                    &format!(
                        "/v1/appointments?page={page}&pageSize=37&filter={}",
                        enc(&filter)
                    ),
                )
                .await?;
            assert_eq!(p["meta"]["pagination"]["page"], page);
            assert_eq!(p["meta"]["pagination"]["pageSize"], 37);
            let data = p["data"].as_array().context("data")?;
            offset.extend(data.iter().cloned());
            if data.len() < 37 {
                break;
            }
        }
        assert_eq!(offset, keyset);
        partitioned += keyset.len();
    }
    assert_eq!(
        partitioned,
        all.len(),
        "locations partition the appointments"
    );
    // Unfiltered offset paging agrees with keyset over deletes.
    let mut offset = Vec::new();
    for page in 1.. {
        let p = h
            .get_ok(
                &token,
                &format!("/v1/appointments?page={page}&pageSize=500"),
            )
            .await?;
        let data = p["data"].as_array().context("data")?;
        offset.extend(data.iter().cloned());
        if data.len() < 500 {
            break;
        }
    }
    assert_eq!(offset, all);
    // An id range's total is exact.
    let (lo, hi) = (id_of(&all[10])?, id_of(&all[40])?);
    let p = h
        .get_ok(
            &token,
            &format!(
                "/v1/appointments?pageSize=5&filter={}",
                enc(&format!("id>={lo},id<{hi}"))
            ),
        )
        .await?;
    assert_eq!(p["meta"]["pagination"]["total"], 30);
    assert_eq!(p["data"].as_array().map(Vec::len), Some(5));
    // Default page size is 100; responseFields=id strips records to ids.
    let p = h
        .get_ok(&token, "/v1/appointments?responseFields=id")
        .await?;
    let data = p["data"].as_array().context("data")?;
    assert_eq!(data.len(), 100);
    assert!(data.iter().all(|r| {
        r.as_object()
            .is_some_and(|o| o.len() == 1 && o.contains_key("id"))
    }));
    let p = h
        .get_ok(&token, "/v1/appointments?responseFields=ALL&pageSize=1")
        .await?;
    assert!(p["data"][0]["patient"]["id"].is_string());
    Ok(())
}

#[tokio::test]
async fn bad_queries_are_400_with_a_message() -> Result<()> {
    let h = small(1).await?;
    let token = h.token(0).await?;
    for (query, needle) in [
        ("pageSize=501", "between 1 and 500"),
        ("pageSize=0", "between 1 and 500"),
        ("lastId=abc", "whole number"),
        ("filter=status%21%3DCONFIRMED", "unknown operator"),
        ("filter=status", "no operator"),
        ("filter=lastModified%3E%3Dlast%20week", "ISO-8601"),
        ("filter=patient.id%3D%3Dbob", "not a decimal id"),
    ] {
        let a = h.get(&token, &format!("/v1/appointments?{query}")).await?;
        assert_eq!(a.status, 400, "{query}");
        let v = a.json()?;
        let message = v["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{query}: {message}");
    }
    Ok(())
}

#[tokio::test]
async fn incremental_changes_are_found_by_last_modified() -> Result<()> {
    let h = small(1).await?;
    let token = h.token(0).await?;
    let changes = h
        .mutate(&MutateRequest {
            resource: None,
            creates: 20,
            updates: 30,
            deletes: 10,
            seed: 1,
        })
        .await?;
    let watermark = changes.last_modified.clone().context("stamp")?;
    let mut seen = BTreeSet::new();
    for (resource, ch) in &changes.by_resource {
        let (recs, _) = h
            .pull(&token, resource, &format!("lastModified>={watermark}"), 500)
            .await?;
        let ids: BTreeSet<String> = recs
            .iter()
            .filter_map(|r| r["id"].as_str().map(String::from))
            .collect();
        let expect: BTreeSet<String> = ch.created.iter().chain(&ch.updated).cloned().collect();
        assert_eq!(ids, expect, "{resource}");
        assert!(
            recs.iter().all(|r| r["lastModified"] == watermark.as_str()),
            "one batch, one millisecond"
        );
        seen.extend(ids);
    }
    assert_eq!(seen.len(), 50);
    // Generated data is all older than the batch.
    let p = h
        .get_ok(
            &token,
            &format!(
                "/v1/visits?filter={}",
                enc(&format!("lastModified<{watermark}"))
            ),
        )
        .await?;
    let snapshot = h.snapshot("visits", false).await?;
    let changed = changes
        .by_resource
        .get("visits")
        .map_or(0, |c| c.created.len() + c.updated.len());
    assert_eq!(
        p["meta"]["pagination"]["total"].as_u64(),
        Some((snapshot.len() - changed) as u64)
    );
    Ok(())
}

#[tokio::test]
async fn writes_are_validated_counted_and_visible() -> Result<()> {
    let h = small(1).await?;
    let token = h.token(0).await?;
    let post = |path: &'static str, body: Value| {
        h.call(reqwest::Method::POST, 0, &token, path, Some(body))
    };
    let bad = post("/v1/patients", json!({"firstName": "Ann"})).await?;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("lastName"));
    let made = post(
        "/v1/patients",
        json!({"firstName": "Ann", "lastName": "Ødegård", "emailAddress": "ann@example.com"}),
    )
    .await?;
    assert_eq!(made.status, 201, "{}", made.body);
    let patient = made.json()?["data"].clone();
    let pid = patient["id"].as_str().context("id")?.to_string();
    assert_eq!(
        h.get_ok(&token, &format!("/v1/patients/{pid}")).await?["data"],
        patient
    );
    let found = h
        .get_ok(
            &token,
            &format!("/v1/patients?filter={}", enc("lastName~=ØDEGÅRD")),
        )
        .await?;
    assert!(
        found["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|r| r["id"] == pid.as_str()))
    );

    let appt = post(
        "/v1/appointments",
        json!({"patient": {"id": pid}, "start": "2026-12-24T15:00:00.000Z", "duration": 45}),
    )
    .await?;
    assert_eq!(appt.status, 201, "{}", appt.body);
    let aid = appt.json()?["data"]["id"]
        .as_str()
        .context("id")?
        .to_string();
    let put = h
        .call(
            reqwest::Method::PUT,
            0,
            &token,
            &format!("/v1/appointments/{aid}"),
            Some(json!({"status": "CONFIRMED"})),
        )
        .await?;
    assert_eq!(put.status, 200);
    let confirmed = h
        .get_ok(
            &token,
            &format!(
                "/v1/appointments?filter={}",
                enc(&format!("status==CONFIRMED,patient.id=={pid}"))
            ),
        )
        .await?;
    assert_eq!(confirmed["meta"]["pagination"]["total"], 1);
    assert_eq!(confirmed["data"][0]["end"], "2026-12-24T15:45:00.000Z");
    let del = h
        .call(
            reqwest::Method::DELETE,
            0,
            &token,
            &format!("/v1/appointments/{aid}"),
            None,
        )
        .await?;
    assert_eq!(del.status, 204);
    assert_eq!(
        h.get(&token, &format!("/v1/appointments/{aid}"))
            .await?
            .status,
        404
    );

    let note = h
        .call(
            reqwest::Method::POST,
            0,
            &token,
            &format!("/v1/patients/{pid}/notes"),
            Some(json!({"note": "SMS: reminder"})),
        )
        .await?;
    assert_eq!(note.status, 201);
    let notes = h
        .get_ok(&token, &format!("/v1/patients/{pid}/notes"))
        .await?;
    assert_eq!(notes["data"][0]["note"], "SMS: reminder");
    let bad_note = h
        .call(
            reqwest::Method::POST,
            0,
            &token,
            &format!("/v1/patients/{pid}/calllogs"),
            Some(json!({})),
        )
        .await?;
    assert_eq!(bad_note.status, 400);

    let counters: Counters = h
        .http
        .get(h.control(&format!("/orgs/{}/counters", h.org(0)?.organization_id)))
        .send()
        .await?
        .json()
        .await?;
    let w = |k: &str| counters.writes.get(k).copied().unwrap_or(0);
    assert_eq!(
        (
            w("patient_create"),
            w("appointment_create"),
            w("appointment_update")
        ),
        (1, 1, 1)
    );
    assert_eq!(
        (w("appointment_delete"), w("patient_note"), w("call_log")),
        (1, 1, 0)
    );
    assert_eq!(counters.calls.get("PUT /v1/appointments/{id}"), Some(&1));
    assert_eq!(counters.calls.get("POST /v1/patients"), Some(&2));
    assert_eq!(counters.responses_by_status.get(&400), Some(&2));
    Ok(())
}

#[tokio::test]
async fn scripted_faults_do_what_they_say() -> Result<()> {
    let h = small(1).await?;
    let token = h.token(0).await?;
    let full = h.get(&token, "/v1/providers?pageSize=10").await?;
    assert_eq!(full.status, 200);
    let script = |fault, count, path: &str| ScriptedFault {
        fault,
        count,
        path_contains: Some(path.to_string()),
        retry_after_secs: Some(7),
        slow_ms: None,
        status: None,
    };
    h.set_faults(&FaultConfig {
        script: vec![
            script(FaultKind::Truncated, 1, "/v1/providers"),
            script(FaultKind::RateLimited, 1, "/v1/providers"),
            script(FaultKind::Error5xx, 2, "/v1/providers"),
            script(FaultKind::Malformed, 2, "/v1/providers"),
            script(FaultKind::Unauthorized, 1, "/v1/providers"),
        ],
        ..FaultConfig::default()
    })
    .await?;
    // Other paths are untouched by the script.
    assert_eq!(h.get(&token, "/v1/locations").await?.status, 200);
    let cut = h.get(&token, "/v1/providers?pageSize=10").await?;
    assert_eq!(cut.status, 200);
    assert!(
        cut.body.len() < full.body.len() && full.body.starts_with(&cut.body),
        "a real body, cut"
    );
    assert!(serde_json::from_str::<Value>(&cut.body).is_err());
    let limited = h.get(&token, "/v1/providers").await?;
    assert_eq!(
        (limited.status, limited.retry_after.as_deref()),
        (429, Some("7"))
    );
    assert_eq!(h.get(&token, "/v1/providers").await?.status, 503);
    assert_eq!(h.get(&token, "/v1/providers").await?.status, 503);
    for _ in 0..2 {
        let m = h.get(&token, "/v1/providers").await?;
        assert_eq!(m.status, 200);
        let shape_ok = serde_json::from_str::<Value>(&m.body).is_ok_and(|v| v["data"].is_array());
        assert!(!shape_ok, "malformed body has the envelope: {}", m.body);
    }
    assert_eq!(h.get(&token, "/v1/providers").await?.status, 401);
    let pending: FaultConfig = h
        .http
        .get(h.control(&format!("/orgs/{}/faults", h.org(0)?.organization_id)))
        .send()
        .await?
        .json()
        .await?;
    assert!(pending.script.is_empty());
    assert_eq!(
        h.get(&token, "/v1/providers?pageSize=10").await?.body,
        full.body,
        "back to normal"
    );
    // Token requests can be scripted too.
    h.set_faults(&FaultConfig {
        script: vec![script(FaultKind::Error5xx, 1, "/oauth/client_credential")],
        ..FaultConfig::default()
    })
    .await?;
    let org = h.org(0)?;
    assert_eq!(h.token_answer(org, &org.client_secret).await?.status, 503);
    assert_eq!(h.token_answer(org, &org.client_secret).await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn fault_rates_are_deterministic() -> Result<()> {
    let statuses = || async {
        let h = small(1).await?;
        let token = h.token(0).await?;
        h.set_faults(&FaultConfig {
            error_5xx_rate: 0.3,
            malformed_rate: 0.2,
            seed: Some(4),
            ..FaultConfig::default()
        })
        .await?;
        let mut out = Vec::new();
        for _ in 0..40 {
            let a = h.get(&token, "/v1/locations").await?;
            out.push((a.status, a.body.starts_with("{\"data\":[")));
        }
        Ok::<_, anyhow::Error>(out)
    };
    let a = statuses().await?;
    assert_eq!(a, statuses().await?);
    let errors = a.iter().filter(|(s, _)| *s >= 500).count();
    let ok = a.iter().filter(|(s, good)| *s == 200 && *good).count();
    assert!(errors > 3 && ok > 10 && errors + ok < 40, "{a:?}");
    Ok(())
}

#[tokio::test]
async fn timeout_fault_hangs_until_the_client_gives_up() -> Result<()> {
    let h = small(1).await?;
    let token = h.token(0).await?;
    h.set_faults(&FaultConfig {
        script: vec![ScriptedFault {
            fault: FaultKind::Timeout,
            count: 1,
            path_contains: None,
            retry_after_secs: None,
            slow_ms: None,
            status: None,
        }],
        ..FaultConfig::default()
    })
    .await?;
    let org = h.org(0)?;
    let r = h
        .http
        .get(format!("{}/v1/patients", org.api_base))
        .bearer_auth(&token)
        .header("Organization-ID", &org.organization_id)
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    match r {
        Err(e) if e.is_timeout() => {}
        other => bail!("expected a client timeout, got {other:?}"),
    }
    h.sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() -> Result<()> {
    let h = small(1).await?;
    let token = h.token(0).await?;
    let org = h.org(0)?.organization_id.clone();
    let r = h
        .http
        .put(h.control(&format!("/orgs/{org}/rate-limit")))
        .json(&json!({"rps": 1}))
        .send()
        .await?;
    assert!(r.status().is_success());
    let mut limited = Vec::new();
    for _ in 0..6 {
        let a = h.get(&token, "/v1/locations").await?;
        if a.status == 429 {
            limited.push(a);
        }
    }
    assert!(
        !limited.is_empty(),
        "six calls at once exceed one per second"
    );
    for a in &limited {
        let secs: u64 = a.retry_after.as_deref().context("Retry-After")?.parse()?;
        assert!(secs >= 1);
        assert!(a.json()?["fault"]["faultstring"].is_string());
    }
    let r = h
        .http
        .put(h.control(&format!("/orgs/{org}/rate-limit")))
        .json(&json!({"rps": null}))
        .send()
        .await?;
    assert!(r.status().is_success());
    for _ in 0..6 {
        assert_eq!(h.get(&token, "/v1/locations").await?.status, 200);
    }
    Ok(())
}

#[tokio::test]
async fn counters_log_and_reset() -> Result<()> {
    let h = small(1).await?;
    let token = h.token(0).await?;
    let first = h.get_ok(&token, "/v1/patients?pageSize=3").await?;
    let id = first["data"][0]["id"].as_str().context("id")?.to_string();
    let by_id = h.get_ok(&token, &format!("/v1/patients/{id}")).await?;
    assert_eq!(by_id["data"], first["data"][0]);
    h.get_ok(&token, &format!("/v1/patients?pageSize=3&lastId={id}"))
        .await?;
    let all: std::collections::BTreeMap<String, Counters> = h
        .http
        .get(h.control("/counters"))
        .send()
        .await?
        .json()
        .await?;
    let c = all
        .get(&h.org(0)?.organization_id)
        .context("org counters")?;
    assert_eq!(c.calls.get("GET /v1/patients"), Some(&2));
    assert_eq!(c.calls.get("GET /v1/patients/{id}"), Some(&1));
    assert_eq!(c.token_requests, 1);
    assert_eq!(c.responses_by_status.get(&200), Some(&4));
    let log: Vec<RequestLogEntry> = h
        .http
        .get(h.control(&format!("/orgs/{}/requests", h.org(0)?.organization_id)))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(log.len(), 4);
    assert_eq!(log[3].query, format!("pageSize=3&lastId={id}"));
    assert_eq!(log[3].path, "/v1/patients");
    assert!(
        h.http
            .post(h.control("/counters/reset"))
            .send()
            .await?
            .status()
            .is_success()
    );
    let all: std::collections::BTreeMap<String, Counters> = h
        .http
        .get(h.control("/counters"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        all.get(&h.org(0)?.organization_id),
        Some(&Counters::default())
    );
    Ok(())
}

#[tokio::test]
async fn same_seed_same_data_other_seed_other_data() -> Result<()> {
    // A fixed day: the same seed serves the same data on any day the
    // test runs (and across midnight).
    let body = |seed: u64| async move {
        let h = start(SimConfig {
            seed,
            today: Some(time::macros::date!(2026 - 01 - 01)),
            ..SimConfig::default()
        })
        .await?;
        let org = h.org(0)?.clone();
        let r = h
            .http
            .get(h.control(&format!(
                "/orgs/{}/snapshot/appointments?full=true",
                org.organization_id
            )))
            .send()
            .await?;
        let text = r.text().await?.replace(&h.sim.base_url(), "BASE");
        Ok::<_, anyhow::Error>((org.organization_id, org.client_id, text))
    };
    let a = body(42).await?;
    let b = body(42).await?;
    let c = body(43).await?;
    assert_eq!(a, b);
    assert_ne!(a.0, c.0);
    assert_ne!(a.2, c.2);
    assert!(a.2.len() > 100_000);
    Ok(())
}

/// `meta.pagination.total` of the org's records of `resource` matching `filter`.
async fn total(h: &Harness, token: &str, resource: &str, filter: &str) -> Result<u64> {
    let page = h
        .get_ok(
            token,
            &format!("/v1/{resource}?pageSize=1&filter={}", enc(filter)),
        )
        .await?;
    page["meta"]["pagination"]["total"]
        .as_u64()
        .context("no total")
}

/// `YYYY-MM-DDT00:00:00.000Z` of a day, as the API writes instants.
fn midnight(day: time::Date) -> String {
    format!("{day}T00:00:00.000Z")
}

#[tokio::test]
async fn the_world_is_placed_at_the_clocks_today() -> Result<()> {
    let before = time::OffsetDateTime::now_utc().date();
    let h = small(1).await?;
    let after = time::OffsetDateTime::now_utc().date();
    let today = h.sim.today();
    ensure!(
        (before..=after).contains(&today),
        "placed at {today}, not today"
    );
    let token = h.token(0).await?;
    let days = time::Duration::days;
    // What a sync planned now asks for first: the appointments of the last
    // 90 days (seen) and of the next year (scheduled).
    let seen = total(
        &h,
        &token,
        "appointments",
        &format!(
            "start>={},start<{}",
            midnight(today - days(90)),
            midnight(today)
        ),
    )
    .await?;
    let complete = total(
        &h,
        &token,
        "appointments",
        &format!("start>={},status==COMPLETE", midnight(today - days(90))),
    )
    .await?;
    let scheduled = total(
        &h,
        &token,
        "appointments",
        &format!(
            "start>={},start<{}",
            midnight(today),
            midnight(today + days(366))
        ),
    )
    .await?;
    ensure!(
        seen >= 30 && scheduled >= 30,
        "{seen} appointments in the last 90 days, {scheduled} in the next year"
    );
    ensure!(
        complete * 2 > seen,
        "{complete} of {seen} recent ones complete"
    );
    let recent_procedures = total(
        &h,
        &token,
        "patientprocedures",
        &format!("date>={}", today - days(90)),
    )
    .await?;
    ensure!(recent_procedures > 0, "no procedure in the last 90 days");
    // Nothing was modified after the world's midnight, so nothing in the
    // simulator's future.
    for resource in ascend_sim::RESOURCES {
        let later = total(
            &h,
            &token,
            resource,
            &format!("lastModified>{}", midnight(today)),
        )
        .await?;
        ensure!(later == 0, "{later} {resource} modified after {today}");
    }
    Ok(())
}

#[tokio::test]
async fn a_fixed_today_places_the_world_there_and_may_not_lie_ahead() -> Result<()> {
    let day = time::macros::date!(2025 - 06 - 15);
    let h = start(SimConfig {
        today: Some(day),
        ..SimConfig::default()
    })
    .await?;
    ensure!(h.sim.today() == day);
    let token = h.token(0).await?;
    let ahead = total(
        &h,
        &token,
        "appointments",
        &format!("start>={}", midnight(day)),
    )
    .await?;
    let later = total(
        &h,
        &token,
        "appointments",
        &format!("lastModified>{}", midnight(day)),
    )
    .await?;
    ensure!(
        ahead > 30 && later == 0,
        "{ahead} ahead, {later} modified later"
    );
    // Writes are stamped by the clock, after everything generated.
    let before = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let changes = h
        .mutate(&MutateRequest {
            resource: Some("appointments".into()),
            updates: 3,
            ..MutateRequest::default()
        })
        .await?;
    let stamp = changes.last_modified.context("stamp")?;
    let stamped =
        time::OffsetDateTime::parse(&stamp, &time::format_description::well_known::Rfc3339)?;
    ensure!(stamped >= before, "stamped {stamp}, before the clock's now");

    let ahead_of_the_clock = time::OffsetDateTime::now_utc().date() + time::Duration::days(2);
    for refused in [ahead_of_the_clock, time::macros::date!(2020 - 01 - 01)] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let started = ascend_sim::spawn(
            SimConfig {
                today: Some(refused),
                ..SimConfig::default()
            },
            listener,
        )
        .await;
        match started {
            Err(ascend_sim::SimError::Config(message)) => {
                ensure!(message.contains(&refused.to_string()), "{message}")
            }
            other => bail!("today {refused} was not refused: {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn paging_stays_consistent_while_data_changes() -> Result<()> {
    let h = small(1).await?;
    let token = h.token(0).await?;
    let mut ids = Vec::new();
    let mut last: Option<u64> = None;
    let mut created = Vec::new();
    for round in 0.. {
        let q = last.map_or(String::new(), |l| format!("&lastId={l}"));
        let p = h
            .get_ok(&token, &format!("/v1/visits?pageSize=100{q}"))
            .await?;
        let data = p["data"].as_array().context("data")?;
        for r in data {
            ids.push(id_of(r)?);
        }
        last = ids.last().copied();
        if round < 3 {
            let m = h
                .mutate(&MutateRequest {
                    resource: Some("visits".into()),
                    creates: 3,
                    updates: 3,
                    deletes: 3,
                    seed: round,
                })
                .await?;
            created.extend(m.created);
        }
        if data.len() < 100 {
            break;
        }
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    for c in &created {
        assert!(
            ids.contains(&c.parse()?),
            "created during the pull, seen at the end"
        );
    }
    Ok(())
}

#[tokio::test]
async fn large_orgs_start_at_once_and_page_anywhere() -> Result<()> {
    let h = start(SimConfig {
        orgs: 2,
        size: Size::Large,
        ..SimConfig::default()
    })
    .await?;
    let token = h.token(0).await?;
    let p = h
        .get_ok(
            &token,
            "/v1/patientprocedures?pageSize=500&lastId=7000000900000",
        )
        .await?;
    let total = p["meta"]["pagination"]["total"].as_u64().context("total")?;
    assert!((400_000..=500_000).contains(&total), "{total}");
    let data = p["data"].as_array().context("data")?;
    assert_eq!(data.len(), 500);
    assert!(id_of(&data[0])? > 7_000_000_900_000);
    let p = h
        .get_ok(&token, "/v1/appointments?pageSize=1&page=250000")
        .await?;
    assert_eq!(p["data"].as_array().map(Vec::len), Some(1));
    let loc = &h.org(0)?.location_ids[0];
    let p = h
        .get_ok(
            &token,
            &format!(
                "/v1/patients?pageSize=2&filter={}",
                enc(&format!("location.id=={loc}"))
            ),
        )
        .await?;
    assert!(
        p["data"][0]["preferredLocation"]["id"] == loc.as_str(),
        "location is an alias of preferredLocation for patients"
    );
    Ok(())
}

#[tokio::test]
async fn an_organization_can_have_a_chosen_number_of_locations() -> Result<()> {
    let h = start(SimConfig {
        locations: Some(10),
        ..SimConfig::default()
    })
    .await?;
    let org = h.org(0)?;
    ensure!(org.location_ids.len() == 10, "{:?}", org.location_ids);
    let token = h.token(0).await?;
    let locations = h.get_ok(&token, "/v1/locations?pageSize=100").await?;
    let served: Vec<String> = locations["data"]
        .as_array()
        .context("data")?
        .iter()
        .map(|l| id_of(l).map(|id| id.to_string()))
        .collect::<Result<_>>()?;
    ensure!(served == org.location_ids, "{served:?}");
    // The location filter partitions the org's location-scoped records.
    for resource in ["patients", "appointments", "operatories"] {
        let all = total(&h, &token, resource, "id>=0").await?;
        let mut sum = 0;
        for loc in &org.location_ids {
            let n = total(&h, &token, resource, &format!("location.id=={loc}")).await?;
            ensure!(n > 0, "no {resource} at location {loc}");
            sum += n;
        }
        ensure!(
            sum == all,
            "{resource}: {sum} across locations, {all} in all"
        );
    }

    for refused in [0, 65] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let started = ascend_sim::spawn(
            SimConfig {
                locations: Some(refused),
                ..SimConfig::default()
            },
            listener,
        )
        .await;
        match started {
            Err(ascend_sim::SimError::Config(message)) => {
                ensure!(message.contains("1 to 64"), "{message}")
            }
            other => bail!("locations {refused} was not refused: {other:?}"),
        }
    }
    Ok(())
}

impl Harness {
    async fn writes(&self, i: usize) -> Result<Vec<WriteRecord>> {
        let url = self.control(&format!("/orgs/{}/writes", self.org(i)?.organization_id));
        Ok(self
            .http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// The notes of `patient`, as the API lists them.
    async fn notes(&self, token: &str, patient: u64) -> Result<Vec<Value>> {
        let v = self
            .get_ok(token, &format!("/v1/patients/{patient}/notes"))
            .await?;
        Ok(v["data"].as_array().cloned().unwrap_or_default())
    }
}

fn lost(status: Option<u16>, path: &str, kind: FaultKind) -> ScriptedFault {
    ScriptedFault {
        fault: kind,
        count: 1,
        path_contains: Some(path.to_string()),
        retry_after_secs: None,
        slow_ms: None,
        status,
    }
}

/// The journal records every write call with what it did; `error_5xx`
/// answers before the write is applied, `lost_reply` after.
#[tokio::test]
async fn the_write_journal_says_what_each_write_did() -> Result<()> {
    let h = small(1).await?;
    let token = h.token(0).await?;
    let patients = h.get_ok(&token, "/v1/patients?pageSize=1").await?;
    let patient = id_of(&patients["data"][0])?;
    let notes = format!("/v1/patients/{patient}/notes");
    // Applied.
    let ok = h
        .call(
            reqwest::Method::POST,
            0,
            &token,
            &notes,
            Some(json!({"note": "first"})),
        )
        .await?;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let created = id_of(&ok.json()?["data"])?;
    // Refused: no text.
    let refused = h
        .call(
            reqwest::Method::POST,
            0,
            &token,
            &notes,
            Some(json!({"colour": "red"})),
        )
        .await?;
    assert_eq!(refused.status, 400);
    // A 503 before handling, then a 500 after handling.
    h.set_faults(&FaultConfig {
        script: vec![
            lost(Some(503), "/notes", FaultKind::Error5xx),
            lost(Some(500), "/notes", FaultKind::LostReply),
        ],
        ..FaultConfig::default()
    })
    .await?;
    let before = h
        .call(
            reqwest::Method::POST,
            0,
            &token,
            &notes,
            Some(json!({"note": "never"})),
        )
        .await?;
    assert_eq!(before.status, 503);
    let after = h
        .call(
            reqwest::Method::POST,
            0,
            &token,
            &notes,
            Some(json!({"note": "lost"})),
        )
        .await?;
    assert_eq!(after.status, 500);
    let listed: Vec<String> = h
        .notes(&token, patient)
        .await?
        .iter()
        .filter_map(|n| n["note"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        listed,
        ["first", "lost"],
        "the 503 was not applied, the lost reply was"
    );
    let journal = h.writes(0).await?;
    let seen: Vec<(u16, bool, Option<&str>)> = journal
        .iter()
        .map(|w| (w.status, w.applied, w.body["note"].as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (201, true, Some("first")),
            (400, false, None),
            (503, false, Some("never")),
            (500, true, Some("lost")),
        ]
    );
    assert_eq!(journal[0].id.as_deref(), Some(created.to_string().as_str()));
    assert!(journal[3].id.is_some(), "the lost reply's note has an id");
    assert_eq!(
        journal.iter().map(|w| w.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert!(
        journal
            .iter()
            .all(|w| w.template == "/v1/patients/{id}/notes")
    );
    // Reads are not journaled; the journal can be cleared.
    let url = h.control(&format!("/orgs/{}/writes", h.org(0)?.organization_id));
    h.http.delete(url).send().await?.error_for_status()?;
    assert!(h.writes(0).await?.is_empty());
    h.sim.shutdown().await;
    Ok(())
}

/// A lost reply without a status hangs like a timeout, after the write
/// was applied and journaled.
#[tokio::test]
async fn a_lost_reply_without_status_times_out_after_applying() -> Result<()> {
    let h = small(1).await?;
    let token = h.token(0).await?;
    let patients = h.get_ok(&token, "/v1/patients?pageSize=1").await?;
    let patient = id_of(&patients["data"][0])?;
    h.set_faults(&FaultConfig {
        script: vec![lost(None, "/notes", FaultKind::LostReply)],
        ..FaultConfig::default()
    })
    .await?;
    let org = h.org(0)?;
    let r = h
        .http
        .post(format!("{}/v1/patients/{patient}/notes", org.api_base))
        .bearer_auth(&token)
        .header("Organization-ID", &org.organization_id)
        .json(&json!({"note": "applied, answer lost"}))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    match r {
        Err(e) if e.is_timeout() => {}
        other => bail!("expected a client timeout, got {other:?}"),
    }
    let listed = h.notes(&token, patient).await?;
    assert_eq!(listed.len(), 1, "the write was applied");
    let journal = h.writes(0).await?;
    assert_eq!(journal.len(), 1);
    assert!(
        journal[0].applied && journal[0].status == 504,
        "{:?}",
        journal[0]
    );
    // Rates are checked like the others.
    let bad = h
        .http
        .put(h.control(&format!("/orgs/{}/faults", org.organization_id)))
        .json(&json!({"lost_reply_rate": 0.7, "error_5xx_rate": 0.5}))
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    h.sim.shutdown().await;
    Ok(())
}

/// A backend finishes a request whose client has gone: a write slowed
/// past the caller's patience is still applied and journaled.
#[tokio::test]
async fn a_write_whose_client_gives_up_is_still_applied() -> Result<()> {
    let h = small(1).await?;
    let token = h.token(0).await?;
    let patients = h.get_ok(&token, "/v1/patients?pageSize=1").await?;
    let patient = id_of(&patients["data"][0])?;
    h.set_faults(&FaultConfig {
        script: vec![ScriptedFault {
            slow_ms: Some(400),
            ..lost(None, "/notes", FaultKind::Slow)
        }],
        ..FaultConfig::default()
    })
    .await?;
    let org = h.org(0)?;
    let r = h
        .http
        .post(format!("{}/v1/patients/{patient}/notes", org.api_base))
        .bearer_auth(&token)
        .header("Organization-ID", &org.organization_id)
        .json(&json!({"note": "in flight when the caller left"}))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    ensure!(r.is_err(), "the caller should have given up");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        h.notes(&token, patient).await?.len(),
        1,
        "the write was applied"
    );
    let journal = h.writes(0).await?;
    assert!(journal.len() == 1 && journal[0].applied, "{journal:?}");
    h.sim.shutdown().await;
    Ok(())
}
