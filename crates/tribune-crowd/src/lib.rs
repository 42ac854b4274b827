//! The crowd: an open-model load generator (`tribune crowd`) that replays a crowd of listeners against a
//! Tribune deployment and reports what each experienced.
//!
//! * [`plan`] schedules arrivals, departures and churn breaks up front (sans-IO); the scheduler
//!   spawns each arrival as its own task at its time, whatever the server is doing, so a slow
//!   server meets the same arrivals as a fast one.
//! * [`listener`] is one visit: [`join`] (with retries and the waiting room), then the listen
//!   WebSocket from its own 127.x.y.z source address ([`net`]), resuming with `from=SEQ`.
//! * Listeners record into sharded counters and fixed-bucket histograms ([`stats`],
//!   [`histogram`]); once a second the reporter drains them, samples the server ([`sampler`])
//!   and folds everything into a timeline ([`report`]); [`chart`] draws it.
//!
//! Every loop is bounded in count and time, and nothing runs past the run's length plus a short
//! grace period.

pub mod chart;
pub mod flood;
pub mod histogram;
pub mod icecast;
pub mod join;
pub mod listener;
pub mod net;
pub mod plan;
pub mod report;
pub mod sampler;
pub mod stats;
pub mod visit;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

pub use plan::{FloodPlan, PlanConfig, Scenario};
pub use report::{CrowdReport, TimelinePoint};

use listener::{run_visit, Ctx};
use report::{Accumulator, Reading, RunInfo};
use sampler::Sampler;
use stats::Stats;

/// Why a crowd cannot run.
#[derive(Debug, thiserror::Error)]
pub enum CrowdError {
    /// A flag or the environment does not allow the run.
    #[error("{0}")]
    Config(String),
    /// The schedule cannot be made.
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    /// The server cannot be used (unreachable, no such room).
    #[error("server: {0}")]
    Server(String),
}

/// A crowd run.
#[derive(Debug, Clone)]
pub struct CrowdConfig {
    /// The server (`http://127.0.0.1:8080`).
    pub server: String,
    /// The room to listen to.
    pub room: String,
    /// Who arrives when.
    pub plan: PlanConfig,
    /// Sample this process's CPU and memory from /proc (the server, on this machine).
    pub server_pid: Option<u32>,
    /// Allow a target outside 127.0.0.0/8.
    pub allow_remote: bool,
    /// Time after the run's end for listeners to say goodbye before they are dropped.
    pub grace: Duration,
}

/// HTTP clients used for joins, each from its own source address with a small pool of keep-alive
/// connections: joins past the pools open new connections, and spreading them over several
/// addresses keeps their TIME_WAIT ports from running out during long churn.
const JOIN_CLIENTS: u32 = 32;
/// Idle keep-alive connections each join client keeps (bounds the file descriptors joins use).
const JOIN_POOL: usize = 16;
/// File descriptors kept free beyond one per listener: join connections, the sampler, stdio.
const FD_MARGIN: u64 = JOIN_CLIENTS as u64 * JOIN_POOL as u64 + 64;

/// Runs the crowd; `on_tick` sees each second's point as it is made (for a progress line).
pub async fn run(
    cfg: CrowdConfig,
    on_tick: impl FnMut(&TimelinePoint),
) -> Result<CrowdReport, CrowdError> {
    let visits = cfg.plan.visits()?;
    let target = net::target(&cfg.server, cfg.allow_remote).await?;
    let limit = net::raise_fd_limit()?;
    let need = u64::from(cfg.plan.listeners) + FD_MARGIN;
    if limit < need {
        return Err(CrowdError::Config(format!(
            "the open-file limit is {limit}; {} listeners need about {need} (one socket each, \
             plus joins): lower --listeners or raise the hard limit",
            cfg.plan.listeners
        )));
    }
    let room_url = target
        .base
        .join(&format!("/api/rooms/{}", cfg.room))
        .map_err(|e| CrowdError::Config(format!("--room {}: {e}", cfg.room)))?;
    check_room(&room_url).await?;
    let join_url = format!("{room_url}/join");

    let mut join_clients = Vec::new();
    for k in 0..JOIN_CLIENTS {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_idle_timeout(tribune_client::api::IDLE_POOL_TIMEOUT)
            .pool_max_idle_per_host(JOIN_POOL);
        if target.spread_sources {
            b = b.local_address(std::net::IpAddr::V4(net::join_source_addr(k)));
        }
        join_clients.push(
            b.build()
                .map_err(|e| CrowdError::Config(format!("HTTP client: {e}")))?,
        );
    }
    let sampler = match cfg.server_pid {
        Some(pid) => Sampler::Proc {
            pid,
            last: None,
            last_wait: None,
        },
        None => Sampler::Metrics {
            http: reqwest::Client::builder()
                .timeout(Duration::from_millis(800))
                .build()
                .map_err(|e| CrowdError::Config(format!("HTTP client: {e}")))?,
            url: format!("{}metrics", target.base),
            last: None,
        },
    };
    let clock = RunClock::now(cfg.plan.run, cfg.grace);
    let stats = Arc::new(Stats::default());
    let ctx = Arc::new(Ctx {
        target,
        join_url,
        join_clients,
        plan: cfg.plan,
        start: clock.start,
        hard_stop: clock.hard_stop,
        stats: stats.clone(),
    });
    Ok(drive(
        clock,
        &cfg.plan,
        visits,
        move |v| run_visit(ctx.clone(), v),
        stats,
        Some(sampler),
        on_tick,
    )
    .await)
}

/// When a run starts and ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunClock {
    /// The run's start.
    pub start: Instant,
    /// Its length.
    pub run: Duration,
    /// Nothing runs past this instant.
    pub hard_stop: Instant,
}

impl RunClock {
    /// A run of length `run` starting now; nothing outlives it by more than `grace`.
    pub fn now(run: Duration, grace: Duration) -> RunClock {
        let start = Instant::now();
        RunClock {
            start,
            run,
            hard_stop: start + run + grace,
        }
    }
}

/// The fixed facts of a run for its report.
fn run_info(plan: &PlanConfig, visits: usize) -> RunInfo {
    RunInfo {
        scenario: scenario_name(plan.scenario).to_owned(),
        listeners: plan.listeners,
        ramp_per_s: plan.ramp_per_s,
        seconds: plan.run.as_secs_f64(),
        visits: visits as u64,
        ramp_end_s: plan.ramp_at(plan.listeners.saturating_sub(1)).as_secs_f64(),
        flood: (plan.scenario == Scenario::Flood).then_some(plan.flood),
    }
}

/// Runs a schedule to its end and reports it: spawns `visit(v)` at each arrival's time (never
/// waiting for another), and once a second drains the counters, samples the server (when there
/// is a sampler) and this process, and folds them into the timeline.
pub(crate) async fn drive<F, Fut>(
    clock: RunClock,
    plan: &PlanConfig,
    visits: Vec<plan::Visit>,
    visit: F,
    stats: Arc<Stats>,
    mut sampler: Option<Sampler>,
    mut on_tick: impl FnMut(&TimelinePoint),
) -> CrowdReport
where
    F: Fn(plan::Visit) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let info = run_info(plan, visits.len());
    if let Some(s) = sampler.as_mut() {
        s.sample().await; // the first CPU reading, so the first second has a rate
    }
    let mut own = Sampler::Proc {
        pid: std::process::id(),
        last: None,
        last_wait: None,
    };
    own.sample().await;
    let RunClock {
        start,
        run,
        hard_stop,
    } = clock;
    let run_end = start + run;
    let scheduler = tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        for v in visits {
            tokio::time::sleep_until(start + v.arrive).await;
            tasks.spawn(visit(v));
            // Reap finished visits as we go (steady runs have many).
            while tasks.try_join_next().is_some() {}
        }
        let _ = tokio::time::timeout_at(hard_stop, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
    });

    let mut acc = Accumulator::default();
    let mut tick = start;
    while tick < run_end {
        tick = (tick + Duration::from_secs(1)).min(run_end);
        tokio::time::sleep_until(tick).await;
        let totals = stats.totals();
        let connected = stats.open_connections();
        let samples = stats.drain();
        let server = match sampler.as_mut() {
            Some(s) => tokio::time::timeout(Duration::from_millis(900), s.sample())
                .await
                .unwrap_or_default(),
            None => Default::default(),
        };
        on_tick(acc.tick(Reading {
            t_s: (tick - start).as_secs_f64(),
            totals,
            connected,
            samples,
            server,
            crowd_cpu_pct: own.sample().await.cpu_pct,
        }));
    }
    // Listeners leave at the end; counts they keep until then (gaps, loss) arrive now.
    let _ = tokio::time::timeout_at(hard_stop + Duration::from_secs(2), scheduler).await;
    acc.settle(stats.totals(), stats.drain());
    acc.finish(info, stats.errors(), stats.nodes())
}

/// The scenario's name in reports.
pub fn scenario_name(s: Scenario) -> &'static str {
    match s {
        Scenario::Flash => "flash",
        Scenario::Steady => "steady",
        Scenario::Churn => "churn",
        Scenario::Flood => "flood",
    }
}

/// Fails early and clearly when the server is unreachable or the room unknown.
async fn check_room(room_url: &url::Url) -> Result<(), CrowdError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| CrowdError::Config(format!("HTTP client: {e}")))?;
    let resp = http
        .get(room_url.clone())
        .send()
        .await
        .map_err(|e| CrowdError::Server(format!("{room_url}: {e}")))?;
    match resp.status().as_u16() {
        200 => Ok(()),
        404 => Err(CrowdError::Server(format!("no such room: {room_url}"))),
        s => Err(CrowdError::Server(format!("{room_url} answered {s}"))),
    }
}
