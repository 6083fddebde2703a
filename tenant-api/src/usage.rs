//! Usage per subscriber by day or month: sessions are counted in the bucket (in the tenant's
//! timezone) where they started, with their absolute counters (usage is a sum over sessions).

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Bucket size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// One bucket per day.
    Daily,
    /// One bucket per calendar month.
    Monthly,
}

/// One bucket of usage.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Bucket {
    /// The day (`YYYY-MM-DD`) or month (`YYYY-MM`) in the tenant's timezone.
    pub label: String,
    /// Start of the bucket.
    pub from: DateTime<Utc>,
    /// End of the bucket (exclusive).
    pub to: DateTime<Utc>,
    /// Octets in of the sessions that started in it.
    pub input_octets: i64,
    /// Octets out.
    pub output_octets: i64,
    /// Sessions that started in it.
    pub sessions: i64,
}

fn midnight(tz: Tz, d: NaiveDate) -> DateTime<Utc> {
    let naive = d.and_hms_opt(0, 0, 0).unwrap_or_default();
    // A midnight skipped by a DST change starts the day at the first valid instant.
    tz.from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(naive + Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&naive))
}

fn first_of_month(y: i32, m: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or_default()
}

fn add_months(d: NaiveDate, n: i32) -> NaiveDate {
    let total = d.year() * 12 + d.month0() as i32 + n;
    first_of_month(total.div_euclid(12), total.rem_euclid(12) as u32 + 1)
}

/// An empty bucket: (from, to, label).
pub type Span = (DateTime<Utc>, DateTime<Utc>, String);

/// The empty buckets ending with the one holding `now`, oldest first.
pub fn buckets(
    period: Period,
    count: Option<u32>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Vec<Span>, String> {
    let today = now.with_timezone(&tz).date_naive();
    match period {
        Period::Daily => {
            let n = count.unwrap_or(30);
            if !(1..=366).contains(&n) {
                return Err("count must be between 1 and 366 for daily usage".into());
            }
            Ok((0..n)
                .rev()
                .map(|back| {
                    let d = today - Duration::days(i64::from(back));
                    let next = d + Duration::days(1);
                    (
                        midnight(tz, d),
                        midnight(tz, next),
                        d.format("%Y-%m-%d").to_string(),
                    )
                })
                .collect())
        }
        Period::Monthly => {
            let n = count.unwrap_or(12);
            if !(1..=36).contains(&n) {
                return Err("count must be between 1 and 36 for monthly usage".into());
            }
            let this = first_of_month(today.year(), today.month());
            Ok((0..n)
                .rev()
                .map(|back| {
                    let d = add_months(this, -(back as i32));
                    let next = add_months(d, 1);
                    (
                        midnight(tz, d),
                        midnight(tz, next),
                        d.format("%Y-%m").to_string(),
                    )
                })
                .collect())
        }
    }
}

/// Sums session rows (start, in, out) into the buckets.
pub fn fill(
    buckets: &[Span],
    rows: &[(DateTime<Utc>, i64, i64)],
    _tz: Tz,
    _period: Period,
) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = buckets
        .iter()
        .map(|(from, to, label)| Bucket {
            label: label.clone(),
            from: *from,
            to: *to,
            input_octets: 0,
            output_octets: 0,
            sessions: 0,
        })
        .collect();
    for (at, i, o) in rows {
        if let Some(b) = out.iter_mut().find(|b| b.from <= *at && *at < b.to) {
            b.input_octets = b.input_octets.saturating_add(*i);
            b.output_octets = b.output_octets.saturating_add(*o);
            b.sessions += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_buckets_are_cut_in_the_tenant_timezone() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 20, 0, 0).unwrap();
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let b = buckets(Period::Daily, Some(2), tz, now).unwrap();
        // 20:00 UTC is already the 26th in Kolkata.
        assert_eq!(b[1].2, "2026-11-26");
        assert_eq!(b[1].0.to_rfc3339(), "2026-11-25T18:30:00+00:00");
        let rows = [(
            Utc.with_ymd_and_hms(2026, 11, 25, 19, 0, 0).unwrap(),
            10,
            20,
        )];
        let f = fill(&b, &rows, tz, Period::Daily);
        assert_eq!(
            (f[0].sessions, f[1].sessions, f[1].input_octets),
            (0, 1, 10)
        );
        assert!(buckets(Period::Daily, Some(0), tz, now).is_err());
    }

    #[test]
    fn monthly_buckets_cross_the_year() {
        let now = Utc.with_ymd_and_hms(2026, 2, 3, 0, 0, 0).unwrap();
        let b = buckets(Period::Monthly, Some(3), chrono_tz::UTC, now).unwrap();
        let labels: Vec<&str> = b.iter().map(|x| x.2.as_str()).collect();
        assert_eq!(labels, ["2025-12", "2026-01", "2026-02"]);
        assert_eq!(b[0].1, b[1].0);
    }
}
