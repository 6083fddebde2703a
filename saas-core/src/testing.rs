//! Test support: stores on every backend the test environment offers.
//!
//! `infra/test.sh` starts PostgreSQL and Redis and exports `PP_TEST_PG_SUPER_URL` and
//! `PP_TEST_REDIS_URL`. Without them a test on that backend is skipped with a message, except under
//! CI (`CI` set), where a missing backend is a failure.

use std::path::PathBuf;

use crate::crypto::{SecretBox, ServerKey};
use crate::store::{Store, StoreOptions};

/// A store for one test, with what it needs to stay alive.
pub struct TestStore {
    /// The store.
    pub store: Store,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// Data dir (SQLite file lives here).
    pub dir: tempfile::TempDir,
    /// The database options (PostgreSQL: app, owner and system roles).
    pub options: StoreOptions,
    /// Superuser URL of this test database (PostgreSQL only).
    pub super_url: Option<String>,
    /// The server key.
    pub key: ServerKey,
}

impl std::fmt::Debug for TestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestStore")
            .field("backend", &self.backend)
            .finish()
    }
}

fn required_env(name: &str, what: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "{name} is not set under CI: run the suite through ./infra/test.sh, which starts {what}"
            )
        }
        _ => {
            eprintln!("skipping the {what} part: {name} is not set (./infra/test.sh sets it)");
            None
        }
    }
}

/// The Redis URL of the test environment, if any.
pub fn redis_url() -> Option<String> {
    required_env("PP_TEST_REDIS_URL", "Redis")
}

/// A fresh SQLite store in a temp dir.
pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = ServerKey::generate();
    let options = StoreOptions::sqlite_in(dir.path());
    let store = Store::open(&options, SecretBox::new(key.clone(), vec![]))
        .await
        .expect("open sqlite store");
    TestStore {
        store,
        backend: "sqlite",
        dir,
        options,
        super_url: None,
        key,
    }
}

fn with_user_db(base: &str, user: &str, db: &str) -> String {
    let mut u = url::Url::parse(base).expect("PP_TEST_PG_SUPER_URL is a URL");
    u.set_username(user).expect("set user");
    u.set_password(None).expect("clear password");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

/// A fresh PostgreSQL database (owned by `proxpanel_owner`, used as `proxpanel_app` and
/// `proxpanel_system`), or None when the environment has no PostgreSQL.
pub async fn postgres() -> Option<TestStore> {
    let super_url = required_env("PP_TEST_PG_SUPER_URL", "PostgreSQL")?;
    let db = format!("pp_t_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&super_url)
        .await
        .expect("connect as PostgreSQL superuser");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {db} OWNER proxpanel_owner"
    )))
    .execute(&admin)
    .await
    .expect("create test database");
    admin.close().await;
    let options = StoreOptions {
        url: with_user_db(&super_url, "proxpanel_app", &db),
        admin_url: Some(with_user_db(&super_url, "proxpanel_owner", &db)),
        system_url: Some(with_user_db(&super_url, "proxpanel_system", &db)),
        max_connections: 8,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let key = ServerKey::generate();
    let store = Store::open(&options, SecretBox::new(key.clone(), vec![]))
        .await
        .expect("open postgres store");
    let mut super_db = url::Url::parse(&super_url).expect("url");
    super_db.set_path(&format!("/{db}"));
    Some(TestStore {
        store,
        backend: "postgres",
        dir,
        options,
        super_url: Some(super_db.to_string()),
        key,
    })
}

/// One store per available backend: SQLite always, PostgreSQL when the environment has it.
pub async fn each_backend() -> Vec<TestStore> {
    let mut v = vec![sqlite().await];
    if let Some(pg) = postgres().await {
        v.push(pg);
    }
    v
}

/// Path of a PostgreSQL client binary (PATH first, then the newest /usr/lib/postgresql/*/bin).
pub fn pg_binary(name: &str) -> PathBuf {
    if let Ok(paths) = std::env::var("PATH") {
        for p in std::env::split_paths(&paths) {
            let c = p.join(name);
            if c.is_file() {
                return c;
            }
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|r| {
            r.filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.pop().unwrap_or_else(|| PathBuf::from(name))
}

impl TestStore {
    /// Full text of the database: the SQLite file bytes (with WAL) or a `pg_dump`.
    pub async fn raw_dump(&self) -> Vec<u8> {
        match &self.super_url {
            None => {
                let mut out = Vec::new();
                for entry in std::fs::read_dir(self.dir.path())
                    .expect("data dir")
                    .flatten()
                {
                    out.extend(std::fs::read(entry.path()).unwrap_or_default());
                }
                out
            }
            Some(url) => {
                let o = tokio::process::Command::new(pg_binary("pg_dump"))
                    .arg("--data-only")
                    .arg(url)
                    .output()
                    .await
                    .expect("run pg_dump");
                assert!(
                    o.status.success(),
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                o.stdout
            }
        }
    }
}
