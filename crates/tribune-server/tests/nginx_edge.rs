//! The shipped nginx edge (deploy/nginx-edge.conf) in front of a real origin over loopback:
//! 1 000 listeners blocking on the same LL-HLS playlist URLs through nginx are all answered with
//! the part they wait for while the origin serves only a few requests per part (collapsing);
//! blocked part requests collapse too; a missing part's 404 is shared briefly; the API and the
//! listen WebSocket pass through.
//!
//! nginx is required (scripts/test-all.sh installs Debian's `nginx`); without it the test fails
//! unless `TRIBUNE_SKIP_NGINX=1`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tribune_client::{Api, AudioSource, SpeakOptions};

/// Concurrent blocking playlist clients.
const CLIENTS: usize = 1_000;
/// Blocking reloads each client makes, each for the part its previous answer hinted.
const ROUNDS: usize = 4;
/// Parts per segment (2 s segments of 200 ms parts, as the origin packages them).
const PARTS_PER_SEGMENT: u32 = 10;

/// The nginx binary: on PATH, or where Debian puts it (/usr/sbin is not on every user's PATH).
fn nginx_binary() -> Option<PathBuf> {
    ["nginx", "/usr/sbin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| {
            Command::new(p)
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

fn nginx_or_skip() -> Option<PathBuf> {
    if let Some(bin) = nginx_binary() {
        return Some(bin);
    }
    if std::env::var("TRIBUNE_SKIP_NGINX").as_deref() == Ok("1") {
        eprintln!("SKIPPED: nginx not found and TRIBUNE_SKIP_NGINX=1");
        return None;
    }
    panic!("nginx is required (apt-get install nginx), or set TRIBUNE_SKIP_NGINX=1");
}

/// An nginx running the shipped config from a temporary prefix; stopped (and the prefix
/// removed) when dropped, also when the test fails.
struct Nginx {
    child: Child,
    prefix: PathBuf,
    port: u16,
}

impl Nginx {
    /// Starts nginx with deploy/nginx-edge.conf, its origin and listen addresses rewritten to
    /// `origin` and a free loopback port, and waits until it proxies `/healthz`.
    async fn start(bin: &Path, origin: std::net::SocketAddr) -> Nginx {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nginx-edge.conf");
        let conf = std::fs::read_to_string(&shipped).expect("deploy/nginx-edge.conf");
        // A free port: bound, then released for nginx (loopback only).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let conf = replace_once(
            &conf,
            "server 127.0.0.1:8080;",
            &format!("server {origin};"),
        );
        let conf = replace_once(&conf, "listen 8081;", &format!("listen 127.0.0.1:{port};"));
        let prefix = std::env::temp_dir().join(format!(
            "tribune-nginx-edge-{}-{}",
            std::process::id(),
            tribune_client::unix_micros()
        ));
        std::fs::create_dir_all(&prefix).unwrap();
        // Started as root, nginx's workers run as `nobody` and write the cache under the prefix.
        std::fs::set_permissions(&prefix, std::fs::Permissions::from_mode(0o755)).unwrap();
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let stderr = std::fs::File::create(prefix.join("stderr.log")).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf_path)
            .args(["-e", "stderr", "-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx {
            child,
            prefix,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}): {}", nginx.logs());
            }
            if let Ok(r) = reqwest::get(format!("{}/healthz", nginx.url())).await {
                if r.status() == 200 {
                    return nginx;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not proxy /healthz within 10 s: {}",
                nginx.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.prefix.join(name)).unwrap_or_default();
        format!(
            "stderr: {}\nerror.log: {}",
            read("stderr.log"),
            read("error.log")
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops its workers too; a SIGKILL would leave them running.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "nginx prefix kept: {}\n{}",
                self.prefix.display(),
                self.logs()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.prefix);
        }
    }
}

/// `text` with the one occurrence of `from` replaced; panics if it is not there exactly once
/// (the shipped config's documented defaults changed).
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "deploy/nginx-edge.conf must contain `{from}` exactly once"
    );
    text.replacen(from, to, 1)
}

/// `(msn, index)` of the `EXT-X-PRELOAD-HINT` part.
fn preload_hint(playlist: &str) -> (u64, u32) {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))
        .unwrap_or_else(|| panic!("no preload hint in {playlist}"));
    let uri = line.split("URI=\"part/").nth(1).unwrap();
    let name = uri.split(".m4s").next().unwrap();
    let (msn, index) = name.split_once('.').unwrap();
    (msn.parse().unwrap(), index.parse().unwrap())
}

/// The part `ahead` parts after `(msn, index)`.
fn advance((msn, index): (u64, u32), ahead: u32) -> (u64, u32) {
    let i = index + ahead;
    (
        msn + u64::from(i / PARTS_PER_SEGMENT),
        i % PARTS_PER_SEGMENT,
    )
}

fn part_listed(playlist: &str, (msn, index): (u64, u32)) -> bool {
    let uri = format!("URI=\"part/{msn}.{index}.m4s\"");
    playlist
        .lines()
        .any(|l| l.starts_with("#EXT-X-PART:") && l.contains(&uri))
}

/// What one client saw: per round, (URL asked, status, awaited part listed, cache status).
type Trace = Vec<(String, u16, bool, String)>;

/// One listener: `ROUNDS` blocking reloads, each for the part the previous answer hinted.
async fn blocking_client(client: reqwest::Client, base: String, first: (u64, u32)) -> Trace {
    let mut want = first;
    let mut trace = Trace::new();
    for _ in 0..ROUNDS {
        let url = format!("{base}?_HLS_msn={}&_HLS_part={}", want.0, want.1);
        let r = match client.get(&url).send().await {
            Ok(r) => r,
            Err(e) => {
                trace.push((url, 0, false, e.to_string()));
                return trace;
            }
        };
        let status = r.status().as_u16();
        let cache = r
            .headers()
            .get("x-cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let text = r.text().await.unwrap_or_default();
        let listed = status == 200 && part_listed(&text, want);
        trace.push((url, status, listed, cache));
        if !listed {
            return trace;
        }
        want = preload_hint(&text);
    }
    trace
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_edge_collapses_a_thousand_blocking_playlist_requests() {
    let Some(bin) = nginx_or_skip() else {
        return;
    };
    let server = common::start().await;
    let api = Api::new(&server.url())
        .unwrap()
        .with_api_key(Some(common::API_KEY.to_owned()));
    let room = api.create_room("edge").await.unwrap();
    let opts = SpeakOptions {
        room: room.id.clone(),
        token: room.host_token.clone(),
        source: AudioSource::Tone(440.0),
        duration: Some(Duration::from_secs(40)),
        bitrate_bps: 48_000,
        hear: false,
    };
    let speaker_api = Api::new(&server.url())
        .unwrap()
        .with_api_key(Some(common::API_KEY.to_owned()));
    let speaker = tokio::spawn(async move {
        tribune_client::speak(&speaker_api, opts)
            .await
            .expect("speak");
    });
    let nginx = Nginx::start(&bin, server.addr).await;
    let origin = server.url();
    let edge = nginx.url();
    let playlist = format!("{edge}/hls/{}/live.m3u8", room.id);

    // A plain request through the edge: held by the origin until the first part exists.
    let r = reqwest::get(&playlist).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "max-age=1");
    let text = r.text().await.unwrap();
    // Aim 4 parts (about 0.8 s) past the hint, so that all the clients are waiting before the
    // part exists.
    let first = advance(preload_hint(&text), 4);

    let playlists_before = common::metric(&origin, "hls_playlist_requests_total").await;
    let waits_before = common::metric(&origin, "hls_blocking_waits_total").await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(blocking_client(client.clone(), playlist.clone(), first)))
        .collect();
    let mut traces = Vec::with_capacity(CLIENTS);
    for t in tasks {
        traces.push(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    let origin_playlists =
        common::metric(&origin, "hls_playlist_requests_total").await - playlists_before;
    let origin_waits = common::metric(&origin, "hls_blocking_waits_total").await - waits_before;

    let mut urls = BTreeSet::new();
    let mut cache_status: BTreeMap<String, usize> = BTreeMap::new();
    for (client, trace) in traces.iter().enumerate() {
        assert_eq!(
            trace.len(),
            ROUNDS,
            "client {client} stopped early: {trace:?}"
        );
        for (url, status, listed, cache) in trace {
            assert_eq!(
                *status, 200,
                "client {client}: {url} answered {status} ({cache})"
            );
            assert!(listed, "client {client}: {url} lacks the awaited part");
            urls.insert(url.clone());
            *cache_status.entry(cache.clone()).or_default() += 1;
        }
    }
    eprintln!(
        "{} blocking requests in {elapsed:?}: {} distinct URLs, origin served {origin_playlists} \
         playlist requests ({origin_waits} held), edge cache status {cache_status:?}",
        CLIENTS * ROUNDS,
        urls.len()
    );
    // Every client got the same bytes each round, so they all asked for the same next URL.
    assert_eq!(urls.len(), ROUNDS, "{urls:?}");
    // Collapsing: a few origin requests per part instead of 1 000.
    assert!(
        origin_playlists <= 3 * ROUNDS as u64,
        "origin served {origin_playlists} playlist requests for {ROUNDS} parts"
    );
    // The first round really waited for a part that did not exist yet.
    assert!(origin_waits >= 1, "no request was held by the origin");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");

    // Parts: 200 requests for the hinted (not yet published) part collapse into a few origin
    // requests, and all get the same fragment.
    let last = traces[0].last().unwrap().0.clone();
    let text = client
        .get(&last)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (msn, index) = preload_hint(&text);
    let part_url = format!("{edge}/hls/{}/part/{msn}.{index}.m4s", room.id);
    let media_before = common::metric(&origin, "hls_media_requests_total").await;
    let gets: Vec<_> = (0..200)
        .map(|_| {
            let (client, url) = (client.clone(), part_url.clone());
            tokio::spawn(async move {
                let r = client.get(&url).send().await.unwrap();
                (r.status().as_u16(), r.bytes().await.unwrap())
            })
        })
        .collect();
    let mut bodies = BTreeSet::new();
    for g in gets {
        let (status, body) = g.await.unwrap();
        assert_eq!(status, 200, "{part_url}");
        assert_eq!(&body[4..8], b"moof");
        bodies.insert(body);
    }
    assert_eq!(bodies.len(), 1, "the part's bytes differ between answers");
    let origin_media = common::metric(&origin, "hls_media_requests_total").await - media_before;
    assert!(
        origin_media <= 3,
        "origin served {origin_media} part requests"
    );

    // A part that does not exist: 404 for everyone, the origin asked about once (cached 1 s).
    let missing = format!("{edge}/hls/{}/part/{}.0.m4s", room.id, msn + 1000);
    let media_before = common::metric(&origin, "hls_media_requests_total").await;
    let gets: Vec<_> = (0..50)
        .map(|_| {
            let (client, url) = (client.clone(), missing.clone());
            tokio::spawn(async move { client.get(&url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    for g in gets {
        assert_eq!(g.await.unwrap(), 404);
    }
    let origin_media = common::metric(&origin, "hls_media_requests_total").await - media_before;
    assert!(
        origin_media <= 3,
        "origin served {origin_media} requests for one 404"
    );

    // The API and the listen WebSocket pass through, uncached: the join answer names the edge
    // (the Host header is passed on) and the listener hears the program through it.
    let (_, _, listen_url) = common::join(&edge, &room.id).await;
    assert!(
        listen_url.starts_with(&format!("ws://127.0.0.1:{}/", nginx.port)),
        "{listen_url}"
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(listen_url).await.unwrap();
    let (frames, gaps) = common::count_frames(&mut ws, Duration::from_secs(1)).await;
    assert!(frames >= 30, "{frames} frames in 1 s through the edge");
    assert_eq!(gaps, 0);
    // /metrics is for the operator: the edge refuses it to everyone but loopback, which is us.
    assert_eq!(
        reqwest::get(format!("{edge}/metrics"))
            .await
            .unwrap()
            .status(),
        200
    );

    drop(nginx);
    speaker.abort();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_edge_logs_no_credentials() {
    let Some(bin) = nginx_or_skip() else {
        return;
    };
    let server = common::start().await;
    let nginx = Nginx::start(&bin, server.addr).await;
    let (room, host) = common::create_room(&server.url()).await;
    // A listener joins and listens through the edge; a browser speaker's token rides in the
    // query string too.
    let (_, ticket, _) = common::join(&nginx.url(), &room).await;
    let edge = nginx.url().replace("http://", "ws://");
    let listen = format!("{edge}/api/rooms/{room}/listen?ticket={ticket}&from=0");
    let ws = common::try_ws(&listen)
        .await
        .expect("listening through the edge");
    let speak = format!("{edge}/api/rooms/{room}/speak?token={host}");
    let speaker = common::try_ws(&speak)
        .await
        .expect("speaking through the edge");
    drop((ws, speaker));
    // The access log is flushed every second.
    let log = nginx.prefix.join("access.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("/speak?") && text.contains("/listen?") {
            break text;
        }
        assert!(Instant::now() < deadline, "not logged: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        !text.contains(&ticket),
        "a listen ticket in the log: {text}"
    );
    assert!(!text.contains(&host), "a stage token in the log: {text}");
    assert!(text.contains("ticket=redacted&from=0"), "{text}");
    assert!(text.contains("token=redacted"), "{text}");
    drop(nginx);
    server.shutdown().await.unwrap();
}
