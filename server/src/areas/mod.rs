//! The area registry: province, districts, communes and hamlets over time.
//!
//! Each row of `areas` is one *version* of an area, valid from `valid_from` through `valid_to`
//! (both inclusive, `None` = open-ended), with exactly one parent version. Codes are reused
//! across reforms (from 1 July 2025 Sơn La's 75 communes carry codes of old communes), so a code
//! names an area only together with a date; two versions of one code never overlap in time.
//! A hamlet that moves from an old commune to a new one gets a second version with the same
//! code. `area_successions` links versions to the versions that continue them.

pub mod geometry;
pub mod import;
pub mod shipped;

use std::collections::HashMap;

use chrono::{Duration, NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{area_successions, areas};
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;

/// Every province of the programme is in Vietnam: UTC+7 all year, no daylight saving. "Today"
/// for validity and activity dates is the date there.
const LOCAL_OFFSET_HOURS: i64 = 7;

/// The calendar date in Vietnam at the UTC time `at`.
pub fn local_date(at: NaiveDateTime) -> NaiveDate {
    (at + Duration::hours(LOCAL_OFFSET_HOURS)).date()
}

pub fn today() -> NaiveDate {
    local_date(Utc::now().naive_utc())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = AreaLevel)]
pub enum Level {
    Province,
    District,
    Commune,
    Hamlet,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim() {
            "province" => Some(Level::Province),
            "district" => Some(Level::District),
            "commune" => Some(Level::Commune),
            "hamlet" => Some(Level::Hamlet),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Province => "province",
            Level::District => "district",
            Level::Commune => "commune",
            Level::Hamlet => "hamlet",
        }
    }
}

/// One version of an area, without its (large) geometry.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = areas)]
pub struct Area {
    pub id: i64,
    pub level: String,
    pub code: String,
    pub name: String,
    pub area_type: Option<String>,
    pub parent_id: Option<i64>,
    pub valid_from: Option<NaiveDate>,
    pub valid_to: Option<NaiveDate>,
    pub region: Option<String>,
    pub especially_difficult: Option<bool>,
    pub border: Option<bool>,
    pub demo: bool,
    pub centroid_lat: Option<f64>,
    pub centroid_lon: Option<f64>,
    pub updated_at: NaiveDateTime,
}

impl Area {
    pub fn valid_on(&self, date: NaiveDate) -> bool {
        self.valid_from.is_none_or(|f| f <= date) && self.valid_to.is_none_or(|t| t >= date)
    }

    pub fn is(&self, level: Level) -> bool {
        self.level == level.as_str()
    }
}

/// How many levels above an area its chain may reach; deeper means a corrupted table.
const MAX_DEPTH: usize = 8;

/// Every version of the areas with this code, oldest first.
pub fn versions_of(conn: &mut Conn<'_>, code: &str) -> Result<Vec<Area>, AppError> {
    Ok(versions_of_all(conn, &[code])?
        .remove(code)
        .unwrap_or_default())
}

/// The version of `code` valid on `date`, if any.
pub fn find_on(conn: &mut Conn<'_>, code: &str, date: NaiveDate) -> Result<Option<Area>, AppError> {
    Ok(versions_of(conn, code)?
        .into_iter()
        .find(|a| a.valid_on(date)))
}

/// The version a request means: the one valid on `on`, or without a date the one valid today,
/// else the latest (an area abolished before today).
pub fn pick(conn: &mut Conn<'_>, code: &str, on: Option<NaiveDate>) -> Result<Area, AppError> {
    let versions = versions_of(conn, code)?;
    if versions.is_empty() {
        return Err(AppError::not_found(
            "unknown_area",
            format!("no area has the code '{code}'"),
        ));
    }
    let date = on.unwrap_or_else(today);
    if let Some(a) = versions.iter().find(|a| a.valid_on(date)) {
        return Ok(a.clone());
    }
    match on {
        Some(d) => Err(AppError::not_found(
            "area_not_valid_on_date",
            format!("the code '{code}' names no area on {d}; leave out `on` to see its versions"),
        )),
        None => versions
            .into_iter()
            .max_by_key(|a| a.valid_to)
            .ok_or_else(|| AppError::internal("no versions")),
    }
}

pub fn get(conn: &mut Conn<'_>, id: i64) -> Result<Area, AppError> {
    Ok(on_conn!(conn, c => areas::table
        .find(id)
        .select(Area::as_select())
        .first(c))?)
}

/// Parent, grandparent… up to the top, nearest first.
pub fn ancestors(conn: &mut Conn<'_>, area: &Area) -> Result<Vec<Area>, AppError> {
    Ok(ancestors_of_all(conn, &[area])?.pop().unwrap_or_default())
}

/// The ancestors of each of `starts` (as [`ancestors`]), read a level at a time for all of them.
pub fn ancestors_of_all(conn: &mut Conn<'_>, starts: &[&Area]) -> Result<Vec<Vec<Area>>, AppError> {
    let mut known: HashMap<i64, Area> = HashMap::new();
    let mut wanted: Vec<i64> = starts.iter().filter_map(|a| a.parent_id).collect();
    // The import refuses cycles; the bound keeps a corrupted table from looping.
    for _ in 0..=MAX_DEPTH {
        wanted.retain(|id| !known.contains_key(id));
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            break;
        }
        // One parent is looked up by itself: see `versions_of_all`.
        let rows: Vec<Area> = match wanted.as_slice() {
            [id] => on_conn!(conn, c => areas::table
                .filter(areas::id.eq(id))
                .select(Area::as_select())
                .load(c))?,
            _ => on_conn!(conn, c => areas::table
                .filter(areas::id.eq_any(&wanted))
                .select(Area::as_select())
                .load(c))?,
        };
        if rows.len() != wanted.len() {
            return Err(diesel::result::Error::NotFound.into());
        }
        wanted = rows.iter().filter_map(|a| a.parent_id).collect();
        known.extend(rows.into_iter().map(|a| (a.id, a)));
    }
    Ok(starts
        .iter()
        .map(|area| {
            let mut chain: Vec<Area> = Vec::new();
            let mut next = area.parent_id;
            while let Some(parent) = next.and_then(|id| known.get(&id)) {
                if chain.len() > MAX_DEPTH {
                    break;
                }
                next = parent.parent_id;
                chain.push(parent.clone());
            }
            chain
        })
        .collect())
}

/// Every version of the areas with these codes, by code, oldest first.
pub fn versions_of_all(
    conn: &mut Conn<'_>,
    codes: &[&str],
) -> Result<HashMap<String, Vec<Area>>, AppError> {
    // PostgreSQL plans `= ANY($1)` about ten times slower than `= $1` (1 ms against 0.1 ms on
    // the benchmark machine), and most lookups are of one code or one parent.
    let rows: Vec<Area> = match codes {
        [code] => on_conn!(conn, c => areas::table
            .filter(areas::code.eq(code))
            .select(Area::as_select())
            .load(c))?,
        _ => on_conn!(conn, c => areas::table
            .filter(areas::code.eq_any(codes))
            .select(Area::as_select())
            .load(c))?,
    };
    let mut out: HashMap<String, Vec<Area>> = HashMap::new();
    for a in rows {
        out.entry(a.code.clone()).or_default().push(a);
    }
    for versions in out.values_mut() {
        // `None` (valid since before the records) sorts first.
        versions.sort_by_key(|a| a.valid_from);
    }
    Ok(out)
}

/// Children of a version that are valid on `date`.
pub fn children(conn: &mut Conn<'_>, id: i64, date: NaiveDate) -> Result<Vec<Area>, AppError> {
    let rows: Vec<Area> = on_conn!(conn, c => areas::table
        .filter(areas::parent_id.eq(id))
        .select(Area::as_select())
        .order((areas::code, areas::id))
        .load(c))?;
    Ok(rows.into_iter().filter(|a| a.valid_on(date)).collect())
}

pub fn successors(conn: &mut Conn<'_>, id: i64) -> Result<Vec<Area>, AppError> {
    let ids: Vec<i64> = on_conn!(conn, c => area_successions::table
        .filter(area_successions::predecessor_id.eq(id))
        .select(area_successions::successor_id)
        .load(c))?;
    by_ids(conn, &ids)
}

pub fn predecessors(conn: &mut Conn<'_>, id: i64) -> Result<Vec<Area>, AppError> {
    let ids: Vec<i64> = on_conn!(conn, c => area_successions::table
        .filter(area_successions::successor_id.eq(id))
        .select(area_successions::predecessor_id)
        .load(c))?;
    by_ids(conn, &ids)
}

fn by_ids(conn: &mut Conn<'_>, ids: &[i64]) -> Result<Vec<Area>, AppError> {
    Ok(on_conn!(conn, c => areas::table
        .filter(areas::id.eq_any(ids))
        .select(Area::as_select())
        .order((areas::code, areas::id))
        .load(c))?)
}

/// Every version valid on `date`.
pub fn valid_on(conn: &mut Conn<'_>, date: NaiveDate) -> Result<Vec<Area>, AppError> {
    Ok(on_conn!(conn, c => areas::table
        .filter(areas::valid_from.is_null().or(areas::valid_from.le(date)))
        .filter(areas::valid_to.is_null().or(areas::valid_to.ge(date)))
        .select(Area::as_select())
        .order((areas::code, areas::id))
        .load(c))?)
}

/// The versions of one level that are valid on `date`.
pub fn valid_at_level_on(
    conn: &mut Conn<'_>,
    level: Level,
    date: NaiveDate,
) -> Result<Vec<Area>, AppError> {
    Ok(on_conn!(conn, c => areas::table
        .filter(areas::level.eq(level.as_str()))
        .filter(areas::valid_from.is_null().or(areas::valid_from.le(date)))
        .filter(areas::valid_to.is_null().or(areas::valid_to.ge(date)))
        .select(Area::as_select())
        .order((areas::code, areas::id))
        .load(c))?)
}

/// The stored GeoJSON geometry of a version.
pub fn geometry_text(conn: &mut Conn<'_>, id: i64) -> Result<Option<String>, AppError> {
    Ok(on_conn!(conn, c => areas::table
        .find(id)
        .select(areas::geometry)
        .first(c))?)
}

pub fn count(conn: &mut Conn<'_>) -> Result<i64, AppError> {
    Ok(on_conn!(conn, c => areas::table.count().get_result(c))?)
}

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

/// An area version as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Area)]
pub struct AreaView {
    pub code: String,
    pub name: String,
    pub level: String,
    #[serde(rename = "type")]
    pub area_type: Option<String>,
    pub valid_from: Option<NaiveDate>,
    pub valid_to: Option<NaiveDate>,
    pub region: Option<String>,
    pub especially_difficult: Option<bool>,
    pub border: Option<bool>,
    pub demo: bool,
    pub centroid: Option<LatLon>,
}

impl From<&Area> for AreaView {
    fn from(a: &Area) -> Self {
        AreaView {
            code: a.code.clone(),
            name: a.name.clone(),
            level: a.level.clone(),
            area_type: a.area_type.clone(),
            valid_from: a.valid_from,
            valid_to: a.valid_to,
            region: a.region.clone(),
            especially_difficult: a.especially_difficult,
            border: a.border,
            demo: a.demo,
            centroid: match (a.centroid_lat, a.centroid_lon) {
                (Some(lat), Some(lon)) => Some(LatLon { lat, lon }),
                _ => None,
            },
        }
    }
}

fn views(list: &[Area]) -> Vec<AreaView> {
    list.iter().map(AreaView::from).collect()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AreaTreeNode)]
pub struct TreeNode {
    #[serde(flatten)]
    pub area: AreaView,
    #[schema(no_recursion)]
    pub children: Vec<TreeNode>,
}

/// The areas valid on `date` as trees from their roots (the province).
pub fn tree(conn: &mut Conn<'_>, date: NaiveDate) -> Result<Vec<TreeNode>, AppError> {
    let all = valid_on(conn, date)?;
    let mut by_parent: HashMap<Option<i64>, Vec<&Area>> = HashMap::new();
    let ids: std::collections::HashSet<i64> = all.iter().map(|a| a.id).collect();
    for a in &all {
        // A version whose parent is not valid that day would be orphaned; show it at the top
        // rather than lose it.
        let parent = a.parent_id.filter(|p| ids.contains(p));
        by_parent.entry(parent).or_default().push(a);
    }
    fn build(a: &Area, by_parent: &HashMap<Option<i64>, Vec<&Area>>, depth: usize) -> TreeNode {
        let children = if depth > 8 {
            Vec::new()
        } else {
            by_parent
                .get(&Some(a.id))
                .map(|list| {
                    list.iter()
                        .map(|c| build(c, by_parent, depth + 1))
                        .collect()
                })
                .unwrap_or_default()
        };
        TreeNode {
            area: AreaView::from(a),
            children,
        }
    }
    Ok(by_parent
        .get(&None)
        .map(|roots| roots.iter().map(|r| build(r, &by_parent, 0)).collect())
        .unwrap_or_default())
}

/// An area version with its neighbours in the hierarchy and in time.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AreaDetail)]
pub struct Detail {
    #[serde(flatten)]
    pub area: AreaView,
    /// Parent, grandparent… nearest first.
    pub parents: Vec<AreaView>,
    /// Children valid on the date asked for (or on the version's last day).
    pub children: Vec<AreaView>,
    /// Versions this one continues (merged, split or re-parented units).
    pub predecessors: Vec<AreaView>,
    /// Versions that continue this one.
    pub successors: Vec<AreaView>,
    /// Every version that carries this code, oldest first.
    pub versions: Vec<AreaView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geometry: Option<serde_json::Value>,
}

pub fn detail(
    conn: &mut Conn<'_>,
    code: &str,
    on: Option<NaiveDate>,
    with_geometry: bool,
) -> Result<Detail, AppError> {
    let area = pick(conn, code, on)?;
    let date = match on {
        Some(d) => d,
        None => {
            let t = today();
            if area.valid_on(t) {
                t
            } else {
                area.valid_to.or(area.valid_from).unwrap_or(t)
            }
        }
    };
    let geometry = if with_geometry {
        geometry_text(conn, area.id)?
            .map(|g| serde_json::from_str(&g))
            .transpose()
            .map_err(|e| AppError::internal(format!("stored geometry is not JSON: {e}")))?
    } else {
        None
    };
    Ok(Detail {
        parents: views(&ancestors(conn, &area)?),
        children: views(&children(conn, area.id, date)?),
        predecessors: views(&predecessors(conn, area.id)?),
        successors: views(&successors(conn, area.id)?),
        versions: views(&versions_of(conn, code)?),
        area: AreaView::from(&area),
        geometry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_date_is_vietnam_time() {
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(
            local_date(at("2025-06-30 16:59:59")),
            NaiveDate::from_ymd_opt(2025, 6, 30).unwrap()
        );
        assert_eq!(
            local_date(at("2025-06-30 17:00:00")),
            NaiveDate::from_ymd_opt(2025, 7, 1).unwrap()
        );
    }
}
