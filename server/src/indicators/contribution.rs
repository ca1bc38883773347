//! What one submission contributes to the figures. Its current version gives *facts* (a row of
//! a repeat, one sex of a split, a key), kept in `indicator_facts`; each fact counts in its
//! bases, on both maps, in every area of its hamlet's chain and in its month, quarter and year.
//! Sums and counts add their value to cells; a distinct key counts once per area and period,
//! with the dims of its latest fact. Both are computed here, for the stored levels (commune and
//! up) or for hamlets, by the same functions the incremental update, the full recompute and the
//! queries use.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use serde_json::Value;

use super::definition::{Definitions, Kind, VersionData};
use super::period::Period;
use super::registry::{AreaIndex, MapKind};
use crate::areas::Level;

/// Review states that decide where a submission counts (set by the review of issue 5).
pub const STATE_APPROVED: &str = "approved";
pub const STATE_REJECTED: &str = "rejected";

/// Two figures side by side: everything not rejected, and what a supervisor approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Basis {
    Provisional,
    Confirmed,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Provisional => "provisional",
            Basis::Confirmed => "confirmed",
        }
    }

    pub fn parse(s: &str) -> Option<Basis> {
        match s {
            "provisional" => Some(Basis::Provisional),
            "confirmed" => Some(Basis::Confirmed),
            _ => None,
        }
    }

    /// The stored basis tags whose rows make up this basis's figures.
    pub fn tags(self) -> &'static [BasisTag] {
        match self {
            Basis::Provisional => &[BasisTag::Provisional, BasisTag::Approved, BasisTag::Pending],
            Basis::Confirmed => &[BasisTag::Confirmed, BasisTag::Approved],
        }
    }
}

/// The basis a stored row belongs to. Sums and counts are stored once per submission:
/// `Approved` rows count in both bases, `Pending` rows in the provisional one. Distinct
/// counts are not additive across submissions, so they have a row per basis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BasisTag {
    Provisional,
    Confirmed,
    Approved,
    Pending,
}

impl BasisTag {
    pub fn as_str(self) -> &'static str {
        match self {
            BasisTag::Provisional => "provisional",
            BasisTag::Confirmed => "confirmed",
            BasisTag::Approved => "approved",
            BasisTag::Pending => "pending",
        }
    }

    pub fn parse(s: &str) -> Option<BasisTag> {
        match s {
            "provisional" => Some(BasisTag::Provisional),
            "confirmed" => Some(BasisTag::Confirmed),
            "approved" => Some(BasisTag::Approved),
            "pending" => Some(BasisTag::Pending),
            _ => None,
        }
    }

    pub fn bases(self) -> &'static [Basis] {
        match self {
            BasisTag::Provisional | BasisTag::Pending => &[Basis::Provisional],
            BasisTag::Confirmed => &[Basis::Confirmed],
            BasisTag::Approved => &[Basis::Provisional, Basis::Confirmed],
        }
    }
}

/// The map a stored row belongs to; `Both` when a sum's area is the same on both maps (every
/// activity from 1 July 2025, and the province always).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapTag {
    AsRecorded,
    Current,
    Both,
}

impl MapTag {
    pub fn as_str(self) -> &'static str {
        match self {
            MapTag::AsRecorded => "as-recorded",
            MapTag::Current => "current",
            MapTag::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<MapTag> {
        match s {
            "as-recorded" => Some(MapTag::AsRecorded),
            "current" => Some(MapTag::Current),
            "both" => Some(MapTag::Both),
            _ => None,
        }
    }

    pub fn of(map: MapKind) -> MapTag {
        match map {
            MapKind::AsRecorded => MapTag::AsRecorded,
            MapKind::Current => MapTag::Current,
        }
    }

    pub fn maps(self) -> &'static [MapKind] {
        match self {
            MapTag::AsRecorded => &[MapKind::AsRecorded],
            MapTag::Current => &[MapKind::Current],
            MapTag::Both => &[MapKind::AsRecorded, MapKind::Current],
        }
    }

    /// The stored map tags whose rows make up figures on `map`.
    pub fn for_map(map: MapKind) -> [MapTag; 2] {
        [MapTag::of(map), MapTag::Both]
    }
}

/// The bases a submission counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Bases {
    pub provisional: bool,
    pub confirmed: bool,
}

impl Bases {
    pub fn of_state(review_state: &str) -> Bases {
        Bases {
            provisional: review_state != STATE_REJECTED,
            confirmed: review_state == STATE_APPROVED,
        }
    }

    pub fn is_empty(self) -> bool {
        !self.provisional && !self.confirmed
    }
}

/// Everything but the measure and the dimensions of a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group {
    pub basis: BasisTag,
    pub map: MapTag,
    pub level: Level,
    pub period: Period,
    pub area_id: i64,
}

/// One figure.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    pub measure: u16,
    pub group: Group,
    /// The dimensions as a JSON object with sorted keys.
    pub dims: Arc<str>,
}

/// A submission as the indicators read it: its counted version and bases.
#[derive(Debug, Clone)]
pub struct Input {
    pub submission_id: i64,
    pub version_id: i64,
    pub form_id: String,
    pub fields: Value,
    pub hamlet_code: Option<String>,
    pub activity_date: Option<NaiveDate>,
    pub beneficiary_key: Option<String>,
    pub bases: Bases,
}

/// One fact of a submission, as stored in `indicator_facts`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoredFact {
    pub measure: u16,
    pub key: Option<Arc<str>>,
    pub submission_id: i64,
    pub seq: i64,
    pub value: i64,
    pub hamlet: Arc<str>,
    pub date: NaiveDate,
    /// The fact's own dimensions (JSON), without those of its area.
    pub dims: Arc<str>,
    pub bases: Bases,
}

/// Which levels figures are computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Levels {
    /// The stored levels: commune, district, province.
    Stored,
    Hamlet,
}

impl Levels {
    fn has(self, level: Level) -> bool {
        match self {
            Levels::Stored => level != Level::Hamlet,
            Levels::Hamlet => level == Level::Hamlet,
        }
    }

    fn list(self) -> &'static [Level] {
        match self {
            Levels::Stored => &[Level::Commune, Level::District, Level::Province],
            Levels::Hamlet => &[Level::Hamlet],
        }
    }
}

/// Shares the text of repeated dimensions, keys and hamlet codes.
#[derive(Default)]
pub struct Interner {
    texts: HashMap<String, Arc<str>>,
    dims: HashMap<Arc<str>, BTreeMap<String, String>>,
}

impl Interner {
    pub fn get(&mut self, s: String) -> Arc<str> {
        if let Some(a) = self.texts.get(&s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s.as_str());
        self.texts.insert(s, a.clone());
        a
    }

    /// The dimensions a JSON text holds.
    pub fn parsed(&mut self, text: &Arc<str>) -> &BTreeMap<String, String> {
        if !self.dims.contains_key(text) {
            let map = serde_json::from_str(text).unwrap_or_default();
            self.dims.insert(text.clone(), map);
        }
        &self.dims[text]
    }
}

pub fn dims_text(dims: &BTreeMap<String, String>) -> String {
    serde_json::to_string(dims).unwrap_or_else(|_| "{}".into())
}

/// The facts of a submission for the measures selected by `only` (all when `None`). A
/// submission without an activity date or hamlet, or in no basis (rejected), has none.
pub fn facts_of(
    defs: &Definitions,
    input: &Input,
    only: Option<&[bool]>,
    interner: &mut Interner,
) -> Vec<StoredFact> {
    let (Some(date), Some(hamlet)) = (input.activity_date, input.hamlet_code.as_deref()) else {
        return Vec::new();
    };
    if input.bases.is_empty() {
        return Vec::new();
    }
    let hamlet = interner.get(hamlet.to_string());
    let data = VersionData {
        fields: &input.fields,
        beneficiary_key: input.beneficiary_key.as_deref(),
        activity_date: date,
    };
    let mut out = Vec::new();
    for &n in defs.for_form(&input.form_id) {
        if only.is_some_and(|mask| !mask.get(usize::from(n)).copied().unwrap_or(false)) {
            continue;
        }
        let Some(m) = defs.measure(n) else { continue };
        for (seq, fact) in m.facts(&data).into_iter().enumerate() {
            if m.kind != Kind::Distinct && fact.value == 0 {
                continue;
            }
            out.push(StoredFact {
                measure: n,
                key: fact.key.map(|k| interner.get(k)),
                submission_id: input.submission_id,
                seq: seq as i64,
                value: fact.value,
                hamlet: hamlet.clone(),
                date,
                dims: interner.get(dims_text(&fact.dims)),
                bases: input.bases,
            });
        }
    }
    out
}

/// Where a fact counts on one map: its hamlet's chain and its full dimensions there.
struct Place {
    map: MapKind,
    areas: Vec<(Level, i64)>,
    dims: Arc<str>,
}

fn places(
    defs: &Definitions,
    index: &AreaIndex,
    f: &StoredFact,
    interner: &mut Interner,
) -> Vec<Place> {
    let Some(m) = defs.measure(f.measure) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for map in MapKind::ALL {
        let Some(p) = index.placement(&f.hamlet, map, f.date) else {
            continue;
        };
        let mut dims = interner.parsed(&f.dims).clone();
        if m.area_dim("region") {
            if let Some(r) = &p.region {
                dims.insert("region".into(), r.clone());
            }
        }
        if m.area_dim("especially_difficult") {
            if let Some(e) = p.especially_difficult {
                dims.insert(
                    "especially_difficult".into(),
                    if e { "yes" } else { "no" }.into(),
                );
            }
        }
        out.push(Place {
            map,
            areas: p.areas,
            dims: interner.get(dims_text(&dims)),
        });
    }
    out
}

/// The chain of areas (level, area id) a fact counts in, and its full dimensions there.
pub type Placement = (Vec<(Level, i64)>, Arc<str>);

/// The chain of areas a fact counts in on `map`, and its full dimensions there.
pub fn placement_of(
    defs: &Definitions,
    index: &AreaIndex,
    f: &StoredFact,
    map: MapKind,
    interner: &mut Interner,
) -> Option<Placement> {
    places(defs, index, f, interner)
        .into_iter()
        .find(|p| p.map == map)
        .map(|p| (p.areas, p.dims))
}

/// Adds the cell amounts of a sum or count fact to `out` (negated when `sign` is -1).
pub fn add_sum(
    defs: &Definitions,
    index: &AreaIndex,
    f: &StoredFact,
    levels: Levels,
    sign: i64,
    out: &mut HashMap<CellKey, i64>,
    interner: &mut Interner,
) {
    let basis = if f.bases.confirmed {
        BasisTag::Approved
    } else if f.bases.provisional {
        BasisTag::Pending
    } else {
        return;
    };
    let places = places(defs, index, f, interner);
    let at = |map: MapKind, level: Level| {
        places.iter().find(|p| p.map == map).and_then(|p| {
            p.areas
                .iter()
                .find(|(l, _)| *l == level)
                .map(|(_, id)| (*id, p.dims.clone()))
        })
    };
    for &level in levels.list() {
        let (a, c) = (at(MapKind::AsRecorded, level), at(MapKind::Current, level));
        let mut targets: Vec<(MapTag, (i64, Arc<str>))> = Vec::new();
        match (a, c) {
            (Some(a), Some(c)) if a == c => targets.push((MapTag::Both, a)),
            (a, c) => {
                targets.extend(a.map(|a| (MapTag::AsRecorded, a)));
                targets.extend(c.map(|c| (MapTag::Current, c)));
            }
        }
        for (map, (area_id, dims)) in targets {
            for period in Period::of_date(f.date) {
                *out.entry(CellKey {
                    measure: f.measure,
                    group: Group {
                        basis,
                        map,
                        level,
                        period,
                        area_id,
                    },
                    dims: dims.clone(),
                })
                .or_insert(0) += sign * f.value;
            }
        }
    }
}

/// Adds the cells of one key (all its facts, of one measure) to `out` (negated when `sign` is
/// -1): in every area and period it counts once, with the dimensions of its latest fact there
/// (by activity date, then submission).
pub fn add_key(
    defs: &Definitions,
    index: &AreaIndex,
    facts: &[StoredFact],
    levels: Levels,
    sign: i64,
    out: &mut HashMap<CellKey, i64>,
    interner: &mut Interner,
) {
    let mut latest: HashMap<Group, ((NaiveDate, i64), Arc<str>)> = HashMap::new();
    let Some(measure) = facts.first().map(|f| f.measure) else {
        return;
    };
    for f in facts {
        let mut bases = Vec::new();
        if f.bases.provisional {
            bases.push(BasisTag::Provisional);
        }
        if f.bases.confirmed {
            bases.push(BasisTag::Confirmed);
        }
        for p in places(defs, index, f, interner) {
            for &(level, area_id) in &p.areas {
                if !levels.has(level) {
                    continue;
                }
                for period in Period::of_date(f.date) {
                    for &basis in &bases {
                        let g = Group {
                            basis,
                            map: MapTag::of(p.map),
                            level,
                            period,
                            area_id,
                        };
                        let rank = (f.date, f.submission_id);
                        match latest.get(&g) {
                            Some((r, _)) if *r >= rank => {}
                            _ => {
                                latest.insert(g, (rank, p.dims.clone()));
                            }
                        }
                    }
                }
            }
        }
    }
    for (group, (_, dims)) in latest {
        *out.entry(CellKey {
            measure,
            group,
            dims,
        })
        .or_insert(0) += sign;
    }
}

/// Adds the cells of many facts: sums fact by fact, distinct measures key by key.
pub fn add_facts(
    defs: &Definitions,
    index: &AreaIndex,
    facts: &mut [StoredFact],
    levels: Levels,
    out: &mut HashMap<CellKey, i64>,
    interner: &mut Interner,
) {
    // Keys together: (measure, key) first in the ordering.
    facts.sort();
    let mut i = 0;
    while i < facts.len() {
        match &facts[i].key {
            None => {
                add_sum(defs, index, &facts[i], levels, 1, out, interner);
                i += 1;
            }
            Some(k) => {
                let (measure, key) = (facts[i].measure, k.clone());
                let end = facts[i..]
                    .iter()
                    .position(|f| f.measure != measure || f.key.as_ref() != Some(&key))
                    .map(|p| i + p)
                    .unwrap_or(facts.len());
                add_key(defs, index, &facts[i..end], levels, 1, out, interner);
                i = end;
            }
        }
    }
}
