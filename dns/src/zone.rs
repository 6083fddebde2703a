//! The zone model: one immutable snapshot of `<base>` built from the store (live tenants, relay
//! node endpoints, managed records) and the settings. The server swaps in a new snapshot on
//! every change; lookups never touch the store.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType};
use saas_core::model::DnsRecord;

/// Errors while building a zone.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// A configured name is not a DNS name.
    #[error("{what} {name:?} is not a valid DNS name: {reason}")]
    BadName {
        /// Which setting.
        what: &'static str,
        /// The name.
        name: String,
        /// Parser message.
        reason: String,
    },
}

/// Settings of the zone (from the configuration; DESIGN §7).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ZoneSettings {
    /// The SaaS zone, e.g. `saas.example.com`.
    pub base: String,
    /// `(host name, address)` of the name servers (NS records and glue).
    pub nameservers: Vec<(String, IpAddr)>,
    /// Addresses of the apex, `operator.<base>` and every tenant name.
    pub ingress: Vec<IpAddr>,
    /// Address of `SLUG.relay.<base>` when the tenant's relay node has no known endpoint.
    pub default_relay: Option<IpAddr>,
    /// TTL of generated address records.
    pub ttl: u32,
}

/// What the store says (read through the system scope).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ZoneData {
    /// Live tenants (active and suspended): slug and the relay node holding its peers.
    pub tenants: Vec<(String, Option<String>)>,
    /// Relay node name → public endpoint address.
    pub relays: BTreeMap<String, IpAddr>,
    /// Managed records: `(name, type, value, ttl)`.
    pub records: Vec<(String, String, String, u32)>,
}

impl ZoneData {
    /// Converts store rows (records outside any zone are kept; the build skips them).
    pub fn from_store(
        tenants: Vec<(saas_core::Slug, Option<String>)>,
        relays: Vec<(String, Option<String>)>,
        records: Vec<DnsRecord>,
    ) -> Self {
        let relays = relays
            .into_iter()
            .filter_map(|(name, ep)| Some((name, endpoint_ip(ep.as_deref()?)?)))
            .collect();
        let mut records: Vec<_> = records
            .into_iter()
            .map(|r| {
                (
                    r.name,
                    r.rtype,
                    r.value,
                    u32::try_from(r.ttl.max(0)).unwrap_or(u32::MAX),
                )
            })
            .collect();
        records.sort();
        Self {
            tenants: tenants
                .into_iter()
                .map(|(s, n)| (s.as_str().to_owned(), n))
                .collect(),
            relays,
            records,
        }
    }

    /// Fingerprint of the content (the serial changes only when this does).
    pub fn fingerprint(&self, settings: &ZoneSettings) -> u64 {
        let mut h = DefaultHasher::new();
        self.hash(&mut h);
        settings.hash(&mut h);
        h.finish()
    }
}

/// The IP of an `IP:port` (or bare IP) endpoint.
pub fn endpoint_ip(ep: &str) -> Option<IpAddr> {
    ep.parse::<std::net::SocketAddr>()
        .map(|s| s.ip())
        .ok()
        .or_else(|| ep.parse().ok())
}

/// The answer of the zone for one name and type.
#[derive(Debug)]
pub enum Answer {
    /// RRsets to answer with, plus additional-section records (glue).
    Records(Vec<Arc<RecordSet>>, Vec<Arc<RecordSet>>),
    /// The name exists with other types.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// Not in this zone.
    OutOfZone,
}

/// One node: its RRsets (empty for an empty non-terminal).
#[derive(Debug, Default)]
struct Node {
    sets: Vec<Arc<RecordSet>>,
}

/// An immutable zone snapshot.
#[derive(Debug)]
pub struct Zone {
    origin: LowerName,
    serial: u32,
    fingerprint: u64,
    nodes: HashMap<LowerName, Node>,
    glue: Vec<Arc<RecordSet>>,
    skipped: Vec<String>,
    /// Pre-encoded answers of this snapshot (dropped with it).
    pub(crate) cache: crate::fast::AnswerCache,
}

const SOA_TTL: u32 = 3600;
/// Negative-caching TTL: a deleted tenant disappears from resolvers' caches within a minute.
const NEGATIVE_TTL: u32 = 60;

fn name(what: &'static str, s: &str) -> Result<Name, ZoneError> {
    let mut n = Name::from_ascii(s).map_err(|e| ZoneError::BadName {
        what,
        name: s.to_owned(),
        reason: e.to_string(),
    })?;
    n.set_fqdn(true);
    Ok(n)
}

struct Builder {
    origin: Name,
    sets: BTreeMap<(LowerName, RecordType), RecordSet>,
}

impl Builder {
    fn add(&mut self, owner: &Name, ttl: u32, rdata: RData) {
        let rtype = rdata.record_type();
        let set = self
            .sets
            .entry((LowerName::new(owner), rtype))
            .or_insert_with(|| RecordSet::with_ttl(owner.clone(), rtype, ttl));
        set.add_rdata(rdata);
    }

    fn add_addrs(&mut self, owner: &Name, ttl: u32, addrs: &[IpAddr]) {
        for a in addrs {
            let rdata = match a {
                IpAddr::V4(v4) => RData::A(A(*v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
            };
            self.add(owner, ttl, rdata);
        }
    }
}

/// Splits a long TXT value into 255-byte character-strings.
fn txt(value: &str) -> RData {
    let mut parts = Vec::new();
    let mut rest = value;
    while rest.len() > 255 {
        let mut cut = 255;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        parts.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    parts.push(rest.to_owned());
    RData::TXT(TXT::new(parts))
}

impl Zone {
    /// Builds the zone from settings and store data, with the given SOA serial.
    pub fn build(settings: &ZoneSettings, data: &ZoneData, serial: u32) -> Result<Zone, ZoneError> {
        let origin = name("PROXPANEL_BASE_DOMAIN", &settings.base)?;
        let mut b = Builder {
            origin: origin.clone(),
            sets: BTreeMap::new(),
        };
        let ttl = settings.ttl;
        let join = |label: &str| -> Result<Name, ZoneError> {
            name("name", &format!("{label}.{}", settings.base))
        };

        // SOA and NS at the apex; glue for name servers inside the zone.
        let mut ns_names = Vec::new();
        for (host, _) in &settings.nameservers {
            let n = name("PROXPANEL_DNS_NAMESERVERS", host)?;
            if !ns_names.contains(&n) {
                ns_names.push(n);
            }
        }
        let mname = ns_names.first().cloned().unwrap_or_else(|| origin.clone());
        let rname = join("hostmaster")?;
        b.add(
            &origin,
            SOA_TTL,
            RData::SOA(SOA::new(
                mname,
                rname,
                serial,
                3600,
                600,
                1_209_600,
                NEGATIVE_TTL,
            )),
        );
        for n in &ns_names {
            b.add(&origin, SOA_TTL, RData::NS(NS(n.clone())));
        }
        for (host, ip) in &settings.nameservers {
            let n = name("PROXPANEL_DNS_NAMESERVERS", host)?;
            if origin.zone_of(&n) {
                b.add_addrs(&n, SOA_TTL, &[*ip]);
            }
        }

        b.add_addrs(&origin, ttl, &settings.ingress);
        b.add_addrs(&join("operator")?, ttl, &settings.ingress);
        let mut skipped = Vec::new();
        for (slug, node) in &data.tenants {
            let Ok(host) = join(slug) else {
                skipped.push(format!("tenant {slug:?}: not a DNS label"));
                continue;
            };
            b.add_addrs(&host, ttl, &settings.ingress);
            let relay_ip = node
                .as_ref()
                .and_then(|n| data.relays.get(n).copied())
                .or(settings.default_relay);
            if let (Some(ip), Ok(relay)) = (relay_ip, join(&format!("{slug}.relay"))) {
                b.add_addrs(&relay, ttl, &[ip]);
            }
        }

        // Managed records (ACME challenges, CAA, operator extras) inside the zone.
        for (owner, rtype, value, rttl) in &data.records {
            let Ok(n) = name("record", owner) else {
                skipped.push(format!("{owner} {rtype}: not a DNS name"));
                continue;
            };
            if !origin.zone_of(&n) {
                skipped.push(format!("{owner} {rtype}: outside {}", settings.base));
                continue;
            }
            let rdata = match rtype.as_str() {
                "TXT" => Ok(txt(value)),
                other => match other.parse::<RecordType>() {
                    Ok(t) if !matches!(t, RecordType::SOA | RecordType::NS) => {
                        RData::try_from_str(t, value).map_err(|e| e.to_string())
                    }
                    _ => Err("type not managed".to_owned()),
                },
            };
            match rdata {
                Ok(r) => b.add(&n, *rttl, r),
                Err(e) => skipped.push(format!("{owner} {rtype} {value:?}: {e}")),
            }
        }

        let mut nodes: HashMap<LowerName, Node> = HashMap::new();
        let mut glue = Vec::new();
        let ns_lower: Vec<LowerName> = ns_names.iter().map(LowerName::new).collect();
        for ((owner, rtype), set) in b.sets {
            let set = Arc::new(set);
            if matches!(rtype, RecordType::A | RecordType::AAAA) && ns_lower.contains(&owner) {
                glue.push(set.clone());
            }
            // Every ancestor up to the apex exists (empty non-terminals answer NODATA).
            let mut up = owner.base_name();
            while b.origin.zone_of(&Name::from(&up)) && up != LowerName::new(&b.origin) {
                nodes.entry(up.clone()).or_default();
                up = up.base_name();
            }
            nodes.entry(owner).or_default().sets.push(set);
        }
        Ok(Zone {
            origin: LowerName::new(&origin),
            serial,
            fingerprint: data.fingerprint(settings),
            nodes,
            glue,
            skipped,
            cache: Default::default(),
        })
    }

    /// The zone's origin.
    pub fn origin(&self) -> &LowerName {
        &self.origin
    }

    /// SOA serial.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Content fingerprint the zone was built from.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Records that could not be served, with the reason.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Number of names (including empty non-terminals).
    pub fn names(&self) -> usize {
        self.nodes.len()
    }

    fn set(&self, owner: &LowerName, rtype: RecordType) -> Option<&Arc<RecordSet>> {
        self.nodes
            .get(owner)?
            .sets
            .iter()
            .find(|s| s.record_type() == rtype)
    }

    /// Answers one name and type. ANY gets one RRset (RFC 8482: minimal answers).
    pub fn lookup(&self, qname: &LowerName, qtype: RecordType) -> Answer {
        if !self.origin.zone_of(qname) {
            return Answer::OutOfZone;
        }
        let Some(node) = self.nodes.get(qname) else {
            return Answer::NxDomain;
        };
        if node.sets.is_empty() {
            return Answer::NoData;
        }
        let pick = |t: RecordType| node.sets.iter().find(|s| s.record_type() == t).cloned();
        let found = match qtype {
            RecordType::ANY => [RecordType::A, RecordType::AAAA, RecordType::SOA]
                .into_iter()
                .find_map(pick)
                .or_else(|| node.sets.first().cloned()),
            t => pick(t).or_else(|| pick(RecordType::CNAME)),
        };
        match found {
            Some(set) => {
                let extra = if set.record_type() == RecordType::NS {
                    self.glue.clone()
                } else {
                    Vec::new()
                };
                Answer::Records(vec![set], extra)
            }
            None => Answer::NoData,
        }
    }

    /// The SOA record.
    pub fn soa(&self) -> Option<&Record> {
        self.set(&self.origin, RecordType::SOA)?
            .records_without_rrsigs()
            .next()
    }

    /// Every record of the zone for a transfer: SOA first, then the rest (the caller ends with
    /// the SOA again).
    pub fn transfer_records(&self) -> Vec<Record> {
        let mut out: Vec<Record> = self.soa().into_iter().cloned().collect();
        let mut owners: Vec<&LowerName> = self.nodes.keys().collect();
        owners.sort();
        for owner in owners {
            for set in &self.nodes[owner].sets {
                if set.record_type() != RecordType::SOA {
                    out.extend(set.records_without_rrsigs().cloned());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ZoneSettings {
        ZoneSettings {
            base: "saas.test".into(),
            nameservers: vec![("ns1.saas.test".into(), "192.0.2.53".parse().unwrap())],
            ingress: vec![
                "192.0.2.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ],
            default_relay: Some("192.0.2.20".parse().unwrap()),
            ttl: 300,
        }
    }

    fn data() -> ZoneData {
        ZoneData {
            tenants: vec![
                ("acme".into(), Some("node-b".into())),
                ("beta".into(), None),
            ],
            relays: [("node-b".to_owned(), "198.51.100.7".parse().unwrap())].into(),
            records: vec![
                (
                    "_acme-challenge.saas.test".into(),
                    "TXT".into(),
                    "token".into(),
                    60,
                ),
                (
                    "saas.test".into(),
                    "CAA".into(),
                    "0 issue \"letsencrypt.org\"".into(),
                    300,
                ),
                ("elsewhere.example".into(), "TXT".into(), "x".into(), 60),
            ],
        }
    }

    fn lower(s: &str) -> LowerName {
        LowerName::new(&Name::from_ascii(s).unwrap())
    }

    fn rdatas(a: Answer) -> Vec<String> {
        match a {
            Answer::Records(sets, _) => sets
                .iter()
                .flat_map(|s| s.records_without_rrsigs().map(|r| r.data.to_string()))
                .collect(),
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn tenants_relays_and_records_answer() {
        let z = Zone::build(&settings(), &data(), 7).unwrap();
        assert_eq!(
            rdatas(z.lookup(&lower("acme.saas.test."), RecordType::A)),
            ["192.0.2.10"]
        );
        assert_eq!(
            rdatas(z.lookup(&lower("ACME.saas.test."), RecordType::AAAA)),
            ["2001:db8::10"]
        );
        assert_eq!(
            rdatas(z.lookup(&lower("acme.relay.saas.test."), RecordType::A)),
            ["198.51.100.7"]
        );
        assert_eq!(
            rdatas(z.lookup(&lower("beta.relay.saas.test."), RecordType::A)),
            ["192.0.2.20"]
        );
        assert_eq!(
            rdatas(z.lookup(&lower("_acme-challenge.saas.test."), RecordType::TXT)),
            ["token"]
        );
        assert!(matches!(
            z.lookup(&lower("gone.saas.test."), RecordType::A),
            Answer::NxDomain
        ));
        assert!(matches!(
            z.lookup(&lower("acme.saas.test."), RecordType::TXT),
            Answer::NoData
        ));
        // Empty non-terminal.
        assert!(matches!(
            z.lookup(&lower("relay.saas.test."), RecordType::A),
            Answer::NoData
        ));
        assert!(matches!(
            z.lookup(&lower("example.org."), RecordType::A),
            Answer::OutOfZone
        ));
        assert_eq!(z.skipped().len(), 1, "{:?}", z.skipped());
        assert_eq!(
            z.soa().map(|r| r.data.to_string().contains(" 7 ")),
            Some(true)
        );
    }

    #[test]
    fn ns_answers_carry_glue_and_any_is_minimal() {
        let z = Zone::build(&settings(), &data(), 1).unwrap();
        match z.lookup(&lower("saas.test."), RecordType::NS) {
            Answer::Records(sets, glue) => {
                assert_eq!(sets[0].record_type(), RecordType::NS);
                assert_eq!(glue.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        match z.lookup(&lower("saas.test."), RecordType::ANY) {
            Answer::Records(sets, _) => assert_eq!(sets.len(), 1),
            other => panic!("{other:?}"),
        }
        let xfr = z.transfer_records();
        assert_eq!(xfr[0].record_type(), RecordType::SOA);
        assert!(xfr.len() > 10);
    }

    #[test]
    fn fingerprint_follows_content() {
        let s = settings();
        let mut d = data();
        let f1 = d.fingerprint(&s);
        d.tenants.push(("gamma".into(), None));
        assert_ne!(f1, d.fingerprint(&s));
    }
}
