//! The certificate the HTTPS listener serves, swapped in place after a renewal: rustls asks the
//! resolver on every handshake, so new connections get the new chain and open ones keep theirs.

use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::AcmeError;

/// Hands rustls the current certificate (none until one is loaded: handshakes then fail).
#[derive(Debug, Default)]
pub struct CertResolver {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl CertResolver {
    /// An empty resolver.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Replaces the served certificate.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(key);
    }

    /// Whether a certificate is loaded.
    pub fn has_certificate(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// A rustls server configuration that serves whatever this resolver holds (HTTP/1.1 only,
    /// as the API listener).
    pub fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
        let mut c = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        c
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // One certificate covers <base> and *.<base>: every name gets it.
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Builds what rustls serves from a PEM chain (leaf first) and a PEM private key.
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, AcmeError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| AcmeError::Certificate(format!("chain is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(AcmeError::Certificate("chain holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| AcmeError::Certificate(format!("private key is not PEM: {e}")))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| AcmeError::Certificate(format!("private key not usable: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}
