//! Key helpers: the relay node's static key pair and the base64 form WireGuard tools use.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use boringtun::x25519::{PublicKey, StaticSecret};

/// A key that is not 32 bytes of standard base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a WireGuard key (32 bytes, standard base64)")]
pub struct KeyError;

/// A fresh static key pair (for a relay node, or a peer whose key the platform generates).
pub fn generate() -> (StaticSecret, PublicKey) {
    let secret = StaticSecret::random_from_rng(rand::rngs::OsRng);
    let public = PublicKey::from(&secret);
    (secret, public)
}

/// The base64 form of a 32-byte key (`wg genkey` / `wg pubkey` style).
pub fn encode(key: &[u8; 32]) -> String {
    STANDARD.encode(key)
}

/// Parses a base64 key (surrounding whitespace is ignored).
pub fn decode(text: &str) -> Result<[u8; 32], KeyError> {
    let bytes = STANDARD.decode(text.trim()).map_err(|_| KeyError)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError)
}

/// Parses a base64 private key.
pub fn decode_secret(text: &str) -> Result<StaticSecret, KeyError> {
    decode(text).map(StaticSecret::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let (secret, public) = generate();
        let text = encode(public.as_bytes());
        assert_eq!(text.len(), 44);
        assert_eq!(&decode(&text).unwrap(), public.as_bytes());
        let s = decode_secret(&encode(&secret.to_bytes())).unwrap();
        assert_eq!(PublicKey::from(&s), public);
        assert_eq!(decode("abc"), Err(KeyError));
        assert_eq!(decode(&STANDARD.encode([1u8; 31])), Err(KeyError));
    }
}
