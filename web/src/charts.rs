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
    let mut acc = [0f64; 24];
    let mut rej = [0f64; 24];
    for (at, outcome) in auths {
        let i = (*at - start).num_minutes() / 60;
        if let Ok(i) = usize::try_from(i)
            && i < 24
        {
            if outcome == "accept" {
                acc[i] += 1.0;
            } else {
                rej[i] += 1.0;
            }
        }
    }
    let max = nice_max((0..24).map(|i| acc[i] + rej[i]).fold(0.0, f64::max));
    let bw = plot_w / 24.0;
    let mut bars = String::new();
    for i in 0..24 {
        let x = LEFT + bw * i as f64 + 1.0;
        let ha = plot_h * acc[i] / max;
        let hr = plot_h * rej[i] / max;
        let base = H - BOTTOM;
        bars.push_str(&format!(
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{ha:.1}" fill="#1d7a3a"><title>{} accepts</title></rect>"##,
            base - ha,
            bw - 2.0,
            acc[i]
        ));
        bars.push_str(&format!(
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{hr:.1}" fill="#b42318"><title>{} rejects</title></rect>"##,
            base - ha - hr,
            bw - 2.0,
            rej[i]
        ));
    }
    let auth = frame(
        max,
        &labels,
        "Accepts (green) and rejects (red) per hour",
        &bars,
    );
    (online, auth)
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
    fn scales_are_round() {
        assert_eq!(nice_max(3.0), 4.0);
        assert_eq!(nice_max(17.0), 20.0);
        assert_eq!(nice_max(130.0), 200.0);
    }
}
