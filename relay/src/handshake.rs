//! Our own opening of a WireGuard handshake initiation, up to its TAI64N timestamp.
//!
//! Replay protection choice: boringtun keeps the timestamp of the newest initiation inside its
//! private `Handshake`, and a fresh `Tunn` accepts any older initiation. Instead of keeping recent
//! `Tunn`s alive (16 KiB+ each), we decrypt the timestamp ourselves — the Noise IK steps of the
//! initiator's first message (x25519, BLAKE2s hash and HMAC chaining, ChaCha20-Poly1305) — and
//! keep the newest one in the peer's compact entry. It can therefore also be persisted
//! (`wg_peers.handshake_tai64`) and seeded on start, so a replay is refused across restarts too.
//!
//! Opening also authenticates: the timestamp is sealed with a key derived from the static-static
//! DH, so only the holder of the initiator's private key can produce it.

use blake2::{Blake2s256, Digest};
use boringtun::x25519::{PublicKey, StaticSecret};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};
use hmac012::Mac;

/// Length of a handshake initiation on the wire.
pub const INITIATION_LEN: usize = 148;

/// HASH("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s").
const INITIAL_CHAIN_KEY: [u8; 32] = [
    96, 226, 109, 174, 243, 39, 239, 192, 46, 195, 53, 226, 160, 37, 210, 208, 22, 235, 66, 6, 248,
    114, 119, 245, 45, 56, 209, 152, 139, 120, 205, 54,
];

/// HASH(INITIAL_CHAIN_KEY || "WireGuard v1 zx2c4 Jason@zx2c4.com").
const INITIAL_CHAIN_HASH: [u8; 32] = [
    34, 17, 179, 97, 8, 26, 197, 102, 105, 18, 67, 219, 69, 138, 213, 50, 45, 156, 108, 102, 34,
    147, 232, 183, 14, 225, 156, 101, 186, 7, 158, 243,
];

/// A TAI64N timestamp as sent in an initiation: 8 bytes of seconds and 4 of nanoseconds, both
/// big-endian, so the byte order is the time order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tai64N(pub [u8; 12]);

impl Tai64N {
    /// The 12 bytes (the `wg_peers.handshake_tai64` column).
    pub fn to_bytes(self) -> [u8; 12] {
        self.0
    }

    /// From the stored column; `None` unless exactly 12 bytes.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 12]>::try_from(b).ok().map(Self)
    }
}

/// What the relay learns from an initiation before any `Tunn` exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedInitiation {
    /// The initiator's sender index.
    pub sender_index: u32,
    /// The initiator's static public key.
    pub peer_static_public: [u8; 32],
    /// The initiation's timestamp.
    pub timestamp: Tai64N,
}

/// Why an initiation could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not a 148-byte message of type 1.
    #[error("not a handshake initiation")]
    NotInitiation,
    /// An AEAD tag did not verify (not for our key, or forged).
    #[error("initiation does not decrypt with this relay's key")]
    Decrypt,
}

type HmacBlake2s = hmac012::SimpleHmac<Blake2s256>;

fn hash(a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    h.update(a);
    h.update(b);
    h.finalize().into()
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // SimpleHmac takes keys of any length; the error arm cannot happen.
    let Ok(mut m) = <HmacBlake2s as Mac>::new_from_slice(key) else {
        return [0; 32];
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// KDF2 of the Noise spec: (new chaining key, key).
fn kdf2(chaining_key: &[u8; 32], input: &[u8]) -> ([u8; 32], [u8; 32]) {
    let temp = hmac(chaining_key, &[input]);
    let ck = hmac(&temp, &[&[0x01]]);
    let key = hmac(&temp, &[&ck, &[0x02]]);
    (ck, key)
}

fn aead_open(key: &[u8; 32], sealed: &[u8], aad: &[u8], out: &mut [u8]) -> Result<(), OpenError> {
    let (ct, tag) = sealed.split_at(sealed.len().saturating_sub(16));
    if ct.len() != out.len() || tag.len() != 16 {
        return Err(OpenError::NotInitiation);
    }
    out.copy_from_slice(ct);
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt_in_place_detached(Nonce::from_slice(&[0; 12]), aad, out, Tag::from_slice(tag))
        .map_err(|_| OpenError::Decrypt)
}

/// Opens an initiation addressed to `static_private` up to its timestamp.
///
/// Does not check mac1/mac2 (the front rate limiter does that first).
pub fn open_initiation(
    static_private: &StaticSecret,
    static_public: &PublicKey,
    datagram: &[u8],
) -> Result<OpenedInitiation, OpenError> {
    if datagram.len() != INITIATION_LEN || datagram[..4] != [1, 0, 0, 0] {
        return Err(OpenError::NotInitiation);
    }
    let sender_index = u32::from_le_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
    let mut ephemeral = [0u8; 32];
    ephemeral.copy_from_slice(&datagram[8..40]);
    let encrypted_static = &datagram[40..88];
    let encrypted_timestamp = &datagram[88..116];

    let mut h = hash(&INITIAL_CHAIN_HASH, static_public.as_bytes());
    h = hash(&h, &ephemeral);
    let (ck, _) = kdf2(&INITIAL_CHAIN_KEY, &ephemeral);
    let es = static_private.diffie_hellman(&PublicKey::from(ephemeral));
    let (ck, key) = kdf2(&ck, es.as_bytes());
    let mut peer_static_public = [0u8; 32];
    aead_open(&key, encrypted_static, &h, &mut peer_static_public)?;
    h = hash(&h, encrypted_static);
    let ss = static_private.diffie_hellman(&PublicKey::from(peer_static_public));
    let (_, key) = kdf2(&ck, ss.as_bytes());
    let mut ts = [0u8; 12];
    aead_open(&key, encrypted_timestamp, &h, &mut ts)?;
    Ok(OpenedInitiation {
        sender_index,
        peer_static_public,
        timestamp: Tai64N(ts),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use boringtun::noise::handshake::parse_handshake_anon;
    use boringtun::noise::{Packet, Tunn, TunnResult};

    fn initiation(client: &mut Tunn) -> Vec<u8> {
        let mut buf = vec![0u8; 256];
        match client.format_handshake_initiation(&mut buf, true) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn opens_boringtun_initiations() {
        let (server_secret, server_public) = crate::keys::generate();
        let (client_secret, client_public) = crate::keys::generate();
        let mut client = Tunn::new(client_secret, server_public, None, None, 7, None);
        let first = initiation(&mut client);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = initiation(&mut client);

        let a = open_initiation(&server_secret, &server_public, &first).unwrap();
        let b = open_initiation(&server_secret, &server_public, &second).unwrap();
        assert_eq!(a.peer_static_public, *client_public.as_bytes());
        let Ok(Packet::HandshakeInit(p)) = Tunn::parse_incoming_packet(&first) else {
            panic!()
        };
        let anon = parse_handshake_anon(&server_secret, &server_public, &p).unwrap();
        assert_eq!(anon.peer_static_public, a.peer_static_public);
        assert_eq!(anon.peer_index, a.sender_index);
        assert_eq!(a.sender_index >> 8, 7);
        assert!(
            b.timestamp > a.timestamp,
            "{:?} !> {:?}",
            b.timestamp,
            a.timestamp
        );
        // TAI64 label: seconds are offset by 2^62.
        assert_eq!(a.timestamp.0[0] & 0xC0, 0x40);
        assert_eq!(
            Tai64N::from_slice(&a.timestamp.to_bytes()),
            Some(a.timestamp)
        );
    }

    #[test]
    fn rejects_other_keys_and_garbage() {
        let (_, server_public) = crate::keys::generate();
        let (other_secret, other_public) = crate::keys::generate();
        let (client_secret, _) = crate::keys::generate();
        let mut client = Tunn::new(client_secret, server_public, None, None, 1, None);
        let init = initiation(&mut client);
        assert_eq!(
            open_initiation(&other_secret, &other_public, &init),
            Err(OpenError::Decrypt)
        );
        assert_eq!(
            open_initiation(&other_secret, &other_public, &init[..100]),
            Err(OpenError::NotInitiation)
        );
        let mut flipped = init.clone();
        flipped[100] ^= 1;
        assert!(open_initiation(&other_secret, &other_public, &flipped).is_err());
    }
}
