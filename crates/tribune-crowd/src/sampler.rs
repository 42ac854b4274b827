//! Samples the server once a second: CPU and resident memory from /proc/PID when the crowd runs on
//! the server's machine (`--server-pid`), otherwise what the server's `/metrics` tells (the
//! listener gauge, and the standard `process_*` figures if the deployment exports them).
//! Parsing is plain functions; only [`Sampler::sample`] reads files or the network.

use std::time::Duration;

use tokio::time::Instant;

/// Clock ticks per second of /proc/PID/stat times: USER_HZ, which Linux fixes at 100 for user
/// space whatever the kernel's internal tick rate.
const USER_HZ: f64 = 100.0;

/// One sample of the server.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerSample {
    /// CPU used since the previous sample, percent of one core.
    pub cpu_pct: Option<f64>,
    /// Resident memory, MiB.
    pub rss_mb: Option<f64>,
    /// Time the process's threads were runnable but waiting for a CPU since the previous
    /// sample, percent of wall time (summed over threads): high when other work on the machine
    /// starves the server, which its CPU figure alone cannot tell from an idle server.
    pub wait_pct: Option<f64>,
    /// Open listener connections as the server counts them.
    pub listeners: Option<u64>,
}

/// utime + stime of a process in clock ticks, from the text of /proc/PID/stat.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may hold spaces and ')': fields restart after the
    // last ')'. utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `Field:  N kB` line of /proc/PID/status, in KiB.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The value of an unlabelled metric in Prometheus text format.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Run-queue wait of one thread, nanoseconds: the second field of /proc/PID/task/TID/schedstat.
pub fn schedstat_wait_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().nth(1)?.parse().ok()
}

/// Run-queue wait of all threads of `pid`, nanoseconds (threads that ended are not counted).
fn process_wait_ns(pid: u32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in dir.flatten() {
        if let Some(ns) = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| schedstat_wait_ns(&s))
        {
            total += ns;
        }
    }
    Some(total)
}

/// Percent of one core used between two CPU readings.
pub fn cpu_pct(ticks_before: u64, ticks_after: u64, wall: Duration) -> f64 {
    let secs = wall.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    ticks_after.saturating_sub(ticks_before) as f64 / USER_HZ / secs * 100.0
}

/// Where samples come from.
pub enum Sampler {
    /// /proc of a process on this machine.
    Proc {
        /// The server's process id.
        pid: u32,
        /// The previous CPU reading.
        last: Option<(u64, Instant)>,
        /// The previous run-queue wait reading, ns.
        last_wait: Option<u64>,
    },
    /// The server's `/metrics`.
    Metrics {
        /// HTTP client (short timeout).
        http: reqwest::Client,
        /// `…/metrics`.
        url: String,
        /// The previous `process_cpu_seconds_total` reading.
        last: Option<(f64, Instant)>,
    },
}

impl Sampler {
    /// Takes a sample. Missing figures are `None` (the process is gone, the scrape failed).
    pub async fn sample(&mut self) -> ServerSample {
        match self {
            Sampler::Proc {
                pid,
                last,
                last_wait,
            } => {
                let now = Instant::now();
                let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| stat_cpu_ticks(&s));
                let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| status_kib(&s, "VmRSS"));
                let wait = process_wait_ns(*pid);
                let (cpu, wait_pct) = match (ticks, *last) {
                    (Some(t), Some((t0, at))) => {
                        let wall = (now - at).as_secs_f64();
                        let w = match (wait, *last_wait) {
                            (Some(w), Some(w0)) if wall > 0.0 => {
                                Some(w.saturating_sub(w0) as f64 / 1e9 / wall * 100.0)
                            }
                            _ => None,
                        };
                        (Some(cpu_pct(t0, t, now - at)), w)
                    }
                    _ => (None, None),
                };
                *last = ticks.map(|t| (t, now));
                *last_wait = wait;
                ServerSample {
                    cpu_pct: cpu,
                    rss_mb: rss.map(|k| k as f64 / 1024.0),
                    wait_pct,
                    listeners: None,
                }
            }
            Sampler::Metrics { http, url, last } => {
                let now = Instant::now();
                let text = match http.get(url.as_str()).send().await {
                    Ok(r) => r.text().await.ok(),
                    Err(_) => None,
                };
                let Some(text) = text else {
                    return ServerSample::default();
                };
                let cpu_s = metric(&text, "process_cpu_seconds_total");
                let cpu = match (cpu_s, *last) {
                    (Some(c), Some((c0, at))) if now > at => {
                        Some((c - c0).max(0.0) / (now - at).as_secs_f64() * 100.0)
                    }
                    _ => None,
                };
                *last = cpu_s.map(|c| (c, now));
                ServerSample {
                    cpu_pct: cpu,
                    rss_mb: metric(&text, "process_resident_memory_bytes")
                        .map(|b| b / (1024.0 * 1024.0)),
                    wait_pct: None,
                    listeners: metric(&text, "tribune_listeners").map(|v| v.max(0.0) as u64),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_and_status_are_parsed() {
        // A command name with a space and a parenthesis, utime 250, stime 50.
        let stat = "4242 (trib une) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 5 0 \
                    100 200000000 3000 18446744073709551615";
        assert_eq!(stat_cpu_ticks(stat), Some(300));
        assert_eq!(stat_cpu_ticks("garbage"), None);
        let status = "Name:\ttribune\nVmRSSMax:\t1 kB\nVmRSS:\t   56068 kB\nRssAnon:\t 4000 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(56_068));
        assert_eq!(status_kib(status, "RssAnon"), Some(4_000));
        assert_eq!(status_kib(status, "VmSwap"), None);
        assert_eq!(schedstat_wait_ns("123456 7890 12\n"), Some(7890));
        assert_eq!(schedstat_wait_ns("123456"), None);
    }

    #[test]
    fn cpu_percent_of_one_core() {
        // 150 ticks (1.5 s of CPU) over 2 s of wall time: 75 % of a core.
        assert_eq!(cpu_pct(1_000, 1_150, Duration::from_secs(2)), 75.0);
        assert_eq!(cpu_pct(1_000, 900, Duration::from_secs(1)), 0.0);
        assert_eq!(cpu_pct(0, 10, Duration::ZERO), 0.0);
    }

    #[test]
    fn metrics_text_is_read() {
        let text = "# HELP tribune_listeners Open listener connections.\n\
                    # TYPE tribune_listeners gauge\n\
                    tribune_listeners 1234\n\
                    tribune_listeners_total 9\n\
                    process_resident_memory_bytes 1.048576e7\n";
        assert_eq!(metric(text, "tribune_listeners"), Some(1234.0));
        assert_eq!(
            metric(text, "process_resident_memory_bytes"),
            Some(10_485_760.0)
        );
        assert_eq!(metric(text, "tribune_speakers"), None);
    }
}
