//! Several services in one process — `ordermesh up` and the end-to-end tests start the same way:
//! bind every listener first (so each service is told where its peers really are), spawn each
//! service on its listener under its own shutdown token, wait for each to report SERVING with
//! the one readiness wait ([`crate::host::wait_ready`]), stop and restart one, and bring all
//! down when one fails.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::PeerUrls;
use crate::host::{BindError, bind, wait_ready_over};
use crate::mesh::tls::WorkloadTls;
use crate::shutdown::Shutdown;

/// How long a service may take from spawn to SERVING.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

struct Running {
    addr: SocketAddr,
    shutdown: Shutdown,
    /// `None` once the task's outcome has been taken.
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The services of one process, by name (`order`, `product`, …, or any other component).
pub struct Launcher {
    shutdown: Shutdown,
    running: BTreeMap<String, Running>,
    /// The certificate readiness is asked with when the services require mutual TLS.
    probe_tls: Option<Arc<WorkloadTls>>,
}

impl Launcher {
    /// Every service started here stops when `shutdown` is triggered.
    pub fn new(shutdown: &Shutdown) -> Self {
        Self {
            shutdown: shutdown.clone(),
            running: BTreeMap::new(),
            probe_tls: None,
        }
    }

    /// The services require mutual TLS: ask their readiness with `probe` (a certificate the
    /// call graph lets call health, such as `ops`'s), and give out `https` addresses.
    pub fn with_tls(mut self, probe: Arc<WorkloadTls>) -> Self {
        self.probe_tls = Some(probe);
        self
    }

    /// Binds `name`'s listener on `addr` and reserves the address for it.
    pub async fn bind(&mut self, name: &str, addr: SocketAddr) -> Result<TcpListener, BindError> {
        let listener = bind(&component(name), addr).await?;
        let addr = listener.local_addr().map_err(|source| BindError {
            service: component(name),
            addr,
            source,
        })?;
        self.running.insert(
            name.to_owned(),
            Running {
                addr,
                shutdown: self.shutdown.child(),
                handle: None,
            },
        );
        Ok(listener)
    }

    /// The address of `name`, once bound.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.running.get(name).map(|r| r.addr)
    }

    /// `http://127.0.0.1:<port>` of `name` (`https` under mutual TLS; empty when it is not bound).
    pub fn url(&self, name: &str) -> String {
        let scheme = if self.probe_tls.is_some() { "https" } else { "http" };
        self.addr(name)
            .map(|addr| format!("{scheme}://127.0.0.1:{}", addr.port()))
            .unwrap_or_default()
    }

    /// Where the six services are, as far as they are bound here; `fallback` for the others.
    pub fn peer_urls(&self, fallback: &PeerUrls) -> PeerUrls {
        let url = |name: &str, default: &String| {
            self.addr(name)
                .map(|_| self.url(name))
                .unwrap_or_else(|| default.clone())
        };
        PeerUrls {
            product: url("product", &fallback.product),
            customer: url("customer", &fallback.customer),
            order: url("order", &fallback.order),
            payment: url("payment", &fallback.payment),
            audit: url("audit", &fallback.audit),
            notification: url("notification", &fallback.notification),
        }
    }

    /// Starts `name` (bound before with [`Launcher::bind`]) on `listener`: `run` gets the
    /// listener and the service's own shutdown token.
    pub fn spawn<F, Fut>(&mut self, name: &str, listener: TcpListener, run: F)
    where
        F: FnOnce(TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let shutdown = self.shutdown.child();
        let addr = listener.local_addr().ok();
        let handle = tokio::spawn(run(listener, shutdown.clone()));
        let running = self.running.entry(name.to_owned()).or_insert_with(|| Running {
            addr: addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            shutdown: shutdown.clone(),
            handle: None,
        });
        running.shutdown = shutdown;
        running.handle = Some(handle);
    }

    /// Waits until `name` reports SERVING; fails at once with its error if it exits first.
    pub async fn wait_ready(&mut self, name: &str) -> anyhow::Result<()> {
        let running = self
            .running
            .get_mut(name)
            .ok_or_else(|| anyhow::anyhow!("{name} was never started"))?;
        let addr = running.addr;
        let handle = &mut running.handle;
        let tls = self.probe_tls.clone();
        wait_ready_over(&component(name), addr, tls, READY_TIMEOUT, || exit_error(handle)).await
    }

    /// Stops `name` gracefully and returns its outcome; its address stays reserved for
    /// [`Launcher::rebind`].
    pub async fn stop(&mut self, name: &str) -> anyhow::Result<()> {
        let running = self
            .running
            .get_mut(name)
            .ok_or_else(|| anyhow::anyhow!("{name} is not running"))?;
        running.shutdown.trigger();
        match running.handle.take() {
            Some(handle) => handle.await?,
            None => Ok(()),
        }
    }

    /// Binds `name`'s old address again (after [`Launcher::stop`]), waiting out a socket the
    /// kernel has not released yet.
    pub async fn rebind(&mut self, name: &str) -> anyhow::Result<TcpListener> {
        let addr = self
            .addr(name)
            .ok_or_else(|| anyhow::anyhow!("{name} was never bound"))?;
        let mut attempt = 0;
        loop {
            match bind(&component(name), addr).await {
                Ok(listener) => return Ok(listener),
                Err(_) if attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Runs until every service has ended. The first one to fail triggers the common shutdown
    /// (the platform never stays half-up) and its error is returned.
    pub async fn run_until_done(mut self) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        for (name, running) in &mut self.running {
            if let Some(handle) = running.handle.take() {
                let name = name.clone();
                tasks.spawn(async move { (name, handle.await) });
            }
        }
        let mut result = Ok(());
        while let Some(joined) = tasks.join_next().await {
            let (name, outcome) = joined?;
            if let Err(error) = outcome.map_err(anyhow::Error::from).and_then(|r| r) {
                tracing::error!(component = %name, error = format!("{error:#}"), "a component failed; shutting down");
                if result.is_ok() {
                    result = Err(error);
                }
            }
            self.shutdown.trigger();
        }
        result
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        for running in self.running.values() {
            running.shutdown.trigger();
        }
    }
}

/// `order` → `order-svc`; other components keep their name (`bff`).
fn component(name: &str) -> String {
    match name {
        "product" | "customer" | "order" | "payment" | "audit" | "notification" => format!("{name}-svc"),
        other => other.to_owned(),
    }
}

/// The error of a service task that has ended (`None` while it runs). Takes the handle: a
/// finished task is asked once.
pub fn exit_error(handle: &mut Option<JoinHandle<anyhow::Result<()>>>) -> Option<anyhow::Error> {
    if !handle.as_ref().is_some_and(|h| h.is_finished()) {
        return None;
    }
    let finished = handle.take()?;
    let result = futures::FutureExt::now_or_never(finished)?;
    Some(match result {
        Ok(Ok(())) => anyhow::anyhow!("it stopped without an error"),
        Ok(Err(error)) => error,
        Err(join) => anyhow::Error::from(join),
    })
}
