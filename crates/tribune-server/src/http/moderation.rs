//! Roles and moderation over HTTP: requests to speak, invitations, mutes, moving someone to the
//! audience, removals and blocks. Every call is authenticated (stage token or listen ticket),
//! checked against the permission matrix (`tribune_core::permissions`) with the caller's role
//! as the roster knows it now, applied to the room's roster (`tribune_core::stage`), and
//! announced in the room event on the listeners' WebSocket.
//!
//! Ids in these JSON bodies are decimal strings (they are 64-bit; JavaScript numbers are not);
//! ids sent to the server may be strings or numbers.

use axum::http::HeaderMap;
use axum::routing::{delete, get, post};
use axum::Router;

use tribune_core::permissions::{allowed, ROLES};
use tribune_core::{
    unix_micros, Action, ListenerId, ParticipantId, Role, RoomState, StageError, TokenError,
    TokenKind,
};

use crate::error::ApiError;
use crate::http::extract::bearer;
use crate::node::state::AppState;
use crate::room::{off_stage, LiveRoom};

pub mod handlers;

use handlers::{
    accept_invite, accept_request, cancel_invite, cancel_request, decline_invite, decline_request,
    demote, invite, mute, my_status, remove_listener, remove_participant, request_to_speak,
    set_role, stage_view, unblock,
};

/// The moderation routes (merged into the node's router).
pub fn routes() -> Router<AppState> {
    let p = |pid: &str| format!("/api/rooms/{{id}}/participants/{{pid}}/{pid}");
    Router::new()
        .route("/api/rooms/{id}/stage", get(stage_view))
        .route("/api/rooms/{id}/requests", post(request_to_speak))
        .route(
            "/api/rooms/{id}/requests/me",
            get(my_status).delete(cancel_request),
        )
        .route(
            "/api/rooms/{id}/requests/{lid}/accept",
            post(accept_request),
        )
        .route(
            "/api/rooms/{id}/requests/{lid}/decline",
            post(decline_request),
        )
        .route("/api/rooms/{id}/invites", post(invite))
        .route("/api/rooms/{id}/invites/me/accept", post(accept_invite))
        .route("/api/rooms/{id}/invites/me/decline", post(decline_invite))
        .route("/api/rooms/{id}/invites/{lid}", delete(cancel_invite))
        .route(&p("mute"), post(mute))
        .route(&p("demote"), post(demote))
        .route(&p("role"), post(set_role))
        .route(&p("remove"), post(remove_participant))
        .route(
            "/api/rooms/{id}/listeners/{lid}/remove",
            post(remove_listener),
        )
        .route("/api/rooms/{id}/blocks/{subject}", delete(unblock))
}

/// Who is calling.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Who {
    /// A stage participant (stage token).
    Participant(ParticipantId),
    /// A listener (listen ticket).
    Listener(ListenerId),
}

/// An authenticated caller with its role as the roster knows it now.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// Current role (a promoted speaker is a co-host whatever its token says).
    pub role: Role,
    /// Identity.
    pub who: Who,
}

impl Actor {
    fn listener(&self) -> Result<ListenerId, ApiError> {
        match self.who {
            Who::Listener(l) => Ok(l),
            Who::Participant(_) => Err(ApiError::Forbidden("this needs a listen ticket".into())),
        }
    }
}

/// The role's name on the wire.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Host => "host",
        Role::CoHost => "co_host",
        Role::Speaker => "speaker",
        Role::Listener => "listener",
    }
}

fn now_s() -> u64 {
    unix_micros() / 1_000_000
}

/// Verifies a stage token or listen ticket for `room` and finds the caller's current role.
/// A stage token is honoured only while its participant is on stage and not blocked; a
/// ticket only while its listener is not blocked.
pub fn authenticate(
    app: &AppState,
    room: &LiveRoom,
    token: Option<&str>,
) -> Result<Actor, ApiError> {
    let token = token.ok_or(ApiError::Unauthenticated("bearer token"))?;
    let claims = app.keys().verify(token, now_s())?;
    if claims.room != room.id {
        return Err(TokenError::WrongRoom.into());
    }
    match claims.kind {
        TokenKind::Stage => {
            let id = ParticipantId(claims.sub);
            let role = room.roster.lock().admit(id).map_err(off_stage)?;
            Ok(Actor {
                role,
                who: Who::Participant(id),
            })
        }
        TokenKind::Listen => {
            let id = ListenerId(claims.sub);
            room.admit_listener(id)?;
            Ok(Actor {
                role: Role::Listener,
                who: Who::Listener(id),
            })
        }
        TokenKind::Relay => Err(ApiError::Forbidden("a relay token acts on nothing".into())),
    }
}

fn action_name(action: Action) -> String {
    serde_json::to_string(&action)
        .unwrap_or_default()
        .trim_matches('"')
        .replace('_', " ")
}

/// Refuses with 403 unless the permission matrix allows `action` (on `target`).
pub fn require(actor: &Actor, action: Action, target: Option<Role>) -> Result<(), ApiError> {
    if allowed(actor.role, action, target) {
        return Ok(());
    }
    Err(refusal(actor, action, target))
}

fn refusal(actor: &Actor, action: Action, target: Option<Role>) -> ApiError {
    let who = role_name(actor.role);
    let what = action_name(action);
    ApiError::Forbidden(match target {
        Some(t) if action.is_targeted() => format!("a {who} may not {what} a {}", role_name(t)),
        _ => format!("a {who} may not {what}"),
    })
}

fn ensure_open(room: &LiveRoom) -> Result<(), ApiError> {
    if room.info().state == RoomState::Ended {
        return Err(ApiError::RoomEnded);
    }
    Ok(())
}

/// Authenticates the caller and checks the matrix allows it `action` (for a targeted action:
/// on some target), in a room that has not ended (`EndRoom` and `ViewModeration` excepted).
pub fn authorize(
    app: &AppState,
    room: &LiveRoom,
    headers: &HeaderMap,
    action: Action,
) -> Result<Actor, ApiError> {
    let actor = authenticate(app, room, bearer(headers))?;
    // On an edge the roster is a mirror: changes go to the room's origin. Reactions are
    // counted here and sent up with the edge's next report.
    if action != Action::React {
        room.ensure_origin()?;
    }
    let permitted = if action.is_targeted() {
        ROLES.iter().any(|&t| allowed(actor.role, action, Some(t)))
    } else {
        allowed(actor.role, action, None)
    };
    if !permitted {
        return Err(refusal(&actor, action, None));
    }
    if !matches!(action, Action::EndRoom | Action::ViewModeration) {
        ensure_open(room)?;
    }
    Ok(actor)
}

/// The target's role on stage (404 if not on stage), checked against the matrix.
fn target_role(
    room: &LiveRoom,
    actor: &Actor,
    action: Action,
    pid: ParticipantId,
) -> Result<Role, ApiError> {
    let role = room.roster.lock().member(pid).map(|m| m.role);
    let role = role.ok_or(StageError::NotOnStage)?;
    require(actor, action, Some(role))?;
    Ok(role)
}
