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
    // Some libraries' trace output carries credentials: tungstenite prints upgrade requests and
    // frame payloads (auth headers, keys in URLs and init frames), aws-sigv4 its canonical
    // requests (session tokens). A bare `trace` default stops at debug for them, unless one is
    // asked for by name.
    let bare_trace = spec
        .split(',')
        .any(|d| d.trim().eq_ignore_ascii_case("trace"));
    if bare_trace {
        for target in ["tungstenite", "tokio_tungstenite", "aws_sigv4"] {
            if spec.contains(target) {
                continue;
            }
            if let Ok(d) = format!("{target}=debug").parse() {
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
