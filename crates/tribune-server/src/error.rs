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
    /// The node (or the room) is at one of its limits; the message says which. Answered `503`
    /// with `Retry-After`.
    #[error("{message}")]
    Full {
        /// What is full.
        message: String,
        /// Seconds to wait before trying again.
        retry_after_s: u64,
    },
    /// This client did this too often; answered `429` with `Retry-After`.
    #[error("{message}")]
    Throttled {
        /// What was too frequent.
        message: String,
        /// Seconds to wait before trying again.
        retry_after_s: u64,
    },
    /// The request's body did not arrive in time; answered `408`.
    #[error("{0}")]
    Timeout(String),
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
    /// The change was applied but could not be made durable (the room store failed); answered
    /// `503` with `Retry-After`, so the client repeats it.
    #[error("the change could not be saved; try again")]
    NotSaved,
    /// The request belongs on another node (a stage action on an edge: the room's origin).
    #[error("{0}")]
    Misdirected(String),
    /// The node this one pulls the room from does not answer.
    #[error("{0}")]
    UpstreamUnavailable(String),
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
            ApiError::Full { .. } => (StatusCode::SERVICE_UNAVAILABLE, "full"),
            ApiError::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::NotSaved => (StatusCode::SERVICE_UNAVAILABLE, "not_saved"),
            ApiError::Misdirected(_) => (StatusCode::MISDIRECTED_REQUEST, "misdirected"),
            ApiError::UpstreamUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable")
            }
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    /// Seconds a client should wait before trying again, for `429` and `503`.
    fn retry_after_s(&self) -> Option<u64> {
        match self {
            ApiError::Full { retry_after_s, .. } | ApiError::Throttled { retry_after_s, .. } => {
                Some((*retry_after_s).max(1))
            }
            ApiError::Unavailable | ApiError::UpstreamUnavailable(_) => Some(2),
            ApiError::TooManyRequests(_) | ApiError::NotSaved => Some(1),
            _ => None,
        }
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
            | StageError::Declined
            | StageError::MutedByModerator
            | StageError::HostStays
            | StageError::NotAStageRole(_) => ApiError::Forbidden(e.to_string()),
            StageError::BadName(m) => ApiError::BadRequest(m),
            StageError::HostTaken
            | StageError::CoHostsFull(_)
            | StageError::SpeakersFull(_)
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

/// `408` for a body that missed its deadline (see `body_deadline`).
fn late_body(e: &(dyn std::error::Error + 'static)) -> Option<ApiError> {
    is_body_timeout(e).then(|| {
        ApiError::Timeout("the request body did not arrive in time; send it at once".into())
    })
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if let Some(e) = late_body(&r) {
            return e;
        }
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadRequest(r.body_text())
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if let Some(e) = late_body(&r) {
            return e;
        }
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
        let retry = self.retry_after_s();
        let mut resp = (status, Json(body)).into_response();
        if let Some(s) = retry {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from(s));
        }
        resp
    }
}

/// The error a late body fails with (found again by [`is_body_timeout`]).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub std::time::Duration);

/// Whether `e` (or what caused it) is a body that missed its deadline.
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimedOut>() {
            return true;
        }
        cur = err.source();
    }
    false
}
