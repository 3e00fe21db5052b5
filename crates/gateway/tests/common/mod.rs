//! Shared helpers: a real gateway on 127.0.0.1 with the testkit plugins linked.
#![allow(dead_code)]

pub mod ws;

use std::net::SocketAddr;
use waav_gateway::config::{CliOverrides, GatewayConfig};
use waav_gateway::Gateway;

/// Whether a plugin with this id is linked into the test binary.
fn links_plugin(id: &str) -> bool {
    waav_gateway::registry::Registry::build(&Default::default())
        .map(|r| r.entries().iter().any(|e| e.id == id))
        .unwrap_or(false)
}

/// A running gateway; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub gateway: Gateway,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts a gateway configured by `yaml`. The embedded local engines stay off unless the
    /// YAML configures them (loading models would slow every test).
    pub async fn start(yaml: &str) -> Self {
        waav_testkit::link();
        let env = |_: &str| None;
        let mut config = GatewayConfig::from_sources(Some(yaml), &env, &CliOverrides::default())
            .expect("config");
        let off = || waav_gateway::config::PluginSection {
            enabled: false,
            ..Default::default()
        };
        // The embedded engines, when the test binary links them, stay off unless asked for.
        let links_local = links_plugin("local");
        if links_local {
            config.plugins.stt.entry("local".into()).or_insert_with(off);
            config.plugins.tts.entry("local".into()).or_insert_with(off);
            config
                .plugins
                .tts
                .entry("espeak".into())
                .or_insert_with(off);
        }
        Self::with_config(config).await
    }

    /// Starts a gateway with a ready-made configuration.
    pub async fn with_config(config: GatewayConfig) -> Self {
        waav_testkit::link();
        let gateway = Gateway::start(config).await.expect("gateway starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(gateway.clone().serve(listener, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            gateway,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The `/metrics` page.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("/metrics body")
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Stops gracefully and waits for the server to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
