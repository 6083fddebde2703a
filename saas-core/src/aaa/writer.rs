//! Durable accounting: group commit to the store, with an fsync'd local spool in front of it
//! whenever the store is busy or down. A record is acknowledged (and the NAS gets its
//! Accounting-Response) only after one of the two has it on disk.
//!
//! The writer has [`SHARDS`] shards, each with its own queue and spool; records are routed by
//! (tenant, NAS, Acct-Session-Id), so a session's records stay in order in one shard. Within a
//! shard nothing reaches the store before what is spooled ahead of it.
//!
//! A shard with nothing at the store and nothing spooled sends new records straight to the store
//! and acknowledges them when that commits (an idle system reads its own writes at once). While
//! a batch of the shard is at the store, the records that arrive meanwhile are appended to the
//! spool (one fsync for all of them) and acknowledged; the store then takes them, oldest first,
//! in batches of up to [`DRAIN_MAX`] (this is FreeRADIUS's "decoupled accounting", the detail file
//! in front of SQL, done in one process). A durable record then costs a local fsync (~0.1 ms)
//! instead of a database round trip with planning (~1.5 ms for a small batch), and the database
//! does much less work per record in large batches. A reader of the store may see a record a few
//! milliseconds after the NAS got its answer; the session ledger waits for the spool before it is
//! seeded from the store (see [`AcctWriter::settled`]). Spooled entries are bounded while the
//! store is up ([`AHEAD_MAX`] per shard: a slower store slows the acknowledgements, it does not fall
//! ever further behind) and unbounded while it is down.
//!
//! The shards do not commit on their own: each hands its batch to the combiner, which writes
//! every batch that is ready (from all shards) in one transaction per tenant. At low concurrency
//! a few outstanding records would otherwise be split into one tiny commit per shard, and a
//! commit (its WAL flush, BEGIN/COMMIT round trips) costs the database far more than a record.
//! A shard has at most one batch at the combiner, so a session's records reach the store in order.
//!
//! Replay is exactly-once because applying a record is idempotent: a session row takes the id
//! of the record that opened it, counters only move up, and Accounting-On/Off only closes sessions
//! that started before it. So a crash between a commit and the deletion of the spool segment it
//! emptied only applies committed records again.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::ids::{NasId, TenantId};
use crate::model::AcctRecord;
use crate::store::{AcctLane, Store, StoreError};

/// One accounting operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AcctOp {
    /// Start, Interim or Stop.
    Record(AcctRecord),
    /// Accounting-On/Off: close the NAS's sessions that started before `at`.
    CloseNas {
        /// NAS.
        nas: NasId,
        /// When.
        at: DateTime<Utc>,
        /// Terminate cause written to the closed sessions.
        cause: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    tenant: TenantId,
    op: AcctOp,
}

/// Why an operation could not be made durable.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WriteError {
    /// Neither the store nor the spool took it.
    #[error("accounting not durable: store failed ({store}) and spool failed ({spool})")]
    NotDurable {
        /// Store error.
        store: String,
        /// Spool error.
        spool: String,
    },
    /// The writer stopped.
    #[error("accounting writer stopped")]
    Stopped,
}

struct Job {
    entry: Entry,
    /// A CloseNas barrier (see [`AcctWriter::submit`]): acknowledged once everything queued
    /// before it in this shard is durable. It is not applied here; it is written to the spool
    /// only when the entries before it went there, so that replay applies it after them.
    barrier: bool,
    done: oneshot::Sender<Result<(), WriteError>>,
}

/// Writer shards: each has its own queue and spool. One: with the spool in front of the store
/// a shard's throughput is its fsync rate times its batch, and one shard batches every record
/// that arrives during an fsync into the next (measured at 16 outstanding: four shards made
/// three times the fsyncs, each for one or two records, and a third more server CPU per record).
pub const SHARDS: usize = 1;

/// Shard spools an earlier build may have left (it had four shards): read at start, their
/// records moved to the shard that owns them now.
const EARLIER_SHARDS: usize = 4;

/// Handle to the writer tasks.
#[derive(Clone)]
pub struct AcctWriter {
    shards: Arc<[mpsc::Sender<Job>]>,
    /// Jobs submitted and not yet handed to the combiner (or spooled).
    queued: Arc<AtomicU64>,
    /// Per shard: entries ever spooled, and (watched) spooled entries committed since.
    spooled_total: Arc<[AtomicU64]>,
    applied: Arc<[tokio::sync::watch::Receiver<u64>]>,
}

impl std::fmt::Debug for AcctWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcctWriter")
            .field("shards", &self.shards.len())
            .field("spooled", &self.spooled())
            .finish()
    }
}

/// Most operations committed in one batch.
const BATCH: usize = 512;

/// Combined commits running at once. One: the next combined batch fills while the current one
/// commits, which at every measured concurrency beat two smaller commits side by side (see
/// infra/bench/radius.sh).
pub const LANES: usize = 1;

/// How many times the combiner yields, after taking the batches that are ready, for shards that
/// still hold queued records to hand theirs over too (a shard task woken by the last commit may
/// not have run yet). A yield costs microseconds; a commit split in two costs a WAL flush.
const GATHER_YIELDS: usize = 4;

/// A shard's batch at the combiner, and where the outcome goes.
struct Handover {
    entries: Vec<Entry>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Writes the shards' batches together (see the module documentation).
struct Combiner {
    store: Store,
    /// Taken around every store write when the backend allows one writer at a time.
    gate: Option<Arc<Mutex<()>>>,
    rx: Arc<Mutex<mpsc::Receiver<Handover>>>,
    /// Jobs submitted to a shard and not yet handed to the combiner.
    queued: Arc<AtomicU64>,
}

/// Records committed between two refreshes of the sessions' statistics, and the shortest time
/// between two (see migration 0016: plans made from statistics taken while the table or its
/// open sessions were few scan far more than the batch's sessions, so they are refreshed under
/// traffic; an ANALYZE samples a fixed number of rows, ~0.1 s whatever the table's size).
const STATS_EVERY: u64 = 10_000;
const STATS_MIN_INTERVAL: Duration = Duration::from_secs(60);

impl Combiner {
    async fn run(self) {
        let mut lane = AcctLane::default();
        // Committed since the last refresh, and when that was (none yet).
        let mut since_stats: u64 = 0;
        let mut stats_at: Option<tokio::time::Instant> = None;
        loop {
            let mut got = Vec::new();
            {
                let mut rx = self.rx.lock().await;
                match rx.recv().await {
                    Some(h) => got.push(h),
                    None => return,
                }
                let mut yields = 0;
                loop {
                    while let Ok(h) = rx.try_recv() {
                        got.push(h);
                    }
                    if yields == GATHER_YIELDS || self.queued.load(Ordering::Acquire) == 0 {
                        break;
                    }
                    yields += 1;
                    tokio::task::yield_now().await;
                }
            }
            let results = {
                let _turn = match &self.gate {
                    Some(g) => Some(g.lock().await),
                    None => None,
                };
                let batches: Vec<&[Entry]> = got.iter().map(|h| h.entries.as_slice()).collect();
                apply_batches(&self.store, &mut lane, &batches).await
            };
            for (h, r) in got.into_iter().zip(results) {
                if r.is_ok() {
                    since_stats += h.entries.len() as u64;
                }
                let _ = h.done.send(r);
            }
            if since_stats >= STATS_EVERY
                && stats_at.is_none_or(|t| t.elapsed() >= STATS_MIN_INTERVAL)
            {
                since_stats = 0;
                stats_at = Some(tokio::time::Instant::now());
                // Beside the writes, not in front of them (ANALYZE blocks no writer).
                let store = self.store.clone();
                tokio::spawn(async move {
                    match store.platform().refresh_session_stats().await {
                        Ok(()) => tracing::debug!("accounting session statistics refreshed"),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not refresh the accounting session statistics")
                        }
                    }
                });
            }
        }
    }
}

/// The spool file of shard `i`: shard 0 uses `spool` itself (so a spool left by an unsharded
/// writer is found), shard `i > 0` uses `<stem>-<i>.<ext>` in the same directory
/// (`accounting-spool.jsonl` → `accounting-spool-1.jsonl`).
pub fn shard_spool_path(spool: &Path, i: usize) -> PathBuf {
    if i == 0 {
        return spool.to_path_buf();
    }
    let stem = spool
        .file_stem()
        .map_or_else(|| "accounting-spool".into(), |s| s.to_string_lossy());
    let name = match spool.extension() {
        Some(ext) => format!("{stem}-{i}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{i}"),
    };
    spool.with_file_name(name)
}

/// The shard of a session: every record of one (tenant, NAS, Acct-Session-Id) goes to the same
/// shard, so they stay in order. FNV-1a: stable across builds, so a spool left by a previous
/// version is found in the shard that owns its sessions.
fn shard_of(tenant: TenantId, nas: NasId, acct_session_id: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tenant
        .0
        .as_bytes()
        .iter()
        .chain(nas.0.as_bytes())
        .chain(acct_session_id.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    // SHARDS is tiny: the remainder fits in usize.
    usize::try_from(h % SHARDS as u64).unwrap_or(0)
}

/// The shard that owns an entry: a record's session shard; for a CloseNas, the NAS's shard.
fn home(e: &Entry) -> usize {
    match &e.op {
        AcctOp::Record(r) => shard_of(e.tenant, r.nas, &r.acct_session_id),
        AcctOp::CloseNas { nas, .. } => shard_of(e.tenant, *nas, ""),
    }
}

impl AcctWriter {
    /// Starts the writer shards; shard 0's spool lives at `spool`, the others next to it (see
    /// [`shard_spool_path`]), created on demand. Spools left by a previous run are replayed
    /// first, each by its shard.
    pub fn start(store: Store, spool: PathBuf) -> Self {
        let paths: Vec<PathBuf> = (0..SHARDS).map(|i| shard_spool_path(&spool, i)).collect();
        let layout: Vec<PathBuf> = (0..SHARDS.max(EARLIER_SHARDS))
            .map(|i| shard_spool_path(&spool, i))
            .collect();
        let mut txs = Vec::with_capacity(SHARDS);
        let mut rxs = Vec::with_capacity(SHARDS);
        for _ in 0..SHARDS {
            let (tx, rx) = mpsc::channel(8192);
            txs.push(tx);
            rxs.push(rx);
        }
        let spooled_total: Arc<[AtomicU64]> = (0..SHARDS).map(|_| AtomicU64::new(0)).collect();
        let totals = spooled_total.clone();
        let (applied_tx, applied): (Vec<_>, Vec<_>) = (0..SHARDS)
            .map(|_| tokio::sync::watch::channel(0u64))
            .unzip();
        let queued = Arc::new(AtomicU64::new(0));
        let in_queue = queued.clone();
        tokio::spawn(async move {
            // Before any shard runs (submissions wait in the queues): a record left in the wrong
            // shard's spool (one written by the unsharded writer) moves to its own shard's, so
            // nothing of a session reaches the store ahead of its spooled records.
            match tokio::task::spawn_blocking(move || rehome_spools(&layout)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(
                    records = n,
                    "accounting spool records moved to their shard's spool"
                ),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "could not redistribute the accounting spools; each is replayed as it is")
                }
                Err(e) => tracing::error!(error = %e, "accounting spool redistribution failed"),
            }
            // SQLite has one writer at a time: the shards take turns at committing rather than
            // wait in SQLite's busy handler (which sleeps in steps of milliseconds).
            let gate = (store.backend_name() == "sqlite").then(|| Arc::new(Mutex::new(())));
            let (combine, combined) = mpsc::channel(SHARDS);
            let combined = Arc::new(Mutex::new(combined));
            for _ in 0..LANES {
                tokio::spawn(
                    Combiner {
                        store: store.clone(),
                        gate: gate.clone(),
                        rx: combined.clone(),
                        queued: in_queue.clone(),
                    }
                    .run(),
                );
            }
            for (i, ((rx, path), applied)) in rxs.into_iter().zip(paths).zip(applied_tx).enumerate()
            {
                let shard = Shard {
                    spool: path,
                    index: i,
                    combine: combine.clone(),
                    queued: in_queue.clone(),
                    applied,
                    spooled_total: totals.clone(),
                    own_thread: true,
                };
                run_on_own_thread(shard, rx);
            }
        });
        Self {
            shards: txs.into(),
            queued,
            spooled_total,
            applied: applied.into(),
        }
    }

    async fn send(
        &self,
        shard: usize,
        entry: Entry,
        barrier: bool,
    ) -> Result<oneshot::Receiver<Result<(), WriteError>>, WriteError> {
        let (done, wait) = oneshot::channel();
        let tx = self.shards.get(shard).ok_or(WriteError::Stopped)?;
        self.queued.fetch_add(1, Ordering::AcqRel);
        if tx
            .send(Job {
                entry,
                barrier,
                done,
            })
            .await
            .is_err()
        {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(WriteError::Stopped);
        }
        Ok(wait)
    }

    /// Makes `op` durable; returns once it is committed or spooled.
    ///
    /// A record goes to its session's shard. Accounting-On/Off (`CloseNas`) is a barrier: every
    /// shard first makes durable what was queued before it (a shard that spooled those writes
    /// the CloseNas into its spool after them, so replay keeps the order), then the CloseNas is
    /// applied by the NAS's shard. It only closes sessions that started before it, so records
    /// submitted after it may commit before or after it.
    pub async fn submit(&self, tenant: TenantId, op: AcctOp) -> Result<(), WriteError> {
        let entry = Entry { tenant, op };
        if matches!(entry.op, AcctOp::CloseNas { .. }) {
            let mut waits = Vec::with_capacity(SHARDS);
            for i in 0..SHARDS {
                waits.push(self.send(i, entry.clone(), true).await?);
            }
            // Every barrier must hold: otherwise records before it may not be durable and the
            // NAS retransmits the On/Off after them.
            for w in waits {
                w.await.map_err(|_| WriteError::Stopped)??;
            }
        }
        let shard = home(&entry);
        self.send(shard, entry, false)
            .await?
            .await
            .map_err(|_| WriteError::Stopped)?
    }

    /// Operations acknowledged and not yet in the store: waiting in the spools (all shards).
    pub fn spooled(&self) -> u64 {
        // Committed first: an entry is counted as spooled before it can be committed, so the
        // total read after it is never below it.
        self.applied
            .iter()
            .zip(self.spooled_total.iter())
            .map(|(applied, total)| {
                let applied = *applied.borrow();
                total.load(Ordering::Acquire).saturating_sub(applied)
            })
            .sum()
    }

    /// Waits (at most `timeout`) until everything acknowledged so far is in the store, so that
    /// a read of the store sees it; whether it got there. Immediate when nothing is spooled.
    /// Used before the session ledger is seeded from the store, and by tests.
    pub async fn settled(&self, timeout: Duration) -> bool {
        let wait = async {
            for (total, applied) in self.spooled_total.iter().zip(self.applied.iter()) {
                let target = total.load(Ordering::Acquire);
                let mut applied = applied.clone();
                if applied.wait_for(|a| *a >= target).await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }
}

/// The entries of `batches` grouped by tenant (tenants in order of first appearance, entries in
/// order within each), with the batches each tenant's entries came from.
#[allow(clippy::type_complexity)]
fn by_tenant<'e>(batches: &[&'e [Entry]]) -> (Vec<(TenantId, Vec<&'e Entry>)>, Vec<Vec<usize>>) {
    let mut groups: Vec<(TenantId, Vec<&'e Entry>)> = Vec::new();
    let mut owners: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<TenantId, usize> = HashMap::new();
    for (b, entries) in batches.iter().enumerate() {
        for e in entries.iter() {
            let g = *index.entry(e.tenant).or_insert_with(|| {
                groups.push((e.tenant, Vec::new()));
                owners.push(Vec::new());
                groups.len() - 1
            });
            if let (Some((_, list)), Some(o)) = (groups.get_mut(g), owners.get_mut(g)) {
                list.push(e);
                if o.last() != Some(&b) {
                    o.push(b);
                }
            }
        }
    }
    (groups, owners)
}

/// Whether an error means the store cannot be reached at all (as opposed to one tenant's
/// statement failing): then the remaining tenants of a combined batch are not tried.
fn store_unreachable(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Connect { .. }
            | StoreError::Db(
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            )
    )
}

/// Applies the batches of several shards together, one transaction per tenant (tenants are
/// independent: a session and a NAS belong to one tenant), and returns each batch's outcome: a
/// batch succeeds only if every tenant it holds records of committed. A tenant that fails fails
/// exactly the batches holding its records (their shards spool them whole; re-applying the
/// committed part on replay is idempotent); the other tenants still commit and their batches are
/// acknowledged. Once the store is unreachable the tenants not yet written are not tried.
async fn apply_batches(
    store: &Store,
    lane: &mut AcctLane,
    batches: &[&[Entry]],
) -> Vec<Result<(), String>> {
    let mut out: Vec<Result<(), String>> = vec![Ok(()); batches.len()];
    let (groups, owners) = by_tenant(batches);
    let mut down: Option<String> = None;
    for ((tenant, list), owners) in groups.into_iter().zip(owners) {
        let r = match &down {
            Some(e) => Err(e.clone()),
            None => apply_tenant(store, lane, tenant, &list).await.map_err(|e| {
                let msg = e.to_string();
                if store_unreachable(&e) {
                    down = Some(msg.clone());
                } else {
                    tracing::error!(error = %msg, tenant = %tenant, "accounting batch of one tenant failed; its shards spool it");
                }
                msg
            }),
        };
        if let Err(e) = r {
            for b in owners {
                if let Some(slot @ Ok(())) = out.get_mut(b) {
                    *slot = Err(e.clone());
                }
            }
        }
    }
    out
}

/// One tenant's entries in order: one transaction per run of records and per CloseNas.
async fn apply_tenant(
    store: &Store,
    lane: &mut AcctLane,
    tenant: TenantId,
    list: &[&Entry],
) -> Result<(), StoreError> {
    let mut i = 0;
    while i < list.len() {
        match &list[i].op {
            AcctOp::CloseNas { nas, at, cause } => {
                store
                    .tenant(tenant)
                    .close_nas_sessions(*nas, *at, cause)
                    .await?;
                i += 1;
            }
            AcctOp::Record(_) => {
                let mut recs = Vec::new();
                while let Some(AcctOp::Record(r)) = list.get(i).map(|e| &e.op) {
                    recs.push(r.clone());
                    i += 1;
                }
                match store.record_accounting_in(lane, tenant, &recs).await {
                    Ok(()) => {}
                    Err(e) if missing_reference(&e) => {
                        apply_orphans(store, lane, tenant, &recs).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// Whether an error is a reference to a row that no longer exists: the session's subscriber,
/// NAS or tenant was deleted while its record was in flight. Retrying cannot help, and a record
/// kept in the spool for ever would hold back every later record of its shard.
fn missing_reference(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(sqlx::Error::Database(d))
        if d.kind() == sqlx::error::ErrorKind::ForeignKeyViolation)
}

/// Applies records one at a time (in order) after their batch referred to a deleted row: a
/// record whose subscriber is gone is stored without it (as `ON DELETE SET NULL` would have left
/// it); one whose NAS or tenant is gone is dropped with a warning, since deleting those deletes
/// their sessions too. Any other error stops here, as in a batch.
async fn apply_orphans(
    store: &Store,
    lane: &mut AcctLane,
    tenant: TenantId,
    recs: &[AcctRecord],
) -> Result<(), StoreError> {
    for r in recs {
        let e = match store
            .record_accounting_in(lane, tenant, std::slice::from_ref(r))
            .await
        {
            Err(e) if missing_reference(&e) => e,
            other => {
                other?;
                continue;
            }
        };
        if r.subscriber.is_some() {
            let mut bare = r.clone();
            bare.subscriber = None;
            match store
                .record_accounting_in(lane, tenant, std::slice::from_ref(&bare))
                .await
            {
                Ok(()) => {
                    tracing::info!(%tenant, acct_session_id = %r.acct_session_id, "accounting record of a deleted subscriber stored without it");
                    continue;
                }
                Err(e) if missing_reference(&e) => {}
                Err(e) => return Err(e),
            }
        }
        tracing::warn!(%tenant, nas = %r.nas, acct_session_id = %r.acct_session_id, error = %e, "accounting record dropped: its NAS or tenant no longer exists");
    }
    Ok(())
}

/// Spool lines: one JSON entry per line.
fn encode(entries: &[Entry]) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut buf, e).map_err(std::io::Error::other)?;
        buf.push(b'\n');
    }
    Ok(buf)
}

/// Creates a segment file of `capacity` zero bytes, synced with its directory entry. Appends
/// then overwrite zeros: the file's size never changes, so an fdatasync writes the data alone
/// (an append that grows a file also writes its inode: two device writes per acknowledgement
/// instead of one). Readers skip the zeros (an unparsable line) as they skip a torn last line.
fn create_segment(path: &Path, capacity: u64) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(path)?;
    let zeros = vec![0u8; 64 * 1024];
    let mut left = capacity;
    while left > 0 {
        let n = usize::try_from(left.min(zeros.len() as u64)).unwrap_or(zeros.len());
        f.write_all(zeros.get(..n).unwrap_or(&zeros))?;
        left -= n as u64;
    }
    f.sync_all()?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()?;
    Ok(f)
}

/// Writes `buf` at `at` and makes it durable.
fn write_synced(file: &std::fs::File, at: u64, buf: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(buf, at)?;
    file.sync_data()
}

fn append(path: &Path, entries: &[Entry]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let created = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(&encode(entries)?)?;
    f.sync_data()?;
    // A new file's directory entry is durable only once its directory is synced: without this a
    // crash right after the acknowledgement could lose the whole new spool.
    if created {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Replaces `path` with `entries`, atomically (temporary file, fsync, rename, fsync of the
/// directory).
fn rewrite(path: &Path, entries: &[Entry]) -> std::io::Result<()> {
    let tmp = path.with_extension("rehome.tmp");
    let _ = std::fs::remove_file(&tmp);
    append(&tmp, entries)?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Moves every spooled record that is not in its session's shard spool to that spool (a spool
/// of the unsharded writer, or of a build that routed differently); returns how many moved.
/// Crash-safe: moved records are appended (fsync'd) to their new spool before the old one is
/// rewritten without them, so a crash in between replays some twice (applying is idempotent),
/// never loses one. A CloseNas that followed moved records goes along with them, so replay still
/// applies it after them; it also stays where it was, unless that spool belongs to no shard now
/// (`paths` beyond [`SHARDS`], an earlier layout), which is removed once emptied.
fn rehome_spools(paths: &[PathBuf]) -> std::io::Result<usize> {
    let mut moved = 0;
    for (i, path) in paths.iter().enumerate() {
        if !path.exists() {
            continue;
        }
        let entries = read_spool(path)?;
        if i < SHARDS
            && entries
                .iter()
                .all(|e| matches!(e.op, AcctOp::CloseNas { .. }) || home(e) == i)
        {
            continue;
        }
        let mut keep = Vec::new();
        let mut out: Vec<Vec<Entry>> = vec![Vec::new(); paths.len()];
        for e in entries {
            match e.op {
                AcctOp::CloseNas { .. } => {
                    for o in out.iter_mut().filter(|o| !o.is_empty()) {
                        o.push(e.clone());
                    }
                    if i < SHARDS {
                        keep.push(e);
                    }
                }
                AcctOp::Record(_) => {
                    let j = home(&e);
                    if j == i {
                        keep.push(e);
                    } else if let Some(o) = out.get_mut(j) {
                        moved += 1;
                        o.push(e);
                    }
                }
            }
        }
        for (j, o) in out.iter().enumerate() {
            if let (false, Some(p)) = (o.is_empty(), paths.get(j)) {
                append(p, o)?;
            }
        }
        if keep.is_empty() {
            std::fs::remove_file(path)?;
        } else {
            rewrite(path, &keep)?;
        }
    }
    Ok(moved)
}

fn read_spool(path: &Path) -> std::io::Result<Vec<Entry>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line?;
        // A torn last line (crash mid-append) was never acknowledged: skip it.
        if let Ok(e) = serde_json::from_str::<Entry>(&line) {
            out.push(e);
        }
    }
    Ok(out)
}

/// A spool file and what it holds.
type SpoolFile = (PathBuf, Vec<Entry>);

/// Numbered segments of a shard's spool: `<spool>.<generation>` beside the shard's spool file.
fn segment_path(spool: &Path, generation: u64) -> PathBuf {
    let mut name = spool.as_os_str().to_owned();
    name.push(format!(".{generation}"));
    PathBuf::from(name)
}

/// The spool files a shard left, oldest first: its spool file itself (written only when a batch
/// sent straight to the store failed, which happens only while nothing else is spooled, so it is
/// always the oldest), then the numbered segments in generation order. Returns them with the
/// next free generation.
fn spool_segments(spool: &Path) -> std::io::Result<(Vec<SpoolFile>, u64)> {
    let mut out = Vec::new();
    if spool.exists() {
        out.push((spool.to_path_buf(), read_spool(spool)?));
    }
    let dir = spool
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!(
        "{}.",
        spool
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    );
    let mut numbered = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(g) = name
                    .strip_prefix(&prefix)
                    .and_then(|g| g.parse::<u64>().ok())
                {
                    numbered.push((g, e.path()));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    numbered.sort_unstable();
    let next = numbered.last().map_or(1, |(g, _)| g + 1);
    for (_, path) in numbered {
        let entries = read_spool(&path)?;
        out.push((path, entries));
    }
    Ok((out, next))
}

/// Appends on a blocking thread: an fsync must not stall the runtime's workers (the RADIUS
/// listeners run on them).
async fn append_blocking(path: PathBuf, entries: Vec<Entry>) -> std::io::Result<Vec<Entry>> {
    tokio::task::spawn_blocking(move || append(&path, &entries).map(|()| entries))
        .await
        .map_err(std::io::Error::other)?
}

/// A segment being made ahead of need: its path and open file once zero-filled and synced.
type Spare = tokio::task::JoinHandle<std::io::Result<(PathBuf, Arc<std::fs::File>)>>;

/// Acknowledged entries not yet in the store, in one spool file.
struct Segment {
    path: PathBuf,
    entries: Vec<Entry>,
    /// Entries at the front already committed (the store took part of the segment).
    applied: usize,
    /// No more appends: the next ones open a new segment.
    sealed: bool,
    /// The open file of the segment appends go to (see [`create_segment`]).
    out: Option<SegmentFile>,
}

/// An open, zero-filled segment file.
struct SegmentFile {
    file: Arc<std::fs::File>,
    /// Where the next append goes.
    at: u64,
    capacity: u64,
}

/// What a shard has at the combiner.
enum Flight {
    /// New jobs sent straight to the store: acknowledged when it commits.
    Direct { jobs: Vec<Job>, entries: Vec<Entry> },
    /// The oldest `taken` spooled entries (already acknowledged).
    Drain { taken: usize },
}

/// What woke a shard.
// A short-lived value on the stack of one loop: boxing the job would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
enum Wake {
    Jobs(Option<Job>),
    Landed(Result<(), String>),
    Retry,
}

/// Size of a spool segment (zero-filled when created; about 2,000 entries): once full the next
/// appends open a new one, so a fully committed segment can be deleted while the stream goes on
/// (a crash replays at most this many committed entries again, which is harmless: applying is
/// idempotent). Creating one costs a write of this size and two flushes, once per segment: the
/// next one is made on a blocking thread while the open one passes half full, so appends never
/// wait for that (they did: a stall of milliseconds every ~2,000 records under load).
const SEGMENT_BYTES: u64 = 1 << 20;

/// Answers every job of a batch with the batch's outcome.
fn answer(jobs: Vec<Job>, result: &Result<(), WriteError>) {
    for j in jobs {
        let _ = j.done.send(result.clone());
    }
}

/// Most spooled entries sent to the store at once.
const DRAIN_MAX: usize = 2048;

/// Least time between two drains of a shard's spool (unless DRAIN_MAX entries wait; 30 ms
/// measured no worse than 10 ms at 16 and 64 outstanding, radius.sh): a drain
/// costs the database a transaction and a planned statement per record position whatever its
/// size, so fewer, larger drains leave more of the machine to the acknowledgements. Readers of
/// the store see a spooled record this much later at most (plus the commit).
const DRAIN_PACE: Duration = Duration::from_millis(30);

/// Spooled entries at which a shard stops acknowledging ahead of the store while the store is
/// up (it waits for the drain instead): the spool bridges the commit latency, it does not let a
/// store that is slower than the traffic fall ever further behind. While the store is down
/// there is no such limit (the spool is the only place records can go).
const AHEAD_MAX: usize = 4 * DRAIN_MAX;

/// One writer shard.
struct Shard {
    spool: PathBuf,
    index: usize,
    /// The combiner, which commits this shard's batches together with the other shards'.
    combine: mpsc::Sender<Handover>,
    /// Jobs submitted and not yet handed to the combiner (shared by all shards).
    queued: Arc<AtomicU64>,
    /// Spooled entries of this shard committed so far (see [`AcctWriter::settled`]).
    applied: tokio::sync::watch::Sender<u64>,
    /// Entries ever spooled by this shard.
    spooled_total: Arc<[AtomicU64]>,
    /// Whether the shard runs on a thread of its own (see [`run_on_own_thread`]): then it
    /// writes and syncs the spool itself instead of on the blocking pool.
    own_thread: bool,
}

/// Runs a shard on a thread of its own, in a single-threaded runtime, so that it can write and
/// sync the spool directly: the acknowledgements wait for the fsync alone, not also for a hand-over
/// to a blocking-pool thread and back (two thread wake-ups per spool write, which cost more than
/// the fsync on a busy machine: lab, 16 outstanding, ~25k -> ~32k records/s), while the runtime
/// that serves the listeners never blocks on the disk. Where no thread can be started the shard
/// runs as a task, with its writes on the blocking pool.
fn run_on_own_thread(shard: Shard, rx: mpsc::Receiver<Job>) {
    let index = shard.index;
    // Called from a task of the main runtime: the fallback runs there.
    let main = tokio::runtime::Handle::current();
    let fallback = main.clone();
    let slot = Arc::new(std::sync::Mutex::new(Some((shard, rx))));
    let taken = slot.clone();
    let started = std::thread::Builder::new()
        .name(format!("acct-journal-{index}"))
        .spawn(move || {
            let Some((shard, rx)) = taken.lock().unwrap_or_else(|p| p.into_inner()).take() else {
                return;
            };
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(shard.run(rx)),
                Err(e) => {
                    tracing::warn!(error = %e, shard = index, "cannot start the accounting journal's runtime; the shard runs as a task");
                    run_as_task(&fallback, shard, rx);
                }
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, shard = index, "cannot start the accounting journal's thread; the shard runs as a task");
        if let Some((shard, rx)) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
            run_as_task(&main, shard, rx);
        }
    }
}

/// Runs a shard as a task of `runtime`, its spool writes on the blocking pool.
fn run_as_task(runtime: &tokio::runtime::Handle, shard: Shard, rx: mpsc::Receiver<Job>) {
    runtime.spawn(
        Shard {
            own_thread: false,
            ..shard
        }
        .run(rx),
    );
}

impl Shard {
    /// Hands `entries` to the combiner; the receiver gets the outcome of their commit.
    async fn hand_over(
        &self,
        entries: Vec<Entry>,
    ) -> Result<oneshot::Receiver<Result<(), String>>, String> {
        let (done, wait) = oneshot::channel();
        self.combine
            .send(Handover { entries, done })
            .await
            .map_err(|_| "accounting combiner stopped".to_string())?;
        Ok(wait)
    }

    /// Appends `entries` to the open segment (or a new one when it is full), durably; the
    /// error says why not.
    async fn journal(
        &self,
        segs: &mut std::collections::VecDeque<Segment>,
        next_gen: &mut u64,
        spare: &mut Option<Spare>,
        entries: Vec<Entry>,
    ) -> Result<(), String> {
        let buf = encode(&entries).map_err(|e| e.to_string())?;
        let len = buf.len() as u64;
        let open = segs.back().and_then(|s| {
            s.out
                .as_ref()
                .filter(|o| !s.sealed && o.at + len <= o.capacity)
                .map(|o| (o.file.clone(), o.at))
        });
        let n = entries.len();
        if let Some((file, at)) = open {
            let r = if self.own_thread {
                write_synced(&file, at, &buf)
            } else {
                tokio::task::spawn_blocking(move || write_synced(&file, at, &buf))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r)
            };
            if let Err(e) = r {
                let path = segs.back().map(|s| s.path.display().to_string());
                tracing::error!(error = %e, shard = self.index, spool = ?path, "cannot append to the accounting spool; records not acknowledged (the NAS retransmits)");
                return Err(e.to_string());
            }
            if let Some(s) = segs.back_mut() {
                s.entries.extend(entries);
                if let Some(o) = s.out.as_mut() {
                    o.at += len;
                }
            }
            // Past half of the open segment: make the next one now, off the path of the
            // acknowledgements, instead of when this one is full.
            if spare.is_none()
                && segs
                    .back()
                    .and_then(|s| s.out.as_ref())
                    .is_some_and(|o| o.at > o.capacity / 2)
            {
                *spare = Some(self.prepare_spare(next_gen));
            }
        } else {
            let (path, file, capacity) = self.open_segment(spare, next_gen, buf).await?;
            if let Some(s) = segs.back_mut() {
                s.sealed = true;
                s.out = None;
            }
            segs.push_back(Segment {
                path,
                entries,
                applied: 0,
                sealed: false,
                out: Some(SegmentFile {
                    file,
                    at: len,
                    capacity,
                }),
            });
        }
        self.count_spooled(n);
        Ok(())
    }

    /// Starts making the next segment (zero-filled, synced) on a blocking thread.
    fn prepare_spare(&self, next_gen: &mut u64) -> Spare {
        let path = segment_path(&self.spool, *next_gen);
        *next_gen += 1;
        tokio::task::spawn_blocking(move || match create_segment(&path, SEGMENT_BYTES) {
            Ok(f) => Ok((path, Arc::new(f))),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        })
    }

    /// A new segment holding `buf`, durably: the spare made ahead if there is one (a write of the
    /// data alone), else one made now (a write of [`SEGMENT_BYTES`] first).
    async fn open_segment(
        &self,
        spare: &mut Option<Spare>,
        next_gen: &mut u64,
        buf: Vec<u8>,
    ) -> Result<(PathBuf, Arc<std::fs::File>, u64), String> {
        let len = buf.len() as u64;
        let mut ready = None;
        if let Some(made) = spare.take() {
            match made.await.map_err(std::io::Error::other).and_then(|r| r) {
                Ok((path, file)) if len <= SEGMENT_BYTES => ready = Some((path, file)),
                // Too small for this batch, and a later generation must not come before it.
                Ok((path, _)) => {
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => {
                    tracing::warn!(error = %e, shard = self.index, "could not make the next accounting spool segment ahead; making it now");
                }
            }
        }
        let (path, made, capacity) = match ready {
            Some((path, file)) => (path, Some(file), SEGMENT_BYTES),
            None => {
                let path = segment_path(&self.spool, *next_gen);
                *next_gen += 1;
                (path, None, SEGMENT_BYTES.max(len))
            }
        };
        let p = path.clone();
        let r = tokio::task::spawn_blocking(move || {
            let f = match made {
                Some(f) => f,
                None => Arc::new(create_segment(&p, capacity)?),
            };
            write_synced(&f, 0, &buf)?;
            Ok::<_, std::io::Error>(f)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        match r {
            Ok(f) => Ok((path, f, capacity)),
            Err(e) => {
                tracing::error!(error = %e, shard = self.index, spool = %path.display(), "cannot write a new accounting spool segment; records not acknowledged (the NAS retransmits)");
                // Half made or half written: nothing acknowledged is in it.
                let _ = std::fs::remove_file(&path);
                Err(e.to_string())
            }
        }
    }

    /// Counts `n` entries as spooled (see [`AcctWriter::spooled`]).
    fn count_spooled(&self, n: usize) {
        if let Some(c) = self.spooled_total.get(self.index) {
            c.fetch_add(n as u64, Ordering::Release);
        }
    }

    /// Group commit of the shard's queue, through the spool whenever the store is busy or down.
    ///
    /// New jobs go straight to the store (acknowledged when it commits) when nothing of this
    /// shard is at the store or in the spool. Otherwise they are appended to the spool (fsync'd)
    /// and acknowledged at once, and reach the store after everything before them: while a batch
    /// commits, the next records cost a local fsync rather than wait for the commit, and the store
    /// takes them in large batches. While the store is down everything waits in the spool, and
    /// the oldest spooled entries are retried every second.
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        let shard = self.index;
        let mut segs: std::collections::VecDeque<Segment> = std::collections::VecDeque::new();
        let mut next_gen = 1;
        match spool_segments(&self.spool) {
            Ok((found, next)) => {
                next_gen = next;
                for (path, entries) in found {
                    if entries.is_empty() {
                        // A segment made ahead and never used (or one emptied by a torn
                        // write): nothing to replay, and a drain of nothing would never end it.
                        if let Err(e) = std::fs::remove_file(&path) {
                            tracing::warn!(error = %e, spool = %path.display(), "cannot delete an empty accounting spool segment");
                        }
                        continue;
                    }
                    self.count_spooled(entries.len());
                    segs.push_back(Segment {
                        path,
                        entries,
                        applied: 0,
                        sealed: true,
                        out: None,
                    });
                }
            }
            Err(e) => {
                tracing::error!(error = %e, shard, spool = %self.spool.display(), "cannot read the accounting spool; its records stay there until it can be read")
            }
        }
        let mut flight: Option<(Flight, oneshot::Receiver<Result<(), String>>)> = None;
        // The next segment, made ahead while the open one fills (see journal).
        let mut spare: Option<Spare> = None;
        // Whether the last commit succeeded; false while the store is down (then the oldest
        // spooled entries are retried at `retry_at`).
        let mut store_ok = true;
        let mut retry_at: Option<tokio::time::Instant> = None;
        // The next drain after a successful one (see DRAIN_PACE).
        let mut drain_at: Option<tokio::time::Instant> = None;
        loop {
            // Send the oldest spooled entries to the store when nothing of this shard is there.
            let now = tokio::time::Instant::now();
            let ahead: usize = segs.iter().map(|s| s.entries.len() - s.applied).sum();
            if flight.is_none()
                && !segs.is_empty()
                && retry_at.is_none_or(|t| t <= now)
                && (drain_at.is_none_or(|t| t <= now) || ahead >= DRAIN_MAX)
            {
                let mut batch = Vec::new();
                for s in segs.iter_mut() {
                    let room = DRAIN_MAX - batch.len();
                    let rest = s.entries.get(s.applied..).unwrap_or_default();
                    batch.extend(rest.iter().take(room).cloned());
                    if batch.len() >= DRAIN_MAX {
                        break;
                    }
                }
                let taken = batch.len();
                match self.hand_over(batch).await {
                    Ok(wait) => flight = Some((Flight::Drain { taken }, wait)),
                    Err(_) => return,
                }
            }
            // A drain just sent commits nothing yet: `ahead` still holds.
            let accept = !(store_ok && ahead >= AHEAD_MAX);
            let wake_at = match (retry_at, drain_at) {
                (Some(r), Some(d)) => Some(r.max(d)),
                (r, d) => r.or(d),
            };
            let wake = tokio::select! {
                j = rx.recv(), if accept => Wake::Jobs(j),
                r = async {
                    match flight.as_mut() {
                        Some((_, wait)) => wait.await.unwrap_or_else(|_| Err("accounting combiner stopped".into())),
                        None => std::future::pending().await,
                    }
                }, if flight.is_some() => Wake::Landed(r),
                _ = async {
                    match wake_at {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                }, if flight.is_none() && !segs.is_empty() && wake_at.is_some() => Wake::Retry,
            };
            match wake {
                Wake::Retry => {
                    let now = tokio::time::Instant::now();
                    retry_at = retry_at.filter(|t| *t > now);
                    drain_at = drain_at.filter(|t| *t > now);
                }
                Wake::Jobs(None) => return,
                Wake::Jobs(Some(first)) => {
                    let mut jobs = vec![first];
                    // Group commit: whatever queued while the last batch was being written goes
                    // together.
                    while jobs.len() < BATCH {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    // Taken off the queue: the combiner need not wait for these.
                    self.queued.fetch_sub(jobs.len() as u64, Ordering::AcqRel);
                    let all: Vec<Entry> = jobs.iter().map(|j| j.entry.clone()).collect();
                    if flight.is_none() && segs.is_empty() {
                        // Barriers are only acknowledged here: what was queued before them in
                        // this shard is durable once this batch is.
                        let records: Vec<Entry> = jobs
                            .iter()
                            .filter(|j| !j.barrier)
                            .map(|j| j.entry.clone())
                            .collect();
                        if records.is_empty() {
                            answer(jobs, &Ok(()));
                            continue;
                        }
                        match self.hand_over(records).await {
                            Ok(wait) => {
                                flight = Some((Flight::Direct { jobs, entries: all }, wait));
                            }
                            Err(_) => return,
                        }
                        continue;
                    }
                    // Behind a batch at the store or spooled entries: into the spool, after them.
                    // Barriers go too, so that the store applies them after the entries before
                    // them.
                    let result = self
                        .journal(&mut segs, &mut next_gen, &mut spare, all)
                        .await;
                    answer(
                        jobs,
                        &result.map_err(|spool| WriteError::NotDurable {
                            store: "store busy or unavailable".into(),
                            spool,
                        }),
                    );
                }
                Wake::Landed(r) => {
                    let Some((what, _)) = flight.take() else {
                        continue;
                    };
                    match (what, r) {
                        (Flight::Direct { jobs, .. }, Ok(())) => {
                            store_ok = true;
                            answer(jobs, &Ok(()));
                        }
                        (Flight::Direct { jobs, entries }, Err(e)) => {
                            // Older than anything spooled since it was sent: it goes to the front,
                            // in the shard's spool file, which is free (see spool_segments).
                            tracing::error!(error = %e, shard, spool = %self.spool.display(), "store write failed; accounting goes to the local spool until the store is back");
                            store_ok = false;
                            retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                            let n = entries.len();
                            let result = match append_blocking(self.spool.clone(), entries).await {
                                Ok(written) => {
                                    segs.push_front(Segment {
                                        path: self.spool.clone(),
                                        entries: written,
                                        applied: 0,
                                        sealed: true,
                                        out: None,
                                    });
                                    self.count_spooled(n);
                                    Ok(())
                                }
                                Err(se) => Err(WriteError::NotDurable {
                                    store: e,
                                    spool: se.to_string(),
                                }),
                            };
                            answer(jobs, &result);
                        }
                        (Flight::Drain { taken }, Ok(())) => {
                            if !store_ok {
                                tracing::info!(
                                    records = taken,
                                    shard,
                                    "accounting spool replaying into the store"
                                );
                            }
                            store_ok = true;
                            retry_at = None;
                            drain_at = Some(tokio::time::Instant::now() + DRAIN_PACE);
                            let mut left = taken;
                            while left > 0 {
                                let Some(s) = segs.front_mut() else {
                                    break;
                                };
                                let k = left.min(s.entries.len() - s.applied);
                                s.applied += k;
                                left -= k;
                                if s.applied < s.entries.len() {
                                    break;
                                }
                                // Fully committed. Not synced: a deletion lost in a crash only
                                // replays committed entries again.
                                if let Err(e) = std::fs::remove_file(&s.path)
                                    && e.kind() != std::io::ErrorKind::NotFound
                                {
                                    tracing::error!(error = %e, spool = %s.path.display(), "cannot delete a replayed accounting spool segment; it is replayed again (harmlessly) at the next start");
                                }
                                segs.pop_front();
                            }
                            if segs.is_empty() {
                                // Caught up: a spare made ahead is not needed (the next
                                // records go straight to the store); no file stays behind.
                                if let Some(made) = spare.take()
                                    && let Ok(Ok((path, _))) = made.await
                                {
                                    let _ = std::fs::remove_file(&path);
                                }
                                tracing::debug!(shard, "accounting spool empty");
                            }
                            self.applied.send_modify(|a| *a += taken as u64);
                        }
                        (Flight::Drain { .. }, Err(e)) => {
                            if store_ok {
                                tracing::error!(error = %e, shard, "store write failed; accounting stays in the local spool until the store is back");
                            } else {
                                tracing::debug!(error = %e, shard, "store still unavailable; accounting stays in the spool");
                            }
                            store_ok = false;
                            retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                        }
                    }
                }
            }
        }
    }
}

/// Per-tenant operation counts of a spool file (diagnostics).
pub fn spool_summary(path: &Path) -> std::io::Result<HashMap<TenantId, usize>> {
    let mut m = HashMap::new();
    for e in read_spool(path)? {
        *m.entry(e.tenant).or_insert(0) += 1;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AcctKind;

    fn record(tenant: TenantId, nas: NasId, k: usize) -> Entry {
        Entry {
            tenant,
            op: AcctOp::Record(AcctRecord {
                id: crate::ids::SessionId::new(),
                kind: AcctKind::Start,
                nas,
                subscriber: None,
                username: "u".into(),
                acct_session_id: format!("R{k}"),
                framed_ip: None,
                calling_station_id: None,
                nas_port_id: None,
                session_time_s: 0,
                input_octets: 0,
                output_octets: 0,
                terminate_cause: None,
                at: Utc::now(),
            }),
        }
    }

    /// A zero-filled segment keeps its size as entries are written into it, and reads back as
    /// exactly what was written, in order (the zeros after it are skipped like a torn line).
    #[test]
    fn preallocated_segment_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl.1");
        let (t, nas) = (TenantId::new(), NasId::new());
        let f = create_segment(&path, 64 * 1024).unwrap();
        let a = encode(&[record(t, nas, 1), record(t, nas, 2)]).unwrap();
        let b = encode(&[record(t, nas, 3)]).unwrap();
        write_synced(&f, 0, &a).unwrap();
        write_synced(&f, a.len() as u64, &b).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 64 * 1024);
        let ids: Vec<String> = read_spool(&path)
            .unwrap()
            .iter()
            .map(|e| match &e.op {
                AcctOp::Record(r) => r.acct_session_id.clone(),
                AcctOp::CloseNas { .. } => "close".into(),
            })
            .collect();
        assert_eq!(ids, ["R1", "R2", "R3"]);
        // A torn write (half a line) before the zeros is skipped too.
        write_synced(&f, (a.len() + b.len()) as u64, &a[..a.len() / 3]).unwrap();
        assert_eq!(read_spool(&path).unwrap().len(), 3);
        // Never over an existing file.
        assert!(create_segment(&path, 1024).is_err());
    }

    /// A shard's spool files are read oldest first: its spool file, then the numbered segments
    /// in generation order (10 after 9, not after 1); new segments continue the numbering.
    #[test]
    fn spool_segments_are_read_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("accounting-spool-2.jsonl");
        let (t, nas) = (TenantId::new(), NasId::new());
        assert_eq!(spool_segments(&spool).unwrap().1, 1);
        append(&segment_path(&spool, 10), &[record(t, nas, 10)]).unwrap();
        append(&segment_path(&spool, 9), &[record(t, nas, 9)]).unwrap();
        append(&spool, &[record(t, nas, 0)]).unwrap();
        // Another shard's files and strays are not this shard's.
        append(
            &dir.path().join("accounting-spool-3.jsonl.1"),
            &[record(t, nas, 99)],
        )
        .unwrap();
        std::fs::write(dir.path().join("accounting-spool-2.jsonl.tmp"), "x").unwrap();
        let (segs, next) = spool_segments(&spool).unwrap();
        assert_eq!(next, 11);
        let order: Vec<String> = segs
            .iter()
            .flat_map(|(_, es)| es.iter())
            .map(|e| match &e.op {
                AcctOp::Record(r) => r.acct_session_id.clone(),
                AcctOp::CloseNas { .. } => "close".into(),
            })
            .collect();
        assert_eq!(order, ["R0", "R9", "R10"]);
    }

    /// A spool of another layout (the last shard of the earlier four): every record ends in
    /// its session's shard spool, in order, none lost; a CloseNas follows the records that
    /// preceded it into every spool; a spool of no shard now is removed.
    #[test]
    fn earlier_layout_spool_moves_to_the_owning_shards() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..SHARDS.max(EARLIER_SHARDS))
            .map(|i| shard_spool_path(&dir.path().join("accounting-spool.jsonl"), i))
            .collect();
        let (t, nas) = (TenantId::new(), NasId::new());
        let mut legacy: Vec<Entry> = (0..40).map(|k| record(t, nas, k)).collect();
        let close = Entry {
            tenant: t,
            op: AcctOp::CloseNas {
                nas,
                at: Utc::now(),
                cause: "NAS-Reboot".into(),
            },
        };
        legacy.push(close.clone());
        legacy.extend((40..50).map(|k| record(t, nas, k)));
        let last = paths.len() - 1;
        append(&paths[last], &legacy).unwrap();

        let moved = rehome_spools(&paths).unwrap();
        assert!(moved > 0);
        let mut seen = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            if i >= SHARDS {
                assert!(!p.exists(), "spool {i} of no shard left behind");
                continue;
            }
            let entries = read_spool(p).unwrap();
            let mut closed = false;
            for e in &entries {
                match &e.op {
                    AcctOp::Record(r) => {
                        assert_eq!(home(e), i, "{} in shard {i}", r.acct_session_id);
                        let k: usize = r.acct_session_id[1..].parse().unwrap();
                        // Before the CloseNas exactly when it was before it in the old spool.
                        assert_eq!(k >= 40, closed, "{k} in shard {i}");
                        seen.push(k);
                    }
                    AcctOp::CloseNas { .. } => closed = true,
                }
            }
            let before = entries
                .iter()
                .any(|e| matches!(&e.op, AcctOp::Record(r) if r.acct_session_id[1..].parse::<usize>().unwrap() < 40));
            assert_eq!(closed, before, "shard {i}: CloseNas copy");
            // Order within a shard is the old order.
            let ks: Vec<usize> = entries
                .iter()
                .filter_map(|e| match &e.op {
                    AcctOp::Record(r) => r.acct_session_id[1..].parse().ok(),
                    AcctOp::CloseNas { .. } => None,
                })
                .collect();
            assert!(ks.windows(2).all(|w| w[0] < w[1]), "shard {i}: {ks:?}");
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        // Already in place: a second pass moves nothing.
        assert_eq!(rehome_spools(&paths).unwrap(), 0);
    }
}
