//! Reading figures: the values table (any area, level, period, breakdown, basis and map, live
//! or as a closed period was reported) and the submissions behind one number. Reads only the
//! maintained cells, never the submissions (except to list those behind a number).

// Cell keys here are tuples of the dimensions they group by; naming each would hide that.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use super::closing;
use super::contribution::{
    add_facts, placement_of, Basis, CellKey, Interner, Levels, MapTag, StoredFact,
};
use super::definition::{Definitions, Kind, Measure, Text as Wording};
use super::period::{Grain, Period};
use super::registry::{AreaIndex, MapKind, Node};
use super::store::facts_in;
use super::Indicators;
use crate::areas::Level;
use crate::db::schema::{
    indicator_applied, indicator_cells, indicator_rollups, submission_versions, submissions,
};
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

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
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
    /// Per name, the areas with a value of their own and every area above them: only there can
    /// a roll-up find one. Without it every total of the table walked down to each hamlet.
    reach: HashMap<&'a str, HashSet<i64>>,
    memo: HashMap<(&'a str, i64), Option<f64>>,
}

impl<'a> Rollup<'a> {
    fn new(
        index: &'a AreaIndex,
        map: MapKind,
        period: Period,
        explicit: &'a HashMap<(String, i64), f64>,
    ) -> Rollup<'a> {
        let mut reach: HashMap<&str, HashSet<i64>> = HashMap::new();
        for (name, area) in explicit.keys() {
            let above = reach.entry(name.as_str()).or_default();
            let mut at = Some(*area);
            while let Some(id) = at {
                if !above.insert(id) {
                    break;
                }
                at = index.get(id).and_then(|n| n.parent_id);
            }
        }
        Rollup {
            index,
            map,
            period,
            explicit,
            reach,
            memo: HashMap::new(),
        }
    }

    fn value(&mut self, name: &'a str, area: i64, sum_children: bool) -> Option<f64> {
        if !self.reach.get(name).is_some_and(|r| r.contains(&area)) {
            return None;
        }
        if let Some(v) = self.memo.get(&(name, area)) {
            return *v;
        }
        let mut v = self.explicit.get(&(name.to_string(), area)).copied();
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
        self.memo.insert((name, area), v);
        v
    }
}

type Folded = BTreeMap<(u16, i64, Period), BTreeMap<Vec<Option<String>>, i64>>;

/// Which figures to read.
pub struct Scope<'a> {
    /// 0 for the live figures, else a closed period's snapshot.
    pub snapshot: i64,
    pub measures: &'a [String],
    pub basis: Basis,
    pub map: MapKind,
    pub level: Level,
    pub periods: &'a [Period],
    pub areas: &'a [&'a Node],
}

/// (measure, period, area id, dims, value) of the figures in `scope`, at the measure's finest
/// dims. Stored rows of one figure (approved and pending, on both maps and on one) are summed
/// by the caller.
type Row = (String, String, i64, String, i64);

fn figure_rows(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    index: &AreaIndex,
    scope: &Scope<'_>,
) -> Result<Vec<Row>, AppError> {
    if scope.areas.is_empty() || scope.measures.is_empty() {
        return Ok(Vec::new());
    }
    if scope.level == Level::Hamlet && scope.snapshot == 0 {
        return hamlet_rows(conn, defs, index, scope);
    }
    let basis: Vec<&str> = scope.basis.tags().iter().map(|t| t.as_str()).collect();
    let maps: Vec<&str> = MapTag::for_map(scope.map)
        .iter()
        .map(|t| t.as_str())
        .collect();
    let periods: Vec<String> = scope.periods.iter().map(Period::to_string).collect();
    let area_ids: Vec<i64> = scope.areas.iter().map(|a| a.id).collect();
    let level = scope.level.as_str();
    let rows: Vec<Row> = on_conn!(conn, c => {
        let mut q = indicator_cells::table
            .filter(indicator_cells::snapshot.eq(scope.snapshot))
            .filter(indicator_cells::measure.eq_any(scope.measures))
            .filter(indicator_cells::basis.eq_any(&basis))
            .filter(indicator_cells::map.eq_any(&maps))
            .filter(indicator_cells::level.eq(level))
            .filter(indicator_cells::period.eq_any(&periods))
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
    })?;
    let wanted: HashSet<i64> = area_ids.into_iter().collect();
    Ok(rows.into_iter().filter(|r| wanted.contains(&r.2)).collect())
}

/// Sums figures at the measures' finest dims to the table's `dims`. A province table folds
/// tens of thousands of cells: each distinct dims text is parsed once, and a row's measure and
/// period are looked up only when they change (stored cells come ordered by them).
fn fold(defs: &Definitions, rows: Vec<Row>, dims: &[String]) -> Folded {
    let mut texts: HashMap<String, usize> = HashMap::new();
    let mut sums: HashMap<(u16, i64, Period, usize), i64> = HashMap::new();
    let mut measure_of: Option<(String, u16)> = None;
    let mut period_of: Option<(String, Period)> = None;
    for (measure, period, area_id, text, value) in rows {
        let n = match &measure_of {
            Some((m, n)) if *m == measure => *n,
            _ => {
                let Some(n) = defs.number(&measure) else {
                    continue;
                };
                measure_of = Some((measure, n));
                n
            }
        };
        let p = match &period_of {
            Some((s, p)) if *s == period => *p,
            _ => {
                let Ok(p) = Period::parse(&period) else {
                    continue;
                };
                period_of = Some((period, p));
                p
            }
        };
        let next = texts.len();
        let id = *texts.entry(text).or_insert(next);
        *sums.entry((n, area_id, p, id)).or_insert(0) += value;
    }
    let mut parsed: Vec<BTreeMap<String, String>> = vec![BTreeMap::new(); texts.len()];
    for (text, id) in texts {
        parsed[id] = serde_json::from_str(&text).unwrap_or_default();
    }
    let mut folded: Folded = BTreeMap::new();
    for ((n, area_id, p, id), value) in sums {
        let Some(m) = defs.measure(n) else { continue };
        let projected: Vec<Option<String>> = dims
            .iter()
            .map(|d| {
                if m.allows(d) {
                    parsed[id].get(d).cloned()
                } else {
                    None
                }
            })
            .collect();
        *folded
            .entry((n, area_id, p))
            .or_default()
            .entry(projected)
            .or_insert(0) += value;
    }
    folded
}

/// The figures in `scope` summed to at most one dimension, read from the stored roll-ups: a
/// row per figure and value rather than every combination of dims its cells hold. The same as
/// folding the cells ([`fold`]): a measure that cannot be broken down by `dim` gives its
/// totals, and cells without a value for `dim` give the total less the values.
fn rolled_up(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    scope: &Scope<'_>,
    dim: Option<&str>,
) -> Result<Folded, AppError> {
    let mut folded: Folded = BTreeMap::new();
    if scope.areas.is_empty() || scope.measures.is_empty() {
        return Ok(folded);
    }
    let basis: Vec<&str> = scope.basis.tags().iter().map(|t| t.as_str()).collect();
    let maps: Vec<&str> = MapTag::for_map(scope.map)
        .iter()
        .map(|t| t.as_str())
        .collect();
    let periods: Vec<String> = scope.periods.iter().map(Period::to_string).collect();
    let area_ids: Vec<i64> = scope.areas.iter().map(|a| a.id).collect();
    let dims: Vec<&str> = std::iter::once("").chain(dim).collect();
    let rows: Vec<(String, String, i64, String, String, i64)> = on_conn!(conn, c => {
        let mut q = indicator_rollups::table
            .filter(indicator_rollups::snapshot.eq(scope.snapshot))
            .filter(indicator_rollups::measure.eq_any(scope.measures))
            .filter(indicator_rollups::basis.eq_any(&basis))
            .filter(indicator_rollups::map.eq_any(&maps))
            .filter(indicator_rollups::level.eq(scope.level.as_str()))
            .filter(indicator_rollups::period.eq_any(&periods))
            .filter(indicator_rollups::dim.eq_any(&dims))
            .select((
                indicator_rollups::measure,
                indicator_rollups::period,
                indicator_rollups::area_id,
                indicator_rollups::dim,
                indicator_rollups::dim_value,
                indicator_rollups::value,
            ))
            .into_boxed();
        if area_ids.len() <= MAX_AREA_LIST {
            q = q.filter(indicator_rollups::area_id.eq_any(&area_ids));
        }
        q.load(c)
    })?;
    let wanted: HashSet<i64> = area_ids.into_iter().collect();
    // Per figure: its total and what its values of `dim` add up to.
    let mut totals: HashMap<(u16, i64, Period), (i64, i64)> = HashMap::new();
    for (measure, period, area_id, row_dim, value_of, value) in rows {
        let (Some(n), Ok(p)) = (defs.number(&measure), Period::parse(&period)) else {
            continue;
        };
        let Some(m) = defs.measure(n) else { continue };
        if !wanted.contains(&area_id) {
            continue;
        }
        let by = dim.filter(|d| m.allows(d));
        let projected = match (by, row_dim.is_empty()) {
            (None, true) => dim.map(|_| None).into_iter().collect(),
            (None, false) => continue,
            (Some(_), true) => {
                totals.entry((n, area_id, p)).or_default().0 += value;
                continue;
            }
            (Some(_), false) => {
                totals.entry((n, area_id, p)).or_default().1 += value;
                vec![Some(value_of)]
            }
        };
        *folded
            .entry((n, area_id, p))
            .or_default()
            .entry(projected)
            .or_insert(0) += value;
    }
    for (figure, (total, of_values)) in totals {
        if total != of_values {
            *folded
                .entry(figure)
                .or_default()
                .entry(vec![None])
                .or_insert(0) += total - of_values;
        }
    }
    Ok(folded)
}

/// Hamlet figures, computed from the facts (only figures from commune level up are stored).
fn hamlet_rows(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    index: &AreaIndex,
    scope: &Scope<'_>,
) -> Result<Vec<Row>, AppError> {
    let from = scope.periods.iter().map(|p| p.bounds().0).min();
    let to = scope.periods.iter().map(|p| p.bounds().1).max();
    let (Some(from), Some(to)) = (from, to) else {
        return Ok(Vec::new());
    };
    let mut codes: Vec<String> = scope.areas.iter().map(|a| a.code.clone()).collect();
    codes.sort();
    codes.dedup();
    let mut interner = Interner::default();
    let mut facts = facts_in(conn, defs, scope.measures, from, to, &codes, &mut interner)?;
    let mut cells: HashMap<CellKey, i64> = HashMap::new();
    add_facts(
        defs,
        index,
        &mut facts,
        Levels::Hamlet,
        &mut cells,
        &mut interner,
    );
    let basis = scope.basis.tags();
    let maps = MapTag::for_map(scope.map);
    let areas: HashSet<i64> = scope.areas.iter().map(|a| a.id).collect();
    Ok(cells
        .into_iter()
        .filter(|(k, v)| {
            *v != 0
                && basis.contains(&k.group.basis)
                && maps.contains(&k.group.map)
                && scope.periods.contains(&k.group.period)
                && areas.contains(&k.group.area_id)
        })
        .filter_map(|(k, v)| {
            let m = defs.measure(k.measure)?;
            Some((
                m.id.clone(),
                k.group.period.to_string(),
                k.group.area_id,
                k.dims.to_string(),
                v,
            ))
        })
        .collect())
}

/// A figure's place: (measure, period, area id, dims).
pub type FigureKey = (String, String, i64, String);

/// Every figure in `scope` at the measures' finest dims: [`FigureKey`] → value. What the values
/// table is folded from.
pub fn figures(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    scope: &Scope<'_>,
) -> Result<BTreeMap<FigureKey, i64>, AppError> {
    let index = indicators.area_index(conn)?;
    let mut out = BTreeMap::new();
    for (m, p, a, d, v) in figure_rows(conn, indicators.definitions(), &index, scope)? {
        *out.entry((m, p, a, d)).or_insert(0) += v;
    }
    out.retain(|_, v| *v != 0);
    Ok(out)
}

pub fn values(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    req: &ValuesRequest,
) -> Result<ValuesTable, AppError> {
    let (frozen, snapshot, cut_off) = match req.snapshot {
        None => (None, 0, Utc::now().naive_utc()),
        Some(p) => {
            let row = closing::find(conn, p)?.ok_or_else(|| {
                AppError::not_found(
                    "period_not_closed",
                    format!("the period {p} has not been closed"),
                )
            })?;
            if !p.covers(req.period) {
                return Err(AppError::bad_request(
                    "period_outside_snapshot",
                    format!(
                        "the snapshot of {p} holds {p} and the periods within it, not {}",
                        req.period
                    ),
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
                    defs.indicators
                        .iter()
                        .map(|i| i.code.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
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
                let g = if b == "month" {
                    Grain::Month
                } else {
                    Grain::Quarter
                };
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
    let scope = Scope {
        snapshot,
        measures: &ids,
        basis: req.basis,
        map: req.map,
        level,
        periods: &periods,
        areas: &areas,
    };
    // Hamlet figures are not stored (they come from the facts), so neither are their roll-ups.
    let stored = !(level == Level::Hamlet && snapshot == 0);
    let folded = match dims.as_slice() {
        [] if stored => rolled_up(conn, defs, &scope, None)?,
        [dim] if stored => rolled_up(conn, defs, &scope, Some(dim))?,
        _ => fold(defs, figure_rows(conn, defs, &index, &scope)?, &dims),
    };

    let year = i64::from(req.period.year());
    let targets = super::targets::targets_for(conn, snapshot, year)?;
    let baselines = super::targets::baselines_for(conn, snapshot, year)?;
    let mut target_rollup = Rollup::new(&index, req.map, req.period, &targets);
    let mut baseline_rollup = Rollup::new(&index, req.map, req.period, &baselines);

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
                        dims: dims
                            .iter()
                            .cloned()
                            .zip(projected.iter().cloned())
                            .collect(),
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = BehindValue)]
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

/// A fact counted in the number: the fact, the area it counts in, its dims.
type Counted = (StoredFact, i64, Arc<str>);

/// One submission's part of a sum: value, the dims its facts share, activity date, hamlet.
type Part = (i64, Option<BTreeMap<String, String>>, NaiveDate, Arc<str>);

/// The submissions behind one number of the values table, from the facts it is made of.
pub fn behind(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    req: &BehindRequest,
) -> Result<Behind, AppError> {
    let defs = indicators.definitions();
    let ind = defs.indicator(&req.indicator).ok_or_else(|| {
        AppError::not_found(
            "unknown_indicator",
            format!("no indicator '{}'", req.indicator),
        )
    })?;
    let m = match &req.measure {
        Some(name) => ind
            .measures
            .iter()
            .find(|m| &m.name == name)
            .ok_or_else(|| {
                AppError::not_found(
                    "unknown_measure",
                    format!(
                        "{} has no measure '{name}' (measures: {})",
                        ind.code,
                        ind.measures
                            .iter()
                            .map(|m| m.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?,
        None => ind
            .measures
            .first()
            .ok_or_else(|| AppError::internal("an indicator without measures"))?,
    };
    for d in req.filters.keys() {
        if !m.allows(d) {
            return Err(AppError::bad_request(
                "unknown_dimension",
                format!(
                    "{} cannot be broken down by '{d}' (possible: {})",
                    m.id,
                    m.by.join(", ")
                ),
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
    let (from, to) = req.period.bounds();
    let mut hamlets: Vec<String> = Vec::new();
    for r in &roots {
        hamlets.extend(
            index
                .descendants_at(r.id, Level::Hamlet, req.map, from, to)
                .into_iter()
                .map(|h| h.code.clone()),
        );
    }
    hamlets.sort();
    hamlets.dedup();
    let mut interner = Interner::default();
    let facts = facts_in(
        conn,
        defs,
        std::slice::from_ref(&m.id),
        from,
        to,
        &hamlets,
        &mut interner,
    )?;

    // Each fact that counts in the number's area, period and basis, with its dims there.
    let in_basis = |f: &StoredFact| match req.basis {
        Basis::Provisional => f.bases.provisional,
        Basis::Confirmed => f.bases.confirmed,
    };
    let mut counted: Vec<Counted> = Vec::new();
    for f in facts {
        if !in_basis(&f) || !req.period.contains_date(f.date) {
            continue;
        }
        let Some((chain, dims)) = placement_of(defs, &index, &f, req.map, &mut interner) else {
            continue;
        };
        let Some(area) = chain
            .iter()
            .find(|(l, id)| *l == level && area_ids.contains(id))
            .map(|(_, id)| *id)
        else {
            continue;
        };
        counted.push((f, area, dims));
    }

    let mut listed: Vec<BehindRow> = Vec::new();
    let mut value = 0i64;
    if m.kind == Kind::Distinct {
        let mut by_key: BTreeMap<(i64, Arc<str>), Vec<&Counted>> = BTreeMap::new();
        for c in &counted {
            if let Some(k) = &c.0.key {
                by_key.entry((c.1, k.clone())).or_default().push(c);
            }
        }
        for ((_, key), records) in by_key {
            let Some(latest) = records
                .iter()
                .max_by_key(|(f, _, _)| (f.date, f.submission_id))
            else {
                continue;
            };
            if !matches(interner.parsed(&latest.2), &req.filters) {
                continue;
            }
            value += 1;
            let latest_id = latest.0.submission_id;
            for (f, _, dims) in records {
                listed.push(BehindRow {
                    instance_id: String::new(),
                    form_id: String::new(),
                    review_state: String::new(),
                    activity_date: Some(f.date),
                    hamlet_code: Some(f.hamlet.to_string()),
                    contribution: None,
                    key: Some(key.to_string()),
                    counted: f.submission_id == latest_id,
                    dims: interner.parsed(dims).clone(),
                    submission_id: f.submission_id,
                });
            }
        }
    } else {
        let mut parts: BTreeMap<i64, Part> = BTreeMap::new();
        for (f, _, dims) in &counted {
            let d = interner.parsed(dims).clone();
            if !matches(&d, &req.filters) {
                continue;
            }
            value += f.value;
            let e = parts
                .entry(f.submission_id)
                .or_insert((0, None, f.date, f.hamlet.clone()));
            e.0 += f.value;
            // Several facts (a row per sex) share the dims they have in common.
            e.1 = Some(match e.1.take() {
                None => d,
                Some(prev) => prev
                    .into_iter()
                    .filter(|(k, v)| d.get(k) == Some(v))
                    .collect(),
            });
        }
        for (sid, (part, dims, date, hamlet)) in parts {
            if part == 0 {
                continue;
            }
            listed.push(BehindRow {
                instance_id: String::new(),
                form_id: String::new(),
                review_state: String::new(),
                activity_date: Some(date),
                hamlet_code: Some(hamlet.to_string()),
                contribution: Some(part),
                key: None,
                counted: true,
                dims: dims.unwrap_or_default(),
                submission_id: sid,
            });
        }
    }
    listed.sort_by_key(|r| r.submission_id);
    let mut page: Vec<BehindRow> = listed
        .into_iter()
        .filter(|r| r.submission_id > req.after)
        .take(req.limit + 1)
        .collect();
    let mut next = None;
    if page.len() > req.limit {
        page.truncate(req.limit);
        next = page.last().map(|r| r.submission_id);
    }
    let ids: Vec<i64> = page.iter().map(|r| r.submission_id).collect();
    let info = submission_info(conn, &ids)?;
    for r in &mut page {
        if let Some((instance, form, state, _)) = info.get(&r.submission_id) {
            r.instance_id = instance.clone();
            r.form_id = form.clone();
            r.review_state = state.clone();
        }
    }
    let area = roots
        .first()
        .map(|r| (r.code.clone(), r.name.clone()))
        .unwrap_or_default();
    Ok(Behind {
        indicator: m.indicator.clone(),
        measure: m.name.clone(),
        area: area.0,
        area_name: area.1,
        level,
        period: req.period.to_string(),
        basis: req.basis.as_str(),
        map: req.map.as_str(),
        filters: req.filters.clone(),
        value,
        submissions: page,
        next_cursor: next,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::contribution::{BasisTag, Group};
    use super::*;

    fn node(id: i64, level: Level, parent_id: Option<i64>) -> Node {
        Node {
            id,
            level: level.as_str().to_string(),
            code: format!("A{id}"),
            name: format!("Area {id}"),
            parent_id,
            valid_from: None,
            valid_to: None,
            region: None,
            especially_difficult: None,
        }
    }

    /// Province 1; districts 2 and 3; communes 4 and 5 in 2, 6 in 3; a hamlet in each commune.
    fn index() -> AreaIndex {
        AreaIndex::from_nodes(vec![
            node(1, Level::Province, None),
            node(2, Level::District, Some(1)),
            node(3, Level::District, Some(1)),
            node(4, Level::Commune, Some(2)),
            node(5, Level::Commune, Some(2)),
            node(6, Level::Commune, Some(3)),
            node(7, Level::Hamlet, Some(4)),
            node(8, Level::Hamlet, Some(5)),
            node(9, Level::Hamlet, Some(6)),
        ])
    }

    #[test]
    fn targets_roll_up_only_from_areas_that_have_one() {
        let index = index();
        let explicit: HashMap<(String, i64), f64> = [
            (("m".to_string(), 4), 10.0),
            (("m".to_string(), 5), 5.0),
            (("m".to_string(), 3), 7.0),
            (("m".to_string(), 9), 100.0),
        ]
        .into_iter()
        .collect();
        let mut r = Rollup::new(&index, MapKind::AsRecorded, Period::Year(2025), &explicit);
        // District 3's own target wins over its hamlet's.
        assert_eq!(r.value("m", 3, true), Some(7.0));
        assert_eq!(r.value("m", 2, true), Some(15.0));
        assert_eq!(r.value("m", 1, true), Some(22.0));
        assert_eq!(r.value("m", 6, true), Some(100.0));
        assert_eq!(r.value("m", 7, true), None);
        assert_eq!(r.value("other", 1, true), None);
        // A ratio's target does not add up.
        let mut ratio = Rollup::new(&index, MapKind::AsRecorded, Period::Year(2025), &explicit);
        assert_eq!(ratio.value("m", 1, false), None);
        assert_eq!(ratio.value("m", 4, false), Some(10.0));
    }

    fn definitions() -> Definitions {
        let measure = |name: &str, by: &str, extra: &str| {
            format!("[[measures]]\nname = \"{name}\"\nunit = {{ vi = \"a\", en = \"b\" }}\nkind = \"sum\"\nforms = [\"f\"]\nsplit = {{ dim = \"sex\", fields = {{ female = \"w\", male = \"m\" }} }}\nby = [{by}]\n{extra}")
        };
        let toml = format!(
            "code = \"T-1\"\nstatus = \"working\"\nsource = \"test\"\nwording = {{ vi = \"v\", en = \"e\" }}\n{}{}",
            measure(
                "both",
                "\"sex\", \"ethnicity\"",
                "dims.ethnicity = { field = \"eth\" }\n"
            ),
            measure("sex_only", "\"sex\"", "")
        );
        Definitions::parse(&[("T.toml".to_string(), toml)]).expect("definitions")
    }

    /// The fold as the table means it, one row at a time.
    fn reference(defs: &Definitions, rows: &[Row], dims: &[String]) -> Folded {
        let mut out: Folded = BTreeMap::new();
        for (measure, period, area_id, text, value) in rows {
            let (Some(n), Ok(p)) = (defs.number(measure), Period::parse(period)) else {
                continue;
            };
            let Some(m) = defs.measure(n) else { continue };
            let cell: BTreeMap<String, String> = serde_json::from_str(text).expect("dims");
            let projected = dims
                .iter()
                .map(|d| m.allows(d).then(|| cell.get(d).cloned()).flatten())
                .collect();
            *out.entry((n, *area_id, p))
                .or_default()
                .entry(projected)
                .or_insert(0) += value;
        }
        out
    }

    fn row() -> impl Strategy<Value = Row> {
        (
            prop::sample::select(vec!["T-1/both", "T-1/sex_only", "T-9/gone"]),
            prop::sample::select(vec!["2025", "2025-Q3", "2025-07"]),
            1i64..4,
            prop::sample::select(vec![
                r#"{"ethnicity":"01","sex":"female"}"#,
                r#"{"ethnicity":"01","sex":"male"}"#,
                r#"{"ethnicity":"08","sex":"female"}"#,
                r#"{"sex":"male"}"#,
                r#"{}"#,
            ]),
            1i64..50,
        )
            .prop_map(|(m, p, a, d, v)| (m.to_string(), p.to_string(), a, d.to_string(), v))
    }

    proptest! {
        #[test]
        fn folding_cells_sums_them_to_the_asked_dims(
            rows in prop::collection::vec(row(), 0..60),
            by in prop::sample::subsequence(vec!["ethnicity", "sex", "age_band"], 0..=3),
        ) {
            let defs = definitions();
            let dims: Vec<String> = by.iter().map(|d| d.to_string()).collect();
            prop_assert_eq!(fold(&defs, rows.clone(), &dims), reference(&defs, &rows, &dims));
        }
    }

    /// A cell's place: measure, basis, map, period, area, dims.
    type Place = (
        &'static str,
        BasisTag,
        MapTag,
        &'static str,
        i64,
        &'static str,
    );

    fn place() -> impl Strategy<Value = Place> {
        (
            prop::sample::select(vec!["T-1/both", "T-1/sex_only"]),
            prop::sample::select(vec![BasisTag::Approved, BasisTag::Pending]),
            prop::sample::select(vec![MapTag::Current, MapTag::Both, MapTag::AsRecorded]),
            prop::sample::select(vec!["2025", "2025-Q3"]),
            4i64..7,
            prop::sample::select(vec![
                r#"{"ethnicity":"01","sex":"female"}"#,
                r#"{"ethnicity":"01","sex":"male"}"#,
                r#"{"ethnicity":"08","sex":"female"}"#,
                r#"{"sex":"male"}"#,
                r#"{}"#,
            ]),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// The writer keeps the roll-ups beside the cells, and a table by at most one dimension
        /// read from them is the table folded from the cells, after any sequence of writes
        /// (some taking cells back to 0, which removes them and their roll-ups of 0).
        #[test]
        fn roll_ups_read_as_the_cells_folded(
            writes in prop::collection::vec(prop::collection::vec((place(), -6i64..8), 1..12), 1..6),
        ) {
            let defs = definitions();
            let index = index();
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
            let (_, mut db) = crate::db::connect(&url).expect("database");
            let mut conn = db.conn();
            let mut model: BTreeMap<CellKey, i64> = BTreeMap::new();
            for write in writes {
                let mut amounts: BTreeMap<CellKey, i64> = BTreeMap::new();
                for ((measure, basis, map, period, area_id, dims), change) in write {
                    let key = CellKey {
                        measure: defs.number(measure).expect("measure"),
                        group: Group {
                            basis,
                            map,
                            level: Level::Commune,
                            period: Period::parse(period).expect("period"),
                            area_id,
                        },
                        dims: Arc::from(dims),
                    };
                    // Figures never go below 0.
                    let now = model.get(&key).copied().unwrap_or(0) + amounts.get(&key).copied().unwrap_or(0);
                    *amounts.entry(key).or_insert(0) += (now + change).max(0) - now;
                }
                for (k, v) in &amounts {
                    *model.entry(k.clone()).or_insert(0) += v;
                }
                let amounts: Vec<(&CellKey, i64)> =
                    amounts.iter().filter(|(_, v)| **v != 0).map(|(k, v)| (k, *v)).collect();
                super::super::store::add_to_cells(&mut conn, &defs, 0, &amounts).expect("write");
            }
            let zeros: (i64, i64) = on_conn!(&mut conn, c => Ok::<_, diesel::result::Error>((
                indicator_cells::table
                    .filter(indicator_cells::value.eq(0))
                    .count()
                    .get_result(c)?,
                indicator_rollups::table
                    .filter(indicator_rollups::value.eq(0))
                    .count()
                    .get_result(c)?,
            )))
            .expect("count");
            prop_assert_eq!(zeros, (0, 0));
            let areas: Vec<&Node> = [4, 5, 6].iter().filter_map(|id| index.get(*id)).collect();
            let measures = vec!["T-1/both".to_string(), "T-1/sex_only".to_string()];
            let periods = [Period::Year(2025), Period::parse("2025-Q3").expect("quarter")];
            for map in [MapKind::Current, MapKind::AsRecorded] {
                let scope = Scope {
                    snapshot: 0,
                    measures: &measures,
                    basis: Basis::Provisional,
                    map,
                    level: Level::Commune,
                    periods: &periods,
                    areas: &areas,
                };
                for dim in [None, Some("ethnicity"), Some("sex"), Some("age_band")] {
                    let dims: Vec<String> = dim.iter().map(|d| d.to_string()).collect();
                    let cells = figure_rows(&mut conn, &defs, &index, &scope).expect("cells");
                    prop_assert_eq!(
                        rolled_up(&mut conn, &defs, &scope, dim).expect("roll-ups"),
                        fold(&defs, cells, &dims),
                        "by {:?} on {:?}", dim, map
                    );
                }
            }
        }
    }

    #[test]
    fn folding_sums_the_cells_of_one_figure_and_drops_dims_a_measure_lacks() {
        let defs = definitions();
        let r = |m: &str, a: i64, d: &str, v: i64| {
            (m.to_string(), "2025".to_string(), a, d.to_string(), v)
        };
        let rows = vec![
            r("T-1/both", 1, r#"{"ethnicity":"01","sex":"female"}"#, 3),
            r("T-1/both", 1, r#"{"ethnicity":"01","sex":"male"}"#, 4),
            r("T-1/both", 1, r#"{"ethnicity":"08","sex":"female"}"#, 5),
            r("T-1/sex_only", 1, r#"{"ethnicity":"01","sex":"male"}"#, 6),
            r("T-1/both", 1, r#"{"ethnicity":"01","sex":"female"}"#, 1),
        ];
        let folded = fold(&defs, rows, &["ethnicity".to_string()]);
        let both = defs.number("T-1/both").expect("both");
        let sex_only = defs.number("T-1/sex_only").expect("sex_only");
        let year = Period::Year(2025);
        let got = |n: u16| -> Vec<(Vec<Option<String>>, i64)> {
            folded[&(n, 1, year)].clone().into_iter().collect()
        };
        assert_eq!(
            got(both),
            vec![
                (vec![Some("01".to_string())], 8),
                (vec![Some("08".to_string())], 5)
            ]
        );
        assert_eq!(got(sex_only), vec![(vec![None], 6)]);
    }
}
