//! The moderation endpoints (routes in `moderation::routes`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::Arc;
use tribune_core::stage::{clean_name, participant_for, ListenerStatus, Muter};
use tribune_core::{Action, ListenerId, ParticipantId, Role, StageError};

use super::{authenticate, authorize, ensure_open, require, role_name, target_role, Who};
use crate::error::ApiError;
use crate::http::extract::{bearer, optional_json};
use crate::net::limits::{JoinLimiter, Peer};
use crate::node::state::AppState;
use crate::room::LiveRoom;

fn parse_id(text: &str, what: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::BadRequest(format!("{what} must be a decimal number")))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

/// An id sent as a number or a decimal string.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdText {
    Number(u64),
    Text(String),
}

impl IdText {
    fn get(&self, what: &str) -> Result<u64, ApiError> {
        match self {
            IdText::Number(n) => Ok(*n),
            IdText::Text(t) => parse_id(t, what),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NameBody {
    #[serde(default)]
    name: Option<String>,
}

impl NameBody {
    fn name(&self) -> Result<Option<String>, ApiError> {
        Ok(self.name.as_deref().map(clean_name).transpose()?)
    }
}

type Body = Result<Bytes, BytesRejection>;
type Answer = Result<(StatusCode, Json<Value>), ApiError>;

fn ok(v: Value) -> Answer {
    Ok((StatusCode::OK, Json(v)))
}

/// `POST /api/rooms/{id}/requests` `{name?}` (listen ticket): asks to speak; `202`. An
/// address may ask a few times a minute; one a moderator declined or blocked may not ask again.
pub async fn request_to_speak(
    State(app): State<AppState>,
    Extension(limiter): Extension<Arc<JoinLimiter>>,
    Peer(peer): Peer,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let body = body?;
    let room = app.room(&id)?;
    let actor = authorize(&app, &room, &headers, Action::RequestToSpeak)?;
    let name = optional_json::<NameBody>(&body)?.name()?;
    let listener = actor.listener()?;
    let client = peer.map_or(IpAddr::from([127, 0, 0, 1]), |p| {
        limiter.client_ip(p.ip(), &headers)
    });
    if let Err(e) = room.hands.lock().check(client) {
        app.metrics().hand_raises_limited.inc();
        return Err(e);
    }
    let position = room.change_lazily(|r| r.request(listener, name))?;
    room.hands.lock().asked(listener, client);
    room.save().await?;
    let v = json!({"state": "pending", "position": position});
    Ok((StatusCode::ACCEPTED, Json(v)))
}

/// `GET /api/rooms/{id}/requests/me` (listen ticket): where this listener stands; once on
/// stage, with a fresh stage token.
pub async fn my_status(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let room = app.room(&id)?;
    let listener = authenticate(&app, &room, bearer(&headers))?.listener()?;
    ensure_open(&room)?;
    // Requests to speak are kept at the origin (an edge's mirror holds the lasting roster).
    room.ensure_origin()?;
    let status = room.roster.lock().status(listener);
    ok(match status {
        ListenerStatus::None => json!({"state": "none"}),
        ListenerStatus::Pending { position } => json!({"state": "pending", "position": position}),
        ListenerStatus::Invited => json!({"state": "invited"}),
        ListenerStatus::Declined => json!({"state": "declined"}),
        ListenerStatus::Blocked => return Err(ApiError::Forbidden("blocked".into())),
        ListenerStatus::OnStage { participant, role } => {
            on_stage_json(&app, &room, participant, role)
        }
    })
}

fn on_stage_json(app: &AppState, room: &LiveRoom, who: ParticipantId, role: Role) -> Value {
    json!({
        "state": "accepted",
        "participant_id": who.0.to_string(),
        "role": role_name(role),
        "token": app.stage_token(&room.id, role, who),
    })
}

/// `DELETE /api/rooms/{id}/requests/me` (listen ticket): withdraws the request.
pub async fn cancel_request(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let room = app.room(&id)?;
    let listener = authorize(&app, &room, &headers, Action::CancelRequest)?.listener()?;
    room.change_lazily(|r| r.cancel_request(listener))?;
    room.save().await?;
    ok(json!({"state": "none"}))
}

async fn answer_request(
    app: AppState,
    id: String,
    lid: String,
    headers: HeaderMap,
    accept: bool,
) -> Answer {
    let room = app.room(&id)?;
    let action = if accept {
        Action::AcceptRequest
    } else {
        Action::DeclineRequest
    };
    authorize(&app, &room, &headers, action)?;
    let listener = ListenerId(parse_id(&lid, "listener id")?);
    app.metrics().moderation_actions.inc();
    if !accept {
        room.change(|r| r.decline_request(listener))?;
        room.save().await?;
        // Its address may not ask again either (a new join is a new listener id).
        room.hands.lock().refuse(listener);
        return ok(json!({"listener_id": lid, "state": "declined"}));
    }
    let who = room.change(|r| r.accept_request(listener))?;
    room.save().await?;
    ok(json!({
        "listener_id": lid,
        "state": "accepted",
        "participant_id": who.0.to_string(),
        "role": "speaker",
    }))
}

/// `POST /api/rooms/{id}/requests/{listener_id}/accept` (moderator): the listener comes on
/// stage as a speaker and fetches its token from `GET …/requests/me`.
pub async fn accept_request(
    State(app): State<AppState>,
    Path((id, lid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    answer_request(app, id, lid, headers, true).await
}

/// `POST /api/rooms/{id}/requests/{listener_id}/decline` (moderator).
pub async fn decline_request(
    State(app): State<AppState>,
    Path((id, lid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    answer_request(app, id, lid, headers, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    listener_id: IdText,
}

/// `POST /api/rooms/{id}/invites` `{listener_id}` (moderator): invites a listener on stage.
pub async fn invite(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let body = body?;
    let room = app.room(&id)?;
    authorize(&app, &room, &headers, Action::Invite)?;
    let req: InviteBody = parse_json(&body)?;
    let listener = ListenerId(req.listener_id.get("listener_id")?);
    room.change(|r| r.invite(listener))?;
    room.save().await?;
    app.metrics().moderation_actions.inc();
    let v = json!({"listener_id": listener.0.to_string(), "state": "invited"});
    Ok((StatusCode::CREATED, Json(v)))
}

/// `DELETE /api/rooms/{id}/invites/{listener_id}` (moderator): withdraws an invitation.
pub async fn cancel_invite(
    State(app): State<AppState>,
    Path((id, lid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let room = app.room(&id)?;
    authorize(&app, &room, &headers, Action::CancelInvite)?;
    let listener = ListenerId(parse_id(&lid, "listener id")?);
    room.change(|r| r.cancel_invite(listener))?;
    room.save().await?;
    app.metrics().moderation_actions.inc();
    ok(json!({"listener_id": lid, "state": "none"}))
}

/// `POST /api/rooms/{id}/invites/me/accept` `{name?}` (listen ticket): comes on stage;
/// answers the stage token.
pub async fn accept_invite(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let body = body?;
    let room = app.room(&id)?;
    let listener = authorize(&app, &room, &headers, Action::AcceptInvite)?.listener()?;
    let name = optional_json::<NameBody>(&body)?.name()?;
    let who = room.change(|r| r.accept_invite(listener, name))?;
    room.save().await?;
    ok(on_stage_json(&app, &room, who, Role::Speaker))
}

/// `POST /api/rooms/{id}/invites/me/decline` (listen ticket).
pub async fn decline_invite(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let room = app.room(&id)?;
    let listener = authorize(&app, &room, &headers, Action::DeclineInvite)?.listener()?;
    room.change(|r| r.decline_invite(listener))?;
    room.save().await?;
    ok(json!({"state": "none"}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MuteBody {
    muted: bool,
}

/// `POST /api/rooms/{id}/participants/{pid}/mute` `{muted}`: a moderator mutes or unmutes
/// someone below it, or anyone on stage mutes or unmutes themself (with its own stage token).
pub async fn mute(
    State(app): State<AppState>,
    Path((id, pid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let body = body?;
    let room = app.room(&id)?;
    let target = ParticipantId(parse_id(&pid, "participant id")?);
    let MuteBody { muted } = parse_json(&body)?;
    let oneself = authenticate(&app, &room, bearer(&headers))?.who == Who::Participant(target);
    let by = if oneself {
        let action = if muted {
            Action::MuteSelf
        } else {
            Action::UnmuteSelf
        };
        authorize(&app, &room, &headers, action)?;
        Muter::Participant
    } else {
        let action = if muted { Action::Mute } else { Action::Unmute };
        let actor = authorize(&app, &room, &headers, action)?;
        target_role(&room, &actor, action, target)?;
        app.metrics().moderation_actions.inc();
        Muter::Moderator
    };
    room.change(|r| r.set_muted(target, by, muted))?;
    room.save().await?;
    let member = room.roster.lock().member(target).cloned();
    let member = member.ok_or(StageError::NotOnStage)?;
    ok(json!({"participant": tribune_core::event::Participant::of(&member, None)}))
}

/// `POST /api/rooms/{id}/participants/{pid}/demote` (moderator): moves someone from the stage
/// to the audience; their publishing connections close (4001) and their stage token is refused.
pub async fn demote(
    State(app): State<AppState>,
    Path((id, pid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let room = app.room(&id)?;
    let target = ParticipantId(parse_id(&pid, "participant id")?);
    let actor = authorize(&app, &room, &headers, Action::MoveToListener)?;
    target_role(&room, &actor, Action::MoveToListener, target)?;
    room.change(|r| r.leave_stage(target))?;
    room.save().await?;
    let closed = room.remove_participant(target, "moved to the audience by a moderator");
    app.metrics().moderation_actions.inc();
    ok(json!({"participant_id": pid, "state": "listener", "closed": closed}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: Role,
}

/// `POST /api/rooms/{id}/participants/{pid}/role` `{role: "co_host"|"speaker"}` (host):
/// promotes a speaker or demotes a co-host; their token keeps working with the new role.
pub async fn set_role(
    State(app): State<AppState>,
    Path((id, pid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let body = body?;
    let room = app.room(&id)?;
    let target = ParticipantId(parse_id(&pid, "participant id")?);
    let RoleBody { role } = parse_json(&body)?;
    let action = match role {
        Role::CoHost => Action::PromoteCoHost,
        Role::Speaker => Action::DemoteCoHost,
        Role::Host | Role::Listener => {
            return Err(ApiError::BadRequest(
                "role must be co_host or speaker (to move someone to the audience, use demote)"
                    .into(),
            ))
        }
    };
    let actor = authorize(&app, &room, &headers, action)?;
    target_role(&room, &actor, action, target)?;
    room.change(|r| r.set_role(target, role))?;
    room.save().await?;
    app.metrics().moderation_actions.inc();
    ok(json!({"participant_id": pid, "role": role_name(role)}))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RemoveBody {
    #[serde(default)]
    block: bool,
}

fn removal_reason(block: bool) -> &'static str {
    if block {
        "blocked by a moderator"
    } else {
        "removed by a moderator"
    }
}

/// `POST /api/rooms/{id}/participants/{pid}/remove` `{block?}` (moderator): takes someone off
/// stage and out of the room (their publishing connections and, if they came from the
/// audience, their listen connection close with 4001); with `block`, their stage token and
/// listen ticket are refused until unblocked.
pub async fn remove_participant(
    State(app): State<AppState>,
    Path((id, pid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let body = body?;
    let room = app.room(&id)?;
    let target = ParticipantId(parse_id(&pid, "participant id")?);
    let RemoveBody { block } = optional_json(&body)?;
    let action = if block { Action::Block } else { Action::Remove };
    let actor = authorize(&app, &room, &headers, action)?;
    target_role(&room, &actor, action, target)?;
    let came_from = room.roster.lock().member(target).and_then(|m| m.listener);
    room.change(|r| {
        if block {
            return r.block_participant(target).map(|_| ());
        }
        let m = r.leave_stage(target)?;
        if let Some(l) = m.listener {
            r.kick_listener(l);
        }
        Ok(())
    })?;
    room.save().await?;
    if let (true, Some(l)) = (block, came_from) {
        room.hands.lock().refuse(l);
    }
    let closed = room.remove_participant(target, removal_reason(block));
    app.metrics().moderation_actions.inc();
    ok(json!({"participant_id": pid, "blocked": block, "closed": closed}))
}

/// `POST /api/rooms/{id}/listeners/{listener_id}/remove` `{block?}` (moderator): closes a
/// listener's connection (4001), taking it off stage too if it came up; with `block`, its
/// ticket is refused until unblocked. A fresh join gets a new listener id: blocking by address
/// belongs to admission control.
pub async fn remove_listener(
    State(app): State<AppState>,
    Path((id, lid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let body = body?;
    let room = app.room(&id)?;
    let listener = ListenerId(parse_id(&lid, "listener id")?);
    let RemoveBody { block } = optional_json(&body)?;
    let action = if block { Action::Block } else { Action::Remove };
    let actor = authorize(&app, &room, &headers, action)?;
    let pid = participant_for(listener);
    let on_stage = room.roster.lock().member(pid).map(|m| m.role);
    require(&actor, action, Some(on_stage.unwrap_or(Role::Listener)))?;
    let member = room.change(|r| {
        if block {
            return r.block_listener(listener);
        }
        let m = r.leave_stage(pid).ok();
        r.kick_listener(listener);
        Ok(m)
    })?;
    room.save().await?;
    if block {
        room.hands.lock().refuse(listener);
    }
    let closed = match member {
        Some(m) => room.remove_participant(m.id, removal_reason(block)),
        None => 0,
    };
    app.metrics().moderation_actions.inc();
    ok(json!({"listener_id": lid, "blocked": block, "closed": closed}))
}

/// `DELETE /api/rooms/{id}/blocks/{id}` (moderator): lifts the block of a listener id or
/// participant id (both, for someone who came from the audience).
pub async fn unblock(
    State(app): State<AppState>,
    Path((id, subject)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let room = app.room(&id)?;
    authorize(&app, &room, &headers, Action::Unblock)?;
    let n = parse_id(&subject, "id")?;
    let was = room.change(|r| {
        Ok(r.unblock_listener(ListenerId(n)) | r.unblock_participant(ParticipantId(n)))
    })?;
    room.save().await?;
    if !was {
        return Err(ApiError::NotFoundMsg("not blocked".into()));
    }
    app.metrics().moderation_actions.inc();
    ok(json!({"unblocked": subject}))
}

/// `GET /api/rooms/{id}/stage` (moderator): the stage with pending requests (names included),
/// invitations, blocks and limits.
pub async fn stage_view(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let room = app.room(&id)?;
    authorize(&app, &room, &headers, Action::ViewModeration)?;
    let stage = room.stage_part(|_| false);
    let mut v = json!({
        "rev": stage.rev,
        "participants": stage.participants,
        "requests": stage.requests,
        "invited": stage.invited,
    });
    // Who is speaking is live in the room event; the console gets levels for its meters.
    let levels = room.participant_levels();
    if let Some(ps) = v["participants"].as_array_mut() {
        for p in ps.iter_mut().filter_map(Value::as_object_mut) {
            p.remove("speaking");
            let level = p
                .get("id")
                .and_then(Value::as_str)
                .and_then(|id| id.parse().ok())
                .and_then(|id| levels.get(&ParticipantId(id)))
                .copied()
                .unwrap_or(0.0);
            p.insert("level".into(), json!((level * 1000.0).round() / 1000.0));
            // What this participant's open seats sent, and what was dropped from its share.
            let id = p
                .get("id")
                .and_then(Value::as_str)
                .and_then(|id| id.parse().ok());
            let (frames_in, dropped) = id.map_or((0, 0), |id| room.seat_stats(ParticipantId(id)));
            p.insert("frames_in".into(), json!(frames_in));
            p.insert("frames_dropped".into(), json!(dropped));
        }
    }
    let r = room.roster.lock();
    let ids = |it: &mut dyn Iterator<Item = u64>| it.map(|n| n.to_string()).collect::<Vec<_>>();
    let requests: Vec<Value> = r
        .requests()
        .enumerate()
        .map(|(i, q)| {
            json!({"listener_id": q.listener.0.to_string(), "name": q.name, "position": i + 1})
        })
        .collect();
    v["requests"] = json!(requests);
    v["blocked"] = json!({
        "listeners": ids(&mut r.blocked_listeners().map(|l| l.0)),
        "participants": ids(&mut r.blocked_participants().map(|p| p.0)),
    });
    let l = r.limits();
    v["limits"] = json!({
        "co_hosts": l.max_cohosts,
        "speakers": l.max_speakers,
        "requests": l.max_requests,
        "invites": l.max_invites,
    });
    ok(v)
}
