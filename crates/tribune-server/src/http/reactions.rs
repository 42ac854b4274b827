//! Reactions: `POST /api/rooms/{id}/reactions` `{kind}` (listen ticket or stage token), or a
//! `{"type":"reaction","kind":…}` text message on the listen WebSocket.
//!
//! A reaction only bumps a counter of the room's current window (`tribune_core::reactions`);
//! the mixer task closes the window once a second and the totals ride in the room event, so
//! N reactions cost one event per window, not N messages to every listener.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tribune_core::{Action, ReactionKind, Reactor};

use crate::error::ApiError;
use crate::http::moderation::{authorize, Who};
use crate::node::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReactBody {
    kind: ReactionKind,
}

/// A reaction sent as a text message on the listen WebSocket.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ListenerMessage {
    /// `{"type":"reaction","kind":"clap"}`.
    Reaction {
        /// What kind.
        kind: ReactionKind,
    },
}

/// `POST /api/rooms/{id}/reactions` `{kind}`: `202`, or `429` past the limit of the window.
pub async fn react(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body?;
    let room = app.room(&id)?;
    let actor = authorize(&app, &room, &headers, Action::React)?;
    let ReactBody { kind } = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("malformed reaction: {e}")))?;
    let who = match actor.who {
        Who::Listener(l) => Reactor::Listener(l),
        Who::Participant(p) => Reactor::Participant(p),
    };
    room.react(who, kind, app.metrics())?;
    Ok((StatusCode::ACCEPTED, Json(json!({"kind": kind}))))
}
