//! Domain services over the store and bus: tenant provisioning and lifecycle, operators, and the
//! tenant-scoped commands shared by the CLI and the API (each audited and announced on the bus).

use std::time::Duration;

use serde_json::json;

use crate::bus::{Bus, BusError, kinds};
use crate::crypto::{self, CryptoError, HashCost};
use crate::ids::*;
use crate::model::*;
use crate::store::{AuditLine, Page, Store, StoreError, SubscriberQuery, TenantScope};

/// Errors of the domain services.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// Store failure or refusal.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bus failure.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// Hashing failure.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// Already exists / taken.
    #[error("{0}")]
    Conflict(String),
    /// Unknown thing.
    #[error("{0} not found")]
    NotFound(String),
    /// A failure injected by a test after a provisioning step.
    #[error("injected failure after provisioning step {0:?}")]
    Injected(ProvisionStep),
}

impl PlatformError {
    /// Whether the caller's input is at fault (CLI exit code 2, HTTP 4xx).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            PlatformError::Invalid(_)
                | PlatformError::Conflict(_)
                | PlatformError::NotFound(_)
                | PlatformError::Store(
                    StoreError::Invalid(_)
                        | StoreError::Conflict(_)
                        | StoreError::NotFound(_)
                        | StoreError::LimitReached(_)
                )
        )
    }
}

type Result<T, E = PlatformError> = std::result::Result<T, E>;

/// Steps of the provisioning pipeline, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProvisionStep {
    /// The tenant row exists in `provisioning`.
    TenantRow,
    /// The owner user exists.
    OwnerUser,
    /// The default plan exists.
    DefaultPlan,
}

/// A request to create a tenant (signup, operator console, CLI).
#[derive(Clone, Debug)]
pub struct ProvisionRequest {
    /// Subdomain.
    pub slug: Slug,
    /// Display name.
    pub name: String,
    /// Owner login.
    pub owner_email: Email,
    /// Owner password (hashed with argon2id).
    pub owner_password: String,
    /// IANA timezone.
    pub timezone: String,
    /// Limits (default when None).
    pub limits: Option<TenantLimits>,
}

/// Shortest password accepted for panel users and operators.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Name of the plan every new tenant starts with.
pub const DEFAULT_PLAN: &str = "default";

/// How long a deleted tenant's data stays before the sweeper purges it.
pub const PURGE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A change of tenant settings; `None` keeps a field.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TenantChange {
    /// Display name.
    pub name: Option<String>,
    /// IANA timezone.
    pub timezone: Option<String>,
    /// Most subscribers.
    pub max_subscribers: Option<i64>,
    /// Most NAS devices.
    pub max_nas: Option<i64>,
    /// QuotaSync interval: `Some(None)` returns to the platform default.
    pub quota_sync_s: Option<Option<u32>>,
}

/// Who performs an action, as written to the audit log.
#[derive(Clone, Debug)]
pub struct Actor(pub String);

impl Actor {
    /// The command-line interface.
    pub fn cli() -> Self {
        Actor("cli".into())
    }
    /// The platform itself (sweepers, demo seeding).
    pub fn system() -> Self {
        Actor("system".into())
    }
}

/// Domain services; cheap to clone.
#[derive(Clone, Debug)]
pub struct Platform {
    store: Store,
    bus: Bus,
    hash_cost: HashCost,
    tunnel_subnet: String,
    client_ip: Option<String>,
}

fn check_password(p: &str) -> Result<()> {
    if p.chars().count() < MIN_PASSWORD_LEN {
        return Err(PlatformError::Invalid(format!(
            "password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

impl Platform {
    /// Services over a store and bus.
    pub fn new(
        store: Store,
        bus: Bus,
        hash_cost: HashCost,
        tunnel_subnet: impl Into<String>,
    ) -> Self {
        Self {
            store,
            bus,
            hash_cost,
            tunnel_subnet: tunnel_subnet.into(),
            client_ip: None,
        }
    }

    /// The same services, with audit lines naming the client address (API requests).
    pub fn with_client_ip(&self, ip: impl Into<String>) -> Self {
        let mut p = self.clone();
        p.client_ip = Some(ip.into());
        p
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The bus.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Hashes a password with the configured argon2id cost.
    pub fn hash_password(&self, p: &str) -> Result<String> {
        Ok(crypto::hash_password(p, self.hash_cost)?)
    }

    /// Creates an operator; returns it with its TOTP enrolment URI.
    pub async fn create_operator(
        &self,
        email: &Email,
        password: &str,
        actor: &Actor,
    ) -> Result<(Operator, String)> {
        check_password(password)?;
        let secret = crypto::totp::generate_secret();
        let hash = self.hash_password(password)?;
        let op = self
            .store
            .platform()
            .create_operator(email, &hash, &secret)
            .await?;
        self.store
            .platform()
            .audit_from(
                &actor.0,
                "operator.create",
                Some(email.as_str()),
                None,
                self.client_ip.as_deref(),
            )
            .await?;
        Ok((
            op,
            crypto::totp::enrolment_uri("ProxPanel", email.as_str(), &secret),
        ))
    }

    /// The enrolment URI of an existing operator.
    pub async fn operator_enrolment_uri(&self, email: &Email) -> Result<Option<String>> {
        Ok(self
            .store
            .platform()
            .operator_by_email(email)
            .await?
            .map(|(_, _, secret)| {
                crypto::totp::enrolment_uri("ProxPanel", email.as_str(), &secret)
            }))
    }

    /// Runs the provisioning pipeline: slug → tenant row in `provisioning` → owner → default plan
    /// → `active`. Re-running it for a slug left in `provisioning` completes it without duplicates.
    pub async fn provision_tenant(&self, req: &ProvisionRequest, actor: &Actor) -> Result<Tenant> {
        self.provision_tenant_failing_after(req, actor, None).await
    }

    /// The provisioning pipeline for a slug nobody holds: a slug that exists in any state,
    /// `provisioning` included (another signup running right now), is a conflict. Of two
    /// concurrent calls for one slug exactly one creates the tenant.
    pub async fn provision_new_tenant(
        &self,
        req: &ProvisionRequest,
        actor: &Actor,
    ) -> Result<Tenant> {
        self.provision(req, actor, None, true).await
    }

    /// [`Platform::provision_tenant`] with a failure injected after `fail_after` (tests).
    pub async fn provision_tenant_failing_after(
        &self,
        req: &ProvisionRequest,
        actor: &Actor,
        fail_after: Option<ProvisionStep>,
    ) -> Result<Tenant> {
        self.provision(req, actor, fail_after, false).await
    }

    async fn provision(
        &self,
        req: &ProvisionRequest,
        actor: &Actor,
        fail_after: Option<ProvisionStep>,
        exclusive: bool,
    ) -> Result<Tenant> {
        let fail = |step| {
            if fail_after == Some(step) {
                Err(PlatformError::Injected(step))
            } else {
                Ok(())
            }
        };
        validate_timezone(&req.timezone).map_err(PlatformError::Invalid)?;
        check_password(&req.owner_password)?;
        if req.name.trim().is_empty() {
            return Err(PlatformError::Invalid(
                "tenant name must not be empty".into(),
            ));
        }
        let tenant_id = match self.store.system().tenant_by_slug(&req.slug).await? {
            Some(t) if t.status == TenantStatus::Provisioning && !exclusive => t.id,
            Some(_) => {
                return Err(PlatformError::Conflict(format!(
                    "the slug {:?} is already taken",
                    req.slug.as_str()
                )));
            }
            None => {
                let id = TenantId::new();
                self.store
                    .tenant(id)
                    .insert_tenant(
                        &req.slug,
                        req.name.trim(),
                        &req.timezone,
                        req.limits.unwrap_or_default(),
                        &self.tunnel_subnet,
                    )
                    .await?;
                id
            }
        };
        let scope = self.store.tenant(tenant_id);
        fail(ProvisionStep::TenantRow)?;

        if !scope.users().await?.iter().any(|u| u.role == Role::Owner) {
            let hash = self.hash_password(&req.owner_password)?;
            scope
                .create_user(&req.owner_email, &hash, Role::Owner)
                .await?;
        }
        fail(ProvisionStep::OwnerUser)?;

        if !scope.plans().await?.iter().any(|p| p.is_default) {
            let plan = NewPlan {
                name: DEFAULT_PLAN.into(),
                download_kbps: 10_240,
                upload_kbps: 2_048,
                ..Default::default()
            };
            scope.create_plan(&plan, true).await?;
        }
        fail(ProvisionStep::DefaultPlan)?;

        let tenant = scope.set_status(TenantStatus::Active).await?;
        scope
            .audit_from(
                &actor.0,
                "tenant.create",
                Some(tenant.slug.as_str()),
                None,
                self.client_ip.as_deref(),
            )
            .await?;
        self.store
            .platform()
            .audit_from(
                &actor.0,
                "tenant.create",
                Some(tenant.slug.as_str()),
                None,
                self.client_ip.as_deref(),
            )
            .await?;
        self.announce_tenant(&tenant).await?;
        Ok(tenant)
    }

    async fn announce_tenant(&self, t: &Tenant) -> Result<()> {
        self.bus
            .publish(
                Some(t.id),
                kinds::TENANT_CHANGED,
                &json!({"tenant": t.id, "slug": t.slug, "status": t.status}),
            )
            .await?;
        Ok(())
    }

    /// A tenant by slug (any status), or NotFound.
    pub async fn tenant_by_slug(&self, slug: &str) -> Result<Tenant> {
        let slug = Slug::parse(slug)
            .map_err(|e| PlatformError::Invalid(format!("invalid slug {slug:?}: {e}")))?;
        match self.store.system().tenant_by_slug(&slug).await? {
            Some(t) if t.status != TenantStatus::Deleted => Ok(t),
            _ => Err(PlatformError::NotFound(format!(
                "tenant {:?}",
                slug.as_str()
            ))),
        }
    }

    /// Every tenant with counts.
    pub async fn tenants(&self) -> Result<Vec<TenantSummary>> {
        Ok(self.store.system().tenants().await?)
    }

    /// Moves a tenant to `status` (suspend, resume, delete), audited and announced.
    pub async fn set_tenant_status(
        &self,
        slug: &str,
        status: TenantStatus,
        actor: &Actor,
    ) -> Result<Tenant> {
        let t = self.tenant_by_slug(slug).await?;
        let allowed = matches!(
            (t.status, status),
            (TenantStatus::Active, TenantStatus::Suspended)
                | (TenantStatus::Suspended, TenantStatus::Active)
                | (
                    TenantStatus::Active | TenantStatus::Suspended | TenantStatus::Provisioning,
                    TenantStatus::Deleted
                )
        );
        if !allowed {
            return Err(PlatformError::Invalid(format!(
                "tenant {:?} is {}; cannot make it {}",
                t.slug.as_str(),
                t.status,
                status
            )));
        }
        let scope = self.store.tenant(t.id);
        let t = scope.set_status(status).await?;
        let action = match status {
            TenantStatus::Suspended => "tenant.suspend",
            TenantStatus::Active => "tenant.resume",
            _ => "tenant.delete",
        };
        scope
            .audit_from(
                &actor.0,
                action,
                Some(t.slug.as_str()),
                None,
                self.client_ip.as_deref(),
            )
            .await?;
        self.store
            .platform()
            .audit_from(
                &actor.0,
                action,
                Some(t.slug.as_str()),
                None,
                self.client_ip.as_deref(),
            )
            .await?;
        self.announce_tenant(&t).await?;
        if matches!(status, TenantStatus::Suspended | TenantStatus::Deleted) {
            // DESIGN §4: new logins are refused at once (the engine checks the status); every
            // online session gets a Disconnect from the process that holds its NAS.
            self.bus
                .publish(
                    Some(t.id),
                    kinds::COA_REQUEST,
                    &json!({"action": "disconnect", "username": null}),
                )
                .await?;
        }
        Ok(t)
    }

    /// Changes a tenant's name, timezone, limits or QuotaSync interval (audited, announced).
    pub async fn update_tenant(
        &self,
        slug: &str,
        change: &TenantChange,
        actor: &Actor,
    ) -> Result<Tenant> {
        let t = self.tenant_by_slug(slug).await?;
        let scope = self.store.tenant(t.id);
        let limits =
            (change.max_subscribers.is_some() || change.max_nas.is_some()).then(|| TenantLimits {
                max_subscribers: change.max_subscribers.unwrap_or(t.limits.max_subscribers),
                max_nas: change.max_nas.unwrap_or(t.limits.max_nas),
            });
        if let Some(l) = &limits
            && (l.max_subscribers < 0 || l.max_nas < 0)
        {
            return Err(PlatformError::Invalid("limits cannot be negative".into()));
        }
        // Checked before anything changes, so a bad interval leaves the other fields alone too.
        if let Some(Some(q)) = change.quota_sync_s {
            crate::store::check_quota_sync(q)?;
        }
        let mut t = scope
            .update_tenant(change.name.as_deref(), change.timezone.as_deref(), limits)
            .await?;
        if let Some(q) = change.quota_sync_s {
            t = scope.set_quota_sync(q).await?;
        }
        let details = serde_json::to_string(change).unwrap_or_default();
        let ip = self.client_ip.as_deref();
        let target = Some(t.slug.as_str());
        scope
            .audit_from(&actor.0, "tenant.update", target, Some(&details), ip)
            .await?;
        self.store
            .platform()
            .audit_from(&actor.0, "tenant.update", target, Some(&details), ip)
            .await?;
        self.announce_tenant(&t).await?;
        Ok(t)
    }

    /// Purges tenants deleted more than `grace` ago; returns how many.
    pub async fn purge_deleted(&self, grace: Duration) -> Result<usize> {
        let cutoff = crate::store::now()
            - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::days(1));
        let ids = self.store.system().tenants_to_purge(cutoff).await?;
        for id in &ids {
            self.store.tenant(*id).purge().await?;
            self.store
                .platform()
                .audit_from(
                    "system",
                    "tenant.purge",
                    Some(&id.to_string()),
                    None,
                    self.client_ip.as_deref(),
                )
                .await?;
            self.bus
                .publish(
                    Some(*id),
                    kinds::TENANT_CHANGED,
                    &json!({"tenant": id, "status": "purged"}),
                )
                .await?;
            tracing::info!(tenant = %id, "purged deleted tenant");
        }
        Ok(ids.len())
    }

    /// Closes sessions without an update for `stale_after` (3× the interim interval); returns
    /// how many.
    pub async fn sweep_stale_sessions(&self, stale_after: Duration) -> Result<u64> {
        let before = crate::store::now()
            - chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::minutes(3));
        let mut n = 0;
        for t in self
            .store
            .system()
            .tenants_with_stale_sessions(before)
            .await?
        {
            let closed = self.store.tenant(t).close_stale_sessions(before).await?;
            if closed > 0 {
                tracing::info!(tenant = %t, closed, "closed stale sessions (no accounting update)");
                self.bus
                    .publish(Some(t), kinds::SESSION_STOPPED, &json!({"stale": closed}))
                    .await?;
            }
            n += closed;
        }
        Ok(n)
    }

    /// Asks for a Disconnect of every online subscriber whose expiry has passed (the process
    /// holding the NAS answers the `coa.request`); returns how many subscribers.
    pub async fn sweep_expired(&self) -> Result<usize> {
        let due = self
            .store
            .system()
            .expired_online(crate::store::now())
            .await?;
        for (t, username) in &due {
            tracing::info!(tenant = %t, username, "subscriber expired while online; disconnecting");
            self.bus
                .publish(
                    Some(*t),
                    kinds::COA_REQUEST,
                    &json!({"action": "disconnect", "username": username}),
                )
                .await?;
        }
        Ok(due.len())
    }

    /// Tenant-scoped commands for a tenant already resolved (API host routing).
    pub fn ops_for(&self, tenant: Tenant, actor: Actor) -> TenantOps {
        TenantOps {
            scope: self.store.tenant(tenant.id),
            tenant,
            bus: self.bus.clone(),
            actor,
            client_ip: self.client_ip.clone(),
            platform: self.clone(),
        }
    }

    /// Tenant-scoped commands for one tenant (by slug; deleted tenants are not found).
    pub async fn tenant_ops(&self, slug: &str, actor: Actor) -> Result<TenantOps> {
        let t = self.tenant_by_slug(slug).await?;
        Ok(TenantOps {
            scope: self.store.tenant(t.id),
            tenant: t,
            bus: self.bus.clone(),
            actor,
            client_ip: self.client_ip.clone(),
            platform: self.clone(),
        })
    }
}

/// Creates a WireGuard peer with what its answer carries beyond the stored row (DESIGN §8 peer
/// object, RouterOS script, generated private key). The binary provides it: it holds the
/// relay's key and settings; the API calls it.
#[async_trait::async_trait]
pub trait PeerProvisioner: Send + Sync + std::fmt::Debug {
    /// Adds the peer of the tunnel NAS `nas_name` (`public_key` from the router, or a key pair
    /// generated here) and returns the peer object with `routeros_script` (and `private_key`
    /// when generated).
    async fn add_peer(
        &self,
        ops: &TenantOps,
        nas_name: &str,
        public_key: Option<&str>,
    ) -> Result<serde_json::Value>;
}

/// Tenant-scoped commands (CLI and API share them): every change is audited and announced.
#[derive(Clone, Debug)]
pub struct TenantOps {
    scope: TenantScope,
    tenant: Tenant,
    bus: Bus,
    actor: Actor,
    platform: Platform,
    client_ip: Option<String>,
}

impl TenantOps {
    /// The tenant.
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// The same commands with audit lines that name the client address (API requests).
    pub fn with_client_ip(mut self, ip: impl Into<String>) -> Self {
        self.client_ip = Some(ip.into());
        self
    }

    /// Who acts.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The client address audit lines name, if any.
    pub fn client_ip(&self) -> Option<&str> {
        self.client_ip.as_deref()
    }

    async fn audit_line(
        &self,
        action: &str,
        target: Option<&str>,
        details: Option<&str>,
    ) -> Result<(), StoreError> {
        self.scope
            .audit_from(
                &self.actor.0,
                action,
                target,
                details,
                self.client_ip.as_deref(),
            )
            .await
    }

    /// The scope (for reads).
    pub fn scope(&self) -> &TenantScope {
        &self.scope
    }

    async fn done(
        &self,
        action: &str,
        target: &str,
        kind: &str,
        payload: serde_json::Value,
    ) -> Result<()> {
        self.audit_line(action, Some(target), None).await?;
        self.bus
            .publish(Some(self.tenant.id), kind, &payload)
            .await?;
        Ok(())
    }

    /// Parses a user-given date in the tenant's timezone.
    pub fn parse_date(&self, s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
        parse_user_date(s, &self.tenant.timezone).map_err(PlatformError::Invalid)
    }

    /// Adds a panel user.
    pub async fn add_user(&self, email: &Email, password: &str, role: Role) -> Result<TenantUser> {
        check_password(password)?;
        let hash = self.platform.hash_password(password)?;
        let u = self.scope.create_user(email, &hash, role).await?;
        self.audit_line("user.create", Some(email.as_str()), None)
            .await?;
        Ok(u)
    }

    /// Adds a plan.
    pub async fn add_plan(&self, p: &NewPlan) -> Result<Plan> {
        let plan = self.scope.create_plan(p, false).await?;
        self.done(
            "plan.create",
            &plan.name,
            kinds::PLAN_CHANGED,
            json!({"plan": plan.id}),
        )
        .await?;
        Ok(plan)
    }

    /// Resolves a plan name.
    pub async fn plan_named(&self, name: &str) -> Result<Plan> {
        self.scope
            .plan_by_name(name)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("plan {name:?}")))
    }

    /// Adds a subscriber (plan by name; the tenant's default plan when none is given).
    pub async fn add_subscriber(
        &self,
        mut s: NewSubscriber,
        plan: Option<&str>,
    ) -> Result<Subscriber> {
        s.plan_id = match plan {
            Some(name) => Some(self.plan_named(name).await?.id),
            None => self
                .scope
                .plans()
                .await?
                .into_iter()
                .find(|p| p.is_default)
                .map(|p| p.id),
        };
        let sub = self.scope.create_subscriber(&s).await?;
        self.done(
            "subscriber.create",
            &sub.username,
            kinds::SUBSCRIBER_CHANGED,
            json!({"subscriber": sub.id}),
        )
        .await?;
        Ok(sub)
    }

    /// Adds many subscribers at once, all or nothing (plans by name per row, the tenant's
    /// default plan where a row names none). Returns how many were added.
    pub async fn import_subscribers(
        &self,
        rows: Vec<(NewSubscriber, Option<String>)>,
    ) -> Result<usize> {
        let plans = self.scope.plans().await?;
        let default = plans.iter().find(|p| p.is_default).map(|p| p.id);
        let mut subs = Vec::with_capacity(rows.len());
        for (i, (mut s, plan)) in rows.into_iter().enumerate() {
            s.plan_id = match plan.as_deref() {
                Some(name) => Some(
                    plans
                        .iter()
                        .find(|p| p.name == name)
                        .map(|p| p.id)
                        .ok_or_else(|| {
                            PlatformError::Invalid(format!("row {}: no plan named {name:?}", i + 1))
                        })?,
                ),
                None => default,
            };
            subs.push(s);
        }
        let n = self.scope.import_subscribers(&subs).await?;
        self.done(
            "subscriber.import",
            &format!("{n} subscribers"),
            kinds::SUBSCRIBER_CHANGED,
            json!({"imported": n}),
        )
        .await?;
        Ok(n)
    }

    /// A subscriber by username, or NotFound.
    pub async fn subscriber(&self, username: &str) -> Result<Subscriber> {
        self.scope
            .subscriber_by_username(username)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("subscriber {username:?}")))
    }

    /// Changes a subscriber.
    pub async fn update_subscriber(
        &self,
        username: &str,
        patch: &SubscriberPatch,
    ) -> Result<Subscriber> {
        let s = self.subscriber(username).await?;
        self.update_found_subscriber(&s, patch).await
    }

    /// As [`Self::update_subscriber`] for a subscriber the caller has read already (the API
    /// found it by id), without looking it up again.
    pub async fn update_found_subscriber(
        &self,
        s: &Subscriber,
        patch: &SubscriberPatch,
    ) -> Result<Subscriber> {
        let fields: Vec<&str> = [
            ("password", patch.password.is_some()),
            ("status", patch.status.is_some()),
            ("plan", patch.plan_id.is_some()),
            ("expires_at", patch.expires_at.is_some()),
            ("static_ip", patch.static_ip.is_some()),
            ("mac_lock", patch.mac_lock.is_some()),
            ("sim_use", patch.sim_use.is_some()),
            (
                "ipv6",
                patch.framed_ipv6_prefix.is_some() || patch.delegated_ipv6_prefix.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(n, set)| set.then_some(n))
        .collect();
        let details = json!({ "fields": fields }).to_string();
        // The change and its audit line commit together.
        let audit = AuditLine {
            actor: &self.actor.0,
            action: "subscriber.update",
            target: Some(&s.username),
            details: Some(&details),
            client_ip: self.client_ip.as_deref(),
        };
        let s = self
            .scope
            .update_subscriber_audited(s.id, patch, Some(&audit))
            .await?;
        self.bus
            .publish(
                Some(self.tenant.id),
                kinds::SUBSCRIBER_CHANGED,
                &json!({"subscriber": s.id}),
            )
            .await?;
        // An online subscriber feels the change now: disabled → Disconnect, new plan → CoA rate.
        let action = if patch.status == Some(SubscriberStatus::Disabled) {
            Some("disconnect")
        } else if patch.plan_id.is_some() {
            Some("rate")
        } else {
            None
        };
        if let Some(action) = action
            && self.scope.open_session_count(&s.username).await? > 0
        {
            self.bus
                .publish(
                    Some(self.tenant.id),
                    kinds::COA_REQUEST,
                    &json!({"action": action, "username": s.username}),
                )
                .await?;
        }
        Ok(s)
    }

    /// Deletes a subscriber.
    pub async fn delete_subscriber(&self, username: &str) -> Result<()> {
        let s = self.subscriber(username).await?;
        if self.scope.open_session_count(username).await? > 0 {
            self.bus
                .publish(
                    Some(self.tenant.id),
                    kinds::COA_REQUEST,
                    &json!({"action": "disconnect", "username": username}),
                )
                .await?;
        }
        self.scope.delete_subscriber(s.id).await?;
        self.done(
            "subscriber.delete",
            username,
            kinds::SUBSCRIBER_CHANGED,
            json!({"subscriber": s.id, "deleted": true}),
        )
        .await
    }

    /// Lists subscribers.
    pub async fn subscribers(&self, q: &SubscriberQuery) -> Result<Page<Subscriber>> {
        Ok(self.scope.subscribers(q).await?)
    }

    /// Adds a NAS.
    pub async fn add_nas(&self, n: &NewNas) -> Result<Nas> {
        let nas = self.scope.create_nas(n).await?;
        self.done(
            "nas.create",
            &nas.name,
            kinds::NAS_CHANGED,
            json!({"nas": nas.id}),
        )
        .await?;
        Ok(nas)
    }

    /// A NAS by name, or NotFound.
    pub async fn nas_named(&self, name: &str) -> Result<Nas> {
        self.scope
            .nas_by_name(name)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("NAS {name:?}")))
    }

    /// Adds the WireGuard peer of a tunnel NAS: the tunnel address is the first free host of
    /// the tenant's tunnel subnet after the relay's .1. The public key comes from the router
    /// or from a key pair the caller generated (whose private half is never stored).
    pub async fn add_peer(
        &self,
        nas_name: &str,
        public_key: &str,
        relay_node: &str,
    ) -> Result<WgPeer> {
        let nas = self.nas_named(nas_name).await?;
        if nas.ip.is_some() {
            return Err(PlatformError::Invalid(format!(
                "NAS {nas_name:?} is a direct NAS (it has a source address); add it with --tunnel to reach it through the relay"
            )));
        }
        let peers = self.scope.peers().await?;
        if peers.iter().any(|p| p.nas_id == nas.id) {
            return Err(PlatformError::Conflict(format!(
                "NAS {nas_name:?} already has a peer (remove it first to replace its key)"
            )));
        }
        let net: ipnet::Ipv4Net = self.tenant.tunnel_subnet.parse().map_err(|_| {
            PlatformError::Invalid(format!(
                "the tenant's tunnel subnet {:?} is not an IPv4 CIDR",
                self.tenant.tunnel_subnet
            ))
        })?;
        let used: std::collections::HashSet<std::net::Ipv4Addr> = peers
            .iter()
            .filter_map(|p| p.tunnel_address.parse::<ipnet::Ipv4Net>().ok())
            .map(|n| n.addr())
            .collect();
        let addr = net
            .hosts()
            .skip(1) // .1 is the relay
            .find(|a| !used.contains(a))
            .ok_or_else(|| {
                PlatformError::Store(StoreError::LimitReached(format!(
                    "the tunnel subnet {net} has no free address left"
                )))
            })?;
        let cidr = format!("{addr}/{}", net.prefix_len());
        let peer = self
            .scope
            .create_peer(nas.id, public_key, None, &cidr, Some(relay_node))
            .await?;
        self.done(
            "peer.create",
            &nas.name,
            kinds::PEER_CHANGED,
            json!({"peer": peer.id, "public_key": peer.public_key}),
        )
        .await?;
        Ok(peer)
    }

    /// A NAS by name and its WireGuard peer, if it has one.
    pub async fn nas_peer(&self, nas_name: &str) -> Result<(Nas, Option<WgPeer>)> {
        let nas = self.nas_named(nas_name).await?;
        let peer = self
            .scope
            .peers()
            .await?
            .into_iter()
            .find(|p| p.nas_id == nas.id);
        Ok((nas, peer))
    }

    /// Removes the peer of a NAS; the relay drops its tunnel at once.
    pub async fn remove_peer(&self, nas_name: &str) -> Result<WgPeer> {
        let (nas, peer) = self.nas_peer(nas_name).await?;
        let peer =
            peer.ok_or_else(|| PlatformError::NotFound(format!("a peer for NAS {nas_name:?}")))?;
        self.scope.delete_peer(peer.id).await?;
        self.done(
            "peer.delete",
            &nas.name,
            kinds::PEER_CHANGED,
            json!({"peer": peer.id, "public_key": peer.public_key, "removed": true}),
        )
        .await?;
        Ok(peer)
    }

    /// Records an audited action without an event (e.g. a secret shown again on request).
    pub async fn audit(&self, action: &str, target: &str) -> Result<()> {
        self.audit_line(action, Some(target), None).await?;
        Ok(())
    }

    /// Deletes a NAS by name.
    pub async fn delete_nas(&self, name: &str) -> Result<()> {
        let nas = self
            .scope
            .nas_by_name(name)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("NAS {name:?}")))?;
        self.scope.delete_nas(nas.id).await?;
        self.done(
            "nas.delete",
            name,
            kinds::NAS_CHANGED,
            json!({"nas": nas.id, "deleted": true}),
        )
        .await
    }
}
