//! Joining a room as the server's admission control asks: wait in the queue with the queue
//! ticket (`202`), solve a proof of work under attack (`401 proof_of_work_required`), and back
//! off on `429`/`503` (honouring `Retry-After`, else capped full-jitter exponential backoff).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::{Api, ClientError, JoinTicket};

/// Retries of a join request that got no answer at all.
const MAX_TRANSPORT_RETRIES: u32 = 8;

/// How long and how hard a join tries.
#[derive(Debug, Clone, Copy)]
pub struct JoinPolicy {
    /// Give up when not admitted within this long.
    pub max_wait: Duration,
    /// Most hashes tried on one proof-of-work challenge.
    pub max_pow_tries: u64,
    /// Longest single wait between attempts.
    pub max_backoff: Duration,
}

impl Default for JoinPolicy {
    fn default() -> Self {
        JoinPolicy {
            max_wait: Duration::from_secs(15 * 60),
            max_pow_tries: 1 << 28,
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// What a join is doing while it is not admitted yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinStep {
    /// In the waiting room.
    Queued {
        /// Place in line, 1 = next.
        position: u64,
        /// The server's estimate, seconds.
        eta_s: u64,
    },
    /// Solving a proof-of-work challenge.
    Solving {
        /// Leading zero bits asked for.
        bits: u8,
    },
    /// Told to come back later (`429`/`503`).
    Backoff {
        /// The status.
        status: u16,
        /// How long it waits.
        wait: Duration,
    },
}

/// Full jitter: a random wait in `[0, min(cap, base × 2^attempt)]`.
pub fn full_jitter(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let ceiling = base.saturating_mul(1 << attempt.min(20)).min(cap);
    ceiling.mul_f64(rand::random::<f64>())
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let s: u64 = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(s))
}

impl Api {
    /// Joins `room` as a listener, following the admission protocol until admitted (or the
    /// policy's time runs out); `progress` hears each step.
    pub async fn join_with(
        &self,
        room: &str,
        policy: &JoinPolicy,
        mut progress: impl FnMut(JoinStep),
    ) -> Result<JoinTicket, ClientError> {
        let deadline = Instant::now() + policy.max_wait;
        let path = format!("/api/rooms/{room}/join");
        let mut body = json!({});
        let mut attempt = 0u32;
        loop {
            let resp = match self.post_raw(&path, &body).await {
                Ok(r) => r,
                // No answer (reset, refused, timed out): like a 503, try again after a while.
                Err(e) if attempt < MAX_TRANSPORT_RETRIES => {
                    attempt += 1;
                    let wait = full_jitter(attempt, Duration::from_millis(250), policy.max_backoff);
                    tracing::debug!("join request failed ({e}); again in {wait:?}");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let status = resp.status().as_u16();
            let told = retry_after(&resp);
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            let wait = match status {
                200 => {
                    return serde_json::from_value(v)
                        .map_err(|e| ClientError::Protocol(e.to_string()))
                }
                202 => {
                    let q = v["queue_ticket"].as_str().ok_or_else(|| {
                        ClientError::Protocol("202 without a queue ticket".into())
                    })?;
                    body = json!({ "queue_ticket": q });
                    progress(JoinStep::Queued {
                        position: v["position"].as_u64().unwrap_or(0),
                        eta_s: v["eta_s"].as_u64().unwrap_or(0),
                    });
                    told.unwrap_or(Duration::from_secs(1))
                }
                401 if v["error"] == "proof_of_work_required" => {
                    let challenge = v["challenge"]
                        .as_str()
                        .ok_or_else(|| ClientError::Protocol("challenge missing".into()))?
                        .to_owned();
                    let bits = v["bits"]
                        .as_u64()
                        .and_then(|b| u8::try_from(b).ok())
                        .filter(|&b| b <= tribune_core::admission::MAX_BITS)
                        .ok_or_else(|| ClientError::Protocol("bad difficulty".into()))?;
                    progress(JoinStep::Solving { bits });
                    let tries = policy.max_pow_tries;
                    let c = challenge.clone();
                    let nonce = tokio::task::spawn_blocking(move || {
                        tribune_core::admission::solve(&c, bits, tries)
                    })
                    .await
                    .map_err(|e| ClientError::Protocol(e.to_string()))?
                    .ok_or_else(|| ClientError::Protocol("proof of work not found".into()))?;
                    body = json!({ "pow": { "challenge": challenge, "nonce": nonce } });
                    Duration::ZERO
                }
                429 | 503 => {
                    attempt += 1;
                    let wait = told.unwrap_or_else(|| {
                        full_jitter(attempt, Duration::from_millis(250), policy.max_backoff)
                    });
                    progress(JoinStep::Backoff { status, wait });
                    wait
                }
                _ => {
                    return Err(ClientError::Status {
                        status,
                        message: v["message"].as_str().unwrap_or("(no message)").to_owned(),
                    })
                }
            };
            let wait = wait.min(policy.max_backoff.max(Duration::from_secs(1)));
            if Instant::now() + wait > deadline {
                return Err(ClientError::Protocol(format!(
                    "not admitted within {} s",
                    policy.max_wait.as_secs()
                )));
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_under_its_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        for attempt in 0..40 {
            let ceiling = base.saturating_mul(1 << attempt.min(20)).min(cap);
            for _ in 0..50 {
                assert!(full_jitter(attempt, base, cap) <= ceiling);
            }
        }
        // Spread, not a constant: 200 draws at the cap differ.
        let draws: std::collections::HashSet<u128> = (0..200)
            .map(|_| full_jitter(10, base, cap).as_micros())
            .collect();
        assert!(draws.len() > 150);
    }
}
