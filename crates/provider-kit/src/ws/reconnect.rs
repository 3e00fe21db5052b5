//! Connecting with retries, and resuming a stream after a transient drop.

use super::{connect_once, Message, ReplayBuffer, WsConfig, WsConnection};
use crate::backoff::{Backoff, BackoffPolicy};
use bytes::Bytes;
use waav_plugin_api::PluginError;

/// Opens connections for one provider stream, retrying retryable failures with backoff.
#[derive(Debug, Clone)]
pub struct Reconnector {
    config: WsConfig,
    policy: BackoffPolicy,
}

impl Reconnector {
    /// A reconnector for `config` spacing attempts by `policy`.
    pub fn new(config: WsConfig, policy: BackoffPolicy) -> Self {
        Self { config, policy }
    }

    /// The connection config (a provider may refresh a token in it between attempts).
    pub fn config_mut(&mut self) -> &mut WsConfig {
        &mut self.config
    }

    /// Connects, retrying Transient/Timeout/RateLimited failures (a `retry-after` is honoured as a
    /// floor) until the policy gives up; Auth/Config/Permanent failures return at once. The
    /// error returned is the last attempt's. Each attempt is a single handshake
    /// ([`connect_once`]): this policy replaces the budgeted handshake retries of
    /// [`super::connect`] rather than multiplying them.
    pub async fn connect(&self) -> Result<WsConnection, PluginError> {
        let mut backoff = Backoff::new(self.policy.clone());
        loop {
            match connect_once(&self.config).await {
                Ok(c) => return Ok(c),
                Err(e) => match backoff.delay_for(&e) {
                    Some(d) => {
                        tracing::debug!(context = %self.config.context, attempt = backoff.attempts(), delay_ms = d.as_millis() as u64, error = %e, "reconnecting");
                        tokio::time::sleep(d).await;
                    }
                    None => return Err(e),
                },
            }
        }
    }

    /// [`connect`](Self::connect), then re-send `replay`'s unacknowledged audio, each chunk as the
    /// message `to_message` makes of it (binary frames, or base64 inside JSON for some vendors).
    /// Providers that must send a setup message first call `connect` and replay themselves.
    pub async fn resume(
        &self,
        replay: &ReplayBuffer,
        mut to_message: impl FnMut(&Bytes) -> Message,
    ) -> Result<WsConnection, PluginError> {
        let conn = self.connect().await?;
        for chunk in replay.unacked() {
            conn.send(to_message(chunk)).await?;
        }
        Ok(conn)
    }
}
