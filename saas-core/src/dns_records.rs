//! Managed DNS records (ACME challenges, operator extras): the operations shared by the CLI, the
//! operator API and the ACME client. Each change is audited and announced as `dns.changed`, so a
//! running DNS role answers with it within a second.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::json;

use crate::bus::kinds;
use crate::model::DnsRecord;
use crate::platform::{Actor, Platform, PlatformError};

/// Record types an operator may add (the zone's SOA, NS and tenant names are generated).
pub const MANAGED_TYPES: [&str; 6] = ["TXT", "A", "AAAA", "CAA", "CNAME", "MX"];

/// Default TTL of managed records; ACME challenges want a short one.
pub const DEFAULT_TTL: i64 = 60;

type Result<T, E = PlatformError> = std::result::Result<T, E>;

/// Normalises a record owner name: lower case, no trailing dot, valid DNS labels.
pub fn normalize_name(name: &str) -> Result<String> {
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let bad = || {
        PlatformError::Invalid(format!(
            "{name:?} is not a DNS name (labels of 1-63 letters, digits, '-' or '_', 253 characters at most)"
        ))
    };
    if n.is_empty() || n.len() > 253 {
        return Err(bad());
    }
    for label in n.split('.') {
        if label.is_empty()
            || label.len() > 63
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*')
        {
            return Err(bad());
        }
    }
    Ok(n)
}

/// Checks a value against its type where the form is simple (A, AAAA, TXT); the DNS role
/// skips (and logs) any value it cannot encode.
pub fn check_value(rtype: &str, value: &str) -> Result<()> {
    let ok = match rtype {
        "A" => value.parse::<Ipv4Addr>().is_ok(),
        "AAAA" => value.parse::<Ipv6Addr>().is_ok(),
        "TXT" => !value.is_empty() && value.len() <= 4000,
        _ => !value.trim().is_empty(),
    };
    if ok {
        Ok(())
    } else {
        Err(PlatformError::Invalid(format!(
            "{value:?} is not a valid {rtype} value"
        )))
    }
}

impl Platform {
    /// Every managed record.
    pub async fn dns_records(&self) -> Result<Vec<DnsRecord>> {
        Ok(self.store().system().dns_records().await?)
    }

    /// Adds a record (no-op when the same name, type and value exist); audited, announced.
    pub async fn add_dns_record(
        &self,
        name: &str,
        rtype: &str,
        value: &str,
        ttl: Option<i64>,
        actor: &Actor,
    ) -> Result<DnsRecord> {
        let name = normalize_name(name)?;
        let rtype = rtype.trim().to_ascii_uppercase();
        if !MANAGED_TYPES.contains(&rtype.as_str()) {
            return Err(PlatformError::Invalid(format!(
                "record type {rtype:?} cannot be managed; use one of {}",
                MANAGED_TYPES.join(", ")
            )));
        }
        check_value(&rtype, value)?;
        let ttl = ttl.unwrap_or(DEFAULT_TTL);
        if !(0..=86_400 * 7).contains(&ttl) {
            return Err(PlatformError::Invalid(format!(
                "TTL {ttl} must be between 0 and 604800 seconds"
            )));
        }
        if let Some(r) = self
            .dns_records()
            .await?
            .into_iter()
            .find(|r| r.name == name && r.rtype == rtype && r.value == value)
        {
            return Ok(r);
        }
        let p = self.store().platform();
        let rec = p.add_dns_record(None, &name, &rtype, value, ttl).await?;
        p.audit(
            &actor.0,
            "dns.add",
            Some(&format!("{name} {rtype}")),
            Some(&json!({"value": value}).to_string()),
        )
        .await?;
        self.announce_dns(&name).await?;
        Ok(rec)
    }

    /// Removes records of a name and type (every value, or only `value`); returns how many.
    pub async fn remove_dns_records(
        &self,
        name: &str,
        rtype: &str,
        value: Option<&str>,
        actor: &Actor,
    ) -> Result<u64> {
        let name = normalize_name(name)?;
        let rtype = rtype.trim().to_ascii_uppercase();
        let p = self.store().platform();
        let n = p.remove_dns_records(&name, &rtype, value).await?;
        if n > 0 {
            p.audit(
                &actor.0,
                "dns.remove",
                Some(&format!("{name} {rtype}")),
                Some(&json!({"value": value, "removed": n}).to_string()),
            )
            .await?;
            self.announce_dns(&name).await?;
        }
        Ok(n)
    }

    async fn announce_dns(&self, name: &str) -> Result<()> {
        self.bus()
            .publish(None, kinds::DNS_CHANGED, &json!({"name": name}))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_checked() {
        assert_eq!(
            normalize_name("_ACME-challenge.Saas.Test.").unwrap(),
            "_acme-challenge.saas.test"
        );
        assert!(normalize_name("").is_err());
        assert!(normalize_name("a..b").is_err());
        assert!(normalize_name("a b.test").is_err());
        assert!(normalize_name(&"x".repeat(64)).is_err());
    }

    #[test]
    fn simple_values_are_checked() {
        assert!(check_value("A", "192.0.2.1").is_ok());
        assert!(check_value("A", "::1").is_err());
        assert!(check_value("AAAA", "2001:db8::1").is_ok());
        assert!(check_value("TXT", "").is_err());
        assert!(check_value("CAA", "0 issue \"letsencrypt.org\"").is_ok());
    }
}
