//! Peer creation for the API: the same steps as `proxpanel peer add` (key pair when the router
//! brings none, relay node key, DESIGN §8 peer object, RouterOS script), behind the
//! `PeerProvisioner` trait of saas-core that the API calls.

use async_trait::async_trait;
use saas_core::config::Config;
use saas_core::platform::{PeerProvisioner, PlatformError, TenantOps};
use saas_core::store::Store;
use serde_json::{Value, json};

use crate::{peer_cmd, relay_role};

/// The binary's peer provisioner (it knows the relay's key and settings).
#[derive(Debug)]
pub struct ApiPeers {
    pub store: Store,
    pub config: Config,
}

#[async_trait]
impl PeerProvisioner for ApiPeers {
    async fn add_peer(
        &self,
        ops: &TenantOps,
        nas_name: &str,
        public_key: Option<&str>,
    ) -> Result<Value, PlatformError> {
        let (public, private) = match public_key {
            Some(k) => {
                let key = relay::keys::decode(k).map_err(|_| {
                    PlatformError::Invalid(format!(
                        "public_key {k:?} is not a WireGuard public key (44 characters of base64, as `wg pubkey` or RouterOS prints it)"
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
        let (_, relay_public) = relay_role::node_key(&self.store, &self.config)
            .await
            .map_err(|f| PlatformError::Invalid(f.message))?;
        let peer = ops
            .add_peer(nas_name, &public, &self.config.relay_node)
            .await?;
        let n = ops.nas_named(nas_name).await?;
        let mut v = relay_role::peer_object(
            &self.config,
            ops.tenant().slug.as_str(),
            &n,
            &peer,
            &relay_public,
        );
        let script = peer_cmd::script_for(&self.config, ops, &n, &v, private.as_deref())
            .await
            .map_err(|f| PlatformError::Invalid(f.message))?;
        if let Some(p) = &private {
            v["private_key"] = json!(p);
        }
        v["routeros_script"] = json!(script);
        Ok(v)
    }

    async fn script(&self, ops: &TenantOps, nas_name: &str) -> Result<Value, PlatformError> {
        peer_cmd::peer_script(&self.store, &self.config, ops, nas_name)
            .await
            .map_err(|f| PlatformError::Invalid(f.message))
    }
}
