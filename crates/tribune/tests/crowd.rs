//! `tribune crowd` against a real in-process node with a speaker: small crowds, a few seconds.

use std::time::Duration;

use tribune_client::{Api, AudioSource, SpeakOptions};
use tribune_crowd::{self as crowd, CrowdConfig, CrowdReport, FloodPlan, PlanConfig, Scenario};
use tribune_server::{RunningServer, Server, ServerConfig};

/// A node on an ephemeral loopback port with a live room and a speaker talking for `speak_s`.
async fn node_with_speaker(speak_s: f64) -> (RunningServer, String) {
    node_with_speaker_and(speak_s, ServerConfig::default()).await
}

/// The same with these settings.
async fn node_with_speaker_and(speak_s: f64, config: ServerConfig) -> (RunningServer, String) {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        ..config
    };
    let server = Server::bind(config).await.expect("bind").spawn();
    // The node made its own operator key (no data directory: for this run only).
    let key = server.state.config().rooms.api_keys.first().cloned();
    let api = Api::new(&server.url()).expect("api").with_api_key(key);
    let room = api.create_room("crowd test").await.expect("room");
    let id = room.id.clone();
    tokio::spawn(async move {
        let _ = tribune_client::speak(
            &api,
            SpeakOptions {
                room: room.id,
                token: room.host_token,
                source: AudioSource::Tone(440.0),
                duration: Some(Duration::from_secs_f64(speak_s)),
                bitrate_bps: 48_000,
                hear: false,
            },
        )
        .await;
    });
    // Let the speaker's jitter buffer fill so the program carries its timestamps.
    tokio::time::sleep(Duration::from_millis(500)).await;
    (server, id)
}

fn plan(scenario: Scenario, listeners: u32, ramp: f64, secs: f64) -> PlanConfig {
    PlanConfig {
        scenario,
        listeners,
        ramp_per_s: ramp,
        run: Duration::from_secs_f64(secs),
        stay: Duration::from_secs(30),
        churn_every: Duration::from_millis(1500),
        churn_gap: Duration::from_millis(500),
        flood: FloodPlan::default(),
    }
}

async fn run(server: &RunningServer, room: &str, plan: PlanConfig) -> CrowdReport {
    // The node runs in this process: its CPU and memory are ours.
    run_sampling(server, room, plan, Some(std::process::id())).await
}

/// Runs a crowd; with no `server_pid` the server's `/metrics` is read each second.
async fn run_sampling(
    server: &RunningServer,
    room: &str,
    plan: PlanConfig,
    server_pid: Option<u32>,
) -> CrowdReport {
    let mut ticks = 0;
    let report = crowd::run(
        CrowdConfig {
            server: server.url(),
            room: room.to_owned(),
            plan,
            server_pid,
            allow_remote: false,
            grace: Duration::from_secs(5),
        },
        |_| ticks += 1,
    )
    .await
    .expect("crowd runs");
    eprintln!("{}", crowd::report::table(&report));
    assert_eq!(
        ticks,
        plan.run.as_secs_f64().ceil() as usize,
        "one point per second"
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_crowd_of_500_all_connect_and_lose_nothing() {
    let (server, room) = node_with_speaker(10.0).await;
    let report = run(&server, &room, plan(Scenario::Flash, 500, 500.0, 4.0)).await;
    assert_eq!(report.listeners_connected, 500, "{report:#?}");
    assert_eq!(report.joins_ok, 500);
    assert_eq!(report.joins_failed, 0);
    assert_eq!(report.connect_failed, 0);
    assert_eq!(report.frames_lost, 0, "{:?}", report.errors);
    assert_eq!((report.skips, report.disconnects), (0, 0));
    assert_eq!(report.peak_connected, 500);
    // Listener i arrives at i / 500 s and stays until just after the last sample (4.2 s):
    // 50 frames a second each, so about 500 × 50 × (4.2 − 0.5) = 92 500 frames (joins and
    // handshakes take a little of that time, the prefill on connecting adds a frame).
    let expected = 500.0 * 50.0 * (4.2 - 0.499);
    let got = report.frames_received as f64;
    assert!(
        (0.85 * expected..=1.05 * expected).contains(&got),
        "{got} frames, expected about {expected}"
    );
    // Glass-to-ear on one host: positive, and far below a second on loopback.
    assert!(report.latency_ms.p50 > 0.0);
    assert!(report.latency_ms.p99 < 1000.0, "{:?}", report.latency_ms);
    assert!(report.join_ms.p99 > 0.0);
    // The node's figures were sampled from /proc.
    assert!(report.server_cpu_pct.is_some() && report.server_rss_mb.is_some());
    assert_eq!(report.timeline.len(), 4);
    assert_eq!(report.timeline[3].connected, 500);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_listeners_resume_without_loss() {
    let (server, room) = node_with_speaker(10.0).await;
    let report = run(&server, &room, plan(Scenario::Churn, 50, 100.0, 4.0)).await;
    assert_eq!(report.listeners_connected, 50, "{report:#?}");
    assert_eq!(report.joins_failed, 0);
    // Each listener drops 0.75–2.25 s after arriving and again 1.5 s later when that still
    // returns before 4 s: at least one resume each.
    assert!(report.resumes >= 50, "{} resumes", report.resumes);
    // Resuming with from=SEQ replays what was missed from the ring: nothing is lost, and the
    // frames captured while away arrive as backlog.
    assert_eq!(report.frames_lost, 0, "{:?}", report.errors);
    assert!(
        report.frames_backlog >= 50 * 20,
        "{} backlog",
        report.frames_backlog
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_solves_proofs_of_work_and_waits_in_line() {
    use tribune_core::admission::GateConfig;
    use tribune_server::admission::AdmissionConfig;
    // Proof of work past 20 unproven joins a second, and admissions paced at 100 a second:
    // a crowd of 200 arriving at 200 a second meets both.
    let config = ServerConfig {
        admission: AdmissionConfig {
            gate: GateConfig {
                join_rate: 100,
                join_burst: 20,
                ..GateConfig::default()
            },
            pow_threshold: 20,
            ..AdmissionConfig::default()
        },
        ..ServerConfig::default()
    };
    let (server, room) = node_with_speaker_and(10.0, config).await;
    let report = run(&server, &room, plan(Scenario::Flash, 200, 200.0, 5.0)).await;
    assert_eq!(report.listeners_connected, 200, "{report:#?}");
    assert_eq!(report.joins_failed, 0, "{:?}", report.errors);
    assert_eq!(report.frames_lost, 0);
    let m = server.state.metrics();
    assert!(m.pow_accepted.get() > 0, "proofs were asked for and solved");
    assert_eq!(m.pow_refused.get(), 0);
    assert!(m.joins_queued.get() > 0, "some waited in line");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_flood_is_answered_and_paced_while_the_established_lose_nothing() {
    use tribune_core::admission::GateConfig;
    use tribune_server::admission::AdmissionConfig;
    // A node of 40 seats admitting 10 a second; 30 listeners come in at that rate, then 300
    // joins arrive over 3 s (10x the admission rate) while 5 of the established leave each
    // second.
    let (capacity, rate) = (40u64, 10u32);
    let config = ServerConfig {
        admission: AdmissionConfig {
            gate: GateConfig {
                max_listeners: capacity,
                join_rate: rate,
                join_burst: 5,
                ..GateConfig::default()
            },
            ..AdmissionConfig::default()
        },
        ..ServerConfig::default()
    };
    let (server, room) = node_with_speaker_and(14.0, config).await;
    let mut p = plan(Scenario::Flood, 30, 10.0, 9.0);
    p.flood = FloodPlan {
        rate: 100.0,
        start: Duration::from_millis(3500),
        length: Duration::from_secs(3),
        leave_rate: 5.0,
    };
    let report = run_sampling(&server, &room, p, None).await;
    let f = report.flood.clone().expect("a flood summary");
    // Every join request got an answer, fast.
    assert_eq!(report.join_answers.none, 0, "{:?}", report.errors);
    assert!(report.join_answers.queued > 0, "{:?}", report.join_answers);
    assert!(report.answer_ms.p99 < 1000.0, "{:?}", report.answer_ms);
    // The listeners already in lost nothing.
    assert_eq!(report.joins_ok, report.listeners_connected);
    assert!(report.established_frames > 30 * 50, "{report:#?}");
    assert_eq!(report.established_lost, 0);
    // Admissions were paced: at most the burst plus the rate over the flood (and the second
    // after it, whose queue polls answer late), and a fair share of it.
    let most = 5 + u64::from(rate) * 4;
    assert!(
        (10..=most).contains(&f.admitted),
        "{} admitted during the flood (at most {most})",
        f.admitted
    );
    // The node never held more listeners than its capacity.
    let held = f.server_listeners_max.expect("read from /metrics");
    assert!(
        held <= capacity,
        "{held} listeners on a {capacity}-seat node"
    );
    assert!(held >= 30, "{held}");
    server.shutdown().await.expect("shutdown");
}
