//! The session ledger: each subscriber's open sessions and usage, kept in the cache layer so
//! simultaneous-use and quota checks cost no database round trip when warm.
//!
//! An entry is seeded from the store on first use (and again after it is forgotten or expires)
//! and then moved by accounting, after each record is durable. Counters are absolute, so the
//! ledger keeps each open session's latest counters and the total of closed ones: a retransmit
//! changes nothing, and a record for an entry that is not seeded is ignored (the store already
//! has it, and the next seed reads it). With Redis the ledger is shared by every RADIUS node
//! (keys `pp:{tenant}:live:<username>`, hash-tagged); without it, it is in-process and other
//! nodes' session events make this one re-seed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use crate::cache::{CacheError, tenant_key};
use crate::ids::{NasId, TenantId};

/// How long an untouched entry lives.
const TTL: Duration = Duration::from_secs(600);

/// What a check needs to know about one subscriber.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Open sessions.
    pub open: i64,
    /// Octets received from the subscriber since the usage reset.
    pub input: i64,
    /// Octets sent to the subscriber since the usage reset.
    pub output: i64,
}

impl Usage {
    /// Closed-session octets plus each open session's counters.
    fn total(closed: (i64, i64), open: impl ExactSizeIterator<Item = (i64, i64)>) -> Self {
        let n = open.len() as i64;
        let (input, output) = open.fold(closed, |(a, b), (i, o)| {
            (a.saturating_add(i), b.saturating_add(o))
        });
        Usage {
            open: n,
            input,
            output,
        }
    }
}

/// A subscriber's state as read from the store, to seed the ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seed {
    /// Open sessions: (NAS, Acct-Session-Id, input octets, output octets).
    pub open: Vec<(NasId, String, i64, i64)>,
    /// Octets of closed sessions since the usage reset (input, output).
    pub closed: (i64, i64),
}

impl Seed {
    /// The usage this seed stands for.
    pub fn usage(&self) -> Usage {
        Usage::total(self.closed, self.open.iter().map(|(_, _, i, o)| (*i, *o)))
    }
}

/// One durable accounting change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A session started.
    Start,
    /// Interim counters.
    Interim,
    /// The session stopped with these counters.
    Stop,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Start => "start",
            Change::Interim => "interim",
            Change::Stop => "stop",
        }
    }
}

/// One durable accounting record, as the ledger sees it.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Login.
    pub username: &'a str,
    /// NAS.
    pub nas: NasId,
    /// Acct-Session-Id.
    pub acct_session_id: &'a str,
    /// Start, Interim or Stop.
    pub change: Change,
    /// Absolute input octets (gigawords folded in).
    pub input: i64,
    /// Absolute output octets.
    pub output: i64,
}

/// Where the ledger lives.
#[async_trait]
pub trait Ledger: Send + Sync + std::fmt::Debug {
    /// The subscriber's usage, or None when not seeded.
    async fn get(&self, tenant: TenantId, username: &str) -> Result<Option<Usage>, CacheError>;
    /// Seeds an entry unless one exists.
    async fn seed(&self, tenant: TenantId, username: &str, seed: &Seed) -> Result<(), CacheError>;
    /// Applies a durable accounting record (absolute counters); ignored when not seeded.
    async fn apply(&self, tenant: TenantId, r: &Record<'_>) -> Result<(), CacheError>;
    /// Forgets one subscriber, or every subscriber of the tenant.
    async fn forget(&self, tenant: TenantId, username: Option<&str>) -> Result<(), CacheError>;
    /// Forgets every entry this node keeps for itself (after missed bus events); a shared
    /// ledger does not depend on events and keeps its entries.
    async fn forget_local(&self) -> Result<(), CacheError> {
        Ok(())
    }
    /// Whether every node sees the same ledger (then other nodes' events need no re-seed).
    fn shared(&self) -> bool;
}

fn field(nas: NasId, acct_session_id: &str) -> String {
    format!("{nas}|{acct_session_id}")
}

/// One subscriber's entry in the in-process ledger.
#[derive(Debug, Default)]
struct Entry {
    open: HashMap<String, (i64, i64)>,
    /// Sessions stopped while this entry lived, with their final counters (so a repeated Stop
    /// or a late Interim adds only growth).
    stopped: HashMap<String, (i64, i64)>,
    closed: (i64, i64),
}

impl Entry {
    fn usage(&self) -> Usage {
        Usage::total(self.closed, self.open.values().copied())
    }

    /// The same rules as the Redis script below.
    fn apply(&mut self, f: String, change: Change, i: i64, o: i64) {
        if change == Change::Start {
            self.open.entry(f).or_insert((0, 0));
            return;
        }
        if let Some(cur) = self.open.get_mut(&f) {
            let (i, o) = (i.max(cur.0), o.max(cur.1));
            if change == Change::Stop {
                self.open.remove(&f);
                self.closed = (self.closed.0 + i, self.closed.1 + o);
                self.stopped.insert(f, (i, o));
            } else {
                *cur = (i, o);
            }
        } else if let Some(old) = self.stopped.get_mut(&f) {
            let (di, dout) = ((i - old.0).max(0), (o - old.1).max(0));
            self.closed = (self.closed.0 + di, self.closed.1 + dout);
            *old = (i.max(old.0), o.max(old.1));
        } else if change == Change::Stop {
            // A Stop without its Start: the store opens and closes the session at once.
            self.closed = (self.closed.0 + i, self.closed.1 + o);
            self.stopped.insert(f, (i, o));
        } else {
            // An Interim without its Start: the store opens the session.
            self.open.insert(f, (i, o));
        }
    }
}

/// The in-process ledger (no Redis).
#[derive(Debug, Default)]
pub struct MemoryLedger {
    entries: Mutex<HashMap<(TenantId, String), (Entry, Instant)>>,
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn get(&self, tenant: TenantId, username: &str) -> Result<Option<Usage>, CacheError> {
        let m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Ok(m.get(&(tenant, username.to_owned()))
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(e, _)| e.usage()))
    }

    async fn seed(&self, tenant: TenantId, username: &str, seed: &Seed) -> Result<(), CacheError> {
        let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let key = (tenant, username.to_owned());
        if m.get(&key).is_some_and(|(_, at)| at.elapsed() < TTL) {
            return Ok(());
        }
        if m.len() > 500_000 {
            m.retain(|_, (_, at)| at.elapsed() < TTL);
        }
        let e = Entry {
            open: seed
                .open
                .iter()
                .map(|(n, s, i, o)| (field(*n, s), (*i, *o)))
                .collect(),
            stopped: HashMap::new(),
            closed: seed.closed,
        };
        m.insert(key, (e, Instant::now()));
        Ok(())
    }

    async fn apply(&self, tenant: TenantId, r: &Record<'_>) -> Result<(), CacheError> {
        let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((e, at)) = m.get_mut(&(tenant, r.username.to_owned()))
            && at.elapsed() < TTL
        {
            e.apply(field(r.nas, r.acct_session_id), r.change, r.input, r.output);
            *at = Instant::now();
        }
        Ok(())
    }

    async fn forget(&self, tenant: TenantId, username: Option<&str>) -> Result<(), CacheError> {
        let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match username {
            Some(u) => {
                m.remove(&(tenant, u.to_owned()));
            }
            None => m.retain(|(t, _), _| *t != tenant),
        }
        Ok(())
    }

    async fn forget_local(&self) -> Result<(), CacheError> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }

    fn shared(&self) -> bool {
        false
    }
}

/// Applies one change to a hash `s:<field>` (open), `x:<field>` (stopped), `c` (closed total);
/// the same rules as `Entry::apply`.
const APPLY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local op, f, i, o = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local function parse(v) local a, b = string.match(v, '^(%-?%d+):(%-?%d+)$'); return tonumber(a), tonumber(b) end
local function add(di, dq)
  local ti, to = parse(redis.call('HGET', KEYS[1], 'c') or '0:0')
  redis.call('HSET', KEYS[1], 'c', string.format('%d:%d', ti + di, to + dq))
end
local s, x = 's:' .. f, 'x:' .. f
if op == 'start' then
  redis.call('HSETNX', KEYS[1], s, '0:0')
else
  local cur = redis.call('HGET', KEYS[1], s)
  if cur then
    local ci, co = parse(cur)
    i, o = math.max(i, ci), math.max(o, co)
    if op == 'stop' then
      redis.call('HDEL', KEYS[1], s)
      add(i, o)
      redis.call('HSET', KEYS[1], x, string.format('%d:%d', i, o))
    else
      redis.call('HSET', KEYS[1], s, string.format('%d:%d', i, o))
    end
  else
    local old = redis.call('HGET', KEYS[1], x)
    if old then
      local xi, xo = parse(old)
      add(math.max(i - xi, 0), math.max(o - xo, 0))
      redis.call('HSET', KEYS[1], x, string.format('%d:%d', math.max(i, xi), math.max(o, xo)))
    elseif op == 'stop' then
      add(i, o)
      redis.call('HSET', KEYS[1], x, string.format('%d:%d', i, o))
    else
      redis.call('HSET', KEYS[1], s, string.format('%d:%d', i, o))
    end
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
";

const SEED: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'c', ARGV[2])
for k = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[k], ARGV[k + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
";

/// The ledger in Redis, shared by every node.
#[derive(Clone)]
pub struct RedisLedger {
    conn: ConnectionManager,
    apply: redis::Script,
    seed: redis::Script,
}

impl std::fmt::Debug for RedisLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisLedger")
    }
}

impl RedisLedger {
    /// A ledger over this connection.
    pub fn new(conn: ConnectionManager) -> Self {
        Self {
            conn,
            apply: redis::Script::new(APPLY),
            seed: redis::Script::new(SEED),
        }
    }

    fn key(tenant: TenantId, username: &str) -> String {
        tenant_key(tenant, &format!("live:{username}"))
    }
}

fn pair(v: &str) -> (i64, i64) {
    let mut it = v.splitn(2, ':').map(|x| x.parse::<i64>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn ttl_ms() -> u64 {
    TTL.as_millis() as u64
}

#[async_trait]
impl Ledger for RedisLedger {
    async fn get(&self, tenant: TenantId, username: &str) -> Result<Option<Usage>, CacheError> {
        let mut c = self.conn.clone();
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(Self::key(tenant, username))
            .query_async(&mut c)
            .await?;
        let Some(closed) = h.get("c") else {
            return Ok(None);
        };
        let open: Vec<(i64, i64)> = h
            .iter()
            .filter(|(k, _)| k.starts_with("s:"))
            .map(|(_, v)| pair(v))
            .collect();
        Ok(Some(Usage::total(pair(closed), open.into_iter())))
    }

    async fn seed(&self, tenant: TenantId, username: &str, seed: &Seed) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        let mut inv = self.seed.key(Self::key(tenant, username));
        inv.arg(ttl_ms())
            .arg(format!("{}:{}", seed.closed.0, seed.closed.1));
        for (n, s, i, o) in &seed.open {
            inv.arg(format!("s:{}", field(*n, s)))
                .arg(format!("{i}:{o}"));
        }
        let _: i64 = inv.invoke_async(&mut c).await?;
        Ok(())
    }

    async fn apply(&self, tenant: TenantId, r: &Record<'_>) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        let _: i64 = self
            .apply
            .key(Self::key(tenant, r.username))
            .arg(r.change.as_str())
            .arg(field(r.nas, r.acct_session_id))
            .arg(r.input)
            .arg(r.output)
            .arg(ttl_ms())
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    async fn forget(&self, tenant: TenantId, username: Option<&str>) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        if let Some(u) = username {
            let _: i64 = redis::cmd("DEL")
                .arg(Self::key(tenant, u))
                .query_async(&mut c)
                .await?;
            return Ok(());
        }
        let pattern = tenant_key(tenant, "live:*");
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await?;
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut c).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    fn shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_counts_absolute_counters_once() {
        let mut e = Entry::default();
        let f = || "n|a".to_owned();
        e.apply(f(), Change::Start, 0, 0);
        e.apply(f(), Change::Start, 0, 0); // retransmit
        assert_eq!(
            e.usage(),
            Usage {
                open: 1,
                input: 0,
                output: 0
            }
        );
        e.apply(f(), Change::Interim, 100, 10);
        e.apply(f(), Change::Interim, 50, 5); // late, lower
        assert_eq!(
            e.usage(),
            Usage {
                open: 1,
                input: 100,
                output: 10
            }
        );
        e.apply(f(), Change::Stop, 150, 20);
        e.apply(f(), Change::Stop, 150, 20); // retransmit
        assert_eq!(
            e.usage(),
            Usage {
                open: 0,
                input: 150,
                output: 20
            }
        );
        e.apply("n|b".into(), Change::Stop, 7, 3); // Stop without Start
        assert_eq!(
            e.usage(),
            Usage {
                open: 0,
                input: 157,
                output: 23
            }
        );
        e.apply("n|c".into(), Change::Interim, 1, 1); // Interim without Start opens it
        assert_eq!(
            e.usage(),
            Usage {
                open: 1,
                input: 158,
                output: 24
            }
        );
    }
}
