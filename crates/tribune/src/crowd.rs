//! `tribune crowd`: the command-line face of `tribune_crowd`. Parses the flags, prints a
//! progress line each second on stderr, then the final table on stdout, and writes the JSON
//! report and the SVG chart when asked.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use tribune_crowd::icecast::{self, IcecastConfig};
use tribune_crowd::{self as crowd, chart, report, CrowdConfig, FloodPlan, PlanConfig, Scenario};

/// What the crowd does.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScenarioArg {
    /// Ramp to N listeners and hold them until the end.
    Flash,
    /// Ramp to N, then listeners leave and new ones arrive, keeping about N.
    Steady,
    /// Ramp to N; listeners drop their connection now and then and resume where they left.
    Churn,
    /// Ramp to N, then a flood of new joins (--flood-rate) while some of the N leave
    /// (--leave-rate): admission control under a join flood.
    Flood,
}

#[derive(Args)]
pub struct CrowdArgs {
    /// Server URL (on 127.0.0.0/8 unless --allow-remote).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Room id.
    #[arg(long, required_unless_present = "icecast")]
    room: Option<String>,
    /// Compare with Icecast: listen to this HTTP Ogg Opus stream (an Icecast mount, e.g.
    /// http://127.0.0.1:8000/tribune.opus) instead of a Tribune room; server figures need
    /// --server-pid.
    #[arg(long, value_name = "URL", conflicts_with_all = ["room", "server"])]
    icecast: Option<String>,
    /// Listeners to hold (N).
    #[arg(long)]
    listeners: u32,
    /// Arrivals per second during the ramp.
    #[arg(long, default_value_t = 500.0)]
    ramp: f64,
    /// Length of the run, seconds (the crowd leaves then).
    #[arg(long)]
    seconds: f64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG chart (listeners, join rate, latency over time) to this file.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// What the crowd does.
    #[arg(long, value_enum, default_value = "flash")]
    scenario: ScenarioArg,
    /// Sample this server process's CPU and memory from /proc (same machine); otherwise the
    /// server's /metrics is read.
    #[arg(long)]
    server_pid: Option<u32>,
    /// `steady`: mean seconds a listener stays (each stays 0.5–1.5 times this).
    #[arg(long, default_value_t = 30.0)]
    stay: f64,
    /// `churn`: seconds between a listener's connection drops.
    #[arg(long, default_value_t = 10.0)]
    churn_every: f64,
    /// `churn`: seconds a listener stays away before resuming.
    #[arg(long, default_value_t = 2.0)]
    churn_gap: f64,
    /// `flood`: new joins per second during the flood.
    #[arg(long, default_value_t = 100.0)]
    flood_rate: f64,
    /// `flood`: when the flood starts, seconds from the run's start (default: 5 s after the
    /// ramp's end).
    #[arg(long)]
    flood_start: Option<f64>,
    /// `flood`: how long the flood lasts, seconds (default: to 5 s before the run's end).
    #[arg(long)]
    flood_seconds: Option<f64>,
    /// `flood`: established listeners who leave per second during the flood, freeing seats.
    #[arg(long, default_value_t = 0.0)]
    leave_rate: f64,
    /// Keep the crowd's core busy instead of sleeping when it has nothing to read. On loopback
    /// the kernel runs a listener's receive path, and the wake-up of a sleeping reader, on the
    /// sending server's core: a crowd that sleeps between a server's writes bills the server
    /// for its own wake-ups (an interprocessor interrupt each), which a listener's own device
    /// pays on a real network. Costs the crowd's whole core (docs/CROWD.md).
    #[arg(long)]
    busy_poll: bool,
    /// Allow a server outside 127.0.0.0/8 (a crowd is a load test: only aim it at your own).
    #[arg(long)]
    allow_remote: bool,
}

/// Keeps this runtime's worker from parking for `length`: a task that yields in a loop makes the
/// worker poll the I/O driver without sleeping, so nobody waits in `epoll_wait` to be woken.
async fn busy_poll(length: Duration) {
    let end = tokio::time::Instant::now() + length;
    while tokio::time::Instant::now() < end {
        tokio::task::yield_now().await;
    }
}

/// Seconds from a flag, refused unless finite and in range.
fn seconds(name: &str, v: f64, max: f64) -> Result<Duration> {
    if !(v.is_finite() && v > 0.0 && v <= max) {
        bail!("--{name} must be more than 0 and at most {max}");
    }
    Ok(Duration::from_secs_f64(v))
}

/// The flood's plan from the flags: by default it starts 5 s after the ramp and ends 5 s before
/// the run does.
fn flood_plan(args: &CrowdArgs) -> Result<FloodPlan> {
    let ramp_end = f64::from(args.listeners.saturating_sub(1)) / args.ramp.max(f64::MIN_POSITIVE);
    let start = match args.flood_start {
        Some(s) if s.is_finite() && s >= 0.0 => s,
        Some(_) => bail!("--flood-start must be 0 or more"),
        None => ramp_end + 5.0,
    };
    let length = match args.flood_seconds {
        Some(l) => l,
        None => args.seconds - 5.0 - start,
    };
    if matches!(args.scenario, ScenarioArg::Flood) && !(length.is_finite() && length > 0.0) {
        bail!(
            "the flood would not fit: the ramp ends at {ramp_end:.1} s and --seconds is {}; \
             lengthen --seconds or set --flood-start/--flood-seconds",
            args.seconds
        );
    }
    Ok(FloodPlan {
        rate: args.flood_rate,
        start: Duration::from_secs_f64(start.clamp(0.0, 86_400.0)),
        length: Duration::from_secs_f64(length.clamp(0.0, 86_400.0)),
        leave_rate: args.leave_rate,
    })
}

/// Runs `tribune crowd`.
pub async fn run(args: CrowdArgs) -> Result<()> {
    let flood = flood_plan(&args)?;
    let plan = PlanConfig {
        scenario: match args.scenario {
            ScenarioArg::Flash => Scenario::Flash,
            ScenarioArg::Steady => Scenario::Steady,
            ScenarioArg::Churn => Scenario::Churn,
            ScenarioArg::Flood => Scenario::Flood,
        },
        listeners: args.listeners,
        ramp_per_s: args.ramp,
        run: seconds("seconds", args.seconds, 86_400.0)?,
        stay: seconds("stay", args.stay, 86_400.0)?,
        churn_every: seconds("churn-every", args.churn_every, 86_400.0)?,
        churn_gap: seconds("churn-gap", args.churn_gap, 86_400.0)?,
        flood,
    };
    let grace = Duration::from_secs(5);
    if args.busy_poll {
        tokio::spawn(busy_poll(plan.run + grace));
    }
    // A hard stop past every bound of the run, in case anything hangs anyway.
    let limit = plan.run + grace + Duration::from_secs(30);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("tribune crowd: overall time limit reached, exiting");
        std::process::exit(3);
    });
    let title = format!(
        "tribune crowd{}: {} {} listeners, ramp {}/s, {} s",
        args.icecast
            .as_deref()
            .map_or(String::new(), |u| format!(" (icecast {u})")),
        crowd::scenario_name(plan.scenario),
        plan.listeners,
        plan.ramp_per_s,
        plan.run.as_secs_f64()
    );
    let progress = |p: &report::TimelinePoint| {
        let _ = writeln!(std::io::stderr(), "{}", report::progress_line(p));
    };
    let report = if let Some(url) = args.icecast.clone() {
        if args.server_pid.is_none() {
            eprintln!(
                "tribune crowd: Icecast has no /metrics: without --server-pid the report has no \
                 server CPU or memory"
            );
        }
        let cfg = IcecastConfig {
            url,
            plan,
            server_pid: args.server_pid,
            allow_remote: args.allow_remote,
            grace,
        };
        icecast::run(cfg, progress).await?
    } else {
        let cfg = CrowdConfig {
            server: args.server,
            room: args.room.context("--room is required")?,
            plan,
            server_pid: args.server_pid,
            allow_remote: args.allow_remote,
            grace,
        };
        crowd::run(cfg, progress).await?
    };
    let mut table = report::table(&report);
    if args.icecast.is_some() {
        // Over an HTTP stream the latency figures are lateness against the stream clock.
        table = table.replacen("glass-to-ear ms     ", "stream lateness ms  ", 1);
    }
    print!("{table}");
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.chart {
        std::fs::write(path, chart::svg(&title, &report.timeline))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn busy_polling_stops_by_itself_and_lets_other_tasks_run() {
        let started = tokio::time::Instant::now();
        let spin = tokio::spawn(busy_poll(Duration::from_secs(1)));
        // Timers and other tasks still run beside it (single-threaded test runtime).
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(started.elapsed() < Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), spin)
            .await
            .expect("it ends at its deadline")
            .unwrap();
        assert!(started.elapsed() >= Duration::from_secs(1));
    }
}
