//! Starting the benchmark gateway as a child process and waiting for it to serve.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A gateway child process, killed on drop.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    /// Its address.
    pub addr: String,
}

impl GatewayProcess {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Spawns `binary` on a free loopback port with `config` (YAML, optional) and waits until
    /// `GET /` answers.
    pub async fn spawn(binary: &PathBuf, config: Option<&PathBuf>) -> std::io::Result<Self> {
        Self::spawn_with(binary, config, &[]).await
    }

    /// Like [`GatewayProcess::spawn`], with extra arguments (the relay's `--upstream`).
    pub async fn spawn_with(
        binary: &PathBuf,
        config: Option<&PathBuf>,
        extra: &[String],
    ) -> std::io::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut cmd = Command::new(binary);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .args(extra)
            .stdin(Stdio::null());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let child = cmd.spawn()?;
        let me = Self {
            child,
            addr: format!("127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if health(&me.addr).await {
                return Ok(me);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(std::io::Error::other(
            "gateway did not become healthy within 30 s",
        ))
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /` answers `{"status":"OK"}`.
pub async fn health(addr: &str) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).contains(r#"{"status":"OK"}"#)
}

/// The path of a binary next to the running executable (`waav-bench-gateway` beside
/// `waav-bench`).
pub fn sibling_binary(name: &str) -> PathBuf {
    let me = std::env::current_exe().unwrap_or_default();
    let dir = me.parent().map(PathBuf::from).unwrap_or_default();
    // Test executables live in deps/; binaries one level up.
    let candidates = [
        dir.join(name),
        dir.parent().map(|p| p.join(name)).unwrap_or_default(),
    ];
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| candidates[0].clone())
}
