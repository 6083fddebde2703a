//! Live updates: the zone is rebuilt from the store when the bus says tenants, peers or DNS
//! records changed (and every 30 s regardless, since events are hints); the serial moves only
//! when the content does.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use saas_core::bus::{Bus, kinds};
use saas_core::store::{Store, StoreError};
use tokio::sync::{broadcast, watch};

use crate::server::{DnsServer, stopped};
use crate::zone::{Zone, ZoneData, ZoneSettings};

/// Full re-read interval without events.
pub const RESYNC: Duration = Duration::from_secs(30);

/// Reads what the zone needs through the system scope (cross-tenant, read-only).
pub async fn load_zone_data(store: &Store) -> Result<ZoneData, StoreError> {
    let sys = store.system();
    Ok(ZoneData::from_store(
        sys.live_tenants().await?,
        sys.relay_endpoints().await?,
        sys.dns_records().await?,
    ))
}

/// The serial after `prev`: seconds since the epoch, or `prev + 1` when that is not larger
/// (several changes within a second, or a clock that went back).
pub fn next_serial(prev: u32) -> u32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    now.max(prev.wrapping_add(1)).max(1)
}

fn relevant(kind: &str) -> bool {
    matches!(
        kind,
        kinds::TENANT_CHANGED | kinds::DNS_CHANGED | kinds::PEER_CHANGED
    )
}

/// Rebuilds the zone when its content changed; returns whether it did.
pub async fn reload(
    server: &DnsServer,
    settings: &ZoneSettings,
    store: &Store,
) -> Result<bool, String> {
    let data = load_zone_data(store).await.map_err(|e| e.to_string())?;
    let current = server.zone();
    if data.fingerprint(settings) == current.fingerprint() {
        return Ok(false);
    }
    let zone =
        Zone::build(settings, &data, next_serial(current.serial())).map_err(|e| e.to_string())?;
    for s in zone.skipped() {
        tracing::warn!(record = %s, "dns: record not served");
    }
    tracing::info!(
        serial = zone.serial(),
        names = zone.names(),
        tenants = data.tenants.len(),
        "dns: zone updated"
    );
    server.replace(zone);
    Ok(true)
}

/// Follows the bus until `stop`, reloading on relevant events.
pub async fn follow(
    server: Arc<DnsServer>,
    settings: ZoneSettings,
    store: Store,
    bus: Bus,
    mut stop: watch::Receiver<bool>,
) {
    let mut rx = bus.subscribe();
    let mut tick = tokio::time::interval(RESYNC);
    tick.tick().await;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(e) if relevant(&e.kind) => {}
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {}
            _ = stopped(&mut stop) => return,
        }
        // One rebuild for a burst of events.
        while let Ok(e) = rx.try_recv() {
            let _ = e;
        }
        if let Err(e) = reload(&server, &settings, &store).await {
            tracing::warn!(error = %e, "dns: cannot reload the zone from the store; still serving the previous one");
        }
    }
}
