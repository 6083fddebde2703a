//! Domain records as the store returns them and the API/CLI print them (DESIGN §8 shapes).

use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::*;

/// Implements `as_str`, `Display` and `FromStr` for a fieldless enum stored as text.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $var),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// The stored / printed text.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$var),)+
                    other => Err(format!(
                        "{other:?} is not one of: {}",
                        [$($s),+].join(", ")
                    )),
                }
            }
        }
    };
}

text_enum!(
    /// Lifecycle of a tenant: provisioning → active ⇄ suspended → deleted.
    TenantStatus {
        /// Being created; not reachable yet.
        Provisioning = "provisioning",
        /// Serving.
        Active = "active",
        /// Logins refused; peers refused after the drain window.
        Suspended = "suspended",
        /// Marked for purge.
        Deleted = "deleted",
    }
);

text_enum!(
    /// Role of a tenant user.
    Role {
        /// Owns the tenant.
        Owner = "owner",
        /// Full control of the tenant.
        Admin = "admin",
        /// Subscribers and sessions, no settings or users.
        Staff = "staff",
        /// Read-only.
        Viewer = "viewer",
    }
);

text_enum!(
    /// Subscriber account status.
    SubscriberStatus {
        /// May log in.
        Active = "active",
        /// Refused by an admin.
        Disabled = "disabled",
        /// Past its expiry.
        Expired = "expired",
    }
);

text_enum!(
    /// What happens when a plan's quota is used up.
    QuotaAction {
        /// Throttle to the FUP rate.
        Fup = "fup",
        /// Refuse further logins.
        Reject = "reject",
    }
);

text_enum!(
    /// NAS vendor: decides the reply attributes.
    NasVendor {
        /// MikroTik RouterOS (Mikrotik-Rate-Limit, RouterOS API).
        Mikrotik = "mikrotik",
        /// Any RFC RADIUS NAS (Filter-Id).
        Generic = "generic",
    }
);

text_enum!(
    /// How the platform reaches a NAS.
    NasReach {
        /// Through a WireGuard peer on the relay; no public address.
        Tunnel = "tunnel",
        /// Direct RADIUS from a public source address.
        Direct = "direct",
    }
);

text_enum!(
    /// Message-Authenticator policy for Access-Request (Blast-RADIUS).
    MessageAuthPolicy {
        /// Required once this NAS has sent one for that authentication method.
        Auto = "auto",
        /// Always required.
        Require = "require",
        /// Not required (still verified when present).
        Off = "off",
    }
);

text_enum!(
    /// WireGuard tunnel state of a NAS.
    TunnelState {
        /// Direct NAS: no tunnel.
        None = "none",
        /// Peer created, no handshake yet.
        Waiting = "waiting",
        /// Recent handshake.
        Up = "up",
        /// Handshakes stopped.
        Down = "down",
    }
);

text_enum!(
    /// RouterOS API reachability of a NAS.
    ApiState {
        /// Not polled yet.
        Unknown = "unknown",
        /// Last poll succeeded.
        Online = "online",
        /// Three polls in a row failed.
        Offline = "offline",
    }
);

/// Per-tenant limits set by operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantLimits {
    /// Most subscribers the tenant may have.
    pub max_subscribers: i64,
    /// Most NAS devices the tenant may have.
    pub max_nas: i64,
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self {
            max_subscribers: 5000,
            max_nas: 20,
        }
    }
}

/// A tenant (one ISP).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    /// Id.
    pub id: TenantId,
    /// Subdomain label.
    pub slug: Slug,
    /// Display name.
    pub name: String,
    /// Lifecycle status.
    pub status: TenantStatus,
    /// IANA timezone that dates are read in.
    pub timezone: String,
    /// Limits.
    pub limits: TenantLimits,
    /// Relay node holding the tenant's peers.
    pub relay_node: Option<String>,
    /// Tunnel subnet (relay side is .1).
    pub tunnel_subnet: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When suspended (drain window starts here).
    pub suspended_at: Option<DateTime<Utc>>,
    /// When marked deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// QuotaSync interval in seconds; none = the platform default (`nas.quota_sync_s`).
    #[serde(default)]
    pub quota_sync_s: Option<u32>,
}

/// A tenant with counts, for operator listings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantSummary {
    /// The tenant.
    #[serde(flatten)]
    pub tenant: Tenant,
    /// Subscribers.
    pub subscribers: i64,
    /// Open sessions.
    pub online: i64,
    /// NAS devices.
    pub nas: i64,
}

/// A SaaS operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Operator {
    /// Id.
    pub id: OperatorId,
    /// Login.
    pub email: Email,
    /// Operator role.
    pub role: String,
    /// Whether TOTP enrolment was completed.
    pub totp_enrolled: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A user of one tenant's panel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantUser {
    /// Id.
    pub id: UserId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Login.
    pub email: Email,
    /// Role.
    pub role: Role,
    /// Whether login is refused.
    pub disabled: bool,
    /// Whether the e-mail address was confirmed through a verification link.
    #[serde(default)]
    pub email_verified: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A service plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Plan {
    /// Id.
    pub id: PlanId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Unique name within the tenant.
    pub name: String,
    /// Download rate.
    pub download_kbps: i64,
    /// Upload rate.
    pub upload_kbps: i64,
    /// Burst download rate.
    pub burst_download_kbps: Option<i64>,
    /// Burst upload rate.
    pub burst_upload_kbps: Option<i64>,
    /// Burst threshold.
    pub burst_threshold_kbps: Option<i64>,
    /// Burst time.
    pub burst_time_s: Option<i64>,
    /// Quota per validity period.
    pub quota_bytes: Option<i64>,
    /// What happens past the quota.
    pub quota_action: QuotaAction,
    /// FUP download rate.
    pub fup_download_kbps: Option<i64>,
    /// FUP upload rate.
    pub fup_upload_kbps: Option<i64>,
    /// Validity of a renewal.
    pub validity_days: Option<i64>,
    /// Price in cents.
    pub price_cents: i64,
    /// IPv4 pool (Framed-Pool).
    pub ip_pool: Option<String>,
    /// IPv6 pool (Framed-IPv6-Pool).
    pub ipv6_pool: Option<String>,
    /// Delegated prefix pool (Delegated-IPv6-Prefix-Pool).
    pub delegated_ipv6_pool: Option<String>,
    /// Session-Timeout.
    pub session_timeout_s: Option<i64>,
    /// Simultaneous-use default.
    pub sim_use: i64,
    /// The tenant's default plan.
    pub is_default: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Fields of a new plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewPlan {
    /// Name.
    pub name: String,
    /// Download rate.
    pub download_kbps: i64,
    /// Upload rate.
    pub upload_kbps: i64,
    /// Burst download rate.
    pub burst_download_kbps: Option<i64>,
    /// Burst upload rate.
    pub burst_upload_kbps: Option<i64>,
    /// Burst threshold.
    pub burst_threshold_kbps: Option<i64>,
    /// Burst time.
    pub burst_time_s: Option<i64>,
    /// Quota.
    pub quota_bytes: Option<i64>,
    /// FUP download rate (with a quota: throttle instead of reject).
    pub fup_download_kbps: Option<i64>,
    /// FUP upload rate.
    pub fup_upload_kbps: Option<i64>,
    /// Validity.
    pub validity_days: Option<i64>,
    /// Price in cents.
    pub price_cents: i64,
    /// IPv4 pool.
    pub ip_pool: Option<String>,
    /// IPv6 pool.
    pub ipv6_pool: Option<String>,
    /// Delegated prefix pool.
    pub delegated_ipv6_pool: Option<String>,
    /// Session-Timeout.
    pub session_timeout_s: Option<i64>,
    /// Simultaneous use (default 1).
    pub sim_use: Option<i64>,
}

/// A subscriber (PPPoE/hotspot account). The password is never part of this record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subscriber {
    /// Id.
    pub id: SubscriberId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Login, unique within the tenant.
    pub username: String,
    /// Status.
    pub status: SubscriberStatus,
    /// Plan.
    pub plan_id: Option<PlanId>,
    /// Plan name (joined for display).
    pub plan: Option<String>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Static IPv4 (Framed-IP-Address).
    pub static_ip: Option<String>,
    /// Framed-IPv6-Prefix.
    pub framed_ipv6_prefix: Option<String>,
    /// Delegated-IPv6-Prefix.
    pub delegated_ipv6_prefix: Option<String>,
    /// MAC lock (Calling-Station-Id).
    pub mac_lock: Option<String>,
    /// Simultaneous-use override.
    pub sim_use: Option<i64>,
    /// Start of the current usage period.
    pub usage_reset_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Fields of a new subscriber.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSubscriber {
    /// Login.
    pub username: String,
    /// Cleartext password (sealed before it is stored).
    pub password: String,
    /// Plan.
    pub plan_id: Option<PlanId>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Static IPv4.
    pub static_ip: Option<String>,
    /// Framed-IPv6-Prefix.
    pub framed_ipv6_prefix: Option<String>,
    /// Delegated-IPv6-Prefix.
    pub delegated_ipv6_prefix: Option<String>,
    /// MAC lock.
    pub mac_lock: Option<String>,
    /// Simultaneous-use override.
    pub sim_use: Option<i64>,
}

/// A change to a subscriber; `None` leaves a field alone, `Some(None)` clears it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubscriberPatch {
    /// New password.
    pub password: Option<String>,
    /// New status.
    pub status: Option<SubscriberStatus>,
    /// New plan.
    pub plan_id: Option<Option<PlanId>>,
    /// New expiry.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// New static IP.
    pub static_ip: Option<Option<String>>,
    /// New Framed-IPv6-Prefix.
    pub framed_ipv6_prefix: Option<Option<String>>,
    /// New Delegated-IPv6-Prefix.
    pub delegated_ipv6_prefix: Option<Option<String>>,
    /// New MAC lock.
    pub mac_lock: Option<Option<String>>,
    /// New simultaneous-use override.
    pub sim_use: Option<Option<i64>>,
}

/// A NAS (BNG router). Secrets are never part of this record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Nas {
    /// Id.
    pub id: NasId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Name, unique within the tenant.
    pub name: String,
    /// Vendor.
    pub vendor: NasVendor,
    /// Reach.
    pub reach: NasReach,
    /// Source address (direct NAS only).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub ip: Option<IpAddr>,
    /// Message-Authenticator policy.
    pub message_auth: MessageAuthPolicy,
    /// Methods for which this NAS has sent Message-Authenticator (`auto` policy memory).
    pub message_auth_seen: Vec<String>,
    /// CoA/Disconnect port.
    pub coa_port: u16,
    /// RouterOS API port.
    pub api_port: u16,
    /// RouterOS API-SSL port.
    pub api_ssl_port: u16,
    /// Use API-SSL.
    pub use_ssl: bool,
    /// RouterOS API user.
    pub api_user: Option<String>,
    /// Tunnel state.
    pub tunnel_state: TunnelState,
    /// Last WireGuard handshake.
    pub last_handshake_at: Option<DateTime<Utc>>,
    /// Last RADIUS packet.
    pub radius_last_seen: Option<DateTime<Utc>>,
    /// RouterOS API state.
    pub api_state: ApiState,
    /// Last API error.
    pub api_last_error: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Fields of a new NAS.
#[derive(Clone, Debug, PartialEq)]
pub struct NewNas {
    /// Name.
    pub name: String,
    /// Vendor.
    pub vendor: NasVendor,
    /// Direct source address; `None` = reached through the tunnel.
    pub ip: Option<IpAddr>,
    /// RADIUS secret (sealed before it is stored).
    pub secret: String,
    /// Message-Authenticator policy.
    pub message_auth: MessageAuthPolicy,
    /// CoA port.
    pub coa_port: u16,
    /// RouterOS API user.
    pub api_user: Option<String>,
    /// RouterOS API password (sealed).
    pub api_password: Option<String>,
    /// Use API-SSL.
    pub use_ssl: bool,
}

/// A change to a NAS; `None` leaves a field alone, `Some(None)` clears it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NasPatch {
    /// New name.
    pub name: Option<String>,
    /// New vendor.
    pub vendor: Option<NasVendor>,
    /// New source address (direct NAS only).
    pub ip: Option<IpAddr>,
    /// New RADIUS secret (sealed before it is stored).
    pub secret: Option<String>,
    /// New Message-Authenticator policy.
    pub message_auth: Option<MessageAuthPolicy>,
    /// New CoA port.
    pub coa_port: Option<u16>,
    /// New RouterOS API user.
    pub api_user: Option<Option<String>>,
    /// New RouterOS API password (sealed).
    pub api_password: Option<Option<String>>,
    /// Use API-SSL.
    pub use_ssl: Option<bool>,
}

/// A change to a panel user.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserPatch {
    /// New role.
    pub role: Option<Role>,
    /// Refuse (true) or allow (false) login.
    pub disabled: Option<bool>,
    /// New argon2id password hash.
    pub password_hash: Option<String>,
}

/// A WireGuard peer of a tenant NAS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WgPeer {
    /// Id.
    pub id: PeerId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// NAS behind the peer.
    pub nas_id: NasId,
    /// Peer public key (base64).
    pub public_key: String,
    /// Tunnel address of the peer (CIDR).
    pub tunnel_address: String,
    /// Relay node holding it.
    pub relay_node: Option<String>,
    /// Last handshake.
    pub last_handshake: Option<DateTime<Utc>>,
    /// Last authenticated source.
    pub endpoint: Option<String>,
    /// Bytes received.
    pub rx_bytes: i64,
    /// Bytes sent.
    pub tx_bytes: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A RADIUS accounting session (DESIGN §8 `session`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    /// Id.
    pub id: SessionId,
    /// Tenant.
    pub tenant: TenantId,
    /// NAS.
    pub nas: NasId,
    /// Login.
    pub username: String,
    /// Acct-Session-Id.
    pub acct_session_id: String,
    /// Framed-IP-Address.
    pub framed_ip: Option<String>,
    /// Calling-Station-Id.
    pub calling_station_id: Option<String>,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
    /// Stop.
    pub stopped_at: Option<DateTime<Utc>>,
    /// Octets in (64-bit, gigawords folded in).
    pub input_octets: i64,
    /// Octets out.
    pub output_octets: i64,
    /// Acct-Terminate-Cause.
    pub terminate_cause: Option<String>,
}

text_enum!(
    /// Acct-Status-Type values we record.
    AcctKind {
        /// Acct-Status-Type Start.
        Start = "start",
        /// Interim-Update.
        Interim = "interim",
        /// Stop.
        Stop = "stop",
    }
);

/// One accounting record, as the AAA engine hands it to the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AcctRecord {
    /// Unique id of this record; a session it opens gets this id, so applying it twice (spool
    /// replay) never opens a second session.
    pub id: SessionId,
    /// Start, Interim or Stop.
    pub kind: AcctKind,
    /// NAS that sent it.
    pub nas: NasId,
    /// Subscriber, when the username is known.
    pub subscriber: Option<SubscriberId>,
    /// User-Name.
    pub username: String,
    /// Acct-Session-Id.
    pub acct_session_id: String,
    /// Framed-IP-Address.
    pub framed_ip: Option<String>,
    /// Calling-Station-Id.
    pub calling_station_id: Option<String>,
    /// NAS-Port-Id.
    pub nas_port_id: Option<String>,
    /// Acct-Session-Time.
    pub session_time_s: i64,
    /// Absolute input octets (Acct-Input-Gigawords folded in).
    pub input_octets: i64,
    /// Absolute output octets.
    pub output_octets: i64,
    /// Acct-Terminate-Cause (Stop).
    pub terminate_cause: Option<String>,
    /// When the NAS produced it (receive time minus Acct-Delay-Time).
    pub at: DateTime<Utc>,
}

/// One post-auth log line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthLogEntry {
    /// Time.
    pub at: DateTime<Utc>,
    /// NAS.
    pub nas_id: Option<NasId>,
    /// Login.
    pub username: String,
    /// PAP, CHAP, MSCHAPv2.
    pub method: Option<String>,
    /// accept or reject.
    pub outcome: String,
    /// Reject reason.
    pub reason: Option<String>,
    /// Calling-Station-Id.
    pub calling_station_id: Option<String>,
}

/// One audit line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Time.
    pub at: DateTime<Utc>,
    /// Who (e.g. `cli`, `user:<email>`, `operator:<email>`).
    pub actor: String,
    /// What (e.g. `subscriber.create`).
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// Extra context (JSON, never secrets).
    pub details: Option<String>,
    /// Client address of the request that caused it (API), if any.
    #[serde(default)]
    pub client_ip: Option<String>,
}

/// A DNS record managed in the store (ACME challenges, operator extras).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DnsRecord {
    /// Id.
    pub id: DnsRecordId,
    /// Tenant it belongs to, if any.
    pub tenant_id: Option<TenantId>,
    /// Owner name (absolute, without trailing dot).
    pub name: String,
    /// Record type (TXT, A, AAAA, CNAME, CAA...).
    pub rtype: String,
    /// Value in presentation format.
    pub value: String,
    /// TTL seconds.
    pub ttl: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// The certificate of the zone as stored (the private key stays sealed in the store).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredCertificate {
    /// The zone it is for (`<base>`).
    pub name: String,
    /// Subject names asked for (`<base>`, `*.<base>`).
    pub names: Vec<String>,
    /// PEM chain, leaf first; None before the first issue.
    pub chain_pem: Option<String>,
    /// Start of validity.
    pub not_before: Option<DateTime<Utc>>,
    /// End of validity.
    pub not_after: Option<DateTime<Utc>>,
    /// When the current chain was stored.
    pub issued_at: Option<DateTime<Utc>>,
    /// Last issue or renewal attempt.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Error of the last attempt (cleared by a success).
    pub last_error: Option<String>,
    /// Last change of the row.
    pub updated_at: DateTime<Utc>,
}

/// A relay node as the system scope sees it (no private key).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelayNode {
    /// Node name.
    pub name: String,
    /// WireGuard public key (base64).
    pub public_key: String,
    /// Public endpoint.
    pub endpoint: Option<String>,
    /// Last heartbeat.
    pub last_seen: Option<DateTime<Utc>>,
    /// What the node last reported with its heartbeat (none before its first report).
    pub stats: Option<RelayStats>,
}

/// One WireGuard peer as the operator's relay page shows it (no keys).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelayPeerStatus {
    /// Tenant subdomain.
    pub tenant: String,
    /// NAS name.
    pub nas: String,
    /// Router's tunnel address.
    pub tunnel_address: String,
    /// Relay node holding it.
    pub relay_node: Option<String>,
    /// Router address last seen.
    pub endpoint: Option<String>,
    /// Newest handshake.
    pub last_handshake: Option<DateTime<Utc>>,
}

/// A relay node's own counters (its in-process metrics since it started), reported with its
/// heartbeat so every node's operator console can show every relay.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RelayStats {
    /// Peers in the node's table.
    pub peers_configured: i64,
    /// Peers with a live tunnel.
    pub peers_connected: i64,
    /// Handshake initiations answered.
    pub handshakes_ok: u64,
    /// Cookie replies sent under load.
    pub cookies_sent: u64,
    /// Handshake initiations refused, by admission stage (`source_budget`, `unknown_key`, ...).
    pub drops: std::collections::BTreeMap<String, u64>,
}

/// A peer lookup result for the relay: who a public key belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerIdentity {
    /// Peer.
    pub peer_id: PeerId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Tenant status (suspended peers are drained).
    pub tenant_status: TenantStatus,
    /// When the tenant was suspended.
    pub suspended_at: Option<DateTime<Utc>>,
    /// NAS.
    pub nas_id: NasId,
    /// Tunnel address (CIDR).
    pub tunnel_address: String,
}

/// A peer's status, as the relay reports it periodically.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerStatusUpdate {
    /// Latest handshake.
    pub last_handshake: Option<DateTime<Utc>>,
    /// Latest authenticated source.
    pub endpoint: Option<String>,
    /// Bytes received from the peer.
    pub rx_bytes: i64,
    /// Bytes sent to the peer.
    pub tx_bytes: i64,
    /// Newest accepted handshake timestamp.
    pub handshake_tai64: Option<[u8; 12]>,
    /// Tunnel state of the NAS behind it.
    pub state: TunnelState,
}

/// What a relay node loads for each peer at start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelayPeer {
    /// Who the peer is.
    pub identity: PeerIdentity,
    /// Peer public key (base64).
    pub public_key: String,
    /// Router address last seen (to initiate handshakes at start).
    pub endpoint: Option<String>,
    /// Newest handshake TAI64N timestamp accepted (replay protection across restarts).
    pub handshake_tai64: Option<Vec<u8>>,
    /// Relay node holding it.
    pub relay_node: Option<String>,
}

/// A direct-NAS lookup result: which tenant owns a source address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectNas {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Tenant status.
    pub tenant_status: TenantStatus,
    /// NAS.
    pub nas_id: NasId,
}

/// Parses a date or timestamp given by a user in the tenant's timezone into UTC.
///
/// `2026-12-31` means the end of that day (23:59:59) in `tz`; RFC 3339 timestamps keep their offset.
pub fn parse_user_date(s: &str, tz: &str) -> Result<DateTime<Utc>, String> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    let zone: chrono_tz::Tz = tz.parse().map_err(|_| format!("unknown timezone {tz:?}"))?;
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok(dt.with_timezone(&Utc));
    }
    let naive = if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        d.and_hms_opt(23, 59, 59)
            .ok_or_else(|| format!("bad date {s:?}"))?
    } else if let Ok(dt) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M") {
        dt
    } else if let Ok(dt) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S") {
        dt
    } else {
        return Err(format!(
            "{s:?} is not a date: use YYYY-MM-DD, \"YYYY-MM-DD HH:MM\" or RFC 3339"
        ));
    };
    zone.from_local_datetime(&naive)
        .earliest()
        .map(|d| d.with_timezone(&Utc))
        .ok_or_else(|| format!("{s:?} does not exist in timezone {tz}"))
}

/// Checks that `tz` names an IANA timezone.
pub fn validate_timezone(tz: &str) -> Result<(), String> {
    tz.parse::<chrono_tz::Tz>()
        .map(|_| ())
        .map_err(|_| format!("unknown timezone {tz:?} (use an IANA name such as Europe/Berlin)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_enums_round_trip_and_explain() {
        for s in TenantStatus::ALL {
            assert_eq!(s.as_str().parse::<TenantStatus>().unwrap(), *s);
        }
        let e = "banned".parse::<SubscriberStatus>().unwrap_err();
        assert!(e.contains("active, disabled, expired"), "{e}");
    }

    #[test]
    fn dates_are_read_in_the_tenant_timezone() {
        let d = parse_user_date("2026-12-31", "Asia/Kolkata").unwrap();
        assert_eq!(d.to_rfc3339(), "2026-12-31T18:29:59+00:00");
        let d = parse_user_date("2026-06-01 00:00", "Europe/Berlin").unwrap();
        assert_eq!(d.to_rfc3339(), "2026-05-31T22:00:00+00:00");
        let d = parse_user_date("2026-06-01T00:00:00Z", "Europe/Berlin").unwrap();
        assert_eq!(d.to_rfc3339(), "2026-06-01T00:00:00+00:00");
        assert!(parse_user_date("tomorrow", "UTC").is_err());
        assert!(parse_user_date("2026-01-01", "Mars/Olympus").is_err());
    }
}
