//! Running one test: its identities (the admin's session or the virtual
//! users), the load with live progress, the clean-up, and the stored report.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::HeaderValue;

use super::model::{LoadTestRequest, LoadTestResult, Plan};
use super::{LoadTesting, db, engine, report, users};
use crate::ids::{JobId, SessionId, UserId};
use crate::jobs::JobContext;
use crate::time::Timestamp;

/// The address to send to, who sends, and the tag.
fn target(
    state: &LoadTesting,
    test_id: &str,
    identities: Vec<engine::Identity>,
    exempt: bool,
) -> anyhow::Result<engine::Target> {
    let bound = *state
        .bound_addr
        .get()
        .ok_or_else(|| anyhow::anyhow!("the service is not listening"))?;
    // A wildcard bind is reached on loopback.
    let ip = match bound.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let addr = std::net::SocketAddr::new(ip, bound.port());
    let limited = if exempt { "" } else { ":limited" };
    Ok(engine::Target {
        addr,
        host: HeaderValue::from_str(&addr.to_string())?,
        identities,
        tag: HeaderValue::from_str(&format!("{}:{test_id}{limited}", state.loadtest_secret))?,
    })
}

fn identity(user_id: &UserId, token: &str) -> anyhow::Result<engine::Identity> {
    Ok(engine::Identity {
        user_id: user_id.to_string(),
        authorization: HeaderValue::from_str(&format!("Bearer {token}"))?,
    })
}

/// Runs the test as the admin `user_id` or as its virtual users, removes
/// what it made for itself (session, or accounts with all they made) before
/// the report is stored, so whoever sees the test finished finds nothing
/// left of it.
pub(super) async fn run_test(
    ctx: &JobContext,
    state: &LoadTesting,
    test_id: &str,
    user_id: &UserId,
    req: &LoadTestRequest,
    plan: Plan,
    live: Arc<engine::Live>,
) -> anyhow::Result<LoadTestResult> {
    let ttl = plan.duration + plan.ramp_up + plan.timeout + Duration::from_secs(60);
    let virtual_users = plan.virtual_users;
    let mut admin_session: Option<SessionId> = None;
    let identities = if virtual_users == 0 {
        crate::sessions::issue_internal(
            &state.sessions,
            user_id,
            ttl,
            &serde_json::json!({"purpose": "loadtest", "testId": test_id}),
        )
        .await
        .and_then(|(session_id, token)| {
            admin_session = Some(session_id);
            Ok(vec![identity(user_id, &token)?])
        })
    } else {
        ctx.progress(0, format!("creating {virtual_users} virtual users"))
            .await;
        users::create(state, test_id, virtual_users, ttl)
            .await
            .and_then(|made| {
                made.iter()
                    .map(|v| identity(&v.user_id, &v.token))
                    .collect()
            })
    };
    let outcome = match identities {
        Ok(identities) => measure(ctx, state, test_id, req, plan, live, identities).await,
        Err(e) => Err(e),
    };
    if let Some(session_id) = &admin_session
        && let Err(e) = crate::sessions::revoke_internal(&state.sessions, session_id).await
    {
        tracing::warn!(test_id, error = %format!("{e:#}"), "failed to revoke the load test session");
    }
    if virtual_users > 0 {
        match users::remove(state, test_id).await {
            Ok(n) => tracing::info!(test_id, accounts = n, "load test virtual users removed"),
            // Start-up removes them if this failed.
            Err(e) => {
                tracing::warn!(test_id, error = %format!("{e:#}"), "failed to remove the virtual users")
            }
        }
    }
    let result = outcome?;
    store(state, &result).await?;
    ctx.progress(100, format!("{} requests", result.totals.requests))
        .await;
    Ok(result)
}

/// Sends the load and builds the report (not stored yet).
async fn measure(
    ctx: &JobContext,
    state: &LoadTesting,
    test_id: &str,
    req: &LoadTestRequest,
    plan: Plan,
    live: Arc<engine::Live>,
    identities: Vec<engine::Identity>,
) -> anyhow::Result<LoadTestResult> {
    let virtual_users = plan.virtual_users;
    let exempt = plan.exempt_from_rate_limits;
    let target = target(state, test_id, identities, exempt)?;
    let started_at = Timestamp::now();
    {
        let mut tx = state.db.begin_write().await?;
        db::set_running(&mut tx, test_id, started_at).await?;
        tx.commit().await?;
    }
    ctx.progress(0, "running").await;
    let duration = plan.duration;
    let max_requests = plan.max_requests;
    let thresholds = plan.thresholds.clone();
    let workers = plan.workers();
    let mode = plan.mode();
    let target_rps = plan.target_rps();
    let run = engine::run(plan, target, live.clone(), ctx.cancel.clone());
    tokio::pin!(run);
    let began = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let run = loop {
        tokio::select! {
            r = &mut run => break r,
            _ = tick.tick() => {
                let done = live.completed.load(Ordering::Relaxed);
                let by_time = began.elapsed().as_secs_f64() / duration.as_secs_f64();
                let by_count = max_requests.map_or(0.0, |m| done as f64 / m as f64);
                let pct = (by_time.max(by_count) * 100.0).min(99.0) as u8;
                ctx.progress(pct, format!("{done} requests")).await;
            }
        }
    };
    // The load has stopped: the next test may start while this one's
    // report is stored.
    state.loadtests.release(test_id);
    let collected = report::merge(run.recorders, &run.timeline);
    let totals = collected.totals();
    let secs = run.elapsed.as_secs_f64();
    let verdicts = collected.verdicts(&thresholds);
    let status = if run.cancelled {
        "cancelled"
    } else {
        "succeeded"
    };
    let result = LoadTestResult {
        id: test_id.to_string(),
        job_id: Some(JobId::from(test_id)),
        status: status.into(),
        mode: mode.into(),
        concurrency: workers,
        virtual_users,
        exempt_from_rate_limits: exempt,
        started_at: Some(started_at),
        finished_at: Some(Timestamp::now()),
        duration_seconds: (secs * 1000.0).round() / 1000.0,
        achieved_rps: if secs > 0.0 {
            ((totals.requests as f64 / secs) * 10.0).round() / 10.0
        } else {
            0.0
        },
        target_rps,
        latency_ms: report::latency(&collected.ok),
        failure_latency_ms: report::latency(&collected.fail),
        histogram: report::buckets(&collected.ok),
        status_codes: collected.status_codes(),
        errors: collected.errors.clone(),
        timeline: collected.timeline.clone(),
        coordinated_omission_corrected: target_rps.is_some(),
        passed: (!verdicts.is_empty()).then(|| verdicts.iter().all(|v| v.passed)),
        thresholds: verdicts,
        error: None,
        request: serde_json::to_value(req)?,
        totals,
    };
    Ok(result)
}

async fn store(state: &LoadTesting, r: &LoadTestResult) -> anyhow::Result<()> {
    let report = serde_json::to_string(r)?;
    let finished_at = r.finished_at.unwrap_or_else(Timestamp::now);
    let error_rate = if r.totals.requests == 0 {
        0.0
    } else {
        r.totals.failed as f64 / r.totals.requests as f64
    };
    let mut tx = state.db.begin_write().await?;
    db::finish(
        &mut tx,
        &r.id,
        &db::Finished {
            status: &r.status,
            requests: r.totals.requests as i64,
            succeeded: r.totals.succeeded as i64,
            failed: r.totals.failed as i64,
            achieved_rps: r.achieved_rps,
            p50_ms: r.latency_ms.p50,
            p95_ms: r.latency_ms.p95,
            p99_ms: r.latency_ms.p99,
            max_ms: r.latency_ms.max,
            error_rate,
            passed: r.passed.map(i64::from),
            report: &report,
            error: None,
            finished_at,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
