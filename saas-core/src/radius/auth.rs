//! Packet integrity: Message-Authenticator (attribute 80, HMAC-MD5, RFC 3579 §3.2 / RFC 5176
//! §3.3 / RFC 5997), Request Authenticators (RFC 2866 §3, RFC 5176 §2.3), Response
//! Authenticators (RFC 2865 §3), and [`PacketBuilder`], our own encoder for requests and replies.
//!
//! We encode ourselves instead of using `radius::core::packet::Packet::encode` because the
//! crate has no Message-Authenticator support: signing through it means encoding, HMAC-ing,
//! then re-hashing the whole packet a second time (crates.md §3). Our builder writes
//! Message-Authenticator as the first attribute of every reply (BlastRADIUS, CVE-2024-3596:
//! an attacker cannot prefix it with a chosen-prefix collision block) and signs in one pass.
//!
//! Vector rules for the HMAC (the value put in the Authenticator field while hashing; the
//! Message-Authenticator value itself is zeroed):
//!
//! | packet                                         | vector                                  |
//! |------------------------------------------------|-----------------------------------------|
//! | Access-Request, Status-Server                  | its own Request Authenticator           |
//! | Accounting-, CoA-, Disconnect-Request          | 16 zero octets                          |
//! | Access-Accept/Reject/Challenge                 | the request's authenticator             |
//! | Accounting-Response                            | zeros (request's if it answers Status-Server) |
//! | CoA/Disconnect ACK/NAK (sent by us)            | the request's authenticator (RFC 5176)  |
//! | CoA/Disconnect ACK/NAK (received)              | request's **or** zeros: FreeRADIUS' `rad_sign` uses zeros, its `rad_verify` and RFC 5176 the request's; NAS vendors follow either |
//!
//! The Accounting-Response row is FreeRADIUS behaviour, verified with radclient (crates.md §3);
//! on receipt we accept either vector there too, since the Response Authenticator already
//! binds the reply to the request.

use std::net::Ipv4Addr;

use ::radius::core::code::Code;
use thiserror::Error;

use super::wire::{DropReason, HEADER_LEN, MAX_ATTRIBUTES, MAX_PACKET_LEN, Validated, is_request};
use super::{ct_eq, dict, hmac_md5, md5};

/// The all-zero authenticator vector.
pub const ZERO_VECTOR: [u8; 16] = [0; 16];

/// Largest value of one attribute (its length octet counts the 2 header octets).
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 253;

/// Outcome of a successful integrity check, for the per-NAS Message-Authenticator policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaStatus {
    /// No Message-Authenticator in the packet (the caller's policy decides).
    Absent,
    /// Message-Authenticator present and correct.
    Valid,
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// An attribute value above its maximum (253 octets, 247 inside a VSA).
    #[error("attribute value of {0} octets is too long")]
    ValueTooLong(usize),
    /// The packet would exceed 4096 octets.
    #[error("packet would exceed 4096 octets")]
    PacketTooLong,
    /// The packet would carry more attributes than our own validator (and FreeRADIUS'
    /// `max_attributes`) accepts, so the peer could drop it.
    #[error("packet would exceed {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    /// The reply code does not answer the request's code (codes as numbers).
    #[error("code {reply} is not a reply to code {request}")]
    InvalidReplyCode {
        /// Request code.
        request: u8,
        /// Attempted reply code.
        reply: u8,
    },
    /// The code is not a request code.
    #[error("code {0} is not a request")]
    NotARequest(u8),
    /// Attribute the builder manages itself (Message-Authenticator; Proxy-State in replies),
    /// or the undefined type 0.
    #[error("attribute {0} cannot be added by hand")]
    ReservedAttribute(u8),
}

/// What a client must remember about a request it sent to check the reply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestMeta {
    /// Request code.
    pub code: Code,
    /// Identifier octet.
    pub identifier: u8,
    /// Request Authenticator as sent.
    pub authenticator: [u8; 16],
}

impl RequestMeta {
    /// Reads the header of an encoded request (for example [`PacketBuilder::finish`] output).
    pub fn of(packet: &[u8]) -> Option<RequestMeta> {
        let (header, _) = packet.split_first_chunk::<HEADER_LEN>()?;
        let code = super::wire::known_code(header[0])?;
        let authenticator = <[u8; 16]>::try_from(header.get(4..HEADER_LEN)?).ok()?;
        Some(RequestMeta {
            code,
            identifier: header[1],
            authenticator,
        })
    }
}

impl From<&Validated<'_>> for RequestMeta {
    fn from(v: &Validated<'_>) -> Self {
        RequestMeta {
            code: v.code(),
            identifier: v.identifier(),
            authenticator: v.authenticator(),
        }
    }
}

/// Whether `reply` is a legal answer to `request` (RFC 2865, 2866, 5176, 5997).
pub fn is_valid_reply(request: Code, reply: Code) -> bool {
    match request {
        Code::AccessRequest => {
            matches!(
                reply,
                Code::AccessAccept | Code::AccessReject | Code::AccessChallenge
            )
        }
        Code::AccountingRequest => reply == Code::AccountingResponse,
        // RFC 5997 §3: Access-Accept on the auth port, Accounting-Response on the acct port.
        Code::StatusServer => matches!(reply, Code::AccessAccept | Code::AccountingResponse),
        Code::CoARequest => matches!(reply, Code::CoAACK | Code::CoANAK),
        Code::DisconnectRequest => matches!(reply, Code::DisconnectACK | Code::DisconnectNAK),
        _ => false,
    }
}

/// HMAC vector for a request's Message-Authenticator; `None` if `code` is not a request.
pub fn request_ma_vector(code: Code, authenticator: &[u8; 16]) -> Option<[u8; 16]> {
    match code {
        Code::AccessRequest | Code::StatusServer => Some(*authenticator),
        Code::AccountingRequest | Code::CoARequest | Code::DisconnectRequest => Some(ZERO_VECTOR),
        _ => None,
    }
}

/// HMAC vector we use when signing a reply to a request of `request_code`.
pub fn reply_ma_vector(request_code: Code, reply_code: Code, request_auth: &[u8; 16]) -> [u8; 16] {
    match reply_code {
        Code::AccountingResponse if request_code != Code::StatusServer => ZERO_VECTOR,
        _ => *request_auth,
    }
}

/// HMAC-MD5 over `packet` with the Authenticator field replaced by `vector` and the
/// Message-Authenticator attribute at `ma_offset` (its type octet) zeroed; `None` if the offset
/// does not hold a complete 18-octet attribute.
fn ma_over(packet: &[u8], ma_offset: usize, vector: &[u8; 16], secret: &[u8]) -> Option<[u8; 16]> {
    let head = packet.get(..4)?;
    let before = packet.get(HEADER_LEN..ma_offset.checked_add(2)?)?;
    let after = packet.get(ma_offset.checked_add(18)?..)?;
    Some(hmac_md5(
        secret,
        &[head, vector, before, &ZERO_VECTOR, after],
    ))
}

/// Offset of the first Message-Authenticator attribute in an encoded packet.
fn find_ma(packet: &[u8]) -> Option<usize> {
    let mut offset = HEADER_LEN;
    for (typ, value) in super::wire::attributes(packet.get(HEADER_LEN..)?) {
        if typ == dict::MESSAGE_AUTHENTICATOR && value.len() == 16 {
            return Some(offset);
        }
        offset += value.len() + 2;
    }
    None
}

/// Computes the Message-Authenticator of an encoded packet containing one, using `vector` as
/// the HMAC vector (see the module table); `None` if the packet has no such attribute.
pub fn message_authenticator(packet: &[u8], vector: &[u8; 16], secret: &[u8]) -> Option<[u8; 16]> {
    ma_over(packet, find_ma(packet)?, vector, secret)
}

/// Writes the Message-Authenticator value into an encoded packet; false if it has none.
pub fn sign_message_authenticator(packet: &mut [u8], vector: &[u8; 16], secret: &[u8]) -> bool {
    let Some(at) = find_ma(packet) else {
        return false;
    };
    let Some(mac) = ma_over(packet, at, vector, secret) else {
        return false;
    };
    match packet.get_mut(at + 2..at + 18) {
        Some(slot) => {
            slot.copy_from_slice(&mac);
            true
        }
        None => false,
    }
}

/// Checks a validated packet's Message-Authenticator against each of `vectors`.
fn check_ma(
    packet: &Validated<'_>,
    vectors: &[[u8; 16]],
    secret: &[u8],
) -> Result<MaStatus, DropReason> {
    let (Some(at), Some(got)) = (
        packet.message_authenticator_offset(),
        packet.message_authenticator(),
    ) else {
        return Ok(MaStatus::Absent);
    };
    for vector in vectors {
        if let Some(mac) = ma_over(packet.bytes(), at, vector, secret)
            && ct_eq(&mac, got)
        {
            return Ok(MaStatus::Valid);
        }
    }
    Err(DropReason::BadMessageAuthenticator)
}

/// Request Authenticator of an Accounting/CoA/Disconnect-Request (RFC 2866 §3):
/// MD5(Code + Identifier + Length + 16 zero octets + Attributes + Secret).
pub fn request_authenticator(packet: &[u8], secret: &[u8]) -> [u8; 16] {
    let head = packet.get(..4).unwrap_or_default();
    let attrs = packet.get(HEADER_LEN..).unwrap_or_default();
    md5(&[head, &ZERO_VECTOR, attrs, secret])
}

/// Response Authenticator (RFC 2865 §3):
/// MD5(Code + Identifier + Length + Request Authenticator + Attributes + Secret).
pub fn response_authenticator(packet: &[u8], request_auth: &[u8; 16], secret: &[u8]) -> [u8; 16] {
    let head = packet.get(..4).unwrap_or_default();
    let attrs = packet.get(HEADER_LEN..).unwrap_or_default();
    md5(&[head, request_auth, attrs, secret])
}

/// Verifies a request from a NAS (or, for CoA, to a NAS): the Request Authenticator of
/// Accounting/CoA/Disconnect-Request, and the Message-Authenticator whenever present.
///
/// Enforces the RFC's unconditional requirements: Status-Server (RFC 5997 §3) and any packet
/// with EAP-Message (RFC 3579 §3.3) must carry Message-Authenticator. Whether an
/// Access-Request *without* one is acceptable is the caller's per-NAS policy, decided from the
/// returned [`MaStatus`].
pub fn verify_request(req: &Validated<'_>, secret: &[u8]) -> Result<MaStatus, DropReason> {
    let code = req.code();
    let own = req.authenticator();
    let vector = request_ma_vector(code, &own).ok_or(DropReason::UnexpectedCode)?;
    if has_computed_request_authenticator(code) {
        let expected = request_authenticator(req.bytes(), secret);
        if !ct_eq(&expected, &own) {
            return Err(DropReason::BadAuthenticator);
        }
    }
    let status = check_ma(req, &[vector], secret)?;
    let needs_ma = code == Code::StatusServer || req.attr(dict::EAP_MESSAGE).is_some();
    if needs_ma && status == MaStatus::Absent {
        return Err(DropReason::MissingMessageAuthenticator);
    }
    Ok(status)
}

/// Verifies a reply to a request we sent: code, identifier, Response Authenticator, and the
/// Message-Authenticator whenever present (both vector conventions accepted where vendors
/// differ, see the module table). Whether a reply *without* one is acceptable is the caller's
/// policy.
pub fn verify_response(
    resp: &Validated<'_>,
    request: &RequestMeta,
    secret: &[u8],
) -> Result<MaStatus, DropReason> {
    if !is_valid_reply(request.code, resp.code()) {
        return Err(DropReason::UnexpectedCode);
    }
    if resp.identifier() != request.identifier {
        return Err(DropReason::IdentifierMismatch);
    }
    let expected = response_authenticator(resp.bytes(), &request.authenticator, secret);
    if !ct_eq(&expected, &resp.authenticator()) {
        return Err(DropReason::BadAuthenticator);
    }
    match resp.code() {
        Code::AccessAccept | Code::AccessReject | Code::AccessChallenge => {
            check_ma(resp, &[request.authenticator], secret)
        }
        _ => check_ma(resp, &[request.authenticator, ZERO_VECTOR], secret),
    }
}

/// Who the packet under construction is for, which decides how [`PacketBuilder::finish`]
/// signs it.
#[derive(Debug, Clone)]
enum Role {
    Request {
        message_authenticator: bool,
    },
    Reply {
        request_code: Code,
        request_authenticator: [u8; 16],
        proxy_state: Vec<u8>,
    },
}

/// Encoder for the packets we send: replies to NAS requests (with Message-Authenticator first
/// and Proxy-State echoed), and requests (CoA/Disconnect towards a NAS; Access/Accounting for
/// load generators and tests).
///
/// Attributes are written in the order they are added; [`PacketBuilder::finish`] fills in
/// Length, Message-Authenticator and the Request/Response Authenticator.
#[derive(Debug, Clone)]
pub struct PacketBuilder {
    code: Code,
    buf: Vec<u8>,
    role: Role,
    /// Attributes in `buf` plus echoed Proxy-State.
    attributes: usize,
}

impl PacketBuilder {
    /// Starts a request. `authenticator` must be 16 unpredictable octets for Access-Request
    /// and Status-Server (RFC 2865 §3); for Accounting/CoA/Disconnect-Request it is ignored and
    /// computed by `finish`. Message-Authenticator is included (first) unless
    /// [`Self::without_message_authenticator`] is called.
    pub fn request(
        code: Code,
        identifier: u8,
        authenticator: [u8; 16],
    ) -> Result<Self, EncodeError> {
        if !is_request(code) {
            return Err(EncodeError::NotARequest(code as u8));
        }
        let mut b = PacketBuilder {
            code,
            buf: header(code, identifier, &authenticator),
            role: Role::Request {
                message_authenticator: true,
            },
            attributes: 0,
        };
        b.push_ma_placeholder();
        Ok(b)
    }

    /// Starts the reply `code` to a validated request: copies its identifier, will echo its
    /// Proxy-State attributes in order (RFC 2865 §5.33) after everything added, and puts
    /// Message-Authenticator first (always: BlastRADIUS mitigation).
    pub fn reply(request: &Validated<'_>, code: Code) -> Result<Self, EncodeError> {
        if !is_valid_reply(request.code(), code) {
            return Err(EncodeError::InvalidReplyCode {
                request: request.code() as u8,
                reply: code as u8,
            });
        }
        let mut proxy_state = Vec::new();
        let mut attributes = 0;
        for value in request.attrs(dict::PROXY_STATE) {
            attributes += 1;
            proxy_state.push(dict::PROXY_STATE);
            // Came from a validated attribute, so value.len() <= 253.
            proxy_state.push((value.len() + 2) as u8);
            proxy_state.extend_from_slice(value);
        }
        let request_authenticator = request.authenticator();
        let mut b = PacketBuilder {
            code,
            buf: header(code, request.identifier(), &request_authenticator),
            role: Role::Reply {
                request_code: request.code(),
                request_authenticator,
                proxy_state,
            },
            attributes,
        };
        b.push_ma_placeholder();
        if b.len() > MAX_PACKET_LEN {
            return Err(EncodeError::PacketTooLong);
        }
        if b.attributes > MAX_ATTRIBUTES {
            return Err(EncodeError::TooManyAttributes);
        }
        Ok(b)
    }

    /// Leaves Message-Authenticator out of a *request* (to emulate a legacy NAS in tests, or
    /// for Accounting-Requests); has no effect on replies, which are always signed.
    pub fn without_message_authenticator(mut self) -> Self {
        if let Role::Request {
            message_authenticator,
        } = &mut self.role
            && *message_authenticator
        {
            *message_authenticator = false;
            self.buf.truncate(HEADER_LEN);
            self.attributes = 0;
        }
        self
    }

    fn push_ma_placeholder(&mut self) {
        self.attributes += 1;
        self.buf.push(dict::MESSAGE_AUTHENTICATOR);
        self.buf.push(18);
        self.buf.extend_from_slice(&ZERO_VECTOR);
    }

    /// The packet code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// Encoded length so far, including echoed Proxy-State.
    pub fn len(&self) -> usize {
        let tail = match &self.role {
            Role::Reply { proxy_state, .. } => proxy_state.len(),
            Role::Request { .. } => 0,
        };
        self.buf.len() + tail
    }

    /// Never true: the header alone is 20 octets.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends one attribute.
    pub fn attr(&mut self, typ: u8, value: &[u8]) -> Result<&mut Self, EncodeError> {
        let is_reply = matches!(self.role, Role::Reply { .. });
        if typ == 0 || typ == dict::MESSAGE_AUTHENTICATOR || (is_reply && typ == dict::PROXY_STATE)
        {
            return Err(EncodeError::ReservedAttribute(typ));
        }
        if value.len() > MAX_ATTRIBUTE_VALUE_LEN {
            return Err(EncodeError::ValueTooLong(value.len()));
        }
        if self.len() + 2 + value.len() > MAX_PACKET_LEN {
            return Err(EncodeError::PacketTooLong);
        }
        if self.attributes >= MAX_ATTRIBUTES {
            return Err(EncodeError::TooManyAttributes);
        }
        self.attributes += 1;
        self.buf.push(typ);
        // Cannot truncate: value.len() <= 253 was checked above.
        self.buf.push((value.len() + 2) as u8);
        self.buf.extend_from_slice(value);
        Ok(self)
    }

    /// Appends a text attribute.
    pub fn attr_str(&mut self, typ: u8, value: &str) -> Result<&mut Self, EncodeError> {
        self.attr(typ, value.as_bytes())
    }

    /// Appends a 32-bit integer attribute (network order).
    pub fn attr_u32(&mut self, typ: u8, value: u32) -> Result<&mut Self, EncodeError> {
        self.attr(typ, &value.to_be_bytes())
    }

    /// Appends an IPv4 address attribute.
    pub fn attr_ipv4(&mut self, typ: u8, addr: Ipv4Addr) -> Result<&mut Self, EncodeError> {
        self.attr(typ, &addr.octets())
    }

    /// Appends a long value split over consecutive attributes of 253 octets (Reply-Message,
    /// EAP-Message, RFC 2865 §5.18 / RFC 3579 §3.1). An empty value adds one empty attribute.
    pub fn attr_split(&mut self, typ: u8, value: &[u8]) -> Result<&mut Self, EncodeError> {
        let chunks = value.len().div_ceil(MAX_ATTRIBUTE_VALUE_LEN).max(1);
        // Checked up front so a value is either added whole or not at all.
        if self.len() + 2 * chunks + value.len() > MAX_PACKET_LEN {
            return Err(EncodeError::PacketTooLong);
        }
        if self.attributes + chunks > MAX_ATTRIBUTES {
            return Err(EncodeError::TooManyAttributes);
        }
        if value.is_empty() {
            return self.attr(typ, value);
        }
        for chunk in value.chunks(MAX_ATTRIBUTE_VALUE_LEN) {
            self.attr(typ, chunk)?;
        }
        Ok(self)
    }

    /// Appends a Vendor-Specific attribute with one sub-attribute.
    pub fn vsa(&mut self, vendor: u32, typ: u8, value: &[u8]) -> Result<&mut Self, EncodeError> {
        let v = dict::vsa(vendor, typ, value)?;
        self.attr(dict::VENDOR_SPECIFIC, &v)
    }

    /// Appends a Vendor-Specific text sub-attribute.
    pub fn vsa_str(&mut self, vendor: u32, typ: u8, value: &str) -> Result<&mut Self, EncodeError> {
        self.vsa(vendor, typ, value.as_bytes())
    }

    /// Appends a Vendor-Specific 32-bit integer sub-attribute.
    pub fn vsa_u32(&mut self, vendor: u32, typ: u8, value: u32) -> Result<&mut Self, EncodeError> {
        self.vsa(vendor, typ, &value.to_be_bytes())
    }

    /// Completes the packet: Length, Message-Authenticator, then the Request Authenticator
    /// (Accounting/CoA/Disconnect-Request) or Response Authenticator (replies), in that order
    /// because the authenticators hash the finished Message-Authenticator.
    pub fn finish(self, secret: &[u8]) -> Vec<u8> {
        let PacketBuilder {
            code,
            mut buf,
            role,
            ..
        } = self;
        let (ma, vector, reply_to) = match role {
            Role::Request {
                message_authenticator,
            } => {
                // Accounting-style requests are hashed with a zero Authenticator field, then
                // get the computed Request Authenticator below.
                if has_computed_request_authenticator(code)
                    && let Some(field) = buf.get_mut(4..HEADER_LEN)
                {
                    field.copy_from_slice(&ZERO_VECTOR);
                }
                let vector = header_authenticator(&buf);
                (message_authenticator, vector, None)
            }
            Role::Reply {
                request_code,
                request_authenticator,
                proxy_state,
            } => {
                buf.extend_from_slice(&proxy_state);
                let vector = reply_ma_vector(request_code, code, &request_authenticator);
                (true, vector, Some(request_authenticator))
            }
        };
        // Builder methods keep the total within 4096, so this fits in u16.
        let length = u16::try_from(buf.len()).unwrap_or(u16::MAX);
        if let Some(field) = buf.get_mut(2..4) {
            field.copy_from_slice(&length.to_be_bytes());
        }
        if ma {
            // The placeholder sits right after the header.
            if let Some(mac) = ma_over(&buf, HEADER_LEN, &vector, secret)
                && let Some(slot) = buf.get_mut(HEADER_LEN + 2..HEADER_LEN + 18)
            {
                slot.copy_from_slice(&mac);
            }
        }
        let authenticator = match reply_to {
            Some(request_auth) => Some(response_authenticator(&buf, &request_auth, secret)),
            None if has_computed_request_authenticator(code) => {
                Some(request_authenticator(&buf, secret))
            }
            None => None,
        };
        if let Some(a) = authenticator
            && let Some(field) = buf.get_mut(4..HEADER_LEN)
        {
            field.copy_from_slice(&a);
        }
        buf
    }
}

/// Whether the Request Authenticator is an MD5 over the packet (RFC 2866 §3, RFC 5176 §2.3)
/// rather than random octets (Access-Request, Status-Server).
fn has_computed_request_authenticator(code: Code) -> bool {
    matches!(
        code,
        Code::AccountingRequest | Code::CoARequest | Code::DisconnectRequest
    )
}

fn header(code: Code, identifier: u8, authenticator: &[u8; 16]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    buf.push(code as u8);
    buf.push(identifier);
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(authenticator);
    buf
}

fn header_authenticator(buf: &[u8]) -> [u8; 16] {
    buf.get(4..HEADER_LEN)
        .and_then(|s| <[u8; 16]>::try_from(s).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::wire::validate;
    use super::*;
    use ::radius::core::packet::Packet;

    const SECRET: &[u8] = b"testing123";

    fn access_request(with_ma: bool) -> Vec<u8> {
        let mut b = PacketBuilder::request(Code::AccessRequest, 42, [7; 16]).unwrap();
        if !with_ma {
            b = b.without_message_authenticator();
        }
        b.attr_str(dict::USER_NAME, "demo").unwrap();
        b.attr(dict::PROXY_STATE, b"first").unwrap();
        b.attr(dict::PROXY_STATE, b"second").unwrap();
        b.finish(SECRET)
    }

    #[test]
    fn access_request_round_trip() {
        let raw = access_request(true);
        let v = validate(&raw).unwrap();
        assert_eq!(v.message_authenticator_offset(), Some(HEADER_LEN));
        assert_eq!(verify_request(&v, SECRET), Ok(MaStatus::Valid));
        assert_eq!(
            verify_request(&v, b"wrong"),
            Err(DropReason::BadMessageAuthenticator)
        );
        // The crate agrees the packet decodes; it cannot check Access-Request integrity.
        assert!(Packet::decode(&raw, SECRET).is_ok());

        let legacy = access_request(false);
        let v = validate(&legacy).unwrap();
        assert_eq!(verify_request(&v, SECRET), Ok(MaStatus::Absent));
    }

    #[test]
    fn tampering_breaks_message_authenticator() {
        let mut raw = access_request(true);
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let v = validate(&raw).unwrap();
        assert_eq!(
            verify_request(&v, SECRET),
            Err(DropReason::BadMessageAuthenticator)
        );
    }

    #[test]
    fn accounting_request_authenticator() {
        for (code, ma) in [
            (Code::AccountingRequest, false),
            (Code::AccountingRequest, true),
            (Code::CoARequest, true),
            (Code::DisconnectRequest, true),
        ] {
            let mut b = PacketBuilder::request(code, 9, [0xEE; 16]).unwrap();
            if !ma {
                b = b.without_message_authenticator();
            }
            b.attr_str(dict::ACCT_SESSION_ID, "81000001").unwrap();
            let raw = b.finish(SECRET);
            // The crate's independent check of the RFC 2866 Request Authenticator.
            assert!(Packet::is_authentic_request(&raw, SECRET), "{code:?}");
            let v = validate(&raw).unwrap();
            let want = if ma {
                MaStatus::Valid
            } else {
                MaStatus::Absent
            };
            assert_eq!(verify_request(&v, SECRET), Ok(want), "{code:?}");
            assert_eq!(
                verify_request(&v, b"other"),
                Err(DropReason::BadAuthenticator)
            );
            let mut bad = raw.clone();
            bad[4] ^= 0x80;
            assert_eq!(
                verify_request(&validate(&bad).unwrap(), SECRET),
                Err(DropReason::BadAuthenticator)
            );
        }
    }

    #[test]
    fn status_server_and_eap_need_message_authenticator() {
        let raw = PacketBuilder::request(Code::StatusServer, 1, [3; 16])
            .unwrap()
            .without_message_authenticator()
            .finish(SECRET);
        assert_eq!(
            verify_request(&validate(&raw).unwrap(), SECRET),
            Err(DropReason::MissingMessageAuthenticator)
        );
        let raw = PacketBuilder::request(Code::StatusServer, 1, [3; 16])
            .unwrap()
            .finish(SECRET);
        assert_eq!(
            verify_request(&validate(&raw).unwrap(), SECRET),
            Ok(MaStatus::Valid)
        );

        let mut b = PacketBuilder::request(Code::AccessRequest, 1, [3; 16])
            .unwrap()
            .without_message_authenticator();
        b.attr(dict::EAP_MESSAGE, &[2, 0, 0, 5, 1]).unwrap();
        let raw = b.finish(SECRET);
        assert_eq!(
            verify_request(&validate(&raw).unwrap(), SECRET),
            Err(DropReason::MissingMessageAuthenticator)
        );
    }

    #[test]
    fn replies_to_requests_are_not_requests() {
        let raw = access_request(true);
        let req = validate(&raw).unwrap();
        let reply = PacketBuilder::reply(&req, Code::AccessAccept)
            .unwrap()
            .finish(SECRET);
        assert_eq!(
            verify_request(&validate(&reply).unwrap(), SECRET),
            Err(DropReason::UnexpectedCode)
        );
    }

    #[test]
    fn access_accept_layout_and_crate_agreement() {
        let raw = access_request(true);
        let req = validate(&raw).unwrap();
        let mut b = PacketBuilder::reply(&req, Code::AccessAccept).unwrap();
        b.vsa_str(
            dict::VENDOR_MIKROTIK,
            dict::mikrotik::RATE_LIMIT,
            "2048k/10240k",
        )
        .unwrap();
        b.attr_u32(dict::SESSION_TIMEOUT, 3600).unwrap();
        let reply = b.finish(SECRET);

        let v = validate(&reply).unwrap();
        assert_eq!(v.code(), Code::AccessAccept);
        assert_eq!(v.identifier(), 42);
        // Message-Authenticator first, our attributes, then Proxy-State echoed in order.
        let order: Vec<u8> = v.attributes().map(|(t, _)| t).collect();
        assert_eq!(order, vec![80, 26, 27, 33, 33]);
        let ps: Vec<&[u8]> = v.attrs(dict::PROXY_STATE).collect();
        assert_eq!(ps, vec![&b"first"[..], &b"second"[..]]);
        // The crate's independent Response Authenticator check.
        assert!(Packet::is_authentic_response(&reply, &raw, SECRET));
        let meta = RequestMeta::from(&req);
        assert_eq!(verify_response(&v, &meta, SECRET), Ok(MaStatus::Valid));
        assert_eq!(
            verify_response(&v, &meta, b"nope"),
            Err(DropReason::BadAuthenticator)
        );
        let wrong_id = RequestMeta {
            identifier: 43,
            ..meta
        };
        assert_eq!(
            verify_response(&v, &wrong_id, SECRET),
            Err(DropReason::IdentifierMismatch)
        );
        let acct = RequestMeta {
            code: Code::AccountingRequest,
            ..meta
        };
        assert_eq!(
            verify_response(&v, &acct, SECRET),
            Err(DropReason::UnexpectedCode)
        );
        // HMAC computed with the request authenticator as vector.
        let expect = message_authenticator(&reply, &meta.authenticator, SECRET).unwrap();
        assert_eq!(v.message_authenticator().unwrap(), &expect);
    }

    #[test]
    fn accounting_response_uses_zero_vector() {
        let mut b = PacketBuilder::request(Code::AccountingRequest, 5, [0; 16]).unwrap();
        b.attr_u32(dict::ACCT_STATUS_TYPE, dict::ACCT_STATUS_START)
            .unwrap();
        let raw = b.finish(SECRET);
        let req = validate(&raw).unwrap();
        let reply = PacketBuilder::reply(&req, Code::AccountingResponse)
            .unwrap()
            .finish(SECRET);
        let v = validate(&reply).unwrap();
        assert_eq!(
            v.message_authenticator().unwrap(),
            &message_authenticator(&reply, &ZERO_VECTOR, SECRET).unwrap()
        );
        assert!(Packet::is_authentic_response(&reply, &raw, SECRET));
        assert_eq!(
            verify_response(&v, &RequestMeta::from(&req), SECRET),
            Ok(MaStatus::Valid)
        );
    }

    #[test]
    fn status_server_replies_use_request_vector() {
        let raw = PacketBuilder::request(Code::StatusServer, 77, [5; 16])
            .unwrap()
            .finish(SECRET);
        let req = validate(&raw).unwrap();
        for code in [Code::AccessAccept, Code::AccountingResponse] {
            let reply = PacketBuilder::reply(&req, code).unwrap().finish(SECRET);
            let v = validate(&reply).unwrap();
            assert_eq!(
                v.message_authenticator().unwrap(),
                &message_authenticator(&reply, &[5; 16], SECRET).unwrap()
            );
            assert_eq!(
                verify_response(&v, &RequestMeta::from(&req), SECRET),
                Ok(MaStatus::Valid)
            );
        }
    }

    /// Re-signs an encoded reply's Message-Authenticator with `vector`, then its Response
    /// Authenticator, as a NAS following the other convention would.
    fn resign(reply: &mut [u8], vector: &[u8; 16], req_auth: &[u8; 16]) {
        reply[4..20].copy_from_slice(req_auth);
        assert!(sign_message_authenticator(reply, vector, SECRET));
        let ra = response_authenticator(reply, req_auth, SECRET);
        reply[4..20].copy_from_slice(&ra);
    }

    #[test]
    fn coa_and_disconnect_acks_accept_both_conventions() {
        for (req_code, replies) in [
            (Code::CoARequest, [Code::CoAACK, Code::CoANAK]),
            (
                Code::DisconnectRequest,
                [Code::DisconnectACK, Code::DisconnectNAK],
            ),
        ] {
            let mut b = PacketBuilder::request(req_code, 200, [0; 16]).unwrap();
            b.attr_str(dict::USER_NAME, "demo").unwrap();
            let raw = b.finish(SECRET);
            let req = validate(&raw).unwrap();
            let meta = RequestMeta::of(&raw).unwrap();
            assert_eq!(meta, RequestMeta::from(&req));
            for code in replies {
                let mut reply = PacketBuilder::reply(&req, code).unwrap();
                reply
                    .attr_u32(dict::ERROR_CAUSE, dict::ERROR_CAUSE_SESSION_NOT_FOUND)
                    .unwrap();
                let mut reply = reply.finish(SECRET);
                // Ours: request-authenticator vector (RFC 5176).
                assert_eq!(
                    verify_response(&validate(&reply).unwrap(), &meta, SECRET),
                    Ok(MaStatus::Valid)
                );
                assert!(Packet::is_authentic_response(&reply, &raw, SECRET));
                // FreeRADIUS rad_sign style: zero vector.
                resign(&mut reply, &ZERO_VECTOR, &meta.authenticator);
                assert_eq!(
                    verify_response(&validate(&reply).unwrap(), &meta, SECRET),
                    Ok(MaStatus::Valid)
                );
                // Anything else fails.
                resign(&mut reply, &[1; 16], &meta.authenticator);
                assert_eq!(
                    verify_response(&validate(&reply).unwrap(), &meta, SECRET),
                    Err(DropReason::BadMessageAuthenticator)
                );
            }
        }
    }

    #[test]
    fn access_accept_rejects_zero_vector_convention() {
        let raw = access_request(true);
        let req = validate(&raw).unwrap();
        let meta = RequestMeta::from(&req);
        let mut reply = PacketBuilder::reply(&req, Code::AccessReject)
            .unwrap()
            .finish(SECRET);
        resign(&mut reply, &ZERO_VECTOR, &meta.authenticator);
        assert_eq!(
            verify_response(&validate(&reply).unwrap(), &meta, SECRET),
            Err(DropReason::BadMessageAuthenticator)
        );
    }

    #[test]
    fn reply_code_must_match_request() {
        let raw = access_request(true);
        let req = validate(&raw).unwrap();
        assert_eq!(
            PacketBuilder::reply(&req, Code::AccountingResponse).unwrap_err(),
            EncodeError::InvalidReplyCode {
                request: 1,
                reply: 5
            }
        );
        assert!(PacketBuilder::reply(&req, Code::AccessChallenge).is_ok());
        assert_eq!(
            PacketBuilder::request(Code::AccessAccept, 1, [0; 16]).unwrap_err(),
            EncodeError::NotARequest(2)
        );
    }

    #[test]
    fn builder_limits() {
        let raw = access_request(true);
        let req = validate(&raw).unwrap();
        let mut b = PacketBuilder::reply(&req, Code::AccessReject).unwrap();
        assert_eq!(
            b.attr(dict::MESSAGE_AUTHENTICATOR, &[0; 16]).unwrap_err(),
            EncodeError::ReservedAttribute(80)
        );
        assert_eq!(
            b.attr(dict::PROXY_STATE, b"x").unwrap_err(),
            EncodeError::ReservedAttribute(33)
        );
        assert_eq!(
            b.attr(0, b"x").unwrap_err(),
            EncodeError::ReservedAttribute(0)
        );
        assert_eq!(
            b.attr(dict::REPLY_MESSAGE, &[b'a'; 254]).unwrap_err(),
            EncodeError::ValueTooLong(254)
        );
        // Long Reply-Message splits over 253-octet attributes.
        b.attr_split(dict::REPLY_MESSAGE, &[b'a'; 600]).unwrap();
        let reply = b.finish(SECRET);
        let v = validate(&reply).unwrap();
        let parts: Vec<usize> = v.attrs(dict::REPLY_MESSAGE).map(<[u8]>::len).collect();
        assert_eq!(parts, vec![253, 253, 94]);
        // Filling up to the 4096 limit, then one octet more fails.
        let mut b = PacketBuilder::reply(&req, Code::AccessReject).unwrap();
        while b.len() + 255 <= MAX_PACKET_LEN {
            b.attr(dict::CLASS, &[1; 253]).unwrap();
        }
        let room = MAX_PACKET_LEN - b.len() - 2;
        b.attr(dict::CLASS, &vec![2; room]).unwrap();
        assert_eq!(b.len(), MAX_PACKET_LEN);
        assert_eq!(
            b.attr(dict::CLASS, &[]).unwrap_err(),
            EncodeError::PacketTooLong
        );
        let full = b.finish(SECRET);
        assert_eq!(full.len(), MAX_PACKET_LEN);
        assert!(validate(&full).is_ok());
    }

    #[test]
    fn reply_with_huge_proxy_state_fails_cleanly() {
        let mut b = PacketBuilder::request(Code::AccessRequest, 1, [1; 16])
            .unwrap()
            .without_message_authenticator();
        while b.len() + 255 <= MAX_PACKET_LEN {
            b.attr(dict::PROXY_STATE, &[3; 253]).unwrap();
        }
        let room = MAX_PACKET_LEN - b.len() - 2;
        b.attr(dict::PROXY_STATE, &vec![4; room]).unwrap();
        let raw = b.finish(SECRET);
        assert_eq!(raw.len(), MAX_PACKET_LEN);
        let req = validate(&raw).unwrap();
        assert_eq!(
            PacketBuilder::reply(&req, Code::AccessAccept).unwrap_err(),
            EncodeError::PacketTooLong
        );
    }

    #[test]
    fn attribute_count_stays_within_what_we_accept() {
        // 255 Proxy-States is a valid request, but echoing them plus Message-Authenticator
        // would make a reply our own validator (and FreeRADIUS) drops.
        let mut b = PacketBuilder::request(Code::AccessRequest, 1, [1; 16])
            .unwrap()
            .without_message_authenticator();
        for _ in 0..MAX_ATTRIBUTES {
            b.attr(dict::PROXY_STATE, &[]).unwrap();
        }
        assert_eq!(
            b.attr(dict::PROXY_STATE, &[]).unwrap_err(),
            EncodeError::TooManyAttributes
        );
        let raw = b.finish(SECRET);
        let req = validate(&raw).unwrap();
        assert_eq!(req.attribute_count(), MAX_ATTRIBUTES);
        assert_eq!(
            PacketBuilder::reply(&req, Code::AccessAccept).unwrap_err(),
            EncodeError::TooManyAttributes
        );
        // A reply filled to the limit still validates; attr_split is all-or-nothing.
        let raw = access_request(true);
        let req = validate(&raw).unwrap();
        let mut b = PacketBuilder::reply(&req, Code::AccessAccept).unwrap();
        while b.attr(dict::CLASS, b"c").is_ok() {}
        assert_eq!(
            b.attr_split(dict::REPLY_MESSAGE, b"x").unwrap_err(),
            EncodeError::TooManyAttributes
        );
        let reply = b.finish(SECRET);
        assert_eq!(validate(&reply).unwrap().attribute_count(), MAX_ATTRIBUTES);
    }

    #[test]
    fn request_meta_of_garbage() {
        assert_eq!(RequestMeta::of(&[]), None);
        assert_eq!(RequestMeta::of(&[0; 20]), None);
        assert!(RequestMeta::of(&[1; 20]).is_some());
    }

    #[test]
    fn sign_without_attribute_is_refused() {
        let mut raw = PacketBuilder::request(Code::AccessRequest, 1, [1; 16])
            .unwrap()
            .without_message_authenticator()
            .finish(SECRET);
        assert!(!sign_message_authenticator(&mut raw, &[1; 16], SECRET));
        assert_eq!(message_authenticator(&raw, &[1; 16], SECRET), None);
    }
}
