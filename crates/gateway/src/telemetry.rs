//! Structured logging set-up (`RUST_LOG`, text or JSON lines).

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` filters (default `info`). Safe to call twice.
pub fn init_logging(format: LogFormat) {
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info"));
    if spec.trim().is_empty() {
        filter = EnvFilter::new("info");
    }
    // tungstenite's trace prints upgrade requests and frame payloads, which carry vendor keys
    // (auth headers, keys in URLs and init frames): capped unless asked for by name.
    if !spec.contains("tungstenite") {
        for d in ["tungstenite=debug", "tokio_tungstenite=debug"] {
            if let Ok(d) = d.parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
