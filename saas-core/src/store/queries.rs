// Shared SQL for both backends. This file is `include!`d by `sqlite.rs` and `postgres.rs`, each of
// which defines `Db` (the sqlx database), `DbRow`, the scope helpers `read`, `write`, `sys` and
// `app`, and what differs per backend (`event_insert`, the search page). Placeholders are `$N`,
// valid on both.

use sqlx::Row as _;
use uuid::Uuid;

use crate::ids::*;
use crate::model::*;
use crate::store::{Cutoff, Result, StoreError, StoredEvent};
use chrono::{DateTime, Utc};

fn parse_enum<T: std::str::FromStr<Err = String>>(s: String) -> Result<T> {
    s.parse().map_err(|e| StoreError::Invalid(format!("corrupt row: {e}")))
}

fn parse_slug(s: String) -> Result<Slug> {
    Slug::parse(&s).map_err(|e| StoreError::Invalid(format!("corrupt row: {e}")))
}

fn parse_email(s: String) -> Result<Email> {
    Email::parse(&s).map_err(|e| StoreError::Invalid(format!("corrupt row: {e}")))
}

const TENANT_COLS: &str = "t.id, t.slug, t.name, t.status, t.timezone, t.max_subscribers, t.max_nas, t.relay_node, t.tunnel_subnet, t.created_at, t.updated_at, t.suspended_at, t.deleted_at, t.quota_sync_s";

fn tenant_row(r: &DbRow) -> Result<Tenant> {
    Ok(Tenant {
        id: TenantId(r.try_get("id")?),
        slug: parse_slug(r.try_get("slug")?)?,
        name: r.try_get("name")?,
        status: parse_enum(r.try_get("status")?)?,
        timezone: r.try_get("timezone")?,
        limits: TenantLimits { max_subscribers: r.try_get("max_subscribers")?, max_nas: r.try_get("max_nas")? },
        relay_node: r.try_get("relay_node")?,
        tunnel_subnet: r.try_get("tunnel_subnet")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        suspended_at: r.try_get("suspended_at")?,
        deleted_at: r.try_get("deleted_at")?,
        quota_sync_s: r.try_get::<Option<i32>, _>("quota_sync_s")?.and_then(|s| u32::try_from(s).ok()),
    })
}

fn user_row(r: &DbRow) -> Result<TenantUser> {
    Ok(TenantUser {
        id: UserId(r.try_get("id")?),
        tenant_id: TenantId(r.try_get("tenant_id")?),
        email: parse_email(r.try_get("email")?)?,
        role: parse_enum(r.try_get("role")?)?,
        disabled: r.try_get("disabled")?,
        email_verified: r.try_get("email_verified")?,
        created_at: r.try_get("created_at")?,
    })
}

fn plan_row(r: &DbRow) -> Result<Plan> {
    plan_row_as(r, "")
}

/// A plan from columns named `<prefix><column>` (a plan joined to another table's row).
fn plan_row_as(r: &DbRow, prefix: &str) -> Result<Plan> {
    let c = |name: &str| format!("{prefix}{name}");
    Ok(Plan {
        id: PlanId(r.try_get(c("id").as_str())?),
        tenant_id: TenantId(r.try_get(c("tenant_id").as_str())?),
        name: r.try_get(c("name").as_str())?,
        download_kbps: r.try_get(c("download_kbps").as_str())?,
        upload_kbps: r.try_get(c("upload_kbps").as_str())?,
        burst_download_kbps: r.try_get(c("burst_download_kbps").as_str())?,
        burst_upload_kbps: r.try_get(c("burst_upload_kbps").as_str())?,
        burst_threshold_kbps: r.try_get(c("burst_threshold_kbps").as_str())?,
        burst_time_s: r.try_get(c("burst_time_s").as_str())?,
        quota_bytes: r.try_get(c("quota_bytes").as_str())?,
        quota_action: parse_enum(r.try_get(c("quota_action").as_str())?)?,
        fup_download_kbps: r.try_get(c("fup_download_kbps").as_str())?,
        fup_upload_kbps: r.try_get(c("fup_upload_kbps").as_str())?,
        validity_days: r.try_get(c("validity_days").as_str())?,
        price_cents: r.try_get(c("price_cents").as_str())?,
        ip_pool: r.try_get(c("ip_pool").as_str())?,
        ipv6_pool: r.try_get(c("ipv6_pool").as_str())?,
        delegated_ipv6_pool: r.try_get(c("delegated_ipv6_pool").as_str())?,
        session_timeout_s: r.try_get(c("session_timeout_s").as_str())?,
        sim_use: r.try_get(c("sim_use").as_str())?,
        is_default: r.try_get(c("is_default").as_str())?,
        created_at: r.try_get(c("created_at").as_str())?,
    })
}

/// The plan columns of `service_plans p`, each prefixed `p_` (read back with `plan_row_as(r, "p_")`).
const PLAN_COLS_P: &str = "p.id AS p_id, p.tenant_id AS p_tenant_id, p.name AS p_name, p.download_kbps AS p_download_kbps, p.upload_kbps AS p_upload_kbps, p.burst_download_kbps AS p_burst_download_kbps, p.burst_upload_kbps AS p_burst_upload_kbps, p.burst_threshold_kbps AS p_burst_threshold_kbps, p.burst_time_s AS p_burst_time_s, p.quota_bytes AS p_quota_bytes, p.quota_action AS p_quota_action, p.fup_download_kbps AS p_fup_download_kbps, p.fup_upload_kbps AS p_fup_upload_kbps, p.validity_days AS p_validity_days, p.price_cents AS p_price_cents, p.ip_pool AS p_ip_pool, p.ipv6_pool AS p_ipv6_pool, p.delegated_ipv6_pool AS p_delegated_ipv6_pool, p.session_timeout_s AS p_session_timeout_s, p.sim_use AS p_sim_use, p.is_default AS p_is_default, p.created_at AS p_created_at";

const SUB_COLS: &str = "s.id, s.tenant_id, s.username, s.status, s.plan_id, p.name AS plan_name, s.expires_at, s.static_ip, s.framed_ipv6_prefix, s.delegated_ipv6_prefix, s.mac_lock, s.sim_use, s.usage_reset_at, s.created_at, s.updated_at";

fn subscriber_row(r: &DbRow) -> Result<Subscriber> {
    Ok(Subscriber {
        id: SubscriberId(r.try_get("id")?),
        tenant_id: TenantId(r.try_get("tenant_id")?),
        username: r.try_get("username")?,
        status: parse_enum(r.try_get("status")?)?,
        plan_id: r.try_get::<Option<Uuid>, _>("plan_id")?.map(PlanId),
        plan: r.try_get("plan_name")?,
        expires_at: r.try_get("expires_at")?,
        static_ip: r.try_get("static_ip")?,
        framed_ipv6_prefix: r.try_get("framed_ipv6_prefix")?,
        delegated_ipv6_prefix: r.try_get("delegated_ipv6_prefix")?,
        mac_lock: r.try_get("mac_lock")?,
        sim_use: r.try_get("sim_use")?,
        usage_reset_at: r.try_get("usage_reset_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const NAS_COLS: &str = "id, tenant_id, name, vendor, reach, ip, message_auth, ma_seen_pap, ma_seen_chap, ma_seen_mschap, coa_port, api_port, api_ssl_port, use_ssl, api_user, tunnel_state, last_handshake_at, radius_last_seen, api_state, api_last_error, created_at";

fn port(v: i64) -> Result<u16> {
    u16::try_from(v).map_err(|_| StoreError::Invalid(format!("corrupt row: port {v}")))
}

fn nas_row(r: &DbRow) -> Result<Nas> {
    let ip: Option<String> = r.try_get("ip")?;
    let mut seen = Vec::new();
    for (col, m) in [("ma_seen_pap", "pap"), ("ma_seen_chap", "chap"), ("ma_seen_mschap", "mschap")] {
        if r.try_get::<bool, _>(col)? {
            seen.push(m.to_owned());
        }
    }
    Ok(Nas {
        id: NasId(r.try_get("id")?),
        tenant_id: TenantId(r.try_get("tenant_id")?),
        name: r.try_get("name")?,
        vendor: parse_enum(r.try_get("vendor")?)?,
        reach: parse_enum(r.try_get("reach")?)?,
        ip: ip.map(|s| s.parse()).transpose().map_err(|_| StoreError::Invalid("corrupt row: NAS ip".into()))?,
        message_auth: parse_enum(r.try_get("message_auth")?)?,
        message_auth_seen: seen,
        coa_port: port(r.try_get("coa_port")?)?,
        api_port: port(r.try_get("api_port")?)?,
        api_ssl_port: port(r.try_get("api_ssl_port")?)?,
        use_ssl: r.try_get("use_ssl")?,
        api_user: r.try_get("api_user")?,
        tunnel_state: parse_enum(r.try_get("tunnel_state")?)?,
        last_handshake_at: r.try_get("last_handshake_at")?,
        radius_last_seen: r.try_get("radius_last_seen")?,
        api_state: parse_enum(r.try_get("api_state")?)?,
        api_last_error: r.try_get("api_last_error")?,
        created_at: r.try_get("created_at")?,
    })
}

const PEER_COLS: &str = "id, tenant_id, nas_id, public_key, tunnel_address, relay_node, last_handshake, endpoint, rx_bytes, tx_bytes, created_at";

fn peer_row(r: &DbRow) -> Result<WgPeer> {
    Ok(WgPeer {
        id: PeerId(r.try_get("id")?),
        tenant_id: TenantId(r.try_get("tenant_id")?),
        nas_id: NasId(r.try_get("nas_id")?),
        public_key: r.try_get("public_key")?,
        tunnel_address: r.try_get("tunnel_address")?,
        relay_node: r.try_get("relay_node")?,
        last_handshake: r.try_get("last_handshake")?,
        endpoint: r.try_get("endpoint")?,
        rx_bytes: r.try_get("rx_bytes")?,
        tx_bytes: r.try_get("tx_bytes")?,
        created_at: r.try_get("created_at")?,
    })
}

/// A peer joined with its tenant (`p.id, p.tenant_id, p.nas_id, p.tunnel_address, t.status,
/// t.suspended_at`), as the relay sees it.
fn peer_identity_row(r: &DbRow) -> Result<PeerIdentity> {
    Ok(PeerIdentity {
        peer_id: PeerId(r.try_get("id")?),
        tenant_id: TenantId(r.try_get("tenant_id")?),
        tenant_status: parse_enum(r.try_get("status")?)?,
        suspended_at: r.try_get("suspended_at")?,
        nas_id: NasId(r.try_get("nas_id")?),
        tunnel_address: r.try_get("tunnel_address")?,
    })
}

const SESSION_COLS: &str = "id, tenant_id, nas_id, username, acct_session_id, framed_ip, calling_station_id, started_at, updated_at, stopped_at, input_octets, output_octets, terminate_cause";

fn session_row(r: &DbRow) -> Result<Session> {
    Ok(Session {
        id: SessionId(r.try_get("id")?),
        tenant: TenantId(r.try_get("tenant_id")?),
        nas: NasId(r.try_get("nas_id")?),
        username: r.try_get("username")?,
        acct_session_id: r.try_get("acct_session_id")?,
        framed_ip: r.try_get("framed_ip")?,
        calling_station_id: r.try_get("calling_station_id")?,
        started_at: r.try_get("started_at")?,
        updated_at: r.try_get("updated_at")?,
        stopped_at: r.try_get("stopped_at")?,
        input_octets: r.try_get("input_octets")?,
        output_octets: r.try_get("output_octets")?,
        terminate_cause: r.try_get("terminate_cause")?,
    })
}

fn operator_row(r: &DbRow) -> Result<Operator> {
    Ok(Operator {
        id: OperatorId(r.try_get("id")?),
        email: parse_email(r.try_get("email")?)?,
        role: r.try_get("role")?,
        totp_enrolled: r.try_get("totp_enrolled")?,
        created_at: r.try_get("created_at")?,
    })
}

fn dns_row(r: &DbRow) -> Result<DnsRecord> {
    Ok(DnsRecord {
        id: DnsRecordId(r.try_get("id")?),
        tenant_id: r.try_get::<Option<Uuid>, _>("tenant_id")?.map(TenantId),
        name: r.try_get("name")?,
        rtype: r.try_get("rtype")?,
        value: r.try_get("value")?,
        ttl: r.try_get("ttl")?,
        created_at: r.try_get("created_at")?,
    })
}

/// The conditions of a subscriber listing on search (`$2`), status (`$3`) and plan (`$4`): the
/// filter for each one given (`search` is the condition on `$2`), `$N IS NULL` for each one not.
/// Every combination keeps the parameter positions but gets its own statement text, and so its
/// own cached plan: one generic plan for "any filter or none" fits some of them very badly.
fn subscriber_filters(search: Option<&str>, status: bool, plan: bool) -> String {
    format!(
        "{} {} {}",
        search.unwrap_or("AND $2 IS NULL"),
        if status { "AND s.status = $3" } else { "AND $3 IS NULL" },
        if plan { "AND s.plan_id = $4" } else { "AND $4 IS NULL" },
    )
}

/// The username cursor (`$5`) of a listing in username order, in the same way.
fn after_username(after: bool) -> &'static str {
    if after { "AND s.username > $5" } else { "AND $5 IS NULL" }
}

fn q(s: String) -> sqlx::AssertSqlSafe<String> {
    // Only used with column lists that are compile-time constants of this file.
    sqlx::AssertSqlSafe(s)
}

impl Db {
    // ---- tenants ----

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn tenant_insert(&self, t: TenantId, slug: &Slug, name: &str, tz: &str, limits: TenantLimits, subnet: &str, now: DateTime<Utc>) -> Result<Tenant> {
        let mut tx = self.write(t).await?;
        sqlx::query("INSERT INTO tenants (id, slug, name, status, timezone, max_subscribers, max_nas, tunnel_subnet, created_at, updated_at) VALUES ($1, $2, $3, 'provisioning', $4, $5, $6, $7, $8, $8)")
            .bind(t.0).bind(slug.as_str()).bind(name).bind(tz).bind(limits.max_subscribers).bind(limits.max_nas).bind(subnet).bind(now)
            .execute(&mut *tx).await?;
        let row = sqlx::query(q(format!("SELECT {TENANT_COLS} FROM tenants t WHERE t.id = $1"))).bind(t.0).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        tenant_row(&row)
    }

    pub(super) async fn tenant_get(&self, t: TenantId) -> Result<Option<Tenant>> {
        let mut tx = self.read(t).await?;
        let row = sqlx::query(q(format!("SELECT {TENANT_COLS} FROM tenants t WHERE t.id = $1"))).bind(t.0).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        row.as_ref().map(tenant_row).transpose()
    }

    pub(super) async fn tenant_set_status(&self, t: TenantId, status: TenantStatus, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.write(t).await?;
        let res = sqlx::query(
            "UPDATE tenants SET status = $2, updated_at = $3,
                suspended_at = CASE WHEN $2 = 'suspended' THEN $3 WHEN $2 = 'active' THEN NULL ELSE suspended_at END,
                deleted_at = CASE WHEN $2 = 'deleted' THEN $3 ELSE deleted_at END
             WHERE id = $1",
        )
        .bind(t.0).bind(status.as_str()).bind(now)
        .execute(&mut *tx).await?;
        tx.commit().await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tenant {t}")));
        }
        Ok(())
    }

    pub(super) async fn tenant_update(&self, t: TenantId, name: Option<&str>, tz: Option<&str>, limits: Option<TenantLimits>, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.write(t).await?;
        sqlx::query("UPDATE tenants SET name = COALESCE($2, name), timezone = COALESCE($3, timezone), max_subscribers = COALESCE($4, max_subscribers), max_nas = COALESCE($5, max_nas), updated_at = $6 WHERE id = $1")
            .bind(t.0).bind(name).bind(tz).bind(limits.map(|l| l.max_subscribers)).bind(limits.map(|l| l.max_nas)).bind(now)
            .execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn tenant_set_quota_sync(&self, t: TenantId, secs: Option<u32>, now: DateTime<Utc>) -> Result<()> {
        let secs = secs.map(|s| i32::try_from(s).unwrap_or(i32::MAX));
        let mut tx = self.write(t).await?;
        sqlx::query("UPDATE tenants SET quota_sync_s = $2, updated_at = $3 WHERE id = $1")
            .bind(t.0).bind(secs).bind(now)
            .execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn tenant_purge(&self, t: TenantId) -> Result<()> {
        let mut tx = self.write(t).await?;
        // Children first: their RLS policies need the tenant row to still match nothing else.
        for sql in [
            "DELETE FROM refresh_families WHERE tenant_id = $1",
            "DELETE FROM api_tokens WHERE tenant_id = $1",
            "DELETE FROM email_verifications WHERE tenant_id = $1",
            "DELETE FROM radius_sessions WHERE tenant_id = $1",
            "DELETE FROM usage_hourly WHERE tenant_id = $1",
            "DELETE FROM auth_log WHERE tenant_id = $1",
            "DELETE FROM audit_log WHERE tenant_id = $1",
            "DELETE FROM wg_peers WHERE tenant_id = $1",
            "DELETE FROM nas_devices WHERE tenant_id = $1",
            "DELETE FROM subscribers WHERE tenant_id = $1",
            "DELETE FROM service_plans WHERE tenant_id = $1",
            "DELETE FROM tenant_users WHERE tenant_id = $1",
            "DELETE FROM tenants WHERE id = $1",
        ] {
            sqlx::query(sql).bind(t.0).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- users ----

    pub(super) async fn user_insert(&self, t: TenantId, id: UserId, email: &Email, hash: &str, role: Role, now: DateTime<Utc>) -> Result<TenantUser> {
        let mut tx = self.write(t).await?;
        sqlx::query("INSERT INTO tenant_users (id, tenant_id, email, password_hash, role, disabled, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(id.0).bind(t.0).bind(email.as_str()).bind(hash).bind(role.as_str()).bind(false).bind(now)
            .execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(TenantUser { id, tenant_id: t, email: email.clone(), role, disabled: false, email_verified: false, created_at: now })
    }

    pub(super) async fn user_by_email(&self, t: TenantId, email: &Email) -> Result<Option<(TenantUser, String)>> {
        let mut tx = self.read(t).await?;
        let row = sqlx::query("SELECT id, tenant_id, email, role, disabled, email_verified, created_at, password_hash FROM tenant_users WHERE tenant_id = $1 AND email = $2")
            .bind(t.0).bind(email.as_str()).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        row.map(|r| Ok((user_row(&r)?, r.try_get("password_hash")?))).transpose()
    }

    pub(super) async fn users_list(&self, t: TenantId) -> Result<Vec<TenantUser>> {
        let mut tx = self.read(t).await?;
        let rows = sqlx::query("SELECT id, tenant_id, email, role, disabled, email_verified, created_at FROM tenant_users WHERE tenant_id = $1 ORDER BY email")
            .bind(t.0).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(user_row).collect()
    }

    // ---- plans ----

    pub(super) async fn plan_insert(&self, t: TenantId, id: PlanId, p: &NewPlan, is_default: bool, now: DateTime<Utc>) -> Result<Plan> {
        let action = if p.quota_bytes.is_some() && p.fup_download_kbps.is_none() { QuotaAction::Reject } else { QuotaAction::Fup };
        let mut tx = self.write(t).await?;
        sqlx::query(
            "INSERT INTO service_plans (id, tenant_id, name, download_kbps, upload_kbps, burst_download_kbps, burst_upload_kbps,
                burst_threshold_kbps, burst_time_s, quota_bytes, quota_action, fup_download_kbps, fup_upload_kbps, validity_days,
                price_cents, ip_pool, ipv6_pool, delegated_ipv6_pool, session_timeout_s, sim_use, is_default, created_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22)",
        )
        .bind(id.0).bind(t.0).bind(p.name.trim()).bind(p.download_kbps).bind(p.upload_kbps).bind(p.burst_download_kbps).bind(p.burst_upload_kbps)
        .bind(p.burst_threshold_kbps).bind(p.burst_time_s).bind(p.quota_bytes).bind(action.as_str()).bind(p.fup_download_kbps).bind(p.fup_upload_kbps)
        .bind(p.validity_days).bind(p.price_cents).bind(p.ip_pool.as_deref()).bind(p.ipv6_pool.as_deref()).bind(p.delegated_ipv6_pool.as_deref())
        .bind(p.session_timeout_s).bind(p.sim_use.unwrap_or(1)).bind(is_default).bind(now)
        .execute(&mut *tx).await?;
        let row = sqlx::query("SELECT * FROM service_plans WHERE tenant_id = $1 AND id = $2").bind(t.0).bind(id.0).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        plan_row(&row)
    }

    pub(super) async fn plans_list(&self, t: TenantId) -> Result<Vec<Plan>> {
        let mut tx = self.read(t).await?;
        let rows = sqlx::query("SELECT * FROM service_plans WHERE tenant_id = $1 ORDER BY name").bind(t.0).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(plan_row).collect()
    }

    pub(super) async fn plan_by_name(&self, t: TenantId, name: &str) -> Result<Option<Plan>> {
        let mut tx = self.read(t).await?;
        let row = sqlx::query("SELECT * FROM service_plans WHERE tenant_id = $1 AND name = $2").bind(t.0).bind(name).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        row.as_ref().map(plan_row).transpose()
    }

    pub(super) async fn plan_by_id(&self, t: TenantId, id: PlanId) -> Result<Option<Plan>> {
        let mut tx = self.read(t).await?;
        let row = sqlx::query("SELECT * FROM service_plans WHERE tenant_id = $1 AND id = $2").bind(t.0).bind(id.0).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        row.as_ref().map(plan_row).transpose()
    }

    // ---- subscribers ----

    pub(super) async fn subscribers_count(&self, t: TenantId) -> Result<i64> {
        let mut tx = self.read(t).await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subscribers WHERE tenant_id = $1").bind(t.0).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(n)
    }

    pub(super) async fn subscriber_insert(&self, t: TenantId, id: SubscriberId, s: &NewSubscriber, sealed: &str, now: DateTime<Utc>) -> Result<Subscriber> {
        self.subscribers_insert_many(t, std::slice::from_ref(s), &[(id, sealed.to_owned())], now).await?;
        self.subscriber_by_id(t, id).await?.ok_or_else(|| StoreError::NotFound(format!("subscriber {id}")))
    }

    pub(super) async fn subscribers_insert_many(&self, t: TenantId, rows: &[NewSubscriber], sealed: &[(SubscriberId, String)], now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.write(t).await?;
        for (s, (id, pw)) in rows.iter().zip(sealed) {
            sqlx::query(
                "INSERT INTO subscribers (id, tenant_id, username, password, status, plan_id, expires_at, static_ip, framed_ipv6_prefix,
                    delegated_ipv6_prefix, mac_lock, sim_use, usage_reset_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9, $10, $11, $12, $12, $12)",
            )
            .bind(id.0).bind(t.0).bind(&s.username).bind(pw).bind(s.plan_id.map(|p| p.0)).bind(s.expires_at)
            .bind(s.static_ip.as_deref()).bind(s.framed_ipv6_prefix.as_deref()).bind(s.delegated_ipv6_prefix.as_deref())
            .bind(s.mac_lock.as_deref().and_then(crate::store::normalize_mac)).bind(s.sim_use).bind(now)
            .execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn subscriber_by_username(&self, t: TenantId, username: &str) -> Result<Option<Subscriber>> {
        let mut tx = self.read(t).await?;
        let row = sqlx::query(q(format!("SELECT {SUB_COLS} FROM subscribers s LEFT JOIN service_plans p ON p.id = s.plan_id WHERE s.tenant_id = $1 AND s.username = $2")))
            .bind(t.0).bind(username).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        row.as_ref().map(subscriber_row).transpose()
    }

    pub(super) async fn subscriber_by_id(&self, t: TenantId, id: SubscriberId) -> Result<Option<Subscriber>> {
        let mut tx = self.read(t).await?;
        let row = sqlx::query(q(format!("SELECT {SUB_COLS} FROM subscribers s LEFT JOIN service_plans p ON p.id = s.plan_id WHERE s.tenant_id = $1 AND s.id = $2")))
            .bind(t.0).bind(id.0).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        row.as_ref().map(subscriber_row).transpose()
    }

    /// What authentication needs of a subscriber in one round trip: the row, its sealed password
    /// and its plan (None when it has none).
    pub(super) async fn subscriber_auth_by_username(&self, t: TenantId, username: &str) -> Result<Option<(Subscriber, String, Option<Plan>)>> {
        let mut tx = self.read(t).await?;
        let row = sqlx::query(q(format!("SELECT {SUB_COLS}, s.password AS sealed_password, {PLAN_COLS_P} FROM subscribers s LEFT JOIN service_plans p ON p.id = s.plan_id AND p.tenant_id = s.tenant_id WHERE s.tenant_id = $1 AND s.username = $2")))
            .bind(t.0).bind(username).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        let Some(r) = row else { return Ok(None) };
        let plan = match r.try_get::<Option<Uuid>, _>("p_id")? {
            Some(_) => Some(plan_row_as(&r, "p_")?),
            None => None,
        };
        Ok(Some((subscriber_row(&r)?, r.try_get("sealed_password")?, plan)))
    }

    pub(super) async fn subscriber_sealed_password(&self, t: TenantId, id: SubscriberId) -> Result<Option<String>> {
        let mut tx = self.read(t).await?;
        let p: Option<String> = sqlx::query_scalar("SELECT password FROM subscribers WHERE tenant_id = $1 AND id = $2")
            .bind(t.0).bind(id.0).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        Ok(p)
    }

    /// Applies a patch and reads the row back in the same transaction.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn subscriber_update(&self, t: TenantId, id: SubscriberId, p: &SubscriberPatch, sealed: Option<&str>, audit: Option<&crate::store::AuditLine<'_>>, now: DateTime<Utc>) -> Result<Subscriber> {
        let mut tx = self.write(t).await?;
        let res = sqlx::query(
            "UPDATE subscribers SET
                password = COALESCE($3, password),
                status = COALESCE($4, status),
                plan_id = CASE WHEN $5 THEN $6 ELSE plan_id END,
                expires_at = CASE WHEN $7 THEN $8 ELSE expires_at END,
                static_ip = CASE WHEN $9 THEN $10 ELSE static_ip END,
                framed_ipv6_prefix = CASE WHEN $11 THEN $12 ELSE framed_ipv6_prefix END,
                delegated_ipv6_prefix = CASE WHEN $13 THEN $14 ELSE delegated_ipv6_prefix END,
                mac_lock = CASE WHEN $15 THEN $16 ELSE mac_lock END,
                sim_use = CASE WHEN $17 THEN $18 ELSE sim_use END,
                updated_at = $19
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(t.0).bind(id.0).bind(sealed).bind(p.status.map(|s| s.as_str()))
        .bind(p.plan_id.is_some()).bind(p.plan_id.flatten().map(|x| x.0))
        .bind(p.expires_at.is_some()).bind(p.expires_at.flatten())
        .bind(p.static_ip.is_some()).bind(p.static_ip.clone().flatten())
        .bind(p.framed_ipv6_prefix.is_some()).bind(p.framed_ipv6_prefix.clone().flatten())
        .bind(p.delegated_ipv6_prefix.is_some()).bind(p.delegated_ipv6_prefix.clone().flatten())
        .bind(p.mac_lock.is_some()).bind(p.mac_lock.clone().flatten().and_then(|m| crate::store::normalize_mac(&m)))
        .bind(p.sim_use.is_some()).bind(p.sim_use.flatten())
        .bind(now)
        .execute(&mut *tx).await?;
        if res.rows_affected() == 0 {
            tx.commit().await?;
            return Err(StoreError::NotFound(format!("subscriber {id}")));
        }
        let row = sqlx::query(q(format!("SELECT {SUB_COLS} FROM subscribers s LEFT JOIN service_plans p ON p.id = s.plan_id WHERE s.tenant_id = $1 AND s.id = $2")))
            .bind(t.0).bind(id.0).fetch_one(&mut *tx).await?;
        if let Some(a) = audit {
            sqlx::query("INSERT INTO audit_log (tenant_id, at, actor, action, target, details, client_ip) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(t.0).bind(now).bind(a.actor).bind(a.action).bind(a.target).bind(a.details).bind(a.client_ip)
                .execute(&mut *tx).await?;
        }
        tx.commit().await?;
        subscriber_row(&row)
    }

    pub(super) async fn subscriber_delete(&self, t: TenantId, id: SubscriberId) -> Result<bool> {
        let mut tx = self.write(t).await?;
        // Sessions keep their history without the link (no foreign key on PostgreSQL: 0005).
        sqlx::query("UPDATE radius_sessions SET subscriber_id = NULL WHERE tenant_id = $1 AND subscriber_id = $2").bind(t.0).bind(id.0).execute(&mut *tx).await?;
        let res = sqlx::query("DELETE FROM subscribers WHERE tenant_id = $1 AND id = $2").bind(t.0).bind(id.0).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn subscribers_list(&self, t: TenantId, search: Option<&str>, status: Option<SubscriberStatus>, plan: Option<PlanId>, after: Option<&str>, limit: i64) -> Result<Vec<Subscriber>> {
        // A search starts with statements whose generic plans are right (the search page).
        let mut tx = if search.is_some() { self.read_generic(t).await? } else { self.read(t).await? };
        if let Some(term) = search
            && let Some(page) = self.subscriber_search_page(&mut tx, t, term, status, plan, after, limit).await?
        {
            tx.commit().await?;
            return Ok(page);
        }
        let filters = subscriber_filters(search.map(|_| SUBSCRIBER_SEARCH), status.is_some(), plan.is_some());
        let after_sql = after_username(after.is_some());
        let rows = sqlx::query(q(format!(
            "SELECT {SUB_COLS} FROM subscribers s LEFT JOIN service_plans p ON p.id = s.plan_id
             WHERE s.tenant_id = $1 {filters} {after_sql}
             ORDER BY s.username LIMIT $6"
        )))
        .bind(t.0).bind(search).bind(status.map(|s| s.as_str())).bind(plan.map(|p| p.0)).bind(after).bind(limit)
        .fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(subscriber_row).collect()
    }

    // ---- NAS ----

    pub(super) async fn nas_count(&self, t: TenantId) -> Result<i64> {
        let mut tx = self.read(t).await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nas_devices WHERE tenant_id = $1").bind(t.0).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(n)
    }

    pub(super) async fn nas_insert(&self, t: TenantId, id: NasId, n: &NewNas, secret: &str, api_password: Option<&str>, now: DateTime<Utc>) -> Result<Nas> {
        let (reach, tunnel_state) = match n.ip {
            Some(_) => (NasReach::Direct, TunnelState::None),
            None => (NasReach::Tunnel, TunnelState::Waiting),
        };
        let mut tx = self.write(t).await?;
        sqlx::query(
            "INSERT INTO nas_devices (id, tenant_id, name, vendor, reach, ip, secret, message_auth, coa_port, use_ssl, api_user, api_password, tunnel_state, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(id.0).bind(t.0).bind(n.name.trim()).bind(n.vendor.as_str()).bind(reach.as_str()).bind(n.ip.map(|i| i.to_string()))
        .bind(secret).bind(n.message_auth.as_str()).bind(i64::from(n.coa_port)).bind(n.use_ssl).bind(n.api_user.as_deref()).bind(api_password)
        .bind(tunnel_state.as_str()).bind(now)
        .execute(&mut *tx).await?;
        let row = sqlx::query(q(format!("SELECT {NAS_COLS} FROM nas_devices WHERE tenant_id = $1 AND id = $2"))).bind(t.0).bind(id.0).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        nas_row(&row)
    }

    pub(super) async fn nas_list(&self, t: TenantId) -> Result<Vec<Nas>> {
        let mut tx = self.read(t).await?;
        let rows = sqlx::query(q(format!("SELECT {NAS_COLS} FROM nas_devices WHERE tenant_id = $1 ORDER BY name"))).bind(t.0).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(nas_row).collect()
    }

    pub(super) async fn nas_by_id(&self, t: TenantId, id: NasId) -> Result<Option<Nas>> {
        let mut tx = self.read(t).await?;
        let row = sqlx::query(q(format!("SELECT {NAS_COLS} FROM nas_devices WHERE tenant_id = $1 AND id = $2"))).bind(t.0).bind(id.0).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        row.as_ref().map(nas_row).transpose()
    }

    pub(super) async fn nas_by_name(&self, t: TenantId, name: &str) -> Result<Option<Nas>> {
        let mut tx = self.read(t).await?;
        let row = sqlx::query(q(format!("SELECT {NAS_COLS} FROM nas_devices WHERE tenant_id = $1 AND name = $2"))).bind(t.0).bind(name).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        row.as_ref().map(nas_row).transpose()
    }

    pub(super) async fn nas_sealed_secret(&self, t: TenantId, id: NasId) -> Result<Option<String>> {
        let mut tx = self.read(t).await?;
        let s: Option<String> = sqlx::query_scalar("SELECT secret FROM nas_devices WHERE tenant_id = $1 AND id = $2").bind(t.0).bind(id.0).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        Ok(s)
    }

    pub(super) async fn nas_set_api(&self, t: TenantId, id: NasId, user: &str, sealed: &str) -> Result<()> {
        let mut tx = self.write(t).await?;
        sqlx::query("UPDATE nas_devices SET api_user = $3, api_password = $4 WHERE tenant_id = $1 AND id = $2")
            .bind(t.0).bind(id.0).bind(user).bind(sealed).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn nas_set_api_endpoint(&self, t: TenantId, id: NasId, port: i64, use_ssl: bool) -> Result<bool> {
        let mut tx = self.write(t).await?;
        let col = if use_ssl { "api_ssl_port" } else { "api_port" };
        let res = sqlx::query(q(format!("UPDATE nas_devices SET {col} = $3, use_ssl = $4 WHERE tenant_id = $1 AND id = $2")))
            .bind(t.0).bind(id.0).bind(port).bind(use_ssl).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }

    pub(super) async fn nas_api_pin(&self, t: TenantId, id: NasId) -> Result<Option<String>> {
        let mut tx = self.read(t).await?;
        let v: Option<Option<String>> = sqlx::query_scalar("SELECT api_tls_fingerprint FROM nas_devices WHERE tenant_id = $1 AND id = $2")
            .bind(t.0).bind(id.0).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        Ok(v.flatten())
    }

    pub(super) async fn nas_set_api_pin(&self, t: TenantId, id: NasId, fingerprint: Option<&str>, only_if_unset: bool) -> Result<bool> {
        let mut tx = self.write(t).await?;
        let sql = if only_if_unset {
            "UPDATE nas_devices SET api_tls_fingerprint = $3 WHERE tenant_id = $1 AND id = $2 AND api_tls_fingerprint IS NULL"
        } else {
            "UPDATE nas_devices SET api_tls_fingerprint = $3 WHERE tenant_id = $1 AND id = $2"
        };
        let res = sqlx::query(sql).bind(t.0).bind(id.0).bind(fingerprint).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }

    pub(super) async fn nas_set_api_state(&self, t: TenantId, id: NasId, state: &str, error: Option<&str>, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.write(t).await?;
        sqlx::query("UPDATE nas_devices SET api_state = $3, api_last_error = $4, api_checked_at = $5 WHERE tenant_id = $1 AND id = $2")
            .bind(t.0).bind(id.0).bind(state).bind(error).bind(now).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn nas_api_password(&self, t: TenantId, id: NasId) -> Result<Option<String>> {
        let mut tx = self.read(t).await?;
        let v: Option<Option<String>> = sqlx::query_scalar("SELECT api_password FROM nas_devices WHERE tenant_id = $1 AND id = $2")
            .bind(t.0).bind(id.0).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        Ok(v.flatten())
    }

    pub(super) async fn nas_delete(&self, t: TenantId, id: NasId) -> Result<bool> {
        let mut tx = self.write(t).await?;
        // A NAS's sessions go with it (no foreign key on PostgreSQL: 0005).
        sqlx::query("DELETE FROM radius_sessions WHERE tenant_id = $1 AND nas_id = $2").bind(t.0).bind(id.0).execute(&mut *tx).await?;
        let res = sqlx::query("DELETE FROM nas_devices WHERE tenant_id = $1 AND id = $2").bind(t.0).bind(id.0).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }

    // ---- peers ----

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn peer_insert(&self, t: TenantId, id: PeerId, nas: NasId, public_key: &str, sealed_private: Option<&str>, addr: &str, relay: Option<&str>, now: DateTime<Utc>) -> Result<WgPeer> {
        let mut tx = self.write(t).await?;
        sqlx::query("INSERT INTO wg_peers (id, tenant_id, nas_id, public_key, private_key, tunnel_address, relay_node, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(id.0).bind(t.0).bind(nas.0).bind(public_key).bind(sealed_private).bind(addr).bind(relay).bind(now)
            .execute(&mut *tx).await?;
        // The node holding the tenant's first peer becomes the tenant's relay node (DNS points
        // SLUG.relay.<base> at it); a later peer on another node does not move the tenant.
        if let Some(node) = relay {
            sqlx::query("UPDATE tenants SET relay_node = $2, updated_at = $3 WHERE id = $1 AND relay_node IS NULL")
                .bind(t.0).bind(node).bind(now).execute(&mut *tx).await?;
        }
        let row = sqlx::query(q(format!("SELECT {PEER_COLS} FROM wg_peers WHERE tenant_id = $1 AND id = $2"))).bind(t.0).bind(id.0).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        peer_row(&row)
    }

    pub(super) async fn peer_delete(&self, t: TenantId, id: PeerId) -> Result<bool> {
        let mut tx = self.write(t).await?;
        let nas: Option<Uuid> = sqlx::query_scalar("DELETE FROM wg_peers WHERE tenant_id = $1 AND id = $2 RETURNING nas_id")
            .bind(t.0).bind(id.0).fetch_optional(&mut *tx).await?;
        if let Some(nas) = nas {
            sqlx::query("UPDATE nas_devices SET tunnel_state = 'down' WHERE tenant_id = $1 AND id = $2").bind(t.0).bind(nas).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(nas.is_some())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn peer_status(&self, t: TenantId, id: PeerId, last_handshake: Option<DateTime<Utc>>, endpoint: Option<&str>, rx: i64, tx_bytes: i64, tai64: Option<&[u8]>, state: &str) -> Result<()> {
        let mut tx = self.write(t).await?;
        let nas: Option<Uuid> = sqlx::query_scalar(
            "UPDATE wg_peers SET last_handshake = COALESCE($3, last_handshake), endpoint = COALESCE($4, endpoint), rx_bytes = $5, tx_bytes = $6,
                handshake_tai64 = COALESCE($7, handshake_tai64) WHERE tenant_id = $1 AND id = $2 RETURNING nas_id",
        )
        .bind(t.0).bind(id.0).bind(last_handshake).bind(endpoint).bind(rx).bind(tx_bytes).bind(tai64)
        .fetch_optional(&mut *tx).await?;
        if let Some(nas) = nas {
            sqlx::query("UPDATE nas_devices SET tunnel_state = $3, last_handshake_at = COALESCE($4, last_handshake_at) WHERE tenant_id = $1 AND id = $2")
                .bind(t.0).bind(nas).bind(state).bind(last_handshake).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn peers_list(&self, t: TenantId) -> Result<Vec<WgPeer>> {
        let mut tx = self.read(t).await?;
        let rows = sqlx::query(q(format!("SELECT {PEER_COLS} FROM wg_peers WHERE tenant_id = $1 ORDER BY created_at"))).bind(t.0).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(peer_row).collect()
    }

    // ---- sessions and logs ----

    pub(super) async fn sessions_list(&self, t: TenantId, online_only: bool, limit: i64) -> Result<Vec<Session>> {
        let mut tx = self.read(t).await?;
        let rows = sqlx::query(q(format!("SELECT {SESSION_COLS} FROM radius_sessions WHERE tenant_id = $1 AND ($2 = FALSE OR stopped_at IS NULL) ORDER BY started_at DESC LIMIT $3")))
            .bind(t.0).bind(online_only).bind(limit).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(session_row).collect()
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn session_insert(&self, t: TenantId, id: SessionId, nas: NasId, sub: Option<SubscriberId>, username: &str, acct: &str, ip: Option<&str>, csid: Option<&str>, at: DateTime<Utc>) -> Result<()> {
        let mut tx = self.write(t).await?;
        sqlx::query("INSERT INTO radius_sessions (id, tenant_id, nas_id, subscriber_id, username, acct_session_id, framed_ip, calling_station_id, started_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)")
            .bind(id.0).bind(t.0).bind(nas.0).bind(sub.map(|s| s.0)).bind(username).bind(acct).bind(ip).bind(csid).bind(at)
            .execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Applies accounting records in one transaction (the caller acknowledges after it returns).
    pub(super) async fn session_raise(&self, t: TenantId, nas: NasId, acct_session_id: &str, input: i64, output: i64, at: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.write(t).await?;
        // The same rule as accounting: absolute counters, the higher reading wins, never a sum.
        let res = sqlx::query(
            "UPDATE radius_sessions SET
                input_octets = CASE WHEN $4 > input_octets THEN $4 ELSE input_octets END,
                output_octets = CASE WHEN $5 > output_octets THEN $5 ELSE output_octets END,
                updated_at = $6
             WHERE tenant_id = $1 AND nas_id = $2 AND acct_session_id = $3 AND stopped_at IS NULL
               AND ($4 > input_octets OR $5 > output_octets)",
        )
        .bind(t.0).bind(nas.0).bind(acct_session_id).bind(input).bind(output).bind(at)
        .execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }

    pub(super) async fn acct_apply(&self, t: TenantId, records: &[AcctRecord]) -> Result<()> {
        let mut tx = self.write(t).await?;
        for run in &super::acct_runs(records) {
            self.acct_run(&mut tx, t, run).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The records of accounting groups one by one, in order (where a group cannot be applied
    /// as one write; see [`super::AcctGroup`]).
    async fn acct_each<'g, 'r: 'g>(
        &self,
        conn: &mut <DbKind as sqlx::Database>::Connection,
        t: TenantId,
        groups: impl IntoIterator<Item = &'g super::AcctGroup<'r>>,
    ) -> Result<()> {
        for g in groups {
            for r in g.records() {
                self.acct_one(conn, t, r).await?;
            }
        }
        Ok(())
    }

    /// One accounting record, applied alone.
    async fn acct_one(&self, conn: &mut <DbKind as sqlx::Database>::Connection, t: TenantId, r: &AcctRecord) -> Result<()> {
            let started = r.at - chrono::Duration::seconds(r.session_time_s.max(0));
            let stop = r.kind == AcctKind::Stop;
            if r.kind == AcctKind::Start {
                // A Start retransmitted after the reply cache forgot it: the same open session
                // (same NAS, Acct-Session-Id and start time) already exists.
                let again: Option<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM radius_sessions WHERE tenant_id = $1 AND nas_id = $2 AND acct_session_id = $3
                       AND stopped_at IS NULL AND started_at >= $4 AND started_at <= $5 LIMIT 1",
                )
                .bind(t.0).bind(r.nas.0).bind(&r.acct_session_id)
                .bind(started - chrono::Duration::seconds(5)).bind(started + chrono::Duration::seconds(5))
                .fetch_optional(&mut *conn).await?;
                if again.is_some() {
                    return Ok(());
                }
            } else {
                // Counters only move up: a retransmit or a late Interim never lowers them.
                let res = sqlx::query(
                    "UPDATE radius_sessions SET
                        input_octets = CASE WHEN $4 > input_octets THEN $4 ELSE input_octets END,
                        output_octets = CASE WHEN $5 > output_octets THEN $5 ELSE output_octets END,
                        session_time_s = CASE WHEN $6 > session_time_s THEN $6 ELSE session_time_s END,
                        framed_ip = COALESCE($7, framed_ip),
                        updated_at = $8,
                        stopped_at = CASE WHEN $9 THEN $8 ELSE stopped_at END,
                        terminate_cause = COALESCE($10, terminate_cause)
                     WHERE tenant_id = $1 AND nas_id = $2 AND acct_session_id = $3 AND stopped_at IS NULL",
                )
                .bind(t.0).bind(r.nas.0).bind(&r.acct_session_id).bind(r.input_octets).bind(r.output_octets).bind(r.session_time_s)
                .bind(r.framed_ip.as_deref()).bind(r.at).bind(stop).bind(r.terminate_cause.as_deref())
                .execute(&mut *conn).await?;
                if res.rows_affected() > 0 {
                    return Ok(());
                }
                // No open session: a repeat of a Stop we already applied updates that row (never a
                // second one); otherwise the Start was lost and this record opens the session.
                let closed: Option<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM radius_sessions WHERE tenant_id = $1 AND nas_id = $2 AND acct_session_id = $3
                       AND stopped_at IS NOT NULL AND started_at >= $4 AND started_at <= $5 ORDER BY started_at DESC LIMIT 1",
                )
                .bind(t.0).bind(r.nas.0).bind(&r.acct_session_id)
                .bind(started - chrono::Duration::seconds(120)).bind(started + chrono::Duration::seconds(120))
                .fetch_optional(&mut *conn).await?;
                if let Some(id) = closed {
                    sqlx::query(
                        "UPDATE radius_sessions SET
                            input_octets = CASE WHEN $3 > input_octets THEN $3 ELSE input_octets END,
                            output_octets = CASE WHEN $4 > output_octets THEN $4 ELSE output_octets END,
                            session_time_s = CASE WHEN $5 > session_time_s THEN $5 ELSE session_time_s END
                         WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(t.0).bind(id).bind(r.input_octets).bind(r.output_octets).bind(r.session_time_s)
                    .execute(&mut *conn).await?;
                    return Ok(());
                }
            }
            sqlx::query(
                "INSERT INTO radius_sessions (id, tenant_id, nas_id, subscriber_id, username, acct_session_id, framed_ip, calling_station_id,
                    nas_port_id, started_at, updated_at, stopped_at, session_time_s, input_octets, output_octets, terminate_cause)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(r.id.0).bind(t.0).bind(r.nas.0).bind(r.subscriber.map(|s| s.0)).bind(&r.username).bind(&r.acct_session_id)
            .bind(r.framed_ip.as_deref()).bind(r.calling_station_id.as_deref()).bind(r.nas_port_id.as_deref())
            .bind(started).bind(r.at).bind(if stop { Some(r.at) } else { None }).bind(r.session_time_s)
            .bind(r.input_octets).bind(r.output_octets).bind(r.terminate_cause.as_deref())
            .execute(&mut *conn).await?;
                Ok(())
    }

    /// Accounting-On/Off: closes every open session of the NAS.
    pub(super) async fn acct_close_nas(&self, t: TenantId, nas: NasId, at: DateTime<Utc>, cause: &str) -> Result<u64> {
        let mut tx = self.write(t).await?;
        // Only sessions that started before the On/Off: replaying it later never closes newer ones.
        let res = sqlx::query("UPDATE radius_sessions SET stopped_at = $3, updated_at = $3, terminate_cause = $4 WHERE tenant_id = $1 AND nas_id = $2 AND stopped_at IS NULL AND started_at <= $3")
            .bind(t.0).bind(nas.0).bind(at).bind(cause).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(res.rows_affected())
    }

    pub(super) async fn close_stale(&self, t: TenantId, before: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.write(t).await?;
        // The session ended, as far as we know, at its last update.
        let res = sqlx::query("UPDATE radius_sessions SET stopped_at = updated_at, terminate_cause = 'Stale-Session' WHERE tenant_id = $1 AND stopped_at IS NULL AND updated_at < $2")
            .bind(t.0).bind(before).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(res.rows_affected())
    }

    pub(super) async fn open_sessions_of(&self, t: TenantId, username: &str) -> Result<i64> {
        let mut tx = self.read(t).await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM radius_sessions WHERE tenant_id = $1 AND username = $2 AND stopped_at IS NULL")
            .bind(t.0).bind(username).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(n)
    }

    pub(super) async fn usage_since(&self, t: TenantId, username: &str, since: Option<DateTime<Utc>>) -> Result<(i64, i64)> {
        let mut tx = self.read(t).await?;
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(input_octets), 0) AS BIGINT) AS i, CAST(COALESCE(SUM(output_octets), 0) AS BIGINT) AS o
             FROM radius_sessions WHERE tenant_id = $1 AND username = $2 AND ($3 IS NULL OR updated_at >= $3)",
        )
        .bind(t.0).bind(username).bind(since).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok((row.try_get("i")?, row.try_get("o")?))
    }

    pub(super) async fn ledger_seed(&self, t: TenantId, username: &str, since: Option<DateTime<Utc>>) -> Result<crate::aaa::ledger::Seed> {
        let mut tx = self.read(t).await?;
        let rows = sqlx::query("SELECT nas_id, acct_session_id, input_octets, output_octets FROM radius_sessions WHERE tenant_id = $1 AND username = $2 AND stopped_at IS NULL")
            .bind(t.0).bind(username).fetch_all(&mut *tx).await?;
        let closed = sqlx::query(
            "SELECT CAST(COALESCE(SUM(input_octets), 0) AS BIGINT) AS i, CAST(COALESCE(SUM(output_octets), 0) AS BIGINT) AS o
             FROM radius_sessions WHERE tenant_id = $1 AND username = $2 AND stopped_at IS NOT NULL AND ($3 IS NULL OR updated_at >= $3)",
        )
        .bind(t.0).bind(username).bind(since).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        let mut open = Vec::with_capacity(rows.len());
        for r in &rows {
            open.push((NasId(r.try_get("nas_id")?), r.try_get("acct_session_id")?, r.try_get("input_octets")?, r.try_get("output_octets")?));
        }
        Ok(crate::aaa::ledger::Seed { open, closed: (closed.try_get("i")?, closed.try_get("o")?) })
    }

    pub(super) async fn nas_mark_ma_seen(&self, t: TenantId, nas: NasId, method: &str) -> Result<()> {
        let sql = match method {
            "pap" => "UPDATE nas_devices SET ma_seen_pap = TRUE WHERE tenant_id = $1 AND id = $2",
            "chap" => "UPDATE nas_devices SET ma_seen_chap = TRUE WHERE tenant_id = $1 AND id = $2",
            _ => "UPDATE nas_devices SET ma_seen_mschap = TRUE WHERE tenant_id = $1 AND id = $2",
        };
        let mut tx = self.write(t).await?;
        sqlx::query(sql).bind(t.0).bind(nas.0).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn nas_touch(&self, t: TenantId, nas: NasId, at: DateTime<Utc>) -> Result<()> {
        let mut tx = self.write(t).await?;
        sqlx::query("UPDATE nas_devices SET radius_last_seen = $3 WHERE tenant_id = $1 AND id = $2").bind(t.0).bind(nas.0).bind(at).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn auth_log_list(&self, t: TenantId, limit: i64) -> Result<Vec<AuthLogEntry>> {
        let mut tx = self.read(t).await?;
        let rows = sqlx::query("SELECT at, nas_id, username, method, outcome, reason, calling_station_id FROM auth_log WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2")
            .bind(t.0).bind(limit).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(AuthLogEntry {
                    at: r.try_get("at")?,
                    nas_id: r.try_get::<Option<Uuid>, _>("nas_id")?.map(NasId),
                    username: r.try_get("username")?,
                    method: r.try_get("method")?,
                    outcome: r.try_get("outcome")?,
                    reason: r.try_get("reason")?,
                    calling_station_id: r.try_get("calling_station_id")?,
                })
            })
            .collect()
    }

    pub(super) async fn auth_outcomes_since(&self, t: TenantId, since: DateTime<Utc>, limit: i64) -> Result<Vec<(DateTime<Utc>, String)>> {
        let mut tx = self.read(t).await?;
        let rows = sqlx::query("SELECT at, outcome FROM auth_log WHERE tenant_id = $1 AND at >= $2 ORDER BY at DESC LIMIT $3")
            .bind(t.0).bind(since).bind(limit).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(|r| Ok((r.try_get("at")?, r.try_get("outcome")?))).collect()
    }

    pub(super) async fn sessions_since(&self, t: TenantId, since: DateTime<Utc>, limit: i64) -> Result<Vec<Session>> {
        let mut tx = self.read(t).await?;
        let rows = sqlx::query(q(format!("SELECT {SESSION_COLS} FROM radius_sessions WHERE tenant_id = $1 AND (stopped_at IS NULL OR stopped_at >= $2) ORDER BY started_at DESC LIMIT $3")))
            .bind(t.0).bind(since).bind(limit).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(session_row).collect()
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn audit_insert(&self, t: TenantId, actor: &str, action: &str, target: Option<&str>, details: Option<&str>, client_ip: Option<&str>, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.write(t).await?;
        sqlx::query("INSERT INTO audit_log (tenant_id, at, actor, action, target, details, client_ip) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(t.0).bind(now).bind(actor).bind(action).bind(target).bind(details).bind(client_ip)
            .execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn audit_list(&self, t: TenantId, limit: i64) -> Result<Vec<AuditEntry>> {
        let mut tx = self.read(t).await?;
        let rows = sqlx::query("SELECT at, actor, action, target, details, client_ip FROM audit_log WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2")
            .bind(t.0).bind(limit).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| Ok(AuditEntry { at: r.try_get("at")?, actor: r.try_get("actor")?, action: r.try_get("action")?, target: r.try_get("target")?, details: r.try_get("details")?, client_ip: r.try_get("client_ip")? }))
            .collect()
    }

    // ---- system scope: the named cross-tenant reads ----

    pub(super) async fn sys_tenant_by_slug(&self, slug: &Slug) -> Result<Option<Tenant>> {
        let row = sqlx::query(q(format!("SELECT {TENANT_COLS} FROM tenants t WHERE t.slug = $1"))).bind(slug.as_str()).fetch_optional(self.sys()).await?;
        row.as_ref().map(tenant_row).transpose()
    }

    pub(super) async fn sys_tenant_by_id(&self, id: TenantId) -> Result<Option<Tenant>> {
        let row = sqlx::query(q(format!("SELECT {TENANT_COLS} FROM tenants t WHERE t.id = $1"))).bind(id.0).fetch_optional(self.sys()).await?;
        row.as_ref().map(tenant_row).transpose()
    }

    pub(super) async fn sys_tenants_summary(&self) -> Result<Vec<TenantSummary>> {
        let rows = sqlx::query(q(format!(
            "SELECT {TENANT_COLS},
                (SELECT COUNT(s.id) FROM subscribers s WHERE s.tenant_id = t.id) AS n_subscribers,
                (SELECT COUNT(r.id) FROM radius_sessions r WHERE r.tenant_id = t.id AND r.stopped_at IS NULL) AS n_online,
                (SELECT COUNT(n.id) FROM nas_devices n WHERE n.tenant_id = t.id) AS n_nas
             FROM tenants t ORDER BY t.slug"
        )))
        .fetch_all(self.sys()).await?;
        rows.iter()
            .map(|r| Ok(TenantSummary { tenant: tenant_row(r)?, subscribers: r.try_get("n_subscribers")?, online: r.try_get("n_online")?, nas: r.try_get("n_nas")? }))
            .collect()
    }

    pub(super) async fn sys_live_tenants(&self) -> Result<Vec<(Slug, Option<String>)>> {
        // The tenant's own relay node, else the node that holds its (first) peer.
        let rows = sqlx::query("SELECT t.slug, COALESCE(t.relay_node, (SELECT p.relay_node FROM wg_peers p WHERE p.tenant_id = t.id AND p.relay_node IS NOT NULL ORDER BY p.created_at LIMIT 1)) AS relay_node
                                FROM tenants t WHERE t.status IN ('active', 'suspended') ORDER BY t.slug").fetch_all(self.sys()).await?;
        rows.iter().map(|r| Ok((parse_slug(r.try_get("slug")?)?, r.try_get("relay_node")?))).collect()
    }

    pub(super) async fn sys_relay_endpoints(&self) -> Result<Vec<(String, Option<String>)>> {
        let rows = sqlx::query("SELECT name, endpoint FROM relay_nodes ORDER BY name").fetch_all(self.sys()).await?;
        rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("endpoint")?))).collect()
    }

    pub(super) async fn sys_nas_by_source(&self, ip: &str) -> Result<Option<DirectNas>> {
        let row = sqlx::query("SELECT n.id, n.tenant_id, t.status FROM nas_devices n JOIN tenants t ON t.id = n.tenant_id WHERE n.ip = $1")
            .bind(ip).fetch_optional(self.sys()).await?;
        row.map(|r| Ok(DirectNas { tenant_id: TenantId(r.try_get("tenant_id")?), tenant_status: parse_enum(r.try_get("status")?)?, nas_id: NasId(r.try_get("id")?) }))
            .transpose()
    }

    pub(super) async fn sys_relay_peers(&self) -> Result<Vec<RelayPeer>> {
        let rows = sqlx::query("SELECT p.id, p.tenant_id, p.nas_id, p.tunnel_address, p.public_key, p.endpoint, p.handshake_tai64, p.relay_node, t.status, t.suspended_at FROM wg_peers p JOIN tenants t ON t.id = p.tenant_id ORDER BY p.created_at")
            .fetch_all(self.sys()).await?;
        rows.iter()
            .map(|r| {
                Ok(RelayPeer {
                    identity: peer_identity_row(r)?,
                    public_key: r.try_get("public_key")?,
                    endpoint: r.try_get("endpoint")?,
                    handshake_tai64: r.try_get("handshake_tai64")?,
                    relay_node: r.try_get("relay_node")?,
                })
            })
            .collect()
    }

    pub(super) async fn sys_peer_by_key(&self, key: &str) -> Result<Option<PeerIdentity>> {
        let row = sqlx::query("SELECT p.id, p.tenant_id, p.nas_id, p.tunnel_address, t.status, t.suspended_at FROM wg_peers p JOIN tenants t ON t.id = p.tenant_id WHERE p.public_key = $1")
            .bind(key).fetch_optional(self.sys()).await?;
        row.as_ref().map(peer_identity_row).transpose()
    }

    pub(super) async fn sys_tenants_to_purge(&self, before: DateTime<Utc>) -> Result<Vec<TenantId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM tenants WHERE status = 'deleted' AND deleted_at <= $1").bind(before).fetch_all(self.sys()).await?;
        Ok(ids.into_iter().map(TenantId).collect())
    }

    pub(super) async fn sys_tenants_with_stale_sessions(&self, before: DateTime<Utc>) -> Result<Vec<TenantId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM radius_sessions WHERE stopped_at IS NULL AND updated_at < $1")
            .bind(before).fetch_all(self.sys()).await?;
        Ok(ids.into_iter().map(TenantId).collect())
    }

    pub(super) async fn sys_expired_online(&self, now: DateTime<Utc>) -> Result<Vec<(TenantId, String)>> {
        let rows = sqlx::query(
            "SELECT DISTINCT r.tenant_id, r.username FROM radius_sessions r JOIN subscribers s ON s.tenant_id = r.tenant_id AND s.id = r.subscriber_id
             WHERE r.stopped_at IS NULL AND s.expires_at IS NOT NULL AND s.expires_at <= $1",
        )
        .bind(now).fetch_all(self.sys()).await?;
        rows.iter().map(|r| Ok((TenantId(r.try_get("tenant_id")?), r.try_get("username")?))).collect()
    }

    pub(super) async fn sys_relay_nodes(&self) -> Result<Vec<RelayNode>> {
        let rows = sqlx::query("SELECT name, public_key, endpoint, last_seen, stats FROM relay_nodes ORDER BY name").fetch_all(self.sys()).await?;
        rows.iter()
            .map(|r| {
                let stats: Option<String> = r.try_get("stats")?;
                Ok(RelayNode {
                    name: r.try_get("name")?,
                    public_key: r.try_get("public_key")?,
                    endpoint: r.try_get("endpoint")?,
                    last_seen: r.try_get("last_seen")?,
                    // A report this version cannot read is shown as none rather than failing the page.
                    stats: stats.and_then(|s| serde_json::from_str(&s).ok()),
                })
            })
            .collect()
    }

    pub(super) async fn sys_relay_peer_status(&self) -> Result<Vec<RelayPeerStatus>> {
        let rows = sqlx::query("SELECT t.slug, n.name, p.tunnel_address, p.relay_node, p.endpoint, p.last_handshake FROM wg_peers p JOIN tenants t ON t.id = p.tenant_id JOIN nas_devices n ON n.id = p.nas_id ORDER BY t.slug, n.name")
            .fetch_all(self.sys()).await?;
        rows.iter()
            .map(|r| {
                Ok(RelayPeerStatus {
                    tenant: r.try_get("slug")?,
                    nas: r.try_get("name")?,
                    tunnel_address: r.try_get("tunnel_address")?,
                    relay_node: r.try_get("relay_node")?,
                    endpoint: r.try_get("endpoint")?,
                    last_handshake: r.try_get("last_handshake")?,
                })
            })
            .collect()
    }

    pub(super) async fn sys_routeros_checked_since(&self, since: DateTime<Utc>) -> Result<(i64, i64)> {
        let r = sqlx::query("SELECT COUNT(DISTINCT tenant_id) AS tenants, COUNT(*) AS nas FROM nas_devices WHERE api_checked_at >= $1")
            .bind(since).fetch_one(self.sys()).await?;
        Ok((r.try_get("tenants")?, r.try_get("nas")?))
    }

    pub(super) async fn sys_zone_changed_at(&self) -> Result<Option<DateTime<Utc>>> {
        let at = sqlx::query_scalar("SELECT at FROM events WHERE kind IN ('tenant.changed', 'peer.changed', 'dns.changed') ORDER BY id DESC LIMIT 1")
            .fetch_optional(self.sys()).await?;
        Ok(at)
    }

    pub(super) async fn sys_dns_records(&self) -> Result<Vec<DnsRecord>> {
        let rows = sqlx::query("SELECT id, tenant_id, name, rtype, value, ttl, created_at FROM dns_records ORDER BY name, rtype, created_at").fetch_all(self.sys()).await?;
        rows.iter().map(dns_row).collect()
    }

    // ---- platform tables ----

    pub(super) async fn operator_insert(&self, id: OperatorId, email: &Email, hash: &str, totp: &str, now: DateTime<Utc>) -> Result<Operator> {
        sqlx::query("INSERT INTO operators (id, email, password_hash, role, totp_secret, totp_enrolled, created_at) VALUES ($1, $2, $3, 'admin', $4, $5, $6)")
            .bind(id.0).bind(email.as_str()).bind(hash).bind(totp).bind(false).bind(now)
            .execute(self.app()).await?;
        Ok(Operator { id, email: email.clone(), role: "admin".into(), totp_enrolled: false, created_at: now })
    }

    pub(super) async fn operator_by_email(&self, email: &Email) -> Result<Option<(Operator, String, String)>> {
        let row = sqlx::query("SELECT id, email, role, totp_enrolled, created_at, password_hash, totp_secret FROM operators WHERE email = $1")
            .bind(email.as_str()).fetch_optional(self.app()).await?;
        row.map(|r| Ok((operator_row(&r)?, r.try_get("password_hash")?, r.try_get::<Option<String>, _>("totp_secret")?.unwrap_or_default()))).transpose()
    }

    pub(super) async fn operators_list(&self) -> Result<Vec<Operator>> {
        let rows = sqlx::query("SELECT id, email, role, totp_enrolled, created_at FROM operators ORDER BY email").fetch_all(self.app()).await?;
        rows.iter().map(operator_row).collect()
    }

    pub(super) async fn operator_audit_insert(&self, actor: &str, action: &str, target: Option<&str>, details: Option<&str>, client_ip: Option<&str>, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("INSERT INTO operator_audit_log (at, actor, action, target, details, client_ip) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(now).bind(actor).bind(action).bind(target).bind(details).bind(client_ip)
            .execute(self.app()).await?;
        Ok(())
    }

    pub(super) async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query("SELECT id, at, tenant_id, kind, correlation_id, payload FROM events WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after).bind(limit).fetch_all(self.app()).await?;
        rows.iter()
            .map(|r| {
                Ok(StoredEvent {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    tenant_id: r.try_get::<Option<Uuid>, _>("tenant_id")?.map(TenantId),
                    kind: r.try_get("kind")?,
                    correlation_id: r.try_get("correlation_id")?,
                    payload: r.try_get("payload")?,
                })
            })
            .collect()
    }

    pub(super) async fn events_last_id(&self) -> Result<i64> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events").fetch_one(self.app()).await?;
        Ok(id.unwrap_or(0))
    }

    pub(super) async fn events_prune(&self, before: DateTime<Utc>) -> Result<u64> {
        let res = sqlx::query("DELETE FROM events WHERE at < $1").bind(before).execute(self.app()).await?;
        Ok(res.rows_affected())
    }

    pub(super) async fn dns_insert(&self, r: &DnsRecord) -> Result<()> {
        sqlx::query("INSERT INTO dns_records (id, tenant_id, name, rtype, value, ttl, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(r.id.0).bind(r.tenant_id.map(|t| t.0)).bind(&r.name).bind(&r.rtype).bind(&r.value).bind(r.ttl).bind(r.created_at)
            .execute(self.app()).await?;
        Ok(())
    }

    pub(super) async fn dns_delete(&self, name: &str, rtype: &str, value: Option<&str>) -> Result<u64> {
        let res = sqlx::query("DELETE FROM dns_records WHERE name = $1 AND rtype = $2 AND ($3 IS NULL OR value = $3)")
            .bind(name).bind(rtype).bind(value).execute(self.app()).await?;
        Ok(res.rows_affected())
    }

    pub(super) async fn relay_upsert(&self, name: &str, public: &str, sealed: &str, endpoint: Option<&str>, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("INSERT INTO relay_nodes (name, public_key, private_key, endpoint, last_seen, created_at) VALUES ($1, $2, $3, $4, $5, $5)
                     ON CONFLICT (name) DO UPDATE SET endpoint = excluded.endpoint, last_seen = excluded.last_seen")
            .bind(name).bind(public).bind(sealed).bind(endpoint).bind(now)
            .execute(self.app()).await?;
        Ok(())
    }

    pub(super) async fn relay_set_endpoint(&self, name: &str, endpoint: Option<&str>, now: DateTime<Utc>) -> Result<bool> {
        let res = sqlx::query("UPDATE relay_nodes SET endpoint = $2, last_seen = $3 WHERE name = $1 AND COALESCE(endpoint, '') <> COALESCE($2, '')")
            .bind(name).bind(endpoint).bind(now).execute(self.app()).await?;
        Ok(res.rows_affected() > 0)
    }

    pub(super) async fn relay_report(&self, name: &str, stats: &str, now: DateTime<Utc>) -> Result<bool> {
        let res = sqlx::query("UPDATE relay_nodes SET stats = $2, last_seen = $3 WHERE name = $1")
            .bind(name).bind(stats).bind(now).execute(self.app()).await?;
        Ok(res.rows_affected() > 0)
    }

    pub(super) async fn relay_keys(&self, name: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT public_key, private_key FROM relay_nodes WHERE name = $1").bind(name).fetch_optional(self.app()).await?;
        row.map(|r| Ok((r.try_get("public_key")?, r.try_get("private_key")?))).transpose()
    }
}

// ---- ACME: accounts, the zone's certificate, leases ----

const CERT_COLS: &str = "name, names, chain_pem, not_before, not_after, issued_at, last_attempt_at, last_error, updated_at";

fn cert_row(r: &DbRow) -> Result<StoredCertificate> {
    let names: String = r.try_get("names")?;
    Ok(StoredCertificate {
        name: r.try_get("name")?,
        names: names.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        chain_pem: r.try_get("chain_pem")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        issued_at: r.try_get("issued_at")?,
        last_attempt_at: r.try_get("last_attempt_at")?,
        last_error: r.try_get("last_error")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Db {
    pub(super) async fn acme_account(&self, directory: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT credentials FROM acme_accounts WHERE directory = $1").bind(directory).fetch_optional(self.app()).await?)
    }

    pub(super) async fn acme_account_upsert(&self, directory: &str, contact: Option<&str>, sealed: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("INSERT INTO acme_accounts (directory, contact, credentials, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (directory) DO UPDATE SET contact = excluded.contact, credentials = excluded.credentials")
            .bind(directory).bind(contact).bind(sealed).bind(now).execute(self.app()).await?;
        Ok(())
    }

    pub(super) async fn cert_get(&self, name: &str) -> Result<Option<(StoredCertificate, Option<String>)>> {
        let row = sqlx::query(q(format!("SELECT {CERT_COLS}, private_key FROM certificates WHERE name = $1"))).bind(name).fetch_optional(self.app()).await?;
        row.map(|r| Ok((cert_row(&r)?, r.try_get("private_key")?))).transpose()
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn cert_store(&self, name: &str, names: &str, chain: &str, sealed_key: &str, not_before: DateTime<Utc>, not_after: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("INSERT INTO certificates (name, names, chain_pem, private_key, not_before, not_after, issued_at, last_attempt_at, last_error, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7, NULL, $7)
                     ON CONFLICT (name) DO UPDATE SET names = excluded.names, chain_pem = excluded.chain_pem, private_key = excluded.private_key,
                        not_before = excluded.not_before, not_after = excluded.not_after, issued_at = excluded.issued_at,
                        last_attempt_at = excluded.last_attempt_at, last_error = NULL, updated_at = excluded.updated_at")
            .bind(name).bind(names).bind(chain).bind(sealed_key).bind(not_before).bind(not_after).bind(now)
            .execute(self.app()).await?;
        Ok(())
    }

    pub(super) async fn cert_error(&self, name: &str, names: &str, error: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("INSERT INTO certificates (name, names, last_attempt_at, last_error, updated_at) VALUES ($1, $2, $3, $4, $3)
                     ON CONFLICT (name) DO UPDATE SET last_attempt_at = excluded.last_attempt_at, last_error = excluded.last_error, updated_at = excluded.updated_at")
            .bind(name).bind(names).bind(now).bind(error)
            .execute(self.app()).await?;
        Ok(())
    }

    pub(super) async fn lease_take(&self, name: &str, holder: &str, now_ms: i64, expires_ms: i64) -> Result<bool> {
        let res = sqlx::query("INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
                     WHERE leases.holder = excluded.holder OR leases.expires_ms < $4")
            .bind(name).bind(holder).bind(expires_ms).bind(now_ms)
            .execute(self.app()).await?;
        Ok(res.rows_affected() == 1)
    }

    pub(super) async fn lease_holder(&self, name: &str, now_ms: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT holder FROM leases WHERE name = $1 AND expires_ms >= $2").bind(name).bind(now_ms).fetch_optional(self.app()).await?)
    }

    pub(super) async fn lease_release(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2").bind(name).bind(holder).execute(self.app()).await?;
        Ok(())
    }
}

// ---- API auth: signing keys, refresh families, revoked access tokens, API tokens ----

impl Db {
    pub(super) async fn signing_keys(&self, purpose: &str) -> Result<Vec<crate::store::SigningKeyRow>> {
        let rows = sqlx::query("SELECT kid, secret, created_at, retired_at FROM signing_keys WHERE purpose = $1 ORDER BY created_at")
            .bind(purpose).fetch_all(self.app()).await?;
        rows.iter()
            .map(|r| Ok(crate::store::SigningKeyRow { kid: r.try_get("kid")?, sealed: r.try_get("secret")?, created_at: r.try_get("created_at")?, retired_at: r.try_get("retired_at")? }))
            .collect()
    }

    pub(super) async fn signing_key_insert(&self, kid: &str, purpose: &str, sealed: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("INSERT INTO signing_keys (kid, purpose, secret, created_at) VALUES ($1, $2, $3, $4)")
            .bind(kid).bind(purpose).bind(sealed).bind(now).execute(self.app()).await?;
        Ok(())
    }

    pub(super) async fn signing_key_retire(&self, kid: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL")
            .bind(kid).bind(now).execute(self.app()).await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn refresh_insert(&self, t: TenantId, id: Uuid, user: UserId, hash: &str, now: DateTime<Utc>, expires: DateTime<Utc>) -> Result<()> {
        let mut tx = self.write(t).await?;
        sqlx::query("INSERT INTO refresh_families (id, tenant_id, user_id, current_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id).bind(t.0).bind(user.0).bind(hash).bind(now).bind(expires).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn refresh_rotate(&self, t: TenantId, id: Uuid, presented: &str, new_hash: &str, now: DateTime<Utc>) -> Result<crate::store::Rotation<UserId>> {
        let mut tx = self.write(t).await?;
        let row = sqlx::query("SELECT user_id, current_hash, expires_at, revoked_at FROM refresh_families WHERE tenant_id = $1 AND id = $2")
            .bind(t.0).bind(id).fetch_optional(&mut *tx).await?;
        let out = rotate_row(row.as_ref(), presented, now)?;
        let out = match out {
            crate::store::Rotation::Rotated(u) => {
                // Compare-and-set: of two concurrent uses of one token only one rotates.
                let res = sqlx::query("UPDATE refresh_families SET current_hash = $3 WHERE tenant_id = $1 AND id = $2 AND current_hash = $4 AND revoked_at IS NULL")
                    .bind(t.0).bind(id).bind(new_hash).bind(presented).execute(&mut *tx).await?;
                if res.rows_affected() == 1 { crate::store::Rotation::Rotated(UserId(u)) } else { crate::store::Rotation::Reused }
            }
            crate::store::Rotation::Reused => crate::store::Rotation::Reused,
            crate::store::Rotation::Revoked => crate::store::Rotation::Revoked,
            crate::store::Rotation::Expired => crate::store::Rotation::Expired,
            crate::store::Rotation::Unknown => crate::store::Rotation::Unknown,
        };
        if matches!(out, crate::store::Rotation::Reused) {
            sqlx::query("UPDATE refresh_families SET revoked_at = $3, revoke_reason = 'reuse' WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL")
                .bind(t.0).bind(id).bind(now).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    pub(super) async fn refresh_revoke(&self, t: TenantId, id: Uuid, reason: &str, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.write(t).await?;
        let res = sqlx::query("UPDATE refresh_families SET revoked_at = $3, revoke_reason = $4 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL")
            .bind(t.0).bind(id).bind(now).bind(reason).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }

    pub(super) async fn refresh_is_live(&self, t: TenantId, id: Uuid, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.read(t).await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM refresh_families WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL AND expires_at > $3")
            .bind(t.0).bind(id).bind(now).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    pub(super) async fn op_refresh_insert(&self, id: Uuid, op: OperatorId, hash: &str, now: DateTime<Utc>, expires: DateTime<Utc>) -> Result<()> {
        sqlx::query("INSERT INTO operator_refresh_families (id, operator_id, current_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id).bind(op.0).bind(hash).bind(now).bind(expires).execute(self.app()).await?;
        Ok(())
    }

    pub(super) async fn op_refresh_rotate(&self, id: Uuid, presented: &str, new_hash: &str, now: DateTime<Utc>) -> Result<crate::store::Rotation<OperatorId>> {
        let mut tx = self.app().begin().await?;
        let row = sqlx::query("SELECT operator_id AS user_id, current_hash, expires_at, revoked_at FROM operator_refresh_families WHERE id = $1")
            .bind(id).fetch_optional(&mut *tx).await?;
        let out = match rotate_row(row.as_ref(), presented, now)? {
            crate::store::Rotation::Rotated(u) => {
                let res = sqlx::query("UPDATE operator_refresh_families SET current_hash = $2 WHERE id = $1 AND current_hash = $3 AND revoked_at IS NULL")
                    .bind(id).bind(new_hash).bind(presented).execute(&mut *tx).await?;
                if res.rows_affected() == 1 { crate::store::Rotation::Rotated(OperatorId(u)) } else { crate::store::Rotation::Reused }
            }
            crate::store::Rotation::Reused => crate::store::Rotation::Reused,
            crate::store::Rotation::Revoked => crate::store::Rotation::Revoked,
            crate::store::Rotation::Expired => crate::store::Rotation::Expired,
            crate::store::Rotation::Unknown => crate::store::Rotation::Unknown,
        };
        if matches!(out, crate::store::Rotation::Reused) {
            sqlx::query("UPDATE operator_refresh_families SET revoked_at = $2, revoke_reason = 'reuse' WHERE id = $1 AND revoked_at IS NULL")
                .bind(id).bind(now).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    pub(super) async fn op_refresh_revoke(&self, id: Uuid, reason: &str, now: DateTime<Utc>) -> Result<bool> {
        let res = sqlx::query("UPDATE operator_refresh_families SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id).bind(now).bind(reason).execute(self.app()).await?;
        Ok(res.rows_affected() > 0)
    }

    pub(super) async fn op_refresh_is_live(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM operator_refresh_families WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2")
            .bind(id).bind(now).fetch_one(self.app()).await?;
        Ok(n > 0)
    }

    pub(super) async fn jti_revoke(&self, jti: &str, expires: DateTime<Utc>) -> Result<()> {
        sqlx::query("INSERT INTO token_revocations (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING")
            .bind(jti).bind(expires).execute(self.app()).await?;
        Ok(())
    }

    /// The revocations of tokens that have not expired yet.
    pub(super) async fn jti_live(&self, now: DateTime<Utc>) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows = sqlx::query("SELECT jti, expires_at FROM token_revocations WHERE expires_at > $1").bind(now).fetch_all(self.app()).await?;
        rows.iter().map(|r| Ok((r.try_get("jti")?, r.try_get("expires_at")?))).collect()
    }

    pub(super) async fn jti_prune(&self, now: DateTime<Utc>) -> Result<u64> {
        let res = sqlx::query("DELETE FROM token_revocations WHERE expires_at < $1").bind(now).execute(self.app()).await?;
        let cut = sqlx::query("DELETE FROM token_cutoffs WHERE expires_at < $1").bind(now).execute(self.app()).await?;
        Ok(res.rows_affected() + cut.rows_affected())
    }

    /// The per-user cutoffs that can still refuse a live token.
    pub(super) async fn cutoffs_live(&self, now: DateTime<Utc>) -> Result<Vec<(Uuid, Cutoff)>> {
        let rows = sqlx::query("SELECT subject, not_before, expires_at FROM token_cutoffs WHERE expires_at > $1").bind(now).fetch_all(self.app()).await?;
        rows.iter().map(|r| Ok((r.try_get("subject")?, Cutoff { not_before: r.try_get("not_before")?, expires: r.try_get("expires_at")? }))).collect()
    }

    pub(super) async fn operator_by_id(&self, id: OperatorId) -> Result<Option<Operator>> {
        let row = sqlx::query("SELECT id, email, role, totp_enrolled, created_at FROM operators WHERE id = $1")
            .bind(id.0).fetch_optional(self.app()).await?;
        row.as_ref().map(operator_row).transpose()
    }

    pub(super) async fn operator_set_enrolled(&self, id: OperatorId) -> Result<()> {
        sqlx::query("UPDATE operators SET totp_enrolled = $2 WHERE id = $1").bind(id.0).bind(true).execute(self.app()).await?;
        Ok(())
    }

    pub(super) async fn user_by_id(&self, t: TenantId, id: UserId) -> Result<Option<TenantUser>> {
        let mut tx = self.read(t).await?;
        let row = sqlx::query("SELECT id, tenant_id, email, role, disabled, email_verified, created_at FROM tenant_users WHERE tenant_id = $1 AND id = $2")
            .bind(t.0).bind(id.0).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        row.as_ref().map(user_row).transpose()
    }

    pub(super) async fn session_by_id(&self, t: TenantId, id: SessionId) -> Result<Option<Session>> {
        let mut tx = self.read(t).await?;
        let row = sqlx::query(q(format!("SELECT {SESSION_COLS} FROM radius_sessions WHERE tenant_id = $1 AND id = $2")))
            .bind(t.0).bind(id.0).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        row.as_ref().map(session_row).transpose()
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn api_token_insert(&self, t: TenantId, id: Uuid, name: &str, hash: &str, scope: &str, by: &str, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.write(t).await?;
        sqlx::query("INSERT INTO api_tokens (id, tenant_id, name, token_hash, scope, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(id).bind(t.0).bind(name).bind(hash).bind(scope).bind(by).bind(now).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn api_token_by_hash(&self, t: TenantId, hash: &str) -> Result<Option<crate::store::ApiTokenRow>> {
        let mut tx = self.read(t).await?;
        let row = sqlx::query("SELECT id, name, scope, created_by, created_at, last_used_at, revoked_at FROM api_tokens WHERE tenant_id = $1 AND token_hash = $2")
            .bind(t.0).bind(hash).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        row.as_ref().map(api_token_row).transpose()
    }

    pub(super) async fn api_tokens_list(&self, t: TenantId) -> Result<Vec<crate::store::ApiTokenRow>> {
        let mut tx = self.read(t).await?;
        let rows = sqlx::query("SELECT id, name, scope, created_by, created_at, last_used_at, revoked_at FROM api_tokens WHERE tenant_id = $1 ORDER BY created_at")
            .bind(t.0).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(api_token_row).collect()
    }

    pub(super) async fn api_token_revoke(&self, t: TenantId, id: Uuid, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.write(t).await?;
        let res = sqlx::query("UPDATE api_tokens SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL")
            .bind(t.0).bind(id).bind(now).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }
}

fn api_token_row(r: &DbRow) -> Result<crate::store::ApiTokenRow> {
    Ok(crate::store::ApiTokenRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        scope: r.try_get("scope")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

/// What a refresh family row says about a presented token (before the compare-and-set).
fn rotate_row(row: Option<&DbRow>, presented: &str, now: DateTime<Utc>) -> Result<crate::store::Rotation<Uuid>> {
    let Some(r) = row else { return Ok(crate::store::Rotation::Unknown) };
    let revoked: Option<DateTime<Utc>> = r.try_get("revoked_at")?;
    let expires: DateTime<Utc> = r.try_get("expires_at")?;
    let current: String = r.try_get("current_hash")?;
    Ok(if revoked.is_some() {
        crate::store::Rotation::Revoked
    } else if expires <= now {
        crate::store::Rotation::Expired
    } else if current != presented {
        crate::store::Rotation::Reused
    } else {
        crate::store::Rotation::Rotated(r.try_get("user_id")?)
    })
}

// ---- API gaps (issue 6): plan/NAS/user changes, usage buckets, sorted listings, e-mail ----

const USER_COLS: &str = "id, tenant_id, email, role, disabled, email_verified, created_at";

impl Db {
    pub(super) async fn plan_update(&self, t: TenantId, id: PlanId, p: &NewPlan) -> Result<Option<Plan>> {
        let action = if p.quota_bytes.is_some() && p.fup_download_kbps.is_none() { QuotaAction::Reject } else { QuotaAction::Fup };
        let mut tx = self.write(t).await?;
        let res = sqlx::query(
            "UPDATE service_plans SET name = $3, download_kbps = $4, upload_kbps = $5, burst_download_kbps = $6, burst_upload_kbps = $7,
                burst_threshold_kbps = $8, burst_time_s = $9, quota_bytes = $10, quota_action = $11, fup_download_kbps = $12,
                fup_upload_kbps = $13, validity_days = $14, price_cents = $15, ip_pool = $16, ipv6_pool = $17, delegated_ipv6_pool = $18,
                session_timeout_s = $19, sim_use = $20
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(t.0).bind(id.0).bind(p.name.trim()).bind(p.download_kbps).bind(p.upload_kbps).bind(p.burst_download_kbps).bind(p.burst_upload_kbps)
        .bind(p.burst_threshold_kbps).bind(p.burst_time_s).bind(p.quota_bytes).bind(action.as_str()).bind(p.fup_download_kbps).bind(p.fup_upload_kbps)
        .bind(p.validity_days).bind(p.price_cents).bind(p.ip_pool.as_deref()).bind(p.ipv6_pool.as_deref()).bind(p.delegated_ipv6_pool.as_deref())
        .bind(p.session_timeout_s).bind(p.sim_use.unwrap_or(1))
        .execute(&mut *tx).await?;
        if res.rows_affected() == 0 {
            tx.commit().await?;
            return Ok(None);
        }
        let row = sqlx::query("SELECT * FROM service_plans WHERE tenant_id = $1 AND id = $2").bind(t.0).bind(id.0).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(plan_row(&row)?))
    }

    /// Deletes a plan unless subscribers use it: `Err(Conflict)` naming how many do.
    pub(super) async fn plan_set_default(&self, t: TenantId, id: PlanId) -> Result<bool> {
        let mut tx = self.write(t).await?;
        // One statement flips every plan of the tenant, so there is never a moment with two defaults.
        let res = sqlx::query("UPDATE service_plans SET is_default = (id = $2) WHERE tenant_id = $1 AND EXISTS (SELECT 1 FROM service_plans WHERE tenant_id = $1 AND id = $2)")
            .bind(t.0).bind(id.0).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }

    pub(super) async fn plan_delete(&self, t: TenantId, id: PlanId) -> Result<bool> {
        let mut tx = self.write(t).await?;
        let row = sqlx::query("SELECT name FROM service_plans WHERE tenant_id = $1 AND id = $2").bind(t.0).bind(id.0).fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(false);
        };
        let name: String = row.try_get("name")?;
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subscribers WHERE tenant_id = $1 AND plan_id = $2").bind(t.0).bind(id.0).fetch_one(&mut *tx).await?;
        if users > 0 {
            tx.rollback().await?;
            return Err(StoreError::Conflict(format!(
                "plan {name:?} is used by {users} subscriber(s); move them to another plan first (PATCH /api/v1/subscribers/{{id}} with plan_id)"
            )));
        }
        sqlx::query("DELETE FROM service_plans WHERE tenant_id = $1 AND id = $2").bind(t.0).bind(id.0).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn nas_update(&self, t: TenantId, id: NasId, p: &NasPatch, secret: Option<&str>, api_password: Option<Option<&str>>) -> Result<Option<Nas>> {
        let mut tx = self.write(t).await?;
        let res = sqlx::query(
            "UPDATE nas_devices SET
                name = COALESCE($3, name),
                vendor = COALESCE($4, vendor),
                ip = COALESCE($5, ip),
                secret = COALESCE($6, secret),
                message_auth = COALESCE($7, message_auth),
                coa_port = COALESCE($8, coa_port),
                api_user = CASE WHEN $9 THEN $10 ELSE api_user END,
                api_password = CASE WHEN $11 THEN $12 ELSE api_password END,
                use_ssl = COALESCE($13, use_ssl)
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(t.0).bind(id.0).bind(p.name.as_deref().map(str::trim)).bind(p.vendor.map(|v| v.as_str())).bind(p.ip.map(|i| i.to_string()))
        .bind(secret).bind(p.message_auth.map(|m| m.as_str())).bind(p.coa_port.map(i64::from))
        .bind(p.api_user.is_some()).bind(p.api_user.clone().flatten())
        .bind(api_password.is_some()).bind(api_password.flatten())
        .bind(p.use_ssl)
        .execute(&mut *tx).await?;
        if res.rows_affected() == 0 {
            tx.commit().await?;
            return Ok(None);
        }
        let row = sqlx::query(q(format!("SELECT {NAS_COLS} FROM nas_devices WHERE tenant_id = $1 AND id = $2"))).bind(t.0).bind(id.0).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(nas_row(&row)?))
    }

    /// Refuses a change that would leave the tenant without an enabled owner.
    /// Refuses the user's access tokens issued before the cutoff (upsert: the later one wins).
    async fn cutoff_in(&self, tx: &mut Transaction<'static, DbKind>, id: UserId, c: Cutoff) -> Result<()> {
        sqlx::query("INSERT INTO token_cutoffs (subject, not_before, expires_at) VALUES ($1, $2, $3)
                     ON CONFLICT (subject) DO UPDATE SET not_before = EXCLUDED.not_before, expires_at = EXCLUDED.expires_at")
            .bind(id.0).bind(c.not_before).bind(c.expires).execute(&mut **tx).await?;
        Ok(())
    }

    async fn keep_an_owner(&self, tx: &mut Transaction<'static, DbKind>, t: TenantId, id: UserId) -> Result<()> {
        let others: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenant_users WHERE tenant_id = $1 AND role = 'owner' AND disabled = $2 AND id <> $3")
            .bind(t.0).bind(false).bind(id.0).fetch_one(&mut **tx).await?;
        if others == 0 {
            return Err(StoreError::Conflict(
                "this is the account's last owner; make another user owner first".into(),
            ));
        }
        Ok(())
    }

    /// The user and whether its access tokens were cut off (see `token_cutoffs`).
    pub(super) async fn user_update(&self, t: TenantId, id: UserId, p: &UserPatch, cutoff: Cutoff) -> Result<Option<(TenantUser, bool)>> {
        let now = cutoff.not_before;
        let mut tx = self.write(t).await?;
        let row = sqlx::query(q(format!("SELECT {USER_COLS} FROM tenant_users WHERE tenant_id = $1 AND id = $2"))).bind(t.0).bind(id.0).fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let cur = user_row(&row)?;
        let demoted = p.role.is_some_and(|r| r != Role::Owner) || p.disabled == Some(true);
        if cur.role == Role::Owner && !cur.disabled && demoted
            && let Err(e) = self.keep_an_owner(&mut tx, t, id).await
        {
            tx.rollback().await?;
            return Err(e);
        }
        sqlx::query("UPDATE tenant_users SET role = COALESCE($3, role), disabled = COALESCE($4, disabled), password_hash = COALESCE($5, password_hash) WHERE tenant_id = $1 AND id = $2")
            .bind(t.0).bind(id.0).bind(p.role.map(|r| r.as_str())).bind(p.disabled).bind(p.password_hash.as_deref())
            .execute(&mut *tx).await?;
        // A disabled user, or a new password, signs out every session of that user.
        if p.disabled == Some(true) || p.password_hash.is_some() {
            sqlx::query("UPDATE refresh_families SET revoked_at = $3, revoke_reason = 'user.update' WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL")
                .bind(t.0).bind(id.0).bind(now).execute(&mut *tx).await?;
        }
        // Those, and a new role, also refuse the access tokens already issued (a refresh gets the new role).
        let cut = p.disabled == Some(true) || p.password_hash.is_some() || p.role.is_some_and(|r| r != cur.role);
        if cut {
            self.cutoff_in(&mut tx, id, cutoff).await?;
        }
        let row = sqlx::query(q(format!("SELECT {USER_COLS} FROM tenant_users WHERE tenant_id = $1 AND id = $2"))).bind(t.0).bind(id.0).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some((user_row(&row)?, cut)))
    }

    pub(super) async fn user_delete(&self, t: TenantId, id: UserId, cutoff: Cutoff) -> Result<bool> {
        let mut tx = self.write(t).await?;
        let row = sqlx::query(q(format!("SELECT {USER_COLS} FROM tenant_users WHERE tenant_id = $1 AND id = $2"))).bind(t.0).bind(id.0).fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(false);
        };
        let cur = user_row(&row)?;
        if cur.role == Role::Owner && !cur.disabled
            && let Err(e) = self.keep_an_owner(&mut tx, t, id).await
        {
            tx.rollback().await?;
            return Err(e);
        }
        for sql in [
            "DELETE FROM refresh_families WHERE tenant_id = $1 AND user_id = $2",
            "DELETE FROM email_verifications WHERE tenant_id = $1 AND user_id = $2",
            "DELETE FROM tenant_users WHERE tenant_id = $1 AND id = $2",
        ] {
            sqlx::query(sql).bind(t.0).bind(id.0).execute(&mut *tx).await?;
        }
        self.cutoff_in(&mut tx, id, cutoff).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// (start, input, output) of a username's sessions started since `since`, oldest first.
    pub(super) async fn session_usage_rows(&self, t: TenantId, username: &str, since: DateTime<Utc>) -> Result<Vec<(DateTime<Utc>, i64, i64)>> {
        let mut tx = self.read(t).await?;
        let rows = sqlx::query("SELECT started_at, input_octets, output_octets FROM radius_sessions WHERE tenant_id = $1 AND username = $2 AND started_at >= $3 ORDER BY started_at")
            .bind(t.0).bind(username).bind(since).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(|r| Ok((r.try_get("started_at")?, r.try_get("input_octets")?, r.try_get("output_octets")?))).collect()
    }

    pub(super) async fn usage_hourly_rows(&self, t: TenantId, since: DateTime<Utc>) -> Result<Vec<crate::store::HourlyUsage>> {
        let mut tx = self.read(t).await?;
        let rows = sqlx::query("SELECT hour, username, input_octets, output_octets FROM usage_hourly WHERE tenant_id = $1 AND hour >= $2 ORDER BY hour, username")
            .bind(t.0).bind(since).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(|r| Ok(crate::store::HourlyUsage { hour: r.try_get("hour")?, username: r.try_get("username")?, input_octets: r.try_get("input_octets")?, output_octets: r.try_get("output_octets")? })).collect()
    }

    /// A page sorted by `key` then id, keyset on (sort value, id); `after` is the previous
    /// page's last (value, id).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn subscribers_list_sorted(
        &self,
        t: TenantId,
        search: Option<&str>,
        status: Option<SubscriberStatus>,
        plan: Option<PlanId>,
        key: crate::store::SubscriberSortKey,
        descending: bool,
        after: Option<&(crate::store::SortValue, SubscriberId)>,
        limit: i64,
    ) -> Result<Vec<(Subscriber, crate::store::SortValue)>> {
        use crate::store::{SortValue, SubscriberSortKey as K};
        let expr = match key {
            K::Username => "s.username",
            K::Created => "s.created_at",
            K::Expiry => EXPIRY_SORT,
            K::Status => "s.status",
            K::Plan => "COALESCE(p.name, '')",
        };
        let time_key = matches!(key, K::Created | K::Expiry);
        let (cmp, dir) = if descending { ("<", "DESC") } else { (">", "ASC") };
        let (keyset, lim) = if after.is_some() {
            (format!("AND ({expr} {cmp} $5 OR ({expr} = $5 AND s.id {cmp} $6))"), "$7")
        } else {
            (String::new(), "$5")
        };
        let filters = subscriber_filters(search.map(|_| SUBSCRIBER_SEARCH), status.is_some(), plan.is_some());
        let sql = format!(
            "SELECT {SUB_COLS}, {expr} AS sort_value FROM subscribers s LEFT JOIN service_plans p ON p.id = s.plan_id
             WHERE s.tenant_id = $1 {filters}
               {keyset}
             ORDER BY {expr} {dir}, s.id {dir} LIMIT {lim}"
        );
        let mut tx = self.read(t).await?;
        let query = sqlx::query(q(sql)).bind(t.0).bind(search).bind(status.map(|s| s.as_str())).bind(plan.map(|p| p.0));
        let query = match after {
            Some((SortValue::Time(v), id)) => query.bind(*v).bind(id.0),
            Some((SortValue::Text(v), id)) => query.bind(v.clone()).bind(id.0),
            None => query,
        };
        let rows = query.bind(limit).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let v = if time_key { SortValue::Time(r.try_get("sort_value")?) } else { SortValue::Text(r.try_get("sort_value")?) };
                Ok((subscriber_row(r)?, v))
            })
            .collect()
    }

    pub(super) async fn email_verification_insert(&self, t: TenantId, user: UserId, hash: &str, now: DateTime<Utc>, expires: DateTime<Utc>) -> Result<()> {
        let mut tx = self.write(t).await?;
        sqlx::query("INSERT INTO email_verifications (token_hash, tenant_id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(hash).bind(t.0).bind(user.0).bind(now).bind(expires).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Uses a verification token once: marks it used and the user's e-mail verified.
    pub(super) async fn email_verification_use(&self, t: TenantId, hash: &str, now: DateTime<Utc>) -> Result<crate::store::Verification> {
        use crate::store::Verification;
        let mut tx = self.write(t).await?;
        let row = sqlx::query("SELECT user_id, expires_at, used_at FROM email_verifications WHERE tenant_id = $1 AND token_hash = $2")
            .bind(t.0).bind(hash).fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(Verification::Unknown);
        };
        let used: Option<DateTime<Utc>> = row.try_get("used_at")?;
        let expires: DateTime<Utc> = row.try_get("expires_at")?;
        let user = UserId(row.try_get("user_id")?);
        let out = if used.is_some() {
            Verification::Used
        } else if expires <= now {
            Verification::Expired
        } else {
            // Compare-and-set: of two concurrent uses only one verifies.
            let res = sqlx::query("UPDATE email_verifications SET used_at = $3 WHERE tenant_id = $1 AND token_hash = $2 AND used_at IS NULL")
                .bind(t.0).bind(hash).bind(now).execute(&mut *tx).await?;
            if res.rows_affected() == 1 {
                sqlx::query("UPDATE tenant_users SET email_verified = $3 WHERE tenant_id = $1 AND id = $2").bind(t.0).bind(user.0).bind(true).execute(&mut *tx).await?;
                Verification::Verified(user)
            } else {
                Verification::Used
            }
        };
        tx.commit().await?;
        Ok(out)
    }
}
