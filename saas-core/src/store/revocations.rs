//! Access-token revocations held in memory, so the check on every request costs no database
//! round trip: single tokens by `jti`, and every token of a user issued before a cutoff (the user
//! was disabled, deleted, or had its role or password changed). The store stays the truth (a restart or another node reads it): the set here is
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
    /// subject → (tokens issued before this are refused, when the entry can go).
    cutoffs: HashMap<uuid::Uuid, Cutoff>,
    loaded: Option<Instant>,
}

/// Every token of a subject issued before `not_before` is refused, until `expires`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cutoff {
    /// Tokens issued before this instant are refused.
    pub not_before: DateTime<Utc>,
    /// After this no such token can be live any more.
    pub expires: DateTime<Utc>,
}

impl Cutoff {
    /// A cutoff at this instant, kept far longer than any access token lives (15 minutes; the
    /// rows are few, so a day costs nothing).
    pub(crate) fn now() -> Self {
        let now = super::now();
        Self {
            not_before: now,
            expires: now + chrono::Duration::hours(24),
        }
    }
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
    pub(super) fn merge_loaded(
        &self,
        rows: Vec<(String, DateTime<Utc>)>,
        cutoffs: Vec<(uuid::Uuid, Cutoff)>,
        now: DateTime<Utc>,
    ) {
        let mut s = self.set.write().unwrap_or_else(|e| e.into_inner());
        s.jtis.retain(|_, exp| *exp > now);
        s.jtis.extend(rows);
        s.cutoffs.retain(|_, c| c.expires > now);
        for (sub, c) in cutoffs {
            s.add_cutoff(sub, c);
        }
        s.loaded = Some(Instant::now());
    }

    /// Adds a cutoff made through this node.
    pub(super) fn cut(&self, sub: uuid::Uuid, c: Cutoff) {
        self.set
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add_cutoff(sub, c);
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

    /// Whether a token of `sub` issued at `issued` falls before that subject's cutoff.
    pub(super) fn cut_off(&self, sub: uuid::Uuid, issued: DateTime<Utc>) -> bool {
        self.read(|s| s.cutoffs.get(&sub).is_some_and(|c| issued < c.not_before))
    }

    fn read<T>(&self, f: impl FnOnce(&Set) -> T) -> T {
        f(&self.set.read().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Set {
    /// The later cutoff wins (two changes, or a reload racing a local change).
    fn add_cutoff(&mut self, sub: uuid::Uuid, c: Cutoff) {
        let e = self.cutoffs.entry(sub).or_insert(c);
        if c.not_before > e.not_before {
            e.not_before = c.not_before;
        }
        if c.expires > e.expires {
            e.expires = c.expires;
        }
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
            vec![],
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

    #[test]
    fn a_cutoff_refuses_older_tokens_of_its_subject_only() {
        let r = Revocations::default();
        let now = Utc::now();
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let c = |nb, exp| Cutoff {
            not_before: nb,
            expires: exp,
        };
        r.cut(a, c(now, now + chrono::Duration::hours(1)));
        let ms = chrono::Duration::milliseconds(1);
        assert!(r.cut_off(a, now - ms));
        assert!(!r.cut_off(a, now), "issued at or after the cutoff");
        assert!(!r.cut_off(b, now - ms), "another subject");
        // A reload holding an older cutoff does not move it back; an expired one goes.
        r.merge_loaded(
            vec![],
            vec![(a, c(now - chrono::Duration::minutes(5), now + ms))],
            now,
        );
        assert!(r.cut_off(a, now - ms));
        r.merge_loaded(vec![], vec![], now + chrono::Duration::hours(2));
        assert!(!r.cut_off(a, now - ms));
    }
}
