//! DNS metrics: queries by type and rcode, answer latency, rate-limited answers, zone state.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `qtype` and `rcode` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    /// Query type (A, AAAA, TXT, ... or OTHER).
    pub qtype: &'static str,
    /// Response code (NOERROR, NXDOMAIN, REFUSED, ... or DROPPED).
    pub rcode: &'static str,
}

/// The DNS role's metric families (clones share values).
#[derive(Clone, Debug)]
pub struct DnsMetrics {
    /// Queries answered, by type and rcode.
    pub queries: Family<QueryLabels, Counter>,
    /// Seconds from receiving a query to having its answer.
    pub latency: Histogram,
    /// Answers dropped or truncated by response-rate limiting.
    pub rate_limited: Counter,
    /// Answers served from the pre-encoded cache.
    pub cache_hits: Counter,
    /// SOA serial of the zone served.
    pub serial: Gauge,
    /// Names in the zone.
    pub names: Gauge,
}

impl Default for DnsMetrics {
    fn default() -> Self {
        Self {
            queries: Family::default(),
            // 10 µs .. ~80 ms
            latency: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                1e-5, 3.0, 9,
            )),
            rate_limited: Counter::default(),
            cache_hits: Counter::default(),
            serial: Gauge::default(),
            names: Gauge::default(),
        }
    }
}

impl DnsMetrics {
    /// Registers the families under `dns_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("dns");
        r.register(
            "queries",
            "DNS queries answered, by type and rcode",
            m.queries.clone(),
        );
        r.register("answer_seconds", "DNS answer latency", m.latency.clone());
        r.register(
            "rate_limited",
            "DNS answers dropped or truncated by response-rate limiting",
            m.rate_limited.clone(),
        );
        r.register(
            "cache_hits",
            "DNS answers served pre-encoded",
            m.cache_hits.clone(),
        );
        r.register(
            "zone_serial",
            "SOA serial of the zone served",
            m.serial.clone(),
        );
        r.register("zone_names", "Names in the zone served", m.names.clone());
        m
    }

    /// Counts one answer.
    pub fn count(&self, qtype: u16, rcode: &'static str) {
        self.queries
            .get_or_create(&QueryLabels {
                qtype: qtype_label(qtype),
                rcode,
            })
            .inc();
    }
}

/// Label of a query type.
pub fn qtype_label(t: u16) -> &'static str {
    match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        65 => "HTTPS",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => "OTHER",
    }
}

/// Label of a response code (the low four bits of the header).
pub fn rcode_label(byte3: u8) -> &'static str {
    match byte3 & 0x0F {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        9 => "NOTAUTH",
        _ => "OTHER",
    }
}
