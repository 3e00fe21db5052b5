//! Client authentication with API secrets (constant-time comparison).

use crate::config::AuthConfig;
use crate::state::SharedState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The client id whose secret is `token`, if any. Checks every secret so timing does not reveal
/// which one matched.
pub fn verify(config: &AuthConfig, token: &str) -> Option<String> {
    let mut found = None;
    for s in &config.api_secrets {
        if constant_time_eq(s.secret.expose().as_bytes(), token.as_bytes()) && found.is_none() {
            found = Some(s.id.clone());
        }
    }
    found
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header and no `token` query parameter.
    Missing,
    /// The header is not `Bearer <token>`.
    Malformed,
    /// The token matches no secret.
    Unauthorized,
}

impl IntoResponse for AuthFailure {
    fn into_response(self) -> Response {
        let (error, message) = match self {
            Self::Missing => ("missing_auth_header", "Authorization header is required"),
            Self::Malformed => (
                "invalid_auth_header",
                "Authorization header must be 'Bearer <token>'",
            ),
            Self::Unauthorized => ("unauthorized", "Invalid authentication token"),
        };
        (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({ "error": error, "message": message })),
        )
            .into_response()
    }
}

/// The token from `Authorization: Bearer …`, else from `?token=`. `Ok(None)` when absent.
pub fn token_from(headers: &HeaderMap, query: Option<&str>) -> Result<Option<String>, AuthFailure> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| AuthFailure::Malformed)?;
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthFailure::Malformed)?;
        return Ok(Some(token.to_owned()));
    }
    Ok(query.and_then(|q| {
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == "token" && !v.is_empty()).then(|| percent_decode(v))
        })
    }))
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some(hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?))
            .flatten();
        match (decoded, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Rejects requests without a valid token when `auth.required` is set. Nothing in the request
/// (header, path, method) skips it; `/ws` is not behind it because it authenticates itself.
pub async fn require_auth(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    match check(&state, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check(state: &SharedState, req: &Request) -> Result<(), AuthFailure> {
    if !state.config.auth.required {
        return Ok(());
    }
    let token = token_from(req.headers(), req.uri().query())?.ok_or(AuthFailure::Missing)?;
    verify(&state.config.auth, &token)
        .map(|_| ())
        .ok_or(AuthFailure::Unauthorized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiSecret;

    #[test]
    fn verifies_secrets_and_extracts_tokens() {
        let cfg = AuthConfig {
            required: true,
            api_secrets: vec![ApiSecret {
                id: "a".into(),
                secret: "s3cret".into(),
            }],
        };
        assert_eq!(verify(&cfg, "s3cret").as_deref(), Some("a"));
        assert_eq!(verify(&cfg, "s3cres"), None);
        assert_eq!(verify(&cfg, ""), None);

        let mut h = HeaderMap::new();
        assert_eq!(
            token_from(&h, Some("x=1&token=a%2Bb")).unwrap().as_deref(),
            Some("a+b")
        );
        assert_eq!(token_from(&h, None).unwrap(), None);
        h.insert(header::AUTHORIZATION, "Bearer tok".parse().unwrap());
        assert_eq!(
            token_from(&h, Some("token=other")).unwrap().as_deref(),
            Some("tok")
        );
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(token_from(&h, None), Err(AuthFailure::Malformed));
    }
}
