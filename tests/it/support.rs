use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_proxpanel")
}

/// A command with a clean `PROXPANEL_*` environment, a data dir and cheap password hashing.
pub fn proxpanel(data_dir: &Path) -> Command {
    let mut c = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("PROXPANEL_") {
            c.env_remove(k);
        }
    }
    c.env("PROXPANEL_DATA_DIR", data_dir)
        .env("PP_TEST_CHEAP_HASH", "1")
        .env("PROXPANEL_LOG", "warn")
        // The API listener's default port (8080) would clash between parallel tests; the tests
        // that use the API give it a free port.
        .env("PROXPANEL_HTTP_LISTEN", "off");
    c
}

/// Runs and returns the output.
pub fn run(c: &mut Command) -> Output {
    c.output().expect("run proxpanel")
}

/// Runs, asserts success, returns stdout.
pub fn ok(c: &mut Command) -> String {
    let o = run(c);
    assert!(
        o.status.success(),
        "failed: {:?}\nstdout: {}\nstderr: {}",
        c,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs with `--json`, asserts success, parses stdout.
pub fn json(c: &mut Command) -> serde_json::Value {
    let out = ok(c.arg("--json"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Runs, asserts exit code 2 and a one-line reason on stderr; returns it.
pub fn usage_error(c: &mut Command) -> String {
    let o = run(c);
    let err = String::from_utf8_lossy(&o.stderr).trim().to_owned();
    assert_eq!(
        o.status.code(),
        Some(2),
        "expected exit 2 for {c:?}; stderr: {err}; stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "reason is not one line: {err}");
    err
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// A minimal HTTP/1.1 request with a Host header, a Bearer token and a JSON body:
/// (status, JSON body or Null).
pub fn http_json(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect API");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// Polls until `GET path` answers 200, or panics after `timeout`.
pub fn wait_ready(addr: SocketAddr, path: &str, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some((200, _)) = http_get(addr, path) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{path} on {addr} not ready after {timeout:?}");
}

/// `n` distinct free UDP ports on loopback (held together while chosen, so they differ).
pub fn free_udp_ports(n: usize) -> Vec<u16> {
    let socks: Vec<std::net::UdpSocket> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

/// Polls `f` every 100 ms until it returns `Ok`, or panics with `what` and the last `Err` after
/// `timeout`.
pub fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > timeout => {
                panic!("timed out after {timeout:?} waiting for {what}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
