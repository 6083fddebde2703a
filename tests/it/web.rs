//! The web panel in a real browser: `serve --demo` on free ports, then
//! `node infra/e2e/web/flow.mjs` drives Debian's headless Chromium through signup, sign-in, a
//! plan, a subscriber, a router's script and the operator's suspension (screenshots under
//! `<target>/e2e-artifacts/web/`). Skips, saying why, only when Chromium or Node (or the npm
//! packages, `npm ci` in infra/e2e/web) are missing and CI is unset; in CI it must run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn chromium() -> PathBuf {
    std::env::var_os("PP_E2E_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn missing_tools(e2e: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !chromium().exists() {
        missing.push(format!(
            "{} (Debian package chromium)",
            chromium().display()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node".into());
    }
    if !e2e.join("node_modules/playwright-core").exists() {
        missing.push(format!(
            "playwright-core (run `npm ci` in {})",
            e2e.display()
        ));
    }
    missing
}

#[test]
fn browser_signup_plan_subscriber_router_then_operator_suspends() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let e2e = root.join("infra/e2e/web");
    let missing = missing_tools(&e2e);
    if !missing.is_empty() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "the browser test must run in CI but these are missing: {}",
                missing.join(", ")
            );
        }
        eprintln!(
            "SKIPPED browser_signup_plan_subscriber_router_then_operator_suspends: missing {}; ./infra/test.sh installs them",
            missing.join(", ")
        );
        return;
    }
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap_or(Path::new("target"))
        .join("e2e-artifacts/web");
    let _ = std::fs::remove_dir_all(&artifacts);
    let dir = tempfile::tempdir().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let password = "demo-password-1";
    let mut child = proxpanel(dir.path())
        .env("PROXPANEL_DEMO_PASSWORD", password)
        .env("PROXPANEL_RADIUS_AUTH_LISTEN", "127.0.0.1:0")
        .env("PROXPANEL_RADIUS_ACCT_LISTEN", "127.0.0.1:0")
        .env("PROXPANEL_WG_LISTEN", "off")
        .env("PROXPANEL_DNS_LISTEN", "off")
        .env("PROXPANEL_ADMIN_LISTEN", admin.to_string())
        .env("PROXPANEL_HTTP_LISTEN", http.to_string())
        .args(["serve", "--demo"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(admin, "/readyz", Duration::from_secs(60));
    let out = Command::new("node")
        .arg(e2e.join("flow.mjs"))
        .current_dir(&e2e)
        .env("PP_E2E_PORT", http.port().to_string())
        .env("PP_E2E_BASE", "saas.localhost")
        .env("PP_E2E_ARTIFACTS", &artifacts)
        .env("PP_E2E_OPERATOR_EMAIL", "admin@example.com")
        .env("PP_E2E_OPERATOR_PASSWORD", password)
        .env("PP_E2E_CHROMIUM", chromium())
        .output()
        .expect("run node");
    let _ = child.kill();
    let server_log = child
        .wait_with_output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    assert!(
        out.status.success(),
        "browser flow failed (screenshots in {}):\n--- node stdout\n{}\n--- node stderr\n{}\n--- proxpanel log (tail)\n{}",
        artifacts.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server_log
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    for shot in [
        "01-landing",
        "04-dashboard",
        "08-subscribers",
        "09-router-script",
        "09b-audit",
        "12-suspended",
    ] {
        assert!(
            artifacts.join(format!("{shot}.png")).exists(),
            "{shot}.png missing"
        );
    }
}
