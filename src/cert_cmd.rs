//! `proxpanel cert status|renew`: the zone's certificate.

use std::time::Duration;

use chrono::Utc;
use saas_core::acme::{self, AcmeSettings, Outcome, events};
use serde_json::{Value, json};

use crate::Fatal;
use crate::cli::CertCmd;
use crate::context::Context;

/// How long `cert renew` waits for the renewing node (validation and issue take seconds to
/// minutes).
const RENEW_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn cert(ctx: &Context, as_json: bool, cmd: CertCmd) -> Result<(), Fatal> {
    match cmd {
        CertCmd::Status => status(ctx, as_json).await,
        CertCmd::Renew => renew(ctx, as_json).await,
        CertCmd::Export { dir } => export(ctx, as_json, &dir).await,
    }
}

async fn export(ctx: &Context, as_json: bool, dir: &std::path::Path) -> Result<(), Fatal> {
    let base = &ctx.config.base_domain;
    let Some((c, key)) = ctx.store.platform().certificate_with_key(base).await? else {
        return Err(Fatal::usage(format!(
            "no certificate for {base} yet; see `proxpanel cert status`"
        )));
    };
    let chain = c.chain_pem.unwrap_or_default();
    let io = |what: &str, e: std::io::Error| {
        Fatal::failure(format!("cannot write {what} in {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| io("the directory", e))?;
    let write = |name: &str, data: &str, mode: u32| -> std::io::Result<()> {
        // Written beside, then renamed: nginx never reads a half-written file.
        let tmp = dir.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, mode);
        let mut f = o.open(&tmp)?;
        std::io::Write::write_all(&mut f, data.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))
    };
    write("fullchain.pem", &chain, 0o644).map_err(|e| io("fullchain.pem", e))?;
    write("privkey.pem", &key, 0o600).map_err(|e| io("privkey.pem", e))?;
    if as_json {
        crate::output::json(&json!({"dir": dir, "not_after": c.not_after, "names": c.names}));
    } else {
        println!(
            "wrote {}/fullchain.pem and privkey.pem (valid until {})",
            dir.display(),
            c.not_after.map(|t| t.to_string()).unwrap_or_default()
        );
    }
    Ok(())
}

async fn status(ctx: &Context, as_json: bool) -> Result<(), Fatal> {
    let base = &ctx.config.base_domain;
    let p = ctx.store.platform();
    let c = p.certificate(base).await?;
    let renewer = p.lease_holder(&format!("acme:{base}")).await?;
    let now = Utc::now();
    let v = match &c {
        Some(c) if c.chain_pem.is_some() => {
            let renew_at = match (c.not_before, c.not_after) {
                (Some(nb), Some(na)) => Some(acme::renew_at(nb, na)),
                _ => None,
            };
            json!({
                "name": base,
                "state": if c.not_after.is_some_and(|na| na <= now) { "expired" } else { "valid" },
                "names": c.names,
                "not_before": c.not_before,
                "not_after": c.not_after,
                "days_left": c.not_after.map(|na| (na - now).num_days()),
                "renew_at": renew_at,
                "issued_at": c.issued_at,
                "last_attempt_at": c.last_attempt_at,
                "last_error": c.last_error,
                "renewer": renewer,
                "acme_directory": ctx.config.acme_directory,
            })
        }
        _ => json!({
            "name": base,
            "state": "none",
            "names": c.as_ref().map(|c| c.names.clone()).unwrap_or_else(|| acme::names_for(base)),
            "last_attempt_at": c.as_ref().and_then(|c| c.last_attempt_at),
            "last_error": c.as_ref().and_then(|c| c.last_error.clone()),
            "renewer": renewer,
            "acme_directory": ctx.config.acme_directory,
        }),
    };
    if as_json {
        crate::output::json(&v);
        return Ok(());
    }
    let s = |k: &str| match &v[k] {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let names = v["names"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    println!("certificate   {} ({})", s("name"), s("state"));
    println!("names         {names}");
    println!("not after     {}", s("not_after"));
    println!("days left     {}", s("days_left"));
    println!("renew at      {}", s("renew_at"));
    println!("issued at     {}", s("issued_at"));
    println!("last attempt  {}", s("last_attempt_at"));
    println!("last error    {}", s("last_error"));
    println!("renewer       {}", s("renewer"));
    println!("ACME          {}", s("acme_directory"));
    Ok(())
}

async fn renew(ctx: &Context, as_json: bool) -> Result<(), Fatal> {
    let Some(settings) = AcmeSettings::from_config(&ctx.config) else {
        return Err(Fatal::usage(
            "ACME is off: set PROXPANEL_ACME_DIRECTORY (and PROXPANEL_ACME_CONTACT) to obtain certificates",
        ));
    };
    let lease = settings.lease_name();
    let p = ctx.store.platform();
    let result = if let Some(holder) = p.lease_holder(&lease).await? {
        // A running serve renews: ask it, so only one node talks to the ACME server.
        let ev = ctx
            .platform
            .bus()
            .request(
                None,
                events::CERT_RENEW,
                &json!({"name": settings.base}),
                events::CERT_RENEW_RESULT,
                RENEW_TIMEOUT,
            )
            .await
            .map_err(|e| Fatal::failure(format!("renewer {holder}: {e}")))?;
        serde_json::from_str::<Value>(&ev.payload).unwrap_or_default()
    } else {
        let me = format!("cli-{}", uuid::Uuid::new_v4());
        if !p.try_lease(&lease, &me, acme::LEASE_TTL).await? {
            return Err(Fatal::failure(
                "another node started renewing just now; run `proxpanel cert status` in a minute",
            ));
        }
        let r = acme::renew_if_due(&ctx.platform, &settings, true).await;
        let _ = p.release_lease(&lease, &me).await;
        match r {
            Ok(Outcome::Issued(info)) => {
                json!({"ok": true, "issued": true, "not_after": info.not_after})
            }
            Ok(Outcome::NotDue(at)) => json!({"ok": true, "issued": false, "renew_at": at}),
            Err(e) => json!({"ok": false, "error": e.to_string(), "hint": e.hint()}),
        }
    };
    if result["ok"] != Value::Bool(true) {
        return Err(Fatal::failure(format!(
            "renewal failed: {} — {}",
            result["error"].as_str().unwrap_or("unknown error"),
            result["hint"].as_str().unwrap_or("")
        )));
    }
    if as_json {
        crate::output::json(&result);
    } else {
        println!(
            "certificate renewed; valid until {}",
            result["not_after"].as_str().unwrap_or("-")
        );
    }
    Ok(())
}
