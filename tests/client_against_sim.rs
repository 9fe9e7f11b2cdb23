//! The production client against the simulator: what a practice would notice
//! (rows equal the source, nothing lost) and what on-call would notice
//! (throttles honoured, auth failures surfaced, bad pages named).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use ascend_client::{AscendId, ClientError, Cursor, ListQuery, OrgClient, Record, Resource};
use ascend_sim::{FaultConfig, FaultKind, MutateRequest, ScriptedFault, SimConfig, Size};
use system_tests::{Sim, connect, test_client};

/// Pulls a whole resource with keyset paging.
async fn pull_all(
    org: &OrgClient,
    resource: Resource,
    query: ListQuery,
) -> Result<Vec<Record>, ClientError> {
    let mut pager = org.keyset(resource, query, None);
    let mut out = Vec::new();
    while let Some(page) = pager.next_page().await? {
        out.extend(page.records);
    }
    Ok(out)
}

fn small_pages(page_size: u32) -> ListQuery {
    ListQuery {
        page_size: Some(page_size),
        ..ListQuery::default()
    }
}

fn script(fault: FaultKind, count: u32, path: &str) -> ScriptedFault {
    ScriptedFault {
        fault,
        count,
        path_contains: Some(path.to_string()),
        retry_after_secs: None,
        slow_ms: None,
        status: None,
    }
}

fn api_calls(counters: &ascend_sim::Counters) -> u64 {
    counters.calls.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyset_pull_of_a_medium_organization_equals_the_snapshot() -> Result<()> {
    let sim = Sim::start(SimConfig {
        size: Size::Medium,
        seed: 11,
        ..SimConfig::default()
    })
    .await?;
    let client = test_client(1000)?;
    let org = connect(&client, &sim, 0)?;
    let mut total = 0;
    for &resource in Resource::ALL {
        let pulled = pull_all(&org, resource, ListQuery::default()).await?;
        let snapshot = sim.snapshot(0, resource, true).await?;
        ensure!(
            pulled.len() == snapshot.len(),
            "{resource}: pulled {} records, the simulator holds {}",
            pulled.len(),
            snapshot.len()
        );
        for (record, entry) in pulled.iter().zip(&snapshot) {
            ensure!(
                record.id.to_string() == entry.id,
                "{resource}: id {} where the snapshot has {}",
                record.id,
                entry.id
            );
            let raw: serde_json::Value = serde_json::from_str(record.raw.get())?;
            ensure!(
                raw.get("lastModified").and_then(|v| v.as_str())
                    == Some(entry.last_modified.as_str()),
                "{resource} {}: lastModified differs",
                record.id
            );
            ensure!(
                Some(&raw) == entry.record.as_ref(),
                "{resource} {}: the raw record differs from the source",
                record.id
            );
        }
        total += pulled.len();
    }
    // A medium organization is about 100k records; make sure it was not empty.
    ensure!(total > 50_000, "only {total} records pulled");
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_while_records_change_loses_and_duplicates_nothing() -> Result<()> {
    let sim = Sim::start(SimConfig {
        size: Size::Small,
        seed: 5,
        ..SimConfig::default()
    })
    .await?;
    let client = test_client(1000)?;
    let org = connect(&client, &sim, 0)?;
    for (round, resource) in [Resource::Appointments, Resource::Patients]
        .into_iter()
        .enumerate()
    {
        let name = resource.path().trim_start_matches("/v1/").to_string();
        let before: BTreeSet<u64> = ids_of(&sim.snapshot(0, resource, false).await?)?;
        let mut pager = org.keyset(resource, small_pages(25), None);
        let mut pulled = Vec::new();
        let mut mutations = 0u64;
        while let Some(page) = pager.next_page().await? {
            pulled.extend(page.records.iter().map(|r| r.id.0));
            // Between every two pages the source changes: new records,
            // edits and deletions, some ahead of the cursor, some behind it.
            let result = sim
                .mutate(
                    0,
                    &MutateRequest {
                        resource: Some(name.clone()),
                        creates: 3,
                        updates: 5,
                        deletes: 2,
                        seed: 1000 * round as u64 + mutations,
                    },
                )
                .await?;
            mutations +=
                (result.created.len() + result.updated.len() + result.deleted.len()) as u64;
        }
        let after: BTreeSet<u64> = ids_of(&sim.snapshot(0, resource, false).await?)?;
        ensure!(
            mutations > 100,
            "{resource}: the source barely changed ({mutations} changes); the test proves nothing"
        );
        let unique: BTreeSet<u64> = pulled.iter().copied().collect();
        ensure!(
            unique.len() == pulled.len(),
            "{resource}: {} duplicates",
            pulled.len() - unique.len()
        );
        let lost: Vec<&u64> = before
            .intersection(&after)
            .filter(|id| !unique.contains(id))
            .collect();
        ensure!(
            lost.is_empty(),
            "{resource}: {} records that existed throughout were not pulled: {lost:?}",
            lost.len()
        );
        ensure!(
            pulled.windows(2).all(|w| w[0] < w[1]),
            "{resource}: ids not ascending"
        );
    }
    sim.shutdown().await;
    Ok(())
}

fn ids_of(entries: &[ascend_sim::SnapshotEntry]) -> Result<BTreeSet<u64>> {
    entries.iter().map(|e| Ok(e.id.parse::<u64>()?)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_for_at_least_its_retry_after() -> Result<()> {
    let sim = Sim::start(SimConfig::default()).await?;
    let client = test_client(1000)?;
    let org = connect(&client, &sim, 0)?;
    let mut throttle = script(FaultKind::RateLimited, 1, "/v1/patients");
    throttle.retry_after_secs = Some(2);
    sim.set_faults(
        0,
        &FaultConfig {
            script: vec![throttle],
            ..FaultConfig::default()
        },
    )
    .await?;

    let started = Instant::now();
    let page = org
        .fetch_page(Resource::Patients, &small_pages(10), &Cursor::Start)
        .await?;
    let waited = started.elapsed();

    ensure!(
        page.records.len() == 10,
        "the retried call should have delivered the page"
    );
    ensure!(
        page.attempts == 2,
        "expected one retry, got {} attempts",
        page.attempts
    );
    ensure!(
        waited >= Duration::from_secs(2),
        "retried after {waited:?}, before the Retry-After of 2 s"
    );
    let counters = sim.counters(0).await?;
    ensure!(
        counters.responses_by_status.get(&429) == Some(&1),
        "{counters:?}"
    );
    ensure!(
        counters.calls.get("GET /v1/patients") == Some(&2),
        "{counters:?}"
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_mid_pull_is_refreshed_once() -> Result<()> {
    let sim = Sim::start(SimConfig::default()).await?;
    let client = test_client(1000)?;
    let org = connect(&client, &sim, 0)?;
    let expected = sim.snapshot(0, Resource::Appointments, false).await?.len();

    let mut pager = org.keyset(Resource::Appointments, small_pages(100), None);
    let mut pulled = 0;
    let mut pages = 0;
    while let Some(page) = pager.next_page().await? {
        pulled += page.records.len();
        pages += 1;
        if pages == 3 {
            // The token the client holds is no longer accepted.
            sim.revoke_tokens(0).await?;
        }
    }
    ensure!(pages > 3, "the pull ended before the token was revoked");
    ensure!(pulled == expected, "pulled {pulled} of {expected}");
    let counters = sim.counters(0).await?;
    ensure!(
        counters.token_requests == 2,
        "expected the first token and one refresh, got {}",
        counters.token_requests
    );
    ensure!(
        counters.responses_by_status.get(&401) == Some(&1),
        "{counters:?}"
    );
    ensure!(
        org.stats().token_refreshes >= 1,
        "stats do not show the refresh"
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_outliving_several_token_lifetimes_completes() -> Result<()> {
    let sim = Sim::start(SimConfig::default()).await?;
    sim.set_token_ttl(2).await?;
    // 8 requests a second over about 60 pages: several token lifetimes.
    let client = test_client(8)?;
    let org = connect(&client, &sim, 0)?;
    let pulled = pull_all(&org, Resource::PatientProcedures, small_pages(40)).await?;
    let expected = sim
        .snapshot(0, Resource::PatientProcedures, false)
        .await?
        .len();
    ensure!(
        pulled.len() == expected,
        "pulled {} of {expected}",
        pulled.len()
    );
    let counters = sim.counters(0).await?;
    ensure!(
        counters.token_requests >= 3,
        "tokens were not renewed: {counters:?}"
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_is_an_auth_error_after_exactly_one_call() -> Result<()> {
    let sim = Sim::start(SimConfig::default()).await?;
    sim.set_faults(
        0,
        &FaultConfig {
            forbidden: true,
            ..FaultConfig::default()
        },
    )
    .await?;
    let client = test_client(1000)?;
    let org = connect(&client, &sim, 0)?;

    let error = match org.probe().await {
        Ok(()) => anyhow::bail!("a forbidden organization passed the probe"),
        Err(error) => error,
    };
    ensure!(
        matches!(error, ClientError::Auth { .. }),
        "not an auth error: {error:?}"
    );
    ensure!(
        error.class() == ascend_client::ErrorClass::Auth && !error.is_retryable(),
        "{error:?}"
    );
    let message = error.to_string();
    ensure!(
        message.contains("enable"),
        "the message does not tell the operator to get the integration enabled: {message}"
    );
    let counters = sim.counters(0).await?;
    ensure!(
        api_calls(&counters) == 1,
        "expected exactly one API call: {counters:?}"
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_page_is_a_bad_payload_naming_resource_and_page() -> Result<()> {
    let sim = Sim::start(SimConfig::default()).await?;
    let client = test_client(1000)?;
    let org = connect(&client, &sim, 0)?;
    let mut pager = org.keyset(Resource::Patients, small_pages(20), None);
    let first = pager
        .next_page()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no first page"))?;
    let last_id = first
        .records
        .last()
        .map(|r| r.id)
        .ok_or_else(|| anyhow::anyhow!("empty first page"))?;

    for kind in [FaultKind::Truncated, FaultKind::Malformed] {
        sim.set_faults(
            0,
            &FaultConfig {
                // Every fetch the client makes of the page is broken.
                script: vec![script(kind, 3, "/v1/patients")],
                ..FaultConfig::default()
            },
        )
        .await?;
        let error = match pager.next_page().await {
            Ok(_) => anyhow::bail!("a {kind:?} body was accepted"),
            Err(error) => error,
        };
        ensure!(
            matches!(error, ClientError::BadPayload { .. }),
            "{kind:?}: {error:?}"
        );
        let message = error.to_string();
        ensure!(
            message.contains("patients"),
            "{kind:?}: message does not name the resource: {message}"
        );
        ensure!(
            message.contains(&last_id.to_string()),
            "{kind:?}: message does not name the page: {message}"
        );
        // The cursor did not move: the same page is asked again next time.
        ensure!(
            pager.after_id() == Some(last_id),
            "{kind:?}: the cursor moved past a bad page"
        );
    }
    // With the fault gone the pull carries on from the same place.
    let next = pager
        .next_page()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no page after the bad ones"))?;
    ensure!(next.records.first().map(|r| r.id > last_id) == Some(true));
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_999_and_1000_order_numerically() -> Result<()> {
    let sim = Sim::start(SimConfig::default()).await?;
    let client = test_client(1000)?;
    let org = connect(&client, &sim, 0)?;
    let mut checked = 0;
    for &resource in Resource::ALL {
        let ids: Vec<u64> = ids_of(&sim.snapshot(0, resource, false).await?)?
            .into_iter()
            .collect();
        if !(ids.contains(&999) && ids.contains(&1000)) {
            continue;
        }
        let pulled: Vec<AscendId> = pull_all(&org, resource, small_pages(7))
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        let at = |id: u64| pulled.iter().position(|p| p.0 == id);
        ensure!(
            at(999).is_some() && at(999).map(|i| i + 1) == at(1000),
            "{resource}: 999 is not followed by 1000"
        );
        ensure!(
            pulled.windows(2).all(|w| w[0] < w[1]),
            "{resource}: not in numeric order"
        );
        ensure!(
            pulled.iter().any(|id| id.to_string().len() >= 13),
            "{resource}: no long ids to compare against"
        );
        let after = org
            .fetch_page(resource, &small_pages(1), &Cursor::AfterId(AscendId(999)))
            .await?;
        ensure!(
            after.records.first().map(|r| r.id) == Some(AscendId(1000)),
            "{resource}: lastId=999 did not continue at 1000"
        );
        checked += 1;
    }
    ensure!(checked > 0, "no resource holds both 999 and 1000");
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_share_the_organizations_budget_and_trip_no_429() -> Result<()> {
    let sim = Sim::start(SimConfig::default()).await?;
    sim.set_rate_limit(0, Some(20)).await?;
    let client = test_client(15)?;
    // Two practices of one organization, each pulling two resources at once.
    let practices = [connect(&client, &sim, 0)?, connect(&client, &sim, 0)?];
    let mut tasks = tokio::task::JoinSet::new();
    for org in practices {
        for resource in [Resource::Appointments, Resource::PatientProcedures] {
            let org = org.clone();
            tasks.spawn(async move {
                pull_all(&org, resource, small_pages(100))
                    .await
                    .map(|r| r.len())
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    let counters = sim.counters(0).await?;
    ensure!(
        api_calls(&counters) > 40,
        "too few calls to test the budget: {counters:?}"
    );
    ensure!(
        !counters.responses_by_status.contains_key(&429),
        "the budget let the throttle trip: {counters:?}"
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_nothing_is_lost() -> Result<()> {
    let sim = Sim::start(SimConfig {
        seed: 3,
        ..SimConfig::default()
    })
    .await?;
    sim.set_faults(
        0,
        &FaultConfig {
            error_5xx_rate: 0.2,
            rate_limited_rate: 0.05,
            retry_after_secs: Some(1),
            seed: Some(9),
            ..FaultConfig::default()
        },
    )
    .await?;
    let client = test_client(1000)?;
    let org = connect(&client, &sim, 0)?;
    let pulled = pull_all(&org, Resource::Appointments, small_pages(50)).await?;
    let snapshot: Vec<u64> = ids_of(&sim.snapshot(0, Resource::Appointments, false).await?)?
        .into_iter()
        .collect();
    let ids: Vec<u64> = pulled.iter().map(|r| r.id.0).collect();
    ensure!(
        ids == snapshot,
        "pulled {} ids, the source holds {}",
        ids.len(),
        snapshot.len()
    );
    let counters = sim.counters(0).await?;
    let failures: u64 = counters
        .responses_by_status
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| n)
        .sum();
    ensure!(failures > 0, "no 5xx was injected: {counters:?}");
    ensure!(
        org.stats().retries >= failures,
        "stats do not count the retries"
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_the_organization_does_not_offer_is_not_offered_after_one_call() -> Result<()> {
    let sim = Sim::start(SimConfig::default()).await?;
    sim.set_faults(
        0,
        &FaultConfig {
            not_offered: vec!["transactions".into()],
            ..FaultConfig::default()
        },
    )
    .await?;
    let client = test_client(1000)?;
    let org = connect(&client, &sim, 0)?;
    let error = match pull_all(&org, Resource::Transactions, ListQuery::default()).await {
        Ok(_) => anyhow::bail!("transactions were listed although not offered"),
        Err(error) => error,
    };
    ensure!(matches!(error, ClientError::NotOffered { .. }), "{error:?}");
    let counters = sim.counters(0).await?;
    ensure!(
        counters.calls.get("GET /v1/transactions") == Some(&1),
        "{counters:?}"
    );
    // Other resources are unaffected.
    ensure!(
        !pull_all(&org, Resource::Patients, ListQuery::default())
            .await?
            .is_empty()
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_what_the_source_selects() -> Result<()> {
    let sim = Sim::start(SimConfig {
        seed: 8,
        ..SimConfig::default()
    })
    .await?;
    let client = test_client(1000)?;
    let org = connect(&client, &sim, 0)?;
    let location = sim
        .org(0)
        .location_ids
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no location"))?;
    let query = ListQuery {
        filter: ascend_client::Filter::new().eq("location.id", location.as_str()),
        ..small_pages(200)
    };
    let pulled = pull_all(&org, Resource::Appointments, query).await?;
    let full = sim.snapshot(0, Resource::Appointments, true).await?;
    let mut expected = Vec::new();
    let mut by_location: HashMap<String, usize> = HashMap::new();
    for entry in &full {
        let at = entry
            .record
            .as_ref()
            .and_then(|r| r.pointer("/location/id"))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        *by_location.entry(at.clone()).or_default() += 1;
        if at == location {
            expected.push(entry.id.parse::<u64>()?);
        }
    }
    ensure!(
        by_location.len() > 1,
        "appointments are all at one location; the filter test proves nothing"
    );
    let ids: Vec<u64> = pulled.iter().map(|r| r.id.0).collect();
    ensure!(
        ids == expected,
        "location filter: pulled {} ids, expected {}",
        ids.len(),
        expected.len()
    );
    let count = org
        .count(
            Resource::Appointments,
            &ascend_client::Filter::new().eq("location.id", location.as_str()),
        )
        .await?;
    ensure!(
        count == expected.len() as u64,
        "count {count} != {}",
        expected.len()
    );
    sim.shutdown().await;
    Ok(())
}

/// The simulator's bad records, read through the client: each kind is
/// rejected on its own (ids-only pages too), the rest of every page is
/// read, the keyset pull reaches the records beyond 2^63-1 at the end, and
/// a repair serves them whole again (issue 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulators_bad_records_are_rejected_alone_and_repaired() -> Result<()> {
    use ascend_sim::{BadRecordKind, BadRecordsRequest, RepairRequest};
    let sim = Sim::start(SimConfig {
        size: Size::Small,
        seed: 41,
        ..SimConfig::default()
    })
    .await?;
    let org = connect(&test_client(1000)?, &sim, 0)?;
    let mut bad = HashMap::new();
    for kind in [
        BadRecordKind::NonNumericId,
        BadRecordKind::BadLastModified,
        BadRecordKind::LoneSurrogate,
        BadRecordKind::IdBeyondI64,
    ] {
        let made = sim
            .bad_records(
                0,
                &BadRecordsRequest {
                    resource: "patients".into(),
                    kind,
                    count: 2,
                    ids: Vec::new(),
                    seed: 41,
                },
            )
            .await?;
        for served in made.served_ids {
            bad.insert(served, kind);
        }
    }
    ensure!(sim.list_bad_records(0).await?.len() == 8);
    let snapshot = sim.snapshot(0, Resource::Patients, false).await?;
    for ids_only in [false, true] {
        let query = if ids_only {
            small_pages(37).with_ids_only()
        } else {
            small_pages(37)
        };
        let mut pager = org.keyset(Resource::Patients, query, None);
        let (mut read, mut rejected) = (BTreeSet::new(), BTreeSet::new());
        while let Some(page) = pager.next_page().await? {
            read.extend(page.records.iter().map(|r| r.id.0));
            rejected.extend(page.rejected.iter().filter_map(|r| r.id.clone()));
        }
        // A lone surrogate is valid JSON text: the client reads it (the
        // store is what may refuse it). Ids-only pages carry no
        // lastModified.
        let expected: BTreeSet<String> = bad
            .iter()
            .filter(|(_, kind)| match kind {
                BadRecordKind::LoneSurrogate => false,
                BadRecordKind::BadLastModified => !ids_only,
                _ => true,
            })
            .map(|(served, _)| served.clone())
            .collect();
        ensure!(
            rejected == expected,
            "ids only {ids_only}: {rejected:?} vs {expected:?}"
        );
        ensure!(
            read.len() + expected.len() == snapshot.len(),
            "ids only {ids_only}: {} read, {} rejected, {} in the source",
            read.len(),
            expected.len(),
            snapshot.len()
        );
    }
    let repaired = sim.repair_bad_records(0, &RepairRequest::default()).await?;
    ensure!(repaired.len() == 6, "{repaired:?}");
    let left = sim.list_bad_records(0).await?;
    ensure!(
        left.len() == 2 && left.iter().all(|b| b.kind == BadRecordKind::IdBeyondI64),
        "{left:?}"
    );
    sim.shutdown().await;
    Ok(())
}

/// A write is retried in place only when it certainly did not reach
/// Ascend: a 503 is returned at once as "may have been applied" (one POST
/// only), a 429 is waited out and the write lands once, a 400 is "not
/// applied". A lookup finds what a send created by its marker.
#[tokio::test]
async fn writes_are_not_repeated_blindly_and_are_found_by_their_marker() -> Result<()> {
    use ascend_client::{Applied, WriteFailure};
    use model::Write;
    use model::writeback::{SmsLog, WriteContext};
    let sim = Sim::start(SimConfig {
        size: Size::Tiny,
        ..SimConfig::default()
    })
    .await?;
    let client = test_client(1000)?;
    let org = connect(&client, &sim, 0)?;
    let patients = pull_all(&org, Resource::Patients, small_pages(10)).await?;
    let patient = patients.first().map(|r| r.id.0).unwrap_or_default();
    let note = |text: &str| {
        Write::SmsLog(SmsLog {
            patient_id: patient,
            direction: "outbound".into(),
            phone: None,
            text: text.into(),
            sent_at: "2026-12-04T10:00:00Z".into(),
        })
    };
    let ctx = |marker: &str| WriteContext {
        marker: marker.into(),
        note_provider_id: None,
        location_id: 0,
    };
    let since = time::OffsetDateTime::now_utc();
    ensure!(
        org.find_write(&note("a"), &ctx("asy-aaaa"), since)
            .await?
            .is_none()
    );
    // A 503: one POST, "may have been applied", not retried.
    sim.set_faults(
        0,
        &FaultConfig {
            script: vec![ScriptedFault {
                status: Some(503),
                ..script(FaultKind::Error5xx, 1, "/notes")
            }],
            ..FaultConfig::default()
        },
    )
    .await?;
    match org.send_write(&note("a"), &ctx("asy-aaaa")).await {
        Err(WriteFailure {
            applied: Applied::Unknown,
            ..
        }) => {}
        other => anyhow::bail!("a 503 gave {other:?}"),
    }
    ensure!(
        note_posts(&sim).await? == 1,
        "a write was repeated after a 503"
    );
    // A 429 is waited out: the write lands, once.
    sim.set_faults(
        0,
        &FaultConfig {
            script: vec![ScriptedFault {
                retry_after_secs: Some(1),
                ..script(FaultKind::RateLimited, 1, "/notes")
            }],
            ..FaultConfig::default()
        },
    )
    .await?;
    let sent = org
        .send_write(&note("b"), &ctx("asy-bbbb"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(
        note_posts(&sim).await? == 3,
        "the 429 was not retried exactly once"
    );
    let found = org.find_write(&note("b"), &ctx("asy-bbbb"), since).await?;
    ensure!(
        found == Some(sent.ascend_id),
        "lookup found {found:?}, sent {}",
        sent.ascend_id
    );
    // An unknown patient: refused, not applied.
    let mut unknown = note("c");
    if let Write::SmsLog(s) = &mut unknown {
        s.patient_id = 1;
    }
    match org.send_write(&unknown, &ctx("asy-cccc")).await {
        Err(WriteFailure {
            applied: Applied::No,
            ..
        }) => {}
        other => anyhow::bail!("an unknown patient gave {other:?}"),
    }
    sim.shutdown().await;
    Ok(())
}

/// The notes POSTs organization 0 received.
async fn note_posts(sim: &Sim) -> Result<usize> {
    Ok(sim
        .requests(0)
        .await?
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/notes"))
        .count())
}
