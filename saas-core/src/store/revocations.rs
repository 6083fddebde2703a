//! Access-token revocations held in memory, so the check on every request costs no database
//! round trip. The store stays the truth (a restart or another node reads it): the set here is
//! reloaded from it when older than [`FRESH`], and a revocation made through this node is added
//! at once. So a token revoked here is refused here immediately, and on other nodes within
//! [`FRESH`].

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// How long a loaded set is trusted before the store is read again.
pub(super) const FRESH: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Set {
    /// jti → when the token expires anyway (then the entry can go).
    jtis: HashMap<String, DateTime<Utc>>,
    loaded: Option<Instant>,
}

/// The in-memory revocation set of one store handle.
#[derive(Default)]
pub(super) struct Revocations {
    set: RwLock<Set>,
    /// One reload at a time; the others wait for it instead of querying too.
    reload: tokio::sync::Mutex<()>,
}

impl Revocations {
    /// Whether the set was loaded within [`FRESH`].
    pub(super) fn fresh(&self) -> bool {
        self.read(|s| s.loaded.is_some_and(|t| t.elapsed() < FRESH))
    }

    /// The reload guard; check [`Self::fresh`] again once it is held.
    pub(super) async fn reloading(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.reload.lock().await
    }

    /// Merges what the store holds. Revocations are never undone, so the union is right even
    /// when a revocation of this node committed after the store was read.
    pub(super) fn merge_loaded(&self, rows: Vec<(String, DateTime<Utc>)>, now: DateTime<Utc>) {
        let mut s = self.set.write().unwrap_or_else(|e| e.into_inner());
        s.jtis.retain(|_, exp| *exp > now);
        s.jtis.extend(rows);
        s.loaded = Some(Instant::now());
    }

    /// Adds a revocation made through this node.
    pub(super) fn add(&self, jti: &str, expires: DateTime<Utc>) {
        let mut s = self.set.write().unwrap_or_else(|e| e.into_inner());
        s.jtis.insert(jti.to_owned(), expires);
    }

    /// Whether `jti` is in the set.
    pub(super) fn contains(&self, jti: &str) -> bool {
        self.read(|s| s.jtis.contains_key(jti))
    }

    fn read<T>(&self, f: impl FnOnce(&Set) -> T) -> T {
        f(&self.set.read().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_local_additions_and_drops_expired() {
        let r = Revocations::default();
        let now = Utc::now();
        assert!(!r.fresh());
        r.add("local", now + chrono::Duration::minutes(5));
        r.add("old", now - chrono::Duration::minutes(1));
        r.merge_loaded(
            vec![("stored".into(), now + chrono::Duration::minutes(5))],
            now,
        );
        assert!(r.fresh());
        assert!(
            r.contains("local"),
            "a revocation committed after the read stays"
        );
        assert!(r.contains("stored"));
        assert!(
            !r.contains("old"),
            "expired tokens are refused by their expiry anyway"
        );
        assert!(!r.contains("other"));
    }
}
