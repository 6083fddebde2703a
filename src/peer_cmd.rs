//! `proxpanel peer …` and `proxpanel relay show`.

use saas_core::platform::Actor;
use serde_json::json;

use crate::cli::PeerCmd;
use crate::context::Context;
use crate::relay_role::{self, ScriptInput};
use crate::{Fatal, output};

/// Default RouterOS API login created by the script when the NAS has none.
const API_USER: &str = "proxpanel";

fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..24)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// `relay show`.
pub async fn relay_show(ctx: &Context, as_json: bool) -> Result<(), Fatal> {
    let (_, public) = relay_role::node_key(&ctx.store, &ctx.config).await?;
    let v = json!({
        "node": ctx.config.relay_node,
        "public_key": relay::keys::encode(&public),
        "endpoint": ctx.config.wg_public_endpoint.map(|e| e.to_string()),
        "listen": ctx.config.wg_listen.addr().map(|a| a.to_string()),
    });
    if as_json {
        output::json(&v);
    } else {
        output::fields(&[
            ("node", ctx.config.relay_node.clone()),
            ("public key", relay::keys::encode(&public)),
            (
                "endpoint",
                ctx.config.wg_public_endpoint.map_or_else(
                    || "none (set PROXPANEL_WG_PUBLIC_ENDPOINT)".into(),
                    |e| e.to_string(),
                ),
            ),
        ]);
    }
    Ok(())
}

/// The script for a NAS, with its API login (created and stored when the NAS has none).
async fn script(
    ctx: &Context,
    ops: &saas_core::platform::TenantOps,
    nas: &saas_core::model::Nas,
    peer: &serde_json::Value,
    private_key: Option<&str>,
) -> Result<String, Fatal> {
    script_for(&ctx.config, ops, nas, peer, private_key).await
}

/// [`script`] with the configuration only (the API's peer creation uses it too).
pub async fn script_for(
    config: &saas_core::config::Config,
    ops: &saas_core::platform::TenantOps,
    nas: &saas_core::model::Nas,
    peer: &serde_json::Value,
    private_key: Option<&str>,
) -> Result<String, Fatal> {
    let scope = ops.scope();
    let secret = scope.nas_secret(nas.id).await?;
    let (user, password) = match (nas.api_user.clone(), scope.nas_api_password(nas.id).await?) {
        (Some(u), Some(p)) => (u, p),
        _ => {
            let (u, p) = (API_USER.to_owned(), random_password());
            scope.set_nas_api_credentials(nas.id, &u, &p).await?;
            (u, p)
        }
    };
    Ok(relay_role::routeros_script(&ScriptInput {
        peer,
        private_key,
        radius_secret: &secret,
        coa_port: nas.coa_port,
        api_user: &user,
        api_password: &password,
        interim_s: config.radius_interim_s,
    }))
}

/// The peer object of a tunnel NAS with its script again (CLI `peer script` and the panel's
/// "show the script again"); the caller audits.
pub async fn peer_script(
    store: &saas_core::store::Store,
    config: &saas_core::config::Config,
    ops: &saas_core::platform::TenantOps,
    nas: &str,
) -> Result<serde_json::Value, Fatal> {
    let (n, p) = ops.nas_peer(nas).await?;
    let p = p.ok_or_else(|| {
        Fatal::usage(format!(
            "NAS {nas:?} has no peer: add one with `proxpanel peer add`"
        ))
    })?;
    let (_, relay_public) = relay_role::node_key(store, config).await?;
    let mut v = relay_role::peer_object(config, ops.tenant().slug.as_str(), &n, &p, &relay_public);
    let s = script_for(config, ops, &n, &v, None).await?;
    v["routeros_script"] = json!(s);
    Ok(v)
}

fn ago(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let s = (saas_core::store::now() - t).num_seconds().max(0);
            match s {
                0..=119 => format!("{s} s ago"),
                120..=7199 => format!("{} min ago", s / 60),
                _ => format!("{} h ago", s / 3600),
            }
        }
    }
}

fn print_peer(v: &serde_json::Value) {
    let f = |k: &str| match &v[k] {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    output::fields(&[
        ("id", f("id")),
        ("public key", f("public_key")),
        ("tunnel address", f("tunnel_address")),
        ("relay public key", f("relay_public_key")),
        ("relay tunnel address", f("relay_tunnel_address")),
        (
            "relay endpoint",
            format!("{}:{}", f("relay_endpoint_ip"), f("relay_endpoint_port")),
        ),
        ("relay endpoint host", f("relay_endpoint_host")),
    ]);
}

/// `peer …`.
pub async fn peer(ctx: &Context, as_json: bool, cmd: PeerCmd) -> Result<(), Fatal> {
    match cmd {
        PeerCmd::Add {
            tenant,
            nas,
            public_key,
        } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            let (public, private) = match public_key {
                Some(k) => {
                    let key = relay::keys::decode(&k).map_err(|_| {
                        Fatal::usage(format!(
                            "--public-key {k:?} is not a WireGuard public key (44 characters of base64, as `wg pubkey` or RouterOS prints it)"
                        ))
                    })?;
                    (relay::keys::encode(&key), None)
                }
                None => {
                    let (secret, public) = relay::keys::generate();
                    (
                        relay::keys::encode(public.as_bytes()),
                        Some(relay::keys::encode(&secret.to_bytes())),
                    )
                }
            };
            let (_, relay_public) = relay_role::node_key(&ctx.store, &ctx.config).await?;
            let peer = ops.add_peer(&nas, &public, &ctx.config.relay_node).await?;
            let n = ops.nas_named(&nas).await?;
            let mut v = relay_role::peer_object(&ctx.config, &tenant, &n, &peer, &relay_public);
            let script = script(ctx, &ops, &n, &v, private.as_deref()).await?;
            if let Some(p) = &private {
                v["private_key"] = json!(p);
            }
            v["routeros_script"] = json!(script);
            if as_json {
                output::json(&v);
            } else {
                println!("peer for NAS {nas} added to {tenant}");
                print_peer(&v);
                if private.is_some() {
                    println!(
                        "The router's private key is in the script below; it is shown only now and never stored."
                    );
                }
                println!("Paste this into the router's terminal (RouterOS v7):\n");
                println!("{script}");
            }
        }
        PeerCmd::List { tenant } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            let (_, relay_public) = relay_role::node_key(&ctx.store, &ctx.config).await?;
            let nas = ops.scope().nas_list().await?;
            let mut items = Vec::new();
            for p in ops.scope().peers().await? {
                if let Some(n) = nas.iter().find(|n| n.id == p.nas_id) {
                    items.push((
                        n.clone(),
                        p.clone(),
                        relay_role::peer_object(&ctx.config, &tenant, n, &p, &relay_public),
                    ));
                }
            }
            if as_json {
                let items: Vec<_> = items.into_iter().map(|(_, _, v)| v).collect();
                output::json(&json!({"items": items, "next_cursor": null}));
            } else {
                output::table(
                    &[
                        "NAS",
                        "TUNNEL",
                        "STATE",
                        "ENDPOINT",
                        "LATEST HANDSHAKE",
                        "RX",
                        "TX",
                        "PUBLIC KEY",
                    ],
                    items
                        .into_iter()
                        .map(|(n, p, _)| {
                            vec![
                                n.name,
                                p.tunnel_address,
                                n.tunnel_state.to_string(),
                                p.endpoint.unwrap_or_else(|| "-".into()),
                                ago(p.last_handshake),
                                p.rx_bytes.to_string(),
                                p.tx_bytes.to_string(),
                                p.public_key,
                            ]
                        })
                        .collect(),
                );
            }
        }
        PeerCmd::Remove { tenant, nas } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            let p = ops.remove_peer(&nas).await?;
            if as_json {
                output::json(&json!({"removed": p.id, "nas": nas}));
            } else {
                println!("peer of NAS {nas} removed from {tenant}");
            }
        }
        PeerCmd::Script { tenant, nas } => {
            let ops = ctx.platform.tenant_ops(&tenant, Actor::cli()).await?;
            let v = peer_script(&ctx.store, &ctx.config, &ops, &nas).await?;
            // The script carries the RADIUS secret and API password: showing it is audited.
            ops.audit("peer.script", &nas).await?;
            let s = v["routeros_script"].as_str().unwrap_or_default().to_owned();
            if as_json {
                output::json(&json!({"routeros_script": s}));
            } else {
                println!("{s}");
            }
        }
    }
    Ok(())
}
