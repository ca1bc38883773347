//! Importing areas: CSV rows (one area version each) and GeoJSON features (boundaries and
//! centroids). An import is all or nothing: the caller runs it in one transaction, and the
//! first bad row stops it with the row number and what is wrong.
//!
//! CSV columns (header row, any order; only `level`, `code`, `name` are required):
//! `level` (province|district|commune|hamlet), `code`, `name`, `type`, `parent_code`,
//! `valid_from`, `valid_to` (YYYY-MM-DD, inclusive), `lat`, `lon` (centroid), `region`
//! (I|II|III), `especially_difficult`, `border`, `demo` (yes|no|true|false|1|0).
//! A row whose code and `valid_from` match a stored version updates it; otherwise it adds a
//! version, which must not overlap another version of the same code. `parent_code` is resolved
//! to the parent version valid over the row's whole period.

use std::collections::HashMap;

use chrono::{Duration, NaiveDate};
use diesel::prelude::*;
use geo::Centroid;
use serde::Serialize;
use serde_json::Value;

use super::{versions_of, Area, LatLon, Level};
use crate::db::schema::{area_successions, areas};
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;
use crate::users::now;

/// One area version to create or update.
#[derive(Debug, Clone)]
pub struct NewArea {
    pub level: Level,
    pub code: String,
    pub name: String,
    pub area_type: Option<String>,
    pub parent_code: Option<String>,
    pub valid_from: Option<NaiveDate>,
    pub valid_to: Option<NaiveDate>,
    pub region: Option<String>,
    pub especially_difficult: Option<bool>,
    pub border: Option<bool>,
    pub demo: bool,
    pub centroid: Option<LatLon>,
}

/// What an import changed.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Report {
    pub created: usize,
    pub updated: usize,
    pub linked: usize,
}

fn row_error(row: &str, message: impl std::fmt::Display) -> AppError {
    AppError::bad_request("bad_area_row", format!("{row}: {message}"))
}

fn text(fields: &HashMap<String, String>, name: &str) -> Option<String> {
    fields
        .get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

fn date(
    fields: &HashMap<String, String>,
    name: &str,
    row: &str,
) -> Result<Option<NaiveDate>, AppError> {
    text(fields, name)
        .map(|v| {
            NaiveDate::parse_from_str(&v, "%Y-%m-%d")
                .map_err(|_| row_error(row, format!("{name} '{v}' is not a date YYYY-MM-DD")))
        })
        .transpose()
}

fn flag(fields: &HashMap<String, String>, name: &str, row: &str) -> Result<Option<bool>, AppError> {
    text(fields, name)
        .map(|v| match v.to_ascii_lowercase().as_str() {
            "yes" | "true" | "1" => Ok(true),
            "no" | "false" | "0" => Ok(false),
            _ => Err(row_error(row, format!("{name} '{v}' is not yes or no"))),
        })
        .transpose()
}

fn number(
    fields: &HashMap<String, String>,
    name: &str,
    row: &str,
) -> Result<Option<f64>, AppError> {
    text(fields, name)
        .map(|v| {
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .ok_or_else(|| row_error(row, format!("{name} '{v}' is not a number")))
        })
        .transpose()
}

impl NewArea {
    /// Reads one row given as column name → text.
    pub fn from_fields(fields: &HashMap<String, String>, row: &str) -> Result<NewArea, AppError> {
        let level_text = text(fields, "level").unwrap_or_default();
        let level = Level::parse(&level_text).ok_or_else(|| {
            row_error(
                row,
                format!("level '{level_text}' is not province, district, commune or hamlet"),
            )
        })?;
        let code = text(fields, "code").ok_or_else(|| row_error(row, "code is empty"))?;
        if code.chars().any(|c| c.is_whitespace() || c.is_control()) || code.len() > 64 {
            return Err(row_error(
                row,
                format!("code '{code}' must be 1 to 64 characters without spaces (phones store it as a choice value)"),
            ));
        }
        let name = text(fields, "name").ok_or_else(|| row_error(row, "name is empty"))?;
        let region = text(fields, "region");
        if let Some(r) = &region {
            if !["I", "II", "III"].contains(&r.as_str()) {
                return Err(row_error(row, format!("region '{r}' is not I, II or III")));
            }
        }
        let centroid = match (number(fields, "lat", row)?, number(fields, "lon", row)?) {
            (Some(lat), Some(lon))
                if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
            {
                Some(LatLon { lat, lon })
            }
            (None, None) => None,
            _ => return Err(row_error(row, "lat and lon must both be given, in degrees")),
        };
        let area = NewArea {
            level,
            code,
            name,
            area_type: text(fields, "type"),
            parent_code: text(fields, "parent_code"),
            valid_from: date(fields, "valid_from", row)?,
            valid_to: date(fields, "valid_to", row)?,
            region,
            especially_difficult: flag(fields, "especially_difficult", row)?,
            border: flag(fields, "border", row)?,
            demo: flag(fields, "demo", row)?.unwrap_or(false),
            centroid,
        };
        if let (Some(f), Some(t)) = (area.valid_from, area.valid_to) {
            if t < f {
                return Err(row_error(row, "valid_to is before valid_from"));
            }
        }
        Ok(area)
    }
}

/// Parses an areas CSV into rows labelled `row N` (N = line number in the file).
pub fn parse_csv(bytes: &[u8]) -> Result<Vec<(String, NewArea)>, AppError> {
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| {
            AppError::bad_request(
                "bad_area_file",
                format!("the CSV header cannot be read: {e}"),
            )
        })?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for required in ["level", "code", "name"] {
        if !headers.iter().any(|h| h == required) {
            return Err(AppError::bad_request(
                "bad_area_file",
                format!("the CSV has no '{required}' column (needed: level, code, name)"),
            ));
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            AppError::bad_request("bad_area_file", format!("the CSV cannot be read: {e}"))
        })?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let label = format!("row {line}");
        let fields: HashMap<String, String> = headers
            .iter()
            .cloned()
            .zip(record.iter().map(str::to_string))
            .collect();
        rows.push((label.clone(), NewArea::from_fields(&fields, &label)?));
    }
    Ok(rows)
}

fn starts_before_or_with(a: Option<NaiveDate>, b: Option<NaiveDate>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a <= b,
    }
}

fn ends_after_or_with(a: Option<NaiveDate>, b: Option<NaiveDate>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a >= b,
    }
}

fn overlaps(a: &Area, from: Option<NaiveDate>, to: Option<NaiveDate>) -> bool {
    let a_starts_before_end = match (a.valid_from, to) {
        (Some(f), Some(t)) => f <= t,
        _ => true,
    };
    let starts_before_a_ends = match (from, a.valid_to) {
        (Some(f), Some(t)) => f <= t,
        _ => true,
    };
    a_starts_before_end && starts_before_a_ends
}

fn period(from: Option<NaiveDate>, to: Option<NaiveDate>) -> String {
    let show = |d: Option<NaiveDate>, open: &str| {
        d.map(|d| d.to_string()).unwrap_or_else(|| open.to_string())
    };
    format!("{} to {}", show(from, "the beginning"), show(to, "now"))
}

fn resolve_parent(conn: &mut Conn<'_>, new: &NewArea, row: &str) -> Result<Option<i64>, AppError> {
    let Some(code) = &new.parent_code else {
        return if new.level == Level::Province {
            Ok(None)
        } else {
            Err(row_error(
                row,
                format!("a {} needs a parent_code", new.level.as_str()),
            ))
        };
    };
    if new.level == Level::Province {
        return Err(row_error(row, "a province has no parent"));
    }
    let parent = versions_of(conn, code)?
        .into_iter()
        .find(|p| {
            starts_before_or_with(p.valid_from, new.valid_from)
                && ends_after_or_with(p.valid_to, new.valid_to)
        })
        .ok_or_else(|| {
            row_error(
                row,
                format!(
                    "parent_code '{code}' names no area valid over the whole period {}",
                    period(new.valid_from, new.valid_to)
                ),
            )
        })?;
    // A hamlet belongs to a commune; a commune to a district or (after the reform) straight
    // to the province; a district to the province.
    let allowed = match new.level {
        Level::Hamlet => &[Level::Commune][..],
        Level::Commune => &[Level::District, Level::Province][..],
        Level::District => &[Level::Province][..],
        Level::Province => &[][..],
    };
    if !Level::parse(&parent.level).is_some_and(|l| allowed.contains(&l)) {
        return Err(row_error(
            row,
            format!(
                "the parent '{code}' is a {}, which cannot hold a {}",
                parent.level,
                new.level.as_str()
            ),
        ));
    }
    Ok(Some(parent.id))
}

/// Links `predecessor` → `successor`; returns whether the link is new.
pub fn link(conn: &mut Conn<'_>, predecessor: i64, successor: i64) -> Result<bool, AppError> {
    let exists: i64 = on_conn!(conn, c => area_successions::table
        .filter(area_successions::predecessor_id.eq(predecessor))
        .filter(area_successions::successor_id.eq(successor))
        .count()
        .get_result(c))?;
    if exists > 0 {
        return Ok(false);
    }
    on_conn!(conn, c => diesel::insert_into(area_successions::table)
        .values((
            area_successions::predecessor_id.eq(predecessor),
            area_successions::successor_id.eq(successor),
        ))
        .execute(c))?;
    Ok(true)
}

/// Creates or updates one area version.
pub fn upsert(
    conn: &mut Conn<'_>,
    new: &NewArea,
    row: &str,
    report: &mut Report,
) -> Result<Area, AppError> {
    let versions = versions_of(conn, &new.code)?;
    let existing = versions
        .iter()
        .find(|v| v.valid_from == new.valid_from)
        .cloned();
    if let Some(e) = &existing {
        if e.level != new.level.as_str() {
            return Err(row_error(
                row,
                format!(
                    "the code '{}' already names a {} from that date",
                    new.code, e.level
                ),
            ));
        }
    }
    if let Some(other) = versions
        .iter()
        .filter(|v| existing.as_ref().is_none_or(|e| e.id != v.id))
        .find(|v| overlaps(v, new.valid_from, new.valid_to))
    {
        return Err(row_error(
            row,
            format!(
                "the code '{}' already names '{}' from {}; versions of one code must not overlap",
                new.code,
                other.name,
                period(other.valid_from, other.valid_to)
            ),
        ));
    }
    let parent_id = resolve_parent(conn, new, row)?;
    let (lat, lon) = match new.centroid {
        Some(c) => (Some(c.lat), Some(c.lon)),
        None => (
            existing.as_ref().and_then(|e| e.centroid_lat),
            existing.as_ref().and_then(|e| e.centroid_lon),
        ),
    };
    let values = (
        areas::level.eq(new.level.as_str()),
        areas::code.eq(&new.code),
        areas::name.eq(&new.name),
        areas::area_type.eq(&new.area_type),
        areas::parent_id.eq(parent_id),
        areas::valid_from.eq(new.valid_from),
        areas::valid_to.eq(new.valid_to),
        areas::region.eq(&new.region),
        areas::especially_difficult.eq(new.especially_difficult),
        areas::border.eq(new.border),
        areas::demo.eq(new.demo),
        areas::centroid_lat.eq(lat),
        areas::centroid_lon.eq(lon),
        areas::updated_at.eq(now()),
    );
    let id = match &existing {
        Some(e) => {
            on_conn!(conn, c => diesel::update(areas::table.find(e.id)).set(values).execute(c))?;
            report.updated += 1;
            e.id
        }
        None => {
            let id: i64 = on_conn!(conn, c => diesel::insert_into(areas::table)
                .values(values)
                .returning(areas::id)
                .get_result(c))?;
            report.created += 1;
            id
        }
    };
    let area = super::get(conn, id)?;
    // A hamlet keeps its code when it moves to another commune: its versions that meet
    // continue each other. (Commune codes are reused for different units, so communes are
    // linked only by the official mapping.)
    if new.level == Level::Hamlet {
        for other in versions
            .iter()
            .filter(|v| v.id != id && v.level == area.level)
        {
            let day_before = |d: Option<NaiveDate>| d.map(|d| d - Duration::days(1));
            if other.valid_to.is_some()
                && other.valid_to == day_before(area.valid_from)
                && link(conn, other.id, id)?
            {
                report.linked += 1;
            }
            if area.valid_to.is_some()
                && area.valid_to == day_before(other.valid_from)
                && link(conn, id, other.id)?
            {
                report.linked += 1;
            }
        }
    }
    Ok(area)
}

/// Applies parsed rows in order of level (provinces first), so parents precede children.
pub fn apply_rows(conn: &mut Conn<'_>, rows: &[(String, NewArea)]) -> Result<Report, AppError> {
    let mut ordered: Vec<&(String, NewArea)> = rows.iter().collect();
    ordered.sort_by_key(|(_, a)| a.level);
    let mut report = Report::default();
    for (row, area) in ordered {
        upsert(conn, area, row, &mut report)?;
    }
    Ok(report)
}

fn property_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Applies a GeoJSON FeatureCollection (or one Feature). Each feature's `properties.code`
/// names an area; `valid_from` picks the version when the code names several. A Polygon or
/// MultiPolygon becomes the area's boundary (and its centroid, unless it has one); a Point
/// becomes its centroid. A feature whose code is not in the registry creates the area from its
/// properties (the CSV columns), so hamlets can be imported as points.
pub fn apply_geojson(conn: &mut Conn<'_>, bytes: &[u8]) -> Result<Report, AppError> {
    let bad = |m: String| AppError::bad_request("bad_area_file", m);
    let source = std::str::from_utf8(bytes).map_err(|_| bad("the GeoJSON is not UTF-8".into()))?;
    let parsed: geojson::GeoJson = source
        .parse()
        .map_err(|e| bad(format!("the file is not valid GeoJSON: {e}")))?;
    let features = match parsed {
        geojson::GeoJson::FeatureCollection(fc) => fc.features,
        geojson::GeoJson::Feature(f) => vec![f],
        geojson::GeoJson::Geometry(_) => {
            return Err(bad(
                "the GeoJSON has a bare geometry; give features with a `code` property".into(),
            ))
        }
    };
    let mut report = Report::default();
    for (i, feature) in features.iter().enumerate() {
        let row = format!("feature {}", i + 1);
        let fields: HashMap<String, String> = feature
            .properties
            .iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), property_text(v)?)))
            .collect();
        let code = text(&fields, "code").ok_or_else(|| row_error(&row, "no `code` property"))?;
        let mut boundary: Option<String> = None;
        let mut point: Option<LatLon> = None;
        let mut boundary_centroid: Option<LatLon> = None;
        if let Some(g) = &feature.geometry {
            let shape = geo::Geometry::<f64>::try_from(g)
                .map_err(|e| row_error(&row, format!("unreadable geometry: {e}")))?;
            match shape {
                geo::Geometry::Point(p) => {
                    point = Some(LatLon {
                        lat: p.y(),
                        lon: p.x(),
                    })
                }
                geo::Geometry::Polygon(_) | geo::Geometry::MultiPolygon(_) => {
                    boundary_centroid = shape.centroid().map(|p| LatLon {
                        lat: p.y(),
                        lon: p.x(),
                    });
                    boundary =
                        Some(serde_json::to_string(g).map_err(|e| {
                            AppError::internal(format!("cannot encode geometry: {e}"))
                        })?);
                }
                _ => {
                    return Err(row_error(
                        &row,
                        "the geometry must be a Point, Polygon or MultiPolygon",
                    ))
                }
            }
        }
        let versions = versions_of(conn, &code)?;
        let target = match date(&fields, "valid_from", &row)? {
            Some(from) => versions.into_iter().find(|v| v.valid_from == Some(from)),
            None if versions.len() > 1 => {
                return Err(row_error(
                    &row,
                    format!(
                        "the code '{code}' names {} areas over time; add `valid_from` to say which",
                        versions.len()
                    ),
                ))
            }
            None => versions.into_iter().next(),
        };
        let (area, created) = match target {
            Some(a) => (a, false),
            None => {
                let mut new = NewArea::from_fields(&fields, &row)?;
                new.centroid = new.centroid.or(point);
                (upsert(conn, &new, &row, &mut report)?, true)
            }
        };
        let explicit = match (number(&fields, "lat", &row)?, number(&fields, "lon", &row)?) {
            (Some(lat), Some(lon)) => Some(LatLon { lat, lon }),
            _ => None,
        };
        let existing = match (area.centroid_lat, area.centroid_lon) {
            (Some(lat), Some(lon)) => Some(LatLon { lat, lon }),
            _ => None,
        };
        // A given centroid or a point wins; a boundary supplies one only to an area without.
        let centroid = explicit.or(point).or(existing).or(boundary_centroid);
        if boundary.is_none()
            && centroid.map(|c| (c.lat, c.lon)) == existing.map(|c| (c.lat, c.lon))
        {
            continue;
        }
        on_conn!(conn, c => {
            let target = areas::table.find(area.id);
            let centroid_values = (
                areas::centroid_lat.eq(centroid.map(|c| c.lat)),
                areas::centroid_lon.eq(centroid.map(|c| c.lon)),
                areas::updated_at.eq(now()),
            );
            match &boundary {
                Some(b) => diesel::update(target)
                    .set((areas::geometry.eq(b), centroid_values))
                    .execute(c),
                None => diesel::update(target).set(centroid_values).execute(c),
            }
        })?;
        if !created {
            report.updated += 1;
        }
    }
    Ok(report)
}

/// The kind of an areas file, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Csv,
    GeoJson,
}

impl FileKind {
    pub fn from_name(name: &str) -> Option<FileKind> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Some(FileKind::Csv)
        } else if lower.ends_with(".geojson") || lower.ends_with(".json") {
            Some(FileKind::GeoJson)
        } else {
            None
        }
    }
}

/// Imports one file; run it inside one transaction.
pub fn import(conn: &mut Conn<'_>, kind: FileKind, bytes: &[u8]) -> Result<Report, AppError> {
    match kind {
        FileKind::Csv => apply_rows(conn, &parse_csv(bytes)?),
        FileKind::GeoJson => apply_geojson(conn, bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_are_read_with_their_line_numbers() {
        let csv = "\u{feff}level,code,name,parent_code,valid_to,lat,lon,demo,region\nhamlet,H1,Bản Một,04012,2025-06-30,21.0,104.5,yes,III\n";
        let rows = parse_csv(csv.as_bytes()).unwrap();
        assert_eq!(rows.len(), 1);
        let (label, a) = &rows[0];
        assert_eq!(label, "row 2");
        assert_eq!(a.level, Level::Hamlet);
        assert_eq!(a.parent_code.as_deref(), Some("04012"));
        assert_eq!(a.valid_to, NaiveDate::from_ymd_opt(2025, 6, 30));
        assert!(a.demo);
        assert_eq!(a.region.as_deref(), Some("III"));
        assert_eq!(a.centroid.map(|c| c.lat), Some(21.0));
    }

    #[test]
    fn bad_rows_say_where_and_what() {
        let cases = [
            ("level,code,name\nvillage,H1,X\n", "row 2: level 'village'"),
            ("level,code,name\nhamlet,H 1,X\n", "row 2: code 'H 1'"),
            (
                "level,code,name,valid_from\nhamlet,H1,X,1/7/2025\n",
                "row 2: valid_from '1/7/2025'",
            ),
            (
                "level,code,name,lat\nhamlet,H1,X,21\n",
                "row 2: lat and lon",
            ),
            (
                "level,code,name,region\nhamlet,H1,X,IV\n",
                "row 2: region 'IV'",
            ),
            (
                "level,code,name,valid_from,valid_to\nhamlet,H1,X,2025-07-01,2025-06-30\n",
                "row 2: valid_to is before",
            ),
            ("level,code\nhamlet,H1\n", "no 'name' column"),
        ];
        for (csv, expected) in cases {
            let err = parse_csv(csv.as_bytes())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(expected), "{csv:?}: {err}");
        }
    }

    #[test]
    fn file_kinds_come_from_the_name() {
        assert_eq!(FileKind::from_name("hamlets.CSV"), Some(FileKind::Csv));
        assert_eq!(
            FileKind::from_name("districts.geojson"),
            Some(FileKind::GeoJson)
        );
        assert_eq!(FileKind::from_name("x.xlsx"), None);
    }
}

#[cfg(test)]
mod db_tests {
    use super::*;
    use crate::areas::{self, shipped};

    #[test]
    fn shipped_areas_and_hamlet_versions_load_and_link() {
        let (_, mut db) = crate::db::connect("sqlite://:memory:").unwrap();
        let mut conn = db.conn();
        let report = shipped::load(&mut conn).unwrap();
        assert_eq!(report.created, 1 + 12 + 200 + 75);
        assert_eq!(report.linked, 202);
        assert_eq!(areas::count(&mut conn).unwrap(), 288);

        let csv = "level,code,name,parent_code,valid_from,valid_to\nhamlet,H1,Bản Một,04111,,2025-06-30\nhamlet,H1,Bản Một,04123,2025-07-01,\n";
        let report = apply_rows(&mut conn, &parse_csv(csv.as_bytes()).unwrap()).unwrap();
        assert_eq!((report.created, report.updated, report.linked), (2, 0, 1));
        // Importing the same rows again updates them and links nothing new.
        let report = apply_rows(&mut conn, &parse_csv(csv.as_bytes()).unwrap()).unwrap();
        assert_eq!((report.created, report.updated, report.linked), (0, 2, 0));
        let before = NaiveDate::from_ymd_opt(2025, 6, 30).unwrap();
        let after = NaiveDate::from_ymd_opt(2025, 7, 1).unwrap();
        let old = areas::find_on(&mut conn, "H1", before).unwrap().unwrap();
        let new = areas::find_on(&mut conn, "H1", after).unwrap().unwrap();
        assert_eq!(
            areas::get(&mut conn, old.parent_id.unwrap()).unwrap().name,
            "Xã Mường Bằng"
        );
        assert_eq!(
            areas::get(&mut conn, new.parent_id.unwrap()).unwrap().name,
            "Xã Chiềng Mung"
        );
        assert_eq!(areas::successors(&mut conn, old.id).unwrap(), [new]);

        // A hamlet under a district, or under a commune that does not exist on its dates.
        for (csv, expected) in [
            (
                "level,code,name,parent_code,valid_to\nhamlet,H2,X,123,2025-06-30\n",
                "cannot hold a hamlet",
            ),
            (
                "level,code,name,parent_code,valid_from\nhamlet,H2,X,04111,2025-07-01\n",
                "no area valid over the whole period 2025-07-01 to now",
            ),
            ("level,code,name\ncommune,H3,X\n", "needs a parent_code"),
            (
                "level,code,name,parent_code,valid_to\nhamlet,03646,X,03646,2025-06-30\n",
                "already names",
            ),
        ] {
            let err = apply_rows(&mut conn, &parse_csv(csv.as_bytes()).unwrap()).unwrap_err();
            assert!(err.to_string().contains(expected), "{csv}: {err}");
        }
    }
}
