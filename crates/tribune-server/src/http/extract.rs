//! Small request helpers every route group uses: the bearer credential and optional JSON
//! bodies.

use axum::http::{header, HeaderMap};

use crate::error::ApiError;

/// `Authorization: Bearer …`, if present.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Parses an optional JSON body: empty means defaults; anything else must be valid JSON.
pub fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}
