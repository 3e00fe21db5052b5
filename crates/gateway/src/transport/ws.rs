//! `GET /ws` and `GET /realtime`: upgrade, connection caps, authentication mode, then a voice
//! or speech-to-speech session.

use crate::middleware::auth::{self, AuthFailure};
use crate::middleware::limits::LimitError;
use crate::session::protocol::MAX_WS_MESSAGE;
use crate::session::{self, AuthState};
use crate::state::SharedState;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// Read buffer per socket. tungstenite keeps it allocated for the connection's life and zeroes
/// the free part before every read, so it is sized for a few 20 ms frames, not the 128 KiB
/// default (which would cost more memory than the whole session, and a 128 KiB memset per read).
const WS_READ_BUFFER: usize = 2 * 1024;
/// Outgoing bytes buffered before tungstenite writes them out (frames are flushed anyway).
const WS_WRITE_BUFFER: usize = 4 * 1024;

/// Upgrades to a voice session.
pub async fn upgrade(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Response {
    let (slot, auth_state) = match admit(&state, peer, &headers, &uri) {
        Ok(a) => a,
        Err(r) => return r,
    };
    configure(ws).on_upgrade(move |socket| session::run(socket, state, auth_state, slot))
}

/// Upgrades to a `/realtime` speech-to-speech session, with the same caps and auth as `/ws`.
pub async fn upgrade_realtime(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Response {
    let (slot, auth_state) = match admit(&state, peer, &headers, &uri) {
        Ok(a) => a,
        Err(r) => return r,
    };
    configure(ws).on_upgrade(move |socket| session::realtime::run(socket, state, auth_state, slot))
}

fn configure(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
}

/// A connection slot and the authentication mode, or the refusal.
#[allow(clippy::result_large_err)]
fn admit(
    state: &SharedState,
    peer: SocketAddr,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(crate::middleware::limits::ConnectionSlot, AuthState), Response> {
    let slot = match state.limiter.try_acquire(peer.ip()) {
        Ok(slot) => slot,
        Err(LimitError::AtCapacity) => {
            return Err(too_many(
                StatusCode::SERVICE_UNAVAILABLE,
                "Server at capacity. Please try again later.",
            ))
        }
        Err(LimitError::PerIp) => {
            return Err(too_many(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many connections from your IP address.",
            ))
        }
    };
    let auth_state = if state.config.auth.required {
        match auth::token_from(headers, uri.query()) {
            Ok(Some(token)) => match auth::verify(&state.config.auth, &token) {
                Some(id) => AuthState::Authenticated(Some(id)),
                None => return Err(AuthFailure::Unauthorized.into_response()),
            },
            Ok(None) => AuthState::Pending,
            Err(e) => return Err(e.into_response()),
        }
    } else {
        AuthState::Authenticated(None)
    };
    Ok((slot, auth_state))
}

fn too_many(status: StatusCode, message: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}
