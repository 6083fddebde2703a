//! `serve --demo`: an operator, a tenant with owner, plan, subscriber and a direct NAS — created
//! idempotently, so running it twice creates nothing twice.

use std::path::Path;

use saas_core::model::*;
use saas_core::platform::{Actor, Platform, PlatformError, ProvisionRequest};
use saas_core::{Email, Slug};

/// What `--demo` created or found, to print.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoCredentials {
    pub operator_email: String,
    pub operator_totp_uri: Option<String>,
    pub owner_email: String,
    /// Password of the demo operator and owner.
    pub password: String,
    pub tenant: String,
    pub subscriber: (String, String),
    pub nas_address: String,
    pub nas_secret: String,
    /// What was created in this run (empty on a second run).
    pub created: Vec<String>,
}

const OPERATOR: &str = "admin@example.com";
const OWNER: &str = "owner@demo.example";
const NAS_SECRET: &str = "testing123";

/// The demo password: `PROXPANEL_DEMO_PASSWORD`, else the one generated on the first run (kept in
/// the data dir so later runs print the right one), else a new one.
pub fn demo_password(data_dir: &Path) -> Result<String, PlatformError> {
    if let Ok(p) = std::env::var("PROXPANEL_DEMO_PASSWORD")
        && !p.is_empty()
    {
        return Ok(p);
    }
    let file = data_dir.join("demo-password");
    if let Ok(p) = std::fs::read_to_string(&file) {
        return Ok(p.trim().to_owned());
    }
    let p = saas_core::crypto::random_password();
    std::fs::create_dir_all(data_dir)
        .and_then(|_| std::fs::write(&file, &p))
        .map_err(|e| PlatformError::Invalid(format!("cannot write {}: {e}", file.display())))?;
    Ok(p)
}

fn value<T>(r: Result<T, PlatformError>) -> Result<Option<T>, PlatformError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(PlatformError::Conflict(_))
        | Err(PlatformError::Store(saas_core::StoreError::Conflict(_))) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates the demo data where missing; returns what to print.
pub async fn seed_demo(p: &Platform, password: &str) -> Result<DemoCredentials, PlatformError> {
    let mut created = Vec::new();
    let actor = Actor::system();
    let op_email = Email::parse(OPERATOR).map_err(|e| PlatformError::Invalid(e.to_string()))?;
    let operator_totp_uri = match p.store().platform().operator_by_email(&op_email).await? {
        Some(_) => p.operator_enrolment_uri(&op_email).await?,
        None => {
            let (_, uri) = p.create_operator(&op_email, password, &actor).await?;
            created.push(format!("operator {OPERATOR}"));
            Some(uri)
        }
    };
    let slug = Slug::parse("demo").map_err(|e| PlatformError::Invalid(e.to_string()))?;
    let existing = p.store().system().tenant_by_slug(&slug).await?;
    if existing
        .as_ref()
        .is_none_or(|t| t.status == TenantStatus::Provisioning)
    {
        let req = ProvisionRequest {
            slug: slug.clone(),
            name: "Demo ISP".into(),
            owner_email: Email::parse(OWNER).map_err(|e| PlatformError::Invalid(e.to_string()))?,
            owner_password: password.to_owned(),
            timezone: "UTC".into(),
            limits: None,
        };
        p.provision_tenant(&req, &actor).await?;
        created.push("tenant demo (owner owner@demo.example)".into());
    }
    let ops = p.tenant_ops("demo", actor).await?;
    if ops.scope().plan_by_name("10M").await?.is_none() {
        ops.add_plan(&NewPlan {
            name: "10M".into(),
            download_kbps: 10_240,
            upload_kbps: 2_048,
            ..Default::default()
        })
        .await?;
        created.push("plan 10M".into());
    }
    if ops.scope().subscriber_by_username("demo").await?.is_none() {
        let s = NewSubscriber {
            username: "demo".into(),
            password: "demo".into(),
            plan_id: None,
            expires_at: None,
            static_ip: None,
            framed_ipv6_prefix: None,
            delegated_ipv6_prefix: None,
            mac_lock: None,
            sim_use: None,
        };
        ops.add_subscriber(s, Some("10M")).await?;
        created.push("subscriber demo".into());
    }
    if ops.scope().nas_by_name("demo-nas").await?.is_none() {
        let n = NewNas {
            name: "demo-nas".into(),
            vendor: NasVendor::Mikrotik,
            ip: Some([127, 0, 0, 1].into()),
            secret: NAS_SECRET.into(),
            message_auth: MessageAuthPolicy::Auto,
            coa_port: 3799,
            api_user: None,
            api_password: None,
            use_ssl: false,
        };
        if value(ops.add_nas(&n).await)?.is_some() {
            created.push("NAS demo-nas (127.0.0.1)".into());
        } else {
            tracing::warn!(
                "127.0.0.1 is already a NAS address of another tenant; the demo NAS was not created"
            );
        }
    }
    Ok(DemoCredentials {
        operator_email: OPERATOR.into(),
        operator_totp_uri,
        owner_email: OWNER.into(),
        password: password.to_owned(),
        tenant: "demo".into(),
        subscriber: ("demo".into(), "demo".into()),
        nas_address: "127.0.0.1".into(),
        nas_secret: NAS_SECRET.into(),
        created,
    })
}
