//! The load generator. Each worker owns one keep-alive HTTP/1.1 connection
//! (hyper's low-level client: no pool, no per-request allocation beyond the
//! request itself) to the service's own bound address and records into its
//! own histograms; only the live counters and a once-a-second timeline flush
//! are shared.
//!
//! Closed model (`concurrency`): N workers send back to back (started
//! gradually over the ramp-up). Open model (`rate`): workers take tickets
//! from a shared counter; ticket n is due at [`Schedule::offset`] and its
//! latency counts from that intended time, so a server that stalls is
//! charged for the requests it delayed (coordinated omission corrected).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::model::{Load, Plan};
use super::report::{Outcome, Recorder, Timeline};

/// Live progress, read by `GET /api/load-test/status`.
#[derive(Debug, Default)]
pub struct Live {
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    /// Unix ms when the first request was sent (0: not started).
    pub started_ms: AtomicI64,
}

/// Where the requests go and who they are.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: HeaderValue,
    /// Who sends: worker i acts as `identities[i % len]` (never empty).
    pub identities: Vec<Identity>,
    /// `x-hs-loadtest: <secret>:<testId>[:limited]`.
    pub tag: HeaderValue,
}

/// One user the test acts as.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: String,
    /// `Bearer <token>` of the user's session for this test.
    pub authorization: HeaderValue,
}

pub const TAG_HEADER: &str = "x-hs-loadtest";

/// When the n-th request of an open-model test is due: a linear ramp from 0
/// to `rps` over `ramp`, then `rps`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub rps: f64,
    pub ramp: f64,
}

impl Schedule {
    /// Seconds after the start at which request `n` (0-based) is due. During
    /// the ramp the cumulative count is rps * t^2 / (2 ramp).
    pub fn offset(&self, n: u64) -> f64 {
        let n = n as f64;
        let ramp_requests = self.rps * self.ramp / 2.0;
        if self.ramp > 0.0 && n < ramp_requests {
            (2.0 * self.ramp * n / self.rps).sqrt()
        } else {
            self.ramp + (n - ramp_requests) / self.rps
        }
    }
}

/// Weighted choice of a scenario step with a small xorshift generator (one
/// per worker: no shared state, no locking).
struct Picker {
    cumulative: Vec<u64>,
    total: u64,
    state: u64,
}

impl Picker {
    fn new(plan: &Plan, seed: u64) -> Self {
        let mut acc = 0;
        let cumulative = plan
            .steps
            .iter()
            .map(|s| {
                acc += u64::from(s.weight);
                acc
            })
            .collect();
        Self {
            cumulative,
            total: acc.max(1),
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    fn next(&mut self) -> usize {
        if self.cumulative.len() == 1 {
            return 0;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let r = self.state % self.total;
        self.cumulative.partition_point(|&c| c <= r)
    }
}

/// The measurements of a finished run.
pub struct Run {
    pub recorders: Vec<Recorder>,
    pub timeline: Timeline,
    /// From the start to the last answer.
    pub elapsed: Duration,
    pub cancelled: bool,
}

struct Shared {
    plan: Plan,
    target: Target,
    live: Arc<Live>,
    cancel: CancellationToken,
    /// Mirrors `cancel` as a plain atomic: the token's own check takes a
    /// mutex, too costly once per request across every worker.
    stopped: Arc<AtomicBool>,
    start: Instant,
    deadline: Instant,
    tickets: AtomicU64,
    timeline: Timeline,
    last_done: std::sync::Mutex<Instant>,
}

/// Runs the plan until its duration or request count is reached, or until
/// `cancel` fires.
///
/// The load is generated on a runtime of its own (one thread per core, as
/// `wrk -t<cores>` would use), not on the service's: the generator then
/// neither steals the service's worker threads nor is starved by them, and
/// the OS schedules it like the external tool it stands in for.
pub async fn run(plan: Plan, target: Target, live: Arc<Live>, cancel: CancellationToken) -> Run {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("loadtest".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("loadtest-worker")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "failed to start the load test runtime");
                    return;
                }
            };
            let run = rt.block_on(run_here(plan, target, live, cancel));
            let _ = tx.send(run);
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "failed to start the load test thread");
    }
    rx.await.unwrap_or_else(|_| Run {
        recorders: Vec::new(),
        timeline: Timeline::default(),
        elapsed: Duration::ZERO,
        cancelled: true,
    })
}

async fn run_here(plan: Plan, target: Target, live: Arc<Live>, cancel: CancellationToken) -> Run {
    let start = Instant::now();
    live.started_ms
        .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    let workers = plan.workers();
    let stopped = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (cancel, stopped) = (cancel.clone(), stopped.clone());
        tokio::spawn(async move {
            cancel.cancelled().await;
            stopped.store(true, Ordering::Relaxed);
        })
    };
    let shared = Arc::new(Shared {
        stopped,
        deadline: start + plan.duration,
        plan,
        target,
        live,
        cancel,
        start,
        tickets: AtomicU64::new(0),
        timeline: Timeline::default(),
        last_done: std::sync::Mutex::new(start),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..workers {
        let s = shared.clone();
        tasks.spawn(async move { worker(&s, i).await });
    }
    let mut recorders = Vec::with_capacity(workers as usize);
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(rec) => recorders.push(rec),
            Err(e) => tracing::error!(error = %e, "load test worker panicked"),
        }
    }
    watcher.abort();
    let shared = Arc::try_unwrap(shared).unwrap_or_else(|_| unreachable!("workers joined"));
    let last = *shared.last_done.lock().unwrap_or_else(|e| e.into_inner());
    Run {
        recorders,
        elapsed: last.saturating_duration_since(shared.start),
        cancelled: shared.cancel.is_cancelled(),
        timeline: shared.timeline,
    }
}

async fn worker(s: &Shared, index: u32) -> Recorder {
    let mut rec = Recorder::default();
    let me = &s.target.identities[index as usize % s.target.identities.len()];
    // The scenario's paths as this worker's user, made once.
    let paths: Vec<PathAndQuery> = (s.plan.steps.iter())
        .map(|step| {
            step.path_for(&me.user_id)
                .unwrap_or_else(|| PathAndQuery::from_static("/"))
        })
        .collect();
    let mut picker = Picker::new(&s.plan, u64::from(index) + 1);
    let mut conn: Option<Conn> = None;
    let mut last_done = s.start;

    if let Load::Concurrency(n) = s.plan.load
        && !s.plan.ramp_up.is_zero()
    {
        let delay = s.plan.ramp_up.mul_f64(f64::from(index) / f64::from(n));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = s.cancel.cancelled() => return rec.finish(&s.timeline),
        }
    }
    let schedule = match s.plan.load {
        Load::Rate { rps, .. } => Some(Schedule {
            rps,
            ramp: s.plan.ramp_up.as_secs_f64(),
        }),
        Load::Concurrency(_) => None,
    };

    // Live counters are shared: add to them in batches.
    let (mut pending_done, mut pending_failed) = (0u64, 0u64);
    let mut flushed_second = 0;
    loop {
        if s.stopped.load(Ordering::Relaxed) {
            break;
        }
        let ticket = s.tickets.fetch_add(1, Ordering::Relaxed);
        if s.plan.max_requests.is_some_and(|max| ticket >= max) {
            break;
        }
        let due = match schedule {
            Some(sch) => {
                let due = s.start + Duration::from_secs_f64(sch.offset(ticket));
                if due >= s.deadline {
                    break;
                }
                if due > Instant::now() {
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = s.cancel.cancelled() => break,
                    }
                }
                due
            }
            None => {
                let now = Instant::now();
                if now >= s.deadline {
                    break;
                }
                now
            }
        };
        let i = picker.next();
        let req = Req {
            step: &s.plan.steps[i],
            path: &paths[i],
            authorization: &me.authorization,
        };
        // An in-flight request is bounded by the timeout; a cancel stops
        // the worker once it is answered.
        let outcome = match tokio::time::timeout(s.plan.timeout, send(&mut conn, s, &req)).await {
            Ok(o) => o,
            Err(_) => {
                conn = None;
                Outcome::Timeout
            }
        };
        let done = Instant::now();
        last_done = done;
        let latency = done.saturating_duration_since(due);
        let second = done.saturating_duration_since(s.start).as_secs();
        rec.record(&s.timeline, second, latency.as_micros() as u64, outcome);
        pending_done += 1;
        pending_failed += u64::from(outcome.failed());
        if pending_done >= 64 || second != flushed_second {
            s.live.completed.fetch_add(pending_done, Ordering::Relaxed);
            s.live.failed.fetch_add(pending_failed, Ordering::Relaxed);
            (pending_done, pending_failed, flushed_second) = (0, 0, second);
        }
    }
    s.live.completed.fetch_add(pending_done, Ordering::Relaxed);
    s.live.failed.fetch_add(pending_failed, Ordering::Relaxed);
    {
        let mut last = s.last_done.lock().unwrap_or_else(|e| e.into_inner());
        if last_done > *last {
            *last = last_done;
        }
    }
    rec.finish(&s.timeline)
}

/// One keep-alive connection. Its driver is polled by the worker itself while
/// a request is in flight (not spawned as a task of its own), so a request
/// costs no hand-off between tasks.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
}

async fn connect(addr: SocketAddr) -> Option<Conn> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    Some(Conn {
        sender,
        driver: Box::pin(driver),
    })
}

enum Failure {
    /// The connection could not take the request (closed while idle): safe
    /// to retry on a new one, nothing was sent.
    NotSent,
    Other,
}

/// A request to send: the step, its path for the worker's user, and that
/// user's credentials.
struct Req<'a> {
    step: &'a super::model::Step,
    path: &'a PathAndQuery,
    authorization: &'a HeaderValue,
}

fn request(s: &Shared, r: &Req<'_>) -> http::Request<Full<Bytes>> {
    let step = r.step;
    let mut req = http::Request::new(Full::new(step.body.clone().unwrap_or_default()));
    *req.method_mut() = step.method.clone();
    *req.uri_mut() = http::Uri::from(r.path.clone());
    let headers = req.headers_mut();
    headers.insert(header::HOST, s.target.host.clone());
    headers.insert(header::AUTHORIZATION, r.authorization.clone());
    headers.insert(TAG_HEADER, s.target.tag.clone());
    for (name, value) in &step.headers {
        headers.insert(name.clone(), value.clone());
    }
    req
}

/// Sends one request and reads the whole answer, driving the connection.
async fn exchange(c: &mut Conn, req: http::Request<Full<Bytes>>) -> Result<u16, Failure> {
    let Conn { sender, driver } = c;
    let work = async {
        sender.ready().await.map_err(|_| Failure::NotSent)?;
        let res = sender.send_request(req).await.map_err(|e| {
            if e.is_canceled() {
                Failure::NotSent
            } else {
                Failure::Other
            }
        })?;
        let status = res.status().as_u16();
        let mut body = res.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|_| Failure::Other)?;
        }
        Ok(status)
    };
    tokio::select! {
        biased;
        r = work => r,
        _ = driver.as_mut() => Err(Failure::NotSent),
    }
}

/// Sends one request on the worker's connection (opening it when needed);
/// a connection found closed is replaced once.
async fn send(conn: &mut Option<Conn>, s: &Shared, step: &Req<'_>) -> Outcome {
    for attempt in 0..2 {
        if conn.as_ref().is_none_or(|c| c.sender.is_closed()) {
            *conn = connect(s.target.addr).await;
        }
        let Some(c) = conn.as_mut() else {
            return Outcome::Connect;
        };
        match exchange(c, request(s, step)).await {
            Ok(status) => return Outcome::Status(status),
            Err(Failure::NotSent) if attempt == 0 => *conn = None,
            Err(_) => {
                *conn = None;
                return Outcome::Other;
            }
        }
    }
    Outcome::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_ramps_linearly_then_holds_the_rate() {
        let s = Schedule {
            rps: 100.0,
            ramp: 10.0,
        };
        // 500 requests during the ramp (100 * 10 / 2), the last at ~10 s.
        assert!((s.offset(0) - 0.0).abs() < 1e-9);
        assert!((s.offset(125) - 5.0).abs() < 1e-9);
        assert!((s.offset(500) - 10.0).abs() < 1e-9);
        assert!((s.offset(600) - 11.0).abs() < 1e-9);
        let flat = Schedule {
            rps: 50.0,
            ramp: 0.0,
        };
        assert!((flat.offset(100) - 2.0).abs() < 1e-9);
        // Never decreasing.
        let mut prev = 0.0;
        for n in 0..2000 {
            let t = s.offset(n);
            assert!(t >= prev);
            prev = t;
        }
    }

    #[test]
    fn steps_are_picked_by_weight() {
        let plan = super::super::model::LoadTestRequest {
            scenario: vec![
                serde_json::from_value(
                    serde_json::json!({"method": "GET", "path": "/a", "weight": 1}),
                )
                .unwrap(),
                serde_json::from_value(
                    serde_json::json!({"method": "GET", "path": "/b", "weight": 3}),
                )
                .unwrap(),
            ],
            concurrency: Some(1),
            rate: None,
            ramp_up_seconds: None,
            duration_seconds: Some(1),
            requests: None,
            thresholds: None,
            timeout_ms: None,
            virtual_users: None,
            exempt_from_rate_limits: None,
        }
        .validate(super::super::model::Caps {
            max_concurrency: 1,
            max_duration_seconds: 1,
            max_requests: 1,
        })
        .unwrap();
        let mut p = Picker::new(&plan, 7);
        let mut counts = [0u32; 2];
        for _ in 0..40_000 {
            counts[p.next()] += 1;
        }
        let share = f64::from(counts[1]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "share of /b: {share}");
    }
}
