use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::support::*;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &std::path::Path, admin: SocketAddr, extra: &[&str]) -> Server {
    let child = proxpanel(dir)
        .env("PROXPANEL_DEMO_PASSWORD", "demo-password-1")
        .env("PROXPANEL_LOG", "info")
        // Ephemeral ports: tests run in parallel, and 1812/1813 may be taken on the machine.
        .env("PROXPANEL_RADIUS_AUTH_LISTEN", "127.0.0.1:0")
        .env("PROXPANEL_RADIUS_ACCT_LISTEN", "127.0.0.1:0")
        .env("PROXPANEL_ADMIN_LISTEN", admin.to_string())
        .args(["serve", "--demo"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    Server(child)
}

fn stop(mut s: Server) -> (String, String, Option<i32>) {
    // SIGTERM → graceful shutdown.
    let pid = s.0.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let child = std::mem::replace(
        &mut s.0,
        std::process::Command::new("true").spawn().unwrap(),
    );
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[test]
fn serve_demo_twice_creates_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let s = start(dir.path(), admin, &[]);
    wait_ready(admin, "/readyz", Duration::from_secs(60));
    assert_eq!(http_get(admin, "/healthz").unwrap().0, 200);
    let (code, metrics) = http_get(admin, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(metrics.contains("proxpanel_build_info{"), "{metrics}");
    let (out, err, code) = stop(s);
    assert_eq!(code, Some(0), "graceful exit: {err}");
    for needle in [
        "admin@example.com",
        "owner@demo.example",
        "demo-password-1",
        "otpauth://totp/",
        "testing123",
        "demo / demo",
    ] {
        assert!(out.contains(needle), "demo output lacks {needle}: {out}");
    }
    assert!(err.contains("shutting down"), "{err}");

    let s = start(dir.path(), admin, &[]);
    wait_ready(admin, "/readyz", Duration::from_secs(60));
    let (out, _, _) = stop(s);
    assert!(out.contains("nothing new"), "{out}");

    let tenants = json(proxpanel(dir.path()).args(["tenant", "list"]));
    assert_eq!(tenants["items"].as_array().unwrap().len(), 1);
    let subs = json(proxpanel(dir.path()).args(["subscriber", "list", "--tenant", "demo"]));
    assert_eq!(subs["items"].as_array().unwrap().len(), 1);
    assert_eq!(subs["items"][0]["plan"], "10M");
    let plans = json(proxpanel(dir.path()).args(["plan", "list", "--tenant", "demo"]));
    assert_eq!(plans["items"].as_array().unwrap().len(), 2, "default + 10M");
    let nas = json(proxpanel(dir.path()).args(["nas", "list", "--tenant", "demo"]));
    assert_eq!(nas["items"].as_array().unwrap().len(), 1);
    assert_eq!(nas["items"][0]["ip"], "127.0.0.1");
    let ops = json(proxpanel(dir.path()).args(["operator", "list"]));
    assert_eq!(ops["items"].as_array().unwrap().len(), 1);
}

#[test]
fn port_in_use_is_named_with_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let o = run(proxpanel(dir.path())
        .env("PROXPANEL_ADMIN_LISTEN", addr.to_string())
        .args(["serve"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("tcp port {}", addr.port()))
            && err.contains("PROXPANEL_ADMIN_LISTEN"),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "the holder (this test) is named: {err}"
    );
}

#[test]
fn flags_override_environment_and_off_disables_a_listener() {
    let dir = tempfile::tempdir().unwrap();
    let env_admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let flag_admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let s = start(
        dir.path(),
        env_admin,
        &["--admin-listen", &flag_admin.to_string()],
    );
    wait_ready(flag_admin, "/healthz", Duration::from_secs(60));
    assert!(
        http_get(env_admin, "/healthz").is_none(),
        "the environment's address must not be bound"
    );
    drop(s);
    // `off`: no admin listener at all, the process still runs.
    let s = start(
        dir.path(),
        env_admin,
        &["--admin-listen", "off", "--roles", "workers"],
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(http_get(env_admin, "/healthz").is_none());
    let (_, err, code) = stop(s);
    assert_eq!(code, Some(0), "{err}");
}
