//! Black-box RADIUS tests: a real `proxpanel serve` with the `radius` role, data set up with the
//! CLI, driven by `radclient` (freeradius-utils), by packets built here from a chosen source
//! address (a direct NAS is found by its source address, and radclient cannot choose one), and by
//! pyrad for MS-CHAPv2 (infra/e2e/mschapv2_pyrad.py).
//!
//! Without radclient (or pyrad) a test is skipped with a message, unless `CI` is set: then it fails.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use serde_json::Value;

use crate::support::*;

// ---------------------------------------------------------------------------------------------
// Tools

fn tool_missing(tool: &str, how: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("{tool} is required under CI ({how}; infra/test.sh installs it)");
    }
    eprintln!("SKIPPED: {tool} is not installed ({how}); under CI this test fails");
    true
}

/// False (after saying so) when radclient is missing outside CI; panics under CI.
fn have_radclient() -> bool {
    let ok = Command::new("radclient")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    ok || !tool_missing("radclient", "apt-get install freeradius-utils")
}

// ---------------------------------------------------------------------------------------------
// The server and the data

/// A temporary data dir, set up with the CLI before `serve` starts.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cli(&self, args: &[&str]) -> Value {
        json(proxpanel(self.path()).args(args))
    }

    fn tenant(&self, slug: &str) -> Value {
        self.cli(&[
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
        ])
    }

    /// `plan add` with the given rates and extra flags.
    fn plan(&self, tenant: &str, name: &str, down: u32, up: u32, extra: &[&str]) -> Value {
        let (down, up) = (down.to_string(), up.to_string());
        let mut a = vec![
            "plan",
            "add",
            "--tenant",
            tenant,
            "--name",
            name,
            "--download-kbps",
            &down,
            "--upload-kbps",
            &up,
        ];
        a.extend_from_slice(extra);
        self.cli(&a)
    }

    fn subscriber(&self, tenant: &str, user: &str, password: &str, extra: &[&str]) -> Value {
        let mut a = vec![
            "subscriber",
            "add",
            "--tenant",
            tenant,
            "--username",
            user,
            "--password",
            password,
        ];
        a.extend_from_slice(extra);
        self.cli(&a)
    }

    fn nas(&self, tenant: &str, name: &str, ip: &str, secret: &str, extra: &[&str]) -> Value {
        let mut a = vec![
            "nas", "add", "--tenant", tenant, "--name", name, "--ip", ip, "--secret", secret,
        ];
        a.extend_from_slice(extra);
        self.cli(&a)
    }

    /// `session list --tenant T [--online] --json` → items.
    fn sessions(&self, tenant: &str, online: bool) -> Vec<Value> {
        let mut a = vec!["session", "list", "--tenant", tenant];
        if online {
            a.push("--online");
        }
        let v = self.cli(&a);
        v["items"]
            .as_array()
            .unwrap_or_else(|| panic!("session list has no items array: {v}"))
            .clone()
    }

    /// The sessions with this Acct-Session-Id.
    fn sessions_with_id(&self, tenant: &str, acct_session_id: &str) -> Vec<Value> {
        self.sessions(tenant, false)
            .into_iter()
            .filter(|s| s["acct_session_id"] == acct_session_id)
            .collect()
    }

    /// `auth-log --tenant T --json`.
    fn auth_log(&self, tenant: &str) -> Value {
        self.cli(&["auth-log", "--tenant", tenant])
    }

    /// Waits until the tenant's auth log has at least `n` entries; returns them (newest first).
    fn auth_log_at_least(&self, tenant: &str, n: usize) -> Vec<Value> {
        poll(
            Duration::from_secs(10),
            &format!("{n} auth-log entries of {tenant}"),
            || {
                let v = self.auth_log(tenant);
                let items = v["items"].as_array().cloned().unwrap_or_default();
                if items.len() >= n {
                    Ok(items)
                } else {
                    Err(format!("{} entries: {v}", items.len()))
                }
            },
        )
    }

    /// Starts `serve` with the radius role (and workers) on free ports; ready when it returns.
    fn serve(&self) -> Server {
        self.serve_with(&[], &[])
    }

    fn serve_with(&self, env: &[(&str, &str)], args: &[&str]) -> Server {
        let udp = free_udp_ports(2);
        let auth: SocketAddr = (Ipv4Addr::LOCALHOST, udp[0]).into();
        let acct: SocketAddr = (Ipv4Addr::LOCALHOST, udp[1]).into();
        let admin: SocketAddr = (Ipv4Addr::LOCALHOST, free_port()).into();
        let log = self.path().join(format!("serve-{}.log", admin.port()));
        let out = File::create(&log).unwrap();
        let mut cmd = proxpanel(self.path());
        cmd.env("PROXPANEL_LOG", "info")
            .env("PROXPANEL_ROLES", "radius,workers")
            .env("PROXPANEL_ADMIN_LISTEN", admin.to_string())
            .env("PROXPANEL_RADIUS_AUTH_LISTEN", auth.to_string())
            .env("PROXPANEL_RADIUS_ACCT_LISTEN", acct.to_string());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn proxpanel serve");
        let mut s = Server {
            child,
            auth,
            acct,
            log,
        };
        let start = Instant::now();
        loop {
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("serve exited at start-up ({status}):\n{}", s.log());
            }
            if let Some((200, _)) = http_get(admin, "/readyz") {
                break;
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!("serve not ready after 60 s:\n{}", s.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }
}

/// A running `proxpanel serve`; killed on drop (its log is printed when the test failed).
struct Server {
    child: Child,
    auth: SocketAddr,
    acct: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!(
                "---- serve log (last {} lines) ----\n{}",
                tail.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// radclient

/// What radclient printed with `-x`: the reply's code and attributes, in order.
#[derive(Debug)]
struct RadOut {
    code: Option<String>,
    attrs: Vec<(String, String)>,
    stdout: String,
    stderr: String,
}

impl RadOut {
    fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn code(&self) -> &str {
        self.code.as_deref().unwrap_or("<no reply>")
    }

    fn no_reply(&self) -> bool {
        self.code.is_none() && format!("{}{}", self.stdout, self.stderr).contains("No reply")
    }

    #[track_caller]
    fn expect(&self, code: &str) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "radclient got {} where {code} was expected:\n{}{}",
            self.code(),
            self.stdout,
            self.stderr
        );
        self
    }

    /// An Access-Reject whose Reply-Message is exactly `reason`.
    #[track_caller]
    fn expect_reject(&self, reason: &str) {
        self.expect("Access-Reject");
        assert_eq!(
            self.get("Reply-Message"),
            Some(reason),
            "Reply-Message of the reject:\n{}",
            self.stdout
        );
        self.expect_ma_first();
    }

    /// Message-Authenticator is the first attribute of the reply.
    #[track_caller]
    fn expect_ma_first(&self) {
        assert_eq!(
            self.attrs.first().map(|(k, _)| k.as_str()),
            Some("Message-Authenticator"),
            "Message-Authenticator must be the first attribute of every reply:\n{}",
            self.stdout
        );
    }
}

/// `radclient -x -t T -r 1 SERVER KIND SECRET` with `input` (attribute lines) on stdin.
fn radclient_t(server: SocketAddr, kind: &str, secret: &str, input: &str, timeout: &str) -> RadOut {
    let mut child = Command::new("radclient")
        .args(["-x", "-t", timeout, "-r", "1"])
        .arg(server.to_string())
        .args([kind, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn radclient");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let mut code = None;
    let mut attrs = Vec::new();
    let mut in_reply = false;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("Received ") {
            code = rest.split_whitespace().next().map(str::to_owned);
            attrs.clear();
            in_reply = true;
        } else if line.starts_with('\t') || line.starts_with("  ") {
            if in_reply && let Some((k, v)) = line.trim().split_once(" = ") {
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                attrs.push((k.to_owned(), v.to_owned()));
            }
        } else {
            in_reply = false;
        }
    }
    RadOut {
        code,
        attrs,
        stdout,
        stderr,
    }
}

fn radclient(server: SocketAddr, kind: &str, secret: &str, input: &str) -> RadOut {
    radclient_t(server, kind, secret, input, "2")
}

/// PAP through radclient: `User-Name`, `User-Password` and `extra` attribute assignments.
fn rc_pap(s: &Server, secret: &str, user: &str, password: &str, extra: &str) -> RadOut {
    let mut input = format!("User-Name = \"{user}\", User-Password = \"{password}\"");
    if !extra.is_empty() {
        input.push_str(", ");
        input.push_str(extra);
    }
    radclient(s.auth, "auth", secret, &input)
}

/// An Accounting-Request through radclient; asserts the Accounting-Response.
#[track_caller]
fn rc_acct(s: &Server, secret: &str, input: &str) {
    radclient(s.acct, "acct", secret, input).expect("Accounting-Response");
}

// ---------------------------------------------------------------------------------------------
// A NAS of our own: hand-built packets from a chosen source address (RFC 2865, 2866, 2869, 3579)

const ACCESS_REQUEST: u8 = 1;
const ACCESS_ACCEPT: u8 = 2;
const ACCESS_REJECT: u8 = 3;
const ACCOUNTING_REQUEST: u8 = 4;
const ACCOUNTING_RESPONSE: u8 = 5;

const USER_NAME: u8 = 1;
const USER_PASSWORD: u8 = 2;
const CHAP_PASSWORD: u8 = 3;
const NAS_IP_ADDRESS: u8 = 4;
const FRAMED_IP_ADDRESS: u8 = 8;
const FILTER_ID: u8 = 11;
const REPLY_MESSAGE: u8 = 18;
const VENDOR_SPECIFIC: u8 = 26;
const SESSION_TIMEOUT: u8 = 27;
const ACCT_STATUS_TYPE: u8 = 40;
const ACCT_INPUT_OCTETS: u8 = 42;
const ACCT_OUTPUT_OCTETS: u8 = 43;
const ACCT_SESSION_ID: u8 = 44;
const ACCT_DELAY_TIME: u8 = 41;
const ACCT_INPUT_GIGAWORDS: u8 = 52;
const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
const CHAP_CHALLENGE: u8 = 60;
const MESSAGE_AUTHENTICATOR: u8 = 80;
const ACCT_INTERIM_INTERVAL: u8 = 85;
const FRAMED_POOL: u8 = 88;

const VENDOR_MIKROTIK: u32 = 14988;
const MIKROTIK_RATE_LIMIT: u8 = 8;

const START: u32 = 1;
const STOP: u32 = 2;
const INTERIM: u32 = 3;

type Attr = (u8, Vec<u8>);

fn s_attr(t: u8, v: &str) -> Attr {
    (t, v.as_bytes().to_vec())
}

fn u_attr(t: u8, v: u32) -> Attr {
    (t, v.to_be_bytes().to_vec())
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize());
    out
}

fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..16].copy_from_slice(&md5(&[key]));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = md5(&[&ipad, data]);
    md5(&[&opad, &inner])
}

/// 16 unpredictable-enough bytes (a test's authenticators only need to differ).
fn random16() -> [u8; 16] {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    md5(&[
        &n.to_be_bytes(),
        &t.to_be_bytes(),
        &std::process::id().to_be_bytes(),
    ])
}

/// RFC 2865 5.2: User-Password hiding.
fn hide_password(password: &str, secret: &[u8], authenticator: &[u8; 16]) -> Vec<u8> {
    let mut p = password.as_bytes().to_vec();
    let padded = p.len().div_ceil(16).max(1) * 16;
    p.resize(padded, 0);
    let mut out = Vec::with_capacity(p.len());
    let mut prev: Vec<u8> = authenticator.to_vec();
    for chunk in p.chunks(16) {
        let b = md5(&[secret, &prev]);
        let c: Vec<u8> = chunk.iter().zip(b).map(|(x, y)| x ^ y).collect();
        out.extend_from_slice(&c);
        prev = c;
    }
    out
}

/// How a request carries Message-Authenticator.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Ma {
    Absent,
    Valid,
    /// Present with a wrong value.
    Corrupt,
}

enum Cred<'a> {
    Pap(&'a str),
    /// CHAP with a CHAP-Challenge attribute (not the Request Authenticator, as radclient does).
    Chap(&'a str),
}

/// A decoded reply whose Response Authenticator and Message-Authenticator were verified.
#[derive(Debug)]
struct Reply {
    code: u8,
    attrs: Vec<Attr>,
}

impl Reply {
    fn get(&self, t: u8) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(k, _)| *k == t)
            .map(|(_, v)| v.as_slice())
    }

    fn string(&self, t: u8) -> Option<String> {
        self.get(t).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn u32(&self, t: u8) -> Option<u32> {
        self.get(t)
            .map(|v| u32::from_be_bytes(v.try_into().expect("a 4-byte integer attribute")))
    }

    /// The value of a vendor attribute (one per Vendor-Specific, as everybody sends them).
    fn vsa(&self, vendor: u32, t: u8) -> Option<Vec<u8>> {
        self.attrs.iter().find_map(|(k, v)| {
            (*k == VENDOR_SPECIFIC
                && v.len() >= 6
                && u32::from_be_bytes(v[..4].try_into().unwrap()) == vendor
                && v[4] == t)
                .then(|| v[6..].to_vec())
        })
    }

    fn has_vendor(&self, vendor: u32) -> bool {
        self.attrs.iter().any(|(k, v)| {
            *k == VENDOR_SPECIFIC
                && v.len() >= 4
                && u32::from_be_bytes(v[..4].try_into().unwrap()) == vendor
        })
    }

    #[track_caller]
    fn expect_reject(&self, reason: &str) {
        assert_eq!(self.code, ACCESS_REJECT, "expected Access-Reject: {self:?}");
        assert_eq!(
            self.string(REPLY_MESSAGE).as_deref(),
            Some(reason),
            "Reply-Message"
        );
    }

    #[track_caller]
    fn expect_accept(&self) -> &Self {
        assert_eq!(
            self.code,
            ACCESS_ACCEPT,
            "expected Access-Accept, got code {} (Reply-Message {:?})",
            self.code,
            self.string(REPLY_MESSAGE)
        );
        self
    }
}

/// A NAS of our own: a UDP socket bound to a chosen loopback address.
struct Nas {
    sock: UdpSocket,
    secret: Vec<u8>,
    id: u8,
}

impl Nas {
    fn new(ip: &str, secret: &str) -> Nas {
        let sock = UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
        Nas {
            sock,
            secret: secret.as_bytes().to_vec(),
            id: random16()[0],
        }
    }

    fn next_id(&mut self) -> u8 {
        self.id = self.id.wrapping_add(1);
        self.id
    }

    fn source(&self) -> Ipv4Addr {
        match self.sock.local_addr().unwrap().ip() {
            std::net::IpAddr::V4(a) => a,
            std::net::IpAddr::V6(_) => unreachable!(),
        }
    }

    fn encode(code: u8, id: u8, auth: &[u8; 16], attrs: &[Attr]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attrs {
            assert!(v.len() <= 253);
            body.push(*t);
            body.push(v.len() as u8 + 2);
            body.extend_from_slice(v);
        }
        let len = (20 + body.len()) as u16;
        let mut p = vec![code, id];
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(auth);
        p.extend_from_slice(&body);
        p
    }

    /// Offset of the first Message-Authenticator's value in an encoded packet.
    fn ma_offset(p: &[u8]) -> Option<usize> {
        let mut i = 20;
        while i + 2 <= p.len() {
            let (t, l) = (p[i], p[i + 1] as usize);
            if l < 2 {
                return None;
            }
            if t == MESSAGE_AUTHENTICATOR && l == 18 {
                return Some(i + 2);
            }
            i += l;
        }
        None
    }

    /// An Access-Request: (packet, Request Authenticator).
    fn access_packet(
        &mut self,
        user: &str,
        cred: Cred,
        ma: Ma,
        extra: &[Attr],
    ) -> (Vec<u8>, [u8; 16]) {
        let auth = random16();
        let id = self.next_id();
        let mut attrs = Vec::new();
        if ma != Ma::Absent {
            attrs.push((MESSAGE_AUTHENTICATOR, vec![0; 16]));
        }
        attrs.push(s_attr(USER_NAME, user));
        match cred {
            Cred::Pap(pw) => attrs.push((USER_PASSWORD, hide_password(pw, &self.secret, &auth))),
            Cred::Chap(pw) => {
                let challenge = random16();
                let chap_id = id ^ 0x5a;
                let hash = md5(&[&[chap_id], pw.as_bytes(), &challenge]);
                let mut v = vec![chap_id];
                v.extend_from_slice(&hash);
                attrs.push((CHAP_PASSWORD, v));
                attrs.push((CHAP_CHALLENGE, challenge.to_vec()));
            }
        }
        attrs.push((NAS_IP_ADDRESS, self.source().octets().to_vec()));
        attrs.extend_from_slice(extra);
        let mut p = Self::encode(ACCESS_REQUEST, id, &auth, &attrs);
        if ma != Ma::Absent {
            let mut mac = hmac_md5(&self.secret, &p);
            if ma == Ma::Corrupt {
                mac[0] ^= 0xff;
            }
            let o = Self::ma_offset(&p).unwrap();
            p[o..o + 16].copy_from_slice(&mac);
        }
        (p, auth)
    }

    /// An Accounting-Request (RFC 2866 3: Request Authenticator over a zero field; a
    /// Message-Authenticator, when present, computed over the zero field too).
    fn acct_packet(&mut self, attrs: &[Attr], ma: Ma) -> (Vec<u8>, [u8; 16]) {
        let id = self.next_id();
        let mut all = Vec::new();
        if ma != Ma::Absent {
            all.push((MESSAGE_AUTHENTICATOR, vec![0; 16]));
        }
        all.push((NAS_IP_ADDRESS, self.source().octets().to_vec()));
        all.extend_from_slice(attrs);
        let mut p = Self::encode(ACCOUNTING_REQUEST, id, &[0; 16], &all);
        if ma != Ma::Absent {
            let mut mac = hmac_md5(&self.secret, &p);
            if ma == Ma::Corrupt {
                mac[0] ^= 0xff;
            }
            let o = Self::ma_offset(&p).unwrap();
            p[o..o + 16].copy_from_slice(&mac);
        }
        let auth = md5(&[&p, &self.secret]);
        p[4..20].copy_from_slice(&auth);
        (p, auth)
    }

    /// Sends `packet` and waits up to `wait` for its reply; verifies it (panics on a bad one).
    fn exchange(
        &self,
        to: SocketAddr,
        packet: &[u8],
        req_auth: &[u8; 16],
        wait: Duration,
    ) -> Option<Reply> {
        self.sock.send_to(packet, to).unwrap();
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            let (n, from) = match self.sock.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("recv: {e}"),
            };
            if from != to || n < 20 || buf[1] != packet[1] {
                continue; // not the reply to this request (a late one to an earlier request)
            }
            return Some(self.verify(&buf[..n], req_auth, packet[0]));
        }
    }

    /// Checks a reply's length, Response Authenticator and Message-Authenticator; decodes it.
    #[track_caller]
    fn verify(&self, p: &[u8], req_auth: &[u8; 16], req_code: u8) -> Reply {
        let len = u16::from_be_bytes([p[2], p[3]]) as usize;
        assert!(
            len >= 20 && len <= p.len(),
            "reply length field {len} vs {} bytes",
            p.len()
        );
        let p = &p[..len];
        let want = md5(&[&p[..4], req_auth, &p[20..], &self.secret]);
        assert_eq!(
            &p[4..20],
            &want,
            "the reply's Response Authenticator is wrong (RFC 2865 3)"
        );
        let mut attrs = Vec::new();
        let mut i = 20;
        while i < p.len() {
            assert!(i + 2 <= p.len(), "truncated attribute in the reply");
            let (t, l) = (p[i], p[i + 1] as usize);
            assert!(
                l >= 2 && i + l <= p.len(),
                "bad attribute length in the reply"
            );
            attrs.push((t, p[i + 2..i + l].to_vec()));
            i += l;
        }
        if let Some(o) = Self::ma_offset(p) {
            // Over the Request Authenticator for Access-* replies (RFC 3579 3.2), over zeros for
            // an Accounting-Response (as FreeRADIUS and pyrad do; RFC 5997 3 for Status-Server
            // aside).
            let mut copy = p.to_vec();
            if p[0] == ACCOUNTING_RESPONSE {
                copy[4..20].fill(0);
            } else {
                copy[4..20].copy_from_slice(req_auth);
            }
            copy[o..o + 16].fill(0);
            assert_eq!(
                &p[o..o + 16],
                &hmac_md5(&self.secret, &copy),
                "the reply's Message-Authenticator is wrong (code {})",
                p[0]
            );
        }
        if req_code == ACCESS_REQUEST {
            assert!(
                matches!(p[0], ACCESS_ACCEPT | ACCESS_REJECT | 11),
                "reply code {} to an Access-Request",
                p[0]
            );
            assert_eq!(
                attrs.first().map(|a| a.0),
                Some(MESSAGE_AUTHENTICATOR),
                "Message-Authenticator must be first in every reply to an Access-Request: {attrs:?}"
            );
        } else {
            assert_eq!(
                p[0], ACCOUNTING_RESPONSE,
                "reply code to an Accounting-Request"
            );
        }
        Reply { code: p[0], attrs }
    }

    /// An Access-Request; `None` when no reply came within 1.5 s.
    fn access(&mut self, s: &Server, user: &str, cred: Cred, ma: Ma) -> Option<Reply> {
        self.access_with(s, user, cred, ma, &[])
    }

    fn access_with(
        &mut self,
        s: &Server,
        user: &str,
        cred: Cred,
        ma: Ma,
        extra: &[Attr],
    ) -> Option<Reply> {
        let (p, a) = self.access_packet(user, cred, ma, extra);
        self.exchange(s.auth, &p, &a, Duration::from_millis(1500))
    }

    /// An Accounting-Request; `None` when no reply came within 1.5 s.
    fn acct(&mut self, s: &Server, attrs: &[Attr]) -> Option<Reply> {
        let (p, a) = self.acct_packet(attrs, Ma::Absent);
        self.exchange(s.acct, &p, &a, Duration::from_millis(1500))
    }

    #[track_caller]
    fn acct_ok(&mut self, s: &Server, attrs: &[Attr]) {
        let r = self.acct(s, attrs);
        assert!(
            r.is_some_and(|r| r.code == ACCOUNTING_RESPONSE),
            "no Accounting-Response to {attrs:?}"
        );
    }
}

fn acct_attrs(
    status: u32,
    user: &str,
    session: &str,
    counters: Option<(u32, u32, u32, u32)>,
) -> Vec<Attr> {
    let mut v = vec![
        u_attr(ACCT_STATUS_TYPE, status),
        s_attr(USER_NAME, user),
        s_attr(ACCT_SESSION_ID, session),
    ];
    if let Some((i, ig, o, og)) = counters {
        v.push(u_attr(ACCT_INPUT_OCTETS, i));
        v.push(u_attr(ACCT_INPUT_GIGAWORDS, ig));
        v.push(u_attr(ACCT_OUTPUT_OCTETS, o));
        v.push(u_attr(ACCT_OUTPUT_GIGAWORDS, og));
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Helpers on JSON

fn as_i64(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn time(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// "User-Request", "user_request", "user-request" → "userrequest".
fn norm(v: &Value) -> String {
    v.as_str()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The session refers to this NAS (by name or by id).
#[track_caller]
fn assert_nas(session: &Value, nas: &Value) {
    assert!(
        session["nas"] == nas["name"] || session["nas"] == nas["id"],
        "session's nas {} is neither {} nor {}",
        session["nas"],
        nas["name"],
        nas["id"]
    );
}

const GW: i64 = 1 << 32;

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn pap_chap_accept_with_reply_attributes() {
    if !have_radclient() {
        return;
    }
    let env = Env::new();
    env.tenant("acme");
    env.plan("acme", "10M", 10240, 2048, &["--pool", "pppoe-pool"]);
    let expires = chrono::Utc::now() + chrono::Duration::hours(2);
    env.subscriber(
        "acme",
        "alice",
        "alice-pw",
        &[
            "--plan",
            "10M",
            "--expires",
            &expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "--ipv6-prefix",
            "2001:db8:1::/64",
            "--delegated-prefix",
            "2001:db8:100::/56",
        ],
    );
    env.subscriber(
        "acme",
        "bob",
        "bob-pw",
        &["--plan", "10M", "--static-ip", "10.20.0.7"],
    );
    env.nas(
        "acme",
        "core",
        "127.0.0.1",
        "mt-secret",
        &["--vendor", "mikrotik"],
    );
    env.nas(
        "acme",
        "edge",
        "127.0.0.2",
        "gen-secret",
        &["--vendor", "generic"],
    );
    let s = env.serve();

    // PAP on the MikroTik NAS: rate limit rx/tx from the router's view (rx = upload).
    let r = rc_pap(&s, "mt-secret", "alice", "alice-pw", "");
    let to_expiry = (expires - chrono::Utc::now()).num_seconds();
    r.expect("Access-Accept").expect_ma_first();
    assert_eq!(
        r.get("Mikrotik-Rate-Limit"),
        Some("2048k/10240k"),
        "{}",
        r.stdout
    );
    let interim: i64 = r
        .get("Acct-Interim-Interval")
        .unwrap_or_else(|| panic!("no Acct-Interim-Interval: {}", r.stdout))
        .parse()
        .unwrap();
    assert!(interim > 0, "{}", r.stdout);
    assert_eq!(r.get("Framed-Pool"), Some("pppoe-pool"), "{}", r.stdout);
    assert!(!r.has("Framed-IP-Address"), "no static IP: {}", r.stdout);
    assert_eq!(
        r.get("Framed-IPv6-Prefix"),
        Some("2001:db8:1::/64"),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.get("Delegated-IPv6-Prefix"),
        Some("2001:db8:100::/56"),
        "{}",
        r.stdout
    );
    let timeout: i64 = r
        .get("Session-Timeout")
        .unwrap_or_else(|| panic!("no Session-Timeout before the expiry: {}", r.stdout))
        .parse()
        .unwrap();
    assert!(
        timeout <= to_expiry + 2 && timeout >= to_expiry - 120,
        "Session-Timeout {timeout} vs {to_expiry} s to the expiry"
    );

    // CHAP (radclient: the Request Authenticator is the challenge).
    let r = radclient(
        s.auth,
        "auth",
        "mt-secret",
        "User-Name = \"alice\", CHAP-Password = \"alice-pw\"",
    );
    r.expect("Access-Accept").expect_ma_first();
    assert_eq!(
        r.get("Mikrotik-Rate-Limit"),
        Some("2048k/10240k"),
        "{}",
        r.stdout
    );
    let r = radclient(
        s.auth,
        "auth",
        "mt-secret",
        "User-Name = \"alice\", CHAP-Password = \"not-it\"",
    );
    r.expect_reject("wrong password");

    // A static address: Framed-IP-Address instead of the pool; no expiry, no Session-Timeout.
    let r = rc_pap(&s, "mt-secret", "bob", "bob-pw", "");
    r.expect("Access-Accept");
    assert_eq!(
        r.get("Framed-IP-Address"),
        Some("10.20.0.7"),
        "{}",
        r.stdout
    );
    assert!(!r.has("Framed-Pool"), "static IP and pool: {}", r.stdout);
    assert!(
        !r.has("Session-Timeout"),
        "no expiry, no plan cap: {}",
        r.stdout
    );
    assert_eq!(
        r.get("Mikrotik-Rate-Limit"),
        Some("2048k/10240k"),
        "{}",
        r.stdout
    );

    // The generic NAS (source 127.0.0.2): Filter-Id = plan name, no MikroTik attributes.
    let mut edge = Nas::new("127.0.0.2", "gen-secret");
    let r = edge
        .access(&s, "bob", Cred::Pap("bob-pw"), Ma::Valid)
        .expect("a reply");
    r.expect_accept();
    assert_eq!(r.string(FILTER_ID).as_deref(), Some("10M"), "{r:?}");
    assert!(
        !r.has_vendor(VENDOR_MIKROTIK),
        "MikroTik VSA to a generic NAS: {r:?}"
    );
    assert_eq!(r.get(FRAMED_IP_ADDRESS), Some(&[10, 20, 0, 7][..]), "{r:?}");
    assert!(r.u32(ACCT_INTERIM_INTERVAL).is_some_and(|i| i > 0), "{r:?}");
    // CHAP with a CHAP-Challenge attribute.
    let r = edge
        .access(&s, "alice", Cred::Chap("alice-pw"), Ma::Valid)
        .expect("a reply");
    r.expect_accept();
    assert_eq!(r.string(FILTER_ID).as_deref(), Some("10M"), "{r:?}");
    assert_eq!(
        r.string(FRAMED_POOL).as_deref(),
        Some("pppoe-pool"),
        "{r:?}"
    );
    assert!(
        r.u32(SESSION_TIMEOUT)
            .is_some_and(|t| i64::from(t) <= to_expiry + 2),
        "{r:?}"
    );
    edge.access(&s, "alice", Cred::Chap("nope"), Ma::Valid)
        .expect("a reply")
        .expect_reject("wrong password");

    // The auth log: newest first, with the method.
    let items = env.auth_log_at_least("acme", 7);
    let got: Vec<(String, String, String)> = items
        .iter()
        .map(|i| {
            (
                i["username"].as_str().unwrap_or_default().to_owned(),
                i["method"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                i["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want = [
        ("alice", "chap", "reject"),
        ("alice", "chap", "accept"),
        ("bob", "pap", "accept"),
        ("bob", "pap", "accept"),
        ("alice", "chap", "reject"),
        ("alice", "chap", "accept"),
        ("alice", "pap", "accept"),
    ];
    assert_eq!(got.len(), want.len(), "auth log: {items:#?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            (g.0.as_str(), g.2.as_str()),
            (w.0, w.2),
            "auth log (newest first): {got:?}"
        );
        assert!(
            g.1.contains(w.1) && !g.1.contains("ms"),
            "method {:?} for {w:?}: {got:?}",
            g.1
        );
    }
    for w in items.windows(2) {
        assert!(
            time(&w[0]["at"]) >= time(&w[1]["at"]),
            "newest first: {items:#?}"
        );
    }
    let pap = &items[6];
    assert_eq!(pap["reason"], Value::Null, "an accept has no reason: {pap}");
    assert!(!pap["nas_id"].is_null(), "{pap}");
    assert_eq!(items[0]["reason"], "wrong password");
}

#[test]
fn every_reject_reason() {
    if !have_radclient() {
        return;
    }
    let env = Env::new();
    env.tenant("acme");
    env.plan("acme", "10M", 10240, 2048, &[]);
    // 1000 bytes of quota and no FUP rates: the quota rejects.
    env.plan("acme", "tiny", 1024, 512, &["--quota-gb", "0.000001"]);
    env.subscriber("acme", "alice", "alice-pw", &["--plan", "10M"]);
    env.subscriber("acme", "dis", "dis-pw", &["--plan", "10M"]);
    env.cli(&[
        "subscriber",
        "set",
        "--tenant",
        "acme",
        "--username",
        "dis",
        "--status",
        "disabled",
    ]);
    env.subscriber(
        "acme",
        "old",
        "old-pw",
        &["--plan", "10M", "--expires", "2020-01-01"],
    );
    env.subscriber(
        "acme",
        "mac",
        "mac-pw",
        &["--plan", "10M", "--mac", "aa:bb:cc:dd:ee:ff"],
    );
    env.subscriber(
        "acme",
        "single",
        "single-pw",
        &["--plan", "10M", "--sim-use", "1"],
    );
    env.subscriber("acme", "quota", "quota-pw", &["--plan", "tiny"]);
    env.nas("acme", "core", "127.0.0.1", "mt-secret", &[]);
    let s = env.serve();
    let sec = "mt-secret";

    // (username, outcome, reason) in the order sent.
    let mut sent: Vec<(&str, &str, Option<&str>)> = Vec::new();
    {
        let mut reject = |user: &'static str, pw: &str, extra: &str, reason: &'static str| {
            rc_pap(&s, sec, user, pw, extra).expect_reject(reason);
            sent.push((user, "reject", Some(reason)));
        };
        reject("ghost", "whatever", "", "unknown user");
        reject("alice", "not-alice-pw", "", "wrong password");
        reject("dis", "dis-pw", "", "account disabled");
        // The password is checked before the status: a wrong one says so, whatever the status.
        reject("dis", "not-dis-pw", "", "wrong password");
        reject("old", "old-pw", "", "account expired");
        reject(
            "mac",
            "mac-pw",
            "Calling-Station-Id = \"11:22:33:44:55:66\"",
            "MAC address not allowed",
        );
        reject("mac", "mac-pw", "", "MAC address not allowed");
    }

    // The locked MAC as MikroTik writes it (upper case) is let in.
    rc_pap(
        &s,
        sec,
        "mac",
        "mac-pw",
        "Calling-Station-Id = \"AA:BB:CC:DD:EE:FF\"",
    )
    .expect("Access-Accept");
    sent.push(("mac", "accept", None));

    // Simultaneous use: one open session is the limit.
    rc_pap(&s, sec, "single", "single-pw", "").expect("Access-Accept");
    sent.push(("single", "accept", None));
    rc_acct(
        &s,
        sec,
        "Acct-Status-Type = Start, User-Name = \"single\", Acct-Session-Id = \"s-1\"",
    );
    rc_pap(&s, sec, "single", "single-pw", "").expect_reject("simultaneous-use limit reached");
    sent.push(("single", "reject", Some("simultaneous-use limit reached")));

    // Quota: in before any usage, out after 5000 bytes against a quota of 1000.
    rc_pap(&s, sec, "quota", "quota-pw", "").expect("Access-Accept");
    sent.push(("quota", "accept", None));
    rc_acct(
        &s,
        sec,
        "Acct-Status-Type = Start, User-Name = \"quota\", Acct-Session-Id = \"q-1\"",
    );
    rc_acct(
        &s,
        sec,
        "Acct-Status-Type = Stop, User-Name = \"quota\", Acct-Session-Id = \"q-1\", \
         Acct-Input-Octets = 3000, Acct-Output-Octets = 2000, Acct-Session-Time = 30",
    );
    rc_pap(&s, sec, "quota", "quota-pw", "").expect_reject("quota exhausted");
    sent.push(("quota", "reject", Some("quota exhausted")));

    let v = poll(Duration::from_secs(10), "the whole auth log", || {
        let v = env.auth_log("acme");
        match v["items"].as_array() {
            Some(items) if items.len() >= sent.len() => Ok(v),
            _ => Err(v.to_string()),
        }
    });
    assert_eq!(v["next_cursor"], Value::Null, "{v}");
    let items = v["items"].as_array().unwrap();
    let got: Vec<(&str, &str, Option<&str>)> = items
        .iter()
        .map(|i| {
            (
                i["username"].as_str().unwrap_or("?"),
                i["outcome"].as_str().unwrap_or("?"),
                i["reason"].as_str(),
            )
        })
        .collect();
    let want: Vec<_> = sent.iter().rev().cloned().collect();
    assert_eq!(got, want, "auth log, newest first");
    for i in items {
        for k in [
            "at",
            "nas_id",
            "username",
            "method",
            "outcome",
            "reason",
            "calling_station_id",
        ] {
            assert!(i.get(k).is_some(), "auth-log entry lacks {k}: {i}");
        }
        assert!(
            i["method"]
                .as_str()
                .is_some_and(|m| m.eq_ignore_ascii_case("pap")),
            "{i}"
        );
    }
    for w in items.windows(2) {
        assert!(time(&w[0]["at"]) >= time(&w[1]["at"]), "newest first: {v}");
    }
    let mac_reject = items
        .iter()
        .find(|i| i["reason"] == "MAC address not allowed" && !i["calling_station_id"].is_null())
        .unwrap_or_else(|| panic!("the MAC reject with its Calling-Station-Id: {v}"));
    let csid: String = mac_reject["calling_station_id"]
        .as_str()
        .unwrap()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    assert!(csid.eq_ignore_ascii_case("112233445566"), "{mac_reject}");
}

#[test]
fn accounting_start_interim_stop_and_gigawords() {
    if !have_radclient() {
        return;
    }
    let env = Env::new();
    let tenant = env.tenant("acme");
    env.plan("acme", "10M", 10240, 2048, &[]);
    env.subscriber("acme", "alice", "alice-pw", &["--plan", "10M"]);
    let nas = env.nas("acme", "core", "127.0.0.1", "mt-secret", &[]);
    let s = env.serve();
    let sec = "mt-secret";

    rc_acct(
        &s,
        sec,
        "Acct-Status-Type = Start, User-Name = \"alice\", Acct-Session-Id = \"81000001\", \
         Framed-IP-Address = 10.9.0.2, Calling-Station-Id = \"AA:BB:CC:00:11:22\", \
         NAS-Port = 15728641, Acct-Delay-Time = 0",
    );
    let online = env.sessions("acme", true);
    assert_eq!(online.len(), 1, "{online:#?}");
    let row = &online[0];
    for k in [
        "id",
        "tenant",
        "nas",
        "username",
        "acct_session_id",
        "framed_ip",
        "calling_station_id",
        "started_at",
        "updated_at",
        "stopped_at",
        "input_octets",
        "output_octets",
        "terminate_cause",
    ] {
        assert!(row.get(k).is_some(), "session lacks {k}: {row}");
    }
    assert_eq!(row["username"], "alice");
    assert_eq!(row["acct_session_id"], "81000001");
    assert_eq!(row["framed_ip"], "10.9.0.2");
    assert_eq!(row["calling_station_id"], "AA:BB:CC:00:11:22");
    assert!(
        row["tenant"] == "acme" || row["tenant"] == tenant["id"],
        "{row}"
    );
    assert_nas(row, &nas);
    assert_eq!(row["stopped_at"], Value::Null);
    assert_eq!(as_i64(&row["input_octets"]), 0);
    assert_eq!(as_i64(&row["output_octets"]), 0);
    let id = row["id"].clone();
    let started = time(&row["started_at"]);

    // Interim: Gigawords folded in (gw * 2^32 + octets).
    rc_acct(
        &s,
        sec,
        "Acct-Status-Type = Interim-Update, User-Name = \"alice\", Acct-Session-Id = \"81000001\", \
         Acct-Input-Octets = 1000, Acct-Input-Gigawords = 1, \
         Acct-Output-Octets = 2000, Acct-Output-Gigawords = 2, Acct-Session-Time = 60",
    );
    let online = env.sessions("acme", true);
    assert_eq!(online.len(), 1, "{online:#?}");
    let row = &online[0];
    assert_eq!(row["id"], id, "the Interim updates the same session");
    assert_eq!(as_i64(&row["input_octets"]), GW + 1000, "{row}");
    assert_eq!(as_i64(&row["output_octets"]), 2 * GW + 2000, "{row}");
    assert!(time(&row["updated_at"]) >= started, "{row}");

    // Stop: closed with its cause and final counters.
    rc_acct(
        &s,
        sec,
        "Acct-Status-Type = Stop, User-Name = \"alice\", Acct-Session-Id = \"81000001\", \
         Acct-Input-Octets = 5000, Acct-Input-Gigawords = 1, \
         Acct-Output-Octets = 7000, Acct-Output-Gigawords = 3, Acct-Session-Time = 120, \
         Acct-Terminate-Cause = User-Request",
    );
    assert!(
        env.sessions("acme", true).is_empty(),
        "nothing online after the Stop"
    );
    let all = env.sessions("acme", false);
    assert_eq!(all.len(), 1, "{all:#?}");
    let row = &all[0];
    assert_eq!(row["id"], id);
    assert!(!row["stopped_at"].is_null(), "{row}");
    assert!(time(&row["stopped_at"]) >= started, "{row}");
    assert_eq!(norm(&row["terminate_cause"]), "userrequest", "{row}");
    assert_eq!(as_i64(&row["input_octets"]), GW + 5000, "{row}");
    assert_eq!(as_i64(&row["output_octets"]), 3 * GW + 7000, "{row}");

    // An Interim without a Start creates the session; so does a Stop (closed at once).
    rc_acct(
        &s,
        sec,
        "Acct-Status-Type = Interim-Update, User-Name = \"alice\", Acct-Session-Id = \"81000002\", \
         Acct-Input-Octets = 10, Acct-Output-Octets = 20, Acct-Output-Gigawords = 4, \
         Framed-IP-Address = 10.9.0.3",
    );
    let online = env.sessions("acme", true);
    assert_eq!(online.len(), 1, "{online:#?}");
    assert_eq!(online[0]["acct_session_id"], "81000002");
    assert_eq!(online[0]["framed_ip"], "10.9.0.3");
    assert_eq!(as_i64(&online[0]["input_octets"]), 10);
    assert_eq!(as_i64(&online[0]["output_octets"]), 4 * GW + 20);
    rc_acct(
        &s,
        sec,
        "Acct-Status-Type = Stop, User-Name = \"alice\", Acct-Session-Id = \"81000003\", \
         Acct-Input-Octets = 1, Acct-Output-Octets = 2, Acct-Terminate-Cause = Lost-Carrier",
    );
    let late = env.sessions_with_id("acme", "81000003");
    assert_eq!(late.len(), 1, "{late:#?}");
    assert!(!late[0]["stopped_at"].is_null(), "{}", late[0]);
    assert_eq!(norm(&late[0]["terminate_cause"]), "lostcarrier");
    assert_eq!(env.sessions("acme", false).len(), 3);
    assert_eq!(env.sessions("acme", true).len(), 1);
}

#[test]
fn accounting_on_and_retransmit_and_reused_id() {
    let env = Env::new();
    env.tenant("acme");
    env.plan("acme", "10M", 10240, 2048, &[]);
    env.subscriber("acme", "alice", "alice-pw", &["--plan", "10M"]);
    env.subscriber("acme", "bob", "bob-pw", &["--plan", "10M"]);
    env.subscriber("acme", "carol", "carol-pw", &["--plan", "10M"]);
    env.nas("acme", "core", "127.0.0.1", "mt-secret", &[]);
    env.nas("acme", "edge", "127.0.0.2", "edge-secret", &[]);
    let s = env.serve();
    let mut core = Nas::new("127.0.0.1", "mt-secret");
    let mut edge = Nas::new("127.0.0.2", "edge-secret");
    let wait = Duration::from_millis(1500);

    // A Start sent twice, byte for byte (a retransmit): one session, both acknowledged alike.
    let (p, a) = core.acct_packet(&acct_attrs(START, "alice", "A-1", None), Ma::Absent);
    let r1 = core
        .exchange(s.acct, &p, &a, wait)
        .expect("Accounting-Response");
    let r2 = core
        .exchange(s.acct, &p, &a, wait)
        .expect("Accounting-Response to the retransmit");
    assert_eq!(
        (r1.code, r2.code),
        (ACCOUNTING_RESPONSE, ACCOUNTING_RESPONSE)
    );
    assert_eq!(
        env.sessions_with_id("acme", "A-1").len(),
        1,
        "a retransmitted Start opened two sessions"
    );
    // A retransmit as NASes send them: a new identifier and a larger Acct-Delay-Time (so a new
    // Request Authenticator), the same event. Still one session.
    let mut again = acct_attrs(START, "alice", "A-1", None);
    again.push(u_attr(ACCT_DELAY_TIME, 3));
    core.acct_ok(&s, &again);
    assert_eq!(
        env.sessions_with_id("acme", "A-1").len(),
        1,
        "a Start retransmitted with Acct-Delay-Time opened two sessions"
    );

    // An Interim sent twice: counted once.
    let (p, a) = core.acct_packet(
        &acct_attrs(INTERIM, "alice", "A-1", Some((500, 1, 600, 0))),
        Ma::Absent,
    );
    core.exchange(s.acct, &p, &a, wait)
        .expect("Accounting-Response");
    core.exchange(s.acct, &p, &a, wait)
        .expect("Accounting-Response to the retransmit");
    let rows = env.sessions_with_id("acme", "A-1");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(as_i64(&rows[0]["input_octets"]), GW + 500, "{}", rows[0]);
    assert_eq!(as_i64(&rows[0]["output_octets"]), 600, "{}", rows[0]);

    // A second Start reusing the Acct-Session-Id (a router that rebooted, without telling us)
    // opens a new session. The first one started two minutes ago (Acct-Delay-Time), so the two
    // are different events, not a retransmit.
    let mut earlier = acct_attrs(START, "bob", "B-1", None);
    earlier.push(u_attr(ACCT_DELAY_TIME, 120));
    core.acct_ok(&s, &earlier);
    core.acct_ok(&s, &acct_attrs(START, "bob", "B-1", None));
    let rows = env.sessions_with_id("acme", "B-1");
    assert_eq!(
        rows.len(),
        2,
        "a reused Acct-Session-Id opens a new session: {rows:#?}"
    );
    assert_ne!(rows[0]["id"], rows[1]["id"]);
    assert!(
        rows.iter().any(|r| r["stopped_at"].is_null()),
        "the new one is open: {rows:#?}"
    );

    // The other NAS's session must survive this NAS's Accounting-On.
    edge.acct_ok(&s, &acct_attrs(START, "carol", "C-1", None));
    let online = env.sessions("acme", true);
    for id in ["A-1", "B-1", "C-1"] {
        assert!(
            online.iter().any(|r| r["acct_session_id"] == id),
            "{id} is open: {online:#?}"
        );
    }

    // Accounting-On from core closes every open session of core.
    core.acct_ok(&s, &[u_attr(ACCT_STATUS_TYPE, 7)]);
    let online = env.sessions("acme", true);
    assert_eq!(
        online
            .iter()
            .map(|r| r["acct_session_id"].as_str().unwrap_or("?"))
            .collect::<Vec<_>>(),
        vec!["C-1"],
        "after core's Accounting-On only edge's session is open: {online:#?}"
    );
    let rows = env.sessions_with_id("acme", "A-1");
    assert!(!rows[0]["stopped_at"].is_null(), "{rows:#?}");
    assert_eq!(
        as_i64(&rows[0]["input_octets"]),
        GW + 500,
        "closing keeps the counters"
    );

    // After the reboot the router reuses its ids: A-1 again is a new session.
    core.acct_ok(&s, &acct_attrs(START, "alice", "A-1", None));
    let rows = env.sessions_with_id("acme", "A-1");
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(
        rows.iter().filter(|r| r["stopped_at"].is_null()).count(),
        1,
        "{rows:#?}"
    );
    let open = rows.iter().find(|r| r["stopped_at"].is_null()).unwrap();
    assert_eq!(
        as_i64(&open["input_octets"]),
        0,
        "a new session starts at zero: {open}"
    );
    // A Stop for it closes the new one, not the old.
    core.acct_ok(&s, &acct_attrs(STOP, "alice", "A-1", Some((7, 0, 8, 0))));
    let rows = env.sessions_with_id("acme", "A-1");
    assert!(rows.iter().all(|r| !r["stopped_at"].is_null()), "{rows:#?}");
    let mut inputs: Vec<i64> = rows.iter().map(|r| as_i64(&r["input_octets"])).collect();
    inputs.sort();
    assert_eq!(inputs, vec![7, GW + 500], "{rows:#?}");

    // Accounting-Off (8) closes too.
    edge.acct_ok(&s, &[u_attr(ACCT_STATUS_TYPE, 8)]);
    assert!(
        env.sessions("acme", true).is_empty(),
        "{:#?}",
        env.sessions("acme", true)
    );
}

#[test]
fn simultaneous_use_after_start() {
    if !have_radclient() {
        return;
    }
    let env = Env::new();
    env.tenant("acme");
    env.plan("acme", "single", 10240, 2048, &["--sim-use", "1"]);
    env.plan("acme", "double", 10240, 2048, &["--sim-use", "2"]);
    env.subscriber("acme", "alice", "alice-pw", &["--plan", "single"]);
    env.subscriber("acme", "bob", "bob-pw", &["--plan", "double"]);
    // The subscriber's own limit overrides the plan's.
    env.subscriber(
        "acme",
        "carol",
        "carol-pw",
        &["--plan", "double", "--sim-use", "1"],
    );
    env.nas("acme", "core", "127.0.0.1", "mt-secret", &[]);
    let s = env.serve();
    let sec = "mt-secret";
    let limit = "simultaneous-use limit reached";
    let start = |user: &str, id: &str| {
        rc_acct(
            &s,
            sec,
            &format!(
                "Acct-Status-Type = Start, User-Name = \"{user}\", Acct-Session-Id = \"{id}\""
            ),
        )
    };
    let stop = |user: &str, id: &str| {
        rc_acct(
            &s,
            sec,
            &format!(
                "Acct-Status-Type = Stop, User-Name = \"{user}\", Acct-Session-Id = \"{id}\", \
                 Acct-Terminate-Cause = User-Request"
            ),
        )
    };

    rc_pap(&s, sec, "alice", "alice-pw", "").expect("Access-Accept");
    start("alice", "a1");
    rc_pap(&s, sec, "alice", "alice-pw", "").expect_reject(limit);
    stop("alice", "a1");
    rc_pap(&s, sec, "alice", "alice-pw", "").expect("Access-Accept");

    start("bob", "b1");
    rc_pap(&s, sec, "bob", "bob-pw", "").expect("Access-Accept");
    start("bob", "b2");
    rc_pap(&s, sec, "bob", "bob-pw", "").expect_reject(limit);

    start("carol", "c1");
    rc_pap(&s, sec, "carol", "carol-pw", "").expect_reject(limit);
    // Accounting-On frees everybody.
    rc_acct(
        &s,
        sec,
        "Acct-Status-Type = Accounting-On, NAS-IP-Address = 127.0.0.1",
    );
    rc_pap(&s, sec, "carol", "carol-pw", "").expect("Access-Accept");
    rc_pap(&s, sec, "bob", "bob-pw", "").expect("Access-Accept");

    let items = env.auth_log_at_least("acme", 8);
    let rejected: Vec<&str> = items
        .iter()
        .filter(|i| i["reason"] == limit)
        .map(|i| i["username"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(rejected, vec!["carol", "bob", "alice"], "{items:#?}");
}

/// Two RADIUS nodes sharing the store and Redis: a session started through one counts at once
/// at the other (the session ledger lives in Redis), and a Stop frees it at once.
#[test]
fn two_nodes_share_the_session_ledger_in_redis() {
    if !have_radclient() {
        return;
    }
    let Some(redis) = saas_core::testing::redis_url() else {
        return;
    };
    let env = Env::new();
    env.tenant("acme");
    env.plan("acme", "single", 10240, 2048, &["--sim-use", "1"]);
    env.subscriber("acme", "alice", "alice-pw", &["--plan", "single"]);
    env.nas("acme", "core", "127.0.0.1", "mt-secret", &[]);
    let with_redis = [("PROXPANEL_REDIS_URL", redis.as_str())];
    let (a, b) = (
        env.serve_with(&with_redis, &[]),
        env.serve_with(&with_redis, &[]),
    );
    let sec = "mt-secret";
    let limit = "simultaneous-use limit reached";
    // Both nodes warm: each has read alice and her (empty) ledger entry.
    rc_pap(&a, sec, "alice", "alice-pw", "").expect("Access-Accept");
    rc_pap(&b, sec, "alice", "alice-pw", "").expect("Access-Accept");
    for round in 0..3 {
        let id = format!("r{round}");
        rc_acct(
            &a,
            sec,
            &format!("Acct-Status-Type = Start, User-Name = \"alice\", Acct-Session-Id = \"{id}\""),
        );
        // No wait for any event: the other node sees the session right away.
        rc_pap(&b, sec, "alice", "alice-pw", "").expect_reject(limit);
        rc_acct(
            &b,
            sec,
            &format!(
                "Acct-Status-Type = Stop, User-Name = \"alice\", Acct-Session-Id = \"{id}\", \
                 Acct-Terminate-Cause = User-Request"
            ),
        );
        rc_pap(&a, sec, "alice", "alice-pw", "").expect("Access-Accept");
    }
}

#[test]
fn message_authenticator_policy() {
    if !have_radclient() {
        return;
    }
    let env = Env::new();
    env.tenant("acme");
    env.plan("acme", "10M", 10240, 2048, &[]);
    env.subscriber("acme", "alice", "alice-pw", &["--plan", "10M"]);
    env.nas(
        "acme",
        "strict",
        "127.0.0.1",
        "strict-secret",
        &["--message-auth", "require"],
    );
    env.nas("acme", "auto", "127.0.0.2", "auto-secret", &[]); // auto by default
    env.nas(
        "acme",
        "lax",
        "127.0.0.3",
        "lax-secret",
        &["--message-auth", "off"],
    );
    let s = env.serve();

    // require: without Message-Authenticator no answer at all; with it, an answer.
    let r = radclient_t(
        s.auth,
        "auth",
        "strict-secret",
        "User-Name = \"alice\", User-Password = \"alice-pw\"",
        "1",
    );
    assert!(
        r.no_reply(),
        "require: a request without Message-Authenticator was answered: {r:?}"
    );
    let r = radclient(
        s.auth,
        "auth",
        "strict-secret",
        "User-Name = \"alice\", User-Password = \"alice-pw\", Message-Authenticator = 0x00",
    );
    r.expect("Access-Accept").expect_ma_first();
    let r = radclient(
        s.auth,
        "auth",
        "strict-secret",
        "User-Name = \"alice\", CHAP-Password = \"alice-pw\", Message-Authenticator = 0x00",
    );
    r.expect("Access-Accept");
    // Accounting is checked by its Request Authenticator, not by this policy.
    rc_acct(
        &s,
        "strict-secret",
        "Acct-Status-Type = Start, User-Name = \"alice\", Acct-Session-Id = \"m1\"",
    );
    rc_acct(
        &s,
        "strict-secret",
        "Acct-Status-Type = Stop, User-Name = \"alice\", Acct-Session-Id = \"m1\"",
    );

    // auto: answered until the NAS has shown it sends Message-Authenticator for PAP; then a PAP
    // request without it is refused. Learned per authentication method: CHAP is still answered.
    let mut auto = Nas::new("127.0.0.2", "auto-secret");
    auto.access(&s, "alice", Cred::Pap("alice-pw"), Ma::Absent)
        .expect("auto answers before it has learned")
        .expect_accept();
    auto.access(&s, "alice", Cred::Pap("alice-pw"), Ma::Valid)
        .expect("a reply")
        .expect_accept();
    assert!(
        auto.access(&s, "alice", Cred::Pap("alice-pw"), Ma::Absent)
            .is_none(),
        "auto: PAP without Message-Authenticator after one with it was answered"
    );
    auto.access(&s, "alice", Cred::Chap("alice-pw"), Ma::Absent)
        .expect("auto learns per method: CHAP was never seen with Message-Authenticator")
        .expect_accept();
    auto.access(&s, "alice", Cred::Pap("alice-pw"), Ma::Valid)
        .expect("a reply")
        .expect_accept();

    // off: answered either way; but a Message-Authenticator that is present is verified.
    let mut lax = Nas::new("127.0.0.3", "lax-secret");
    lax.access(&s, "alice", Cred::Pap("alice-pw"), Ma::Valid)
        .expect("a reply")
        .expect_accept();
    lax.access(&s, "alice", Cred::Pap("alice-pw"), Ma::Absent)
        .expect("off: answered without Message-Authenticator")
        .expect_accept();
    assert!(
        lax.access(&s, "alice", Cred::Pap("alice-pw"), Ma::Corrupt)
            .is_none(),
        "a wrong Message-Authenticator must be dropped"
    );
    let (p, a) = lax.acct_packet(&acct_attrs(START, "alice", "m2", None), Ma::Corrupt);
    assert!(
        lax.exchange(s.acct, &p, &a, Duration::from_millis(1500))
            .is_none(),
        "an Accounting-Request with a wrong Message-Authenticator must be dropped"
    );
    let (p, a) = lax.acct_packet(&acct_attrs(STOP, "alice", "m3", None), Ma::Valid);
    lax.exchange(s.acct, &p, &a, Duration::from_millis(1500))
        .expect("an Accounting-Request with a right Message-Authenticator is answered");

    // The refusal is in the auth log with its reason.
    poll(
        Duration::from_secs(10),
        "an auth-log entry for the refusal for lacking Message-Authenticator",
        || {
            let v = env.auth_log("acme");
            let found = v["items"].as_array().is_some_and(|items| {
                items.iter().any(|i| {
                    i["outcome"] == "reject"
                        && i["reason"].as_str().is_some_and(|r| {
                            r.to_ascii_lowercase().contains("message-authenticator")
                        })
                })
            });
            if found { Ok(()) } else { Err(v.to_string()) }
        },
    );

    // What auto learned is remembered in the store: still refused after a restart.
    std::thread::sleep(Duration::from_millis(500));
    drop(s);
    let s = env.serve();
    assert!(
        auto.access(&s, "alice", Cred::Pap("alice-pw"), Ma::Absent)
            .is_none(),
        "auto forgot what it learned across a restart"
    );
    auto.access(&s, "alice", Cred::Pap("alice-pw"), Ma::Valid)
        .expect("a reply")
        .expect_accept();
}

#[test]
fn cross_tenant_same_username() {
    let env = Env::new();
    env.tenant("alpha");
    env.tenant("beta");
    env.plan("alpha", "A", 10240, 2048, &[]);
    env.plan("beta", "B", 20480, 4096, &[]);
    env.subscriber("alpha", "shared", "alpha-pw", &["--plan", "A"]);
    env.subscriber("beta", "shared", "beta-pw", &["--plan", "B"]);
    env.subscriber("beta", "betaonly", "beta-only-pw", &["--plan", "B"]);
    let nas_a = env.nas("alpha", "a-core", "127.0.0.1", "alpha-secret", &[]);
    let nas_b = env.nas("beta", "b-core", "127.0.0.2", "beta-secret", &[]);
    let s = env.serve();
    let rate = |r: &Reply| {
        String::from_utf8(
            r.vsa(VENDOR_MIKROTIK, MIKROTIK_RATE_LIMIT)
                .expect("Mikrotik-Rate-Limit"),
        )
        .unwrap()
    };

    let mut a = Nas::new("127.0.0.1", "alpha-secret");
    let mut b = Nas::new("127.0.0.2", "beta-secret");
    let r = a
        .access(&s, "shared", Cred::Pap("alpha-pw"), Ma::Valid)
        .expect("a reply");
    r.expect_accept();
    assert_eq!(rate(&r), "2048k/10240k");
    a.access(&s, "shared", Cred::Pap("beta-pw"), Ma::Valid)
        .expect("a reply")
        .expect_reject("wrong password");
    a.access(&s, "betaonly", Cred::Pap("beta-only-pw"), Ma::Valid)
        .expect("a reply")
        .expect_reject("unknown user");
    let r = b
        .access(&s, "shared", Cred::Pap("beta-pw"), Ma::Valid)
        .expect("a reply");
    r.expect_accept();
    assert_eq!(rate(&r), "4096k/20480k");
    b.access(&s, "shared", Cred::Pap("alpha-pw"), Ma::Valid)
        .expect("a reply")
        .expect_reject("wrong password");
    let r = b
        .access(&s, "shared", Cred::Chap("beta-pw"), Ma::Valid)
        .expect("a reply");
    r.expect_accept();

    // beta's source with alpha's secret: its Message-Authenticator fails, dropped.
    let mut b_wrong = Nas::new("127.0.0.2", "alpha-secret");
    assert!(
        b_wrong
            .access(&s, "shared", Cred::Pap("alpha-pw"), Ma::Valid)
            .is_none(),
        "a request signed with another tenant's secret was answered"
    );
    // An unknown source: dropped.
    let mut stranger = Nas::new("127.0.0.9", "alpha-secret");
    assert!(
        stranger
            .access(&s, "shared", Cred::Pap("alpha-pw"), Ma::Valid)
            .is_none(),
        "a request from an unknown source was answered"
    );
    assert!(
        stranger
            .acct(&s, &acct_attrs(START, "shared", "x-1", None))
            .is_none()
    );

    // Accounting lands in the NAS's tenant only.
    b.acct_ok(&s, &acct_attrs(START, "shared", "x-1", None));
    assert_eq!(env.sessions("beta", true).len(), 1);
    assert!(
        env.sessions("alpha", false).is_empty(),
        "{:#?}",
        env.sessions("alpha", false)
    );
    a.acct_ok(&s, &acct_attrs(START, "shared", "x-1", None));
    let alpha = env.sessions("alpha", true);
    assert_eq!(alpha.len(), 1);
    assert_nas(&alpha[0], &nas_a);
    let beta = env.sessions("beta", false);
    assert_eq!(beta.len(), 1, "{beta:#?}");
    assert_nas(&beta[0], &nas_b);

    // Each tenant's auth log holds its own NAS's requests only.
    let la = env.auth_log_at_least("alpha", 3);
    let lb = env.auth_log_at_least("beta", 3);
    for (items, nas) in [(&la, &nas_a), (&lb, &nas_b)] {
        for i in items.iter() {
            assert_eq!(i["nas_id"], nas["id"], "{i}");
        }
    }
    let accepts = |items: &[Value]| items.iter().filter(|i| i["outcome"] == "accept").count();
    assert_eq!(accepts(&la), 1, "{la:#?}");
    assert_eq!(accepts(&lb), 2, "{lb:#?}");
    assert!(
        la.iter()
            .any(|i| i["username"] == "betaonly" && i["reason"] == "unknown user")
    );
}

#[test]
fn serve_demo_answers_radclient() {
    if !have_radclient() {
        return;
    }
    let env = Env::new();
    let s = env.serve_with(
        &[("PROXPANEL_DEMO_PASSWORD", "demo-password-1")],
        &["--demo"],
    );
    let r = rc_pap(&s, "testing123", "demo", "demo", "");
    r.expect("Access-Accept").expect_ma_first();
    assert_eq!(
        r.get("Mikrotik-Rate-Limit"),
        Some("2048k/10240k"),
        "{}",
        r.stdout
    );
    rc_pap(&s, "testing123", "demo", "not-demo", "").expect_reject("wrong password");
    rc_acct(
        &s,
        "testing123",
        "Acct-Status-Type = Start, User-Name = \"demo\", Acct-Session-Id = \"d-1\"",
    );
    let rows = env.sessions("demo", true);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["username"], "demo");
}

#[test]
fn mschapv2_round_trip_with_pyrad() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/e2e/mschapv2_pyrad.py");
    let probe = Command::new("python3")
        .args(["-c", "import pyrad, Crypto.Hash.MD4, Crypto.Cipher.DES"])
        .output();
    if !probe.is_ok_and(|o| o.status.success())
        && tool_missing(
            "python3 with pyrad and pycryptodome",
            "python3 -m pip install pyrad pycryptodome",
        )
    {
        return;
    }
    let env = Env::new();
    env.tenant("acme");
    env.plan("acme", "10M", 10240, 2048, &[]);
    env.subscriber("acme", "ms-user", "Passw0rd!", &["--plan", "10M"]);
    env.nas("acme", "core", "127.0.0.1", "ms-secret", &[]);
    let s = env.serve();
    let o = Command::new("python3")
        .arg(&script)
        .args(["--server", &s.auth.to_string()])
        .args([
            "--secret",
            "ms-secret",
            "--user",
            "ms-user",
            "--password",
            "Passw0rd!",
        ])
        .output()
        .expect("run python3");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "{} exited {:?}\nstdout:\n{out}\nstderr:\n{err}",
        script.display(),
        o.status.code()
    );
    let items = env.auth_log_at_least("acme", 2);
    let methods: Vec<String> = items
        .iter()
        .map(|i| i["method"].as_str().unwrap_or("?").to_ascii_lowercase())
        .collect();
    assert!(
        methods
            .iter()
            .all(|m| m.contains("ms") && m.contains("chap")),
        "MS-CHAPv2 logins are logged as such: {methods:?}"
    );
}
