//! CSV import of subscribers (`proxpanel subscriber import`).

use chrono::{DateTime, Utc};
use saas_core::model::NewSubscriber;

const COLUMNS: [&str; 9] = [
    "username",
    "password",
    "plan",
    "expires",
    "mac",
    "static_ip",
    "ipv6_prefix",
    "delegated_prefix",
    "sim_use",
];

/// Parses the CSV into rows with their plan names; every error names its line.
pub fn parse_subscribers_csv<E: std::fmt::Display>(
    text: &str,
    parse_date: impl Fn(&str) -> Result<DateTime<Utc>, E>,
) -> Result<Vec<(NewSubscriber, Option<String>)>, String> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let header = rdr
        .headers()
        .map_err(|e| format!("line 1: cannot read the header: {e}"))?
        .clone();
    let mut idx = [None; COLUMNS.len()];
    for (i, h) in header.iter().enumerate() {
        let h = h.to_ascii_lowercase();
        let Some(c) = COLUMNS.iter().position(|c| *c == h) else {
            return Err(format!(
                "line 1: unknown column {h:?} (columns: {})",
                COLUMNS.join(", ")
            ));
        };
        if idx[c].replace(i).is_some() {
            return Err(format!("line 1: column {h:?} appears twice"));
        }
    }
    if idx[0].is_none() || idx[1].is_none() {
        return Err(
            "line 1: the header must name at least the username and password columns".into(),
        );
    }
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| match e.position() {
            Some(p) => format!("line {}: {e}", p.line()),
            None => e.to_string(),
        })?;
        let line = rec.position().map_or(0, csv::Position::line);
        let cell = |c: usize| {
            idx[c]
                .and_then(|i| rec.get(i))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let expires_at = cell(3)
            .map(|d| parse_date(&d).map_err(|e| format!("line {line}: expires: {e}")))
            .transpose()?;
        let sim_use = cell(8)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| format!("line {line}: sim_use must be a whole number, got {v:?}"))
            })
            .transpose()?;
        let username = cell(0).ok_or_else(|| format!("line {line}: username is empty"))?;
        let password = cell(1).ok_or_else(|| format!("line {line}: password is empty"))?;
        out.push((
            NewSubscriber {
                username,
                password,
                plan_id: None,
                expires_at,
                static_ip: cell(5),
                framed_ipv6_prefix: cell(6),
                delegated_ipv6_prefix: cell(7),
                mac_lock: cell(4),
                sim_use,
            },
            cell(2),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> Result<DateTime<Utc>, String> {
        s.parse::<DateTime<Utc>>().map_err(|e| e.to_string())
    }

    #[test]
    fn parses_columns_in_any_order_with_empty_cells() {
        let rows = parse_subscribers_csv(
            "password,username,plan,sim_use\nsecret1,alice,,\nsecret2, bob ,gold,2\n",
            date,
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0.username, "alice");
        assert_eq!(rows[0].1, None);
        assert_eq!(rows[1].0.username, "bob");
        assert_eq!(rows[1].1.as_deref(), Some("gold"));
        assert_eq!(rows[1].0.sim_use, Some(2));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_subscribers_csv("username,password\nalice,x\nbob,\n", date).unwrap_err();
        assert!(e.starts_with("line 3:"), "{e}");
        let e = parse_subscribers_csv("username,pass\n", date).unwrap_err();
        assert!(e.contains("unknown column \"pass\""), "{e}");
        let e = parse_subscribers_csv("username,password,sim_use\na,b,two\n", date).unwrap_err();
        assert!(e.starts_with("line 2:") && e.contains("sim_use"), "{e}");
        let e = parse_subscribers_csv("username,password\na,b,c\n", date).unwrap_err();
        assert!(e.contains("line 2"), "{e}");
    }
}
