//! The one TLS crypto backend of the workspace: rustls with `ring` (boringtun already pulls it).

/// Installs `ring` as the process-wide rustls provider. Call first thing in `main`; calling it
/// again is harmless.
pub fn install_crypto_provider() {
    // Err means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
