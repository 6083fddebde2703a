//! `proxpanel dns records|txt`: managed DNS records (audited; announced on the bus).

use saas_core::platform::Actor;
use serde_json::json;

use crate::Fatal;
use crate::cli::{DnsCmd, DnsRecordsCmd, DnsTxtCmd};
use crate::context::Context;
use crate::output;

pub async fn dns(ctx: &Context, as_json: bool, cmd: DnsCmd) -> Result<(), Fatal> {
    match cmd {
        DnsCmd::Records { action: None } => {
            let recs = ctx.platform.dns_records().await?;
            if as_json {
                output::json(&json!({"items": recs, "next_cursor": null}));
            } else {
                output::table(
                    &["name", "type", "ttl", "value"],
                    recs.iter()
                        .map(|r| {
                            vec![
                                r.name.clone(),
                                r.rtype.clone(),
                                r.ttl.to_string(),
                                r.value.clone(),
                            ]
                        })
                        .collect(),
                );
            }
            Ok(())
        }
        DnsCmd::Records {
            action:
                Some(DnsRecordsCmd::Add {
                    name,
                    rtype,
                    value,
                    ttl,
                }),
        } => add(ctx, as_json, &name, &rtype, &value, ttl).await,
        DnsCmd::Txt(DnsTxtCmd::Set { name, value, ttl }) => {
            add(ctx, as_json, &name, "TXT", &value, ttl).await
        }
        DnsCmd::Records {
            action: Some(DnsRecordsCmd::Remove { name, rtype, value }),
        } => remove(ctx, as_json, &name, &rtype, value.as_deref()).await,
        DnsCmd::Txt(DnsTxtCmd::Clear { name, value }) => {
            remove(ctx, as_json, &name, "TXT", value.as_deref()).await
        }
    }
}

async fn add(
    ctx: &Context,
    as_json: bool,
    name: &str,
    rtype: &str,
    value: &str,
    ttl: Option<i64>,
) -> Result<(), Fatal> {
    let rec = ctx
        .platform
        .add_dns_record(name, rtype, value, ttl, &Actor::cli())
        .await?;
    if as_json {
        output::json(&rec);
    } else {
        println!("{} {} {} {:?}", rec.name, rec.ttl, rec.rtype, rec.value);
    }
    Ok(())
}

async fn remove(
    ctx: &Context,
    as_json: bool,
    name: &str,
    rtype: &str,
    value: Option<&str>,
) -> Result<(), Fatal> {
    let n = ctx
        .platform
        .remove_dns_records(name, rtype, value, &Actor::cli())
        .await?;
    if as_json {
        output::json(&json!({"removed": n}));
    } else {
        println!("removed {n} record(s)");
    }
    Ok(())
}
