//! Running the aiortc scripts in tests/whip (a WebRTC stack not written here) from tests.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The interpreter to run tests/whip/publish.py with, if it has aiortc; panics under CI.
pub fn python() -> Option<String> {
    let py = std::env::var("TRIBUNE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let ok = Command::new(&py)
        .args(["-c", "import aiortc, av, numpy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{py} cannot import aiortc/av/numpy, and CI must run the WHIP tests");
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: {py} cannot import aiortc (pip install -r tests/whip/requirements.txt)\n"
    );
    None
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/whip")
        .join(name)
}

/// What the publisher printed: one JSON object per line.
pub struct Published {
    /// Whether the script exited 0.
    pub ok: bool,
    /// Its JSON lines.
    pub lines: Vec<Value>,
    /// Its stderr.
    pub stderr: String,
}

impl Published {
    /// The final `done` line.
    pub fn done(&self) -> &Value {
        self.lines
            .iter()
            .find(|l| l["event"] == "done")
            .unwrap_or_else(|| panic!("no done line; stderr:\n{}", self.stderr))
    }
}

/// Runs publish.py (a WHIP publisher) to completion on a blocking thread.
pub fn publish(
    py: String,
    url: String,
    token: String,
    args: Vec<String>,
) -> tokio::task::JoinHandle<Published> {
    run(py, "publish.py", url, token, args)
}

fn run(
    py: String,
    name: &'static str,
    url: String,
    token: String,
    args: Vec<String>,
) -> tokio::task::JoinHandle<Published> {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(py)
            .arg(script(name))
            .arg(&url)
            .arg(&token)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("run {name}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        Published {
            ok: out.status.success(),
            lines: stdout
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
}

/// Runs play.py (a WHEP player) to completion on a blocking thread.
pub fn play(
    py: String,
    url: String,
    token: String,
    args: Vec<String>,
) -> tokio::task::JoinHandle<Published> {
    run(py, "play.py", url, token, args)
}
