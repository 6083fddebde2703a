//! ACME end to end: Pebble (Debian package `pebble`, the ACME test server) validates DNS-01
//! against our own DNS server (`-dnsserver`), `proxpanel serve` obtains the certificate for
//! `<base>` and `*.<base>`, `openssl verify` accepts it against Pebble's root, and the built-in
//! HTTPS listener serves it with the API behind it; plain HTTP redirects there.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const BASE: &str = "saas.test";

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `prog` runs; under CI a missing tool fails the test (infra/test.sh installs it).
fn have(prog: &str, package: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{prog} is missing under CI: install the Debian package {package} (infra/test.sh does)"
        );
        eprintln!(
            "skipping: {prog} not installed (Debian package {package}; infra/test.sh installs it)"
        );
    }
    ok
}

/// A CA and a certificate for 127.0.0.1/localhost signed by it: Pebble's own HTTPS identity.
fn pebble_tls(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "proxpanel test: Pebble HTTPS CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    std::fs::write(dir.join("pebble-ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("pebble-cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("pebble-key.pem"), key.serialize_pem()).unwrap();
}

fn curl(args: &[&str]) -> Result<String, String> {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

fn pem_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE-----") {
            cur = Some(String::new());
        }
        if let Some(c) = cur.as_mut() {
            c.push_str(line);
            c.push('\n');
        }
        if line.starts_with("-----END CERTIFICATE-----") {
            out.extend(cur.take());
        }
    }
    out
}

fn openssl(args: &[&str]) -> (bool, String) {
    let o = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// One raw HTTP/1.1 request: (status, Location header).
fn http_location(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    let location = buf
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("location:")
                .then(|| l[9..].trim().to_owned())
        })
        .unwrap_or_default();
    (status, location)
}

#[test]
fn pebble_issues_the_wildcard_certificate_that_https_serves() {
    if !have("pebble", "pebble") || !have("openssl", "openssl") || !have("curl", "curl") {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pebble_tls(d);
    let port = |_: &str| free_port();
    let (acme_port, mgmt_port, dns_port) = (port("acme"), port("mgmt"), port("dns"));
    let (http, https, admin) = (port("http"), port("https"), port("admin"));
    let config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{acme_port}"),
        "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
        "certificate": d.join("pebble-cert.pem"),
        "privateKey": d.join("pebble-key.pem"),
        "httpPort": free_port(),
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
    }});
    std::fs::write(d.join("pebble.json"), config.to_string()).unwrap();
    let pebble_log = std::fs::File::create(d.join("pebble.log")).unwrap();
    let _pebble = Kill(
        Command::new("pebble")
            .arg("-config")
            .arg(d.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdout(pebble_log.try_clone().unwrap())
            .stderr(pebble_log)
            .spawn()
            .expect("spawn pebble"),
    );
    let ca = d.join("pebble-ca.pem");
    let ca = ca.to_str().unwrap();
    let directory = format!("https://127.0.0.1:{acme_port}/dir");
    poll(Duration::from_secs(20), "Pebble's directory", || {
        curl(&["--cacert", ca, &directory])
    });

    // Our side: the DNS server Pebble asks, the API on HTTP and HTTPS, the renewer.
    let cli = || {
        let mut c = proxpanel(d);
        c.env("PROXPANEL_BASE_DOMAIN", BASE)
            .env("PROXPANEL_INGRESS_ADDRS", "127.0.0.1")
            .env("PROXPANEL_DNS_LISTEN", format!("127.0.0.1:{dns_port}"))
            .env("PROXPANEL_DNS_RRL", "0")
            .env("PROXPANEL_ACME_DIRECTORY", &directory)
            .env("PROXPANEL_ACME_CONTACT", "ops@saas.test")
            .env("PROXPANEL_ACME_CA_FILE", ca);
        c
    };
    ok(cli().args([
        "tenant",
        "create",
        "--slug",
        "acme",
        "--name",
        "Acme ISP",
        "--owner-email",
        "owner@acme.example",
        "--owner-password",
        "owner-pass-1",
    ]));
    let serve_log = std::fs::File::create(d.join("serve.log")).unwrap();
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let _serve = Kill(
        cli()
            .env("PROXPANEL_ADMIN_LISTEN", admin_addr.to_string())
            .env("PROXPANEL_HTTP_LISTEN", format!("127.0.0.1:{http}"))
            .env("PROXPANEL_HTTPS_LISTEN", format!("127.0.0.1:{https}"))
            .env("PROXPANEL_LOG", "info")
            .args(["serve", "--roles", "api,dns,workers"])
            .stdout(Stdio::null())
            .stderr(serve_log)
            .spawn()
            .expect("spawn serve"),
    );
    wait_ready(admin_addr, "/readyz", Duration::from_secs(30));
    let logs = || {
        format!(
            "\n--- serve log ---\n{}\n--- pebble log ---\n{}",
            std::fs::read_to_string(d.join("serve.log")).unwrap_or_default(),
            std::fs::read_to_string(d.join("pebble.log")).unwrap_or_default()
        )
    };
    let status = poll(Duration::from_secs(45), "the certificate", || {
        let v = json(cli().args(["cert", "status"]));
        if v["state"] == "valid" {
            Ok(v)
        } else {
            Err(format!("{v}{}", logs()))
        }
    });
    assert_eq!(
        status["names"],
        serde_json::json!([BASE, format!("*.{BASE}")])
    );
    assert!(status["days_left"].as_i64().unwrap() > 0, "{status}");
    assert!(status["last_error"].is_null(), "{status}");
    assert!(status["renewer"].as_str().is_some(), "{status}");

    // The HTTPS listener serves it (reloaded on cert.changed; poll while it loads).
    let served = poll(Duration::from_secs(10), "the HTTPS certificate", || {
        let (ok, out) = openssl(&[
            "s_client",
            "-connect",
            &format!("127.0.0.1:{https}"),
            "-servername",
            &format!("acme.{BASE}"),
            "-showcerts",
        ]);
        let blocks = pem_blocks(&out);
        if blocks.is_empty() {
            Err(format!("no certificate from s_client (ok={ok}): {out}"))
        } else {
            Ok(blocks)
        }
    });
    std::fs::write(d.join("leaf.pem"), &served[0]).unwrap();
    std::fs::write(d.join("inter.pem"), served[1..].concat()).unwrap();
    assert!(served.len() >= 2, "the chain has intermediates: {served:?}");
    // Pebble's issuing root, from its management interface.
    let root = curl(&[
        "--cacert",
        ca,
        &format!("https://127.0.0.1:{mgmt_port}/roots/0"),
    ])
    .expect("Pebble root");
    std::fs::write(d.join("root.pem"), &root).unwrap();
    let p = |f: &str| d.join(f).to_str().unwrap().to_owned();
    for name in [format!("acme.{BASE}"), BASE.to_string()] {
        let (ok, out) = openssl(&[
            "verify",
            "-CAfile",
            &p("root.pem"),
            "-untrusted",
            &p("inter.pem"),
            "-verify_hostname",
            &name,
            &p("leaf.pem"),
        ]);
        assert!(
            ok && out.contains(": OK"),
            "openssl verify for {name}: {out}"
        );
    }
    let (_, san) = openssl(&[
        "x509",
        "-in",
        &p("leaf.pem"),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    // "DNS:saas.test" is not a substring of "DNS:*.saas.test": both names are there.
    assert!(
        san.contains(&format!("DNS:*.{BASE}")) && san.contains(&format!("DNS:{BASE}")),
        "{san}"
    );

    // The API answers over HTTPS on the tenant's name, trusted through Pebble's root.
    let body = curl(&[
        "--cacert",
        &p("root.pem"),
        "--resolve",
        &format!("acme.{BASE}:{https}:127.0.0.1"),
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"email":"owner@acme.example","password":"owner-pass-1"}"#,
        &format!("https://acme.{BASE}:{https}/api/v1/auth/login"),
    ])
    .expect("login over HTTPS");
    let v: serde_json::Value = serde_json::from_str(&body).expect(&body);
    assert!(v["access_token"].as_str().is_some(), "{body}");

    // Plain HTTP sends everything to HTTPS, same host and path.
    let (code, loc) = http_location(
        format!("127.0.0.1:{http}").parse().unwrap(),
        &format!("acme.{BASE}:{http}"),
        "/api/v1/me?x=1",
    );
    assert_eq!(code, 308);
    assert_eq!(loc, format!("https://acme.{BASE}:{https}/api/v1/me?x=1"));

    // The challenge values are gone; the expiry gauge is exported.
    let recs = json(cli().args(["dns", "records"]));
    assert_eq!(recs["items"], serde_json::json!([]), "{recs}");
    let (_, metrics) = http_get(admin_addr, "/metrics").unwrap();
    let gauge = metrics
        .lines()
        .find_map(|l| l.strip_prefix("proxpanel_certificate_expiry_seconds "))
        .unwrap_or_else(|| panic!("no expiry gauge: {metrics}"));
    assert!(gauge.trim().parse::<i64>().unwrap() > 86_400, "{gauge}");

    // For TLS left to nginx: the chain and key as files (the key private to its owner).
    let out = d.join("export");
    json(cli().args(["cert", "export", "--dir", out.to_str().unwrap()]));
    let exported = std::fs::read_to_string(out.join("fullchain.pem")).unwrap();
    assert_eq!(pem_blocks(&exported), pem_blocks(&served.concat()));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(out.join("privkey.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "privkey.pem is private: {mode:o}");

    // A forced renewal through the running serve (it holds the lease) replaces it.
    let before = status["issued_at"].clone();
    let r = json(cli().args(["cert", "renew"]));
    assert_eq!(r["issued"], true, "{r}");
    let after = json(cli().args(["cert", "status"]));
    assert_ne!(after["issued_at"], before, "{after}");
    // The listener swaps it in without a restart: new connections get the new leaf.
    poll(
        Duration::from_secs(10),
        "the renewed certificate on HTTPS",
        || {
            let (_, out) = openssl(&[
                "s_client",
                "-connect",
                &format!("127.0.0.1:{https}"),
                "-servername",
                BASE,
            ]);
            match pem_blocks(&out).first() {
                Some(leaf) if *leaf != served[0] => Ok(()),
                _ => Err("still the old certificate".to_owned()),
            }
        },
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn cert_commands_without_acme_say_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let v = json(
        proxpanel(dir.path())
            .env("PROXPANEL_BASE_DOMAIN", BASE)
            .args(["cert", "status"]),
    );
    assert_eq!(v["state"], "none", "{v}");
    assert_eq!(v["names"], serde_json::json!([BASE, format!("*.{BASE}")]));
    let err = usage_error(proxpanel(dir.path()).args(["cert", "renew"]));
    assert!(err.contains("PROXPANEL_ACME_DIRECTORY"), "{err}");
    let err = usage_error(proxpanel(dir.path()).args([
        "cert",
        "export",
        "--dir",
        dir.path().join("out").to_str().unwrap(),
    ]));
    assert!(err.contains("cert status"), "{err}");
}

#[test]
fn an_unreachable_acme_server_is_recorded_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // Nothing listens on this port: the account request fails at once.
    let directory = format!("https://127.0.0.1:{}/dir", free_port());
    let cli = || {
        let mut c = proxpanel(dir.path());
        c.env("PROXPANEL_BASE_DOMAIN", BASE)
            .env("PROXPANEL_DNS_LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("PROXPANEL_ACME_DIRECTORY", &directory);
        c
    };
    let _serve = Kill(
        cli()
            .env("PROXPANEL_ADMIN_LISTEN", admin.to_string())
            .args(["serve", "--roles", "dns,workers"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_ready(admin, "/readyz", Duration::from_secs(30));
    let v = poll(Duration::from_secs(20), "the recorded error", || {
        let v = json(cli().args(["cert", "status"]));
        if v["last_error"].is_string() {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    let e = v["last_error"].as_str().unwrap();
    assert!(
        e.contains("ACME server") && e.contains("PROXPANEL_ACME_DIRECTORY"),
        "{e}"
    );
    assert_eq!(v["state"], "none");
    assert!(v["renewer"].as_str().is_some(), "{v}");
    let (_, metrics) = http_get(admin, "/metrics").unwrap();
    assert!(
        metrics.contains("proxpanel_certificate_renewals_total{result=\"failed\"} 1"),
        "{metrics}"
    );
}
