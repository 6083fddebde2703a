//! Server-rendered SVG charts (no script, no external library; the CSP allows them since
//! they are markup, not inline script or style). Only numbers and times go into the markup.

use chrono::{DateTime, Duration, Utc};
use saas_core::model::Session;

const W: f64 = 600.0;
const H: f64 = 200.0;
const LEFT: f64 = 36.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 10.0;

fn hour_label(t: DateTime<Utc>, tz: &str) -> String {
    match tz.parse::<chrono_tz::Tz>() {
        Ok(z) => t.with_timezone(&z).format("%H:%M").to_string(),
        Err(_) => t.format("%H:%M").to_string(),
    }
}

fn frame(max: f64, labels: &[(f64, String)], title: &str, body: &str) -> String {
    let mut s = format!(
        r#"<svg viewBox="0 0 {W} {H}" role="img" aria-label="{title}" xmlns="http://www.w3.org/2000/svg">"#
    );
    let plot_h = H - BOTTOM - TOP;
    for i in 0..=4 {
        let y = TOP + plot_h * f64::from(i) / 4.0;
        let v = max * f64::from(4 - i) / 4.0;
        s.push_str(&format!(
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{W}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 4.0,
            y + 3.0,
            fmt_num(v)
        ));
    }
    for (x, l) in labels {
        s.push_str(&format!(
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{l}</text>"#,
            H - 5.0
        ));
    }
    s.push_str(body);
    s.push_str(&format!(
        r#"<line class="axis" x1="{LEFT}" y1="{:.1}" x2="{W}" y2="{:.1}"/></svg>"#,
        H - BOTTOM,
        H - BOTTOM
    ));
    s
}

fn fmt_num(v: f64) -> String {
    if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A bar's value for its tooltip: whole numbers as such, others with one decimal.
fn fmt_val(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn nice_max(m: f64) -> f64 {
    if m <= 4.0 {
        return 4.0;
    }
    let p = 10f64.powf(m.log10().floor());
    for k in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if k * p >= m {
            return k * p;
        }
    }
    m
}

/// The dashboard's two charts: online sessions sampled every hour over 24 h (line) and
/// accepts/rejects per hour (stacked bars).
pub fn day_charts(
    sessions: &[Session],
    auths: &[(DateTime<Utc>, String)],
    now: DateTime<Utc>,
    tz: &str,
) -> (String, String) {
    let plot_w = W - LEFT;
    let plot_h = H - BOTTOM - TOP;
    let start = now - Duration::hours(24);
    // Online at each hour mark.
    let counts: Vec<f64> = (0..=24)
        .map(|h| {
            let t = start + Duration::hours(h);
            sessions
                .iter()
                .filter(|s| s.started_at <= t && s.stopped_at.is_none_or(|e| e > t))
                .count() as f64
        })
        .collect();
    let max = nice_max(counts.iter().copied().fold(0.0, f64::max));
    let pts: Vec<String> = counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let x = LEFT + plot_w * i as f64 / 24.0;
            let y = TOP + plot_h * (1.0 - c / max);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let labels: Vec<(f64, String)> = (0..=24)
        .step_by(6)
        .map(|h| {
            (
                LEFT + plot_w * f64::from(h) / 24.0,
                hour_label(start + Duration::hours(i64::from(h)), tz),
            )
        })
        .collect();
    let line = format!(
        r##"<polyline fill="none" stroke="#1859c9" stroke-width="2" points="{}"/>"##,
        pts.join(" ")
    );
    let online = frame(
        max,
        &labels,
        "Online sessions over the last 24 hours",
        &line,
    );

    // Accepts and rejects per hour bucket.
    let mut acc = vec![0f64; 24];
    let mut rej = vec![0f64; 24];
    for (at, outcome) in auths {
        if let Some(i) = hour_index(start, *at) {
            if outcome == "accept" {
                acc[i] += 1.0;
            } else {
                rej[i] += 1.0;
            }
        }
    }
    let auth = stacked_bars(
        &acc,
        &rej,
        ("accepts", "rejects"),
        &labels,
        "Accepts (green) and rejects (red) per hour",
    );
    (online, auth)
}

/// Index of the hour bucket (0..24) of `at` in the day that starts at `start`.
fn hour_index(start: DateTime<Utc>, at: DateTime<Utc>) -> Option<usize> {
    usize::try_from((at - start).num_minutes().div_euclid(60))
        .ok()
        .filter(|i| *i < 24)
}

/// Stacked bars of two series (`a` green at the bottom, `b` red on top), one pair per slot.
fn stacked_bars(
    a: &[f64],
    b: &[f64],
    names: (&str, &str),
    labels: &[(f64, String)],
    title: &str,
) -> String {
    let plot_w = W - LEFT;
    let plot_h = H - BOTTOM - TOP;
    let n = a.len().max(1);
    let max = nice_max(a.iter().zip(b).map(|(x, y)| x + y).fold(0.0, f64::max));
    let bw = plot_w / n as f64;
    let mut bars = String::new();
    for (i, (x1, x2)) in a.iter().zip(b).enumerate() {
        let x = LEFT + bw * i as f64 + bw.min(4.0) / 4.0;
        let w = (bw - bw.min(4.0) / 2.0).max(0.5);
        let ha = plot_h * x1 / max;
        let hb = plot_h * x2 / max;
        let base = H - BOTTOM;
        bars.push_str(&format!(
            r##"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{ha:.1}" fill="#1d7a3a"><title>{} {}</title></rect>"##,
            base - ha,
            fmt_val(*x1),
            names.0
        ));
        bars.push_str(&format!(
            r##"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{hb:.1}" fill="#b42318"><title>{} {}</title></rect>"##,
            base - ha - hb,
            fmt_val(*x2),
            names.1
        ));
    }
    frame(max, labels, title, &bars)
}

/// A byte unit that keeps the axis numbers short: (divisor, name).
fn byte_unit(max: f64) -> (f64, &'static str) {
    [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB")]
        .into_iter()
        .find(|(d, _)| max >= 4.0 * d)
        .unwrap_or((1.0, "B"))
}

/// Traffic as stacked bars (download green, upload red) in a readable unit; `slots` are
/// (label or empty, download bytes, upload bytes).
fn traffic_bars(slots: &[(String, i64, i64)], every: usize, what: &str) -> String {
    let max = slots
        .iter()
        .map(|(_, d, u)| (d.max(&0) + u.max(&0)) as f64)
        .fold(0.0, f64::max);
    let (div, unit) = byte_unit(max);
    let down: Vec<f64> = slots.iter().map(|s| s.1.max(0) as f64 / div).collect();
    let up: Vec<f64> = slots.iter().map(|s| s.2.max(0) as f64 / div).collect();
    let plot_w = W - LEFT;
    let bw = plot_w / slots.len().max(1) as f64;
    let labels: Vec<(f64, String)> = slots
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every.max(1) == 0)
        .map(|(i, s)| (LEFT + bw * (i as f64 + 0.5), s.0.clone()))
        .collect();
    stacked_bars(
        &down,
        &up,
        (&format!("{unit} down"), &format!("{unit} up")),
        &labels,
        &format!("{what}, in {unit}: download (green) and upload (red)"),
    )
}

/// A subscriber's usage per day: one bar pair per bucket, labelled with its day of month.
pub fn daily_usage(buckets: &[tenant_api::usage::Bucket]) -> String {
    let slots: Vec<(String, i64, i64)> = buckets
        .iter()
        .map(|b| {
            // Router view: output = to the subscriber (download).
            let day = b.label.get(5..).unwrap_or(&b.label).to_owned();
            (day, b.output_octets, b.input_octets)
        })
        .collect();
    traffic_bars(&slots, 5, "Traffic per day")
}

/// Start of the hour (UTC) that holds `t`.
pub fn hour_start(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::DurationRound as _;
    t.duration_trunc(Duration::hours(1)).unwrap_or(t)
}

/// The tenant's traffic per hour over 24 h (the current hour and the 23 before it) from hourly
/// (hour, download, upload) deltas.
pub fn hourly_traffic(hours: &[(DateTime<Utc>, i64, i64)], now: DateTime<Utc>, tz: &str) -> String {
    let start = hour_start(now) - Duration::hours(23);
    let mut slots: Vec<(String, i64, i64)> = (0..24)
        .map(|h| (hour_label(start + Duration::hours(h), tz), 0, 0))
        .collect();
    for (at, d, u) in hours {
        if let Some(i) = hour_index(start, *at) {
            slots[i].1 = slots[i].1.saturating_add(*d);
            slots[i].2 = slots[i].2.saturating_add(*u);
        }
    }
    traffic_bars(&slots, 6, "Traffic per hour")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_charts_are_valid_markup_without_user_text() {
        let (a, b) = day_charts(&[], &[(Utc::now(), "reject".into())], Utc::now(), "UTC");
        assert!(a.starts_with("<svg") && a.ends_with("</svg>"));
        assert!(b.contains("1 rejects"));
        assert!(!a.contains("<script"));
    }

    #[test]
    fn traffic_uses_a_readable_unit_and_places_each_hour() {
        let now = Utc::now();
        let svg = hourly_traffic(
            &[(now - Duration::minutes(30), 3_000_000_000, 1_000_000_000)],
            now,
            "UTC",
        );
        assert!(
            svg.contains("in GB") && svg.contains("<title>3 GB down</title>"),
            "{svg}"
        );
        assert!(!svg.contains("NaN"));
        let empty = hourly_traffic(&[], now, "UTC");
        assert!(empty.contains("in B") && !empty.contains("NaN"));
    }

    #[test]
    fn scales_are_round() {
        assert_eq!(nice_max(3.0), 4.0);
        assert_eq!(nice_max(17.0), 20.0);
        assert_eq!(nice_max(130.0), 200.0);
    }
}
