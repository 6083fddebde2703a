use chrono::{Duration as ChronoDuration, TimeZone, Utc};

use super::*;

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0).single().unwrap()
}

#[test]
fn renewal_is_at_two_thirds_of_the_lifetime() {
    // A 90-day certificate renews on day 60.
    let nb = t(0);
    let na = nb + ChronoDuration::days(90);
    assert_eq!(renew_at(nb, na), nb + ChronoDuration::days(60));
    // Pebble-style 5-year lifetime, odd seconds: never later than two thirds.
    let na = nb + ChronoDuration::seconds(157_766_401);
    let at = renew_at(nb, na);
    assert!(at - nb <= (na - nb) * 2 / 3 + ChronoDuration::seconds(1));
    assert!(at > nb && at < na);
}

#[test]
fn due_follows_the_stored_certificate() {
    let names = names_for("saas.test");
    assert_eq!(names, vec!["saas.test".to_string(), "*.saas.test".into()]);
    assert_eq!(due(None, &names, t(0)), Due::Missing);
    let mut c = StoredCertificate {
        name: "saas.test".into(),
        names: names.clone(),
        chain_pem: Some("pem".into()),
        not_before: Some(t(0)),
        not_after: Some(t(0) + ChronoDuration::days(90)),
        issued_at: Some(t(0)),
        last_attempt_at: None,
        last_error: None,
        updated_at: t(0),
    };
    let at = t(0) + ChronoDuration::days(60);
    assert_eq!(due(Some(&c), &names, t(10)), Due::Valid(at));
    assert_eq!(due(Some(&c), &names, at), Due::Renew(at));
    // A row that only records an error holds no certificate.
    c.chain_pem = None;
    assert_eq!(due(Some(&c), &names, t(10)), Due::Missing);
    // Another zone's names: a new certificate is needed.
    c.chain_pem = Some("pem".into());
    assert_eq!(due(Some(&c), &names_for("other.test"), t(10)), Due::Missing);
}

#[test]
fn retries_back_off_to_six_hours() {
    let b = Duration::from_secs(60);
    assert_eq!(retry_delay(b, 1), Duration::from_secs(60));
    assert_eq!(retry_delay(b, 2), Duration::from_secs(120));
    assert_eq!(retry_delay(b, 4), Duration::from_secs(480));
    assert_eq!(retry_delay(b, 50), Duration::from_secs(6 * 3600));
}

fn self_signed(names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn chains_parse_and_become_rustls_keys() {
    crate::tls::install_crypto_provider();
    let (chain, key) = self_signed(&["saas.test", "*.saas.test"]);
    let info = parse_chain(&chain).unwrap();
    assert_eq!(info.names, vec!["saas.test", "*.saas.test"]);
    assert!(info.not_after > info.not_before);
    let ck = resolver::certified_key(&chain, &key).unwrap();
    assert_eq!(ck.cert.len(), 1);
    let r = CertResolver::new();
    assert!(!r.has_certificate());
    r.set(ck);
    assert!(r.has_certificate());
    let _ = r.server_config();
    // Garbage is refused with a reason.
    assert!(parse_chain("not pem").is_err());
    assert!(resolver::certified_key(&chain, "not a key").is_err());
}

#[test]
fn settings_follow_the_configuration() {
    let env = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let flags = crate::config::FlagOverrides::new();
    let c = Config::load(None, &env(&[]), &flags).unwrap();
    assert!(AcmeSettings::from_config(&c).is_none());
    let c = Config::load(
        None,
        &env(&[
            ("PROXPANEL_ACME_DIRECTORY", "https://ca.test/dir"),
            ("PROXPANEL_ACME_CONTACT", "ops@saas.test"),
            ("PROXPANEL_ACME_CA_FILE", "/etc/ca.pem"),
            ("PROXPANEL_BASE_DOMAIN", "saas.test"),
            ("PROXPANEL_DNS_LISTEN", "0.0.0.0:5353"),
        ]),
        &flags,
    )
    .unwrap();
    let s = AcmeSettings::from_config(&c).unwrap();
    assert_eq!(s.directory, "https://ca.test/dir");
    assert_eq!(s.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
    // Our own listener, reached on loopback.
    assert_eq!(s.dns_servers, vec!["127.0.0.1:5353".parse().unwrap()]);
    assert_eq!(s.lease_name(), "acme:saas.test");
    // Without the DNS role here: the zone's name servers on port 53.
    let c = Config::load(
        None,
        &env(&[
            ("PROXPANEL_ACME_DIRECTORY", "https://ca.test/dir"),
            ("PROXPANEL_ROLES", "api,workers"),
            ("PROXPANEL_DNS_NAMESERVERS", "ns1.saas.test=192.0.2.53"),
        ]),
        &flags,
    )
    .unwrap();
    let s = AcmeSettings::from_config(&c).unwrap();
    assert_eq!(s.dns_servers, vec!["192.0.2.53:53".parse().unwrap()]);
}

#[test]
fn a_bad_ca_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ca.pem");
    std::fs::write(&p, "nothing here").unwrap();
    let e = http_client(Some(&p)).err().unwrap();
    assert!(matches!(e, AcmeError::Config(_)), "{e}");
    assert!(e.to_string().contains("PROXPANEL_ACME_CA_FILE"), "{e}");
    assert!(http_client(Some(&dir.path().join("missing.pem"))).is_err());
    let (chain, _) = self_signed(&["ca.test"]);
    std::fs::write(&p, chain).unwrap();
    crate::tls::install_crypto_provider();
    assert!(http_client(Some(&p)).is_ok());
}
