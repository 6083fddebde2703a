//! Prometheus metrics shared by every role: components register their families at start-up and
//! the admin listener encodes the registry on `/metrics`.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of `proxpanel_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// Crate version.
    pub version: String,
    /// Store backend.
    pub store: String,
    /// Cache implementation.
    pub cache: String,
}

/// Labels by tenant status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// Tenant status.
    pub status: String,
}

/// The registry plus the platform-wide metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// Tenants by status, refreshed by the workers role.
    pub tenants: Family<StatusLabels, Gauge>,
    /// Position of the event bus.
    pub bus_position: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A registry with `proxpanel_build_info` and the platform gauges.
    pub fn new(store: &str, cache: &str) -> Self {
        let mut registry = Registry::with_prefix("proxpanel");
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                store: store.into(),
                cache: cache.into(),
            })
            .set(1);
        registry.register("build_info", "Build and runtime information", build);
        let tenants = Family::<StatusLabels, Gauge>::default();
        registry.register("tenants", "Tenants by status", tenants.clone());
        let bus_position = Gauge::default();
        registry.register(
            "bus_position",
            "Id of the newest event delivered by the bus",
            bus_position.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            tenants,
            bus_position,
        }
    }

    /// Registers more metrics (call at start-up).
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut r)
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn build_info_is_exposed() {
        let m = super::Metrics::new("sqlite", "memory");
        m.tenants
            .get_or_create(&super::StatusLabels {
                status: "active".into(),
            })
            .set(3);
        let text = m.encode();
        assert!(text.contains("proxpanel_build_info{"), "{text}");
        assert!(text.contains("store=\"sqlite\""));
        assert!(text.contains("proxpanel_tenants{status=\"active\"} 3"));
        assert!(text.ends_with("# EOF\n"));
    }
}
