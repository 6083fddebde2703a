//! The DNS role end to end: `proxpanel serve --roles dns` queried with real `dig` (dnsutils) for
//! every rule of the zone, and live changes made through the CLI.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const BASE: &str = "saas.test";

struct Zone {
    dir: tempfile::TempDir,
    dns: SocketAddr,
    admin: SocketAddr,
    _serve: Option<Serve>,
}

fn env(c: &mut Command, dns: SocketAddr) -> &mut Command {
    c.env("PROXPANEL_BASE_DOMAIN", BASE)
        .env("PROXPANEL_INGRESS_ADDRS", "192.0.2.10,2001:db8::10")
        .env("PROXPANEL_DNS_NAMESERVERS", "ns1.saas.test=192.0.2.53")
        .env("PROXPANEL_WG_PUBLIC_ENDPOINT", "198.51.100.7:51820")
        .env("PROXPANEL_DNS_SECONDARIES", "127.0.0.2")
        .env("PROXPANEL_DNS_LISTEN", dns.to_string())
}

impl Zone {
    fn new() -> Self {
        let dns: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Zone {
            dir: tempfile::tempdir().unwrap(),
            dns,
            admin,
            _serve: None,
        }
    }

    fn cli(&self) -> Command {
        let mut c = proxpanel(self.dir.path());
        env(&mut c, self.dns);
        c
    }

    fn start(&mut self, rrl: &str) {
        let mut c = self.cli();
        c.env("PROXPANEL_ADMIN_LISTEN", self.admin.to_string())
            .env("PROXPANEL_DNS_RRL", rrl)
            .env("PROXPANEL_LOG", "info")
            .args(["serve", "--roles", "dns"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self._serve = Some(Serve(c.spawn().expect("spawn serve")));
        wait_ready(self.admin, "/readyz", Duration::from_secs(60));
    }

    fn tenant(&self, slug: &str) {
        ok(self.cli().args([
            "tenant",
            "create",
            "--slug",
            slug,
            "--name",
            &format!("{slug} ISP"),
            "--owner-email",
            &format!("owner@{slug}.example"),
            "--owner-password",
            "owner-pass-1",
        ]));
    }

    fn dig(&self, args: &[&str]) -> Dig {
        let out = Command::new("dig")
            .args([
                &format!("@{}", self.dns.ip()),
                "-p",
                &self.dns.port().to_string(),
                "+norec",
                "+time=2",
                "+tries=1",
            ])
            .args(args)
            .output()
            .expect("dig (Debian package dnsutils; infra/test.sh installs it)");
        Dig::parse(&String::from_utf8_lossy(&out.stdout))
    }
}

/// The parts of dig's output the rules are about.
#[derive(Debug, Default)]
struct Dig {
    text: String,
    status: String,
    flags: Vec<String>,
    answer: Vec<Vec<String>>,
    authority: Vec<Vec<String>>,
    additional: Vec<Vec<String>>,
}

impl Dig {
    fn parse(text: &str) -> Dig {
        let mut d = Dig {
            text: text.to_owned(),
            ..Default::default()
        };
        let mut section = "";
        for line in text.lines() {
            if let Some(rest) = line.split("status: ").nth(1) {
                d.status = rest.split(',').next().unwrap_or("").to_owned();
            }
            if let Some(rest) = line.strip_prefix(";; flags: ") {
                let f = rest.split(';').next().unwrap_or("");
                d.flags = f.split_whitespace().map(str::to_owned).collect();
            }
            if line.starts_with(";; ANSWER SECTION") {
                section = "answer";
                continue;
            }
            if line.starts_with(";; AUTHORITY SECTION") {
                section = "authority";
                continue;
            }
            if line.starts_with(";; ADDITIONAL SECTION") {
                section = "additional";
                continue;
            }
            if line.trim().is_empty() || line.starts_with(';') {
                if line.trim().is_empty() {
                    section = "";
                }
                continue;
            }
            let fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            match section {
                "answer" => d.answer.push(fields),
                "authority" => d.authority.push(fields),
                "additional" => d.additional.push(fields),
                _ => {}
            }
        }
        d
    }

    /// Values (rdata) of answer records of `rtype`.
    fn values(&self, rtype: &str) -> Vec<String> {
        self.answer
            .iter()
            .filter(|f| f.get(3).map(String::as_str) == Some(rtype))
            .map(|f| f[4..].join(" "))
            .collect()
    }

    fn aa(&self) -> bool {
        self.flags.iter().any(|f| f == "aa")
    }

    fn soa_in_authority(&self) -> bool {
        self.authority
            .iter()
            .any(|f| f.get(3).map(String::as_str) == Some("SOA"))
    }

    fn serial(&self) -> u64 {
        let soa = self
            .answer
            .iter()
            .find(|f| f.get(3).map(String::as_str) == Some("SOA"))
            .unwrap_or_else(|| panic!("no SOA: {}", self.text));
        soa[6].parse().unwrap()
    }
}

/// Polls `dig` until `ok` holds, within `limit`; returns how long it took.
fn within(z: &Zone, limit: Duration, args: &[&str], ok: impl Fn(&Dig) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let d = z.dig(args);
        if ok(&d) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "not within {limit:?}: dig {args:?}\n{}",
            d.text
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dig_checks_every_rule_of_the_zone() {
    let mut z = Zone::new();
    z.tenant("acme");
    z.tenant("beta");
    z.tenant("gamma");
    ok(z.cli().args(["tenant", "suspend", "beta"]));
    ok(z.cli().args(["tenant", "delete", "gamma"]));
    ok(z.cli().args([
        "dns",
        "txt",
        "set",
        "_acme-challenge.saas.test",
        "token-apex",
    ]));
    ok(z.cli().args([
        "dns",
        "records",
        "add",
        "saas.test",
        "CAA",
        "0 issue \"ca.saas.test\"",
    ]));
    // A TXT set larger than 512 bytes: truncated over UDP without EDNS, whole over TCP.
    for i in 0..30 {
        ok(z.cli().args([
            "dns",
            "txt",
            "set",
            "big.saas.test",
            &format!("{i:02}-{}", "x".repeat(40)),
        ]));
    }
    z.start("0");

    // Apex: A and AAAA from PROXPANEL_INGRESS_ADDRS, authoritative.
    let d = z.dig(&["saas.test", "A"]);
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert!(d.aa(), "AA flag: {}", d.text);
    assert!(!d.flags.iter().any(|f| f == "ra"), "no recursion offered");
    assert_eq!(d.values("A"), ["192.0.2.10"]);
    assert_eq!(
        z.dig(&["saas.test", "AAAA"]).values("AAAA"),
        ["2001:db8::10"]
    );
    // SOA, NS and glue.
    let d = z.dig(&["saas.test", "SOA"]);
    assert!(d.values("SOA")[0].starts_with("ns1.saas.test. hostmaster.saas.test."));
    let d = z.dig(&["saas.test", "NS"]);
    assert_eq!(d.values("NS"), ["ns1.saas.test."]);
    assert!(
        d.additional
            .iter()
            .any(|f| f[0] == "ns1.saas.test." && f[4] == "192.0.2.53"),
        "glue: {}",
        d.text
    );
    assert_eq!(z.dig(&["ns1.saas.test", "A"]).values("A"), ["192.0.2.53"]);
    // Operator host.
    assert_eq!(
        z.dig(&["operator.saas.test", "A"]).values("A"),
        ["192.0.2.10"]
    );
    // Tenants: active and suspended resolve, in any letter case.
    assert_eq!(z.dig(&["acme.saas.test", "A"]).values("A"), ["192.0.2.10"]);
    assert_eq!(z.dig(&["AcMe.SaaS.test", "A"]).values("A"), ["192.0.2.10"]);
    assert_eq!(
        z.dig(&["beta.saas.test", "AAAA"]).values("AAAA"),
        ["2001:db8::10"]
    );
    // Deleted and unknown tenants: NXDOMAIN with the SOA in the authority section.
    for name in ["gamma.saas.test", "nobody.saas.test"] {
        let d = z.dig(&[name, "A"]);
        assert_eq!(d.status, "NXDOMAIN", "{}", d.text);
        assert!(d.aa() && d.soa_in_authority(), "{}", d.text);
        assert!(d.answer.is_empty());
    }
    // Relay name → the relay node's public endpoint.
    assert_eq!(
        z.dig(&["acme.relay.saas.test", "A"]).values("A"),
        ["198.51.100.7"]
    );
    // TXT from dns_records.
    assert_eq!(
        z.dig(&["_acme-challenge.saas.test", "TXT"]).values("TXT"),
        ["\"token-apex\""]
    );
    // CAA.
    assert_eq!(
        z.dig(&["saas.test", "CAA"]).values("CAA"),
        ["0 issue \"ca.saas.test\""]
    );
    // NODATA: the name exists, the type does not → NOERROR, no answer, SOA in authority.
    for (name, t) in [("acme.saas.test", "TXT"), ("relay.saas.test", "A")] {
        let d = z.dig(&[name, t]);
        assert_eq!(d.status, "NOERROR", "{}", d.text);
        assert!(
            d.answer.is_empty() && d.soa_in_authority() && d.aa(),
            "{}",
            d.text
        );
    }
    // Other zones: REFUSED, no recursion.
    let d = z.dig(&["example.com", "A"]);
    assert_eq!(d.status, "REFUSED", "{}", d.text);
    assert!(d.answer.is_empty());
    // TCP.
    let d = z.dig(&["+tcp", "acme.saas.test", "A"]);
    assert_eq!(d.values("A"), ["192.0.2.10"], "{}", d.text);
    // EDNS(0): our OPT with a 1232-byte payload.
    let d = z.dig(&["+edns=0", "acme.saas.test", "A"]);
    assert!(d.text.contains("EDNS: version: 0"), "{}", d.text);
    assert!(d.text.contains("udp: 1232"), "{}", d.text);
    // Truncation over UDP, the whole set over TCP.
    let d = z.dig(&["+noedns", "+ignore", "big.saas.test", "TXT"]);
    assert!(d.flags.iter().any(|f| f == "tc"), "TC flag: {}", d.text);
    let d = z.dig(&["+tcp", "big.saas.test", "TXT"]);
    assert_eq!(d.values("TXT").len(), 30, "{}", d.text);
    // dig falls back to TCP by itself on TC.
    assert_eq!(
        z.dig(&["+noedns", "big.saas.test", "TXT"])
            .values("TXT")
            .len(),
        30
    );
    // ANY: one RRset (RFC 8482), not everything at the apex.
    let d = z.dig(&["saas.test", "ANY"]);
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    let types: std::collections::BTreeSet<&str> = d.answer.iter().map(|f| f[3].as_str()).collect();
    assert_eq!(types.len(), 1, "{}", d.text);
    // AXFR: refused to a stranger, served to a configured secondary.
    let d = z.dig(&["saas.test", "AXFR"]);
    assert!(
        d.text.contains("Transfer failed") || d.text.contains("REFUSED"),
        "{}",
        d.text
    );
    assert!(!d.text.contains("acme.saas.test."), "{}", d.text);
    let d = z.dig(&["-b", "127.0.0.2", "saas.test", "AXFR"]);
    // dig prints a transfer without section headers.
    let soas = d
        .text
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some("SOA"))
        .count();
    assert_eq!(soas, 2, "AXFR starts and ends with the SOA: {}", d.text);
    assert!(d.text.contains("acme.relay.saas.test."), "{}", d.text);

    // Metrics: queries by type and rcode.
    let (_, metrics) = http_get(z.admin, "/metrics").unwrap();
    for needle in [
        "proxpanel_dns_queries_total{qtype=\"A\",rcode=\"NOERROR\"}",
        "proxpanel_dns_queries_total{qtype=\"A\",rcode=\"NXDOMAIN\"}",
        "proxpanel_dns_queries_total{qtype=\"A\",rcode=\"REFUSED\"}",
        "proxpanel_dns_answer_seconds_bucket",
        "proxpanel_dns_rate_limited_total 0",
        "proxpanel_dns_zone_serial",
    ] {
        assert!(metrics.contains(needle), "{needle}: {metrics}");
    }
}

#[test]
fn cli_changes_reach_a_running_server_within_one_second() {
    let mut z = Zone::new();
    z.tenant("acme");
    z.start("0");
    let serial = z.dig(&["saas.test", "SOA"]).serial();
    let limit = Duration::from_secs(1);

    // A tenant created through the CLI (timed from the end of the command).
    let d = z.dig(&["fresh.saas.test", "A"]);
    assert_eq!(d.status, "NXDOMAIN", "{}", d.text);
    z.tenant("fresh");
    let took = within(&z, limit, &["fresh.saas.test", "A"], |d| {
        d.values("A") == ["192.0.2.10"]
    });
    eprintln!("new tenant resolved after {took:?}");
    let serial2 = z.dig(&["saas.test", "SOA"]).serial();
    assert!(serial2 > serial, "serial bumped: {serial} → {serial2}");

    // Suspended still resolves; deleted disappears.
    ok(z.cli().args(["tenant", "suspend", "fresh"]));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(z.dig(&["fresh.saas.test", "A"]).values("A"), ["192.0.2.10"]);
    ok(z.cli().args(["tenant", "delete", "fresh"]));
    within(&z, limit, &["fresh.saas.test", "A"], |d| {
        d.status == "NXDOMAIN"
    });
    within(&z, limit, &["fresh.relay.saas.test", "A"], |d| {
        d.status == "NXDOMAIN"
    });

    // TXT set and clear (an ACME challenge).
    ok(z.cli()
        .args(["dns", "txt", "set", "_acme-challenge.acme.saas.test", "t1"]));
    within(&z, limit, &["_acme-challenge.acme.saas.test", "TXT"], |d| {
        d.values("TXT") == ["\"t1\""]
    });
    // The explicit tenant record survives the challenge below it (no wildcard trap).
    assert_eq!(z.dig(&["acme.saas.test", "A"]).values("A"), ["192.0.2.10"]);
    let list = json(z.cli().args(["dns", "records"]));
    assert_eq!(list["items"][0]["name"], "_acme-challenge.acme.saas.test");
    ok(z.cli()
        .args(["dns", "txt", "clear", "_acme-challenge.acme.saas.test"]));
    within(&z, limit, &["_acme-challenge.acme.saas.test", "TXT"], |d| {
        d.status == "NXDOMAIN"
    });
    // Records outside the zone are refused by the CLI's checks or not served.
    let err = usage_error(
        z.cli()
            .args(["dns", "records", "add", "x.saas.test", "SRV", "1"]),
    );
    assert!(err.contains("SRV"), "{err}");
}

#[test]
fn response_rate_limiting_per_client_network() {
    let mut z = Zone::new();
    z.start("5");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    // saas.test A, 40 times at once.
    let mut q = vec![0u8, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in ["saas", "test"] {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    for _ in 0..40 {
        sock.send_to(&q, z.dns).unwrap();
    }
    let (mut full, mut truncated) = (0, 0);
    let mut buf = [0u8; 1500];
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        if n >= 4 && buf[2] & 0x02 != 0 {
            truncated += 1;
        } else {
            full += 1;
        }
    }
    assert!(full <= 10, "at most ~5 a second answered, got {full}");
    assert!(truncated >= 1, "some answers slip out truncated");
    assert!(full + truncated < 40, "the rest is dropped");
    // TCP is not limited.
    let d = z.dig(&["+tcp", "saas.test", "A"]);
    assert_eq!(d.values("A"), ["192.0.2.10"], "{}", d.text);
    let (_, metrics) = http_get(z.admin, "/metrics").unwrap();
    assert!(
        !metrics.contains("proxpanel_dns_rate_limited_total 0\n"),
        "{metrics}"
    );
}
