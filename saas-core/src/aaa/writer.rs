//! Durable accounting: group commit to the store, or — when the store is down — an fsync'd
//! local spool that is replayed in order once the store is back. A record is acknowledged (and
//! the NAS gets its Accounting-Response) only after one of the two has it on disk.
//!
//! Replay is exactly-once because applying a record is idempotent: a session row takes the id
//! of the record that opened it, counters only move up, and Accounting-On/Off only closes sessions
//! that started before it.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::ids::{NasId, TenantId};
use crate::model::AcctRecord;
use crate::store::{Store, StoreError};

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
#[derive(Debug, thiserror::Error)]
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
    done: oneshot::Sender<Result<(), WriteError>>,
}

/// Handle to the writer task.
#[derive(Clone)]
pub struct AcctWriter {
    tx: mpsc::Sender<Job>,
    spooled: Arc<AtomicU64>,
}

impl std::fmt::Debug for AcctWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcctWriter")
            .field("spooled", &self.spooled.load(Ordering::Relaxed))
            .finish()
    }
}

/// Most operations committed in one transaction.
const BATCH: usize = 512;

impl AcctWriter {
    /// Starts the writer; the spool lives at `spool` (created on demand). A spool left by a
    /// previous run is replayed first.
    pub fn start(store: Store, spool: PathBuf) -> Self {
        let (tx, rx) = mpsc::channel(8192);
        let spooled = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(store, spool, rx, spooled.clone()));
        Self { tx, spooled }
    }

    /// Makes `op` durable; returns once it is committed or spooled.
    pub async fn submit(&self, tenant: TenantId, op: AcctOp) -> Result<(), WriteError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job {
                entry: Entry { tenant, op },
                done,
            })
            .await
            .map_err(|_| WriteError::Stopped)?;
        wait.await.map_err(|_| WriteError::Stopped)?
    }

    /// Operations currently waiting in the spool.
    pub fn spooled(&self) -> u64 {
        self.spooled.load(Ordering::Relaxed)
    }
}

async fn apply(store: &Store, entries: &[Entry]) -> Result<(), StoreError> {
    // Consecutive records of one tenant go in one transaction; order is kept.
    let mut i = 0;
    while i < entries.len() {
        let tenant = entries[i].tenant;
        match &entries[i].op {
            AcctOp::CloseNas { nas, at, cause } => {
                store
                    .tenant(tenant)
                    .close_nas_sessions(*nas, *at, cause)
                    .await?;
                i += 1;
            }
            AcctOp::Record(_) => {
                let mut recs = Vec::new();
                while i < entries.len() && entries[i].tenant == tenant {
                    let AcctOp::Record(r) = &entries[i].op else {
                        break;
                    };
                    recs.push(r.clone());
                    i += 1;
                }
                store.tenant(tenant).record_accounting(&recs).await?;
            }
        }
    }
    Ok(())
}

fn append(path: &Path, entries: &[Entry]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut buf = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut buf, e).map_err(std::io::Error::other)?;
        buf.push(b'\n');
    }
    f.write_all(&buf)?;
    f.sync_data()
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

/// Replays the whole spool; on success removes it.
async fn replay(store: &Store, path: &Path) -> Result<usize, String> {
    let entries = read_spool(path).map_err(|e| e.to_string())?;
    for chunk in entries.chunks(BATCH) {
        apply(store, chunk).await.map_err(|e| e.to_string())?;
    }
    std::fs::remove_file(path)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(entries.len())
}

async fn run(store: Store, spool: PathBuf, mut rx: mpsc::Receiver<Job>, spooled: Arc<AtomicU64>) {
    let mut spooling = spool.exists();
    if spooling {
        spooled.store(
            read_spool(&spool).map(|v| v.len() as u64).unwrap_or(0),
            Ordering::Relaxed,
        );
    }
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    loop {
        let first = tokio::select! {
            j = rx.recv() => match j {
                Some(j) => Some(j),
                None => return,
            },
            _ = retry.tick(), if spooling => None,
        };
        let mut jobs: Vec<Job> = first.into_iter().collect();
        // Group commit: whatever queued while the last batch was being written goes together.
        while jobs.len() < BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if spooling {
            match replay(&store, &spool).await {
                Ok(n) => {
                    tracing::info!(records = n, "accounting spool replayed into the store");
                    spooling = false;
                    spooled.store(0, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "store still unavailable; accounting stays in the spool")
                }
            }
        }
        if jobs.is_empty() {
            continue;
        }
        let entries: Vec<Entry> = jobs.iter().map(|j| j.entry.clone()).collect();
        let result = if spooling {
            // Keep order: nothing reaches the store before what is already spooled.
            spool_or_fail(
                &spool,
                &entries,
                &spooled,
                "store unavailable (spool not yet replayed)".into(),
            )
        } else {
            match apply(&store, &entries).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::error!(error = %e, spool = %spool.display(), "store write failed; accounting goes to the local spool until the store is back");
                    let r = spool_or_fail(&spool, &entries, &spooled, e.to_string());
                    spooling = r.is_ok();
                    r
                }
            }
        };
        for j in jobs {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(WriteError::NotDurable { store, spool }) => Err(WriteError::NotDurable {
                    store: store.clone(),
                    spool: spool.clone(),
                }),
                Err(WriteError::Stopped) => Err(WriteError::Stopped),
            };
            let _ = j.done.send(r);
        }
    }
}

fn spool_or_fail(
    path: &Path,
    entries: &[Entry],
    spooled: &AtomicU64,
    store_err: String,
) -> Result<(), WriteError> {
    match append(path, entries) {
        Ok(()) => {
            spooled.fetch_add(entries.len() as u64, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(WriteError::NotDurable {
            store: store_err,
            spool: e.to_string(),
        }),
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
