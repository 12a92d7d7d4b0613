//! A development CA for `ordermesh up --tls` and the tests, made at run time (no key is ever in
//! the repository): one self-signed CA, and for each workload a certificate naming it by SPIFFE
//! id — plus `localhost`, `127.0.0.1` and its Service's DNS names, so that a caller dialling any
//! of them can verify the server as well.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use super::tls::{HttpsConfig, WorkloadTls};
use super::{SpiffeId, Workload};

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct DevCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    trust_domain: String,
    namespace: String,
}

impl DevCa {
    pub fn generate(trust_domain: &str, namespace: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name("ordermesh development CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self {
            issuer,
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
        })
    }

    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The certificate of `workload`: its SPIFFE id, for both ends of a connection.
    pub fn issue(&self, workload: Workload) -> anyhow::Result<Issued> {
        self.issue_as(workload, &self.namespace)
    }

    /// The certificate of `workload` in `namespace` (tests: a workload of another namespace).
    pub fn issue_as(&self, workload: Workload, namespace: &str) -> anyhow::Result<Issued> {
        let id = SpiffeId::new(&self.trust_domain, namespace, workload);
        let service = workload.name();
        let mut params = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            service.to_owned(),
            format!("{service}.{namespace}.svc.cluster.local"),
        ])?;
        params.subject_alt_names.push(SanType::URI(id.to_string().try_into()?));
        params.distinguished_name = name(service);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// A server certificate for `hosts` (the BFF's HTTPS).
    pub fn issue_server(&self, hosts: &[&str]) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name = name(hosts.first().copied().unwrap_or("ordermesh"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> anyhow::Result<Issued> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// `workload`'s TLS settings, trusting this CA on both sides.
    pub fn workload_tls(&self, workload: Workload) -> anyhow::Result<WorkloadTls> {
        let issued = self.issue(workload)?;
        WorkloadTls::from_pem(
            issued.cert_pem.into_bytes(),
            issued.key_pem.into_bytes(),
            self.ca_pem().into_bytes(),
            self.ca_pem().into_bytes(),
        )
        .map_err(|(var, reason)| anyhow::anyhow!("{var}: {reason}"))
    }

    /// HTTPS for `hosts`, signed by this CA.
    pub fn https(&self, hosts: &[&str]) -> anyhow::Result<HttpsConfig> {
        let issued = self.issue_server(hosts)?;
        HttpsConfig::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).map_err(anyhow::Error::msg)
    }

    /// Writes `ca.pem` and, for each workload, `<workload>.pem` and `<workload>-key.pem` (keys
    /// readable by the owner only) into `dir`, for operators' tools such as grpcurl.
    pub fn write(&self, dir: &Path, workloads: &[Workload]) -> anyhow::Result<DevCaFiles> {
        std::fs::create_dir_all(dir)?;
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, self.ca_pem())?;
        for workload in workloads {
            let issued = self.issue(*workload)?;
            std::fs::write(dir.join(format!("{workload}.pem")), issued.cert_pem)?;
            write_private(&dir.join(format!("{workload}-key.pem")), &issued.key_pem)?;
        }
        Ok(DevCaFiles {
            dir: dir.to_owned(),
            ca,
        })
    }
}

/// Where [`DevCa::write`] put the files.
#[derive(Debug, Clone)]
pub struct DevCaFiles {
    pub dir: PathBuf,
    pub ca: PathBuf,
}

impl DevCaFiles {
    pub fn cert(&self, workload: Workload) -> PathBuf {
        self.dir.join(format!("{workload}.pem"))
    }

    pub fn key(&self, workload: Workload) -> PathBuf {
        self.dir.join(format!("{workload}-key.pem"))
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_certificate_names_its_workload() {
        crate::install_crypto_provider();
        let ca = DevCa::generate("cluster.local", "ordermesh").unwrap();
        let tls = ca.workload_tls(Workload::Order).unwrap();
        assert_eq!(
            tls.identity.to_string(),
            "spiffe://cluster.local/ns/ordermesh/sa/order-svc"
        );
        assert_eq!(tls.workload(), Some(Workload::Order));
    }
}
