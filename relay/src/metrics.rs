//! Relay metrics (prometheus-client), registered into a sub-registry the caller passes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Where a handshake initiation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Global limiter under load: a cookie reply was sent instead (mac2 missing or stale).
    Cookie,
    /// Per-source-address budget spent.
    SourceBudget,
    /// Does not open with the relay key.
    Invalid,
    /// Public key of no configured peer.
    UnknownKey,
    /// The peer's tenant is past its suspension drain (or deleted).
    TenantDrained,
    /// Per-tenant budget spent.
    TenantBudget,
    /// Timestamp not newer than the newest accepted one.
    Replay,
    /// No free peer index (16M live tunnels).
    NoIndex,
}

impl Stage {
    /// Every stage, in admission order.
    pub const ALL: [Stage; 8] = [
        Stage::Cookie,
        Stage::SourceBudget,
        Stage::Invalid,
        Stage::UnknownKey,
        Stage::TenantDrained,
        Stage::TenantBudget,
        Stage::Replay,
        Stage::NoIndex,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Cookie => "cookie",
            Stage::SourceBudget => "source_budget",
            Stage::Invalid => "invalid",
            Stage::UnknownKey => "unknown_key",
            Stage::TenantDrained => "tenant_drained",
            Stage::TenantBudget => "tenant_budget",
            Stage::Replay => "replay",
            Stage::NoIndex => "no_index",
        }
    }
}

/// `stage` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// Stage.
    pub stage: String,
}

/// `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Reason.
    pub reason: String,
}

/// `tenant` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// Tenant id.
    pub tenant: String,
}

/// The relay's metric families (cheap to clone; clones share values).
#[derive(Clone, Debug, Default)]
pub struct RelayMetrics {
    /// Peers in the table.
    pub peers_configured: Gauge,
    /// Peers with a live tunnel (`Tunn`).
    pub peers_connected: Gauge,
    /// Handshake initiations answered.
    pub handshakes_ok: Counter,
    /// Handshake initiations refused, by stage.
    pub handshakes_rejected: Family<StageLabels, Counter>,
    /// Cookie replies sent.
    pub cookies_sent: Counter,
    /// Packets dropped, by reason.
    pub packets_dropped: Family<ReasonLabels, Counter>,
    /// RADIUS requests through a tunnel, by tenant.
    pub radius_requests: Family<TenantLabels, Counter>,
}

impl RelayMetrics {
    /// The counters a node reports with its heartbeat (what the operator console shows).
    pub fn stats(&self) -> saas_core::model::RelayStats {
        let drops = Stage::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), self.rejected(*s)))
            .collect();
        saas_core::model::RelayStats {
            peers_configured: self.peers_configured.get(),
            peers_connected: self.peers_connected.get(),
            handshakes_ok: self.handshakes_ok.get(),
            cookies_sent: self.cookies_sent.get(),
            drops,
        }
    }

    /// Registers every family into `registry` (give it a `relay` sub-registry).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "peers_configured",
            "WireGuard peers known to this relay",
            self.peers_configured.clone(),
        );
        registry.register(
            "peers_connected",
            "WireGuard peers with a live tunnel",
            self.peers_connected.clone(),
        );
        registry.register(
            "handshakes_ok",
            "Handshake initiations answered",
            self.handshakes_ok.clone(),
        );
        registry.register(
            "handshakes_rejected",
            "Handshake initiations refused, by admission stage",
            self.handshakes_rejected.clone(),
        );
        registry.register(
            "cookies_sent",
            "Cookie replies sent under load",
            self.cookies_sent.clone(),
        );
        registry.register(
            "packets_dropped",
            "Packets dropped, by reason",
            self.packets_dropped.clone(),
        );
        registry.register(
            "radius_requests",
            "RADIUS requests received through a tunnel, by tenant",
            self.radius_requests.clone(),
        );
    }

    /// Counts a refused initiation.
    pub fn reject(&self, stage: Stage) {
        self.handshakes_rejected
            .get_or_create(&StageLabels {
                stage: stage.as_str().into(),
            })
            .inc();
    }

    /// Counts a dropped packet.
    pub fn drop_packet(&self, reason: crate::vnet::DropReason) {
        self.packets_dropped
            .get_or_create(&ReasonLabels {
                reason: reason.as_str().into(),
            })
            .inc();
    }

    /// Refused initiations at `stage` so far (tests, status).
    pub fn rejected(&self, stage: Stage) -> u64 {
        self.handshakes_rejected
            .get_or_create(&StageLabels {
                stage: stage.as_str().into(),
            })
            .get()
    }

    /// Dropped packets for `reason` so far.
    pub fn dropped(&self, reason: crate::vnet::DropReason) -> u64 {
        self.packets_dropped
            .get_or_create(&ReasonLabels {
                reason: reason.as_str().into(),
            })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_carry_every_stage() {
        let m = RelayMetrics::default();
        m.reject(Stage::UnknownKey);
        m.reject(Stage::UnknownKey);
        m.reject(Stage::Replay);
        m.handshakes_ok.inc();
        m.peers_configured.set(3);
        let s = m.stats();
        assert_eq!(s.drops.len(), Stage::ALL.len());
        assert_eq!(s.drops["unknown_key"], 2);
        assert_eq!(s.drops["replay"], 1);
        assert_eq!(s.drops["source_budget"], 0);
        assert_eq!((s.handshakes_ok, s.peers_configured), (1, 3));
    }
}
