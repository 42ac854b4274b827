//! The node process's own CPU time, resident memory and open files, for `/metrics` under the
//! standard Prometheus names (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`), read from Linux's /proc; absent elsewhere.

/// Linux reports /proc times in USER_HZ ticks, which is 100 on every architecture it runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// What the process uses now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU time since start, seconds.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub resident_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
}

/// User + system ticks from the text of /proc/PID/stat (fields 14 and 15, counted after the
/// parenthesised command name, which may itself hold spaces and parentheses).
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After ")" come field 3 (state) onwards: utime is field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident bytes from the text of /proc/PID/status (`VmRSS:  1234 kB`).
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// This process's figures, if /proc has them.
pub fn current() -> Option<ProcessStats> {
    let ticks = parse_stat_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let rss = parse_status_rss(&std::fs::read_to_string("/proc/self/status").ok()?)?;
    let fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(ProcessStats {
        cpu_seconds: ticks as f64 / TICKS_PER_SECOND,
        resident_bytes: rss,
        open_fds: fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_texts_parse() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 \
                    5 0 123 456789 1234 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
        let status = "Name:\ttribune\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss(status), Some(2048 * 1024));
        assert_eq!(parse_status_rss("Name: x\n"), None);
    }

    #[test]
    fn metrics_carry_the_standard_process_figures() {
        let text = crate::metrics::Metrics::default().render();
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing in {text}"))
        };
        assert!(value("process_resident_memory_bytes") > 1_048_576.0);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_cpu_seconds_total") >= 0.0);
    }

    #[test]
    fn this_process_is_measured() {
        let s = current().expect("Linux /proc");
        assert!(s.resident_bytes > 1 << 20, "{s:?}");
        assert!(s.open_fds >= 3);
        assert!(s.cpu_seconds >= 0.0);
    }
}
