//! A fault-injecting TCP proxy for the fault suite (issue 17): a service process talks to
//! PostgreSQL, NATS or Redis through a [`FaultProxy`], and the test flips [`Fault`]s on the live
//! connections (latency, black hole, reset, close after N bytes).
//!
//! Why a proxy of our own: toxiproxy and its kin are not packaged in Debian, and a daemon would
//! have to be started, configured over HTTP and cleaned up around every test. A small tokio proxy
//! runs inside the test process, starts on port 0 like the services, and a fault takes effect on
//! open connections at once, through a `watch` channel every pipe listens to.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to the connections it carries, open and new ones alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Bytes pass through unchanged.
    #[default]
    None,
    /// Each chunk is forwarded after this delay, in both directions (a round trip pays it twice).
    Latency(Duration),
    /// Connections are accepted and kept but nothing is forwarded. Bytes already read are held,
    /// not dropped, and delivered once the fault is lifted, as TCP would retransmit them after a
    /// partition heals; a connection accepted meanwhile reaches the upstream only then.
    BlackHole,
    /// Every open connection is aborted with RST on both sides, and new ones are accepted and
    /// aborted the same way.
    Reset,
    /// Each connection is closed once it has forwarded this many bytes (both directions together)
    /// since the fault was set; every [`FaultProxy::set`] starts a fresh budget.
    CloseAfter(u64),
}

/// The current fault, numbered so a connection can tell a fresh `CloseAfter` budget from the
/// one it has been spending.
#[derive(Clone, Copy)]
struct Setting {
    fault: Fault,
    epoch: u64,
}

#[derive(Default)]
struct Counters {
    open: AtomicUsize,
    accepted: AtomicU64,
}

/// A proxy on `127.0.0.1:<port>` in front of one upstream. Dropping it stops accepting and
/// closes every connection.
pub struct FaultProxy {
    addr: SocketAddr,
    setting: watch::Sender<Setting>,
    counters: Arc<Counters>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (setting, rx) = watch::channel(Setting {
            fault: Fault::None,
            epoch: 0,
        });
        let counters = Arc::<Counters>::default();
        let accept = tokio::spawn(accept(listener, upstream, rx, counters.clone()));
        Ok(Self {
            addr,
            setting,
            counters,
            accept,
        })
    }

    /// Where clients connect instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies `fault` to open connections at once and to every new one.
    pub fn set(&self, fault: Fault) {
        self.setting.send_modify(|s| {
            *s = Setting {
                fault,
                epoch: s.epoch + 1,
            }
        });
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.counters.open.load(Ordering::SeqCst)
    }

    /// Connections accepted since the start, refused ones included.
    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The listener goes with the task; the connections end when `setting` is dropped, as
        // their receivers then report the channel closed.
        self.accept.abort();
    }
}

/// Counts a connection as open for as long as its task lives, however the task ends.
struct Open(Arc<Counters>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, rx: watch::Receiver<Setting>, counters: Arc<Counters>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Accept errors (a full file table, an aborted handshake) pass; a pause keeps a
            // persistent one from spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        counters.accepted.fetch_add(1, Ordering::SeqCst);
        counters.open.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(serve(client, upstream, rx.clone(), Open(counters.clone())));
    }
}

/// How one direction, or the whole connection, ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The sender finished cleanly; the other direction may go on.
    Eof,
    /// Close both sides with FIN.
    Close,
    /// Abort both sides with RST.
    Reset,
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, mut rx: watch::Receiver<Setting>, _open: Open) {
    // Dialling only once a black hole lifts keeps the upstream from seeing a connection that a
    // partitioned network would never have delivered.
    let Ok(setting) = rx.wait_for(|s| s.fault != Fault::BlackHole).await.map(|s| *s) else {
        return;
    };
    if setting.fault == Fault::Reset {
        return abort(&client);
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        // An unreachable upstream looks to the client like a refused connection.
        return abort(&client);
    };
    // No Nagle: a small message forwarded must not wait for the peer's delayed ACK (40 ms per
    // round trip of a database protocol, a fault of the proxy's own).
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let pipes = pipe(&mut client, &mut server, rx.clone());
    let end = tokio::select! {
        end = pipes => end,
        reset = rx.wait_for(|s| s.fault == Fault::Reset) => if reset.is_ok() { End::Reset } else { End::Close },
    };
    match end {
        End::Reset => {
            abort(&client);
            abort(&server);
        }
        // A FIN before the close lets the peer read a clean end even if bytes it sent are still
        // unread here (closing with unread bytes alone sends RST).
        End::Close => {
            let _ = client.shutdown().await;
            let _ = server.shutdown().await;
        }
        End::Eof => {}
    }
}

/// Makes the coming drop of `stream` send RST instead of FIN.
fn abort(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Both directions; a clean end of one waits for the other, any other end stops both.
async fn pipe(client: &mut TcpStream, server: &mut TcpStream, rx: watch::Receiver<Setting>) -> End {
    let budget = Mutex::new(Budget::default());
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    let up = pump(client_read, server_write, rx.clone(), &budget);
    let down = pump(server_read, client_write, rx, &budget);
    tokio::pin!(up, down);
    tokio::select! {
        end = &mut up => if end == End::Eof { down.await } else { end },
        end = &mut down => if end == End::Eof { up.await } else { end },
    }
}

async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut rx: watch::Receiver<Setting>,
    budget: &Mutex<Budget>,
) -> End {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return End::Eof;
            }
            Ok(n) => n,
            // An abort on one side is passed on as one, as the other peer would have seen it.
            Err(_) => return End::Reset,
        };
        if let Err(end) = forward(&buf[..n], &mut to, &mut rx, budget).await {
            return end;
        }
    }
}

/// Delivers one chunk under the current fault; `Err` ends the connection.
async fn forward(
    chunk: &[u8],
    to: &mut (impl AsyncWrite + Unpin),
    rx: &mut watch::Receiver<Setting>,
    budget: &Mutex<Budget>,
) -> Result<(), End> {
    loop {
        let setting = *rx.borrow_and_update();
        match setting.fault {
            Fault::None => return write(to, chunk).await,
            Fault::Latency(delay) => {
                tokio::time::sleep(delay).await;
                return write(to, chunk).await;
            }
            // Reset itself is acted on by `serve`; here the chunk just waits like a black-holed one.
            Fault::BlackHole | Fault::Reset => rx.changed().await.map_err(|_| End::Close)?,
            Fault::CloseAfter(limit) => {
                let (allowed, spent) = budget.lock().unwrap().take(setting.epoch, limit, chunk.len());
                write(to, &chunk[..allowed]).await?;
                return if spent { Err(End::Close) } else { Ok(()) };
            }
        }
    }
}

async fn write(to: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> Result<(), End> {
    to.write_all(bytes).await.map_err(|_| End::Reset)
}

/// The bytes a connection has forwarded under the `CloseAfter` of one epoch.
#[derive(Default)]
struct Budget {
    epoch: u64,
    spent: u64,
}

impl Budget {
    /// Takes up to `want` bytes of `limit`: how many may go, and whether the limit is reached.
    fn take(&mut self, epoch: u64, limit: u64, want: usize) -> (usize, bool) {
        if self.epoch != epoch {
            *self = Budget { epoch, spent: 0 };
        }
        let allowed = limit.saturating_sub(self.spent).min(want as u64);
        self.spent += allowed;
        (allowed as usize, self.spent >= limit)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use tokio::time::{Instant, timeout};

    use super::*;

    /// Generous: only a guard against a hanging test, never a timing assertion.
    const PATIENCE: Duration = Duration::from_secs(5);

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn proxied() -> (FaultProxy, TcpStream) {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let client = TcpStream::connect(proxy.addr()).await.unwrap();
        (proxy, client)
    }

    async fn within<T>(future: impl Future<Output = T>) -> T {
        timeout(PATIENCE, future).await.expect("no answer within the patience")
    }

    async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
        stream.write_all(message).await.unwrap();
        let mut answer = vec![0; message.len()];
        within(stream.read_exact(&mut answer)).await.unwrap();
        answer
    }

    /// Whether the next read ends the stream (EOF or an error) rather than yielding bytes.
    async fn ends(stream: &mut TcpStream) -> bool {
        !matches!(within(stream.read(&mut [0; 64])).await, Ok(n) if n > 0)
    }

    /// Whether nothing at all (not even an end) arrives for 300 ms.
    async fn silent(stream: &mut TcpStream) -> bool {
        timeout(Duration::from_millis(300), stream.read(&mut [0; 8]))
            .await
            .is_err()
    }

    async fn until(condition: impl Fn() -> bool) {
        within(async {
            while !condition() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    #[tokio::test]
    async fn passes_bytes_through_and_counts_connections() {
        let (proxy, mut client) = proxied().await;
        assert_eq!(round_trip(&mut client, b"hello").await, b"hello");
        assert_eq!((proxy.connections(), proxy.accepted()), (1, 1));
        drop(client);
        until(|| proxy.connections() == 0).await;
    }

    #[tokio::test]
    async fn latency_delays_each_direction() {
        let (proxy, mut client) = proxied().await;
        let latency = Duration::from_millis(100);
        proxy.set(Fault::Latency(latency));
        let started = Instant::now();
        assert_eq!(round_trip(&mut client, b"slow").await, b"slow");
        assert!(started.elapsed() >= 2 * latency, "took {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn black_hole_forwards_nothing_until_lifted() {
        let (proxy, mut open) = proxied().await;
        proxy.set(Fault::BlackHole);
        let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
        for stream in [&mut open, &mut new] {
            stream.write_all(b"lost?").await.unwrap();
        }
        let (open_silent, new_silent) = tokio::join!(silent(&mut open), silent(&mut new));
        assert!(open_silent && new_silent, "an answer came through the black hole");
        proxy.set(Fault::None);
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut fresh, b"back").await, b"back");
        // Held, not dropped: the bytes sent into the hole arrive once it lifts.
        let mut held = [0; 5];
        within(open.read_exact(&mut held)).await.unwrap();
        assert_eq!(&held, b"lost?");
    }

    #[tokio::test]
    async fn reset_aborts_open_connections_and_refuses_new_ones() {
        let (proxy, mut client) = proxied().await;
        assert_eq!(round_trip(&mut client, b"ok").await, b"ok");
        proxy.set(Fault::Reset);
        assert!(ends(&mut client).await);
        until(|| proxy.connections() == 0).await;
        let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(ends(&mut refused).await);
        assert_eq!(proxy.accepted(), 2);
    }

    #[tokio::test]
    async fn close_after_limits_the_bytes_of_a_connection() {
        let (proxy, _) = proxied().await;
        proxy.set(Fault::CloseAfter(10));
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        client.write_all(&[7; 100]).await.unwrap();
        let mut echoed = Vec::new();
        within(client.read_to_end(&mut echoed)).await.unwrap();
        assert!(echoed.len() <= 10, "{} bytes echoed", echoed.len());
        // Five bytes each way spend the ten exactly: the echo arrives, then the end.
        let mut exact = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut exact, b"fives").await, b"fives");
        assert_eq!(within(exact.read(&mut [0; 8])).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_its_connections() {
        let (proxy, mut client) = proxied().await;
        assert_eq!(round_trip(&mut client, b"ok").await, b"ok");
        let addr = proxy.addr();
        drop(proxy);
        assert!(ends(&mut client).await);
        // A connection the kernel queued before the listener went is aborted, not served.
        if let Ok(mut late) = TcpStream::connect(addr).await {
            assert!(ends(&mut late).await);
        }
    }
}
