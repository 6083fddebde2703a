//! The cache: Redis when configured, otherwise in-process. It only speeds things up and counts
//! rate limits; the store stays the source of truth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::ids::TenantId;
use crate::store::redact_url;

/// Cache failures (Redis unreachable, protocol error).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Connecting to Redis failed.
    #[error("cannot connect to Redis at {url}: {source}")]
    Connect {
        /// Redacted URL.
        url: String,
        /// Cause.
        source: redis::RedisError,
    },
    /// A Redis command failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Key-value cache with expiry and counters.
#[async_trait]
pub trait Cache: Send + Sync + std::fmt::Debug {
    /// The value, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;
    /// Stores a value for `ttl`.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError>;
    /// Removes a value.
    async fn delete(&self, key: &str) -> Result<(), CacheError>;
    /// Increments a counter; a new counter expires after `ttl` (fixed window). Returns the count.
    async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError>;
    /// Takes or renews a lease: when `key` is free, expired or already held by `holder`, it is
    /// (re)set to `holder` for `ttl` and the answer is true; otherwise false. Atomic, so of
    /// several processes asking for one free lease exactly one gets it.
    async fn lease(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, CacheError>;
    /// `redis` or `memory`.
    fn kind(&self) -> &'static str;
    /// The Redis connection, when this cache is Redis (for structures beyond key-value).
    fn redis(&self) -> Option<ConnectionManager> {
        None
    }
}

/// A key of one tenant, hash-tagged so Redis Cluster keeps a tenant's keys together.
pub fn tenant_key(tenant: TenantId, rest: &str) -> String {
    format!("pp:{{{tenant}}}:{rest}")
}

/// Connects to Redis when a URL is given, else returns the in-process cache.
pub async fn connect(redis_url: Option<&str>) -> Result<Arc<dyn Cache>, CacheError> {
    match redis_url {
        Some(url) => Ok(Arc::new(RedisCache::connect(url).await?)),
        None => Ok(Arc::new(MemoryCache::default())),
    }
}

/// In-process cache (single node, embedded mode).
#[derive(Debug, Default)]
pub struct MemoryCache {
    map: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
}

impl MemoryCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Vec<u8>, Instant)>> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sweep(map: &mut HashMap<String, (Vec<u8>, Instant)>, now: Instant) {
        if map.len() > 10_000 {
            map.retain(|_, (_, exp)| *exp > now);
        }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let now = Instant::now();
        let mut map = self.lock();
        match map.get(key) {
            Some((v, exp)) if *exp > now => Ok(Some(v.clone())),
            Some(_) => {
                map.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let now = Instant::now();
        let mut map = self.lock();
        Self::sweep(&mut map, now);
        map.insert(key.to_owned(), (value.to_vec(), now + ttl));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.lock().remove(key);
        Ok(())
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        let now = Instant::now();
        let mut map = self.lock();
        Self::sweep(&mut map, now);
        let entry = map
            .entry(key.to_owned())
            .or_insert_with(|| (b"0".to_vec(), now + ttl));
        if entry.1 <= now {
            *entry = (b"0".to_vec(), now + ttl);
        }
        let n: i64 = std::str::from_utf8(&entry.0)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
            + 1;
        entry.0 = n.to_string().into_bytes();
        Ok(n)
    }

    async fn lease(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, CacheError> {
        let now = Instant::now();
        let mut map = self.lock();
        Self::sweep(&mut map, now);
        match map.get(key) {
            Some((v, until)) if *until > now && v.as_slice() != holder.as_bytes() => Ok(false),
            _ => {
                map.insert(key.to_owned(), (holder.as_bytes().to_vec(), now + ttl));
                Ok(true)
            }
        }
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

/// Redis cache over one multiplexed, auto-reconnecting connection.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    url: String,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

impl RedisCache {
    /// Connects (and checks the server answers).
    pub async fn connect(url: &str) -> Result<Self, CacheError> {
        let err = |source| CacheError::Connect {
            url: redact_url(url),
            source,
        };
        let client = redis::Client::open(url).map_err(err)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, cfg)
            .await
            .map_err(err)?;
        Ok(Self {
            conn,
            url: url.to_owned(),
        })
    }

    /// A clone of the underlying connection (for publishing).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut c = self.conn.clone();
        Ok(c.get(key).await?)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl_ms(ttl))
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        let _: i64 = c.del(key).await?;
        Ok(())
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        let mut c = self.conn.clone();
        // INCR then PEXPIRE NX in one round trip: the window starts at the first hit.
        let (n, _): (i64, i64) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg(key)
            .cmd("PEXPIRE")
            .arg(key)
            .arg(ttl_ms(ttl))
            .arg("NX")
            .query_async(&mut c)
            .await?;
        Ok(n)
    }

    async fn lease(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, CacheError> {
        let mut c = self.conn.clone();
        // GET and SET in one script: no other process can take the lease in between.
        let got: i64 = redis::Script::new(
            "local v = redis.call('GET', KEYS[1]) \
             if (not v) or v == ARGV[1] then \
               redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 \
             end return 0",
        )
        .key(key)
        .arg(holder)
        .arg(ttl_ms(ttl))
        .invoke_async(&mut c)
        .await?;
        Ok(got == 1)
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn redis(&self) -> Option<ConnectionManager> {
        Some(self.conn.clone())
    }
}
