//! The command line (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::Fatal;

/// ProxPanel SaaS: multi-tenant subscriber management for ISPs.
#[derive(Debug, Parser)]
#[command(name = "proxpanel", version, about)]
pub struct Cli {
    /// TOML configuration file (overrides PROXPANEL_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides PROXPANEL_DATA_DIR and the file).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL (overrides PROXPANEL_DATABASE_URL and the file).
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Print results as JSON (the shapes of the API).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the platform (the roles in PROXPANEL_ROLES).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// SaaS operators.
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// Tenants (ISPs).
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Service plans of a tenant.
    #[command(subcommand)]
    Plan(PlanCmd),
    /// Subscribers of a tenant.
    #[command(subcommand)]
    Subscriber(SubscriberCmd),
    /// NAS devices (BNG routers) of a tenant.
    #[command(subcommand)]
    Nas(NasCmd),
    /// WireGuard peers of tunnel NAS devices.
    #[command(subcommand)]
    Peer(PeerCmd),
    /// This relay node.
    #[command(subcommand)]
    Relay(RelayCmd),
    /// RADIUS accounting sessions of a tenant.
    #[command(subcommand)]
    Session(SessionCmd),
    /// DNS records the zone serves beside the generated ones (ACME challenges, CAA, extras).
    #[command(subcommand)]
    Dns(DnsCmd),
    /// The zone's TLS certificate (`<base>` and `*.<base>`, from ACME).
    #[command(subcommand)]
    Cert(CertCmd),
    /// Developer tools (load generators, simulators).
    #[command(subcommand)]
    Dev(DevCmd),
    /// Post-authentication log of a tenant (accepts and rejects with reasons), newest first.
    AuthLog {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Most lines.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

/// `dev` commands.
#[derive(Debug, Subcommand)]
pub enum DevCmd {
    /// Closed-loop RADIUS load generator: prints requests/s and p50/p99 latency.
    RadiusLoad(crate::dev_load::LoadArgs),
    /// RouterOS API simulator: both login styles, optional API-SSL, live PPP sessions whose
    /// counters grow. Runs until Ctrl-C.
    RouterosSim(crate::dev_sim::SimArgs),
}

/// `session` commands.
#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// List sessions, newest first.
    List {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Only sessions without a Stop.
        #[arg(long)]
        online: bool,
        /// With --online: ask the routers (RouterOS API) for each session's live counters,
        /// answered by the running `serve` that holds the NAS paths.
        #[arg(long, requires = "online")]
        live: bool,
        /// Seconds to wait for the routers' answer (--live).
        #[arg(long, default_value_t = 20)]
        timeout: u64,
        /// Most sessions.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Disconnect a subscriber's open sessions (Disconnect-Request to the NAS, sent by the
    /// running `serve` that holds the NAS path).
    Disconnect {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Login.
        #[arg(long)]
        username: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 15)]
        timeout: u64,
    },
}

/// `serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Create the demo operator, tenant, plan, subscriber and NAS (idempotent) and print them.
    #[arg(long)]
    pub demo: bool,
    /// Roles to run, comma-separated (overrides PROXPANEL_ROLES).
    #[arg(long, value_name = "ROLES")]
    pub roles: Option<String>,
    /// Admin listener address or `off` (overrides PROXPANEL_ADMIN_LISTEN).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Panel + API listener address or `off` (overrides PROXPANEL_HTTP_LISTEN).
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
}

/// `operator` commands.
#[derive(Debug, Subcommand)]
pub enum OperatorCmd {
    /// Create an operator; prints the TOTP enrolment URI.
    Create {
        /// Login e-mail.
        #[arg(long)]
        email: String,
        /// Password (at least 8 characters).
        #[arg(long)]
        password: String,
    },
    /// List operators.
    List,
}

/// `tenant` commands.
#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant through the provisioning pipeline (safe to re-run after a failure).
    Create {
        /// Subdomain label.
        #[arg(long)]
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Owner login e-mail.
        #[arg(long)]
        owner_email: String,
        /// Owner password.
        #[arg(long)]
        owner_password: String,
        /// IANA timezone that dates of this tenant are read in.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Most subscribers.
        #[arg(long)]
        max_subscribers: Option<i64>,
        /// Most NAS devices.
        #[arg(long)]
        max_nas: Option<i64>,
    },
    /// List tenants with counts.
    List,
    /// Show one tenant.
    Show {
        /// Slug.
        slug: String,
    },
    /// Change a tenant's name, timezone, limits or QuotaSync interval.
    Update {
        /// Slug.
        slug: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// IANA timezone.
        #[arg(long)]
        timezone: Option<String>,
        /// Most subscribers.
        #[arg(long)]
        max_subscribers: Option<i64>,
        /// Most NAS devices.
        #[arg(long)]
        max_nas: Option<i64>,
        /// Seconds between QuotaSync reads of this tenant's routers (10-3600), or `default`
        /// for the platform's `nas.quota_sync_s`.
        #[arg(long, value_name = "SECONDS|default")]
        quota_sync: Option<String>,
    },
    /// Suspend a tenant (logins refused).
    Suspend {
        /// Slug.
        slug: String,
    },
    /// Resume a suspended tenant.
    Resume {
        /// Slug.
        slug: String,
    },
    /// Delete a tenant (marked deleted; purged by the workers role after 24 h).
    Delete {
        /// Slug.
        slug: String,
        /// Purge its data now instead of after the grace period.
        #[arg(long)]
        purge_now: bool,
    },
}

/// `plan` commands.
#[derive(Debug, Subcommand)]
pub enum PlanCmd {
    /// Add a plan.
    Add(Box<PlanAdd>),
    /// List plans.
    List {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
    },
}

/// `plan add` flags.
#[derive(Debug, Args)]
pub struct PlanAdd {
    /// Tenant slug.
    #[arg(long)]
    pub tenant: String,
    /// Plan name (unique in the tenant).
    #[arg(long)]
    pub name: String,
    /// Download rate in kbit/s.
    #[arg(long)]
    pub download_kbps: i64,
    /// Upload rate in kbit/s.
    #[arg(long)]
    pub upload_kbps: i64,
    /// Burst download rate.
    #[arg(long)]
    pub burst_download_kbps: Option<i64>,
    /// Burst upload rate.
    #[arg(long)]
    pub burst_upload_kbps: Option<i64>,
    /// Burst threshold.
    #[arg(long)]
    pub burst_threshold_kbps: Option<i64>,
    /// Burst time in seconds.
    #[arg(long)]
    pub burst_time_s: Option<i64>,
    /// Quota per period in GB (10^9 bytes).
    #[arg(long)]
    pub quota_gb: Option<f64>,
    /// Download rate after the quota (without FUP rates, the quota rejects).
    #[arg(long)]
    pub fup_download_kbps: Option<i64>,
    /// Upload rate after the quota.
    #[arg(long)]
    pub fup_upload_kbps: Option<i64>,
    /// IPv4 pool name (Framed-Pool).
    #[arg(long)]
    pub pool: Option<String>,
    /// IPv6 pool name (Framed-IPv6-Pool).
    #[arg(long)]
    pub ipv6_pool: Option<String>,
    /// Delegated prefix pool name.
    #[arg(long)]
    pub delegated_ipv6_pool: Option<String>,
    /// Session-Timeout in seconds.
    #[arg(long)]
    pub session_timeout_s: Option<i64>,
    /// Simultaneous sessions per subscriber.
    #[arg(long)]
    pub sim_use: Option<i64>,
    /// Validity of a renewal in days.
    #[arg(long)]
    pub validity_days: Option<i64>,
    /// Price in cents.
    #[arg(long, default_value_t = 0)]
    pub price_cents: i64,
}

/// `subscriber` commands.
#[derive(Debug, Subcommand)]
pub enum SubscriberCmd {
    /// Add a subscriber.
    Add {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Login.
        #[arg(long)]
        username: String,
        /// Password.
        #[arg(long)]
        password: String,
        /// Plan name (default: the tenant's default plan).
        #[arg(long)]
        plan: Option<String>,
        /// Expiry: YYYY-MM-DD (end of that day), "YYYY-MM-DD HH:MM" in the tenant's timezone, or RFC 3339.
        #[arg(long)]
        expires: Option<String>,
        /// MAC lock (Calling-Station-Id).
        #[arg(long)]
        mac: Option<String>,
        /// Static IPv4 address.
        #[arg(long)]
        static_ip: Option<String>,
        /// Framed-IPv6-Prefix.
        #[arg(long)]
        ipv6_prefix: Option<String>,
        /// Delegated-IPv6-Prefix.
        #[arg(long)]
        delegated_prefix: Option<String>,
        /// Simultaneous sessions (overrides the plan).
        #[arg(long)]
        sim_use: Option<i64>,
    },
    /// Import subscribers from a CSV file, all or nothing. The header names the columns:
    /// username and password are required; plan, expires, mac, static_ip, ipv6_prefix,
    /// delegated_prefix, sim_use are optional (an empty cell means none / the default).
    Import {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// CSV file (`-` for standard input).
        #[arg(long)]
        file: std::path::PathBuf,
    },
    /// Change a subscriber (`none` clears an optional field).
    Set {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Login.
        #[arg(long)]
        username: String,
        /// Plan name.
        #[arg(long)]
        plan: Option<String>,
        /// New password.
        #[arg(long)]
        password: Option<String>,
        /// MAC lock, or `none`.
        #[arg(long)]
        mac: Option<String>,
        /// Static IPv4, or `none`.
        #[arg(long)]
        static_ip: Option<String>,
        /// Framed-IPv6-Prefix, or `none`.
        #[arg(long)]
        ipv6_prefix: Option<String>,
        /// Delegated-IPv6-Prefix, or `none`.
        #[arg(long)]
        delegated_prefix: Option<String>,
        /// Simultaneous sessions, or `none` for the plan's.
        #[arg(long)]
        sim_use: Option<String>,
        /// Expiry (see `add`), or `none`.
        #[arg(long)]
        expires: Option<String>,
        /// active or disabled.
        #[arg(long)]
        status: Option<String>,
    },
    /// List subscribers.
    List {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Username contains.
        #[arg(long)]
        search: Option<String>,
        /// Status filter.
        #[arg(long)]
        status: Option<String>,
        /// Plan filter.
        #[arg(long)]
        plan: Option<String>,
        /// Page size.
        #[arg(long)]
        limit: Option<i64>,
        /// Cursor from the previous page.
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one subscriber.
    Show {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Login.
        #[arg(long)]
        username: String,
    },
    /// Delete a subscriber.
    Delete {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Login.
        #[arg(long)]
        username: String,
    },
}

/// `nas` commands.
#[derive(Debug, Subcommand)]
pub enum NasCmd {
    /// Add a NAS.
    Add {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Name (unique in the tenant).
        #[arg(long)]
        name: String,
        /// Source address of a direct NAS (unique on the platform).
        #[arg(long, conflicts_with = "tunnel", required_unless_present = "tunnel")]
        ip: Option<String>,
        /// Reached through the WireGuard relay (no address).
        #[arg(long)]
        tunnel: bool,
        /// RADIUS shared secret.
        #[arg(long)]
        secret: String,
        /// mikrotik or generic.
        #[arg(long, default_value = "mikrotik")]
        vendor: String,
        /// CoA/Disconnect port (3799; 1700 for older setups).
        #[arg(long, default_value_t = 3799)]
        coa_port: u16,
        /// Message-Authenticator policy for Access-Request: auto, require or off.
        #[arg(long, default_value = "auto")]
        message_auth: String,
        /// RouterOS API user.
        #[arg(long)]
        api_user: Option<String>,
        /// RouterOS API password.
        #[arg(long)]
        api_password: Option<String>,
        /// Use the router's API-SSL service (TLS; required for a direct NAS). Its self-signed
        /// certificate is pinned on first use.
        #[arg(long, alias = "api-ssl")]
        api_tls: bool,
        /// API port: default 8728, or 8729 with --api-tls.
        #[arg(long)]
        api_port: Option<u16>,
    },
    /// List NAS devices with their tunnel, RADIUS and API state.
    List {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
    },
    /// Check a NAS's RouterOS API through its path (the tunnel or the network): log in, read
    /// identity and version, time a round trip. Answered by the running `serve` holding the path.
    Check {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// NAS name.
        #[arg(long, alias = "nas")]
        name: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 15)]
        timeout: u64,
    },
    /// Re-pin a NAS's API-SSL certificate after it was really replaced: with --fingerprint
    /// that SHA-256 (hex, as RouterOS's `/certificate print` shows it), else the next
    /// connection pins whatever certificate the router shows.
    Pin {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// NAS name.
        #[arg(long, alias = "name")]
        nas: String,
        /// Expected SHA-256 fingerprint of the new certificate.
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Delete a NAS.
    Delete {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Name.
        #[arg(long)]
        name: String,
    },
}

/// `dns` commands. Changes reach a running `serve` within a second (`dns.changed`).
#[derive(Debug, Subcommand)]
pub enum DnsCmd {
    /// Managed records: without arguments, list them; `add NAME TYPE VALUE` and
    /// `remove NAME TYPE [VALUE]` change them.
    Records {
        #[command(subcommand)]
        action: Option<DnsRecordsCmd>,
    },
    /// TXT records (ACME DNS-01 challenges, verification tokens).
    #[command(subcommand)]
    Txt(DnsTxtCmd),
}

/// `dns records` actions.
#[derive(Debug, Subcommand)]
pub enum DnsRecordsCmd {
    /// Add a record (TXT, A, AAAA, CAA, CNAME, MX) inside the zone.
    Add {
        /// Owner name, e.g. `_acme-challenge.saas.example.com` or `saas.example.com`.
        name: String,
        /// Record type.
        rtype: String,
        /// Value in zone-file form, e.g. `0 issue "letsencrypt.org"` for CAA.
        value: String,
        /// TTL in seconds.
        #[arg(long)]
        ttl: Option<i64>,
    },
    /// Remove records of a name and type (all values, or just VALUE).
    Remove {
        /// Owner name.
        name: String,
        /// Record type.
        rtype: String,
        /// Only this value.
        value: Option<String>,
    },
}

/// `dns txt` actions.
#[derive(Debug, Subcommand)]
pub enum DnsTxtCmd {
    /// Add VALUE to the TXT set of NAME (values already there stay: a wildcard and an apex
    /// certificate need two challenge values at once).
    Set {
        /// Owner name.
        name: String,
        /// Text.
        value: String,
        /// TTL in seconds.
        #[arg(long)]
        ttl: Option<i64>,
    },
    /// Remove VALUE (or, without it, every TXT value) of NAME.
    Clear {
        /// Owner name.
        name: String,
        /// Only this value.
        value: Option<String>,
    },
}

/// `cert` commands.
#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// Names, validity, days left, renewal time and the last renewal error.
    Status,
    /// Renew now: asked of the `serve` node holding the renewal lease, or run here when no node
    /// holds it (needs PROXPANEL_ACME_DIRECTORY and a DNS server answering the zone).
    Renew,
    /// Write `fullchain.pem` and `privkey.pem` (mode 0600) into DIR, for TLS left to nginx.
    Export {
        /// Directory to write into (created when missing).
        #[arg(long)]
        dir: std::path::PathBuf,
    },
}

/// `relay` commands.
#[derive(Debug, Subcommand)]
pub enum RelayCmd {
    /// This node's WireGuard public key and the endpoint routers dial (creates the key on first use).
    Show,
}

/// `peer` commands.
#[derive(Debug, Subcommand)]
pub enum PeerCmd {
    /// Add the WireGuard peer of a tunnel NAS (`nas add --tunnel`). Prints the peer, and once,
    /// the router's private key (when generated here) and the RouterOS script to paste.
    Add {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// NAS name.
        #[arg(long)]
        nas: String,
        /// The router's WireGuard public key (base64); without it a key pair is generated and
        /// its private half is shown once, never stored.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// List peers with their tunnel status (like `wg show`).
    List {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
    },
    /// Remove the peer of a NAS (its tunnel drops at once).
    Remove {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// NAS name.
        #[arg(long)]
        nas: String,
    },
    /// Render the RouterOS script again (it holds the NAS secret and API password; audited).
    Script {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// NAS name.
        #[arg(long)]
        nas: String,
    },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), Fatal> {
    match cli.command {
        Command::Serve(ref args) => crate::serve::run(&cli, args).await,
        Command::Dev(DevCmd::RadiusLoad(args)) => crate::dev_load::run(args).await,
        Command::Dev(DevCmd::RouterosSim(args)) => crate::dev_sim::run(args).await,
        _ => crate::commands::run(cli).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
