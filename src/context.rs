//! Shared start-up: configuration, server key, store, cache, bus and domain services.

use std::path::Path;
use std::sync::Arc;

use saas_core::bus::Bus;
use saas_core::cache::{self, Cache};
use saas_core::config::{Config, FlagOverrides};
use saas_core::crypto::{HashCost, SecretBox, ServerKey};
use saas_core::platform::Platform;
use saas_core::store::{Store, StoreOptions, redact_url};

use crate::Fatal;
use crate::cli::Cli;

/// Everything a command needs.
pub struct Context {
    pub config: Config,
    pub store: Store,
    pub cache: Arc<dyn Cache>,
    pub platform: Platform,
}

/// Loads the configuration with the global flags (and command-specific `extra` flags) on top.
pub fn load_config(cli: &Cli, extra: FlagOverrides) -> Result<Config, Fatal> {
    let mut flags = extra;
    if let Some(d) = &cli.data_dir {
        flags.insert("data_dir", d.display().to_string());
    }
    if let Some(u) = &cli.database_url {
        flags.insert("database.url", u.clone());
    }
    Ok(Config::load_from_process(cli.config.as_deref(), &flags)?)
}

/// Store options from the configuration (SQLite in the data dir by default).
pub fn store_options(config: &Config) -> StoreOptions {
    match &config.database_url {
        Some(url) => StoreOptions {
            url: url.expose().to_owned(),
            admin_url: config
                .database_admin_url
                .as_ref()
                .map(|u| u.expose().to_owned()),
            system_url: config
                .database_system_url
                .as_ref()
                .map(|u| u.expose().to_owned()),
            max_connections: 16,
        },
        None => StoreOptions::sqlite_in(&config.data_dir),
    }
}

/// The server key: given, read from a file, or (SQLite only) generated into the data dir.
pub fn server_key(config: &Config) -> Result<ServerKey, Fatal> {
    if let Some(k) = &config.secret_key {
        return ServerKey::from_base64(k.expose())
            .map_err(|e| Fatal::usage(format!("PROXPANEL_SECRET_KEY: {e}")));
    }
    if let Some(path) = &config.secret_key_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Fatal::usage(format!(
                "cannot read the server key file {}: {e}",
                path.display()
            ))
        })?;
        return ServerKey::from_base64(&text)
            .map_err(|e| Fatal::usage(format!("{}: {e}", path.display())));
    }
    if config.uses_postgres() {
        return Err(Fatal::usage(
            "PostgreSQL needs the server key given: set PROXPANEL_SECRET_KEY (32 bytes, base64; e.g. `openssl rand -base64 32`) or PROXPANEL_SECRET_KEY_FILE — every node must use the same key",
        ));
    }
    let path = config.data_dir.join("secret.key");
    let (key, created) =
        ServerKey::load_or_create(&path).map_err(|e| Fatal::failure(e.to_string()))?;
    if created {
        tracing::warn!(path = %path.display(), key_id = key.id(), "generated a new server key for secrets at rest; back it up — without it stored secrets cannot be read");
    }
    Ok(key)
}

/// Opens the store (running migrations), cache and bus.
pub async fn open(config: Config) -> Result<Context, Fatal> {
    let key = server_key(&config)?;
    let opts = store_options(&config);
    let store = Store::open(&opts, SecretBox::new(key, vec![])).await.map_err(|e| match e {
        saas_core::StoreError::Connect { .. } | saas_core::StoreError::Setup(_) => Fatal::failure(format!(
            "{e}\n  check that the database at {} is running and reachable, or unset PROXPANEL_DATABASE_URL to use the embedded SQLite store",
            redact_url(&opts.url)
        )),
        e => Fatal::failure(e.to_string()),
    })?;
    let redis_url = config.redis_url.as_ref().map(|u| u.expose().to_owned());
    let cache = cache::connect(redis_url.as_deref()).await.map_err(|e| Fatal::failure(format!("{e}\n  check that Redis is running, or unset PROXPANEL_REDIS_URL to use the in-process cache")))?;
    let bus = Bus::start(store.clone(), redis_url.as_deref())
        .await
        .map_err(|e| Fatal::failure(e.to_string()))?;
    let platform = Platform::new(
        store.clone(),
        bus,
        hash_cost(),
        config.wg_tunnel_subnet.to_string(),
    );
    Ok(Context {
        config,
        store,
        cache,
        platform,
    })
}

/// argon2id cost: OWASP defaults; `PP_TEST_CHEAP_HASH=1` (set by the test suite only) makes it cheap.
fn hash_cost() -> HashCost {
    if std::env::var_os("PP_TEST_CHEAP_HASH").is_some() {
        HashCost::cheap()
    } else {
        HashCost::default()
    }
}

/// Creates the data dir if needed, with a clear message when it cannot be.
pub fn ensure_data_dir(dir: &Path) -> Result<(), Fatal> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Fatal::failure(format!(
            "cannot create the data dir {}: {e} (set PROXPANEL_DATA_DIR)",
            dir.display()
        ))
    })
}

impl Context {
    /// Stops the bus and closes the store.
    pub async fn close(self) {
        self.platform.bus().shutdown();
        self.store.close().await;
    }
}
