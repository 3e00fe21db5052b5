//! The rustls client configuration every kit client uses: the `ring` provider and the Mozilla
//! (webpki) roots, chosen explicitly, so no system certificate store is read and the choice does
//! not depend on which rustls providers other crates enable.

use std::sync::{Arc, OnceLock};

/// A client config with the given ALPN protocols (`[]` for none).
pub fn client_config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// The shared config for WebSocket and HTTP/1.1 clients (ALPN `http/1.1`), built once.
pub fn http1_config() -> Arc<rustls::ClientConfig> {
    static CFG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CFG.get_or_init(|| client_config(&[b"http/1.1"])).clone()
}
