use std::path::Path;
use std::process::Command;

use saas_core::testing;

use crate::support::*;

/// The CLI pointed at one backend: SQLite in a data dir, or a PostgreSQL test database.
struct Target {
    dir: tempfile::TempDir,
    pg: Option<testing::TestStore>,
}

impl Target {
    fn cmd(&self) -> Command {
        let mut c = proxpanel(self.dir.path());
        if let Some(pg) = &self.pg {
            c.env("PROXPANEL_DATABASE_URL", &pg.options.url)
                .env(
                    "PROXPANEL_DATABASE_ADMIN_URL",
                    pg.options.admin_url.as_deref().unwrap_or_default(),
                )
                .env(
                    "PROXPANEL_DATABASE_SYSTEM_URL",
                    pg.options.system_url.as_deref().unwrap_or_default(),
                )
                .env("PROXPANEL_SECRET_KEY", pg.key.to_base64());
        }
        c
    }
    fn name(&self) -> &'static str {
        if self.pg.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }
}

async fn targets() -> Vec<Target> {
    let mut v = vec![Target {
        dir: tempfile::tempdir().unwrap(),
        pg: None,
    }];
    if let Some(pg) = testing::postgres().await {
        v.push(Target {
            dir: tempfile::tempdir().unwrap(),
            pg: Some(pg),
        });
    }
    v
}

fn create_tenant(t: &Target, slug: &str) -> serde_json::Value {
    json(t.cmd().args([
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
        "--timezone",
        "Asia/Kolkata",
    ]))
}

#[tokio::test]
async fn cli_end_to_end_on_every_backend() {
    for t in targets().await {
        let name = t.name();
        // tenant: the DESIGN §8 shape
        let tenant = create_tenant(&t, "acme");
        for k in ["id", "slug", "name", "status", "created_at"] {
            assert!(
                tenant.get(k).is_some(),
                "{name}: tenant lacks {k}: {tenant}"
            );
        }
        assert_eq!(tenant["slug"], "acme");
        assert_eq!(tenant["status"], "active");
        assert!(
            tenant["limits"]["max_subscribers"].is_i64() && tenant["limits"]["max_nas"].is_i64()
        );
        assert!(uuid::Uuid::parse_str(tenant["id"].as_str().unwrap()).is_ok());
        assert_eq!(tenant["quota_sync_s"], serde_json::Value::Null);

        // tenant update: settings, limits and the per-tenant QuotaSync interval.
        let u = json(t.cmd().args([
            "tenant",
            "update",
            "acme",
            "--name",
            "Acme Fibre",
            "--max-nas",
            "7",
            "--quota-sync",
            "60",
        ]));
        assert_eq!(u["name"], "Acme Fibre", "{name}: {u}");
        assert_eq!(u["limits"]["max_nas"], 7);
        assert_eq!(
            u["limits"]["max_subscribers"],
            tenant["limits"]["max_subscribers"]
        );
        assert_eq!(u["quota_sync_s"], 60);
        let err = usage_error(
            t.cmd()
                .args(["tenant", "update", "acme", "--quota-sync", "5"]),
        );
        assert!(err.contains("10 to 3600 seconds"), "{name}: {err}");
        let err = usage_error(
            t.cmd()
                .args(["tenant", "update", "acme", "--quota-sync", "soon"]),
        );
        assert!(err.contains("`default`"), "{name}: {err}");
        let u = json(
            t.cmd()
                .args(["tenant", "update", "acme", "--quota-sync", "default"]),
        );
        assert_eq!(u["quota_sync_s"], serde_json::Value::Null, "{name}: {u}");
        assert_eq!(u["limits"]["max_nas"], 7, "unchanged fields are kept");

        let plan = json(t.cmd().args([
            "plan",
            "add",
            "--tenant",
            "acme",
            "--name",
            "20M",
            "--download-kbps",
            "20480",
            "--upload-kbps",
            "4096",
            "--quota-gb",
            "100",
            "--fup-download-kbps",
            "1024",
            "--fup-upload-kbps",
            "512",
            "--pool",
            "pppoe-pool",
            "--sim-use",
            "2",
        ]));
        assert_eq!(plan["quota_bytes"], 100_000_000_000i64);
        assert_eq!(plan["quota_action"], "fup");
        let plans = json(t.cmd().args(["plan", "list", "--tenant", "acme"]));
        assert_eq!(
            plans["items"].as_array().unwrap().len(),
            2,
            "{name}: default plan + 20M"
        );

        // subscriber: --expires is read in the tenant's timezone (Asia/Kolkata, +05:30)
        let sub = json(t.cmd().args([
            "subscriber",
            "add",
            "--tenant",
            "acme",
            "--username",
            "alice",
            "--password",
            "secret-a",
            "--plan",
            "20M",
            "--expires",
            "2027-01-31",
            "--mac",
            "aa:bb:cc:dd:ee:ff",
            "--ipv6-prefix",
            "2001:db8:1::/64",
            "--delegated-prefix",
            "2001:db8:100::/56",
        ]));
        assert_eq!(sub["plan"], "20M");
        assert_eq!(sub["expires_at"], "2027-01-31T18:29:59Z", "{name}");
        assert_eq!(sub["framed_ipv6_prefix"], "2001:db8:1::/64");
        assert!(
            sub.get("password").is_none(),
            "the password must never be printed"
        );
        let set = json(t.cmd().args([
            "subscriber",
            "set",
            "--tenant",
            "acme",
            "--username",
            "alice",
            "--status",
            "disabled",
            "--mac",
            "none",
            "--static-ip",
            "100.64.0.9",
        ]));
        assert_eq!(set["status"], "disabled");
        assert!(set["mac_lock"].is_null());
        assert_eq!(set["static_ip"], "100.64.0.9");
        for i in 0..3 {
            ok(t.cmd().args([
                "subscriber",
                "add",
                "--tenant",
                "acme",
                "--username",
                &format!("bob{i}"),
                "--password",
                "pw",
            ]));
        }
        let page = json(
            t.cmd()
                .args(["subscriber", "list", "--tenant", "acme", "--limit", "2"]),
        );
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        let cursor = page["next_cursor"].as_str().unwrap().to_owned();
        let page2 = json(t.cmd().args([
            "subscriber",
            "list",
            "--tenant",
            "acme",
            "--limit",
            "2",
            "--after",
            &cursor,
        ]));
        assert_eq!(page2["items"].as_array().unwrap().len(), 2);
        assert!(page2["next_cursor"].is_null());
        let shown = json(t.cmd().args([
            "subscriber",
            "show",
            "--tenant",
            "acme",
            "--username",
            "bob0",
        ]));
        assert_eq!(shown["plan"], "default");

        // NAS: direct and tunnel
        let nas = json(t.cmd().args([
            "nas",
            "add",
            "--tenant",
            "acme",
            "--name",
            "core",
            "--ip",
            "192.0.2.50",
            "--secret",
            "s3cr3t",
            "--coa-port",
            "1700",
        ]));
        assert_eq!(nas["reach"], "direct");
        assert_eq!(nas["coa_port"], 1700);
        assert!(nas.get("secret").is_none());
        ok(t.cmd().args([
            "nas",
            "add",
            "--tenant",
            "acme",
            "--name",
            "edge",
            "--tunnel",
            "--secret",
            "x",
            "--vendor",
            "generic",
            "--message-auth",
            "require",
        ]));
        let list = json(t.cmd().args(["nas", "list", "--tenant", "acme"]));
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        for n in items {
            for k in ["tunnel_state", "radius_last_seen", "api_state"] {
                assert!(n.get(k).is_some(), "NAS lacks {k}");
            }
        }
        let plain = ok(t.cmd().args(["nas", "list", "--tenant", "acme"]));
        assert!(
            plain.contains("TUNNEL") && plain.contains("waiting"),
            "{plain}"
        );

        // Another tenant cannot take the direct address; the message names no tenant.
        create_tenant(&t, "rival");
        let err = usage_error(t.cmd().args([
            "nas",
            "add",
            "--tenant",
            "rival",
            "--name",
            "core",
            "--ip",
            "192.0.2.50",
            "--secret",
            "x",
        ]));
        assert!(err.contains("192.0.2.50") && !err.contains("acme"), "{err}");

        // Lifecycle
        let s = json(t.cmd().args(["tenant", "suspend", "rival"]));
        assert_eq!(s["status"], "suspended");
        let s = json(t.cmd().args(["tenant", "resume", "rival"]));
        assert_eq!(s["status"], "active");
        let d = json(t.cmd().args(["tenant", "delete", "rival", "--purge-now"]));
        assert_eq!(d["purged"], true);
        let all = json(t.cmd().args(["tenant", "list"]));
        let slugs: Vec<&str> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["slug"].as_str().unwrap())
            .collect();
        assert_eq!(slugs, ["acme"], "{name}");
        let acme = &all["items"][0];
        assert_eq!(acme["subscribers"], 4);
        assert_eq!(acme["nas"], 2);

        ok(t.cmd().args([
            "subscriber",
            "delete",
            "--tenant",
            "acme",
            "--username",
            "bob2",
        ]));
        let op = json(t.cmd().args([
            "operator",
            "create",
            "--email",
            "ops@example.com",
            "--password",
            "operator-pass",
        ]));
        assert!(
            op["totp_enrolment_uri"]
                .as_str()
                .unwrap()
                .starts_with("otpauth://totp/")
        );
    }
}

#[tokio::test]
async fn bad_input_exits_2_with_a_reason() {
    let t = Target {
        dir: tempfile::tempdir().unwrap(),
        pg: None,
    };
    create_tenant(&t, "acme");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "tenant",
                "create",
                "--slug",
                "www",
                "--name",
                "x",
                "--owner-email",
                "a@b.example",
                "--owner-password",
                "long-enough",
            ],
            "reserved",
        ),
        (
            vec![
                "tenant",
                "create",
                "--slug",
                "Bad_Slug",
                "--name",
                "x",
                "--owner-email",
                "a@b.example",
                "--owner-password",
                "long-enough",
            ],
            "lowercase",
        ),
        (
            vec![
                "tenant",
                "create",
                "--slug",
                "acme",
                "--name",
                "x",
                "--owner-email",
                "a@b.example",
                "--owner-password",
                "long-enough",
            ],
            "already taken",
        ),
        (
            vec![
                "tenant",
                "create",
                "--slug",
                "newco",
                "--name",
                "x",
                "--owner-email",
                "not-an-email",
                "--owner-password",
                "long-enough",
            ],
            "e-mail",
        ),
        (
            vec![
                "tenant",
                "create",
                "--slug",
                "newco",
                "--name",
                "x",
                "--owner-email",
                "a@b.example",
                "--owner-password",
                "long-enough",
                "--timezone",
                "Moon/Base",
            ],
            "timezone",
        ),
        (vec!["tenant", "show", "nosuch"], "not found"),
        (
            vec![
                "subscriber",
                "add",
                "--tenant",
                "nosuch",
                "--username",
                "u",
                "--password",
                "p",
            ],
            "not found",
        ),
        (
            vec![
                "subscriber",
                "add",
                "--tenant",
                "acme",
                "--username",
                "u",
                "--password",
                "p",
                "--plan",
                "nope",
            ],
            "plan \"nope\" not found",
        ),
        (
            vec![
                "subscriber",
                "add",
                "--tenant",
                "acme",
                "--username",
                "u",
                "--password",
                "p",
                "--expires",
                "next week",
            ],
            "not a date",
        ),
        (
            vec![
                "subscriber",
                "add",
                "--tenant",
                "acme",
                "--username",
                "u",
                "--password",
                "p",
                "--static-ip",
                "1.2.3",
            ],
            "IPv4",
        ),
        (
            vec![
                "subscriber",
                "set",
                "--tenant",
                "acme",
                "--username",
                "ghost",
                "--status",
                "disabled",
            ],
            "not found",
        ),
        (
            vec![
                "subscriber",
                "set",
                "--tenant",
                "acme",
                "--username",
                "ghost",
            ],
            "nothing to change",
        ),
        (
            vec![
                "subscriber",
                "list",
                "--tenant",
                "acme",
                "--status",
                "zombie",
            ],
            "active, disabled, expired",
        ),
        (
            vec![
                "nas", "add", "--tenant", "acme", "--name", "n", "--ip", "not-ip", "--secret", "s",
            ],
            "not an IP",
        ),
        (
            vec![
                "nas",
                "add",
                "--tenant",
                "acme",
                "--name",
                "n",
                "--tunnel",
                "--secret",
                "s",
                "--message-auth",
                "sometimes",
            ],
            "auto, require, off",
        ),
        (
            vec![
                "plan",
                "add",
                "--tenant",
                "acme",
                "--name",
                "p",
                "--download-kbps",
                "0",
                "--upload-kbps",
                "1",
            ],
            "positive",
        ),
        (
            vec![
                "plan",
                "add",
                "--tenant",
                "acme",
                "--name",
                "p",
                "--download-kbps",
                "1",
                "--upload-kbps",
                "1",
                "--fup-download-kbps",
                "5",
            ],
            "FUP",
        ),
    ];
    for (args, needle) in cases {
        let err = usage_error(t.cmd().args(&args));
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err:?}"
        );
    }
    // clap's own usage errors also exit 2.
    let o = run(t.cmd().args([
        "nas", "add", "--tenant", "acme", "--name", "n", "--secret", "s",
    ]));
    assert_eq!(o.status.code(), Some(2));
    // Unknown PROXPANEL_* variables are refused.
    let err = usage_error(
        t.cmd()
            .env("PROXPANEL_HTTP_LISTN", "x")
            .args(["tenant", "list"]),
    );
    assert!(err.contains("PROXPANEL_HTTP_LISTN"), "{err}");
}

#[test]
fn postgres_refuses_to_generate_the_server_key() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(proxpanel(dir.path())
        .env(
            "PROXPANEL_DATABASE_URL",
            "postgres://app:hunter2@127.0.0.1:1/pp",
        )
        .args(["tenant", "list"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("PROXPANEL_SECRET_KEY"), "{err}");
    assert!(!Path::new(&dir.path().join("secret.key")).exists());
    // With a key, an unreachable database is named without its password.
    let key = saas_core::crypto::ServerKey::generate().to_base64();
    let o = run(proxpanel(dir.path())
        .env(
            "PROXPANEL_DATABASE_URL",
            "postgres://app:hunter2@127.0.0.1:1/pp",
        )
        .env("PROXPANEL_SECRET_KEY", key)
        .args(["tenant", "list"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("127.0.0.1:1") && err.contains("***") && !err.contains("hunter2"),
        "{err}"
    );
}

#[test]
fn sqlite_key_is_generated_once_with_private_mode() {
    let dir = tempfile::tempdir().unwrap();
    ok(proxpanel(dir.path()).args(["migrate"]));
    let key_file = dir.path().join("secret.key");
    let first = std::fs::read_to_string(&key_file).unwrap();
    ok(proxpanel(dir.path()).args(["tenant", "list"]));
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), first);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[tokio::test]
async fn subscriber_import_is_all_or_nothing_and_tenant_scoped() {
    for t in targets().await {
        let name = t.name();
        create_tenant(&t, "imp-a");
        create_tenant(&t, "imp-b");
        // Plans are per tenant: tenant B's "gold" is its own.
        let err = {
            std::fs::write(dir_path_for_b(&t), "username,password,plan\nx,y,gold\n").unwrap();
            usage_error(t.cmd().args([
                "subscriber",
                "import",
                "--tenant",
                "imp-b",
                "--file",
                dir_path_for_b(&t).to_str().unwrap(),
            ]))
        };
        assert!(err.contains("no plan named"), "{name}: {err}");
        for tenant in ["imp-a", "imp-b"] {
            json(t.cmd().args([
                "plan",
                "add",
                "--tenant",
                tenant,
                "--name",
                "gold",
                "--download-kbps",
                "10240",
                "--upload-kbps",
                "2048",
            ]));
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("subs.csv");
        // A duplicate username in the file: refused with its row, nothing written.
        std::fs::write(
            &file,
            "username,password,plan\nu1,p1,gold\nu2,p2,\nu1,p3,\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let err =
            usage_error(
                t.cmd()
                    .args(["subscriber", "import", "--tenant", "imp-a", "--file", f]),
            );
        assert!(
            err.contains("row 3") && err.contains("twice"),
            "{name}: {err}"
        );
        // An unknown plan names its row too.
        std::fs::write(&file, "username,password,plan\nu1,p1,platinum\n").unwrap();
        let err =
            usage_error(
                t.cmd()
                    .args(["subscriber", "import", "--tenant", "imp-a", "--file", f]),
            );
        assert!(
            err.contains("row 1") && err.contains("platinum"),
            "{name}: {err}"
        );
        let list = json(t.cmd().args(["subscriber", "list", "--tenant", "imp-a"]));
        assert_eq!(
            list["items"].as_array().unwrap().len(),
            0,
            "{name}: nothing imported"
        );

        let mut csv = String::from("username,password,plan,mac,sim_use\n");
        for i in 0..300 {
            csv.push_str(&format!(
                "user{i:04},pw{i},{},,{}\n",
                if i == 0 { "gold" } else { "" },
                if i == 1 { "3" } else { "" }
            ));
        }
        std::fs::write(&file, &csv).unwrap();
        let out = json(
            t.cmd()
                .args(["subscriber", "import", "--tenant", "imp-a", "--file", f]),
        );
        assert_eq!(out["imported"], 300, "{name}");
        // The same usernames in another tenant are that tenant's own.
        let out = json(
            t.cmd()
                .args(["subscriber", "import", "--tenant", "imp-b", "--file", f]),
        );
        assert_eq!(out["imported"], 300, "{name}");
        let u0 = json(t.cmd().args([
            "subscriber",
            "show",
            "--tenant",
            "imp-a",
            "--username",
            "user0000",
        ]));
        assert_eq!(u0["plan"], "gold", "{name}: {u0}");
        let u1 = json(t.cmd().args([
            "subscriber",
            "show",
            "--tenant",
            "imp-a",
            "--username",
            "user0001",
        ]));
        assert_eq!(u1["sim_use"], 3, "{name}: {u1}");
        // Importing again collides with existing rows: refused, still 300.
        let err =
            usage_error(
                t.cmd()
                    .args(["subscriber", "import", "--tenant", "imp-a", "--file", f]),
            );
        assert!(err.contains("already exists"), "{name}: {err}");
        let n = json(
            t.cmd()
                .args(["subscriber", "list", "--tenant", "imp-a", "--limit", "1000"]),
        );
        assert_eq!(n["items"].as_array().unwrap().len(), 300, "{name}");
        // Deleting in one tenant leaves the other's subscriber alone.
        ok(t.cmd().args([
            "subscriber",
            "delete",
            "--tenant",
            "imp-b",
            "--username",
            "user0005",
        ]));
        json(t.cmd().args([
            "subscriber",
            "show",
            "--tenant",
            "imp-a",
            "--username",
            "user0005",
        ]));
    }
}

fn dir_path_for_b(t: &Target) -> std::path::PathBuf {
    t.dir.path().join("b.csv")
}

/// `dev routeros-sim` runs alone and takes fault injection and sessions on stdin.
#[tokio::test]
async fn routeros_sim_runs_alone_and_injects_faults_from_stdin() {
    use saas_core::routeros::{Client, RosError};
    use std::io::{BufRead, BufReader, Write};
    let mut child = std::process::Command::new(bin())
        .args([
            "dev",
            "routeros-sim",
            "--listen",
            "127.0.0.1:0",
            "--user",
            "api",
            "--password",
            "pw",
            "--identity",
            "lab-1",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr: std::net::SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("control on stdin"), "{line}");
    let mut say = |cmd: &str| {
        writeln!(stdin, "{cmd}").unwrap();
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        l
    };
    let t = std::time::Duration::from_secs(2);
    let login = || async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        Client::login(tcp, "api", "pw", t).await.unwrap()
    };
    assert_eq!(login().await.identity().await.unwrap(), "lab-1");

    assert_eq!(
        say("fault trap no such item"),
        "ok fault trap no such item\n"
    );
    let e = login().await.identity().await.unwrap_err();
    assert!(
        matches!(e, RosError::Trap { ref message, .. } if message == "no such item"),
        "{e}"
    );
    assert!(say("fault none").starts_with("ok"));
    assert!(say("session add carol 100.64.9.9").starts_with("ok"));
    assert!(say("bytes carol 10 20").starts_with("ok"));
    let c = login().await;
    let active = c.ppp_active().await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(
        (active[0].name.as_str(), active[0].address.as_str()),
        ("carol", "100.64.9.9")
    );
    let l = say("session add dave not-an-ip");
    assert!(
        l.starts_with("error: \"not-an-ip\" is not an IPv4 address"),
        "{l}"
    );
    assert!(say("reboot").starts_with("error: unknown command"));
    let _ = child.kill();
    let _ = child.wait();
}
