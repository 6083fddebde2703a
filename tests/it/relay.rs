//! The WireGuard relay end to end with real peers: `wireguard-go` in network namespaces plays
//! the routers (infra/e2e/wg-router.sh), `radclient` and small Python listeners run inside
//! them, and `proxpanel serve` runs the relay. Needs root and /dev/net/tun; skipped outside CI
//! when the tools are missing, a failure under CI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/e2e/wg-router.sh")
}

/// Whether the real-peer tests can run here (root, wireguard-go, radclient).
fn can_run() -> bool {
    let have = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let ok = root && have("wireguard-go") && have("wg") && have("radclient");
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!(
                "the relay e2e tests need root, wireguard-go, wg and radclient under CI (infra/test.sh installs them)"
            );
        }
        eprintln!(
            "SKIPPED: relay e2e needs root, wireguard-go, wg and radclient (infra/e2e/install-wg.sh)"
        );
    }
    ok
}

/// A router namespace; torn down on drop.
struct Router {
    name: String,
}

impl Router {
    fn up(name: &str, peer_json: &Path, relay_port: u16) -> Router {
        let r = Router {
            name: name.to_owned(),
        };
        let _ = Command::new(harness()).args(["down", name]).output();
        let o = Command::new(harness())
            .args(["up", name, "--peer-json"])
            .arg(peer_json)
            .args(["--relay-port", &relay_port.to_string()])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "router {name} up failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        r
    }

    fn exec(&self, cmd: &str) -> Output {
        Command::new(harness())
            .args(["exec", &self.name, "--", "sh", "-c", cmd])
            .output()
            .unwrap()
    }

    fn spawn(&self, cmd: &str) -> Child {
        Command::new(harness())
            .args(["exec", &self.name, "--", "sh", "-c", cmd])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// A handshake newer than `after` (unix seconds) within `timeout`; `nudge` sends a packet
    /// into the tunnel to make the router start one.
    fn handshake_after(&self, after: u64, timeout: u64, nudge: bool) -> bool {
        let mut c = Command::new(harness());
        c.args([
            "wait-handshake",
            &self.name,
            "--timeout",
            &timeout.to_string(),
        ])
        .args(["--after", &after.to_string()]);
        if nudge {
            c.arg("--nudge");
        }
        let o = c.output().unwrap();
        if !o.status.success() {
            eprintln!(
                "wait-handshake {}: {}{}",
                self.name,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        o.status.success()
    }

    /// radclient inside the namespace against the relay's tunnel address.
    fn radclient(&self, port: u16, kind: &str, secret: &str, attrs: &str) -> String {
        let o = self.exec(&format!(
            "printf '%s\\n' '{attrs}' | radclient -x -r 2 -t 2 10.200.0.1:{port} {kind} {secret}"
        ));
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }
}

impl Router {
    /// PAP login of alice with `password`; asserts the answer is `expect`.
    fn login(&self, secret: &str, password: &str, expect: &str) {
        let out = self.radclient(
            1812,
            "auth",
            secret,
            &format!("User-Name = alice, User-Password = {password}"),
        );
        assert!(
            out.contains(expect),
            "{}: expected {expect}: {out}",
            self.name
        );
    }

    /// Accounting Start of alice's session `id`.
    fn start(&self, secret: &str, id: &str) -> String {
        self.radclient(
            1813,
            "acct",
            secret,
            &format!("User-Name = alice, Acct-Status-Type = Start, Acct-Session-Id = {id}, Framed-IP-Address = 100.64.0.7"),
        )
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = Command::new(harness()).args(["down", &self.name]).output();
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Serve {
    child: Child,
    admin: SocketAddr,
    log: PathBuf,
}

impl Serve {
    fn start(dir: &Path, wg_port: u16) -> Serve {
        let udp = free_udp_ports(2);
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = dir.join(format!("serve-{}.log", admin.port()));
        let out = std::fs::File::create(&log).unwrap();
        let child = proxpanel(dir)
            .env("PROXPANEL_LOG", "info,relay=debug,boringtun=debug")
            .env("PROXPANEL_ROLES", "relay,radius,workers")
            .env("PROXPANEL_WG_LISTEN", format!("0.0.0.0:{wg_port}"))
            .env("PROXPANEL_WG_DRAIN", "3")
            .env(
                "PROXPANEL_RADIUS_AUTH_LISTEN",
                format!("127.0.0.1:{}", udp[0]),
            )
            .env(
                "PROXPANEL_RADIUS_ACCT_LISTEN",
                format!("127.0.0.1:{}", udp[1]),
            )
            .env("PROXPANEL_ADMIN_LISTEN", admin.to_string())
            .arg("serve")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        wait_ready(admin, "/readyz", Duration::from_secs(60));
        Serve { child, admin, log }
    }

    fn metric(&self, prefix: &str) -> f64 {
        let (_, body) = http_get(self.admin, "/metrics").unwrap_or_default();
        body.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- serve log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn cli(dir: &Path, args: &[&str]) -> Value {
    json(proxpanel(dir).args(args))
}

fn setup_tenant(dir: &Path, slug: &str, password: &str, secret: &str) -> Value {
    cli(
        dir,
        &[
            "tenant",
            "create",
            "--slug",
            slug,
            "--name",
            slug,
            "--owner-email",
            &format!("owner@{slug}.test"),
            "--owner-password",
            "owner-pass-1",
        ],
    );
    cli(
        dir,
        &[
            "subscriber",
            "add",
            "--tenant",
            slug,
            "--username",
            "alice",
            "--password",
            password,
        ],
    );
    cli(
        dir,
        &[
            "nas",
            "add",
            "--tenant",
            slug,
            "--name",
            "core",
            "--tunnel",
            "--secret",
            secret,
            "--api-user",
            "proxpanel",
            "--api-password",
            &format!("api-{secret}"),
        ],
    );
    let peer = cli(dir, &["peer", "add", "--tenant", slug, "--nas", "core"]);
    std::fs::write(dir.join(format!("{slug}-peer.json")), peer.to_string()).unwrap();
    peer
}

/// Answers every CoA/Disconnect with an ACK and appends each request (hex) to `out`.
const COA_RESPONDER: &str = r#"
import socket, hashlib, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.200.0.2", 3799))
secret, out = sys.argv[1].encode(), sys.argv[2]
while True:
    d, a = s.recvfrom(4096)
    with open(out, "a") as f:
        f.write(d.hex() + "\n")
    code = 41 if d[0] == 40 else 44
    hdr = bytes([code, d[1]]) + (20).to_bytes(2, "big")
    s.sendto(hdr + hashlib.md5(hdr + d[4:20] + secret).digest(), a)
"#;

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn relay_end_to_end_with_real_peers() {
    if !can_run() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Two tenants, the same tunnel subnet (both routers are 10.200.0.2), the same username.
    let pa = setup_tenant(dir, "acme", "alice-acme", "secret-a");
    let pb = setup_tenant(dir, "beta", "alice-beta", "secret-b");
    assert_eq!(pa["tunnel_address"], "10.200.0.2/24");
    assert_eq!(pb["tunnel_address"], "10.200.0.2/24");
    assert!(pa["private_key"].is_string() && pa["routeros_script"].is_string());
    let wg_port = free_udp_ports(1)[0];
    let serve = Serve::start(dir, wg_port);
    let t0 = now_unix().saturating_sub(1);
    let tag = std::process::id() % 100_000;
    let ra = Router::up(&format!("ra{tag}"), &dir.join("acme-peer.json"), wg_port);
    let rb = Router::up(&format!("rb{tag}"), &dir.join("beta-peer.json"), wg_port);
    assert!(
        ra.handshake_after(t0, 20, true),
        "router a never completed a handshake"
    );
    assert!(
        rb.handshake_after(t0, 20, true),
        "router b never completed a handshake"
    );

    // RADIUS through the tunnels: each NAS gets its own tenant's answer.
    ra.login("secret-a", "alice-acme", "Access-Accept");
    ra.login("secret-a", "alice-beta", "Access-Reject");
    rb.login("secret-b", "alice-beta", "Access-Accept");
    let start = ra.start("secret-a", "tun-1");
    assert!(start.contains("Accounting-Response"), "{start}");
    let online = |slug: &str| {
        cli(dir, &["session", "list", "--tenant", slug, "--online"])["items"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(online("acme"), 1);
    assert_eq!(online("beta"), 0);

    // The router can ping the relay's tunnel address.
    let ping = ra.exec("ping -c 2 -W 2 10.200.0.1");
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // The RouterOS API through the tunnel: the simulator listens on the router's tunnel address
    // inside its namespace; `nas check` logs in and reads identity and version.
    let mut sim = ra.spawn(&format!(
        "exec timeout 120 {} dev routeros-sim --listen 10.200.0.2:8728 --user proxpanel --password api-secret-a --identity acme-core --version '7.16.2 (stable)'",
        bin()
    ));
    wait_for("the simulator to listen", Duration::from_secs(10), || {
        ra.exec("ss -ltn | grep -q '10.200.0.2:8728'")
            .status
            .success()
    });
    let check = cli(dir, &["nas", "check", "--tenant", "acme", "--nas", "core"]);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["identity"], "acme-core", "{check}");
    assert_eq!(check["version"], "7.16.2 (stable)", "{check}");
    assert!(
        check["rtt_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{check}"
    );
    assert_eq!(check["tls"], false, "{check}");
    // Text output names identity and version.
    let text = ok(proxpanel(dir).args(["nas", "check", "--tenant", "acme", "--nas", "core"]));
    assert!(
        text.contains("acme-core") && text.contains("RouterOS 7.16.2"),
        "{text}"
    );
    // The other tenant's router (same tunnel address, no API server): a clear failure.
    let o = run(proxpanel(dir).args([
        "--json",
        "nas",
        "check",
        "--tenant",
        "beta",
        "--nas",
        "core",
        "--timeout",
        "20",
    ]));
    assert!(!o.status.success());
    let _ = sim.kill();
    let _ = sim.wait();

    // A Disconnect through the tunnel reaches the router's CoA port; the ACK reaches the CLI.
    let coa_log = dir.join("coa-a.log");
    let mut coa = ra.spawn(&format!(
        "exec timeout 120 python3 -c '{COA_RESPONDER}' secret-a {}",
        coa_log.display()
    ));
    std::thread::sleep(Duration::from_millis(700));
    let out = cli(
        dir,
        &[
            "session",
            "disconnect",
            "--tenant",
            "acme",
            "--username",
            "alice",
        ],
    );
    assert_eq!(out["results"][0]["result"]["outcome"], "ack", "{out}");
    let seen = std::fs::read_to_string(&coa_log).unwrap_or_default();
    assert!(
        seen.starts_with("28"),
        "a Disconnect-Request (code 40) arrived: {seen:?}"
    );
    // What came through the tunnel is what an independent decoder (pyrad) accepts.
    let first = seen.lines().next().unwrap_or_default();
    let o = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/e2e/coa_pyrad.py"))
        .args([
            "--secret",
            "secret-a",
            "--hex",
            first,
            "--user",
            "alice",
            "--session",
            "tun-1",
        ])
        .args(["--framed-ip", "100.64.0.7"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "pyrad: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    // Spoofing: router b sends from an address that is not its tunnel address: nothing back.
    let spoofed_before = serve.metric("proxpanel_relay_packets_dropped_total{reason=\"spoofed\"}");
    let o = rb.exec(
        "ip addr add 10.200.0.99/32 dev wg0 && python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((\"10.200.0.99\", 0)); s.settimeout(2); s.sendto(bytes([1,7,0,20])+bytes(16), (\"10.200.0.1\", 1812)); s.recv(100)'",
    );
    assert!(!o.status.success(), "a spoofed source got an answer");
    wait_for(
        "the spoofed packet to be counted",
        Duration::from_secs(5),
        || {
            serve.metric("proxpanel_relay_packets_dropped_total{reason=\"spoofed\"}")
                > spoofed_before
        },
    );

    // Suspension (DESIGN §4): the online session gets its Disconnect through the tunnel, then,
    // after the drain window, the router can no longer complete a handshake. Beta is untouched.
    ra.start("secret-a", "tun-2");
    let before = std::fs::read_to_string(&coa_log)
        .unwrap_or_default()
        .lines()
        .count();
    cli(dir, &["tenant", "suspend", "acme"]);
    wait_for(
        "the Disconnect on suspension",
        Duration::from_secs(15),
        || {
            std::fs::read_to_string(&coa_log)
                .unwrap_or_default()
                .lines()
                .count()
                > before
        },
    );
    let _ = coa.kill();
    let _ = coa.wait();
    std::thread::sleep(Duration::from_secs(4)); // the 3 s drain window
    let after_drain = now_unix();
    assert!(
        !ra.handshake_after(after_drain, 8, true),
        "a drained tenant's router completed a handshake"
    );
    rb.login("secret-b", "alice-beta", "Access-Accept");

    // Restart: the relay dials the endpoints it saw, so the tunnel comes back without the
    // router doing anything (its own keepalive would take 25 s, its rekey minutes).
    wait_for(
        "router b's endpoint to be persisted",
        Duration::from_secs(10),
        || {
            cli(dir, &["peer", "list", "--tenant", "beta"])["items"][0]["remote_endpoint"]
                .is_string()
        },
    );
    serve.stop();
    let restarted = now_unix().saturating_sub(1); // `wg` shows whole seconds
    let serve = Serve::start(dir, wg_port);
    assert!(
        rb.handshake_after(restarted, 10, false),
        "the restarted relay did not bring the tunnel back by itself"
    );
    rb.login("secret-b", "alice-beta", "Access-Accept");

    // Live peer changes, no restart: removing beta's peer cuts its router off at once; a new
    // peer for another NAS works as soon as it is added. Other peers are undisturbed.
    cli(
        dir,
        &["peer", "remove", "--tenant", "beta", "--nas", "core"],
    );
    std::thread::sleep(Duration::from_millis(600));
    let cut = rb.radclient(
        1812,
        "auth",
        "secret-b",
        "User-Name = alice, User-Password = alice-beta",
    );
    assert!(
        !cut.contains("Access-Accept"),
        "a removed peer still got an answer: {cut}"
    );
    cli(
        dir,
        &[
            "nas", "add", "--tenant", "beta", "--name", "edge", "--tunnel", "--secret", "secret-e",
        ],
    );
    let pe = cli(dir, &["peer", "add", "--tenant", "beta", "--nas", "edge"]);
    std::fs::write(dir.join("edge-peer.json"), pe.to_string()).unwrap();
    let t1 = now_unix().saturating_sub(1);
    let re = Router::up(&format!("re{tag}"), &dir.join("edge-peer.json"), wg_port);
    assert!(
        re.handshake_after(t1, 20, true),
        "a peer added live never connected"
    );
    re.login("secret-e", "alice-beta", "Access-Accept");
    drop(serve);
}
