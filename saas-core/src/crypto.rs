//! Secrets at rest (AEAD under the server key, prefixed with a key id), password hashing (argon2id)
//! and TOTP.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Errors of the secret box and password hashing.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The server key is not 32 bytes of base64.
    #[error("server key must be 32 bytes encoded as base64 ({0})")]
    BadKey(String),
    /// A stored value was sealed under a key id we do not hold.
    #[error(
        "secret was sealed with key id {0}, which this server does not have (rotate or restore the key)"
    )]
    UnknownKeyId(String),
    /// A stored value is malformed or fails authentication.
    #[error("stored secret is corrupt or was tampered with")]
    Corrupt,
    /// Reading or writing the key file failed.
    #[error("server key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Password hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// A 32-byte server key with its key id (first 8 hex digits of its SHA-256).
#[derive(Clone)]
pub struct ServerKey {
    id: String,
    bytes: [u8; 32],
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKey")
            .field("id", &self.id)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

impl ServerKey {
    /// Decodes a base64 key.
    pub fn from_base64(s: &str) -> Result<Self, CryptoError> {
        let raw = STANDARD
            .decode(s.trim())
            .map_err(|e| CryptoError::BadKey(e.to_string()))?;
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|v: Vec<u8>| CryptoError::BadKey(format!("got {} bytes", v.len())))?;
        Ok(Self::from_bytes(bytes))
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        Self {
            id: hex::encode(&digest.as_ref()[..4]),
            bytes,
        }
    }

    /// A new random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        fill_random(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// The key as base64 (for writing the key file).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    /// The key id that prefixes every value sealed with it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Loads the key file, or creates it (mode 0600) when it does not exist. Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), CryptoError> {
        let io = |source| CryptoError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(s) => Ok((Self::from_base64(&s)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                write_private_file(path, key.to_base64().as_bytes()).map_err(io)?;
                Ok((key, true))
            }
            Err(e) => Err(io(e)),
        }
    }
}

#[cfg(unix)]
fn write_private_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

/// Fills `buf` from the system CSPRNG.
pub fn fill_random(buf: &mut [u8]) {
    // SystemRandom only fails when the OS has no entropy source, which we cannot run without.
    #[allow(clippy::expect_used)]
    SystemRandom::new()
        .fill(buf)
        .expect("operating system random source failed");
}

/// A random token of `n` bytes, URL-safe base64 without padding.
pub fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    fill_random(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// A random password that is easy to copy: 20 characters of a-z, A-Z, 2-9.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 20];
    fill_random(&mut b);
    b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}

/// Seals and opens secrets with the current server key; older keys can still open their values.
#[derive(Clone)]
pub struct SecretBox {
    current: ServerKey,
    previous: Vec<ServerKey>,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretBox")
            .field("key_id", &self.current.id)
            .finish_non_exhaustive()
    }
}

const SEALED_PREFIX: &str = "v1";

impl SecretBox {
    /// A box that seals with `current` and opens values of `current` or `previous` keys.
    pub fn new(current: ServerKey, previous: Vec<ServerKey>) -> Self {
        Self { current, previous }
    }

    /// The id of the key new values are sealed with.
    pub fn key_id(&self) -> &str {
        self.current.id()
    }

    /// Encrypts `plain`; the result is `v1.<key id>.<base64(nonce || ciphertext || tag)>`.
    pub fn seal(&self, plain: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        fill_random(&mut nonce);
        let key = less_safe_key(&self.current);
        let mut buf = plain.to_vec();
        // Sealing in place only fails for inputs beyond ChaCha20's 256 GiB limit.
        #[allow(clippy::expect_used)]
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(self.current.id.as_bytes()),
            &mut buf,
        )
        .expect("secret too large to seal");
        let mut out = Vec::with_capacity(12 + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        format!(
            "{SEALED_PREFIX}.{}.{}",
            self.current.id,
            STANDARD.encode(out)
        )
    }

    /// Encrypts a UTF-8 secret.
    pub fn seal_str(&self, plain: &str) -> String {
        self.seal(plain.as_bytes())
    }

    /// Decrypts a value produced by [`SecretBox::seal`].
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, CryptoError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(SEALED_PREFIX), Some(kid), Some(body)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::Corrupt);
        };
        let key = std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|k| k.id == kid)
            .ok_or_else(|| CryptoError::UnknownKeyId(kid.to_owned()))?;
        let raw = STANDARD.decode(body).map_err(|_| CryptoError::Corrupt)?;
        if raw.len() < 12 + CHACHA20_POLY1305.tag_len() {
            return Err(CryptoError::Corrupt);
        }
        let (nonce, ct) = raw.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| CryptoError::Corrupt)?;
        let mut buf = ct.to_vec();
        let plain = less_safe_key(key)
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut buf,
            )
            .map_err(|_| CryptoError::Corrupt)?;
        Ok(plain.to_vec())
    }

    /// Decrypts a UTF-8 secret.
    pub fn open_str(&self, sealed: &str) -> Result<String, CryptoError> {
        String::from_utf8(self.open(sealed)?).map_err(|_| CryptoError::Corrupt)
    }
}

fn less_safe_key(k: &ServerKey) -> LessSafeKey {
    // A 32-byte key is always valid for ChaCha20-Poly1305.
    #[allow(clippy::expect_used)]
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &k.bytes).expect("32-byte key"))
}

// Keep `aead` referenced for readers looking for the algorithm.
const _: &aead::Algorithm = &CHACHA20_POLY1305;

/// argon2id parameters: `default()` follows OWASP; `cheap()` is for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashCost {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        Self {
            m_kib: 19 * 1024,
            t: 2,
            p: 1,
        }
    }
}

impl HashCost {
    /// Minimal parameters for tests (still argon2id, still verifies the same way).
    pub fn cheap() -> Self {
        Self {
            m_kib: 64,
            t: 1,
            p: 1,
        }
    }
}

/// Hashes a password with argon2id into a PHC string.
pub fn hash_password(password: &str, cost: HashCost) -> Result<String, CryptoError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(cost.m_kib, cost.t, cost.p, None)
        .map_err(|e| CryptoError::Hash(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut salt = [0u8; 16];
    fill_random(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| CryptoError::Hash(e.to_string()))?;
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CryptoError::Hash(e.to_string()))
}

/// Checks a password against a PHC string (parameters come from the string).
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(phc) {
        Ok(h) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// RFC 4648 base32 without padding (TOTP secrets in otpauth URIs).
pub fn base32_encode(data: &[u8]) -> String {
    const A: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buf: u32 = 0;
    let mut bits = 0;
    for &b in data {
        buf = (buf << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            out.push(A[((buf >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(A[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// TOTP (RFC 6238, HMAC-SHA1, 30 s, 6 digits) for operators.
pub mod totp {
    use ring::hmac;

    /// A new 20-byte TOTP secret.
    pub fn generate_secret() -> Vec<u8> {
        let mut s = vec![0u8; 20];
        super::fill_random(&mut s);
        s
    }

    /// The code for the 30-second step containing `unix_secs`.
    pub fn code(secret: &[u8], unix_secs: u64) -> String {
        let counter = unix_secs / 30;
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
        let tag = hmac::sign(&key, &counter.to_be_bytes());
        let h = tag.as_ref();
        let off = (h[19] & 0x0f) as usize;
        let bin = ((h[off] as u32 & 0x7f) << 24)
            | ((h[off + 1] as u32) << 16)
            | ((h[off + 2] as u32) << 8)
            | h[off + 3] as u32;
        format!("{:06}", bin % 1_000_000)
    }

    /// Accepts the code of the current step or one step either side (clock skew).
    pub fn verify(secret: &[u8], unix_secs: u64, given: &str) -> bool {
        let given = given.trim();
        [unix_secs.saturating_sub(30), unix_secs, unix_secs + 30]
            .iter()
            .any(|t| constant_time_eq(code(secret, *t).as_bytes(), given.as_bytes()))
    }

    fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// The `otpauth://` enrolment URI authenticator apps read (usually from a QR code).
    pub fn enrolment_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period=30",
            enc(issuer),
            enc(account),
            super::base32_encode(secret),
            enc(issuer)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_key_id() {
        let b = SecretBox::new(ServerKey::generate(), vec![]);
        let s = b.seal_str("testing123");
        assert!(s.starts_with(&format!("v1.{}.", b.key_id())));
        assert!(!s.contains("testing123"));
        assert_eq!(b.open_str(&s).unwrap(), "testing123");
        // Two seals of one value differ (random nonce).
        assert_ne!(s, b.seal_str("testing123"));
    }

    #[test]
    fn rotation_opens_old_values_and_refuses_unknown() {
        let old = ServerKey::generate();
        let sealed = SecretBox::new(old.clone(), vec![]).seal_str("x");
        let rotated = SecretBox::new(ServerKey::generate(), vec![old]);
        assert_eq!(rotated.open_str(&sealed).unwrap(), "x");
        let stranger = SecretBox::new(ServerKey::generate(), vec![]);
        assert!(matches!(
            stranger.open_str(&sealed),
            Err(CryptoError::UnknownKeyId(_))
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let b = SecretBox::new(ServerKey::generate(), vec![]);
        let s = b.seal_str("secret");
        let mut raw = STANDARD.decode(s.rsplit('.').next().unwrap()).unwrap();
        raw[14] ^= 1;
        let t = format!("v1.{}.{}", b.key_id(), STANDARD.encode(raw));
        assert!(matches!(b.open(&t), Err(CryptoError::Corrupt)));
        assert!(matches!(b.open("garbage"), Err(CryptoError::Corrupt)));
        assert!(matches!(
            b.open(&format!("v1.{}.AAAA", b.key_id())),
            Err(CryptoError::Corrupt)
        ));
    }

    #[test]
    fn key_debug_is_redacted_and_base64_round_trips() {
        let k = ServerKey::generate();
        assert!(!format!("{k:?}").contains(&k.to_base64()));
        assert_eq!(ServerKey::from_base64(&k.to_base64()).unwrap().id(), k.id());
        assert!(ServerKey::from_base64("c2hvcnQ=").is_err());
    }

    #[test]
    fn argon2id_hash_verifies() {
        let h = hash_password("hunter2", HashCost::cheap()).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("hunter2", &h));
        assert!(!verify_password("hunter3", &h));
        assert!(!verify_password("hunter2", "not-a-hash"));
    }

    #[test]
    fn totp_rfc6238_vectors() {
        // RFC 6238 appendix B, SHA1 secret "12345678901234567890", 8 digits truncated to the last 6.
        let secret = b"12345678901234567890";
        assert_eq!(totp::code(secret, 59), "287082");
        assert_eq!(totp::code(secret, 1111111109), "081804");
        assert_eq!(totp::code(secret, 2000000000), "279037");
        assert!(totp::verify(secret, 89, "287082"));
        assert!(!totp::verify(secret, 200, "287082"));
        let uri = totp::enrolment_uri("ProxPanel", "admin@example.com", secret);
        assert!(uri.starts_with(
            "otpauth://totp/ProxPanel:admin%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        ));
    }

    #[test]
    fn random_helpers() {
        assert_eq!(random_password().len(), 20);
        assert_ne!(random_token(16), random_token(16));
    }
}
