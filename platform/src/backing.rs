//! Encryption in transit to the backing services, from configuration and checked at start-up:
//!
//! - PostgreSQL: libpq's own parameters in `DATABASE_URL` (`sslmode=verify-full&sslrootcert=…`,
//!   or `PGSSLROOTCERT`). A URL that asks to verify the server must name the CA.
//! - Redis: `rediss://` in `REDIS_URL` with the server's CA in `REDIS_CA_FILE`.
//! - NATS: `tls://` in `NATS_URL` (or `NATS_CA_FILE` alone) with the server's CA in
//!   `NATS_CA_FILE`; the client's own credentials as a certificate (`NATS_CLIENT_CERT_FILE`,
//!   `NATS_CLIENT_KEY_FILE`) and/or a credentials file (`NATS_CREDS_FILE`, a user JWT and nkey).
//!
//! A URL that asks for TLS without its CA is refused with the variable to set, instead of
//! failing later against a certificate no public root vouches for.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::{ConfigError, Env};

/// How to reach NATS securely; all empty for a plain `nats://` connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsSecurity {
    /// The server certificate's CA; set, the connection must be TLS.
    pub ca_file: Option<PathBuf>,
    /// This client's certificate and key (mutual TLS).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// A `.creds` file (user JWT and nkey seed).
    pub creds_file: Option<PathBuf>,
}

impl NatsSecurity {
    /// From `NATS_CA_FILE`, `NATS_CLIENT_CERT_FILE`/`NATS_CLIENT_KEY_FILE` and `NATS_CREDS_FILE`,
    /// checked against `NATS_URL`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let security = Self {
            ca_file: readable(env, "NATS_CA_FILE")?,
            client_cert: match (
                readable(env, "NATS_CLIENT_CERT_FILE")?,
                readable(env, "NATS_CLIENT_KEY_FILE")?,
            ) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(ConfigError::new(
                        "NATS_CLIENT_KEY_FILE",
                        "is required with NATS_CLIENT_CERT_FILE",
                    ));
                }
                (None, Some(_)) => {
                    return Err(ConfigError::new(
                        "NATS_CLIENT_CERT_FILE",
                        "is required with NATS_CLIENT_KEY_FILE",
                    ));
                }
            },
            creds_file: readable(env, "NATS_CREDS_FILE")?,
        };
        let tls_url = env
            .optional("NATS_URL")
            .is_some_and(|url| url.split(',').any(|u| u.trim().starts_with("tls://")));
        if tls_url && security.ca_file.is_none() {
            return Err(ConfigError::new(
                "NATS_CA_FILE",
                "is required with a tls:// NATS_URL: the CA that signed the server's certificate",
            ));
        }
        if let Some(ca) = &security.ca_file {
            check_certificates("NATS_CA_FILE", ca)?;
        }
        Ok(security)
    }

    /// The connection options these settings ask for.
    pub async fn apply(&self, mut options: async_nats::ConnectOptions) -> std::io::Result<async_nats::ConnectOptions> {
        if let Some(ca) = &self.ca_file {
            options = options.require_tls(true).add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if let Some(creds) = &self.creds_file {
            options = options.credentials_file(creds).await?;
        }
        Ok(options)
    }
}

/// `REDIS_CA_FILE`, required when `REDIS_URL` is `rediss://`.
pub fn redis_ca_from_env(env: &Env) -> Result<Option<PathBuf>, ConfigError> {
    let ca = readable(env, "REDIS_CA_FILE")?;
    let tls_url = env
        .optional("REDIS_URL")
        .is_some_and(|url| url.starts_with("rediss://"));
    match (&ca, tls_url) {
        (None, true) => Err(ConfigError::new(
            "REDIS_CA_FILE",
            "is required with a rediss:// REDIS_URL: the CA that signed the server's certificate",
        )),
        (Some(path), _) => check_certificates("REDIS_CA_FILE", path).map(|()| ca),
        (None, false) => Ok(None),
    }
}

/// Refuses a PostgreSQL URL that asks to verify the server (`sslmode=verify-ca|verify-full`)
/// without naming the CA (`sslrootcert=` or `PGSSLROOTCERT`), or naming one that cannot be read.
pub fn check_database_url(env: &Env, url: &str) -> Result<(), ConfigError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Ok(());
    }
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_owned())
    };
    let mode = param("sslmode").or_else(|| env.optional("PGSSLMODE"));
    if !matches!(mode.as_deref(), Some("verify-ca" | "verify-full")) {
        return Ok(());
    }
    let Some(root) = param("sslrootcert").or_else(|| env.optional("PGSSLROOTCERT")) else {
        return Err(ConfigError::new(
            "DATABASE_URL",
            "sslmode=verify-ca/verify-full needs the server's CA: add sslrootcert=<file> (or set PGSSLROOTCERT)",
        ));
    };
    check_certificates("DATABASE_URL", Path::new(&root))
}

/// A rustls client configuration trusting only the CA certificates in `ca_file`.
pub fn client_tls(ca_file: &Path) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| anyhow::anyhow!("{}: {e}", ca_file.display()))? {
        roots.add(cert.map_err(|e| anyhow::anyhow!("{}: {e}", ca_file.display()))?)?;
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(Arc::new(roots))
        .with_no_client_auth())
}

fn readable(env: &Env, var: &str) -> Result<Option<PathBuf>, ConfigError> {
    let Some(path) = env.optional(var) else {
        return Ok(None);
    };
    std::fs::metadata(&path).map_err(|e| ConfigError::new(var, format!("cannot read {path}: {e}")))?;
    Ok(Some(PathBuf::from(path)))
}

fn check_certificates(var: &str, path: &Path) -> Result<(), ConfigError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| ConfigError::new(var, format!("cannot read {}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError::new(var, format!("{}: not PEM certificates: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            var,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_file() -> (tempfile::TempDir, String) {
        crate::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::mesh::dev_ca::DevCa::generate("cluster.local", "ordermesh").unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.ca_pem()).unwrap();
        (dir, path.display().to_string())
    }

    #[test]
    fn a_url_asking_for_tls_without_its_ca_is_refused_naming_the_variable() {
        let (_dir, ca) = ca_file();
        let url = "postgres://u@db:5432/x?sslmode=verify-full";
        assert_eq!(
            check_database_url(&Env::default(), url).unwrap_err().var,
            "DATABASE_URL"
        );
        let with_root = format!("{url}&sslrootcert={ca}");
        check_database_url(&Env::default(), &with_root).unwrap();
        check_database_url(&Env::from_pairs([("PGSSLROOTCERT", ca.as_str())]), url).unwrap();
        let missing = format!("{url}&sslrootcert=/nonexistent/ca.pem");
        assert_eq!(
            check_database_url(&Env::default(), &missing).unwrap_err().var,
            "DATABASE_URL"
        );
        check_database_url(&Env::default(), "postgres://u@db/x?sslmode=require").unwrap();

        let redis = Env::from_pairs([("REDIS_URL", "rediss://cache:6379")]);
        assert_eq!(redis_ca_from_env(&redis).unwrap_err().var, "REDIS_CA_FILE");
        let redis = Env::from_pairs([("REDIS_URL", "rediss://cache:6379"), ("REDIS_CA_FILE", ca.as_str())]);
        assert!(redis_ca_from_env(&redis).unwrap().is_some());

        let nats = Env::from_pairs([("NATS_URL", "tls://bus:4222")]);
        assert_eq!(NatsSecurity::from_env(&nats).unwrap_err().var, "NATS_CA_FILE");
        let nats = Env::from_pairs([("NATS_URL", "tls://bus:4222"), ("NATS_CA_FILE", ca.as_str())]);
        assert!(NatsSecurity::from_env(&nats).unwrap().ca_file.is_some());
        let half = Env::from_pairs([("NATS_CLIENT_CERT_FILE", ca.as_str())]);
        assert_eq!(NatsSecurity::from_env(&half).unwrap_err().var, "NATS_CLIENT_KEY_FILE");
    }

    #[test]
    fn a_ca_file_that_holds_no_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let env = Env::from_pairs([
            ("REDIS_URL", "rediss://cache"),
            ("REDIS_CA_FILE", path.to_str().unwrap()),
        ]);
        assert_eq!(redis_ca_from_env(&env).unwrap_err().var, "REDIS_CA_FILE");
    }
}
