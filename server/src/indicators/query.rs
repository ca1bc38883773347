//! Reading figures: the values table (any area, level, period, breakdown, basis and map, live
//! or as a closed period was reported) and the submissions behind one number. Reads only the
//! maintained cells, never the submissions (except to list those behind a number).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Text};
use serde::Serialize;

use super::closing;
use super::contribution::{contribution, Bases, Basis, Input, Interner};
use super::definition::{Definitions, Kind, Measure, Text as Wording};
use super::period::{Grain, Period};
use super::registry::{AreaIndex, MapKind, Node};
use super::sql::Sql;
use super::Indicators;
use crate::areas::Level;
use crate::db::schema::{indicator_applied, indicator_cells, submission_versions, submissions};
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;

/// Cells below this are suppressed for sensitive measures.
pub const SUPPRESS_BELOW: i64 = 5;
/// Above this many areas the cells are filtered in memory rather than by an IN list.
const MAX_AREA_LIST: usize = 500;

#[derive(Debug, Clone)]
pub struct ValuesRequest {
    pub period: Period,
    /// An area code; the province when left out.
    pub area: Option<String>,
    /// One row per area at this level within `area`; `area`'s own level when left out.
    pub level: Option<Level>,
    /// Dimensions, and `month` or `quarter` to break the period down.
    pub by: Vec<String>,
    pub basis: Basis,
    pub map: MapKind,
    /// Indicator codes; every indicator when empty.
    pub indicators: Vec<String>,
    /// Read the snapshot of this closed period instead of the live figures.
    pub snapshot: Option<Period>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ValueRow {
    pub indicator: String,
    pub measure: String,
    pub unit: Wording,
    pub area: String,
    pub area_name: String,
    pub level: Level,
    pub period: String,
    /// One entry per requested dimension; `null` when not recorded or not a breakdown of this
    /// measure.
    #[serde(flatten)]
    pub dims: BTreeMap<String, Option<String>>,
    pub value: Option<f64>,
    pub numerator: Option<i64>,
    pub denominator: Option<f64>,
    pub target: Option<f64>,
    pub achievement: Option<f64>,
    pub suppressed: bool,
}

#[derive(Debug, Serialize)]
pub struct ValuesTable {
    pub period: String,
    pub area: Option<String>,
    pub level: Level,
    pub by: Vec<String>,
    pub basis: &'static str,
    pub map: &'static str,
    /// The closed period whose snapshot this is.
    pub snapshot: Option<String>,
    /// When these figures were taken: now, or when the period was closed.
    pub cut_off: NaiveDateTime,
    pub rows: Vec<ValueRow>,
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// The areas `code` names on the map in the period (the province roots when `None`).
fn resolve_areas<'a>(
    index: &'a AreaIndex,
    code: Option<&str>,
    map: MapKind,
    period: Period,
) -> Result<Vec<&'a Node>, AppError> {
    let (from, to) = period.bounds();
    let found: Vec<&Node> = match code {
        None => index.roots(map, from, to),
        Some(c) => index
            .versions(c)
            .into_iter()
            .filter(|n| index.on_map(n, map, from, to))
            .collect(),
    };
    if found.is_empty() {
        return Err(AppError::not_found(
            "unknown_area",
            match code {
                Some(c) => format!(
                    "no area has the code '{c}' on the {} map in {period}",
                    map.as_str()
                ),
                None => "the area registry has no province".to_string(),
            },
        ));
    }
    Ok(found)
}

/// Every area at `level` within `roots`, sorted by code.
fn areas_at<'a>(
    index: &'a AreaIndex,
    roots: &[&Node],
    level: Level,
    map: MapKind,
    period: Period,
) -> Result<Vec<&'a Node>, AppError> {
    let (from, to) = period.bounds();
    let mut out: Vec<&Node> = Vec::new();
    let mut seen = HashSet::new();
    for r in roots {
        let root_level = r.level().unwrap_or(Level::Hamlet);
        if level < root_level {
            return Err(AppError::bad_request(
                "bad_level",
                format!(
                    "the level {} is above the area's own level ({})",
                    level.as_str(),
                    root_level.as_str()
                ),
            ));
        }
        for n in index.descendants_at(r.id, level, map, from, to) {
            if seen.insert(n.id) {
                out.push(n);
            }
        }
    }
    out.sort_by(|a, b| a.code.cmp(&b.code).then(a.valid_from.cmp(&b.valid_from)));
    Ok(out)
}

/// Targets and baselines of areas that have none of their own roll up from the areas below
/// (valid on the period's last day on the map as recorded, so the two generations of a
/// reform year are not added together).
struct Rollup<'a> {
    index: &'a AreaIndex,
    map: MapKind,
    period: Period,
    explicit: &'a HashMap<(String, i64), f64>,
    memo: HashMap<(String, i64), Option<f64>>,
}

impl Rollup<'_> {
    fn value(&mut self, name: &str, area: i64, sum_children: bool) -> Option<f64> {
        let key = (name.to_string(), area);
        if let Some(v) = self.memo.get(&key) {
            return *v;
        }
        let mut v = self.explicit.get(&key).copied();
        if v.is_none() && sum_children {
            let (from, to) = self.period.bounds();
            let kids: Vec<i64> = match self.map {
                MapKind::AsRecorded => self
                    .index
                    .children(area)
                    .into_iter()
                    .filter(|n| n.valid_on(to))
                    .map(|n| n.id)
                    .collect(),
                MapKind::Current => self
                    .index
                    .children_on_map(area, self.map, from, to)
                    .into_iter()
                    .map(|n| n.id)
                    .collect(),
            };
            let parts: Vec<f64> = kids
                .into_iter()
                .filter_map(|k| self.value(name, k, true))
                .collect();
            if !parts.is_empty() {
                v = Some(parts.iter().sum());
            }
        }
        self.memo.insert(key, v);
        v
    }
}

/// The dims of a stored cell, parsed once per distinct text.
fn parsed<'c>(
    cache: &'c mut HashMap<String, BTreeMap<String, String>>,
    text: &str,
) -> &'c BTreeMap<String, String> {
    if !cache.contains_key(text) {
        let map = serde_json::from_str(text).unwrap_or_default();
        cache.insert(text.to_string(), map);
    }
    &cache[text]
}

type Folded = BTreeMap<(u16, i64, Period), BTreeMap<Vec<Option<String>>, i64>>;

pub fn values(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    req: &ValuesRequest,
) -> Result<ValuesTable, AppError> {
    let (frozen, snapshot, cut_off) = match req.snapshot {
        None => (None, 0, Utc::now().naive_utc()),
        Some(p) => {
            let row = closing::find(conn, p)?.ok_or_else(|| {
                AppError::not_found("period_not_closed", format!("the period {p} has not been closed"))
            })?;
            if !p.covers(req.period) {
                return Err(AppError::bad_request(
                    "period_outside_snapshot",
                    format!("the snapshot of {p} holds {p} and the periods within it, not {}", req.period),
                ));
            }
            (Some(closing::definitions_of(&row)?), row.id, row.closed_at)
        }
    };
    let defs: &Definitions = frozen.as_ref().unwrap_or(indicators.definitions());
    let index = indicators.area_index(conn)?;

    for code in &req.indicators {
        if defs.indicator(code).is_none() {
            return Err(AppError::bad_request(
                "unknown_indicator",
                format!(
                    "no indicator '{code}' (known: {})",
                    defs.indicators.iter().map(|i| i.code.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let selected: Vec<(u16, &Measure)> = defs
        .numbered()
        .filter(|(_, m)| req.indicators.is_empty() || req.indicators.contains(&m.indicator))
        .collect();

    let mut grain = None;
    let mut dims: Vec<String> = Vec::new();
    for b in &req.by {
        let b = b.trim();
        match b {
            "" | "year" => {}
            "month" | "quarter" => {
                let g = if b == "month" { Grain::Month } else { Grain::Quarter };
                if grain.is_some_and(|x| x != g) {
                    return Err(AppError::bad_request(
                        "bad_by",
                        "break a period down by month or by quarter, not both",
                    ));
                }
                grain = Some(g);
            }
            d => {
                if !selected.iter().any(|(_, m)| m.allows(d)) {
                    let mut known: Vec<&str> = selected
                        .iter()
                        .flat_map(|(_, m)| m.by.iter().map(String::as_str))
                        .collect();
                    known.sort();
                    known.dedup();
                    return Err(AppError::bad_request(
                        "unknown_dimension",
                        format!(
                            "no selected indicator can be broken down by '{d}' (possible: month, quarter, {})",
                            known.join(", ")
                        ),
                    ));
                }
                if !dims.iter().any(|x| x == d) {
                    dims.push(d.to_string());
                }
            }
        }
    }
    let periods: Vec<Period> = grain
        .map(|g| req.period.split(g))
        .unwrap_or_else(|| vec![req.period]);

    let roots = resolve_areas(&index, req.area.as_deref(), req.map, req.period)?;
    let level = req
        .level
        .or_else(|| roots.first().and_then(|r| r.level()))
        .unwrap_or(Level::Province);
    let areas = areas_at(&index, &roots, level, req.map, req.period)?;

    let ids: Vec<String> = selected.iter().map(|(_, m)| m.id.clone()).collect();
    let period_texts: Vec<String> = periods.iter().map(Period::to_string).collect();
    let area_ids: Vec<i64> = areas.iter().map(|a| a.id).collect();
    let area_set: HashSet<i64> = area_ids.iter().copied().collect();
    let rows: Vec<(String, String, i64, String, i64)> = if areas.is_empty() || ids.is_empty() {
        Vec::new()
    } else {
        on_conn!(conn, c => {
            let mut q = indicator_cells::table
                .filter(indicator_cells::snapshot.eq(snapshot))
                .filter(indicator_cells::measure.eq_any(&ids))
                .filter(indicator_cells::basis.eq(req.basis.as_str()))
                .filter(indicator_cells::map.eq(req.map.as_str()))
                .filter(indicator_cells::level.eq(level.as_str()))
                .filter(indicator_cells::period.eq_any(&period_texts))
                .select((
                    indicator_cells::measure,
                    indicator_cells::period,
                    indicator_cells::area_id,
                    indicator_cells::dims,
                    indicator_cells::value,
                ))
                .into_boxed();
            if area_ids.len() <= MAX_AREA_LIST {
                q = q.filter(indicator_cells::area_id.eq_any(&area_ids));
            }
            q.load(c)
        })?
    };

    let mut cache: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    let mut folded: Folded = BTreeMap::new();
    for (measure, period, area_id, dims_text, value) in rows {
        if !area_set.contains(&area_id) {
            continue;
        }
        let (Some(n), Ok(p)) = (defs.number(&measure), Period::parse(&period)) else {
            continue;
        };
        let Some(m) = defs.measure(n) else { continue };
        let cell_dims = parsed(&mut cache, &dims_text);
        let projected: Vec<Option<String>> = dims
            .iter()
            .map(|d| if m.allows(d) { cell_dims.get(d).cloned() } else { None })
            .collect();
        *folded
            .entry((n, area_id, p))
            .or_default()
            .entry(projected)
            .or_insert(0) += value;
    }

    let year = i64::from(req.period.year());
    let targets = super::targets::targets_for(conn, snapshot, year)?;
    let baselines = super::targets::baselines_for(conn, snapshot, year)?;
    let mut target_rollup = Rollup {
        index: &index,
        map: req.map,
        period: req.period,
        explicit: &targets,
        memo: HashMap::new(),
    };
    let mut baseline_rollup = Rollup {
        index: &index,
        map: req.map,
        period: req.period,
        explicit: &baselines,
        memo: HashMap::new(),
    };

    let empty = vec![None; dims.len()];
    let mut out = Vec::new();
    for (n, m) in &selected {
        for a in &areas {
            for p in &periods {
                let zero: BTreeMap<Vec<Option<String>>, i64> =
                    [(empty.clone(), 0)].into_iter().collect();
                let entries = folded.get(&(*n, a.id, *p)).unwrap_or(&zero);
                for (projected, v) in entries {
                    let total = projected.iter().all(Option::is_none);
                    let target = if total {
                        match m.baseline {
                            // A ratio's target is a percentage: it does not add up.
                            Some(_) => target_rollup.value(&m.id, a.id, false),
                            None => target_rollup.value(&m.id, a.id, true),
                        }
                        .or(m.target)
                    } else {
                        None
                    };
                    let denominator = match (&m.baseline, total) {
                        (Some(b), true) => baseline_rollup.value(b, a.id, true),
                        _ => None,
                    };
                    let mut value = match &m.baseline {
                        Some(_) => denominator
                            .filter(|d| *d > 0.0)
                            .map(|d| round(100.0 * *v as f64 / d, 2)),
                        None => Some(*v as f64),
                    };
                    let mut numerator = Some(*v);
                    let mut achievement = match (value, target) {
                        (Some(x), Some(t)) if t > 0.0 => Some(round(x / t, 4)),
                        _ => None,
                    };
                    let suppressed = m.sensitive && *v > 0 && *v < SUPPRESS_BELOW;
                    if suppressed {
                        value = None;
                        numerator = None;
                        achievement = None;
                    }
                    out.push(ValueRow {
                        indicator: m.indicator.clone(),
                        measure: m.name.clone(),
                        unit: m.unit.clone(),
                        area: a.code.clone(),
                        area_name: a.name.clone(),
                        level,
                        period: p.to_string(),
                        dims: dims.iter().cloned().zip(projected.iter().cloned()).collect(),
                        value,
                        numerator,
                        denominator,
                        target,
                        achievement,
                        suppressed,
                    });
                }
            }
        }
    }
    Ok(ValuesTable {
        period: req.period.to_string(),
        area: req.area.clone(),
        level,
        by: req.by.clone(),
        basis: req.basis.as_str(),
        map: req.map.as_str(),
        snapshot: req.snapshot.map(|p| p.to_string()),
        cut_off,
        rows: out,
    })
}

#[derive(Debug, Clone)]
pub struct BehindRequest {
    pub indicator: String,
    /// The indicator's first measure when left out.
    pub measure: Option<String>,
    pub area: String,
    pub period: Period,
    pub basis: Basis,
    pub map: MapKind,
    /// Only the part of the number with these dimension values.
    pub filters: BTreeMap<String, String>,
    pub limit: usize,
    /// Submissions after this id (the cursor).
    pub after: i64,
}

#[derive(Debug, Serialize)]
pub struct BehindRow {
    pub instance_id: String,
    pub form_id: String,
    pub review_state: String,
    pub activity_date: Option<NaiveDate>,
    pub hamlet_code: Option<String>,
    /// What the submission adds to the number (sums and counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contribution: Option<i64>,
    /// The pseudonymous key it records (distinct measures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Whether it is the record that counts its key (the latest); the others are further
    /// records of a key already counted.
    pub counted: bool,
    pub dims: BTreeMap<String, String>,
    #[serde(skip)]
    pub submission_id: i64,
}

#[derive(Debug, Serialize)]
pub struct Behind {
    pub indicator: String,
    pub measure: String,
    pub area: String,
    pub area_name: String,
    pub level: Level,
    pub period: String,
    pub basis: &'static str,
    pub map: &'static str,
    pub filters: BTreeMap<String, String>,
    /// The number (before suppression): the sum of `contribution`, or the count of `counted`.
    pub value: i64,
    pub submissions: Vec<BehindRow>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<i64>,
}

fn matches(dims: &BTreeMap<String, String>, filters: &BTreeMap<String, String>) -> bool {
    filters.iter().all(|(k, v)| dims.get(k) == Some(v))
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    distinct_key: String,
    #[diesel(sql_type = BigInt)]
    area_id: i64,
    #[diesel(sql_type = BigInt)]
    submission_id: i64,
    #[diesel(sql_type = Date)]
    activity_date: NaiveDate,
    #[diesel(sql_type = Text)]
    dims: String,
}

type SubmissionInfo = (String, String, String, Option<String>);

fn submission_info(
    conn: &mut Conn<'_>,
    ids: &[i64],
) -> Result<HashMap<i64, SubmissionInfo>, AppError> {
    let rows: Vec<(i64, String, String, String, Option<String>)> = on_conn!(conn, c => submissions::table
        .inner_join(indicator_applied::table.on(indicator_applied::submission_id.eq(submissions::id)))
        .inner_join(submission_versions::table.on(submission_versions::id.eq(indicator_applied::version_id)))
        .filter(submissions::id.eq_any(ids))
        .select((
            submissions::id,
            submissions::instance_id,
            submissions::form_id,
            submissions::review_state,
            submission_versions::hamlet_code,
        ))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(|(id, i, f, s, h)| (id, (i, f, s, h)))
        .collect())
}

/// The submissions behind one number of the values table.
pub fn behind(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    req: &BehindRequest,
) -> Result<Behind, AppError> {
    let defs = indicators.definitions();
    let ind = defs.indicator(&req.indicator).ok_or_else(|| {
        AppError::not_found("unknown_indicator", format!("no indicator '{}'", req.indicator))
    })?;
    let m = match &req.measure {
        Some(name) => ind.measures.iter().find(|m| &m.name == name).ok_or_else(|| {
            AppError::not_found(
                "unknown_measure",
                format!(
                    "{} has no measure '{name}' (measures: {})",
                    ind.code,
                    ind.measures.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            )
        })?,
        None => ind
            .measures
            .first()
            .ok_or_else(|| AppError::internal("an indicator without measures"))?,
    };
    let n = defs
        .number(&m.id)
        .ok_or_else(|| AppError::internal("unnumbered measure"))?;
    for d in req.filters.keys() {
        if !m.allows(d) {
            return Err(AppError::bad_request(
                "unknown_dimension",
                format!("{} cannot be broken down by '{d}' (possible: {})", m.id, m.by.join(", ")),
            ));
        }
    }
    let index = indicators.area_index(conn)?;
    let roots = resolve_areas(&index, Some(&req.area), req.map, req.period)?;
    let level = roots
        .first()
        .and_then(|r| r.level())
        .unwrap_or(Level::Province);
    let area_ids: HashSet<i64> = roots.iter().map(|r| r.id).collect();
    let area_list: Vec<i64> = area_ids.iter().copied().collect();
    let period = req.period.to_string();

    let mut rows_out: Vec<BehindRow> = Vec::new();
    let mut value = 0i64;
    let mut next = None;
    if m.kind == Kind::Distinct {
        let mut sql = Sql::new(
            conn,
            "SELECT distinct_key, area_id, submission_id, activity_date, dims FROM indicator_keys WHERE snapshot = 0 AND measure = ",
        );
        sql.bind(m.id.as_str())
            .push(" AND basis = ")
            .bind(req.basis.as_str())
            .push(" AND map = ")
            .bind(req.map.as_str())
            .push(" AND level = ")
            .bind(level.as_str())
            .push(" AND period = ")
            .bind(period.as_str())
            .push(" AND area_id IN (")
            .list(&area_list)
            .push(")");
        let keys: Vec<KeyRow> = sql.load(conn)?;
        let mut by_key: BTreeMap<(i64, String), Vec<KeyRow>> = BTreeMap::new();
        for k in keys {
            by_key.entry((k.area_id, k.distinct_key.clone())).or_default().push(k);
        }
        let mut listed: Vec<(i64, BehindRow)> = Vec::new();
        for ((_, key), records) in by_key {
            let Some(rep) = records
                .iter()
                .max_by(|a, b| (a.activity_date, a.submission_id).cmp(&(b.activity_date, b.submission_id)))
            else {
                continue;
            };
            let rep_dims: BTreeMap<String, String> = serde_json::from_str(&rep.dims).unwrap_or_default();
            if !matches(&rep_dims, &req.filters) {
                continue;
            }
            value += 1;
            let rep_id = rep.submission_id;
            for r in &records {
                listed.push((
                    r.submission_id,
                    BehindRow {
                        instance_id: String::new(),
                        form_id: String::new(),
                        review_state: String::new(),
                        activity_date: Some(r.activity_date),
                        hamlet_code: None,
                        contribution: None,
                        key: Some(key.clone()),
                        counted: r.submission_id == rep_id,
                        dims: serde_json::from_str(&r.dims).unwrap_or_default(),
                        submission_id: r.submission_id,
                    },
                ));
            }
        }
        listed.sort_by_key(|(id, _)| *id);
        let mut page: Vec<BehindRow> = listed
            .into_iter()
            .filter(|(id, _)| *id > req.after)
            .map(|(_, r)| r)
            .take(req.limit + 1)
            .collect();
        if page.len() > req.limit {
            page.truncate(req.limit);
            next = page.last().map(|r| r.submission_id);
        }
        let ids: Vec<i64> = page.iter().map(|r| r.submission_id).collect();
        let info = submission_info(conn, &ids)?;
        for mut r in page {
            if let Some((instance, form, state, hamlet)) = info.get(&r.submission_id) {
                r.instance_id = instance.clone();
                r.form_id = form.clone();
                r.review_state = state.clone();
                r.hamlet_code = hamlet.clone();
            }
            rows_out.push(r);
        }
    } else {
        // The number itself, from the cells.
        let cells: Vec<(String, i64)> = on_conn!(conn, c => indicator_cells::table
            .filter(indicator_cells::snapshot.eq(0))
            .filter(indicator_cells::measure.eq(&m.id))
            .filter(indicator_cells::basis.eq(req.basis.as_str()))
            .filter(indicator_cells::map.eq(req.map.as_str()))
            .filter(indicator_cells::level.eq(level.as_str()))
            .filter(indicator_cells::period.eq(&period))
            .filter(indicator_cells::area_id.eq_any(&area_list))
            .select((indicator_cells::dims, indicator_cells::value))
            .load(c))?;
        for (d, v) in cells {
            let d: BTreeMap<String, String> = serde_json::from_str(&d).unwrap_or_default();
            if matches(&d, &req.filters) {
                value += v;
            }
        }
        // The submissions: those whose applied version falls in the period, recomputed.
        let (from, to) = req.period.bounds();
        let mut mask = vec![false; defs.measure_count()];
        mask[usize::from(n)] = true;
        let mut interner = Interner::default();
        let mut after = req.after;
        'scan: loop {
            type Row = (i64, i64, String, String, Option<String>, Option<NaiveDate>, Option<String>, String, String, bool, bool);
            let batch: Vec<Row> = on_conn!(conn, c => indicator_applied::table
                .inner_join(submissions::table.on(submissions::id.eq(indicator_applied::submission_id)))
                .inner_join(submission_versions::table.on(submission_versions::id.eq(indicator_applied::version_id)))
                .filter(submissions::form_id.eq_any(&m.forms))
                .filter(submission_versions::activity_date.ge(from))
                .filter(submission_versions::activity_date.le(to))
                .filter(submissions::id.gt(after))
                .order(submissions::id)
                .limit(500)
                .select((
                    submissions::id,
                    submission_versions::id,
                    submissions::form_id,
                    submission_versions::fields,
                    submission_versions::hamlet_code,
                    submission_versions::activity_date,
                    submission_versions::beneficiary_key,
                    submissions::review_state,
                    submissions::instance_id,
                    indicator_applied::provisional,
                    indicator_applied::confirmed,
                ))
                .load(c))?;
            if batch.is_empty() {
                break;
            }
            for (sid, vid, form, fields, hamlet, date, key, state, instance, provisional, confirmed) in batch {
                after = sid;
                let input = Input {
                    submission_id: sid,
                    version_id: vid,
                    form_id: form.clone(),
                    fields: serde_json::from_str(&fields).unwrap_or_default(),
                    hamlet_code: hamlet.clone(),
                    activity_date: date,
                    beneficiary_key: key,
                    bases: Bases {
                        provisional,
                        confirmed,
                    },
                };
                let c = contribution(defs, &index, &input, Some(&mask), &mut interner);
                let mut part = 0i64;
                let mut part_dims: Option<BTreeMap<String, String>> = None;
                for (k, v) in &c.cells {
                    if k.group.basis == req.basis
                        && k.group.map == req.map
                        && k.group.level == level
                        && k.group.period == req.period
                        && area_ids.contains(&k.group.area_id)
                    {
                        let d: BTreeMap<String, String> = serde_json::from_str(&k.dims).unwrap_or_default();
                        if matches(&d, &req.filters) {
                            part += v;
                            // Several cells (a row per sex) share the dims they have in common.
                            part_dims = Some(match part_dims {
                                None => d,
                                Some(prev) => prev
                                    .into_iter()
                                    .filter(|(k, v)| d.get(k) == Some(v))
                                    .collect(),
                            });
                        }
                    }
                }
                if part != 0 {
                    if rows_out.len() == req.limit {
                        next = rows_out.last().map(|r| r.submission_id);
                        break 'scan;
                    }
                    rows_out.push(BehindRow {
                        instance_id: instance,
                        form_id: form,
                        review_state: state,
                        activity_date: date,
                        hamlet_code: hamlet,
                        contribution: Some(part),
                        key: None,
                        counted: true,
                        dims: part_dims.unwrap_or_default(),
                        submission_id: sid,
                    });
                }
            }
        }
    }
    let area = roots.first().map(|r| (r.code.clone(), r.name.clone())).unwrap_or_default();
    Ok(Behind {
        indicator: m.indicator.clone(),
        measure: m.name.clone(),
        area: area.0,
        area_name: area.1,
        level,
        period,
        basis: req.basis.as_str(),
        map: req.map.as_str(),
        filters: req.filters.clone(),
        value,
        submissions: rows_out,
        next_cursor: next,
    })
}
