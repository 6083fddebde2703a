//! API-SSL (8729) with trust on first use: RouterOS's onboarding script makes a self-signed
//! certificate, so there is no CA to check against. We accept the first certificate a NAS shows,
//! remember its SHA-256 fingerprint, and refuse any other until an admin re-pins.

use std::sync::{Arc, Mutex};

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};

use super::RosError;

/// SHA-256 of a DER certificate, lowercase hex (what RouterOS's `/certificate print` shows).
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}

/// Accepts exactly the pinned certificate, or any certificate when nothing is pinned yet; the
/// handshake signature is still verified, so the peer must hold the certificate's key.
#[derive(Debug)]
struct PinVerifier {
    pinned: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity);
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(fp.clone());
        }
        match &self.pinned {
            Some(p) if !p.eq_ignore_ascii_case(&fp) => Err(rustls::Error::General(
                "certificate does not match the pinned fingerprint".into(),
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS stream to a NAS and the fingerprint of the certificate it showed.
pub struct Pinned<S> {
    /// The stream.
    pub stream: tokio_rustls::client::TlsStream<S>,
    /// SHA-256 of the router's certificate.
    pub fingerprint: String,
}

/// Runs the TLS handshake over `stream`, accepting only `pinned` (or anything when `None`).
///
/// # Errors
/// [`RosError::CertificateChanged`] when the router shows another certificate than the pinned
/// one; [`RosError::Tls`] for other handshake failures.
pub async fn connect<S>(stream: S, pinned: Option<&str>) -> Result<Pinned<S>, RosError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = Arc::new(Mutex::new(None));
    let verifier = Arc::new(PinVerifier {
        pinned: pinned.map(str::to_owned),
        seen: seen.clone(),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RosError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // The name is not checked (the pin is); RouterOS ignores SNI.
    let name = ServerName::try_from("routeros.invalid")
        .map_err(|e| RosError::Tls(e.to_string()))?
        .to_owned();
    let presented = || seen.lock().ok().and_then(|s| s.clone());
    match connector.connect(name, stream).await {
        Ok(stream) => {
            let fingerprint =
                presented().ok_or_else(|| RosError::Tls("no certificate presented".into()))?;
            Ok(Pinned {
                stream,
                fingerprint,
            })
        }
        Err(e) => match (pinned, presented()) {
            (Some(p), Some(got)) if !p.eq_ignore_ascii_case(&got) => {
                Err(RosError::CertificateChanged {
                    pinned: p.to_owned(),
                    presented: got,
                })
            }
            _ => Err(RosError::Tls(e.to_string())),
        },
    }
}
