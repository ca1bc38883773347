//! Targets per indicator, area and year, and the baselines ratio indicators divide by (for
//! P8-01: women of reproductive age of the high home-birth groups in each commune), imported
//! by the province as CSV or JSON. An import is all or nothing; errors name the row.

use std::collections::HashMap;

use chrono::{NaiveDate, Utc};
use diesel::prelude::*;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::definition::Definitions;
use super::registry::AreaIndex;
use crate::db::schema::{indicator_baselines, indicator_targets};
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TargetImportRow)]
pub struct TargetInput {
    pub indicator: String,
    /// The indicator's first measure when left out.
    #[serde(default)]
    pub measure: Option<String>,
    /// Area code, resolved on `on` (default: the last day of `year`).
    pub area: String,
    pub year: i64,
    pub target: f64,
    #[serde(default)]
    pub on: Option<NaiveDate>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BaselineImportRow)]
pub struct BaselineInput {
    pub baseline: String,
    pub area: String,
    pub year: i64,
    pub value: f64,
    #[serde(default)]
    pub on: Option<NaiveDate>,
}

/// CSV with a header row naming the columns of `T`; row numbers in errors count the header.
pub fn parse_csv<T: DeserializeOwned>(bytes: &[u8]) -> Result<Vec<(String, T)>, AppError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut out = Vec::new();
    for (i, record) in reader.deserialize::<T>().enumerate() {
        let label = format!("row {}", i + 2);
        let row = record.map_err(|e| AppError::bad_request("bad_csv", format!("{label}: {e}")))?;
        out.push((label, row));
    }
    Ok(out)
}

/// JSON rows, labelled by position.
pub fn label_items<T>(items: Vec<T>) -> Vec<(String, T)> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, t)| (format!("item {}", i + 1), t))
        .collect()
}

fn bad(label: &str, message: impl std::fmt::Display) -> AppError {
    AppError::bad_request("bad_import_row", format!("{label}: {message}"))
}

fn resolve_area(
    index: &AreaIndex,
    label: &str,
    code: &str,
    year: i64,
    on: Option<NaiveDate>,
) -> Result<i64, AppError> {
    if !(1900..=2200).contains(&year) {
        return Err(bad(label, format!("the year {year} is out of range")));
    }
    let year = i32::try_from(year).map_err(|_| bad(label, "bad year"))?;
    let on = on
        .or_else(|| NaiveDate::from_ymd_opt(year, 12, 31))
        .ok_or_else(|| bad(label, "bad year"))?;
    index
        .versions(code.trim())
        .into_iter()
        .find(|n| n.valid_on(on))
        .map(|n| n.id)
        .ok_or_else(|| {
            bad(
                label,
                format!("no area has the code '{code}' on {on}; give `on` to choose the map"),
            )
        })
}

/// Stores targets (replacing those of the same indicator, measure, area and year).
pub fn import_targets(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    index: &AreaIndex,
    rows: &[(String, TargetInput)],
) -> Result<usize, AppError> {
    let mut seen: HashMap<(String, i64, i64), String> = HashMap::new();
    let mut resolved = Vec::new();
    for (label, r) in rows {
        let ind = defs
            .indicator(r.indicator.trim())
            .ok_or_else(|| bad(label, format!("unknown indicator '{}'", r.indicator)))?;
        let measure = match &r.measure {
            Some(m) if !m.trim().is_empty() => ind
                .measures
                .iter()
                .find(|x| x.name == m.trim())
                .ok_or_else(|| bad(label, format!("{} has no measure '{m}'", ind.code)))?,
            _ => ind
                .measures
                .first()
                .ok_or_else(|| bad(label, "the indicator has no measure"))?,
        };
        if !r.target.is_finite() || r.target <= 0.0 {
            return Err(bad(label, "a target must be a positive number"));
        }
        let area_id = resolve_area(index, label, &r.area, r.year, r.on)?;
        if let Some(first) = seen.insert((measure.id.clone(), area_id, r.year), label.clone()) {
            return Err(bad(label, format!("repeats {first}")));
        }
        resolved.push((
            ind.code.clone(),
            measure.name.clone(),
            area_id,
            r.year,
            r.target,
        ));
    }
    let now = Utc::now().naive_utc();
    for (indicator, measure, area_id, year, target) in &resolved {
        on_conn!(conn, c => diesel::delete(indicator_targets::table
            .filter(indicator_targets::snapshot.eq(0))
            .filter(indicator_targets::indicator.eq(indicator))
            .filter(indicator_targets::measure.eq(measure))
            .filter(indicator_targets::area_id.eq(area_id))
            .filter(indicator_targets::year.eq(year)))
        .execute(c))?;
        on_conn!(conn, c => diesel::insert_into(indicator_targets::table)
            .values((
                indicator_targets::snapshot.eq(0),
                indicator_targets::indicator.eq(indicator),
                indicator_targets::measure.eq(measure),
                indicator_targets::area_id.eq(area_id),
                indicator_targets::year.eq(year),
                indicator_targets::target.eq(target),
                indicator_targets::updated_at.eq(now),
            ))
            .execute(c))?;
    }
    Ok(resolved.len())
}

/// Stores baselines (replacing those of the same name, area and year).
pub fn import_baselines(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    index: &AreaIndex,
    rows: &[(String, BaselineInput)],
) -> Result<usize, AppError> {
    let known: Vec<&str> = defs
        .numbered()
        .filter_map(|(_, m)| m.baseline.as_deref())
        .collect();
    let mut seen: HashMap<(String, i64, i64), String> = HashMap::new();
    let mut resolved = Vec::new();
    for (label, r) in rows {
        let name = r.baseline.trim();
        if !known.contains(&name) {
            return Err(bad(
                label,
                format!(
                    "no indicator uses a baseline '{name}' (known: {})",
                    known.join(", ")
                ),
            ));
        }
        if !r.value.is_finite() || r.value < 0.0 {
            return Err(bad(label, "a baseline must be a number, 0 or more"));
        }
        let area_id = resolve_area(index, label, &r.area, r.year, r.on)?;
        if let Some(first) = seen.insert((name.to_string(), area_id, r.year), label.clone()) {
            return Err(bad(label, format!("repeats {first}")));
        }
        resolved.push((name.to_string(), area_id, r.year, r.value));
    }
    let now = Utc::now().naive_utc();
    for (name, area_id, year, value) in &resolved {
        on_conn!(conn, c => diesel::delete(indicator_baselines::table
            .filter(indicator_baselines::snapshot.eq(0))
            .filter(indicator_baselines::baseline.eq(name))
            .filter(indicator_baselines::area_id.eq(area_id))
            .filter(indicator_baselines::year.eq(year)))
        .execute(c))?;
        on_conn!(conn, c => diesel::insert_into(indicator_baselines::table)
            .values((
                indicator_baselines::snapshot.eq(0),
                indicator_baselines::baseline.eq(name),
                indicator_baselines::area_id.eq(area_id),
                indicator_baselines::year.eq(year),
                indicator_baselines::value.eq(value),
                indicator_baselines::updated_at.eq(now),
            ))
            .execute(c))?;
    }
    Ok(resolved.len())
}

/// Targets of a year in a snapshot, by (measure id, area version).
pub fn targets_for(
    conn: &mut Conn<'_>,
    snapshot: i64,
    year: i64,
) -> Result<HashMap<(String, i64), f64>, AppError> {
    let rows: Vec<(String, String, i64, f64)> = on_conn!(conn, c => indicator_targets::table
        .filter(indicator_targets::snapshot.eq(snapshot))
        .filter(indicator_targets::year.eq(year))
        .select((
            indicator_targets::indicator,
            indicator_targets::measure,
            indicator_targets::area_id,
            indicator_targets::target,
        ))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(|(i, m, a, t)| ((format!("{i}/{m}"), a), t))
        .collect())
}

/// Baselines of a year in a snapshot, by (name, area version).
pub fn baselines_for(
    conn: &mut Conn<'_>,
    snapshot: i64,
    year: i64,
) -> Result<HashMap<(String, i64), f64>, AppError> {
    let rows: Vec<(String, i64, f64)> = on_conn!(conn, c => indicator_baselines::table
        .filter(indicator_baselines::snapshot.eq(snapshot))
        .filter(indicator_baselines::year.eq(year))
        .select((
            indicator_baselines::baseline,
            indicator_baselines::area_id,
            indicator_baselines::value,
        ))
        .load(c))?;
    Ok(rows.into_iter().map(|(b, a, v)| ((b, a), v)).collect())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Target)]
pub struct TargetView {
    pub indicator: String,
    pub measure: String,
    pub area: String,
    pub area_name: String,
    pub year: i64,
    pub target: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Baseline)]
pub struct BaselineView {
    pub baseline: String,
    pub area: String,
    pub area_name: String,
    pub year: i64,
    pub value: f64,
}

fn area_names(index: &AreaIndex, id: i64) -> (String, String) {
    index
        .get(id)
        .map(|n| (n.code.clone(), n.name.clone()))
        .unwrap_or_else(|| (id.to_string(), String::new()))
}

pub fn list_targets(
    conn: &mut Conn<'_>,
    index: &AreaIndex,
    year: Option<i64>,
) -> Result<Vec<TargetView>, AppError> {
    let rows: Vec<(String, String, i64, i64, f64)> = on_conn!(conn, c => {
        let mut q = indicator_targets::table
            .filter(indicator_targets::snapshot.eq(0))
            .select((
                indicator_targets::indicator,
                indicator_targets::measure,
                indicator_targets::area_id,
                indicator_targets::year,
                indicator_targets::target,
            ))
            .order((indicator_targets::year, indicator_targets::indicator, indicator_targets::measure, indicator_targets::area_id))
            .into_boxed();
        if let Some(y) = year {
            q = q.filter(indicator_targets::year.eq(y));
        }
        q.load(c)
    })?;
    Ok(rows
        .into_iter()
        .map(|(indicator, measure, area_id, year, target)| {
            let (area, area_name) = area_names(index, area_id);
            TargetView {
                indicator,
                measure,
                area,
                area_name,
                year,
                target,
            }
        })
        .collect())
}

pub fn list_baselines(
    conn: &mut Conn<'_>,
    index: &AreaIndex,
    year: Option<i64>,
) -> Result<Vec<BaselineView>, AppError> {
    let rows: Vec<(String, i64, i64, f64)> = on_conn!(conn, c => {
        let mut q = indicator_baselines::table
            .filter(indicator_baselines::snapshot.eq(0))
            .select((
                indicator_baselines::baseline,
                indicator_baselines::area_id,
                indicator_baselines::year,
                indicator_baselines::value,
            ))
            .order((indicator_baselines::year, indicator_baselines::baseline, indicator_baselines::area_id))
            .into_boxed();
        if let Some(y) = year {
            q = q.filter(indicator_baselines::year.eq(y));
        }
        q.load(c)
    })?;
    Ok(rows
        .into_iter()
        .map(|(baseline, area_id, year, value)| {
            let (area, area_name) = area_names(index, area_id);
            BaselineView {
                baseline,
                area,
                area_name,
                year,
                value,
            }
        })
        .collect())
}
