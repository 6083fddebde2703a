//! The one TLS crypto backend of the workspace: rustls with `ring` (boringtun already pulls it).

/// Installs `ring` as the process-wide rustls provider. Call first thing in `main`; calling it
/// again is harmless.
pub fn install_crypto_provider() {
    // Err means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    /// rustls panics in `builder()` when it cannot pick one provider; with ring installed and no
    /// second backend compiled in, both sides build.
    #[test]
    fn client_and_server_configs_build_with_ring() {
        super::install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default().expect("provider installed");
        assert!(!provider.cipher_suites.is_empty());
        let cert =
            rcgen::generate_simple_self_signed(vec!["demo.saas.localhost".into()]).expect("cert");
        let der = cert.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).expect("key");
        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).expect("root");
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let _ = (Arc::new(server), Arc::new(client));
    }
}
