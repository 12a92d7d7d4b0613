//! Servers a test starts and owns — never the machine's shared ones, which other tests and CI
//! use: PostgreSQL, NATS and Redis on free loopback ports, each in its own temporary directory,
//! speaking TLS only with certificates of a test CA, and stopped when dropped.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::mesh::Workload;
use crate::mesh::dev_ca::DevCa;

/// A test CA, a server certificate for `localhost`/`127.0.0.1` and a client certificate, as
/// PEM files.
pub struct TlsFiles {
    dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsFiles {
    pub fn generate() -> anyhow::Result<Self> {
        crate::install_crypto_provider();
        let dir = tempfile::tempdir()?;
        let ca = DevCa::generate("cluster.local", "ordermesh")?;
        let server = ca.issue_server(&["localhost", "127.0.0.1"])?;
        let client = ca.issue(Workload::Order)?;
        let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, text)?;
            Ok(path)
        };
        Ok(Self {
            ca: write("ca.pem", &ca.ca_pem())?,
            server_cert: write("server.pem", &server.cert_pem)?,
            server_key: write("server-key.pem", &server.key_pem)?,
            client_cert: write("client.pem", &client.cert_pem)?,
            client_key: write("client-key.pem", &client.key_pem)?,
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A server process of a test, stopped (and its directory removed) on drop.
pub struct OwnedServer {
    name: &'static str,
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl OwnedServer {
    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnedServer {
    fn drop(&mut self) {
        // A fast shutdown first (PostgreSQL removes its shared memory), then the hard way.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(server = self.name, "did not stop on SIGINT; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on loopback (bound and released: another process could take it in between, which
/// the server's start then reports).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

fn wait_for_port(name: &str, child: &mut Child, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("{name} exited at start with {status}");
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{name} did not listen on {addr} within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(name: &'static str, mut command: Command, port: u16, dir: tempfile::TempDir) -> anyhow::Result<OwnedServer> {
    let log = std::fs::File::create(dir.path().join(format!("{name}.log")))?;
    command.stdout(Stdio::null()).stderr(log);
    let mut child = command.spawn().with_context(|| format!("cannot start {name}"))?;
    if let Err(error) = wait_for_port(name, &mut child, port) {
        let _ = child.kill();
        let log = std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap_or_default();
        return Err(error.context(log));
    }
    Ok(OwnedServer {
        name,
        child,
        port,
        _dir: dir,
    })
}

/// redis-server with its plaintext port off (`--port 0`) and TLS on a free port.
pub fn redis_tls_only(tls: &TlsFiles) -> anyhow::Result<OwnedServer> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let mut command = Command::new("redis-server");
    command
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--tls-cert-file")
        .arg(&tls.server_cert)
        .arg("--tls-key-file")
        .arg(&tls.server_key)
        .arg("--tls-ca-cert-file")
        .arg(&tls.ca)
        .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir"])
        .arg(dir.path());
    spawn("redis-server", command, port, dir)
}

/// nats-server with JetStream, TLS only, requiring a client certificate of the test CA.
pub fn nats_tls_only(tls: &TlsFiles) -> anyhow::Result<OwnedServer> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = format!(
        "listen: 127.0.0.1:{port}\n\
         jetstream {{ store_dir: {store:?} }}\n\
         tls {{\n  cert_file: {cert:?}\n  key_file: {key:?}\n  ca_file: {ca:?}\n  verify: true\n}}\n",
        store = dir.path().join("jetstream"),
        cert = tls.server_cert,
        key = tls.server_key,
        ca = tls.ca,
    );
    let config_file = dir.path().join("nats.conf");
    std::fs::write(&config_file, config)?;
    let mut command = Command::new("nats-server");
    command.arg("-c").arg(&config_file);
    spawn("nats-server", command, port, dir)
}

/// A PostgreSQL cluster of its own (initdb in a temporary directory) that accepts only SSL
/// connections (`hostssl` in pg_hba.conf, nothing else), user `postgres` without a password.
/// Run as root, the server runs as the `postgres` user, as PostgreSQL requires.
pub fn postgres_ssl_only(tls: &TlsFiles) -> anyhow::Result<OwnedServer> {
    let bin = postgres_bin()?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let data = dir.path().join("data");
    let copy = |from: &Path, name: &str| -> anyhow::Result<PathBuf> {
        let to = dir.path().join(name);
        std::fs::copy(from, &to)?;
        Ok(to)
    };
    let cert = copy(&tls.server_cert, "server.pem")?;
    let key = copy(&tls.server_key, "server-key.pem")?;
    std::fs::write(dir.path().join("pg_hba.conf"), "hostssl all all 127.0.0.1/32 trust\n")?;
    let owner = run_as_postgres(dir.path(), &[&key])?;
    #[cfg(unix)]
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;

    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "--no-sync"])
        .stdout(Stdio::null());
    as_user(&mut initdb, owner);
    let output = initdb.output().context("cannot run initdb")?;
    anyhow::ensure!(
        output.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut postgres = Command::new(bin.join("postgres"));
    postgres
        .arg("-D")
        .arg(&data)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", &format!("port={port}")])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.path().display()))
        .args(["-c", "ssl=on", "-c", "fsync=off", "-c", "max_connections=200"])
        .arg("-c")
        .arg(format!("ssl_cert_file={}", cert.display()))
        .arg("-c")
        .arg(format!("ssl_key_file={}", key.display()))
        .arg("-c")
        .arg(format!("hba_file={}", dir.path().join("pg_hba.conf").display()));
    as_user(&mut postgres, owner);
    let server = spawn("postgres", postgres, port, dir)?;
    // Listening is not accepting: wait until start-up recovery is over.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Command::new(bin.join("pg_isready"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
        .status()?
        .success()
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "PostgreSQL did not accept connections within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(server)
}

/// The newest installed PostgreSQL's programs (Debian: `/usr/lib/postgresql/<major>/bin`).
fn postgres_bin() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL's programs are not installed (/usr/lib/postgresql)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| anyhow::anyhow!("no initdb under /usr/lib/postgresql/*/bin"))
}

/// PostgreSQL refuses to run as root: as root, hand `dir` (and `files`) to the `postgres` user
/// and return its uid and gid.
fn run_as_postgres(dir: &Path, files: &[&Path]) -> anyhow::Result<Option<(u32, u32)>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata("/proc/self")?.uid() != 0 {
            return Ok(None);
        }
        let passwd = std::fs::read_to_string("/etc/passwd")?;
        let (uid, gid) = passwd
            .lines()
            .map(|line| line.split(':').collect::<Vec<_>>())
            .find(|fields| fields.first() == Some(&"postgres"))
            .and_then(|f| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
            .ok_or_else(|| anyhow::anyhow!("running as root, but there is no postgres user"))?;
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
        for file in files {
            std::os::unix::fs::chown(file, Some(uid), Some(gid))?;
        }
        Ok(Some((uid, gid)))
    }
    #[cfg(not(unix))]
    {
        let _ = (dir, files);
        Ok(None)
    }
}

fn as_user(command: &mut Command, owner: Option<(u32, u32)>) {
    #[cfg(unix)]
    if let Some((uid, gid)) = owner {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(gid);
    }
}
