//! Sans-IO RADIUS codec and crypto: validation of raw datagrams, Message-Authenticator and
//! Request/Response Authenticators, a reply/request encoder, dictionaries (standard, MikroTik,
//! Microsoft) and the PAP, CHAP, MS-CHAPv2 and MPPE key algorithms.
//!
//! Nothing here touches a socket, a clock or the store: the AAA engine feeds datagrams in and
//! gets bytes out, so the same code serves the direct UDP listeners and the WireGuard relay.
//! The `radius` crate (0.4) is used only for its [`Code`] enum and, on request, its packet
//! decoder; everything security-relevant is ours (see `shared/reference/crates.md` §3 for what
//! the crate lacks).
//!
//! Typical server-side flow:
//! 1. [`wire::validate`] the datagram (drop with a [`DropReason`] metric label on error);
//! 2. [`auth::verify_request`] with the NAS secret (Request Authenticator, Message-Authenticator);
//! 3. authenticate with [`chap`] (PAP/CHAP/MS-CHAPv2);
//! 4. build the answer with [`auth::PacketBuilder::reply`], which puts Message-Authenticator
//!    first, echoes Proxy-State and signs the Response Authenticator.

pub mod auth;
pub mod chap;
pub mod dict;
pub mod wire;

pub use ::radius::core::code::Code;
pub use auth::{
    EncodeError, MaStatus, PacketBuilder, RequestMeta, verify_request, verify_response,
};
pub use wire::{AttrIter, DropReason, Validated, validate};

use ::md5::{Digest, Md5};

/// Length of the Request/Response Authenticator and of a Message-Authenticator value.
pub const AUTHENTICATOR_LEN: usize = 16;

/// MD5 over the concatenation of `parts`.
pub(crate) fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-MD5 (RFC 2104) of the concatenation of `parts`, fed piecewise so callers can substitute
/// header fields without copying the packet.
pub(crate) fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    use hmac::{Hmac, KeyInit, Mac};
    // HMAC takes keys of any length (long keys are hashed, RFC 2104 §2); hmac 0.13's
    // `new_from_slice` never returns Err (its own `new` relies on that), so this arm is dead.
    let Ok(mut mac) = <Hmac<Md5> as KeyInit>::new_from_slice(key) else {
        unreachable!("HMAC accepts keys of any length")
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time equality, so authenticator checks leak no timing about where bytes differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // black_box keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_md5_rfc2202_vectors() {
        // RFC 2202 §2, test cases 1 and 2.
        assert_eq!(
            hex::encode(hmac_md5(&[0x0b; 16], &[b"Hi ", b"There"])),
            "9294727a3638bb1c13f48ef8158bfc9d"
        );
        assert_eq!(
            hex::encode(hmac_md5(b"Jefe", &[b"what do ya want for nothing?"])),
            "750c783e6ab0b503eaa86e310a5db738"
        );
        // Test case 6: a key longer than the block size is hashed first.
        assert_eq!(
            hex::encode(hmac_md5(
                &[0xaa; 80],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"
        );
    }

    #[test]
    fn md5_rfc1321_vector() {
        assert_eq!(
            hex::encode(md5(&[b"a", b"bc"])),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }

    /// Deterministic xorshift64* so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// Well-formed seeds the mutator starts from.
    fn seeds() -> Vec<Vec<u8>> {
        let s = b"testing123";
        let mut out = Vec::new();
        let mut b = PacketBuilder::request(Code::AccessRequest, 1, [9; 16]).unwrap();
        b.attr_str(dict::USER_NAME, "demo").unwrap();
        b.attr(
            dict::USER_PASSWORD,
            &chap::encrypt_user_password(b"demo", s, &[9; 16]).unwrap(),
        )
        .unwrap();
        b.attr(dict::PROXY_STATE, b"ps").unwrap();
        out.push(b.finish(s));
        let mut b = PacketBuilder::request(Code::AccessRequest, 2, [8; 16]).unwrap();
        b.attr(dict::CHAP_PASSWORD, &[1; 17]).unwrap();
        b.attr(dict::CHAP_CHALLENGE, &[2; 16]).unwrap();
        b.vsa(
            dict::VENDOR_MICROSOFT,
            dict::microsoft::CHAP_CHALLENGE,
            &[3; 16],
        )
        .unwrap();
        b.vsa(
            dict::VENDOR_MICROSOFT,
            dict::microsoft::CHAP2_RESPONSE,
            &[4; 50],
        )
        .unwrap();
        out.push(b.finish(s));
        let mut b = PacketBuilder::request(Code::AccountingRequest, 3, [0; 16]).unwrap();
        b.attr_u32(dict::ACCT_STATUS_TYPE, 1).unwrap();
        b.attr_str(dict::ACCT_SESSION_ID, "x").unwrap();
        out.push(b.finish(s));
        let req = out[0].clone();
        let v = validate(&req).unwrap();
        let mut b = PacketBuilder::reply(&v, Code::AccessAccept).unwrap();
        b.vsa_str(dict::VENDOR_MIKROTIK, dict::mikrotik::RATE_LIMIT, "1k/2k")
            .unwrap();
        b.vsa(
            dict::VENDOR_MICROSOFT,
            dict::microsoft::MPPE_SEND_KEY,
            &[0x80; 34],
        )
        .unwrap();
        out.push(b.finish(s));
        out
    }

    /// Runs every parser and checker over one input; the only assertion is "no panic".
    fn exercise(data: &[u8], request: &RequestMeta) {
        let s = b"testing123";
        let ra = [7u8; 16];
        let _ = RequestMeta::of(data);
        let _ = dict::parse_vsa(data);
        let _ = dict::vsa_iter(data).count();
        let _ = wire::attributes(data).count();
        let _ = chap::decrypt_user_password(data, s, &ra);
        let _ = chap::decrypt_mppe_key(data, s, &ra);
        let _ = chap::parse_mschap2_response(data);
        let _ = chap::verify_chap(data, &ra, b"pw");
        let _ = chap::mschap_user_name(data);
        let _ = auth::message_authenticator(data, &ra, s);
        let _ = auth::request_authenticator(data, s);
        let _ = auth::response_authenticator(data, &ra, s);
        let mut copy = data.to_vec();
        let _ = auth::sign_message_authenticator(&mut copy, &ra, s);
        let Ok(v) = validate(data) else { return };
        assert!(v.bytes().len() <= wire::MAX_PACKET_LEN);
        let _ = verify_request(&v, s);
        let _ = verify_response(&v, request, s);
        let _ = v.message_authenticator();
        let _ = v.vsa(dict::VENDOR_MIKROTIK, dict::mikrotik::RATE_LIMIT);
        let _ = chap::chap_challenge(&v);
        for (_, _, value) in v.vendor_attributes() {
            let _ = chap::parse_mschap2_response(value);
            let _ = chap::decrypt_mppe_key(value, s, &ra);
        }
        for (typ, value) in v.attributes() {
            if typ == dict::USER_PASSWORD {
                let _ = chap::decrypt_user_password(value, s, &v.authenticator());
            }
        }
        for code in [
            Code::AccessAccept,
            Code::AccountingResponse,
            Code::CoAACK,
            Code::DisconnectNAK,
        ] {
            if let Ok(mut b) = PacketBuilder::reply(&v, code) {
                let _ = b.attr_str(dict::REPLY_MESSAGE, "x");
                let out = b.finish(s);
                assert!(validate(&out).is_ok());
            }
        }
    }

    #[test]
    fn hammer_no_panic_on_garbage() {
        let seeds = seeds();
        let request = RequestMeta {
            code: Code::AccessRequest,
            identifier: 1,
            authenticator: [9; 16],
        };
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut accepted = 0usize;
        for case in 0..100_000 {
            let data = match case % 4 {
                // Pure noise, mostly short, sometimes around the 4096 limit.
                0 => {
                    let n = if rng.below(50) == 0 {
                        4000 + rng.below(200)
                    } else {
                        rng.below(120)
                    };
                    rng.bytes(n)
                }
                // A seed with a few flipped octets.
                1 => {
                    let mut d = seeds[rng.below(seeds.len())].clone();
                    for _ in 0..=rng.below(4) {
                        let i = rng.below(d.len());
                        d[i] ^= 1 << rng.below(8);
                    }
                    d
                }
                // A seed truncated, with the Length field sometimes patched to match.
                2 => {
                    let mut d = seeds[rng.below(seeds.len())].clone();
                    d.truncate(rng.below(d.len() + 1));
                    if d.len() >= 4 && rng.below(2) == 0 {
                        let len = d.len() as u16;
                        d[2..4].copy_from_slice(&len.to_be_bytes());
                    }
                    d
                }
                // A valid header over random attribute soup.
                _ => {
                    let codes = [1u8, 2, 3, 4, 5, 11, 12, 40, 41, 42, 43, 44, 45];
                    let mut d = vec![codes[rng.below(codes.len())], 1, 0, 0];
                    d.extend_from_slice(&rng.bytes(16));
                    for _ in 0..rng.below(12) {
                        let typ = [1u8, 2, 3, 26, 33, 79, 80, rng.next() as u8][rng.below(8)];
                        let len = if rng.below(8) == 0 {
                            rng.below(256)
                        } else {
                            2 + rng.below(60)
                        };
                        d.push(typ);
                        d.push(len as u8);
                        if typ == 26 && len >= 6 {
                            d.extend_from_slice(&[0, 0, 0x3a, 0x8c][..4.min(len - 2)]);
                            d.extend_from_slice(&rng.bytes(len - 6));
                        } else {
                            d.extend_from_slice(&rng.bytes(len.saturating_sub(2)));
                        }
                    }
                    let len = d.len() as u16;
                    d[2..4].copy_from_slice(&len.to_be_bytes());
                    d
                }
            };
            if validate(&data).is_ok() {
                accepted += 1;
            }
            exercise(&data, &request);
        }
        // The generator must reach the deep paths, not just bounce off the header checks.
        assert!(
            accepted > 10_000,
            "only {accepted} inputs passed validation"
        );
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }
}
