//! QuotaSync (DESIGN §3): between RADIUS interims, read each open session's byte counters from
//! the router (the dynamic `<pppoe-USER>` interface) and store them as the session's absolute
//! counters when they are higher than what accounting stored — never an increment, so a later
//! Interim or Stop with the same or lower totals changes nothing and usage is never counted
//! twice. A session whose subscriber crosses the plan quota gets the plan's action: a CoA with
//! the FUP rate, or a Disconnect (with the API kick when the CoA fails).

use std::time::Duration;

use super::RosError;
use crate::aaa::coa::{CoaClient, CoaResult};
use crate::bus::{Bus, kinds};
use crate::model::{Nas, QuotaAction, Session};
use crate::store::TenantScope;
use crate::transport::NasTransport;

/// What one sync of one NAS did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncReport {
    /// Open sessions of this NAS in the store.
    pub sessions: usize,
    /// Sessions whose counters rose.
    pub raised: usize,
    /// Subscribers whose usage rose (their session-ledger entries are stale until re-seeded).
    pub raised_users: Vec<String>,
    /// Sessions the router no longer has (left to accounting and the stale sweeper).
    pub missing: usize,
    /// Quota crossings and what was done: (username, action, result).
    pub crossed: Vec<(String, String, CoaResult)>,
}

/// Reads the router's counters for every open session of `nas`, raises the stored counters,
/// and applies the plan action to subscribers whose usage crossed their quota in this step.
///
/// # Errors
/// As [`super::connect_nas`] and the commands; store failures.
pub async fn sync_nas(
    transport: &dyn NasTransport,
    scope: &TenantScope,
    nas: &Nas,
    coa: &CoaClient,
    timeout: Duration,
) -> Result<SyncReport, RosError> {
    let open: Vec<Session> = scope
        .sessions(true, 1000)
        .await?
        .into_iter()
        .filter(|s| s.nas == nas.id)
        .collect();
    let mut report = SyncReport {
        sessions: open.len(),
        ..SyncReport::default()
    };
    if open.is_empty() {
        return Ok(report);
    }
    let (client, _) = super::connect_nas(transport, scope, nas, timeout).await?;
    let active = client.ppp_active().await?;
    let interfaces = client.interfaces().await?;
    for s in &open {
        let Some(row) = super::find_active(&active, s) else {
            report.missing += 1;
            continue;
        };
        let Some(iface) = interfaces
            .iter()
            .find(|i| i.ppp_user() == Some(row.name.as_str()))
        else {
            report.missing += 1;
            continue;
        };
        // rx on the router's PPPoE interface is what the subscriber sent: Acct-Input-Octets.
        let input = i64::try_from(iface.rx_bytes).unwrap_or(i64::MAX);
        let output = i64::try_from(iface.tx_bytes).unwrap_or(i64::MAX);
        if input <= s.input_octets && output <= s.output_octets {
            continue;
        }
        let Some(sub) = scope.subscriber_by_username(&s.username).await? else {
            scope
                .raise_session_counters(nas.id, &s.acct_session_id, input, output)
                .await?;
            report.raised += 1;
            report.raised_users.push(s.username.clone());
            continue;
        };
        let (bi, bo) = scope.usage_since(&s.username, sub.usage_reset_at).await?;
        if !scope
            .raise_session_counters(nas.id, &s.acct_session_id, input, output)
            .await?
        {
            continue;
        }
        report.raised += 1;
        report.raised_users.push(s.username.clone());
        let (ai, ao) = scope.usage_since(&s.username, sub.usage_reset_at).await?;
        let Some(plan) = (match sub.plan_id {
            Some(p) => scope.plan(p).await?,
            None => None,
        }) else {
            continue;
        };
        let Some(quota) = plan.quota_bytes else {
            continue;
        };
        let (before, after) = (bi.saturating_add(bo), ai.saturating_add(ao));
        if before >= quota || after < quota {
            continue;
        }
        let secret = scope.nas_secret(nas.id).await?;
        let (action, result) = match plan.quota_action {
            QuotaAction::Fup => {
                let rate = crate::aaa::mikrotik_rate(&plan, true);
                (
                    "fup",
                    coa.change_rate(scope.tenant_id(), nas, &secret, s, &rate)
                        .await,
                )
            }
            QuotaAction::Reject => {
                let r = coa.disconnect(scope.tenant_id(), nas, &secret, s).await;
                let r = if r.acked() {
                    r
                } else {
                    match super::kick_session(transport, scope, nas, s, timeout).await {
                        Ok(Some(id)) => CoaResult {
                            outcome: "api-kick".into(),
                            error_cause: r.error_cause,
                            detail: format!("Disconnect {}; removed /ppp/active {id}", r.outcome),
                        },
                        _ => r,
                    }
                };
                ("disconnect", r)
            }
        };
        tracing::info!(nas = %nas.id, action, outcome = %result.outcome, "quota crossed (QuotaSync)");
        let details = serde_json::json!({
            "acct_session_id": s.acct_session_id, "action": action, "outcome": result.outcome,
            "quota": quota, "usage": after,
        })
        .to_string();
        if let Err(e) = scope
            .audit("system", "session.quota", Some(&s.username), Some(&details))
            .await
        {
            tracing::warn!(error = %e, "could not audit a quota crossing");
        }
        report
            .crossed
            .push((s.username.clone(), action.into(), result));
    }
    Ok(report)
}

/// Syncs one NAS and publishes `session.usage` for the subscribers whose counters rose, so every
/// AAA node re-seeds their session ledger and quota checks see the router's reading at once.
pub(super) async fn sync_and_publish(
    transport: &dyn NasTransport,
    scope: &TenantScope,
    bus: &Bus,
    nas: &Nas,
    coa: &CoaClient,
    timeout: Duration,
) -> Result<SyncReport, RosError> {
    let r = sync_nas(transport, scope, nas, coa, timeout).await?;
    if !r.raised_users.is_empty() {
        let payload = serde_json::json!({ "usernames": r.raised_users }).to_string();
        if let Err(e) = bus
            .publish(Some(scope.tenant_id()), kinds::SESSION_USAGE, &payload)
            .await
        {
            tracing::warn!(error = %e, "could not publish session.usage");
        }
    }
    Ok(r)
}
