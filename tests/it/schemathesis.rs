//! Schemathesis (a property-based API tester we did not write) against a running `serve --demo`:
//! it reads each host's OpenAPI document, generates requests from it (a bounded number of
//! examples per operation, so CI stays fast) and checks that no answer is a server error and
//! every answer matches its documented schema. Skipped locally when schemathesis is missing
//! (`infra/test.sh` installs it); in CI (CI=true) a missing schemathesis fails the test.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// Examples per operation and phase: small, the whole run stays near a minute on 2 cores.
const MAX_EXAMPLES: &str = "8";

fn schemathesis() -> Option<String> {
    let ok = Command::new("schemathesis")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Some("schemathesis".into());
    }
    assert!(
        std::env::var("CI").is_err(),
        "schemathesis is not installed (infra/test.sh installs it with pip)"
    );
    eprintln!("skipping: schemathesis is not installed (pip install schemathesis)");
    None
}

/// Runs schemathesis over a saved document against `api` with `host` (and a token).
fn run(st: &str, dir: &Path, api: SocketAddr, host: &str, token: Option<&str>, extra: &[&str]) {
    let (code, doc) = http_json(api, "GET", host, "/api/v1/openapi.json", None, None);
    assert_eq!(code, 200, "openapi.json on {host}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let file = dir.join(format!("{host}.openapi.json"));
    std::fs::write(&file, doc.to_string()).unwrap();
    let mut c = Command::new(st);
    c.arg("run")
        .arg(&file)
        .args(["--url", &format!("http://{api}")])
        .args(["-H", &format!("Host: {host}")])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--seed", "6"])
        .args(["--workers", "2"])
        .args(["--request-timeout", "10"])
        .args(["--suppress-health-check", "all"])
        .args(["--report-dir", dir.join("report").to_str().unwrap()])
        .args(extra)
        .env("NO_COLOR", "1")
        .current_dir(dir);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let started = Instant::now();
    let out = c.output().expect("run schemathesis");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "schemathesis on {host}: {:?} in {:.0?}",
        out.status,
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "schemathesis found problems on {host}:\n{text}"
    );
}

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let Some(st) = schemathesis() else { return };
    let dir = tempfile::tempdir().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = proxpanel(dir.path())
        .env("PROXPANEL_DEMO_PASSWORD", "demo-password-1")
        .env("PROXPANEL_RADIUS_AUTH_LISTEN", "127.0.0.1:0")
        .env("PROXPANEL_RADIUS_ACCT_LISTEN", "127.0.0.1:0")
        .env("PROXPANEL_WG_LISTEN", "off")
        .env("PROXPANEL_DNS_LISTEN", "off")
        .env("PROXPANEL_ADMIN_LISTEN", admin.to_string())
        .env("PROXPANEL_HTTP_LISTEN", api.to_string())
        // Generated logins must not lock the demo account out halfway through.
        .env("PROXPANEL_LOGIN_RATE_PER_MIN", "0")
        .env("PROXPANEL_LOG", "error")
        .args(["serve", "--demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The demo prints the operator's TOTP enrolment URI; keep reading so the pipe never fills.
    let stdout = child.stdout.take().unwrap();
    let (uri_tx, uri_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(uri) = line
                .split_whitespace()
                .find(|w| w.starts_with("otpauth://"))
            {
                let _ = uri_tx.send(uri.to_owned());
            }
        }
    });
    wait_ready(admin, "/readyz", Duration::from_secs(60));
    let demo = "demo.saas.localhost";
    let (code, body) = http_json(
        api,
        "POST",
        demo,
        "/api/v1/auth/login",
        None,
        Some(&json!({"email": "owner@demo.example", "password": "demo-password-1"})),
    );
    assert_eq!(code, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let work = dir.path().join("st");
    std::fs::create_dir_all(&work).unwrap();
    // Logging out would revoke the token the rest of the run uses.
    run(
        &st,
        &work,
        api,
        demo,
        Some(&token),
        &["--exclude-path", "/api/v1/auth/logout"],
    );
    run(&st, &work, api, "saas.localhost", None, &[]);
    // The operator host, signed in with the demo operator's TOTP.
    let uri = uri_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the demo printed the operator's TOTP URI");
    let secret = uri
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("secret="))
        .map(base32_decode)
        .expect("secret= in the TOTP URI");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = saas_core::crypto::totp::code(&secret, now);
    let (code, body) = http_json(
        api,
        "POST",
        "operator.saas.localhost",
        "/api/v1/auth/login",
        None,
        Some(&json!({"email": "admin@example.com", "password": "demo-password-1", "totp": code})),
    );
    assert_eq!(code, 200, "{body}");
    let op_token = body["access_token"].as_str().unwrap().to_owned();
    run(
        &st,
        &work,
        api,
        "operator.saas.localhost",
        Some(&op_token),
        // Logging out would revoke the token; deleting or suspending the demo tenant would take
        // the tenant host away from the runs above on a rerun of the seed.
        &["--exclude-path", "/api/v1/auth/logout"],
    );
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    // No 5xx means no cause was logged at error level either.
    assert!(
        !log.contains("request failed"),
        "the server logged failures:\n{log}"
    );
}

/// RFC 4648 base32 (no padding), as in otpauth URIs.
fn base32_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u64, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {s}"),
        };
        buf = (buf << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}
