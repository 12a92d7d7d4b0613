//! Mutual TLS between workloads without a mesh. Every workload has one certificate, naming it
//! as a SPIFFE id, which it presents both as a server and as a client; servers require a client
//! certificate from the CA they trust, and the [`super::WorkloadAuthzLayer`] reads the caller's
//! workload from it.
//!
//! Configuration: `GRPC_TLS_CERT_FILE` and `GRPC_TLS_KEY_FILE` (this workload's certificate
//! chain and key), `GRPC_TLS_CLIENT_CA_FILE` (the CA of callers' certificates) and
//! `GRPC_TLS_CA_FILE` (the CA of servers' certificates), all PEM; `MESH_TRUST_DOMAIN` (default
//! `cluster.local`) and `MESH_NAMESPACE` (default `ordermesh`) as in the SPIFFE ids. Setting
//! any of the four files turns TLS on and requires the other three.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{SpiffeId, Workload};
use crate::config::{ConfigError, Env};

pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
pub const DEFAULT_NAMESPACE: &str = "ordermesh";

/// A workload's certificate, key and trust anchors, checked when read.
#[derive(Clone)]
pub struct WorkloadTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Vec<u8>,
    ca_pem: Vec<u8>,
    /// The SPIFFE id in this workload's own certificate.
    pub identity: SpiffeId,
}

impl std::fmt::Debug for WorkloadTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("WorkloadTls")
            .field("identity", &self.identity.to_string())
            .finish()
    }
}

/// Where a trust domain and namespace come from, with their defaults.
pub fn trust_domain_and_namespace(env: &Env) -> (String, String) {
    (
        env.optional("MESH_TRUST_DOMAIN")
            .unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.to_owned()),
        env.optional("MESH_NAMESPACE")
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
    )
}

impl WorkloadTls {
    const VARS: [&'static str; 4] = [
        "GRPC_TLS_CERT_FILE",
        "GRPC_TLS_KEY_FILE",
        "GRPC_TLS_CLIENT_CA_FILE",
        "GRPC_TLS_CA_FILE",
    ];

    /// `None` when no `GRPC_TLS_*` file is set (plaintext, e.g. under a mesh's sidecar). The
    /// certificate must name `workload` in the configured trust domain and namespace.
    pub fn from_env(env: &Env, workload: Workload) -> Result<Option<Arc<Self>>, ConfigError> {
        if Self::VARS.iter().all(|var| env.optional(var).is_none()) {
            return Ok(None);
        }
        let read = |var: &str| -> Result<Vec<u8>, ConfigError> {
            let path = env
                .optional(var)
                .ok_or_else(|| ConfigError::new(var, "is required when any GRPC_TLS_* file is set"))?;
            std::fs::read(&path).map_err(|e| ConfigError::new(var, format!("cannot read {path}: {e}")))
        };
        let [cert, key, client_ca, ca] = Self::VARS.map(read);
        let tls =
            Self::from_pem(cert?, key?, client_ca?, ca?).map_err(|(var, reason)| ConfigError::new(var, reason))?;
        let (trust_domain, namespace) = trust_domain_and_namespace(env);
        let expected = SpiffeId::new(&trust_domain, &namespace, workload);
        if tls.identity != expected {
            return Err(ConfigError::new(
                "GRPC_TLS_CERT_FILE",
                format!(
                    "the certificate names {}, but this workload is {expected}",
                    tls.identity
                ),
            ));
        }
        Ok(Some(Arc::new(tls)))
    }

    /// From PEM text; an error names the variable whose file is at fault.
    pub fn from_pem(
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        client_ca_pem: Vec<u8>,
        ca_pem: Vec<u8>,
    ) -> Result<Self, (&'static str, String)> {
        let chain = certificates(&cert_pem).map_err(|e| ("GRPC_TLS_CERT_FILE", e))?;
        PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| ("GRPC_TLS_KEY_FILE", format!("no private key in PEM: {e}")))?;
        certificates(&client_ca_pem).map_err(|e| ("GRPC_TLS_CLIENT_CA_FILE", e))?;
        certificates(&ca_pem).map_err(|e| ("GRPC_TLS_CA_FILE", e))?;
        let identity = spiffe_id(&chain[0]).map_err(|e| ("GRPC_TLS_CERT_FILE", e))?;
        Ok(Self {
            cert_pem,
            key_pem,
            client_ca_pem,
            ca_pem,
            identity,
        })
    }

    /// The workload the certificate names.
    pub fn workload(&self) -> Option<Workload> {
        self.identity.service_account.parse().ok()
    }

    /// The gRPC server's side: this certificate, and a client certificate from the client CA
    /// required on every connection.
    pub fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(tonic::transport::Certificate::from_pem(&self.client_ca_pem))
            .client_auth_optional(false)
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// A client's side: servers verified against the CA, this certificate presented.
    pub fn client_config(&self) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem))
            .identity(tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem))
    }
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read the PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// The SPIFFE id in a certificate's URI subject alternative names.
pub fn spiffe_id(cert: &CertificateDer<'_>) -> Result<SpiffeId, String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let names = parsed
        .subject_alternative_name()
        .map_err(|e| format!("unreadable subject alternative names: {e}"))?;
    names
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .find_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(uri.parse::<SpiffeId>()),
            _ => None,
        })
        .unwrap_or_else(|| Err("the certificate carries no spiffe:// URI".into()))
}

/// Server-only TLS for an HTTP listener (the BFF's HTTPS: browsers present no certificate), from
/// `BFF_TLS_CERT_FILE` and `BFF_TLS_KEY_FILE`.
#[derive(Clone)]
pub struct HttpsConfig(Arc<rustls::ServerConfig>);

impl std::fmt::Debug for HttpsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpsConfig")
    }
}

impl HttpsConfig {
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let (cert_var, key_var) = ("BFF_TLS_CERT_FILE", "BFF_TLS_KEY_FILE");
        match (env.optional(cert_var), env.optional(key_var)) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError::new(key_var, format!("is required with {cert_var}"))),
            (None, Some(_)) => Err(ConfigError::new(cert_var, format!("is required with {key_var}"))),
            (Some(cert), Some(key)) => {
                let read = |var: &str, path: &str| {
                    std::fs::read(path).map_err(|e| ConfigError::new(var, format!("cannot read {path}: {e}")))
                };
                let (cert_pem, key_pem) = (read(cert_var, &cert)?, read(key_var, &key)?);
                Self::from_pem(&cert_pem, &key_pem)
                    .map(Some)
                    .map_err(|e| ConfigError::new(cert_var, e))
            }
        }
    }

    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, String> {
        let chain = certificates(cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("no private key in PEM: {e}"))?;
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self(Arc::new(config)))
    }
}

/// A listener that hands out connections once their TLS handshake is done. Handshakes run in
/// their own tasks, so a slow or silent client never holds up the accept loop.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    _accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: &HttpsConfig) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config.0.clone());
        let (sender, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::debug!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake refused"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            local_addr,
            ready,
            _accepting: accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self._accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop ends only when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::dev_ca::DevCa;

    fn env_for(dir: &std::path::Path, ca: &DevCa, workload: Workload) -> Vec<(String, String)> {
        let files = ca.write(dir, &[workload]).unwrap();
        let path = |p: std::path::PathBuf| p.display().to_string();
        vec![
            ("GRPC_TLS_CERT_FILE".into(), path(files.cert(workload))),
            ("GRPC_TLS_KEY_FILE".into(), path(files.key(workload))),
            ("GRPC_TLS_CLIENT_CA_FILE".into(), path(files.ca.clone())),
            ("GRPC_TLS_CA_FILE".into(), path(files.ca.clone())),
        ]
    }

    #[test]
    fn tls_is_off_without_files_and_on_with_all_four() {
        crate::install_crypto_provider();
        assert!(
            WorkloadTls::from_env(&Env::default(), Workload::Order)
                .unwrap()
                .is_none()
        );
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::generate(DEFAULT_TRUST_DOMAIN, DEFAULT_NAMESPACE).unwrap();
        let env = Env::from_pairs(env_for(dir.path(), &ca, Workload::Order));
        let tls = WorkloadTls::from_env(&env, Workload::Order).unwrap().unwrap();
        assert_eq!(tls.workload(), Some(Workload::Order));
    }

    #[test]
    fn a_partial_or_wrong_tls_configuration_names_the_variable() {
        crate::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::generate(DEFAULT_TRUST_DOMAIN, DEFAULT_NAMESPACE).unwrap();
        let all = env_for(dir.path(), &ca, Workload::Order);

        // One of the four missing.
        let partial: Vec<_> = all.iter().filter(|(k, _)| k != "GRPC_TLS_CA_FILE").cloned().collect();
        let error = WorkloadTls::from_env(&Env::from_pairs(partial), Workload::Order).unwrap_err();
        assert_eq!(error.var, "GRPC_TLS_CA_FILE");

        // A file that is not there, or holds no certificate.
        let mut missing = all.clone();
        missing[0].1 = dir.path().join("nope.pem").display().to_string();
        let error = WorkloadTls::from_env(&Env::from_pairs(missing), Workload::Order).unwrap_err();
        assert_eq!(error.var, "GRPC_TLS_CERT_FILE");
        let mut not_a_ca = all.clone();
        not_a_ca[2].1 = all[1].1.clone();
        let error = WorkloadTls::from_env(&Env::from_pairs(not_a_ca), Workload::Order).unwrap_err();
        assert_eq!(error.var, "GRPC_TLS_CLIENT_CA_FILE");

        // Another workload's certificate, or one of another namespace.
        let error = WorkloadTls::from_env(&Env::from_pairs(all.clone()), Workload::Payment).unwrap_err();
        assert_eq!(error.var, "GRPC_TLS_CERT_FILE");
        assert!(
            error.reason.contains("order-svc") && error.reason.contains("payment-svc"),
            "{error}"
        );
        let mut elsewhere = all;
        elsewhere.push(("MESH_NAMESPACE".into(), "elsewhere".into()));
        let error = WorkloadTls::from_env(&Env::from_pairs(elsewhere), Workload::Order).unwrap_err();
        assert_eq!(error.var, "GRPC_TLS_CERT_FILE");
    }

    #[test]
    fn a_certificate_without_a_spiffe_id_is_refused() {
        crate::install_crypto_provider();
        let ca = DevCa::generate(DEFAULT_TRUST_DOMAIN, DEFAULT_NAMESPACE).unwrap();
        let server = ca.issue_server(&["localhost"]).unwrap();
        let pem = ca.ca_pem().into_bytes();
        let Err((var, reason)) = WorkloadTls::from_pem(
            server.cert_pem.into_bytes(),
            server.key_pem.into_bytes(),
            pem.clone(),
            pem,
        ) else {
            panic!("a certificate without a SPIFFE id was accepted")
        };
        assert_eq!(var, "GRPC_TLS_CERT_FILE");
        assert!(reason.contains("spiffe"), "{reason}");
    }

    #[test]
    fn https_needs_both_files() {
        crate::install_crypto_provider();
        assert!(HttpsConfig::from_env(&Env::default()).unwrap().is_none());
        let only_cert = Env::from_pairs([("BFF_TLS_CERT_FILE", "/tmp/cert.pem")]);
        assert_eq!(HttpsConfig::from_env(&only_cert).unwrap_err().var, "BFF_TLS_KEY_FILE");
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::generate(DEFAULT_TRUST_DOMAIN, DEFAULT_NAMESPACE).unwrap();
        let issued = ca.issue_server(&["localhost"]).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, issued.cert_pem).unwrap();
        std::fs::write(&key, issued.key_pem).unwrap();
        let env = Env::from_pairs([
            ("BFF_TLS_CERT_FILE", cert.display().to_string()),
            ("BFF_TLS_KEY_FILE", key.display().to_string()),
        ]);
        assert!(HttpsConfig::from_env(&env).unwrap().is_some());
        let swapped = Env::from_pairs([
            ("BFF_TLS_CERT_FILE", key.display().to_string()),
            ("BFF_TLS_KEY_FILE", cert.display().to_string()),
        ]);
        assert_eq!(HttpsConfig::from_env(&swapped).unwrap_err().var, "BFF_TLS_CERT_FILE");
    }
}
