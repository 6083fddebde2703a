//! Metrics of the AAA engine.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::ids::TenantId;
use crate::metrics::Metrics;

/// Drop reason label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: String,
}

/// Authentication result labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// PAP, CHAP, MSCHAPv2.
    pub method: String,
    /// accept or the reject reason.
    pub result: String,
}

/// Accounting status label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AcctLabel {
    /// start, stop, interim, on, off.
    pub status: String,
}

/// Tenant label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    /// Tenant id.
    pub tenant: String,
}

/// The engine's counters.
#[derive(Clone, Debug, Default)]
pub struct AaaMetrics {
    drops: Family<ReasonLabel, Counter>,
    auth: Family<AuthLabels, Counter>,
    acct: Family<AcctLabel, Counter>,
    duplicates: Counter,
    throttled: Family<TenantLabel, Counter>,
}

impl AaaMetrics {
    /// Counters registered in `m`.
    pub fn register(m: &Metrics) -> Self {
        let s = Self::default();
        m.with_registry(|r| {
            r.register(
                "radius_dropped",
                "RADIUS datagrams dropped, by reason",
                s.drops.clone(),
            );
            r.register(
                "radius_auth",
                "Access-Requests answered, by method and result",
                s.auth.clone(),
            );
            r.register(
                "radius_accounting",
                "Accounting-Requests stored, by status type",
                s.acct.clone(),
            );
            r.register(
                "radius_duplicates",
                "Retransmitted requests answered from the reply cache",
                s.duplicates.clone(),
            );
            r.register(
                "radius_tenant_throttled",
                "Requests dropped by the per-tenant budget",
                s.throttled.clone(),
            );
        });
        s
    }

    pub(super) fn dropped(&self, reason: &str) {
        self.drops
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub(super) fn auth(&self, method: &str, result: &str) {
        self.auth
            .get_or_create(&AuthLabels {
                method: method.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    pub(super) fn accounting(&self, status: u32) {
        let s = match status {
            1 => "start",
            2 => "stop",
            3 => "interim",
            7 => "on",
            8 => "off",
            _ => "other",
        };
        self.acct
            .get_or_create(&AcctLabel {
                status: s.to_owned(),
            })
            .inc();
    }

    pub(super) fn duplicate(&self) {
        self.duplicates.inc();
    }

    pub(super) fn tenant_throttled(&self, t: TenantId) {
        self.throttled
            .get_or_create(&TenantLabel {
                tenant: t.to_string(),
            })
            .inc();
    }
}
