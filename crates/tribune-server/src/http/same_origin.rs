//! Browsers send some cross-origin requests without asking first ("simple" requests: a form
//! post, a `text/plain` fetch). The API's writes that need no credential (joining, asking the
//! waiting room, creating a room on an open node) would then be made by any page a visitor
//! opens, on the visitor's behalf and from the visitor's address. This refuses writes that a
//! browser marks as coming from another site (`Sec-Fetch-Site`, or an `Origin` that is not
//! this host). WHIP is meant to be cross-origin (it answers CORS) and is left alone; clients
//! that are not browsers send neither header and are not affected.

use axum::extract::Request;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Middleware: `403` for a cross-site write to the API.
pub async fn refuse_cross_site_writes(req: Request, next: Next) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let path = req.uri().path();
    let guarded = path.starts_with("/api/") && !path.contains("/whip");
    if write && guarded && is_cross_site(req.headers()) {
        return ApiError::Forbidden(
            "cross-site requests to this API are refused; call it from this site's pages or \
             from a client that is not a browser"
                .into(),
        )
        .into_response();
    }
    next.run(req).await
}

/// Whether a browser says the request comes from another site.
fn is_cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let origin = origin.to_str().unwrap_or("null");
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (authority, host) {
        (Some(a), Some(h)) => !a.eq_ignore_ascii_case(h),
        // "null" (a sandboxed or file page), another scheme, or no Host to compare with.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_browsers_from_other_sites_are_cross_site() {
        assert!(
            !is_cross_site(&headers(&[])),
            "curl and the CLI send neither"
        );
        assert!(!is_cross_site(&headers(&[
            ("host", "a.example:8080"),
            ("origin", "http://a.example:8080")
        ])));
        assert!(is_cross_site(&headers(&[
            ("host", "a.example:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(is_cross_site(&headers(&[
            ("host", "a.example"),
            ("origin", "null")
        ])));
        assert!(!is_cross_site(&headers(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://x")
        ])));
        assert!(is_cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(is_cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!is_cross_site(&headers(&[("sec-fetch-site", "none")])));
    }
}
