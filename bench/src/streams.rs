//! Memory of idle connections: the resident set a process gains per idle notification stream
//! (BFF + its notification-svc subscription, `ordermesh up`) against per idle keep-alive
//! connection on a bare axum server (this binary, run as a child with [`BARE_SERVER_FLAG`]).
//! Both are separate processes, so the load's own memory is not counted.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Run as `ordermesh-bench --serve-bare-axum <port>`: the baseline server, a separate process.
pub const BARE_SERVER_FLAG: &str = "--serve-bare-axum";

/// The resident set of process `pid` in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// What holding `count` idle connections cost a server.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Held {
    pub count: usize,
    pub rss_before_kib: u64,
    pub rss_held_kib: u64,
    /// After holding them for a while: memory must not creep while nothing happens.
    pub rss_later_kib: u64,
    pub per_connection_kib: f64,
}

/// Opens `count` connections with `request` (each answered with a header and kept open), holds
/// them, and measures the server's RSS (`pid`) before, once all are open, and `hold` later.
pub async fn hold(pid: u32, addr: SocketAddr, request: &str, count: usize, hold: Duration) -> anyhow::Result<Held> {
    anyhow::ensure!(addr.ip().is_loopback(), "refusing to load {addr}: not this machine");
    settle().await;
    let rss_before_kib = rss_kib(pid)?;
    let mut open = Vec::with_capacity(count);
    for chunk in 0..count.div_ceil(100) {
        let batch = (chunk * 100..count.min((chunk + 1) * 100)).map(|_| connect(addr, request));
        for connection in futures::future::join_all(batch).await {
            open.push(connection?);
        }
    }
    settle().await;
    let rss_held_kib = rss_kib(pid)?;
    tokio::time::sleep(hold).await;
    let rss_later_kib = rss_kib(pid)?;
    drop(open);
    Ok(Held {
        count,
        rss_before_kib,
        rss_held_kib,
        rss_later_kib,
        per_connection_kib: rss_held_kib.saturating_sub(rss_before_kib) as f64 / count.max(1) as f64,
    })
}

/// Lets the server's allocator and tasks come to rest before a reading.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// A connection that sent `request` and read the answer's head (and the stream's first event).
async fn connect(addr: SocketAddr, request: &str) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer))
            .await
            .context("no answer within 30 s")??;
        anyhow::ensure!(read > 0, "closed before answering");
        head.extend_from_slice(&buffer[..read]);
    }
    anyhow::ensure!(
        head.starts_with(b"HTTP/1.1 200"),
        "answered {}",
        String::from_utf8_lossy(&head).lines().next().unwrap_or_default()
    );
    Ok(stream)
}

/// `GET path` kept alive, with an optional bearer token.
pub fn get_request(addr: SocketAddr, path: &str, token: Option<&str>) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Accept: */*\r\n\r\n")
}

/// A port the OS has just handed out and taken back (for the bare server's own bind).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The bare server as a child process, killed on drop.
pub struct BareServer {
    child: Child,
    pub addr: SocketAddr,
}

impl BareServer {
    pub async fn start(port: u16, body: &[u8]) -> anyhow::Result<Self> {
        let body_file = tempfile::NamedTempFile::new()?;
        std::fs::write(body_file.path(), body)?;
        let child = Command::new(std::env::current_exe()?)
            .arg(BARE_SERVER_FLAG)
            .arg(port.to_string())
            .arg(body_file.path())
            .stdout(Stdio::null())
            .spawn()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..200 {
            if TcpStream::connect(addr).await.is_ok() {
                // The body file is read at start; it may go now.
                return Ok(Self { child, addr });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        anyhow::bail!("the bare server did not listen on {addr}")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bare server's process: a bare axum route answering every GET with the body file's bytes.
pub fn serve_bare(port: &str, body_file: &str) -> anyhow::Result<()> {
    let port: u16 = port.parse()?;
    let body = axum::body::Bytes::from(std::fs::read(body_file)?);
    tokio::runtime::Runtime::new()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let router = axum::Router::new().fallback(axum::routing::get(move || {
            let body = body.clone();
            async move { ([(http::header::CONTENT_TYPE, "application/json")], body) }
        }));
        axum::serve(listener, router).await?;
        Ok(())
    })
}
