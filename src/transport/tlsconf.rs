//! rustls configurations for mutual TLS, built from PEM files; shared by tls:// and quic://.
//!
//! Both sides prove who they are: the server with `--cert/--key` checked against the client's
//! `--ca`, the client with its own `--cert/--key` checked against the server's `--client-ca`.
//! The ring provider is named explicitly so no process-wide default has to be installed.

use crate::{Error, Result};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// ALPN protocol id of the lvmsync transport (both TLS over TCP and QUIC).
pub const ALPN: &[u8] = b"lvmsync/1";

/// The PEM files of one side of a mutual-TLS connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// This side's certificate chain (`--cert`).
    pub cert: Option<PathBuf>,
    /// This side's private key (`--key`).
    pub key: Option<PathBuf>,
    /// The CA that must have signed the peer (`--ca` on the client, `--client-ca` on the server).
    pub ca: Option<PathBuf>,
}

/// ring's default suites with AES-128-GCM first: as safe for this purpose, and fewer AES
/// rounds per byte than AES-256 on a bulk transfer.
fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(p)
}

fn pem_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unusable {
        source_name: path.display().to_string(),
        reason: format!("cannot read {what} (PEM expected): {e}"),
    }
}

fn need<'a>(p: &'a Option<PathBuf>, flag: &str, role: &str) -> Result<&'a Path> {
    p.as_deref().ok_or_else(|| {
        Error::InvalidArgument(format!("{role} needs {flag} <pem-file> for mutual TLS"))
    })
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(path, "certificates", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, "certificates", e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "certificates", "no CERTIFICATE block found"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_err(path, "a private key", e))
}

fn load_roots(path: &Path) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| pem_err(path, "a CA certificate", e))?;
    }
    Ok(Arc::new(roots))
}

fn tls_err(what: &str, e: rustls::Error) -> Error {
    Error::InvalidArgument(format!("{what}: {e}"))
}

/// Client side: trust `ca` for the server; present `cert`/`key` if given (the server refuses
/// a client without one, with a message saying so).
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>> {
    let roots = load_roots(need(&files.ca, "--ca", "a tls:// or quic:// sender")?)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("TLS client setup", e))?
        .with_root_certificates(roots);
    let mut config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| tls_err(&format!("{} / {}", cert.display(), key.display()), e))?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(Error::InvalidArgument(
                "--cert and --key go together".to_string(),
            ))
        }
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Server side: present `cert`/`key`, and require a client certificate signed by `ca`.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>> {
    let role = "a tls:// or quic:// receiver";
    let ca = need(&files.ca, "--client-ca", role)?;
    let cert = need(&files.cert, "--cert", role)?;
    let key = need(&files.key, "--key", role)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(load_roots(ca)?, provider())
        .build()
        .map_err(|e| {
            Error::InvalidArgument(format!("{}: client CA unusable: {e}", ca.display()))
        })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("TLS server setup", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| tls_err(&format!("{} / {}", cert.display(), key.display()), e))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The name the server's certificate must carry: the URL's host (DNS name or IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_string()).map_err(|e| {
        Error::InvalidArgument(format!("{host:?} is not a valid TLS server name: {e}"))
    })
}

/// Turn a rustls failure into advice a person can act on.
pub fn explain(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let hint = match e {
        E::AlertReceived(A::CertificateRequired) => {
            "the server requires a client certificate: pass --cert and --key"
        }
        E::NoCertificatesPresented => "the client sent no certificate (it needs --cert and --key)",
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "the peer's certificate is not signed by the CA this side trusts (--ca / --client-ca)"
        }
        E::AlertReceived(A::UnknownCA) => {
            "the peer does not trust the CA that signed our certificate (check its --ca / --client-ca)"
        }
        E::AlertReceived(A::BadCertificate | A::DecryptError) => {
            "the peer rejected our certificate (untrusted CA, or not valid for the name used)"
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the server's certificate does not name the host in the URL"
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "a certificate has expired",
        E::InvalidMessage(_) => "the peer did not speak TLS (a plaintext client on a TLS port?)",
        E::NoApplicationProtocol | E::AlertReceived(A::NoApplicationProtocol) => {
            "the peer is not an lvmsync transport endpoint (ALPN mismatch)"
        }
        _ => "",
    };
    if hint.is_empty() {
        format!("TLS failed: {e}")
    } else {
        format!("TLS failed: {e}: {hint}")
    }
}
