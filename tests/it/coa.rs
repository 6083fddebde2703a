use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Stdio};
use std::time::Duration;

use saas_core::radius::{Code, PacketBuilder, dict, validate, verify_request};

use crate::support::*;

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn acct_start(acct: SocketAddr, secret: &[u8], user: &str, session: &str) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = PacketBuilder::request(Code::AccountingRequest, 7, [0; 16]).unwrap();
    b.attr_str(dict::USER_NAME, user).unwrap();
    b.attr_u32(dict::ACCT_STATUS_TYPE, dict::ACCT_STATUS_START)
        .unwrap();
    b.attr_str(dict::ACCT_SESSION_ID, session).unwrap();
    b.attr_ipv4(dict::FRAMED_IP_ADDRESS, "100.64.1.9".parse().unwrap())
        .unwrap();
    sock.send_to(&b.finish(secret), acct).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).expect("Accounting-Response");
    assert_eq!(
        validate(&buf[..n]).unwrap().code(),
        Code::AccountingResponse
    );
}

/// `session disconnect` travels over the bus to the running `serve`, which sends a
/// Disconnect-Request that a NAS can verify; the NAS's ACK or NAK (with Error-Cause) comes back.
/// An independent decoder (pyrad, infra/e2e/coa_pyrad.py) accepts what we sent: code, Request
/// Authenticator, Message-Authenticator and the attributes MikroTik needs.
fn pyrad_accepts(packet: &[u8], user: &str, session: &str, extra: &[&str]) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/e2e/coa_pyrad.py");
    let hex: String = packet.iter().map(|b| format!("{b:02x}")).collect();
    let o = std::process::Command::new("python3")
        .arg(script)
        .args([
            "--secret",
            "coasecret",
            "--hex",
            &hex,
            "--user",
            user,
            "--session",
            session,
        ])
        .args(extra)
        .output()
        .unwrap();
    if o.status.code() == Some(3) && std::env::var_os("CI").is_none() {
        eprintln!(
            "SKIPPED pyrad check: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        return;
    }
    assert!(
        o.status.success(),
        "pyrad refused our packet: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn disconnect_reaches_the_nas_and_the_answer_reaches_the_cli() {
    let rig = Rig::start("coaco", "frank", "sess-1", "radius,workers", None);
    let (dir, nas_sock) = (&rig.dir, &rig.nas_sock);

    // ACK
    let cli = std::thread::spawn({
        let d = dir.path().to_owned();
        move || {
            json(proxpanel(&d).args([
                "session",
                "disconnect",
                "--tenant",
                "coaco",
                "--username",
                "frank",
            ]))
        }
    });
    let mut buf = [0u8; 4096];
    let (n, from) = nas_sock
        .recv_from(&mut buf)
        .expect("Disconnect-Request reached the NAS");
    let req = validate(&buf[..n]).unwrap();
    // Checked by pyrad after the ACK: a slow Python start under load must not outlast the
    // CoA client's retries.
    let sent = buf[..n].to_vec();
    assert_eq!(req.code(), Code::DisconnectRequest);
    assert!(
        verify_request(&req, b"coasecret").is_ok(),
        "Request Authenticator / Message-Authenticator"
    );
    assert!(
        req.message_authenticator().is_some(),
        "Message-Authenticator is sent"
    );
    assert_eq!(req.attr(dict::USER_NAME), Some(&b"frank"[..]));
    assert_eq!(req.attr(dict::ACCT_SESSION_ID), Some(&b"sess-1"[..]));
    assert_eq!(
        req.attr(dict::FRAMED_IP_ADDRESS),
        Some(&[100, 64, 1, 9][..])
    );
    let ack = PacketBuilder::reply(&req, Code::DisconnectACK)
        .unwrap()
        .finish(b"coasecret");
    nas_sock.send_to(&ack, from).unwrap();
    let out = cli.join().unwrap();
    assert_eq!(out["results"][0]["result"]["outcome"], "ack", "{out}");
    pyrad_accepts(&sent, "frank", "sess-1", &["--framed-ip", "100.64.1.9"]);

    // NAK with Error-Cause 503 (Session-Context-Not-Found); a forged reply (wrong secret) is ignored.
    let cli = rig.disconnect();
    let (n, from) = nas_sock.recv_from(&mut buf).unwrap();
    let req = validate(&buf[..n]).unwrap();
    let forged = PacketBuilder::reply(&req, Code::DisconnectACK)
        .unwrap()
        .finish(b"wrong-secret");
    nas_sock.send_to(&forged, from).unwrap();
    let mut nak = PacketBuilder::reply(&req, Code::DisconnectNAK).unwrap();
    nak.attr_u32(dict::ERROR_CAUSE, 503).unwrap();
    nas_sock.send_to(&nak.finish(b"coasecret"), from).unwrap();
    let out = cli.join().unwrap();
    assert_eq!(out["results"][0]["result"]["outcome"], "nak", "{out}");
    assert_eq!(out["results"][0]["result"]["error_cause"], 503);

    // A plan change of an online subscriber is pushed as CoA with the new rate.
    ok(proxpanel(dir.path()).args([
        "plan",
        "add",
        "--tenant",
        "coaco",
        "--name",
        "20M",
        "--download-kbps",
        "20480",
        "--upload-kbps",
        "4096",
    ]));
    ok(proxpanel(dir.path()).args([
        "subscriber",
        "set",
        "--tenant",
        "coaco",
        "--username",
        "frank",
        "--plan",
        "20M",
    ]));
    let (n, from) = nas_sock
        .recv_from(&mut buf)
        .expect("CoA-Request reached the NAS");
    let req = validate(&buf[..n]).unwrap();
    let sent = buf[..n].to_vec();
    assert_eq!(req.code(), Code::CoARequest);
    assert!(verify_request(&req, b"coasecret").is_ok());
    assert_eq!(
        req.vsa(dict::VENDOR_MIKROTIK, dict::mikrotik::RATE_LIMIT),
        Some(&b"4096k/20480k"[..])
    );
    nas_sock
        .send_to(
            &PacketBuilder::reply(&req, Code::CoAACK)
                .unwrap()
                .finish(b"coasecret"),
            from,
        )
        .unwrap();
    pyrad_accepts(&sent, "frank", "sess-1", &["--rate", "4096k/20480k"]);

    // Suspending the tenant disconnects its online sessions.
    ok(proxpanel(dir.path()).args(["tenant", "suspend", "coaco"]));
    let (n, from) = nas_sock
        .recv_from(&mut buf)
        .expect("Disconnect-Request on suspension");
    let req = validate(&buf[..n]).unwrap();
    assert_eq!(req.code(), Code::DisconnectRequest);
    assert_eq!(req.attr(dict::USER_NAME), Some(&b"frank"[..]));
    nas_sock
        .send_to(
            &PacketBuilder::reply(&req, Code::DisconnectACK)
                .unwrap()
                .finish(b"coasecret"),
            from,
        )
        .unwrap();
}

#[test]
fn disconnect_without_a_running_serve_says_so() {
    let dir = tempfile::tempdir().unwrap();
    ok(proxpanel(dir.path()).args([
        "tenant",
        "create",
        "--slug",
        "lonely",
        "--name",
        "L",
        "--owner-email",
        "o@l.example",
        "--owner-password",
        "owner-pass-1",
    ]));
    ok(proxpanel(dir.path()).args([
        "subscriber",
        "add",
        "--tenant",
        "lonely",
        "--username",
        "u",
        "--password",
        "pw",
    ]));
    let o = run(proxpanel(dir.path()).args([
        "session",
        "disconnect",
        "--tenant",
        "lonely",
        "--username",
        "u",
        "--timeout",
        "1",
    ]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("proxpanel serve"), "{err}");
}

/// A running `serve` with one tenant, one subscriber online (Accounting-Start sent) on a direct
/// NAS whose CoA port is `nas_sock` (the test plays the router's RADIUS side); with `api`, the
/// NAS's RouterOS API is that simulator (API-SSL).
struct Rig {
    dir: tempfile::TempDir,
    nas_sock: UdpSocket,
    slug: &'static str,
    user: &'static str,
    _server: Server,
}

impl Rig {
    fn start(
        slug: &'static str,
        user: &'static str,
        session: &str,
        roles: &str,
        api: Option<&saas_core::routeros::sim::Simulator>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let nas_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        nas_sock
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let coa_port = nas_sock.local_addr().unwrap().port().to_string();
        let email = format!("o@{slug}.example");
        ok(proxpanel(dir.path()).args([
            "tenant",
            "create",
            "--slug",
            slug,
            "--name",
            "C",
            "--owner-email",
            &email,
            "--owner-password",
            "owner-pass-1",
        ]));
        ok(proxpanel(dir.path()).args([
            "subscriber",
            "add",
            "--tenant",
            slug,
            "--username",
            user,
            "--password",
            "pw",
        ]));
        let mut nas = vec![
            "nas",
            "add",
            "--tenant",
            slug,
            "--name",
            "gw",
            "--ip",
            "127.0.0.1",
            "--secret",
            "coasecret",
            "--coa-port",
            &coa_port,
        ];
        let api_port = api.map(|s| s.addr().port().to_string());
        if let Some(port) = &api_port {
            nas.extend([
                "--api-user",
                "api",
                "--api-password",
                "api-pass",
                "--api-tls",
                "--api-port",
                port,
            ]);
        }
        ok(proxpanel(dir.path()).args(nas));
        let ports = free_udp_ports(2);
        let (auth, acct) = (
            format!("127.0.0.1:{}", ports[0]),
            format!("127.0.0.1:{}", ports[1]),
        );
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let server = Server(
            proxpanel(dir.path())
                .env("PROXPANEL_ROLES", roles)
                .env("PROXPANEL_RADIUS_AUTH_LISTEN", &auth)
                .env("PROXPANEL_RADIUS_ACCT_LISTEN", &acct)
                .env("PROXPANEL_ADMIN_LISTEN", admin.to_string())
                .arg("serve")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_ready(admin, "/readyz", Duration::from_secs(60));
        acct_start(acct.parse().unwrap(), b"coasecret", user, session);
        Self {
            dir,
            nas_sock,
            slug,
            user,
            _server: server,
        }
    }

    /// Runs `session disconnect` for the subscriber in the background.
    fn disconnect(&self) -> std::thread::JoinHandle<serde_json::Value> {
        let (d, slug, user) = (self.dir.path().to_owned(), self.slug, self.user);
        std::thread::spawn(move || {
            json(proxpanel(&d).args([
                "session",
                "disconnect",
                "--tenant",
                slug,
                "--username",
                user,
            ]))
        })
    }
}

/// The simulator as grace's router (API-SSL), and a rig whose NAS uses it.
fn kick_rig() -> (
    tokio::runtime::Runtime,
    saas_core::routeros::sim::Simulator,
    Rig,
) {
    saas_core::tls::install_crypto_provider();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt
        .block_on(saas_core::routeros::sim::Simulator::start(
            "127.0.0.1:0".parse().unwrap(),
            saas_core::routeros::sim::SimConfig {
                user: "api".into(),
                password: "api-pass".into(),
                tls: true,
                ..Default::default()
            },
        ))
        .unwrap();
    sim.add_session("grace", "100.64.1.9", (0, 0), (0, 0));
    let rig = Rig::start("kickco", "grace", "sess-9", "radius", Some(&sim));
    (rt, sim, rig)
}

/// A Disconnect that gets a NAK falls back to `/ppp/active/remove` through the RouterOS API
/// (API-SSL to a direct NAS; the simulator plays the router), and the CLI says so.
#[test]
fn disconnect_nak_falls_back_to_an_api_kick() {
    let (_rt, sim, rig) = kick_rig();
    let cli = rig.disconnect();
    let mut buf = [0u8; 4096];
    let (n, from) = rig.nas_sock.recv_from(&mut buf).unwrap();
    let req = validate(&buf[..n]).unwrap();
    let mut nak = PacketBuilder::reply(&req, Code::DisconnectNAK).unwrap();
    nak.attr_u32(dict::ERROR_CAUSE, 506).unwrap();
    rig.nas_sock
        .send_to(&nak.finish(b"coasecret"), from)
        .unwrap();
    let out = cli.join().unwrap();
    let r = &out["results"][0]["result"];
    assert_eq!(r["outcome"], "api-kick", "{out}");
    assert_eq!(r["error_cause"], 506, "{out}");
    assert!(sim.session_names().is_empty(), "the router still has grace");
}

/// A Disconnect the router never answers (every retry times out) also falls back to the API
/// kick, and the detail says the Disconnect timed out.
#[test]
fn disconnect_timeout_falls_back_to_an_api_kick() {
    let (_rt, sim, rig) = kick_rig();
    let cli = rig.disconnect();
    // The NAS hears every try (same identifier) and answers none.
    let mut buf = [0u8; 4096];
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (n, _) = rig.nas_sock.recv_from(&mut buf).unwrap();
        ids.push(validate(&buf[..n]).unwrap().identifier());
    }
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "retries keep the id: {ids:?}"
    );
    let out = cli.join().unwrap();
    let r = &out["results"][0]["result"];
    assert_eq!(r["outcome"], "api-kick", "{out}");
    assert!(r["detail"].as_str().unwrap().contains("timeout"), "{out}");
    assert!(sim.session_names().is_empty(), "the router still has grace");
}

/// `session list --online --live` is answered by the running `serve`, which reads the router's
/// `/ppp/active` and interface counters beside what RADIUS accounting stored.
#[test]
fn session_list_live_reads_the_router() {
    let (_rt, sim, rig) = kick_rig();
    sim.set_bytes("grace", 123_456, 654_321);
    let out = json(proxpanel(rig.dir.path()).args([
        "session", "list", "--tenant", "kickco", "--online", "--live",
    ]));
    let items = out["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{out}");
    let i = &items[0];
    assert_eq!(i["username"], "grace", "{out}");
    assert_eq!(i["acct_session_id"], "sess-9");
    assert_eq!(i["input_octets"], 0, "RADIUS has seen no traffic yet");
    assert_eq!(i["live"]["input_octets"], 123_456, "{out}");
    assert_eq!(i["live"]["output_octets"], 654_321, "{out}");
    assert_eq!(i["live"]["address"], "100.64.1.9");
    assert!(
        i["live"]["router_id"].as_str().unwrap().starts_with('*'),
        "{out}"
    );
    assert_eq!(out["nas_errors"], serde_json::json!([]), "{out}");
    // The table form names the router's columns.
    let table = ok(proxpanel(rig.dir.path()).args([
        "session", "list", "--tenant", "kickco", "--online", "--live",
    ]));
    assert!(
        table.contains("IN (ROUTER)") && table.contains("123456"),
        "{table}"
    );
}
