//! Per-IP rate limits and the lockout ladder for login and signup: a tower layer (axum
//! middleware) counting in the cache layer, so every API node shares the counts with Redis.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::host::ClientIp;
use crate::problem::Problem;

/// Limits of the guarded endpoints.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Switch (benchmarks turn it off).
    pub enabled: bool,
    /// Requests per minute per client address on one guarded bucket.
    pub per_ip_per_minute: i64,
    /// Failed attempts (401) → lockout duration; the highest reached step applies to every
    /// further failure.
    pub ladder: Vec<(i64, Duration)>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            enabled: true,
            per_ip_per_minute: 30,
            ladder: vec![
                (5, Duration::from_secs(60)),
                (10, Duration::from_secs(5 * 60)),
                (15, Duration::from_secs(15 * 60)),
                (20, Duration::from_secs(60 * 60)),
            ],
        }
    }
}

impl Limits {
    /// The lockout after `failures` failed attempts, if any.
    pub fn lockout(&self, failures: i64) -> Option<Duration> {
        self.ladder
            .iter()
            .rev()
            .find(|(n, _)| failures >= *n)
            .map(|(_, d)| *d)
    }
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The middleware: `from_fn_with_state((state, "login"), guard)`.
pub async fn guard(
    State((s, bucket)): State<(AppState, &'static str)>,
    req: Request,
    next: Next,
) -> Response {
    let limits = &s.config().limits;
    if !limits.enabled {
        return next.run(req).await;
    }
    let Some(ClientIp(ip)) = req.extensions().get::<ClientIp>().copied() else {
        return next.run(req).await;
    };
    let cache = s.cache();
    let lock_key = format!("pp:lock:{bucket}:{ip}");
    let fail_key = format!("pp:fail:{bucket}:{ip}");
    let rate_key = format!("pp:rl:{bucket}:{ip}");
    // A cache outage must not lock everybody out: log it and let the request through.
    match cache.get(&lock_key).await {
        Ok(Some(v)) => {
            let until: i64 = std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let left = until - now_s();
            if left > 0 {
                return Problem::too_many(
                    format!("too many failed attempts from your address; try again in {left} s"),
                    left as u64,
                )
                .into_response();
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "rate limit cache unavailable"),
    }
    match cache.incr(&rate_key, Duration::from_secs(60)).await {
        Ok(n) if n > limits.per_ip_per_minute => {
            return Problem::too_many(
                format!(
                    "more than {} requests a minute from your address; slow down",
                    limits.per_ip_per_minute
                ),
                60,
            )
            .into_response();
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "rate limit cache unavailable"),
    }
    let resp = next.run(req).await;
    let status = resp.status();
    if status == axum::http::StatusCode::UNAUTHORIZED {
        if let Ok(n) = cache.incr(&fail_key, Duration::from_secs(24 * 3600)).await
            && let Some(d) = limits.lockout(n)
        {
            tracing::info!(%ip, bucket, failures = n, lock_s = d.as_secs(), "lockout");
            let until = now_s() + d.as_secs() as i64;
            if let Err(e) = cache.set(&lock_key, until.to_string().as_bytes(), d).await {
                tracing::warn!(error = %e, "cannot record lockout");
            }
        }
    } else if status.is_success() {
        let _ = cache.delete(&fail_key).await;
    }
    resp
}

/// Per-account lockout (beside the per-IP one of [`guard`]): failed logins of one account from
/// any number of addresses climb the same ladder. `key` names the account (tenant and e-mail, or
/// the operator's e-mail). Returns the 429 to answer while the account is locked.
pub async fn account_locked(s: &AppState, key: &str) -> Option<Problem> {
    if !s.config().limits.enabled {
        return None;
    }
    match s.cache().get(&format!("pp:lock:acct:{key}")).await {
        Ok(Some(v)) => {
            let until: i64 = std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let left = until - now_s();
            (left > 0).then(|| {
                Problem::too_many(
                    format!("too many failed sign-ins for this account; try again in {left} s"),
                    left as u64,
                )
            })
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "rate limit cache unavailable");
            None
        }
    }
}

/// Counts a failed login of an account; locks it when the ladder says so.
pub async fn account_failed(s: &AppState, key: &str) {
    let limits = &s.config().limits;
    if !limits.enabled {
        return;
    }
    let cache = s.cache();
    if let Ok(n) = cache
        .incr(
            &format!("pp:fail:acct:{key}"),
            Duration::from_secs(24 * 3600),
        )
        .await
        && let Some(d) = limits.lockout(n)
    {
        tracing::info!(failures = n, lock_s = d.as_secs(), "account lockout");
        let until = now_s() + d.as_secs() as i64;
        if let Err(e) = cache
            .set(
                &format!("pp:lock:acct:{key}"),
                until.to_string().as_bytes(),
                d,
            )
            .await
        {
            tracing::warn!(error = %e, "cannot record lockout");
        }
    }
}

/// Forgets an account's failed logins after a successful one.
pub async fn account_succeeded(s: &AppState, key: &str) {
    if s.config().limits.enabled {
        let _ = s.cache().delete(&format!("pp:fail:acct:{key}")).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_steps_up() {
        let l = Limits::default();
        assert_eq!(l.lockout(4), None);
        assert_eq!(l.lockout(5), Some(Duration::from_secs(60)));
        assert_eq!(l.lockout(12), Some(Duration::from_secs(300)));
        assert_eq!(l.lockout(99), Some(Duration::from_secs(3600)));
    }
}
