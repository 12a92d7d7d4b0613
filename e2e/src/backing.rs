//! Backing servers of the fault suite's own: a `nats-server` with JetStream and a `redis-server`
//! on free ports, each a child process the suite can kill (SIGKILL) and start again — never the
//! machine's shared servers, which CI and the other tests use. JetStream's store stays on disk
//! across a restart (as a broker's volume does), so a restart loses nothing that was acked.
//! Installed by `scripts/services.sh` (Debian's packages), like the shared ones.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// One backing server: how to start it, where it listens, and its process while it runs.
pub struct BackingServer {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl BackingServer {
    /// A JetStream-enabled NATS server, its store in a directory of its own.
    pub async fn nats() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let store = dir.path().join("jetstream");
        let args = ["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"]
            .map(str::to_owned)
            .into_iter()
            .chain([store.display().to_string()])
            .collect();
        Self::start_new(
            "nats",
            program(&["/usr/sbin/nats-server", "nats-server"])?,
            args,
            port,
            dir,
        )
        .await
    }

    /// A Redis server without persistence (the BFF's cache and rate limits are disposable).
    pub async fn redis() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let args = [
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(str::to_owned)
        .to_vec();
        Self::start_new(
            "redis",
            program(&["/usr/bin/redis-server", "redis-server"])?,
            args,
            port,
            dir,
        )
        .await
    }

    async fn start_new(
        name: &'static str,
        program: PathBuf,
        args: Vec<String>,
        port: u16,
        dir: tempfile::TempDir,
    ) -> anyhow::Result<Self> {
        let log = dir.path().join(format!("{name}.log"));
        let mut server = Self {
            name,
            program,
            args,
            port,
            log,
            child: None,
            _dir: dir,
        };
        server.start().await?;
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>` or `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.name, self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts it (again) on its port and waits until the port accepts connections.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "{} is running", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(self.addr()).await.is_err() {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{} did not listen on {} (log: {})",
                self.name,
                self.addr(),
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Kills it with SIGKILL (a crash, not a shutdown) and reaps it.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        let mut child = self
            .child
            .take()
            .with_context(|| format!("{} is not running", self.name))?;
        child.kill().await?;
        Ok(())
    }
}

/// The first of `candidates` that exists (a path) or is on `PATH` (a bare name).
fn program(candidates: &[&str]) -> anyhow::Result<PathBuf> {
    for candidate in candidates {
        let path = PathBuf::from(candidate);
        if path.is_absolute() && path.exists() {
            return Ok(path);
        }
        if !path.is_absolute()
            && let Some(found) = std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths)
                .map(|dir| dir.join(candidate))
                .find(|p| p.exists())
        {
            return Ok(found);
        }
    }
    anyhow::bail!("none of {candidates:?} is installed: run scripts/services.sh")
}

/// A port nothing listens on now (the kernel's choice of a free one).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}
