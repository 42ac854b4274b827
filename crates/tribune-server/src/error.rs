//! The API's typed errors and their JSON form: `{"error": code, "message": text}`.

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tribune_core::reactions::ReactionError;
use tribune_core::{StageError, TokenError};

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No such room (or an id that could not be one).
    #[error("no such room")]
    RoomNotFound,
    /// Nothing at this path.
    #[error("not found")]
    NotFound,
    /// The path names something the room does not have (a participant, a request).
    #[error("{0}")]
    NotFoundMsg(String),
    /// The room has ended.
    #[error("the room has ended")]
    RoomEnded,
    /// No credential was presented.
    #[error("missing {0}")]
    Unauthenticated(&'static str),
    /// A credential was presented and refused.
    #[error("{0}")]
    Forbidden(String),
    /// The request body or query is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than allowed.
    #[error("request body too large")]
    TooLarge,
    /// The server is shutting down.
    #[error("server is shutting down")]
    Unavailable,
    /// The request conflicts with the room's state (e.g. the stage is full).
    #[error("{0}")]
    Conflict(String),
    /// Too many requests of this kind; retry after a second.
    #[error("{0}")]
    TooManyRequests(String),
    /// Something failed on the node's side (storage); logged there.
    #[error("internal error")]
    Internal,
    /// The request body has a content type this endpoint does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::RoomNotFound => (StatusCode::NOT_FOUND, "room_not_found"),
            ApiError::NotFound | ApiError::NotFoundMsg(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::RoomEnded => (StatusCode::GONE, "room_ended"),
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        ApiError::Forbidden(format!("token refused: {e}"))
    }
}

impl From<StageError> for ApiError {
    fn from(e: StageError) -> Self {
        match e {
            StageError::NotOnStage | StageError::NoRequest | StageError::NoInvite => {
                ApiError::NotFoundMsg(e.to_string())
            }
            StageError::Blocked
            | StageError::MutedByModerator
            | StageError::HostStays
            | StageError::NotAStageRole(_) => ApiError::Forbidden(e.to_string()),
            StageError::BadName(m) => ApiError::BadRequest(m),
            StageError::HostTaken
            | StageError::CoHostsFull(_)
            | StageError::SpeakersFull(_)
            | StageError::RequestsFull(_)
            | StageError::InvitesFull(_)
            | StageError::BlockListFull(_)
            | StageError::AlreadyOnStage => ApiError::Conflict(e.to_string()),
        }
    }
}

impl From<ReactionError> for ApiError {
    fn from(e: ReactionError) -> Self {
        ApiError::TooManyRequests(e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadRequest(r.body_text())
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadRequest(r.body_text())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = Body {
            error: code,
            message: self.to_string(),
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("2"));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}
