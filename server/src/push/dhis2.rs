//! DHIS2 targets: indicator values in the shape of DHIS2's `POST /api/dataValueSets`, taken from
//! the same query as `GET /api/v1/indicators/values`, and the import summary DHIS2 answers.
//!
//! A closed period is always sent as it was reported (its snapshot); other periods as they
//! stand. Values that are suppressed (small counts of sensitive measures) or undefined (a ratio
//! without its baseline) are left out.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate};
use serde_json::{json, Value};

use super::{outbox, Dhis2Settings, ElementMap, Kind, PeriodType};
use crate::db::Conn;
use crate::error::AppError;
use crate::indicators::closing;
use crate::indicators::period::Period;
use crate::indicators::query::{self, ValueRow, ValuesRequest};
use crate::indicators::Indicators;
use crate::users::now;

pub const PERIOD_CLOSED: &str = "dhis2.period_closed";
pub const SCHEDULED: &str = "dhis2.scheduled";

/// The period in DHIS2's notation: `2025`, `2025Q3`, `202507`.
pub fn period_id(p: Period) -> String {
    match p {
        Period::Year(y) => format!("{y:04}"),
        Period::Quarter(y, q) => format!("{y:04}Q{q}"),
        Period::Month(y, m) => format!("{y:04}{m:02}"),
    }
}

fn is_of_type(p: Period, t: PeriodType) -> bool {
    matches!(
        (p, t),
        (Period::Year(_), PeriodType::Yearly)
            | (Period::Quarter(..), PeriodType::Quarterly)
            | (Period::Month(..), PeriodType::Monthly)
    )
}

/// The period of type `t` containing `today` and the `n - 1` before it, oldest first.
pub fn recent_periods(today: NaiveDate, t: PeriodType, n: u32) -> Vec<Period> {
    let y = today.year();
    let m = i32::try_from(today.month()).unwrap_or(1);
    let mut out: Vec<Period> = (0..i32::try_from(n).unwrap_or(1))
        .map(|back| match t {
            PeriodType::Yearly => Period::Year(y - back),
            PeriodType::Quarterly => {
                let index = y * 4 + (m - 1) / 3 - back;
                Period::Quarter(
                    index.div_euclid(4),
                    u8::try_from(index.rem_euclid(4) + 1).unwrap_or(1),
                )
            }
            PeriodType::Monthly => {
                let index = y * 12 + (m - 1) - back;
                Period::Month(
                    index.div_euclid(12),
                    u8::try_from(index.rem_euclid(12) + 1).unwrap_or(1),
                )
            }
        })
        .collect();
    out.reverse();
    out
}

fn bad_mapping(message: String) -> AppError {
    AppError::bad_request("bad_mapping", message)
}

/// Checks a mapping against the indicator definitions and the area registry.
pub fn check_mapping(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    s: &Dhis2Settings,
) -> Result<(), AppError> {
    let defs = indicators.definitions();
    for (i, e) in s.data_elements.iter().enumerate() {
        let label = format!("data_elements item {}", i + 1);
        let ind = defs.indicator(&e.indicator).ok_or_else(|| {
            bad_mapping(format!("{label}: there is no indicator {}", e.indicator))
        })?;
        let measure =
            match &e.measure {
                Some(m) => ind.measures.iter().find(|x| &x.name == m).ok_or_else(|| {
                    bad_mapping(format!(
                        "{label}: the indicator {} has no measure {m} (it has {})",
                        e.indicator,
                        ind.measures
                            .iter()
                            .map(|x| x.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?,
                None => {
                    match ind.measures.as_slice() {
                        [only] => only,
                        _ => {
                            return Err(bad_mapping(format!(
                        "{label}: the indicator {} has several measures; say which one ({})",
                        e.indicator,
                        ind.measures.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", ")
                    )))
                        }
                    }
                }
            };
        for dim in e.disaggregation.keys() {
            if !measure.by.contains(dim) {
                return Err(bad_mapping(format!(
                    "{label}: {} cannot be broken down by {dim}",
                    measure.id
                )));
            }
        }
    }
    let index = indicators.area_index(conn)?;
    for (i, u) in s.org_units.iter().enumerate() {
        if index.versions(&u.area).is_empty() {
            return Err(bad_mapping(format!(
                "org_units item {}: there is no area {}",
                i + 1,
                u.area
            )));
        }
    }
    Ok(())
}

/// DHIS2 values are strings; whole numbers are written without a decimal point.
fn value_text(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn matches(e: &ElementMap, r: &ValueRow, period: &str) -> bool {
    r.indicator == e.indicator
        && e.measure.as_ref().is_none_or(|m| &r.measure == m)
        && r.period == period
        && e.disaggregation.iter().all(|(k, v)| {
            r.dims
                .get(k)
                .is_some_and(|x| x.as_deref() == Some(v.as_str()))
        })
}

/// The `dataValueSets` body for one period: a value per mapped measure and organisation unit.
pub fn build(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    s: &Dhis2Settings,
    period: Period,
    snapshot: Option<Period>,
) -> Result<Value, AppError> {
    // One query per area and set of dimensions broken down by.
    let mut groups: BTreeMap<Vec<String>, Vec<&ElementMap>> = BTreeMap::new();
    for e in &s.data_elements {
        groups
            .entry(e.disaggregation.keys().cloned().collect())
            .or_default()
            .push(e);
    }
    let period_text = period.to_string();
    let mut values = Vec::new();
    for unit in &s.org_units {
        for (by, elements) in &groups {
            let codes: BTreeSet<String> = elements.iter().map(|e| e.indicator.clone()).collect();
            let req = ValuesRequest {
                period,
                area: Some(unit.area.clone()),
                level: None,
                by: by.clone(),
                basis: s.basis(),
                map: s.map_kind(),
                indicators: codes.into_iter().collect(),
                snapshot,
            };
            let table = query::values(conn, indicators, &req).map_err(|e| {
                AppError::bad_request(
                    "bad_mapping",
                    format!("the values of area {} in {period}: {e}", unit.area),
                )
            })?;
            for e in elements {
                let Some(row) = table.rows.iter().find(|r| matches(e, r, &period_text)) else {
                    continue;
                };
                let Some(v) = row.value.filter(|_| !row.suppressed) else {
                    continue;
                };
                let mut dv = json!({
                    "dataElement": e.data_element,
                    "period": period_id(period),
                    "orgUnit": unit.org_unit,
                    "value": value_text(v),
                });
                if let Some(c) = &e.category_option_combo {
                    dv["categoryOptionCombo"] = json!(c);
                }
                if let Some(a) = &e.attribute_option_combo {
                    dv["attributeOptionCombo"] = json!(a);
                }
                values.push(dv);
            }
        }
    }
    Ok(json!({ "dataValues": values }))
}

/// A delivery built outside the writer: its body, or why it cannot be built.
#[derive(Debug, Clone)]
pub struct Built {
    pub period: Period,
    pub body: Result<Option<String>, String>,
}

/// Builds the body for `period`: `None` when there is no value to send; an error text when the
/// mapping does not fit the figures (an area missing from the period's map, say).
fn build_one(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    s: &Dhis2Settings,
    period: Period,
    snapshot: Option<Period>,
) -> Result<Built, AppError> {
    let body = match build(conn, indicators, s, period, snapshot) {
        Ok(body) => Ok(body["dataValues"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
            .then(|| body.to_string())),
        Err(e @ (AppError::Client { .. } | AppError::Detailed { .. })) => {
            Err(format!("cannot build the values of {period}: {e}"))
        }
        Err(e) => return Err(e),
    };
    Ok(Built { period, body })
}

fn enqueue_built(
    conn: &mut Conn<'_>,
    target_id: i64,
    built: &[Built],
    event: &str,
) -> Result<(), AppError> {
    for b in built {
        match &b.body {
            Ok(Some(body)) => {
                outbox::enqueue(conn, target_id, event, body)?;
            }
            Ok(None) => {}
            Err(e) => {
                outbox::enqueue_failed(conn, target_id, event, e)?;
            }
        }
    }
    Ok(())
}

/// Queues the values of a period that has just closed (and of the periods within it that
/// targets receive); runs in the same write as the close.
pub fn enqueue_period_closed(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    closed: Period,
) -> Result<(), AppError> {
    for t in super::enabled(conn, Kind::Dhis2)? {
        let Some(s) = t.settings.dhis2.clone() else {
            continue;
        };
        let built = closed
            .covered()
            .into_iter()
            .filter(|p| is_of_type(*p, s.period_type))
            .map(|p| build_one(conn, indicators, &s, p, Some(closed)))
            .collect::<Result<Vec<_>, _>>()?;
        enqueue_built(conn, t.id, &built, PERIOD_CLOSED)?;
    }
    Ok(())
}

/// A scheduled push that was due when its values were read.
#[derive(Debug, Clone)]
pub struct DuePush {
    target_id: i64,
    /// The target as it was read; the push is queued only if it is unchanged (not pushed by
    /// another server meanwhile, not reconfigured).
    seen: (Option<chrono::NaiveDateTime>, chrono::NaiveDateTime),
    every: u64,
    built: Vec<Built>,
}

/// Reads the values of every scheduled push that is due. Runs on a read connection, so the
/// writer (and the phones waiting on it) never waits for these queries.
pub fn due_scheduled(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
) -> Result<Vec<DuePush>, AppError> {
    let at = now();
    let mut due = Vec::new();
    let mut closed: Option<Vec<Period>> = None;
    for t in super::enabled(conn, Kind::Dhis2)? {
        let Some(s) = t.settings.dhis2.clone() else {
            continue;
        };
        let Some(every) = s.schedule_secs else {
            continue;
        };
        if t.next_push_at.is_some_and(|n| n > at) {
            continue;
        }
        let closed = match &closed {
            Some(c) => c.clone(),
            None => {
                let list = closing::list(conn)?
                    .into_iter()
                    .map(|c| Period::parse(&c.period))
                    .collect::<Result<Vec<_>, _>>()?;
                closed = Some(list.clone());
                list
            }
        };
        let built = recent_periods(crate::areas::today(), s.period_type, s.lookback)
            .into_iter()
            .map(|p| {
                let snapshot = closed.iter().copied().find(|c| c.covers(p));
                build_one(conn, indicators, &s, p, snapshot)
            })
            .collect::<Result<Vec<_>, _>>()?;
        due.push(DuePush {
            target_id: t.id,
            seen: (t.next_push_at, t.updated_at),
            every,
            built,
        });
    }
    Ok(due)
}

/// Queues the pushes [`due_scheduled`] built, each only if its target is as it was read; runs
/// in the writer, so that of several servers on one database only one queues each push.
pub fn enqueue_scheduled(conn: &mut Conn<'_>, due: &[DuePush]) -> Result<usize, AppError> {
    let at = now();
    let mut queued = 0;
    for d in due {
        let t = match super::get(conn, d.target_id) {
            Ok(t) => t,
            Err(AppError::Client { .. }) => continue,
            Err(e) => return Err(e),
        };
        if !t.enabled || (t.next_push_at, t.updated_at) != d.seen {
            continue;
        }
        enqueue_built(conn, t.id, &d.built, SCHEDULED)?;
        let every = chrono::Duration::seconds(i64::try_from(d.every).unwrap_or(i64::MAX / 1000));
        super::set_next_push(conn, t.id, at + every)?;
        queued += 1;
    }
    Ok(queued)
}

fn snippet(s: &str) -> String {
    s.chars().take(200).collect()
}

/// How a DHIS2 push went, from its answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Imported: a short summary for the log.
    Imported(String),
    /// Not (or not wholly) imported; retrying may help (the server failed, a proxy refused).
    Retry(String),
    /// DHIS2 read the values and refused some: sending the same values again cannot help.
    Refused(String),
}

/// Reads DHIS2's answer to `POST /api/dataValueSets`: an import summary, bare (before 2.38)
/// or wrapped in a web message (`{"httpStatus", "status", "response": {…}}`). A summary that
/// is not `SUCCESS`, ignored values, or conflicts count as a refusal.
pub fn read_answer(status: u16, body: &str) -> Answer {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Answer::Retry(format!(
            "HTTP {status}: not a DHIS2 import summary: {}",
            snippet(body)
        ));
    };
    // Only an import summary says what happened to the values; any other answer (a refused
    // sign-in, a proxy's error page) is a failure that may pass, once the cause is fixed.
    let summary = match v.get("response") {
        Some(r) if r.get("importCount").is_some() => r,
        _ if v.get("importCount").is_some() => &v,
        _ => {
            let message = v.get("message").and_then(Value::as_str).unwrap_or("");
            return Answer::Retry(format!(
                "HTTP {status}: not a DHIS2 import summary: {}",
                snippet(if message.is_empty() { body } else { message })
            ));
        }
    };
    let state = summary.get("status").and_then(Value::as_str).unwrap_or("");
    let count = |k: &str| summary["importCount"][k].as_i64().unwrap_or(0);
    let conflicts: Vec<String> = summary["conflicts"]
        .as_array()
        .map(|list| {
            list.iter()
                .take(5)
                .map(|c| {
                    format!(
                        "{} {}",
                        c["object"].as_str().unwrap_or(""),
                        c["value"].as_str().unwrap_or("")
                    )
                    .trim()
                    .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    let text = format!(
        "DHIS2 import {state}: {} imported, {} updated, {} ignored, {} deleted",
        count("imported"),
        count("updated"),
        count("ignored"),
        count("deleted")
    );
    let ok_status = (200..300).contains(&status);
    if ok_status && state == "SUCCESS" && count("ignored") == 0 && conflicts.is_empty() {
        return Answer::Imported(text);
    }
    let text = if conflicts.is_empty() {
        format!("HTTP {status}: {text}")
    } else {
        format!("HTTP {status}: {text}; conflicts: {}", conflicts.join("; "))
    };
    if status >= 500 {
        Answer::Retry(text)
    } else {
        Answer::Refused(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn periods_in_dhis2_notation() {
        assert_eq!(period_id(Period::Year(2025)), "2025");
        assert_eq!(period_id(Period::Quarter(2025, 3)), "2025Q3");
        assert_eq!(period_id(Period::Month(2025, 7)), "202507");
    }

    #[test]
    fn recent_periods_cross_year_ends() {
        assert_eq!(
            recent_periods(d("2026-02-10"), PeriodType::Monthly, 3),
            vec![
                Period::Month(2025, 12),
                Period::Month(2026, 1),
                Period::Month(2026, 2)
            ]
        );
        assert_eq!(
            recent_periods(d("2026-02-10"), PeriodType::Quarterly, 2),
            vec![Period::Quarter(2025, 4), Period::Quarter(2026, 1)]
        );
        assert_eq!(
            recent_periods(d("2026-11-29"), PeriodType::Yearly, 2),
            vec![Period::Year(2025), Period::Year(2026)]
        );
    }

    #[test]
    fn import_summaries_old_and_new() {
        let ok = r#"{"httpStatus":"OK","httpStatusCode":200,"status":"OK","response":{"responseType":"ImportSummary","status":"SUCCESS","importCount":{"imported":2,"updated":1,"ignored":0,"deleted":0},"conflicts":[]}}"#;
        assert!(matches!(read_answer(200, ok), Answer::Imported(_)));
        let bare = r#"{"responseType":"ImportSummary","status":"SUCCESS","importCount":{"imported":1,"updated":0,"ignored":0,"deleted":0}}"#;
        assert!(matches!(read_answer(200, bare), Answer::Imported(_)));
        let conflict = r#"{"httpStatus":"Conflict","httpStatusCode":409,"status":"WARNING","message":"One more conflicts encountered, please check import summary.","response":{"responseType":"ImportSummary","status":"WARNING","importCount":{"imported":1,"updated":0,"ignored":1,"deleted":0},"conflicts":[{"object":"deX","value":"Data element not found or not accessible","errorCode":"E7610"}]}}"#;
        match read_answer(409, conflict) {
            Answer::Refused(t) => {
                assert!(t.contains("1 ignored"), "{t}");
                assert!(t.contains("deX Data element not found"), "{t}");
            }
            other => panic!("{other:?}"),
        }
        // Ignored values make even a 200 a refusal.
        let ignored = r#"{"status":"SUCCESS","importCount":{"imported":0,"updated":0,"ignored":3,"deleted":0}}"#;
        assert!(matches!(read_answer(200, ignored), Answer::Refused(_)));
        assert!(matches!(
            read_answer(502, "<html>Bad gateway</html>"),
            Answer::Retry(_)
        ));
        // A refused sign-in is no import summary, even with a status: it may pass once the
        // credentials are fixed.
        let unauthorized = r#"{"httpStatus":"Unauthorized","httpStatusCode":401,"status":"ERROR","message":"Unauthorized"}"#;
        assert_eq!(
            read_answer(401, unauthorized),
            Answer::Retry("HTTP 401: not a DHIS2 import summary: Unauthorized".into())
        );
    }

    #[test]
    fn values_are_plain_numbers() {
        assert_eq!(value_text(12.0), "12");
        assert_eq!(value_text(66.7), "66.7");
    }
}
