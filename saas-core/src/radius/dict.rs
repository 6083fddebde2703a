//! Attribute dictionary: the standard attributes the AAA engine reads or writes, the MikroTik
//! (14988) and Microsoft (311, RFC 2548) vendor attributes, Vendor-Specific (26) encoding and
//! parsing, and the `Mikrotik-Rate-Limit` string format.
//!
//! Numbers follow RFC 2865/2866/2869/3162/3576/4818/5176/6911 and, for vendors, the FreeRADIUS
//! dictionaries `dictionary.mikrotik` and `dictionary.microsoft` (the latter is RFC 2548).

use std::fmt::Write as _;

use super::auth::EncodeError;

// --- Standard attributes -------------------------------------------------------------------

/// User-Name (RFC 2865 §5.1).
pub const USER_NAME: u8 = 1;
/// User-Password, PAP-hidden (RFC 2865 §5.2).
pub const USER_PASSWORD: u8 = 2;
/// CHAP-Password: CHAP ident + 16-octet response (RFC 2865 §5.3).
pub const CHAP_PASSWORD: u8 = 3;
/// NAS-IP-Address (RFC 2865 §5.4).
pub const NAS_IP_ADDRESS: u8 = 4;
/// NAS-Port (RFC 2865 §5.5).
pub const NAS_PORT: u8 = 5;
/// Service-Type (RFC 2865 §5.6).
pub const SERVICE_TYPE: u8 = 6;
/// Framed-Protocol (RFC 2865 §5.7).
pub const FRAMED_PROTOCOL: u8 = 7;
/// Framed-IP-Address (RFC 2865 §5.8).
pub const FRAMED_IP_ADDRESS: u8 = 8;
/// Framed-IP-Netmask (RFC 2865 §5.9).
pub const FRAMED_IP_NETMASK: u8 = 9;
/// Filter-Id (RFC 2865 §5.11).
pub const FILTER_ID: u8 = 11;
/// Framed-MTU (RFC 2865 §5.12).
pub const FRAMED_MTU: u8 = 12;
/// Reply-Message (RFC 2865 §5.18).
pub const REPLY_MESSAGE: u8 = 18;
/// Framed-Route (RFC 2865 §5.22).
pub const FRAMED_ROUTE: u8 = 22;
/// State (RFC 2865 §5.24).
pub const STATE: u8 = 24;
/// Class (RFC 2865 §5.25).
pub const CLASS: u8 = 25;
/// Vendor-Specific (RFC 2865 §5.26).
pub const VENDOR_SPECIFIC: u8 = 26;
/// Session-Timeout in seconds (RFC 2865 §5.27).
pub const SESSION_TIMEOUT: u8 = 27;
/// Idle-Timeout in seconds (RFC 2865 §5.28).
pub const IDLE_TIMEOUT: u8 = 28;
/// Called-Station-Id (RFC 2865 §5.30).
pub const CALLED_STATION_ID: u8 = 30;
/// Calling-Station-Id, the subscriber MAC on PPPoE/hotspot (RFC 2865 §5.31).
pub const CALLING_STATION_ID: u8 = 31;
/// NAS-Identifier (RFC 2865 §5.32).
pub const NAS_IDENTIFIER: u8 = 32;
/// Proxy-State, echoed unmodified and in order in replies (RFC 2865 §5.33).
pub const PROXY_STATE: u8 = 33;
/// Acct-Status-Type (RFC 2866 §5.1).
pub const ACCT_STATUS_TYPE: u8 = 40;
/// Acct-Delay-Time (RFC 2866 §5.2).
pub const ACCT_DELAY_TIME: u8 = 41;
/// Acct-Input-Octets, low 32 bits (RFC 2866 §5.3).
pub const ACCT_INPUT_OCTETS: u8 = 42;
/// Acct-Output-Octets, low 32 bits (RFC 2866 §5.4).
pub const ACCT_OUTPUT_OCTETS: u8 = 43;
/// Acct-Session-Id (RFC 2866 §5.5).
pub const ACCT_SESSION_ID: u8 = 44;
/// Acct-Authentic (RFC 2866 §5.6).
pub const ACCT_AUTHENTIC: u8 = 45;
/// Acct-Session-Time in seconds (RFC 2866 §5.7).
pub const ACCT_SESSION_TIME: u8 = 46;
/// Acct-Input-Packets (RFC 2866 §5.8).
pub const ACCT_INPUT_PACKETS: u8 = 47;
/// Acct-Output-Packets (RFC 2866 §5.9).
pub const ACCT_OUTPUT_PACKETS: u8 = 48;
/// Acct-Terminate-Cause (RFC 2866 §5.10).
pub const ACCT_TERMINATE_CAUSE: u8 = 49;
/// Acct-Multi-Session-Id (RFC 2866 §5.11).
pub const ACCT_MULTI_SESSION_ID: u8 = 50;
/// Acct-Input-Gigawords, high 32 bits of the input octets (RFC 2869 §5.1).
pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
/// Acct-Output-Gigawords, high 32 bits of the output octets (RFC 2869 §5.2).
pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
/// Event-Timestamp (RFC 2869 §5.3).
pub const EVENT_TIMESTAMP: u8 = 55;
/// CHAP-Challenge; absent means the Request Authenticator is the challenge (RFC 2865 §5.40).
pub const CHAP_CHALLENGE: u8 = 60;
/// NAS-Port-Type (RFC 2865 §5.41).
pub const NAS_PORT_TYPE: u8 = 61;
/// Port-Limit (RFC 2865 §5.42).
pub const PORT_LIMIT: u8 = 62;
/// Connect-Info (RFC 2869 §5.11).
pub const CONNECT_INFO: u8 = 77;
/// EAP-Message; its presence makes Message-Authenticator mandatory (RFC 3579 §3.3).
pub const EAP_MESSAGE: u8 = 79;
/// Message-Authenticator, HMAC-MD5 over the packet (RFC 3579 §3.2, RFC 2869 §5.14).
pub const MESSAGE_AUTHENTICATOR: u8 = 80;
/// Acct-Interim-Interval in seconds (RFC 2869 §5.16).
pub const ACCT_INTERIM_INTERVAL: u8 = 85;
/// NAS-Port-Id (RFC 2869 §5.17).
pub const NAS_PORT_ID: u8 = 87;
/// Framed-Pool (RFC 2869 §5.18).
pub const FRAMED_POOL: u8 = 88;
/// Chargeable-User-Identity (RFC 4372).
pub const CHARGEABLE_USER_IDENTITY: u8 = 89;
/// NAS-IPv6-Address (RFC 3162 §2.1).
pub const NAS_IPV6_ADDRESS: u8 = 95;
/// Framed-Interface-Id (RFC 3162 §2.2).
pub const FRAMED_INTERFACE_ID: u8 = 96;
/// Framed-IPv6-Prefix (RFC 3162 §2.3).
pub const FRAMED_IPV6_PREFIX: u8 = 97;
/// Framed-IPv6-Route (RFC 3162 §2.5).
pub const FRAMED_IPV6_ROUTE: u8 = 99;
/// Framed-IPv6-Pool (RFC 3162 §2.6).
pub const FRAMED_IPV6_POOL: u8 = 100;
/// Error-Cause in CoA/Disconnect NAKs and ACKs (RFC 5176 §3.5).
pub const ERROR_CAUSE: u8 = 101;
/// Delegated-IPv6-Prefix (RFC 4818).
pub const DELEGATED_IPV6_PREFIX: u8 = 123;
/// Framed-IPv6-Address (RFC 6911 §3.1).
pub const FRAMED_IPV6_ADDRESS: u8 = 168;
/// DNS-Server-IPv6-Address (RFC 6911 §3.2).
pub const DNS_SERVER_IPV6_ADDRESS: u8 = 169;
/// Delegated-IPv6-Prefix-Pool (RFC 6911 §3.4).
pub const DELEGATED_IPV6_PREFIX_POOL: u8 = 171;

// --- Standard values -----------------------------------------------------------------------

/// Acct-Status-Type = Start.
pub const ACCT_STATUS_START: u32 = 1;
/// Acct-Status-Type = Stop.
pub const ACCT_STATUS_STOP: u32 = 2;
/// Acct-Status-Type = Interim-Update.
pub const ACCT_STATUS_INTERIM_UPDATE: u32 = 3;
/// Acct-Status-Type = Accounting-On (NAS booted: close all its sessions).
pub const ACCT_STATUS_ACCOUNTING_ON: u32 = 7;
/// Acct-Status-Type = Accounting-Off (NAS shutting down: close all its sessions).
pub const ACCT_STATUS_ACCOUNTING_OFF: u32 = 8;

/// Service-Type = Framed-User.
pub const SERVICE_TYPE_FRAMED: u32 = 2;
/// Framed-Protocol = PPP.
pub const FRAMED_PROTOCOL_PPP: u32 = 1;

/// Acct-Terminate-Cause = User-Request.
pub const TERMINATE_USER_REQUEST: u32 = 1;
/// Acct-Terminate-Cause = Lost-Carrier.
pub const TERMINATE_LOST_CARRIER: u32 = 2;
/// Acct-Terminate-Cause = Idle-Timeout.
pub const TERMINATE_IDLE_TIMEOUT: u32 = 4;
/// Acct-Terminate-Cause = Session-Timeout.
pub const TERMINATE_SESSION_TIMEOUT: u32 = 5;
/// Acct-Terminate-Cause = Admin-Reset (what a Disconnect-Request produces).
pub const TERMINATE_ADMIN_RESET: u32 = 6;
/// Acct-Terminate-Cause = NAS-Reboot.
pub const TERMINATE_NAS_REBOOT: u32 = 11;

/// Error-Cause = Residual Session Context Removed (RFC 5176 §3.5).
pub const ERROR_CAUSE_RESIDUAL_CONTEXT_REMOVED: u32 = 201;
/// Error-Cause = Unsupported Attribute.
pub const ERROR_CAUSE_UNSUPPORTED_ATTRIBUTE: u32 = 401;
/// Error-Cause = Missing Attribute.
pub const ERROR_CAUSE_MISSING_ATTRIBUTE: u32 = 402;
/// Error-Cause = NAS Identification Mismatch.
pub const ERROR_CAUSE_NAS_ID_MISMATCH: u32 = 403;
/// Error-Cause = Invalid Request.
pub const ERROR_CAUSE_INVALID_REQUEST: u32 = 404;
/// Error-Cause = Unsupported Service.
pub const ERROR_CAUSE_UNSUPPORTED_SERVICE: u32 = 405;
/// Error-Cause = Invalid Attribute Value.
pub const ERROR_CAUSE_INVALID_ATTRIBUTE_VALUE: u32 = 407;
/// Error-Cause = Administratively Prohibited.
pub const ERROR_CAUSE_ADMIN_PROHIBITED: u32 = 501;
/// Error-Cause = Session Context Not Found.
pub const ERROR_CAUSE_SESSION_NOT_FOUND: u32 = 503;
/// Error-Cause = Session Context Not Removable.
pub const ERROR_CAUSE_SESSION_NOT_REMOVABLE: u32 = 504;
/// Error-Cause = Resources Unavailable.
pub const ERROR_CAUSE_RESOURCES_UNAVAILABLE: u32 = 506;

// --- Vendors -------------------------------------------------------------------------------

/// IANA enterprise number of MikroTik.
pub const VENDOR_MIKROTIK: u32 = 14988;
/// IANA enterprise number of Microsoft.
pub const VENDOR_MICROSOFT: u32 = 311;

/// MikroTik vendor attributes (vendor 14988), per MikroTik's RADIUS client dictionary.
pub mod mikrotik {
    /// Mikrotik-Recv-Limit: bytes the client may send (integer).
    pub const RECV_LIMIT: u8 = 1;
    /// Mikrotik-Xmit-Limit: bytes the client may receive (integer).
    pub const XMIT_LIMIT: u8 = 2;
    /// Mikrotik-Group: router user group (string).
    pub const GROUP: u8 = 3;
    /// Mikrotik-Wireless-Forward (integer).
    pub const WIRELESS_FORWARD: u8 = 4;
    /// Mikrotik-Wireless-Skip-Dot1x (integer).
    pub const WIRELESS_SKIP_DOT1X: u8 = 5;
    /// Mikrotik-Wireless-Enc-Algo (integer).
    pub const WIRELESS_ENC_ALGO: u8 = 6;
    /// Mikrotik-Wireless-Enc-Key (string).
    pub const WIRELESS_ENC_KEY: u8 = 7;
    /// Mikrotik-Rate-Limit (string, see [`super::mikrotik_rate_limit`]).
    pub const RATE_LIMIT: u8 = 8;
    /// Mikrotik-Realm (string).
    pub const REALM: u8 = 9;
    /// Mikrotik-Host-IP (ipaddr).
    pub const HOST_IP: u8 = 10;
    /// Mikrotik-Mark-Id (string).
    pub const MARK_ID: u8 = 11;
    /// Mikrotik-Advertise-URL (string).
    pub const ADVERTISE_URL: u8 = 12;
    /// Mikrotik-Advertise-Interval (integer).
    pub const ADVERTISE_INTERVAL: u8 = 13;
    /// Mikrotik-Recv-Limit-Gigawords (integer).
    pub const RECV_LIMIT_GIGAWORDS: u8 = 14;
    /// Mikrotik-Xmit-Limit-Gigawords (integer).
    pub const XMIT_LIMIT_GIGAWORDS: u8 = 15;
    /// Mikrotik-Wireless-PSK (string).
    pub const WIRELESS_PSK: u8 = 16;
    /// Mikrotik-Total-Limit: bytes in both directions (integer).
    pub const TOTAL_LIMIT: u8 = 17;
    /// Mikrotik-Total-Limit-Gigawords (integer).
    pub const TOTAL_LIMIT_GIGAWORDS: u8 = 18;
    /// Mikrotik-Address-List: firewall address list the client address joins (string).
    pub const ADDRESS_LIST: u8 = 19;
    /// Mikrotik-Wireless-MPKey (string).
    pub const WIRELESS_MPKEY: u8 = 20;
    /// Mikrotik-Wireless-Comment (string).
    pub const WIRELESS_COMMENT: u8 = 21;
    /// Mikrotik-Delegated-IPv6-Pool (string).
    pub const DELEGATED_IPV6_POOL: u8 = 22;
    /// Mikrotik-DHCP-Option-Set (string).
    pub const DHCP_OPTION_SET: u8 = 23;
    /// Mikrotik-DHCP-Option-Param-STR1 (string).
    pub const DHCP_OPTION_PARAM_STR1: u8 = 24;
    /// Mikrotik-DHCP-Option-Param-STR2 (string).
    pub const DHCP_OPTION_PARAM_STR2: u8 = 25;
    /// Mikrotik-Wireless-VLANID (integer).
    pub const WIRELESS_VLANID: u8 = 26;
    /// Mikrotik-Wireless-VLANID-Type (integer).
    pub const WIRELESS_VLANID_TYPE: u8 = 27;
    /// Mikrotik-Wireless-Minsignal (string).
    pub const WIRELESS_MINSIGNAL: u8 = 28;
    /// Mikrotik-Wireless-Maxsignal (string).
    pub const WIRELESS_MAXSIGNAL: u8 = 29;
}

/// Microsoft vendor attributes (vendor 311), RFC 2548.
pub mod microsoft {
    /// MS-CHAP-Response (MS-CHAPv1, §2.3.2).
    pub const CHAP_RESPONSE: u8 = 1;
    /// MS-CHAP-Error: ident + "E=… R=… C=… V=… M=…" (§2.1.5).
    pub const CHAP_ERROR: u8 = 2;
    /// MS-CHAP-CPW-1 (§2.1.3).
    pub const CHAP_CPW_1: u8 = 3;
    /// MS-CHAP-CPW-2 (§2.1.4).
    pub const CHAP_CPW_2: u8 = 4;
    /// MS-CHAP-LM-Enc-PW (§2.1.5).
    pub const CHAP_LM_ENC_PW: u8 = 5;
    /// MS-CHAP-NT-Enc-PW (§2.1.6).
    pub const CHAP_NT_ENC_PW: u8 = 6;
    /// MS-MPPE-Encryption-Policy: 1 allowed, 2 required (§2.4.4).
    pub const MPPE_ENCRYPTION_POLICY: u8 = 7;
    /// MS-MPPE-Encryption-Types: bit mask, 2 = 128-bit RC4 (§2.4.5).
    pub const MPPE_ENCRYPTION_TYPES: u8 = 8;
    /// MS-RAS-Vendor (§2.2.1).
    pub const RAS_VENDOR: u8 = 9;
    /// MS-CHAP-Domain (§2.1.1).
    pub const CHAP_DOMAIN: u8 = 10;
    /// MS-CHAP-Challenge: 16 octets for MS-CHAPv2 (§2.1.7).
    pub const CHAP_CHALLENGE: u8 = 11;
    /// MS-CHAP-MPPE-Keys (MS-CHAPv1 keys, §2.4.1).
    pub const CHAP_MPPE_KEYS: u8 = 12;
    /// MS-BAP-Usage (§2.2.2).
    pub const BAP_USAGE: u8 = 13;
    /// MS-Link-Utilization-Threshold (§2.2.3).
    pub const LINK_UTILIZATION_THRESHOLD: u8 = 14;
    /// MS-Link-Drop-Time-Limit (§2.2.4).
    pub const LINK_DROP_TIME_LIMIT: u8 = 15;
    /// MS-MPPE-Send-Key, salt-encrypted (§2.4.2).
    pub const MPPE_SEND_KEY: u8 = 16;
    /// MS-MPPE-Recv-Key, salt-encrypted (§2.4.3).
    pub const MPPE_RECV_KEY: u8 = 17;
    /// MS-RAS-Version (§2.2.5).
    pub const RAS_VERSION: u8 = 18;
    /// MS-Filter (§2.2.6).
    pub const FILTER: u8 = 22;
    /// MS-Acct-Auth-Type (§2.2.7).
    pub const ACCT_AUTH_TYPE: u8 = 23;
    /// MS-Acct-EAP-Type (§2.2.8).
    pub const ACCT_EAP_TYPE: u8 = 24;
    /// MS-CHAP2-Response: ident, flags, peer challenge, reserved, NT-Response (§2.3.2).
    pub const CHAP2_RESPONSE: u8 = 25;
    /// MS-CHAP2-Success: ident + "S=<40 hex>" (§2.3.3).
    pub const CHAP2_SUCCESS: u8 = 26;
    /// MS-CHAP2-CPW (§2.3.4).
    pub const CHAP2_CPW: u8 = 27;
    /// MS-Primary-DNS-Server (§2.2.9).
    pub const PRIMARY_DNS_SERVER: u8 = 28;
    /// MS-Secondary-DNS-Server (§2.2.10).
    pub const SECONDARY_DNS_SERVER: u8 = 29;
    /// MS-Primary-NBNS-Server (§2.2.11).
    pub const PRIMARY_NBNS_SERVER: u8 = 30;
    /// MS-Secondary-NBNS-Server (§2.2.12).
    pub const SECONDARY_NBNS_SERVER: u8 = 31;

    /// MS-MPPE-Encryption-Policy = Encryption-Allowed.
    pub const MPPE_POLICY_ALLOWED: u32 = 1;
    /// MS-MPPE-Encryption-Policy = Encryption-Required.
    pub const MPPE_POLICY_REQUIRED: u32 = 2;
    /// MS-MPPE-Encryption-Types = RC4 40-bit allowed.
    pub const MPPE_TYPES_RC4_40: u32 = 1;
    /// MS-MPPE-Encryption-Types = RC4 128-bit allowed.
    pub const MPPE_TYPES_RC4_128: u32 = 2;
    /// MS-MPPE-Encryption-Types = RC4 40- or 128-bit allowed (FreeRADIUS' value 6).
    pub const MPPE_TYPES_RC4_40_OR_128: u32 = 6;
}

// --- Vendor-Specific (26) ------------------------------------------------------------------

/// Largest sub-attribute value that fits one attribute 26: 253 − 4 (vendor) − 2 (type, length).
pub const MAX_VSA_VALUE_LEN: usize = 247;

/// Encodes the value of one Vendor-Specific attribute (26) carrying one sub-attribute.
///
/// Layout (RFC 2865 §5.26): Vendor-Id (4, big endian), Vendor-Type (1), Vendor-Length (1,
/// counting itself and the type), value.
pub fn vsa(vendor: u32, typ: u8, value: &[u8]) -> Result<Vec<u8>, EncodeError> {
    if value.len() > MAX_VSA_VALUE_LEN {
        return Err(EncodeError::ValueTooLong(value.len()));
    }
    let mut out = Vec::with_capacity(6 + value.len());
    out.extend_from_slice(&vendor.to_be_bytes());
    out.push(typ);
    // Cannot truncate: value.len() <= 247 was checked above.
    out.push((value.len() + 2) as u8);
    out.extend_from_slice(value);
    Ok(out)
}

/// Parses the first sub-attribute of a Vendor-Specific value: `(vendor, type, value)`.
///
/// Returns `None` for anything that is not a well-formed vendor id plus one type/length/value
/// sub-attribute; never panics. Use [`vsa_iter`] when one attribute 26 may pack several
/// sub-attributes.
pub fn parse_vsa(value: &[u8]) -> Option<(u32, u8, &[u8])> {
    vsa_iter(value).next()
}

/// Iterates every sub-attribute packed in one Vendor-Specific value, stopping at the first
/// malformed one (RFC 2865 §5.26 allows several sub-attributes of one vendor per attribute).
pub fn vsa_iter(value: &[u8]) -> VsaIter<'_> {
    match value.split_first_chunk::<4>() {
        Some((vendor, rest)) => VsaIter {
            vendor: u32::from_be_bytes(*vendor),
            inner: crate::radius::wire::attributes(rest),
        },
        None => VsaIter {
            vendor: 0,
            inner: crate::radius::wire::attributes(&[]),
        },
    }
}

/// Iterator over the sub-attributes of one Vendor-Specific value; see [`vsa_iter`].
#[derive(Debug, Clone)]
pub struct VsaIter<'a> {
    vendor: u32,
    // Sub-attributes have the same type-length-value layout as attributes.
    inner: crate::radius::wire::AttrIter<'a>,
}

impl<'a> Iterator for VsaIter<'a> {
    type Item = (u32, u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        self.inner
            .next()
            .map(|(typ, value)| (self.vendor, typ, value))
    }
}

// --- Mikrotik-Rate-Limit --------------------------------------------------------------------

/// A subscriber's rate limit in kbit/s from the subscriber's point of view (download = towards
/// the subscriber). A rate of 0 means "no limit" to RouterOS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimit {
    /// Download rate (router transmit, "tx"), kbit/s.
    pub download_kbps: u64,
    /// Upload rate (router receive, "rx"), kbit/s.
    pub upload_kbps: u64,
    /// Optional burst parameters.
    pub burst: Option<Burst>,
}

/// Burst parameters of a [`RateLimit`]; rates and thresholds in kbit/s, times in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Burst {
    /// Burst download rate, kbit/s.
    pub download_kbps: u64,
    /// Burst upload rate, kbit/s.
    pub upload_kbps: u64,
    /// Download average below which bursting is allowed, kbit/s.
    pub threshold_download_kbps: u64,
    /// Upload average below which bursting is allowed, kbit/s.
    pub threshold_upload_kbps: u64,
    /// Averaging window for download, seconds.
    pub time_download_s: u32,
    /// Averaging window for upload, seconds.
    pub time_upload_s: u32,
}

/// Formats a `Mikrotik-Rate-Limit` value:
/// `rx-rate[/tx-rate] [rx-burst-rate[/tx-burst-rate] [rx-burst-threshold[/tx-burst-threshold]
/// [rx-burst-time[/tx-burst-time]]]]`.
///
/// Source: MikroTik wiki "Manual:RADIUS Client" (Access-Accept, Mikrotik-Rate-Limit) and the
/// RouterOS v2.9 Reference Manual (PPP profile `rate-limit`): the pairs are "from the point of
/// view of the router (so "rx" is client upload, and "tx" is client download)"; 'k' means
/// 1,000 bit/s and 'M' 1,000,000; burst times are plain seconds (the wiki's example
/// `64k/64k 256k/256k 128k/128k 10/10`). So each pair is written `upload/download`.
///
/// Rates are given in kbit/s and printed verbatim with a `k` suffix, with no unit conversion:
/// a plan stored as 10240 kbit/s down / 2048 kbit/s up gives `"2048k/10240k"`. Both halves of
/// every pair are always written, so RouterOS never falls back to "rx serves as tx too".
pub fn mikrotik_rate_limit(rate: &RateLimit) -> String {
    let mut s = format!("{}k/{}k", rate.upload_kbps, rate.download_kbps);
    if let Some(b) = &rate.burst {
        // Writing to a String cannot fail.
        let _ = write!(
            s,
            " {}k/{}k {}k/{}k {}/{}",
            b.upload_kbps,
            b.download_kbps,
            b.threshold_upload_kbps,
            b.threshold_download_kbps,
            b.time_upload_s,
            b.time_download_s
        );
    }
    s
}

/// Human-readable name of a standard attribute this module knows, for logs and debugging.
pub fn attribute_name(typ: u8) -> Option<&'static str> {
    Some(match typ {
        USER_NAME => "User-Name",
        USER_PASSWORD => "User-Password",
        CHAP_PASSWORD => "CHAP-Password",
        NAS_IP_ADDRESS => "NAS-IP-Address",
        NAS_PORT => "NAS-Port",
        SERVICE_TYPE => "Service-Type",
        FRAMED_PROTOCOL => "Framed-Protocol",
        FRAMED_IP_ADDRESS => "Framed-IP-Address",
        FRAMED_IP_NETMASK => "Framed-IP-Netmask",
        FILTER_ID => "Filter-Id",
        FRAMED_MTU => "Framed-MTU",
        REPLY_MESSAGE => "Reply-Message",
        FRAMED_ROUTE => "Framed-Route",
        STATE => "State",
        CLASS => "Class",
        VENDOR_SPECIFIC => "Vendor-Specific",
        SESSION_TIMEOUT => "Session-Timeout",
        IDLE_TIMEOUT => "Idle-Timeout",
        CALLED_STATION_ID => "Called-Station-Id",
        CALLING_STATION_ID => "Calling-Station-Id",
        NAS_IDENTIFIER => "NAS-Identifier",
        PROXY_STATE => "Proxy-State",
        ACCT_STATUS_TYPE => "Acct-Status-Type",
        ACCT_DELAY_TIME => "Acct-Delay-Time",
        ACCT_INPUT_OCTETS => "Acct-Input-Octets",
        ACCT_OUTPUT_OCTETS => "Acct-Output-Octets",
        ACCT_SESSION_ID => "Acct-Session-Id",
        ACCT_AUTHENTIC => "Acct-Authentic",
        ACCT_SESSION_TIME => "Acct-Session-Time",
        ACCT_INPUT_PACKETS => "Acct-Input-Packets",
        ACCT_OUTPUT_PACKETS => "Acct-Output-Packets",
        ACCT_TERMINATE_CAUSE => "Acct-Terminate-Cause",
        ACCT_MULTI_SESSION_ID => "Acct-Multi-Session-Id",
        ACCT_INPUT_GIGAWORDS => "Acct-Input-Gigawords",
        ACCT_OUTPUT_GIGAWORDS => "Acct-Output-Gigawords",
        EVENT_TIMESTAMP => "Event-Timestamp",
        CHAP_CHALLENGE => "CHAP-Challenge",
        NAS_PORT_TYPE => "NAS-Port-Type",
        PORT_LIMIT => "Port-Limit",
        CONNECT_INFO => "Connect-Info",
        EAP_MESSAGE => "EAP-Message",
        MESSAGE_AUTHENTICATOR => "Message-Authenticator",
        ACCT_INTERIM_INTERVAL => "Acct-Interim-Interval",
        NAS_PORT_ID => "NAS-Port-Id",
        FRAMED_POOL => "Framed-Pool",
        CHARGEABLE_USER_IDENTITY => "Chargeable-User-Identity",
        NAS_IPV6_ADDRESS => "NAS-IPv6-Address",
        FRAMED_INTERFACE_ID => "Framed-Interface-Id",
        FRAMED_IPV6_PREFIX => "Framed-IPv6-Prefix",
        FRAMED_IPV6_ROUTE => "Framed-IPv6-Route",
        FRAMED_IPV6_POOL => "Framed-IPv6-Pool",
        ERROR_CAUSE => "Error-Cause",
        DELEGATED_IPV6_PREFIX => "Delegated-IPv6-Prefix",
        FRAMED_IPV6_ADDRESS => "Framed-IPv6-Address",
        DNS_SERVER_IPV6_ADDRESS => "DNS-Server-IPv6-Address",
        DELEGATED_IPV6_PREFIX_POOL => "Delegated-IPv6-Prefix-Pool",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vsa_round_trip() {
        let v = vsa(VENDOR_MIKROTIK, mikrotik::RATE_LIMIT, b"2048k/10240k").unwrap();
        assert_eq!(&v[..4], &14988u32.to_be_bytes());
        assert_eq!(v[4], 8);
        assert_eq!(v[5] as usize, 2 + 12);
        assert_eq!(parse_vsa(&v), Some((14988, 8, &b"2048k/10240k"[..])));
    }

    #[test]
    fn vsa_limits() {
        assert!(vsa(311, 1, &[0; MAX_VSA_VALUE_LEN]).is_ok());
        assert_eq!(
            vsa(311, 1, &[0; MAX_VSA_VALUE_LEN + 1]),
            Err(EncodeError::ValueTooLong(248))
        );
        // The largest VSA still fits a 253-octet attribute value.
        assert_eq!(vsa(311, 1, &[0; MAX_VSA_VALUE_LEN]).unwrap().len(), 253);
        assert_eq!(
            parse_vsa(&vsa(311, 9, &[]).unwrap()),
            Some((311, 9, &[][..]))
        );
    }

    #[test]
    fn vsa_multiple_sub_attributes() {
        let mut v = 311u32.to_be_bytes().to_vec();
        v.extend_from_slice(&[7, 6, 0, 0, 0, 1]);
        v.extend_from_slice(&[8, 6, 0, 0, 0, 6]);
        let all: Vec<_> = vsa_iter(&v).collect();
        assert_eq!(
            all,
            vec![(311, 7, &[0, 0, 0, 1][..]), (311, 8, &[0, 0, 0, 6][..])]
        );
        // Trailing garbage stops iteration after the good ones.
        v.extend_from_slice(&[9, 40, 1]);
        assert_eq!(vsa_iter(&v).count(), 2);
    }

    #[test]
    fn parse_vsa_rejects_garbage() {
        assert_eq!(parse_vsa(&[]), None);
        assert_eq!(parse_vsa(&[0, 0, 0x3a]), None);
        assert_eq!(parse_vsa(&[0, 0, 0x3a, 0x8c]), None);
        assert_eq!(parse_vsa(&[0, 0, 0x3a, 0x8c, 8]), None);
        assert_eq!(parse_vsa(&[0, 0, 0x3a, 0x8c, 8, 1, b'x']), None);
        assert_eq!(parse_vsa(&[0, 0, 0x3a, 0x8c, 8, 0]), None);
        assert_eq!(parse_vsa(&[0, 0, 0x3a, 0x8c, 8, 4, b'x']), None);
        assert_eq!(
            parse_vsa(&[0, 0, 0x3a, 0x8c, 8, 3, b'x']),
            Some((14988, 8, &b"x"[..]))
        );
    }

    #[test]
    fn rate_limit_plain_is_upload_slash_download() {
        // 10 Mbit/s down, 2 Mbit/s up plan stored as 10240/2048 kbit/s: rx (router receive =
        // subscriber upload) first, tx (router transmit = subscriber download) second.
        let r = RateLimit {
            download_kbps: 10240,
            upload_kbps: 2048,
            burst: None,
        };
        assert_eq!(mikrotik_rate_limit(&r), "2048k/10240k");
    }

    #[test]
    fn rate_limit_with_burst() {
        let r = RateLimit {
            download_kbps: 10240,
            upload_kbps: 2048,
            burst: Some(Burst {
                download_kbps: 20480,
                upload_kbps: 4096,
                threshold_download_kbps: 8192,
                threshold_upload_kbps: 1536,
                time_download_s: 16,
                time_upload_s: 8,
            }),
        };
        assert_eq!(
            mikrotik_rate_limit(&r),
            "2048k/10240k 4096k/20480k 1536k/8192k 8/16"
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            attribute_name(MESSAGE_AUTHENTICATOR),
            Some("Message-Authenticator")
        );
        assert_eq!(attribute_name(0), None);
    }
}
