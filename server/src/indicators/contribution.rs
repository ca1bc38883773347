//! What one submission contributes to the figures: its facts, placed on both maps, counted in
//! its bases, in every area of its chain (hamlet, commune, district, province) and in its
//! month, quarter and year. Sums and counts become cell amounts; distinct measures become key
//! occurrences, from which the cells are derived.

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
}

/// The bases a submission counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

    pub fn list(self) -> Vec<Basis> {
        let mut out = Vec::new();
        if self.provisional {
            out.push(Basis::Provisional);
        }
        if self.confirmed {
            out.push(Basis::Confirmed);
        }
        out
    }
}

/// Everything but the measure and the dimensions of a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group {
    pub basis: Basis,
    pub map: MapKind,
    pub level: Level,
    pub period: Period,
    pub area_id: i64,
}

/// One stored figure.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    pub measure: u16,
    pub group: Group,
    /// The dimensions as a JSON object with sorted keys.
    pub dims: Arc<str>,
}

/// One record of a distinct key by one submission.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Occurrence {
    pub measure: u16,
    pub key: Arc<str>,
    pub group: Group,
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

#[derive(Debug, Default)]
pub struct Contribution {
    pub cells: HashMap<CellKey, i64>,
    pub occurrences: Vec<Occurrence>,
    pub activity_date: Option<NaiveDate>,
}

/// Shares the text of repeated dimensions and keys.
#[derive(Default)]
pub struct Interner(HashMap<String, Arc<str>>);

impl Interner {
    pub fn get(&mut self, s: String) -> Arc<str> {
        if let Some(a) = self.0.get(&s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s.as_str());
        self.0.insert(s, a.clone());
        a
    }
}

pub fn dims_text(dims: &BTreeMap<String, String>) -> String {
    serde_json::to_string(dims).unwrap_or_else(|_| "{}".into())
}

/// The contribution of one submission to the measures selected by `only` (all when `None`).
/// A submission without an activity date, or whose hamlet the registry does not know, counts
/// nowhere: there is no period or area to count it in.
pub fn contribution(
    defs: &Definitions,
    index: &AreaIndex,
    input: &Input,
    only: Option<&[bool]>,
    interner: &mut Interner,
) -> Contribution {
    let mut out = Contribution {
        activity_date: input.activity_date,
        ..Default::default()
    };
    let bases = input.bases.list();
    let (Some(date), Some(hamlet)) = (input.activity_date, input.hamlet_code.as_deref()) else {
        return out;
    };
    if bases.is_empty() {
        return out;
    }
    let placements: Vec<_> = MapKind::ALL
        .iter()
        .filter_map(|map| index.placement(hamlet, *map, date))
        .collect();
    if placements.is_empty() {
        return out;
    }
    let periods = Period::of_date(date);
    let data = VersionData {
        fields: &input.fields,
        beneficiary_key: input.beneficiary_key.as_deref(),
        activity_date: date,
    };
    for &n in defs.for_form(&input.form_id) {
        if only.is_some_and(|mask| !mask.get(usize::from(n)).copied().unwrap_or(false)) {
            continue;
        }
        let Some(m) = defs.measure(n) else { continue };
        for fact in m.facts(&data) {
            for p in &placements {
                let mut dims = fact.dims.clone();
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
                let dims = interner.get(dims_text(&dims));
                let key = fact.key.clone().map(|k| interner.get(k));
                for &basis in &bases {
                    for &(level, area_id) in &p.areas {
                        for &period in &periods {
                            let group = Group {
                                basis,
                                map: p.map,
                                level,
                                period,
                                area_id,
                            };
                            match (&key, m.kind) {
                                (Some(k), Kind::Distinct) => out.occurrences.push(Occurrence {
                                    measure: n,
                                    key: k.clone(),
                                    group,
                                    dims: dims.clone(),
                                }),
                                _ => {
                                    *out.cells
                                        .entry(CellKey {
                                            measure: n,
                                            group,
                                            dims: dims.clone(),
                                        })
                                        .or_insert(0) += fact.value;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out.cells.retain(|_, v| *v != 0);
    out.occurrences.sort();
    out.occurrences.dedup();
    out
}
