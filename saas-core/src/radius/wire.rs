//! Hardened pre-decoder: checks a raw datagram's framing before anything else looks at it.
//!
//! Every datagram from the network goes through [`validate`] first. It is pure slice
//! arithmetic (no allocation, no crypto) and never panics, so hostile input is rejected cheaply
//! with a [`DropReason`] that doubles as a metric label. Only framing is checked here; the
//! authenticators are checked by [`super::auth::verify_request`] /
//! [`super::auth::verify_response`] once the NAS (and so the secret) is known.

use ::radius::core::code::Code;
use ::radius::core::packet::Packet;
use thiserror::Error;

use super::dict;

/// Length of the RADIUS header (code, identifier, length, authenticator).
pub const HEADER_LEN: usize = 20;
/// Largest RADIUS packet (RFC 2865 §3).
pub const MAX_PACKET_LEN: usize = 4096;
/// Most attributes we accept in one packet; real NAS requests carry 10–40, so more is abuse
/// (FreeRADIUS' `max_attributes` serves the same purpose).
pub const MAX_ATTRIBUTES: usize = 255;

/// Why a datagram was dropped without an answer; [`DropReason::as_str`] is its metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum DropReason {
    /// Shorter than the 20-octet header.
    #[error("datagram shorter than the RADIUS header")]
    TooShort,
    /// Datagram, or its Length field, above 4096 octets.
    #[error("packet longer than 4096 octets")]
    TooLong,
    /// Length field below 20 or beyond the end of the datagram (RFC 2865 §3: drop).
    #[error("Length field inconsistent with the datagram")]
    BadLength,
    /// Packet code that is not a RADIUS code we know.
    #[error("unknown packet code")]
    UnknownCode,
    /// A known code that is not acceptable here (a reply on a request port, a reply that does
    /// not answer the request's code).
    #[error("packet code not expected here")]
    UnexpectedCode,
    /// Attribute of type 0 or with a length below 2.
    #[error("malformed attribute header")]
    BadAttribute,
    /// An attribute runs past the end of the packet, or a lone octet is left over.
    #[error("attribute overflows the packet")]
    AttributeOverflow,
    /// More than [`MAX_ATTRIBUTES`] attributes.
    #[error("too many attributes")]
    TooManyAttributes,
    /// Request or Response Authenticator does not match (wrong secret or forged).
    #[error("invalid Request/Response Authenticator")]
    BadAuthenticator,
    /// Message-Authenticator wrong, of the wrong length, or present twice.
    #[error("invalid Message-Authenticator")]
    BadMessageAuthenticator,
    /// Message-Authenticator required (policy, Status-Server, EAP) but absent.
    #[error("required Message-Authenticator missing")]
    MissingMessageAuthenticator,
    /// A response whose identifier is not the request's.
    #[error("response identifier does not match the request")]
    IdentifierMismatch,
}

impl DropReason {
    /// Every reason, for pre-registering metric label values.
    pub const ALL: [DropReason; 12] = [
        DropReason::TooShort,
        DropReason::TooLong,
        DropReason::BadLength,
        DropReason::UnknownCode,
        DropReason::UnexpectedCode,
        DropReason::BadAttribute,
        DropReason::AttributeOverflow,
        DropReason::TooManyAttributes,
        DropReason::BadAuthenticator,
        DropReason::BadMessageAuthenticator,
        DropReason::MissingMessageAuthenticator,
        DropReason::IdentifierMismatch,
    ];

    /// Stable snake_case label for metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::TooShort => "too_short",
            DropReason::TooLong => "too_long",
            DropReason::BadLength => "bad_length",
            DropReason::UnknownCode => "unknown_code",
            DropReason::UnexpectedCode => "unexpected_code",
            DropReason::BadAttribute => "bad_attribute",
            DropReason::AttributeOverflow => "attribute_overflow",
            DropReason::TooManyAttributes => "too_many_attributes",
            DropReason::BadAuthenticator => "bad_authenticator",
            DropReason::BadMessageAuthenticator => "bad_message_authenticator",
            DropReason::MissingMessageAuthenticator => "missing_message_authenticator",
            DropReason::IdentifierMismatch => "identifier_mismatch",
        }
    }
}

/// Maps a code octet to a [`Code`] we handle; `None` for anything else, including
/// Status-Client (13, never deployed, RFC 5997) and the crate's `Reserved`/`Invalid`.
pub fn known_code(octet: u8) -> Option<Code> {
    match octet {
        1..=5 | 11 | 12 | 40..=45 => Some(Code::from(octet)),
        _ => None,
    }
}

/// Whether `code` is sent by a client (NAS towards us, or us towards a NAS for CoA).
pub fn is_request(code: Code) -> bool {
    matches!(
        code,
        Code::AccessRequest
            | Code::AccountingRequest
            | Code::StatusServer
            | Code::DisconnectRequest
            | Code::CoARequest
    )
}

/// A datagram whose framing passed [`validate`]: a known code, a consistent Length, and
/// attributes that exactly fill the packet. Borrowed from the datagram, trimmed to Length.
#[derive(Debug, Clone, Copy)]
pub struct Validated<'a> {
    packet: &'a [u8],
    code: Code,
    attribute_count: usize,
    /// Offset of the Message-Authenticator attribute (its type octet) in `packet`.
    message_authenticator: Option<usize>,
}

/// Checks a datagram's framing; see the module docs. Never panics, allocates nothing.
pub fn validate(datagram: &[u8]) -> Result<Validated<'_>, DropReason> {
    if datagram.len() > MAX_PACKET_LEN {
        return Err(DropReason::TooLong);
    }
    let Some((header, _)) = datagram.split_first_chunk::<HEADER_LEN>() else {
        return Err(DropReason::TooShort);
    };
    let code = known_code(header[0]).ok_or(DropReason::UnknownCode)?;
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if length > MAX_PACKET_LEN {
        return Err(DropReason::TooLong);
    }
    if length < HEADER_LEN {
        return Err(DropReason::BadLength);
    }
    // RFC 2865 §3: octets beyond Length are padding and ignored; a datagram shorter than
    // Length must be silently discarded.
    let Some(packet) = datagram.get(..length) else {
        return Err(DropReason::BadLength);
    };
    let mut rest = packet.get(HEADER_LEN..).unwrap_or_default();
    let mut offset = HEADER_LEN;
    let mut count = 0usize;
    let mut message_authenticator = None;
    loop {
        let (typ, len) = match *rest {
            [] => break,
            [_] => return Err(DropReason::AttributeOverflow),
            [typ, len, ..] => (typ, usize::from(len)),
        };
        // Type 0 is undefined and length counts the 2 header octets (RFC 2865 §5).
        if typ == 0 || len < 2 {
            return Err(DropReason::BadAttribute);
        }
        let Some((_, tail)) = rest.split_at_checked(len) else {
            return Err(DropReason::AttributeOverflow);
        };
        count += 1;
        if count > MAX_ATTRIBUTES {
            return Err(DropReason::TooManyAttributes);
        }
        if typ == dict::MESSAGE_AUTHENTICATOR {
            // RFC 3579 §3.2: exactly one, 16 octets of value.
            if len != 18 || message_authenticator.is_some() {
                return Err(DropReason::BadMessageAuthenticator);
            }
            message_authenticator = Some(offset);
        }
        offset += len;
        rest = tail;
    }
    Ok(Validated {
        packet,
        code,
        attribute_count: count,
        message_authenticator,
    })
}

impl<'a> Validated<'a> {
    /// The packet code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The identifier octet.
    pub fn identifier(&self) -> u8 {
        self.packet.get(1).copied().unwrap_or_default()
    }

    /// The Request/Response Authenticator field.
    pub fn authenticator(&self) -> [u8; 16] {
        self.packet
            .get(4..HEADER_LEN)
            .and_then(|s| <[u8; 16]>::try_from(s).ok())
            .unwrap_or_default()
    }

    /// The packet bytes, trimmed to the Length field (trailing padding removed).
    pub fn bytes(&self) -> &'a [u8] {
        self.packet
    }

    /// Number of attributes.
    pub fn attribute_count(&self) -> usize {
        self.attribute_count
    }

    /// All attributes in wire order as `(type, value)`.
    pub fn attributes(&self) -> AttrIter<'a> {
        attributes(self.packet.get(HEADER_LEN..).unwrap_or_default())
    }

    /// Value of the first attribute of type `typ`.
    pub fn attr(&self, typ: u8) -> Option<&'a [u8]> {
        self.attributes().find(|&(t, _)| t == typ).map(|(_, v)| v)
    }

    /// Values of every attribute of type `typ`, in wire order.
    pub fn attrs(&self, typ: u8) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.attributes()
            .filter(move |&(t, _)| t == typ)
            .map(|(_, v)| v)
    }

    /// Every vendor sub-attribute of every Vendor-Specific attribute, as `(vendor, type, value)`.
    pub fn vendor_attributes(&self) -> impl Iterator<Item = (u32, u8, &'a [u8])> + 'a {
        self.attrs(dict::VENDOR_SPECIFIC).flat_map(dict::vsa_iter)
    }

    /// Value of the first vendor sub-attribute `vendor`/`typ`.
    pub fn vsa(&self, vendor: u32, typ: u8) -> Option<&'a [u8]> {
        self.vendor_attributes()
            .find(|&(v, t, _)| v == vendor && t == typ)
            .map(|(_, _, v)| v)
    }

    /// Value of the Message-Authenticator, if present (always 16 octets).
    pub fn message_authenticator(&self) -> Option<&'a [u8]> {
        let at = self.message_authenticator?;
        self.packet.get(at + 2..at + 18)
    }

    /// Offset of the Message-Authenticator attribute (its type octet) in [`Self::bytes`].
    pub fn message_authenticator_offset(&self) -> Option<usize> {
        self.message_authenticator
    }

    /// Decodes into the `radius` crate's [`Packet`], for its per-RFC lookup helpers. Costs an
    /// allocation per attribute; the engine's hot path should use [`Self::attr`] instead.
    pub fn decode(&self, secret: &[u8]) -> Result<Packet, DropReason> {
        // Framing was validated, so the crate's decoder cannot disagree; map defensively.
        Packet::decode(self.packet, secret).map_err(|_| DropReason::AttributeOverflow)
    }
}

/// Iterates `(type, value)` over a raw attribute area (the bytes after the header).
pub fn attributes(area: &[u8]) -> AttrIter<'_> {
    AttrIter { rest: area }
}

/// Iterator over `(type, value)` attributes; stops silently at the first malformed one, which
/// [`validate`] has already ruled out for validated packets.
#[derive(Debug, Clone)]
pub struct AttrIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let &[typ, len, ..] = self.rest else {
            self.rest = &[];
            return None;
        };
        let len = usize::from(len);
        let parsed = if len >= 2 {
            self.rest.split_at_checked(len)
        } else {
            None
        };
        let Some((attr, tail)) = parsed else {
            self.rest = &[];
            return None;
        };
        self.rest = tail;
        Some((typ, attr.get(2..).unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: u8, attrs: &[u8]) -> Vec<u8> {
        let mut p = vec![code, 7, 0, 0];
        p.extend_from_slice(&[0xAB; 16]);
        p.extend_from_slice(attrs);
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p
    }

    #[test]
    fn accepts_minimal_and_reads_header() {
        let p = packet(1, &[1, 6, b'd', b'e', b'm', b'o']);
        let v = validate(&p).unwrap();
        assert_eq!(v.code(), Code::AccessRequest);
        assert_eq!(v.identifier(), 7);
        assert_eq!(v.authenticator(), [0xAB; 16]);
        assert_eq!(v.attribute_count(), 1);
        assert_eq!(v.attr(dict::USER_NAME), Some(&b"demo"[..]));
        assert_eq!(v.attr(dict::USER_PASSWORD), None);
        assert!(v.message_authenticator().is_none());
        let bare = packet(12, &[]);
        assert_eq!(validate(&bare).unwrap().attribute_count(), 0);
    }

    #[test]
    fn trailing_octets_are_ignored() {
        let mut p = packet(4, &[44, 4, b'a', b'b']);
        p.extend_from_slice(&[0xFF, 0xFF, 0xFF]);
        let v = validate(&p).unwrap();
        assert_eq!(v.bytes().len(), p.len() - 3);
        assert_eq!(v.attribute_count(), 1);
    }

    #[test]
    fn length_checks() {
        assert_eq!(validate(&[]).unwrap_err(), DropReason::TooShort);
        assert_eq!(validate(&[1; 19]).unwrap_err(), DropReason::TooShort);
        assert_eq!(validate(&vec![1u8; 4097]).unwrap_err(), DropReason::TooLong);
        let mut p = packet(1, &[1, 3, b'x']);
        p[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(validate(&p).unwrap_err(), DropReason::BadLength);
        let one_more = p.len() as u16 + 1;
        p[2..4].copy_from_slice(&one_more.to_be_bytes());
        assert_eq!(validate(&p).unwrap_err(), DropReason::BadLength);
        p[2..4].copy_from_slice(&5000u16.to_be_bytes());
        assert_eq!(validate(&p).unwrap_err(), DropReason::TooLong);
        // Length cuts an attribute in half: the attribute overflows the packet.
        p[2..4].copy_from_slice(&22u16.to_be_bytes());
        assert_eq!(validate(&p).unwrap_err(), DropReason::AttributeOverflow);
        p[2..4].copy_from_slice(&21u16.to_be_bytes());
        assert_eq!(validate(&p).unwrap_err(), DropReason::AttributeOverflow);
    }

    #[test]
    fn codes() {
        for c in [1u8, 2, 3, 4, 5, 11, 12, 40, 41, 42, 43, 44, 45] {
            assert!(validate(&packet(c, &[])).is_ok(), "code {c}");
        }
        for c in [0u8, 6, 10, 13, 14, 39, 46, 255] {
            assert_eq!(
                validate(&packet(c, &[])).unwrap_err(),
                DropReason::UnknownCode
            );
        }
    }

    #[test]
    fn attribute_checks() {
        assert_eq!(
            validate(&packet(1, &[1, 1])).unwrap_err(),
            DropReason::BadAttribute
        );
        assert_eq!(
            validate(&packet(1, &[1, 0])).unwrap_err(),
            DropReason::BadAttribute
        );
        assert_eq!(
            validate(&packet(1, &[0, 3, 1])).unwrap_err(),
            DropReason::BadAttribute
        );
        assert_eq!(
            validate(&packet(1, &[1, 9, 1])).unwrap_err(),
            DropReason::AttributeOverflow
        );
        // Zero-length value (length 2) is structurally fine.
        assert!(validate(&packet(1, &[18, 2])).is_ok());
    }

    #[test]
    fn attribute_count_limit() {
        let ok: Vec<u8> = (0..MAX_ATTRIBUTES).flat_map(|_| [18u8, 2]).collect();
        assert_eq!(
            validate(&packet(1, &ok)).unwrap().attribute_count(),
            MAX_ATTRIBUTES
        );
        let too_many: Vec<u8> = (0..=MAX_ATTRIBUTES).flat_map(|_| [18u8, 2]).collect();
        assert_eq!(
            validate(&packet(1, &too_many)).unwrap_err(),
            DropReason::TooManyAttributes
        );
    }

    #[test]
    fn message_authenticator_shape() {
        let mut ma = vec![80u8, 18];
        ma.extend_from_slice(&[9; 16]);
        let p = packet(1, &[&[1, 3, b'x'][..], &ma].concat());
        let v = validate(&p).unwrap();
        assert_eq!(v.message_authenticator_offset(), Some(23));
        assert_eq!(v.message_authenticator(), Some(&[9u8; 16][..]));
        let twice = packet(1, &[&ma[..], &ma].concat());
        assert_eq!(
            validate(&twice).unwrap_err(),
            DropReason::BadMessageAuthenticator
        );
        let short = packet(1, &[80, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            validate(&short).unwrap_err(),
            DropReason::BadMessageAuthenticator
        );
    }

    #[test]
    fn vendor_attribute_lookup() {
        let mut attrs = vec![26u8, 0];
        attrs.extend_from_slice(&dict::vsa(14988, 8, b"1k/2k").unwrap());
        attrs[1] = attrs.len() as u8;
        let v_bytes = packet(2, &attrs);
        let v = validate(&v_bytes).unwrap();
        assert_eq!(v.vsa(14988, 8), Some(&b"1k/2k"[..]));
        assert_eq!(v.vsa(14988, 9), None);
        assert_eq!(v.vsa(311, 8), None);
    }

    #[test]
    fn drop_reason_labels_are_unique() {
        let mut labels: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), DropReason::ALL.len());
        assert_eq!(
            DropReason::TooShort.to_string(),
            "datagram shorter than the RADIUS header"
        );
    }

    #[test]
    fn crate_decode_agrees() {
        let p = packet(1, &[1, 6, b'd', b'e', b'm', b'o', 4, 6, 127, 0, 0, 1]);
        let pkt = validate(&p).unwrap().decode(b"s").unwrap();
        assert_eq!(pkt.get_identifier(), 7);
        assert_eq!(
            ::radius::core::rfc2865::lookup_user_name(&pkt)
                .unwrap()
                .unwrap(),
            "demo"
        );
    }

    #[test]
    fn attr_iter_on_garbage_stops() {
        assert_eq!(attributes(&[1]).count(), 0);
        assert_eq!(attributes(&[1, 1, 1]).count(), 0);
        assert_eq!(attributes(&[1, 2, 1, 5, 0]).count(), 1);
        assert_eq!(
            attributes(&[1, 3, 9, 2, 2]).collect::<Vec<_>>(),
            vec![(1, &[9u8][..]), (2, &[][..])]
        );
    }

    /// Replays the seed corpus shared with the cargo-fuzz target (`fuzz/`): files named `ok-*`
    /// must validate, `bad-*` must be dropped, and nothing may panic.
    #[test]
    fn corpus_replay() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/radius");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            let result = validate(&bytes);
            if let Ok(v) = &result {
                // Push the accepted ones through the crypto checks too.
                let verdict = super::super::auth::verify_request(v, b"testing123");
                let _ = v.decode(b"testing123");
                let _ = v.vendor_attributes().count();
                // Requests captured from FreeRADIUS' radclient (secret testing123) must pass
                // our Request Authenticator / Message-Authenticator checks: interop evidence.
                if name.starts_with("ok-radclient-") {
                    let status = verdict.unwrap_or_else(|e| panic!("{name}: {e}"));
                    let want = if v.message_authenticator().is_some() {
                        super::super::auth::MaStatus::Valid
                    } else {
                        super::super::auth::MaStatus::Absent
                    };
                    assert_eq!(status, want, "{name}");
                }
            }
            if name.starts_with("ok-") {
                assert!(result.is_ok(), "{name}: {result:?}");
            } else if name.starts_with("bad-") {
                assert!(result.is_err(), "{name} was accepted");
            }
            seen += 1;
        }
        assert!(
            seen >= 6,
            "corpus in {} has only {seen} files",
            dir.display()
        );
    }
}
