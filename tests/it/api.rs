//! The API inside `serve --demo`: log in on the demo tenant's host and list subscribers, sign
//! up on the apex and reach the new tenant on its subdomain, create a tunnel NAS and its peer
//! with the RouterOS script.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[test]
fn demo_login_lists_subscribers_and_signup_makes_a_reachable_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = proxpanel(dir.path())
        .env("PROXPANEL_DEMO_PASSWORD", "demo-password-1")
        .env("PROXPANEL_RADIUS_AUTH_LISTEN", "127.0.0.1:0")
        .env("PROXPANEL_RADIUS_ACCT_LISTEN", "127.0.0.1:0")
        .env("PROXPANEL_WG_LISTEN", "off")
        .env("PROXPANEL_ADMIN_LISTEN", admin.to_string())
        .env("PROXPANEL_HTTP_LISTEN", api.to_string())
        .args(["serve", "--demo"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    assert_eq!(body["expires_in"], 900);
    let (code, subs) = http_json(api, "GET", demo, "/api/v1/subscribers", Some(&token), None);
    assert_eq!(code, 200);
    assert_eq!(subs["items"][0]["username"], "demo");
    // Signup on the apex; the new tenant answers on its subdomain.
    let (code, body) = http_json(
        api,
        "POST",
        "saas.localhost",
        "/api/v1/signup",
        None,
        Some(
            &json!({"slug": "acme", "name": "Acme ISP", "email": "boss@acme.example", "password": "acme-password"}),
        ),
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        body["panel_url"],
        format!("http://acme.saas.localhost:{}/", api.port())
    );
    let (code, body) = http_json(
        api,
        "POST",
        "acme.saas.localhost",
        "/api/v1/auth/login",
        None,
        Some(&json!({"email": "boss@acme.example", "password": "acme-password"})),
    );
    assert_eq!(code, 200, "{body}");
    let acme = body["access_token"].as_str().unwrap().to_owned();
    // The demo token means nothing on acme's host.
    assert_eq!(
        http_json(
            api,
            "GET",
            "acme.saas.localhost",
            "/api/v1/subscribers",
            Some(&token),
            None
        )
        .0,
        401
    );
    // A tunnel NAS and its peer: the answer carries the script and the generated private key.
    let (code, nas) = http_json(
        api,
        "POST",
        "acme.saas.localhost",
        "/api/v1/nas",
        Some(&acme),
        Some(&json!({"name": "core-1"})),
    );
    assert_eq!(code, 201, "{nas}");
    let (code, peer) = http_json(
        api,
        "POST",
        "acme.saas.localhost",
        "/api/v1/peers",
        Some(&acme),
        Some(&json!({"nas_id": nas["id"]})),
    );
    assert_eq!(code, 201, "{peer}");
    assert_eq!(peer["tunnel_address"], "10.200.0.2/24");
    assert!(
        peer["routeros_script"]
            .as_str()
            .unwrap()
            .contains("/interface wireguard add")
    );
    assert!(peer["private_key"].is_string());
    let (code, peers) = http_json(
        api,
        "GET",
        "acme.saas.localhost",
        "/api/v1/peers",
        Some(&acme),
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(peers["items"].as_array().unwrap().len(), 1);
    let _ = child.kill();
    let _ = child.wait();
}
