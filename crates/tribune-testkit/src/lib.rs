//! Real servers Tribune's tests run against, started and stopped by the test itself: a
//! `redis-server` on a Unix socket in a directory of its own ([`Redis`]), and a Redis Cluster
//! of several servers on loopback ports ([`RedisCluster`]). Debian's `redis-server` package
//! (installed by `scripts/test-all.sh`) provides both programs used here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer after it was started.
const START: Duration = Duration::from_secs(20);

/// A `redis-server` of the test's own on a Unix socket, without persistence; killed on drop.
pub struct Redis {
    child: Child,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one and waits until its socket is there.
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("redis.sock");
        let child = spawn_unix(&socket, dir.path());
        let redis = Redis { child, socket, dir };
        redis.wait();
        redis
    }

    /// `redis+unix:///…/redis.sock`.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// Its process id (to stop it with a signal).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its directory (its files, and the test's own).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills it (SIGKILL): its data is gone, as after a crash without persistence.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts it again, empty, on the same socket.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn_unix(&self.socket, self.dir.path());
        self.wait();
    }

    /// Runs `redis-cli` against it: its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let socket = self.socket.to_string_lossy().into_owned();
        cli(&["-s", &socket], args)
    }

    fn wait(&self) {
        let deadline = Instant::now() + START;
        while self.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of several servers (`cluster-enabled`, the slots split evenly, each in a
/// directory of its own): different rooms' keys land on different servers, so a client that did
/// not follow the slots, or sent one server a batch of keys it does not own, would fail.
pub struct RedisCluster {
    servers: Vec<Child>,
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts `shards` servers, gives each its share of the slots, introduces them, and waits
    /// until every one says the cluster is up.
    pub fn start(shards: usize) -> RedisCluster {
        assert!(shards >= 1);
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let mut cluster = RedisCluster {
            servers: Vec::new(),
            ports: Vec::new(),
            _dir: dir,
        };
        for i in 0..shards {
            let own = root.join(format!("shard{i}"));
            std::fs::create_dir_all(&own).expect("shard dir");
            let port = free_port();
            let p = port.to_string();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &p,
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                ])
                .args(["--cluster-config-file", "nodes.conf", "--save", ""])
                .args(["--appendonly", "no"])
                .current_dir(&own)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is needed (scripts/test-all.sh installs it)");
            cluster.servers.push(child);
            cluster.ports.push(port);
            let deadline = Instant::now() + START;
            while cluster.cli(i, &["PING"]) != "PONG" {
                assert!(Instant::now() < deadline, "redis on {port} did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
            let (from, to) = (16384 * i / shards, 16384 * (i + 1) / shards - 1);
            let (from, to) = (from.to_string(), to.to_string());
            let added = cluster.cli(i, &["CLUSTER", "ADDSLOTSRANGE", &from, &to]);
            assert_eq!(added, "OK", "slots {from}-{to} on {port}");
        }
        for i in 1..shards {
            let port = cluster.ports[i].to_string();
            assert_eq!(
                cluster.cli(0, &["CLUSTER", "MEET", "127.0.0.1", &port]),
                "OK"
            );
        }
        let deadline = Instant::now() + START;
        while !(0..shards).all(|i| {
            cluster
                .cli(i, &["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
        }) {
            assert!(Instant::now() < deadline, "the cluster never came up");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,…` (every server a seed).
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// Runs `redis-cli` against server `i` (`-c`: following the cluster's redirections).
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        cli(&["-c", "-p", &self.ports[i].to_string()], args)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `redis-server` on `socket` only (no TCP port), nothing saved, in `dir`.
fn spawn_unix(socket: &Path, dir: &Path) -> Child {
    Command::new("redis-server")
        .args(["--port", "0", "--unixsocket"])
        .arg(socket)
        .args([
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is needed (scripts/test-all.sh installs it)")
}

/// `redis-cli` with `to` (where) then `args`: its output, trimmed (empty if it could not run).
fn cli(to: &[&str], args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(to)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
