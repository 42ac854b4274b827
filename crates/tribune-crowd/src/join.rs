//! The join step of one virtual listener: `POST /api/rooms/{id}/join` until admitted, following
//! the admission protocol (ARCHITECTURE §3, §5): `200` admits with a ticket; `202` queues with a
//! `queue_ticket` and `Retry-After` (asked again with the queue ticket after that wait); `429` and
//! `503` say come back later (`Retry-After`, then capped full-jitter backoff); other statuses are
//! final. Deciding what an answer means and how long to wait are plain functions; only
//! [`join`] does I/O.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

/// Most requests one join may make (retries and queue polls together).
pub const MAX_ATTEMPTS: u32 = 64;
/// Most retries after `429`/`503` or a failed request (queue polls do not count).
pub const MAX_RETRIES: u32 = 8;
/// First backoff step; doubles per retry.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Largest backoff step, and largest `Retry-After` honoured (a longer one is clamped).
const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// What one join request was answered.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinAnswer {
    /// Admitted: where to listen.
    Admitted {
        /// The listen WebSocket URL (absolute, or a path on the server).
        listen_url: String,
        /// Listen URLs on other nodes, to move to if the first goes away (a cluster).
        alternates: Vec<String>,
    },
    /// In the waiting room: ask again after `retry_after` with this ticket.
    Queued {
        /// The signed queue ticket to present next time.
        queue_ticket: String,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The node is under attack: solve this proof of work and join with it.
    Challenge {
        /// The signed challenge.
        challenge: String,
        /// Leading zero bits asked for.
        bits: u8,
    },
    /// Too many joins now (`429`, `503`) or no answer: try again later.
    Busy {
        /// Why (status code or transport error), for the report.
        reason: String,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// A final refusal (unknown room, ended room, malformed answer…).
    Refused {
        /// Why, for the report.
        reason: String,
    },
}

/// Alternates kept from a join's answer.
const MAX_ALTERNATES: usize = 8;

/// A `Retry-After` header in delay-seconds form (the HTTP-date form is not used by Tribune).
pub fn parse_retry_after(v: Option<&str>) -> Option<Duration> {
    let secs: f64 = v?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs).min(BACKOFF_CAP))
}

/// What an answer means, from its status, `Retry-After` header and JSON body.
pub fn classify(status: u16, retry_after: Option<&str>, body: &Value) -> JoinAnswer {
    let retry_after = parse_retry_after(retry_after);
    match status {
        200 => match body["listen_url"].as_str() {
            Some(u) if !u.is_empty() => JoinAnswer::Admitted {
                listen_url: u.to_owned(),
                alternates: body["alternates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .take(MAX_ALTERNATES)
                    .map(str::to_owned)
                    .collect(),
            },
            _ => JoinAnswer::Refused {
                reason: "200 without listen_url".into(),
            },
        },
        202 => match body["queue_ticket"].as_str() {
            Some(t) if !t.is_empty() => JoinAnswer::Queued {
                queue_ticket: t.to_owned(),
                retry_after,
            },
            _ => JoinAnswer::Refused {
                reason: "202 without queue_ticket".into(),
            },
        },
        401 if body["error"] == "proof_of_work_required" => {
            match (
                body["challenge"].as_str(),
                body["bits"].as_u64().and_then(|b| u8::try_from(b).ok()),
            ) {
                (Some(c), Some(bits)) if bits <= tribune_core::admission::MAX_BITS => {
                    JoinAnswer::Challenge {
                        challenge: c.to_owned(),
                        bits,
                    }
                }
                _ => JoinAnswer::Refused {
                    reason: "401 with a bad challenge".into(),
                },
            }
        }
        429 | 503 => JoinAnswer::Busy {
            reason: status.to_string(),
            retry_after,
        },
        _ => JoinAnswer::Refused {
            reason: match body["error"].as_str() {
                Some(code) => format!("{status} {code}"),
                None => status.to_string(),
            },
        },
    }
}

/// How long to wait before retry number `retry` (0-based): the server's `Retry-After` if given,
/// plus full jitter over `[0, min(cap, base · 2^retry))`, so a crowd refused together does not
/// come back together. `unit` is a uniform number in [0, 1).
pub fn backoff(retry: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << retry.min(16))
        .min(BACKOFF_CAP);
    retry_after.unwrap_or(Duration::ZERO) + ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// A small deterministic generator (splitmix64) for jitter: no shared state between listeners.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// A generator seeded for one listener.
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// A uniform number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How a join ended.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinOutcome {
    /// The listen URLs (the node to use, then its alternates), or why there are none.
    pub result: Result<Vec<String>, String>,
    /// Retries after `429`/`503`/transport errors.
    pub retries: u32,
    /// Times the join waited in the queue (`202`).
    pub queued: u32,
    /// Proofs of work solved (`401 proof_of_work_required`).
    pub solved: u32,
}

/// Joins `room`, retrying and waiting in the queue as the server says, until admitted, refused,
/// out of attempts, or `deadline`. `on_answer` sees every request's answer (None: no answer)
/// and how long it took.
pub async fn join(
    http: &reqwest::Client,
    url: &str,
    deadline: Instant,
    jitter: &mut Jitter,
    on_answer: &mut (dyn FnMut(Option<&JoinAnswer>, Duration) + Send),
) -> JoinOutcome {
    let mut out = JoinOutcome {
        result: Err("no attempt".into()),
        retries: 0,
        queued: 0,
        solved: 0,
    };
    let mut queue_ticket: Option<String> = None;
    let mut proof: Option<Value> = None;
    for _ in 0..MAX_ATTEMPTS {
        let body = match (&queue_ticket, proof.take()) {
            (Some(t), _) => json!({ "queue_ticket": t }),
            (None, Some(p)) => json!({ "pow": p }),
            (None, None) => json!({}),
        };
        let send = async {
            let resp = http.post(url).json(&body).send().await?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            Ok::<_, reqwest::Error>(classify(status, retry_after.as_deref(), &v))
        };
        let asked = Instant::now();
        let answer = match tokio::time::timeout_at(deadline, send).await {
            Err(_) => {
                on_answer(None, asked.elapsed());
                out.result = Err("join timed out".into());
                return out;
            }
            Ok(Ok(a)) => {
                on_answer(Some(&a), asked.elapsed());
                a
            }
            Ok(Err(e)) => {
                on_answer(None, asked.elapsed());
                JoinAnswer::Busy {
                    reason: transport_reason(&e),
                    retry_after: None,
                }
            }
        };
        let wait = match answer {
            JoinAnswer::Admitted {
                listen_url,
                mut alternates,
            } => {
                alternates.insert(0, listen_url);
                out.result = Ok(alternates);
                return out;
            }
            JoinAnswer::Refused { reason } => {
                out.result = Err(reason);
                return out;
            }
            JoinAnswer::Challenge { challenge, bits } => {
                out.solved += 1;
                // Solved off the runtime's threads: listeners keep reading meanwhile.
                let c = challenge.clone();
                let nonce = tokio::task::spawn_blocking(move || {
                    tribune_core::admission::solve(&c, bits, 1 << 28)
                })
                .await
                .ok()
                .flatten();
                match nonce {
                    Some(n) => proof = Some(json!({ "challenge": challenge, "nonce": n })),
                    None => {
                        out.result = Err("proof of work not found".into());
                        return out;
                    }
                }
                Duration::ZERO
            }
            JoinAnswer::Queued {
                queue_ticket: t,
                retry_after,
            } => {
                out.queued += 1;
                out.result = Err("still queued".into());
                queue_ticket = Some(t);
                retry_after.unwrap_or(Duration::from_secs(1))
            }
            JoinAnswer::Busy {
                reason,
                retry_after,
            } => {
                if out.retries >= MAX_RETRIES {
                    out.result = Err(reason);
                    return out;
                }
                let w = backoff(out.retries, retry_after, jitter.unit());
                out.retries += 1;
                out.result = Err(reason);
                w
            }
        };
        if Instant::now() + wait >= deadline {
            out.result = Err(format!(
                "{} (no time left to retry)",
                out.result.as_ref().err().map_or("queued", |s| s.as_str())
            ));
            return out;
        }
        tokio::time::sleep(wait).await;
    }
    out.result = Err("too many join attempts".into());
    out
}

/// A short, stable reason for a failed request (error messages carry URLs and ports).
fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "request timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        "request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        let ok = json!({"ticket": "t", "listen_url": "ws://h/api/rooms/r/listen?ticket=t"});
        assert_eq!(
            classify(200, None, &ok),
            JoinAnswer::Admitted {
                listen_url: "ws://h/api/rooms/r/listen?ticket=t".into(),
                alternates: Vec::new(),
            }
        );
        let cluster = json!({"listen_url": "ws://a/l", "alternates": ["ws://b/l", 7, "ws://c/l"]});
        assert_eq!(
            classify(200, None, &cluster),
            JoinAnswer::Admitted {
                listen_url: "ws://a/l".into(),
                alternates: vec!["ws://b/l".into(), "ws://c/l".into()],
            }
        );
        assert_eq!(
            classify(202, Some("3"), &json!({"queue_ticket": "q", "position": 7})),
            JoinAnswer::Queued {
                queue_ticket: "q".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            classify(503, Some("0.5"), &Value::Null),
            JoinAnswer::Busy {
                reason: "503".into(),
                retry_after: Some(Duration::from_millis(500))
            }
        );
        assert_eq!(
            classify(404, None, &json!({"error": "room_not_found"})),
            JoinAnswer::Refused {
                reason: "404 room_not_found".into()
            }
        );
        assert!(matches!(
            classify(200, None, &json!({})),
            JoinAnswer::Refused { .. }
        ));
    }

    #[test]
    fn retry_after_is_parsed_and_clamped() {
        assert_eq!(parse_retry_after(Some(" 2 ")), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(Some("3600")), Some(BACKOFF_CAP));
        assert_eq!(parse_retry_after(Some("-1")), None);
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(parse_retry_after(None), None);
    }

    #[test]
    fn backoff_is_capped_full_jitter_after_retry_after() {
        // unit 0.5 of a 200 ms ceiling at retry 0, 800 ms at retry 2, capped at 10 s.
        assert_eq!(backoff(0, None, 0.5), Duration::from_millis(100));
        assert_eq!(backoff(2, None, 0.5), Duration::from_millis(400));
        assert_eq!(backoff(30, None, 0.5), Duration::from_secs(5));
        assert_eq!(backoff(0, None, 0.0), Duration::ZERO);
        // Retry-After is a floor.
        assert_eq!(
            backoff(1, Some(Duration::from_secs(2)), 0.25),
            Duration::from_millis(2100)
        );
    }

    #[test]
    fn jitter_is_uniform_enough_and_per_seed() {
        let mut j = Jitter::new(1);
        let xs: Vec<f64> = (0..10_000).map(|_| j.unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        assert_ne!(Jitter::new(1).unit(), Jitter::new(2).unit());
    }

    /// A one-shot HTTP server answering each connection with the next canned response; returns
    /// its URL and the request bodies it saw.
    async fn fake_server(
        answers: Vec<&'static str>,
    ) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/rooms/r/join", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut bodies = Vec::new();
            for answer in answers {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                // Read the head, then as much body as Content-Length says.
                let body = loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        if text.len() >= end + 4 + len {
                            break text[end + 4..end + 4 + len].to_owned();
                        }
                    }
                    assert!(n > 0, "request cut short");
                };
                bodies.push(body);
                sock.write_all(answer.as_bytes()).await.unwrap();
                let _ = sock.shutdown().await;
            }
            bodies
        });
        (url, task)
    }

    #[tokio::test]
    async fn join_honours_retry_after_and_the_queue() {
        let (url, server) = fake_server(vec![
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0.3\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 202 Accepted\r\nRetry-After: 0.2\r\nContent-Type: application/json\r\nContent-Length: 36\r\nConnection: close\r\n\r\n{\"queue_ticket\":\"q1\",\"position\":10}\n",
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 26\r\nConnection: close\r\n\r\n{\"listen_url\":\"/listen?t\"}",
        ])
        .await;
        let http = reqwest::Client::new();
        let start = Instant::now();
        let mut answers = Vec::new();
        let out = join(
            &http,
            &url,
            start + Duration::from_secs(10),
            &mut Jitter::new(7),
            &mut |a, took| answers.push((a.map(std::mem::discriminant), took)),
        )
        .await;
        // Three requests, three answers, each within the test's bounds.
        assert_eq!(answers.len(), 3);
        assert!(answers
            .iter()
            .all(|(a, t)| a.is_some() && *t < Duration::from_secs(1)));
        let took = start.elapsed();
        assert_eq!(out.result, Ok(vec!["/listen?t".to_owned()]));
        assert_eq!((out.retries, out.queued), (1, 1));
        // 0.3 s after the 503 (plus at most 200 ms of jitter), then 0.2 s in the queue.
        assert!(took >= Duration::from_millis(500), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
        let bodies = server.await.unwrap();
        assert_eq!(bodies[0], "{}");
        assert_eq!(bodies[1], "{}");
        assert_eq!(bodies[2], r#"{"queue_ticket":"q1"}"#);
    }

    #[tokio::test]
    async fn join_gives_up_on_a_final_refusal_and_when_out_of_time() {
        let (url, _server) = fake_server(vec![
            "HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nContent-Length: 24\r\nConnection: close\r\n\r\n{\"error\":\"room_ended\"}\n\n",
        ])
        .await;
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let out = join(&http, &url, deadline, &mut Jitter::new(1), &mut |_, _| {}).await;
        assert_eq!(out.result, Err("410 room_ended".to_owned()));
        // A Retry-After past the deadline ends the join at once instead of sleeping past it.
        let (url, _server) = fake_server(vec![
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ])
        .await;
        let start = Instant::now();
        let out = join(
            &http,
            &url,
            start + Duration::from_secs(1),
            &mut Jitter::new(1),
            &mut |_, _| {},
        )
        .await;
        assert!(start.elapsed() < Duration::from_millis(500));
        assert_eq!(out.result, Err("429 (no time left to retry)".to_owned()));
        assert_eq!(out.retries, 1);
    }
}
