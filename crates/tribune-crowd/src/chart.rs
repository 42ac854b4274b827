//! The `--chart` SVG (sans-IO): three panels over the run's time — listeners connected, joins
//! per second, and glass-to-ear latency p50/p99 — written by hand so the chart needs no library
//! and opens in any browser.

use std::fmt::Write as _;

use super::report::TimelinePoint;

const WIDTH: f64 = 800.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const PANEL: f64 = 150.0;
const GAP: f64 = 50.0;

/// The smallest 1, 2 or 5 × 10^k at or above `v` (at least 1): a readable top for an axis.
pub fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 1.0) {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// `&`, `<`, `>` and quotes escaped for SVG text.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One series: a label, a colour, and its value at each point.
struct Series<'a> {
    label: &'a str,
    colour: &'a str,
    value: fn(&TimelinePoint) -> f64,
}

/// The polyline `points` attribute of a series in a panel whose plot area starts at `top`.
fn points(
    tl: &[TimelinePoint],
    value: fn(&TimelinePoint) -> f64,
    t_max: f64,
    y_max: f64,
    top: f64,
) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let mut out = String::new();
    for p in tl {
        let x = LEFT + p.t_s / t_max * plot_w;
        let y = top + PANEL - (value(p) / y_max).clamp(0.0, 1.0) * PANEL;
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{x:.1},{y:.1}");
    }
    out
}

fn panel(
    out: &mut String,
    tl: &[TimelinePoint],
    i: usize,
    title: &str,
    unit: &str,
    series: &[Series<'_>],
    t_max: f64,
) {
    let top = TOP + i as f64 * (PANEL + GAP);
    let plot_w = WIDTH - LEFT - RIGHT;
    let y_max = nice_ceiling(
        tl.iter()
            .flat_map(|p| series.iter().map(move |s| (s.value)(p)))
            .fold(0.0, f64::max),
    );
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="{:.1}" font-weight="bold">{}</text>"##,
        top - 8.0,
        escape(title)
    );
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top:.1}" width="{plot_w:.1}" height="{PANEL}" fill="none" stroke="#999"/>"##
    );
    for (frac, label) in [
        (0.0, "0".to_owned()),
        (0.5, fmt_num(y_max / 2.0)),
        (1.0, fmt_num(y_max)),
    ] {
        let y = top + PANEL - frac * PANEL;
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            if frac == 1.0 { unit } else { "" }
        );
        if frac == 0.5 {
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
                LEFT + plot_w
            );
        }
    }
    for (k, s) in series.iter().enumerate() {
        let _ = writeln!(
            out,
            r##"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"##,
            s.colour,
            points(tl, s.value, t_max, y_max, top)
        );
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" fill="{}" text-anchor="end">{}</text>"##,
            // Legends side by side above the panel's right edge.
            WIDTH - RIGHT - 60.0 * k as f64,
            top - 8.0,
            s.colour,
            escape(s.label)
        );
    }
    let bottom = top + PANEL + 16.0;
    let _ = writeln!(out, r##"<text x="{LEFT}" y="{bottom:.1}">0 s</text>"##);
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{bottom:.1}" text-anchor="end">{} s</text>"##,
        WIDTH - RIGHT,
        fmt_num(t_max)
    );
}

/// A number for an axis label: integers without decimals.
fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The chart of a run's timeline.
pub fn svg(title: &str, tl: &[TimelinePoint]) -> String {
    let t_max = tl.iter().map(|p| p.t_s).fold(0.0, f64::max).max(1.0);
    let height = TOP + 3.0 * PANEL + 2.0 * GAP + 30.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(out, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="16" font-size="14" font-weight="bold">{}</text>"##,
        escape(title)
    );
    panel(
        &mut out,
        tl,
        0,
        "listeners connected",
        "",
        &[Series {
            label: "connected",
            colour: "#1f77b4",
            value: |p| p.connected as f64,
        }],
        t_max,
    );
    panel(
        &mut out,
        tl,
        1,
        "joins per second",
        "/s",
        &[Series {
            label: "joins/s",
            colour: "#2ca02c",
            value: |p| p.joins_per_s,
        }],
        t_max,
    );
    panel(
        &mut out,
        tl,
        2,
        "glass-to-ear latency",
        " ms",
        &[
            Series {
                label: "p99",
                colour: "#d62728",
                value: |p| p.latency_ms.p99,
            },
            Series {
                label: "p50",
                colour: "#ff7f0e",
                value: |p| p.latency_ms.p50,
            },
        ],
        t_max,
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_client::Percentiles;

    fn point(t_s: f64, connected: u64, joins: f64, p50: f64, p99: f64) -> TimelinePoint {
        TimelinePoint {
            t_s,
            connected,
            joins_per_s: joins,
            joins_failed: 0,
            frames_per_s: 0.0,
            frames_lost: 0,
            latency_ms: Percentiles { p50, p99, max: p99 },
            join_p99_ms: 0.0,
            answers_per_s: 0.0,
            answer_p99_ms: 0.0,
            server_cpu_pct: None,
            server_rss_mb: None,
            server_wait_pct: None,
            server_listeners: None,
            crowd_cpu_pct: None,
        }
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(1.5), 2.0);
        assert_eq!(nice_ceiling(180.0), 200.0);
        assert_eq!(nice_ceiling(18_000.0), 20_000.0);
        assert_eq!(nice_ceiling(3_001.0), 5_000.0);
        assert_eq!(nice_ceiling(5_001.0), 10_000.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
    }

    #[test]
    fn series_are_scaled_into_their_panels() {
        let tl = [
            point(1.0, 500, 500.0, 40.0, 80.0),
            point(2.0, 1000, 500.0, 50.0, 100.0),
        ];
        let s = svg("flash <1000>", &tl);
        assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(s.ends_with("</svg>\n"));
        assert!(s.contains("flash &lt;1000&gt;"));
        // Listeners: top 1 000; x spans 70..780 over 0..2 s; panel 0 plots y 40..190.
        assert!(s.contains(r#"points="425.0,115.0 780.0,40.0""#), "{s}");
        // Joins: top 500 (nice ceiling of 500); panel 1 plots y 240..390.
        assert!(s.contains(r#"points="425.0,240.0 780.0,240.0""#));
        // Latency: top 100 ms; p99 80 → 440 + 150 − 120 = 470; p50 40 → 530.
        assert!(s.contains(r#"points="425.0,470.0 780.0,440.0""#));
        assert!(s.contains(r#"points="425.0,530.0 780.0,515.0""#));
        assert_eq!(s.matches("<polyline").count(), 4);
        // An empty timeline still makes a valid, empty chart.
        assert_eq!(svg("empty", &[]).matches("points=\"\"").count(), 4);
    }
}
