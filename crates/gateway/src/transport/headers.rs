//! Security headers on every response.

use axum::http::{header, HeaderValue};
use axum::response::Response;

/// Adds `X-Content-Type-Options: nosniff` and `X-Frame-Options: DENY`.
pub async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}
