//! The area registry as the indicators see it: every area version in memory (a few thousand),
//! reloaded when the registry changes, and the chain of areas a submission counts in on each
//! map.

use std::collections::HashMap;

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use crate::areas::Level;
use crate::db::schema::areas;
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;

/// Which administrative map figures are reported on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapKind {
    /// The communes (and districts, before 1 July 2025) valid on the activity date.
    AsRecorded,
    /// Today's communes: each hamlet's latest version, which resolves split communes.
    Current,
}

impl MapKind {
    pub const ALL: [MapKind; 2] = [MapKind::AsRecorded, MapKind::Current];

    pub fn as_str(self) -> &'static str {
        match self {
            MapKind::AsRecorded => "as-recorded",
            MapKind::Current => "current",
        }
    }

    pub fn parse(s: &str) -> Option<MapKind> {
        match s {
            "as-recorded" => Some(MapKind::AsRecorded),
            "current" => Some(MapKind::Current),
            _ => None,
        }
    }
}

/// Changes whenever an area is added or updated (imports set `updated_at`; areas are never
/// deleted). Two single-aggregate queries, so that both backends answer from an index instead
/// of reading every area (with its geometry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(pub String);

pub fn fingerprint(conn: &mut Conn<'_>) -> Result<Fingerprint, AppError> {
    let last: Option<NaiveDateTime> = on_conn!(conn, c => areas::table
        .select(diesel::dsl::max(areas::updated_at))
        .first(c))?;
    let top: Option<i64> = on_conn!(conn, c => areas::table
        .select(diesel::dsl::max(areas::id))
        .first(c))?;
    Ok(Fingerprint(format!(
        "{}:{}",
        last.map(|t| t.and_utc().timestamp_micros()).unwrap_or(0),
        top.unwrap_or(0)
    )))
}

#[derive(Debug, Clone, Queryable)]
pub struct Node {
    pub id: i64,
    pub level: String,
    pub code: String,
    pub name: String,
    pub parent_id: Option<i64>,
    pub valid_from: Option<NaiveDate>,
    pub valid_to: Option<NaiveDate>,
    pub region: Option<String>,
    pub especially_difficult: Option<bool>,
}

impl Node {
    pub fn level(&self) -> Option<Level> {
        Level::parse(&self.level)
    }

    pub fn valid_on(&self, d: NaiveDate) -> bool {
        self.valid_from.is_none_or(|f| f <= d) && self.valid_to.is_none_or(|t| t >= d)
    }

    /// Whether the version is valid at some time between `from` and `to`.
    pub fn overlaps(&self, from: NaiveDate, to: NaiveDate) -> bool {
        self.valid_from.is_none_or(|f| f <= to) && self.valid_to.is_none_or(|t| t >= from)
    }
}

/// Where a submission counts on one map: its hamlet and every area above it, and the area
/// attributes used as dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub map: MapKind,
    /// (level, area version id), the hamlet first.
    pub areas: Vec<(Level, i64)>,
    pub region: Option<String>,
    pub especially_difficult: Option<bool>,
}

#[derive(Debug, Default)]
pub struct AreaIndex {
    pub nodes: HashMap<i64, Node>,
    /// Hamlet versions by code, oldest first.
    hamlets: HashMap<String, Vec<i64>>,
    children: HashMap<i64, Vec<i64>>,
    /// Every version of a code, oldest first.
    by_code: HashMap<String, Vec<i64>>,
}

impl AreaIndex {
    pub fn load(conn: &mut Conn<'_>) -> Result<AreaIndex, AppError> {
        let rows: Vec<Node> = on_conn!(conn, c => areas::table
            .select((
                areas::id,
                areas::level,
                areas::code,
                areas::name,
                areas::parent_id,
                areas::valid_from,
                areas::valid_to,
                areas::region,
                areas::especially_difficult,
            ))
            .order(areas::id)
            .load(c))?;
        Ok(AreaIndex::from_nodes(rows))
    }

    /// The index of these area versions (in id order).
    pub fn from_nodes(rows: Vec<Node>) -> AreaIndex {
        let mut index = AreaIndex::default();
        for n in rows {
            if n.level == Level::Hamlet.as_str() {
                index.hamlets.entry(n.code.clone()).or_default().push(n.id);
            }
            if let Some(p) = n.parent_id {
                index.children.entry(p).or_default().push(n.id);
            }
            index.by_code.entry(n.code.clone()).or_default().push(n.id);
            index.nodes.insert(n.id, n);
        }
        let nodes = &index.nodes;
        let key = |id: &i64| nodes.get(id).map(|n| n.valid_from);
        for list in index.hamlets.values_mut().chain(index.by_code.values_mut()) {
            list.sort_by_key(key);
        }
        for list in index.children.values_mut() {
            list.sort_by(|a, b| {
                let code = |id: &i64| nodes.get(id).map(|n| n.code.as_str());
                code(a).cmp(&code(b)).then(a.cmp(b))
            });
        }
        index
    }

    pub fn get(&self, id: i64) -> Option<&Node> {
        self.nodes.get(&id)
    }

    pub fn versions(&self, code: &str) -> Vec<&Node> {
        self.by_code
            .get(code)
            .map(|ids| ids.iter().filter_map(|i| self.nodes.get(i)).collect())
            .unwrap_or_default()
    }

    pub fn children(&self, id: i64) -> Vec<&Node> {
        self.children
            .get(&id)
            .map(|ids| ids.iter().filter_map(|i| self.nodes.get(i)).collect())
            .unwrap_or_default()
    }

    /// The hamlet version a submission counts in on `map`.
    pub fn hamlet(&self, code: &str, map: MapKind, date: NaiveDate) -> Option<&Node> {
        let versions = self.hamlets.get(code)?;
        let mut nodes = versions.iter().filter_map(|i| self.nodes.get(i));
        match map {
            MapKind::AsRecorded => nodes.find(|n| n.valid_on(date)),
            // The latest version is today's (versions of a code never overlap).
            MapKind::Current => nodes.next_back(),
        }
    }

    /// The hamlet and its ancestors on `map`, or `None` when the registry does not know the
    /// hamlet (on the activity date, for the map as recorded).
    pub fn placement(&self, code: &str, map: MapKind, date: NaiveDate) -> Option<Placement> {
        let hamlet = self.hamlet(code, map, date)?;
        let mut areas: Vec<(Level, i64)> = Vec::new();
        let mut commune: Option<&Node> = None;
        let mut next = Some(hamlet);
        while let Some(n) = next {
            // The import refuses cycles; the bound keeps a corrupted table from looping.
            if areas.len() > 8 {
                break;
            }
            if let Some(level) = n.level() {
                areas.push((level, n.id));
                if level == Level::Commune && commune.is_none() {
                    commune = Some(n);
                }
            }
            next = n.parent_id.and_then(|p| self.nodes.get(&p));
        }
        Some(Placement {
            map,
            areas,
            region: commune.and_then(|c| c.region.clone()),
            especially_difficult: hamlet
                .especially_difficult
                .or_else(|| commune.and_then(|c| c.especially_difficult)),
        })
    }

    /// Whether the version belongs on `map` for figures of `from..=to`: today's areas on the
    /// current map, areas valid at some time in the period on the map as recorded.
    pub fn on_map(&self, node: &Node, map: MapKind, from: NaiveDate, to: NaiveDate) -> bool {
        match map {
            MapKind::AsRecorded => node.overlaps(from, to),
            MapKind::Current => {
                node.valid_to.is_none_or(|t| t >= crate::areas::today())
                    && self
                        .by_code
                        .get(&node.code)
                        .and_then(|ids| ids.last())
                        .is_some_and(|last| *last == node.id)
            }
        }
    }

    /// The areas at `level` within `root` (itself if it is at that level) on the map.
    pub fn descendants_at(
        &self,
        root: i64,
        level: Level,
        map: MapKind,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut stack = vec![(root, 0usize)];
        while let Some((id, depth)) = stack.pop() {
            let Some(n) = self.nodes.get(&id) else {
                continue;
            };
            if !self.on_map(n, map, from, to) || depth > 8 {
                continue;
            }
            if n.level() == Some(level) {
                out.push(n);
                continue;
            }
            if let Some(kids) = self.children.get(&id) {
                stack.extend(kids.iter().map(|k| (*k, depth + 1)));
            }
        }
        out.sort_by(|a, b| a.code.cmp(&b.code).then(a.id.cmp(&b.id)));
        out
    }

    /// The children of an area that are on the map.
    pub fn children_on_map(
        &self,
        id: i64,
        map: MapKind,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Vec<&Node> {
        self.children(id)
            .into_iter()
            .filter(|n| self.on_map(n, map, from, to))
            .collect()
    }

    /// The root areas (provinces) on the map.
    pub fn roots(&self, map: MapKind, from: NaiveDate, to: NaiveDate) -> Vec<&Node> {
        let mut out: Vec<&Node> = self
            .nodes
            .values()
            .filter(|n| n.parent_id.is_none() && self.on_map(n, map, from, to))
            .collect();
        out.sort_by(|a, b| a.code.cmp(&b.code));
        out
    }
}
