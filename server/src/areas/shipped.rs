//! Sơn La's official administrative units (`data/sonla/`, see its README), embedded in the
//! binary and loaded into an empty registry: the map before the reform (valid until 30 June
//! 2025), the 75 communes from 1 July 2025, the old → new commune mapping, and the province and
//! district boundaries.

use std::collections::HashMap;

use chrono::NaiveDate;

use super::import::{self, NewArea, Report};
use super::{find_on, Level};
use crate::db::Conn;
use crate::error::AppError;

const BEFORE_REFORM: &str = include_str!("../../../data/sonla/areas-2025-03-01.csv");
const AFTER_REFORM: &str = include_str!("../../../data/sonla/communes-2025-07-01.csv");
const CHANGES: &str = include_str!("../../../data/sonla/commune-changes-2025-07-01.csv");
const BOUNDARIES: &str = include_str!("../../../data/sonla/districts-2025-03-01.geojson");

/// The day the new communes took over (Nghị quyết 1681/NQ-UBTVQH15).
fn reform_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 7, 1).unwrap_or_default()
}

fn last_day_before_reform() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 6, 30).unwrap_or_default()
}

fn records(csv_text: &str) -> Result<Vec<HashMap<String, String>>, AppError> {
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| AppError::internal(format!("shipped area file: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    reader
        .records()
        .map(|r| {
            r.map(|r| {
                headers
                    .iter()
                    .cloned()
                    .zip(r.iter().map(str::to_string))
                    .collect()
            })
            .map_err(|e| AppError::internal(format!("shipped area file: {e}")))
        })
        .collect()
}

fn row(
    fields: &HashMap<String, String>,
    label: &str,
    valid_from: Option<NaiveDate>,
    valid_to: Option<NaiveDate>,
) -> Result<(String, NewArea), AppError> {
    let mut area = NewArea::from_fields(fields, label)?;
    area.valid_from = valid_from;
    area.valid_to = valid_to;
    Ok((label.to_string(), area))
}

/// Loads the official data; run on an empty registry, in one transaction.
pub fn load(conn: &mut Conn<'_>) -> Result<Report, AppError> {
    let mut rows = Vec::new();
    for (i, fields) in records(BEFORE_REFORM)?.iter().enumerate() {
        let label = format!("areas-2025-03-01.csv row {}", i + 2);
        // The province itself continues after the reform.
        let until = (fields.get("level").map(String::as_str) != Some(Level::Province.as_str()))
            .then(last_day_before_reform);
        rows.push(row(fields, &label, None, until)?);
    }
    for (i, fields) in records(AFTER_REFORM)?.iter().enumerate() {
        let mut fields = fields.clone();
        fields.insert("level".into(), Level::Commune.as_str().into());
        if let Some(p) = fields.remove("province_code") {
            fields.insert("parent_code".into(), p);
        }
        let label = format!("communes-2025-07-01.csv row {}", i + 2);
        rows.push(row(&fields, &label, Some(reform_day()), None)?);
    }
    let mut report = import::apply_rows(conn, &rows)?;
    for (i, fields) in records(CHANGES)?.iter().enumerate() {
        let code = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
        let old = find_on(conn, code("old_code"), last_day_before_reform())?;
        let new = find_on(conn, code("new_code"), reform_day())?;
        let (Some(old), Some(new)) = (old, new) else {
            return Err(AppError::internal(format!(
                "commune-changes-2025-07-01.csv row {}: unknown commune",
                i + 2
            )));
        };
        if import::link(conn, old.id, new.id)? {
            report.linked += 1;
        }
    }
    let boundaries = import::apply_geojson(conn, BOUNDARIES.as_bytes())?;
    report.updated += boundaries.updated;
    Ok(report)
}
