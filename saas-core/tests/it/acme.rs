//! The certificate store on every backend: keys sealed at rest, chain and status kept, one
//! lease holder at a time.

use std::time::Duration;

use saas_core::acme;
use saas_core::testing;

const KEY_PEM: &str =
    "-----BEGIN PRIVATE KEY-----\nCert-Private-Key-Echidna-21\n-----END PRIVATE KEY-----\n";
const ACCOUNT: &str = r#"{"id":"https://ca.test/acct/1","key_pkcs8":"Account-Key-Bilby-8","directory":"https://ca.test/dir"}"#;

#[tokio::test]
async fn certificate_and_account_keys_are_sealed_at_rest() {
    for ts in testing::each_backend().await {
        let p = ts.store.platform();
        let names = acme::names_for("saas.test");
        assert!(p.certificate("saas.test").await.unwrap().is_none());
        // An error before the first issue is kept, with no certificate.
        p.record_certificate_error("saas.test", &names, "boom")
            .await
            .unwrap();
        let c = p.certificate("saas.test").await.unwrap().unwrap();
        assert_eq!(c.last_error.as_deref(), Some("boom"));
        assert!(c.chain_pem.is_none());
        assert!(p.certificate_with_key("saas.test").await.unwrap().is_none());
        let nb = saas_core::store::now();
        let na = nb + chrono::Duration::days(90);
        p.save_certificate("saas.test", &names, "CHAIN", KEY_PEM, nb, na)
            .await
            .unwrap();
        p.save_acme_account("https://ca.test/dir", Some("ops@saas.test"), ACCOUNT)
            .await
            .unwrap();
        // Round trip: values open again through the store; the error is cleared.
        let (c, key) = p.certificate_with_key("saas.test").await.unwrap().unwrap();
        assert_eq!(key, KEY_PEM);
        assert_eq!(c.chain_pem.as_deref(), Some("CHAIN"));
        assert_eq!(c.names, names);
        assert_eq!(c.not_after, Some(na));
        assert!(c.last_error.is_none() && c.issued_at.is_some());
        assert_eq!(
            p.acme_account("https://ca.test/dir")
                .await
                .unwrap()
                .as_deref(),
            Some(ACCOUNT)
        );
        assert!(p.acme_account("https://other/dir").await.unwrap().is_none());
        // A later failure keeps the chain.
        p.record_certificate_error("saas.test", &names, "later")
            .await
            .unwrap();
        let (c, _) = p.certificate_with_key("saas.test").await.unwrap().unwrap();
        assert_eq!(c.chain_pem.as_deref(), Some("CHAIN"));
        assert_eq!(c.last_error.as_deref(), Some("later"));
        let hay = String::from_utf8_lossy(&ts.raw_dump().await).into_owned();
        for needle in ["Cert-Private-Key-Echidna-21", "Account-Key-Bilby-8"] {
            assert!(!hay.contains(needle), "{}: {needle} in clear", ts.backend);
        }
        ts.store.close().await;
    }
}

#[tokio::test]
async fn one_lease_holder_at_a_time() {
    for ts in testing::each_backend().await {
        let p = ts.store.platform();
        let ttl = Duration::from_secs(60);
        assert!(p.try_lease("acme:saas.test", "node-a", ttl).await.unwrap());
        // The holder extends it; another node is refused.
        assert!(p.try_lease("acme:saas.test", "node-a", ttl).await.unwrap());
        assert!(!p.try_lease("acme:saas.test", "node-b", ttl).await.unwrap());
        assert_eq!(
            p.lease_holder("acme:saas.test").await.unwrap().as_deref(),
            Some("node-a")
        );
        // Other lease names are independent.
        assert!(p.try_lease("acme:other.test", "node-b", ttl).await.unwrap());
        // Released: the next node takes it.
        p.release_lease("acme:saas.test", "node-b").await.unwrap();
        assert!(!p.try_lease("acme:saas.test", "node-b", ttl).await.unwrap());
        p.release_lease("acme:saas.test", "node-a").await.unwrap();
        assert!(p.lease_holder("acme:saas.test").await.unwrap().is_none());
        assert!(p.try_lease("acme:saas.test", "node-b", ttl).await.unwrap());
        // An expired lease is taken over.
        assert!(
            p.try_lease("acme:x", "node-a", Duration::from_millis(1))
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(p.lease_holder("acme:x").await.unwrap().is_none());
        assert!(p.try_lease("acme:x", "node-b", ttl).await.unwrap());
        ts.store.close().await;
    }
}
