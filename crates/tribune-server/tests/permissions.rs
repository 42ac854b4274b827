//! Every role × action (× target role) pair of the permission matrix, exercised over real HTTP
//! (and the speak WebSocket) against a real node: each case gets a fresh room with a host, two
//! co-hosts, two speakers and two listeners, sets up what the action needs, performs it with the
//! actor's credential, and checks the answer: 2xx when allowed, 403 when refused.
//!
//! The expected matrix is written out below by hand and also checked against
//! `tribune_core::permissions::allowed`, so the server, the core and this table agree.

mod common;

use reqwest::Method;
use serde_json::{json, Value};
use tribune_core::permissions::{allowed, ROLES};
use tribune_core::{Action, Role, StageLimits};
use tribune_server::ServerConfig;

/// Columns: host, co-host, speaker, listener. `Y` allowed (2xx), `.` refused (403).
const UNTARGETED: &[(Action, &str)] = &[
    (Action::RequestToSpeak, "...Y"),
    (Action::CancelRequest, "...Y"),
    (Action::AcceptRequest, "YY.."),
    (Action::DeclineRequest, "YY.."),
    (Action::Invite, "YY.."),
    (Action::CancelInvite, "YY.."),
    (Action::AcceptInvite, "...Y"),
    (Action::DeclineInvite, "...Y"),
    (Action::AddSpeaker, "YY.."),
    (Action::AddCoHost, "Y..."),
    (Action::MuteSelf, "YYY."),
    (Action::UnmuteSelf, "YYY."),
    (Action::Unblock, "YY.."),
    (Action::ViewModeration, "YY.."),
    (Action::EndRoom, "YY.."),
    (Action::SetRecording, "Y..."),
    (Action::React, "YYYY"),
    (Action::Speak, "YYY."),
];

/// Rows: the actor (host, co-host, speaker, listener); columns: the target's role (same order).
/// `Y` allowed (2xx); `.` refused (403); `n` refused by the matrix, and a listener is not on
/// stage, so a moderator is told 404 (nothing to act on) while anyone else gets 403 first;
/// `s` the target is the actor itself, which is the self action (`MuteSelf`/`UnmuteSelf`, 2xx).
const TARGETED: &[(Action, [&str; 4])] = &[
    (Action::Mute, ["sYYn", "..Yn", "....", "...."]),
    (Action::Unmute, ["sYYn", "..Yn", "....", "...."]),
    (Action::MoveToListener, [".YYn", "..Yn", "....", "...."]),
    (Action::PromoteCoHost, ["..Yn", "....", "....", "...."]),
    (Action::DemoteCoHost, [".Y.n", "....", "....", "...."]),
    (Action::Remove, [".YYY", "..YY", "....", "...."]),
    (Action::Block, [".YYY", "..YY", "....", "...."]),
];

/// A room with everyone the cases need: (participant or listener id, credential) each.
struct Fixture {
    base: String,
    addr: std::net::SocketAddr,
    room: String,
    host: (String, String),
    co: (String, String),
    co2: (String, String),
    sp: (String, String),
    sp2: (String, String),
    li: (String, String),
    li2: (String, String),
}

impl Fixture {
    async fn new(base: &str, addr: std::net::SocketAddr) -> Fixture {
        let (room, host_token) = common::create_room(base).await;
        let host = (common::host_id(base, &room, &host_token).await, host_token);
        let co = common::mint(base, &room, &host.1, "co_host").await;
        let co2 = common::mint(base, &room, &host.1, "co_host").await;
        let sp = common::mint(base, &room, &host.1, "speaker").await;
        let sp2 = common::mint(base, &room, &host.1, "speaker").await;
        let (lid, ticket, _) = common::join(base, &room).await;
        let (lid2, ticket2, _) = common::join(base, &room).await;
        Fixture {
            base: base.to_owned(),
            addr,
            room,
            host,
            co,
            co2,
            sp,
            sp2,
            li: (lid, ticket),
            li2: (lid2, ticket2),
        }
    }

    fn me(&self, role: Role) -> &(String, String) {
        match role {
            Role::Host => &self.host,
            Role::CoHost => &self.co,
            Role::Speaker => &self.sp,
            Role::Listener => &self.li,
        }
    }

    /// Someone holding `target`, other than the actor where there are two of a kind.
    fn target(&self, actor: Role, target: Role) -> &str {
        match (target, actor) {
            (Role::Host, _) => &self.host.0,
            (Role::CoHost, Role::CoHost) => &self.co2.0,
            (Role::CoHost, _) => &self.co.0,
            (Role::Speaker, Role::Speaker) => &self.sp2.0,
            (Role::Speaker, _) => &self.sp.0,
            (Role::Listener, _) => &self.li2.0,
        }
    }

    async fn send(&self, method: Method, path: &str, cred: &str, body: Option<Value>) -> u16 {
        let url = format!("{}/api/rooms/{}{path}", self.base, self.room);
        common::call(method, &url, Some(cred), body).await.0
    }

    /// A precondition set up by the host or a listener: must succeed.
    async fn setup(&self, path: &str, cred: &str, body: Value) {
        let (status, v) = common::post(
            &self.base,
            &format!("/api/rooms/{}{path}", self.room),
            cred,
            body,
        )
        .await;
        assert!((200..300).contains(&status), "setup {path}: {status} {v}");
    }

    async fn perform(&self, actor: Role, action: Action, target: Option<Role>) -> u16 {
        let cred = self.me(actor).1.as_str();
        let host = self.host.1.as_str();
        let t = target
            .map(|t| self.target(actor, t).to_owned())
            .unwrap_or_default();
        let on_stage_target = matches!(target, Some(Role::CoHost | Role::Speaker));
        let (li2, post, del) = (&self.li2.0, Method::POST, Method::DELETE);
        match action {
            Action::RequestToSpeak => self.send(post, "/requests", cred, Some(json!({}))).await,
            Action::CancelRequest => {
                if actor == Role::Listener {
                    self.setup("/requests", cred, json!({})).await;
                }
                self.send(del, "/requests/me", cred, None).await
            }
            Action::AcceptRequest | Action::DeclineRequest => {
                self.setup("/requests", &self.li2.1, json!({})).await;
                let verb = if action == Action::AcceptRequest {
                    "accept"
                } else {
                    "decline"
                };
                self.send(post, &format!("/requests/{li2}/{verb}"), cred, None)
                    .await
            }
            Action::Invite => {
                let body = json!({ "listener_id": li2 });
                self.send(post, "/invites", cred, Some(body)).await
            }
            Action::CancelInvite => {
                self.setup("/invites", host, json!({ "listener_id": li2 }))
                    .await;
                self.send(del, &format!("/invites/{li2}"), cred, None).await
            }
            Action::AcceptInvite | Action::DeclineInvite => {
                self.setup("/invites", host, json!({ "listener_id": self.li.0 }))
                    .await;
                let verb = if action == Action::AcceptInvite {
                    "accept"
                } else {
                    "decline"
                };
                self.send(post, &format!("/invites/me/{verb}"), cred, None)
                    .await
            }
            Action::AddSpeaker => self.send(post, "/speakers", cred, Some(json!({}))).await,
            Action::AddCoHost => {
                let body = json!({ "role": "co_host" });
                self.send(post, "/speakers", cred, Some(body)).await
            }
            Action::Mute | Action::Unmute => {
                let muted = action == Action::Mute;
                if !muted && on_stage_target {
                    let path = format!("/participants/{t}/mute");
                    self.setup(&path, host, json!({ "muted": true })).await;
                }
                let body = json!({ "muted": muted });
                self.send(post, &format!("/participants/{t}/mute"), cred, Some(body))
                    .await
            }
            Action::MuteSelf | Action::UnmuteSelf => {
                let me = &self.me(actor).0;
                let muted = action == Action::MuteSelf;
                if !muted && actor != Role::Listener {
                    let path = format!("/participants/{me}/mute");
                    self.setup(&path, cred, json!({ "muted": true })).await;
                }
                let body = json!({ "muted": muted });
                self.send(post, &format!("/participants/{me}/mute"), cred, Some(body))
                    .await
            }
            Action::MoveToListener => {
                self.send(post, &format!("/participants/{t}/demote"), cred, None)
                    .await
            }
            Action::PromoteCoHost | Action::DemoteCoHost => {
                let role = if action == Action::PromoteCoHost {
                    "co_host"
                } else {
                    "speaker"
                };
                let body = json!({ "role": role });
                self.send(post, &format!("/participants/{t}/role"), cred, Some(body))
                    .await
            }
            Action::Remove | Action::Block => {
                let body = json!({ "block": action == Action::Block });
                let path = if target == Some(Role::Listener) {
                    format!("/listeners/{t}/remove")
                } else {
                    format!("/participants/{t}/remove")
                };
                self.send(post, &path, cred, Some(body)).await
            }
            Action::Unblock => {
                let path = format!("/listeners/{li2}/remove");
                self.setup(&path, host, json!({ "block": true })).await;
                self.send(del, &format!("/blocks/{li2}"), cred, None).await
            }
            Action::ViewModeration => self.send(Method::GET, "/stage", cred, None).await,
            Action::EndRoom => self.send(post, "/end", cred, None).await,
            Action::SetRecording => {
                let body = json!({ "enabled": false });
                self.send(post, "/recording", cred, Some(body)).await
            }
            Action::React => {
                let body = json!({ "kind": "clap" });
                self.send(post, "/reactions", cred, Some(body)).await
            }
            Action::Speak => {
                let url = format!(
                    "ws://{}/api/rooms/{}/speak?token={cred}",
                    self.addr, self.room
                );
                match common::try_ws(&url).await {
                    Ok(ws) => {
                        drop(ws);
                        101
                    }
                    Err(status) => status,
                }
            }
        }
    }
}

/// One case: the actor, the action, the target role, and the expected mark from the table.
type Case = (Role, Action, Option<Role>, char);

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for &(action, row) in UNTARGETED {
        for (i, mark) in row.chars().enumerate() {
            v.push((ROLES[i], action, None, mark));
        }
    }
    for &(action, rows) in TARGETED {
        for (i, row) in rows.iter().enumerate() {
            for (j, mark) in row.chars().enumerate() {
                v.push((ROLES[i], action, Some(ROLES[j]), mark));
            }
        }
    }
    v
}

#[test]
fn the_table_covers_every_action_and_agrees_with_the_core_matrix() {
    let all = cases();
    for action in Action::ALL {
        let n = all.iter().filter(|c| c.1 == action).count();
        let want = if action.is_targeted() { 16 } else { 4 };
        assert_eq!(n, want, "{action:?}");
    }
    assert_eq!(all.len(), 18 * 4 + 7 * 16);
    for (actor, action, target, mark) in all {
        let core = allowed(actor, action, target);
        match mark {
            'Y' => assert!(core, "{actor:?} {action:?} {target:?}"),
            '.' | 'n' => assert!(!core, "{actor:?} {action:?} {target:?}"),
            's' => {
                assert!(!core);
                assert_eq!(target, Some(actor));
                let own = if action == Action::Mute {
                    Action::MuteSelf
                } else {
                    Action::UnmuteSelf
                };
                assert!(allowed(actor, own, None));
            }
            other => panic!("bad mark {other}"),
        }
        if mark == 'n' {
            assert_eq!(target, Some(Role::Listener));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_and_action_is_allowed_or_refused_over_http() {
    // Recording on, so the host's switch has a recording to act on.
    let data = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data_dir: Some(data.path().to_path_buf()),
        // Room for a third co-host, so adding or promoting one is not refused by the limit.
        stage_limits: StageLimits {
            max_cohosts: 3,
            ..StageLimits::default()
        },
        ..ServerConfig::default()
    };
    let server = common::start_with(config).await;
    let (base, addr) = (server.url(), server.addr);
    let all = cases();
    let total = all.len();
    let mut failures = Vec::new();
    let mut allowed_seen = 0;
    for chunk in all.chunks(6) {
        let mut tasks = tokio::task::JoinSet::new();
        for &(actor, action, target, mark) in chunk {
            let base = base.clone();
            tasks.spawn(async move {
                let fx = Fixture::new(&base, addr).await;
                let status = fx.perform(actor, action, target).await;
                // End every room so its mixer task stops.
                let _ = fx.send(Method::POST, "/end", &fx.host.1, None).await;
                (actor, action, target, mark, status)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (actor, action, target, mark, status) = done.unwrap();
            let ok = match mark {
                'Y' | 's' => {
                    allowed_seen += 1;
                    (200..300).contains(&status) || (action == Action::Speak && status == 101)
                }
                'n' if actor.can_moderate() => status == 404,
                _ => status == 403,
            };
            if !ok {
                failures.push(format!(
                    "{actor:?} {action:?} on {target:?}: expected {mark}, got {status}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // 35 untargeted + 21 targeted pairs allowed, and 2 self mutes through the targeted path.
    assert_eq!(allowed_seen, 35 + 21 + 2);
    server.shutdown().await.unwrap();
}
