//! Project 8 indicators: submissions reconciled into figures per area and period, exact
//! whatever order the data arrives in, up to date with every change before any read of them,
//! and explainable down to the submissions behind each number.
//!
//! - Definitions are data (`definition.rs`, files in `forms/indicators/`).
//! - One submission's *facts* (`contribution.rs`, table `indicator_facts`): what its current
//!   version gives each measure, in the bases it counts in (provisional: not rejected;
//!   confirmed: approved). A fact counts on both maps (as recorded, current), in every area of
//!   its hamlet's chain and in its month, quarter and year.
//! - `indicator_applied` remembers which version and bases each submission has applied;
//!   [`refresh_submission`] replaces its facts and applies the difference to the figures, inside
//!   the caller's transaction. Uploads only record their submission in `indicator_backlog`
//!   (`backlog.rs`), whose submissions are refreshed in large groups soon after and before any
//!   read of the figures.
//! - Figures from commune level up are kept in `indicator_cells`; hamlet figures are computed
//!   from the facts when asked for. Sums and counts add up their facts. A distinct key counts
//!   once per area and period, with the dimensions of its latest fact there (by activity date,
//!   then submission), so breakdowns add up to the total.
//! - `indicator_rollups` keeps, beside the cells and written by the same statements, each
//!   figure's total and its sum per value of each single dimension: a values table by at most
//!   one dimension reads those instead of every combination the cells hold.
//! - A full recompute from the raw submissions gives the same tables (`recompute.rs`).

pub mod backlog;
pub mod closing;
pub mod contribution;
pub mod definition;
pub mod period;
pub mod query;
pub mod recompute;
pub mod registry;
pub mod report;
mod sql;
mod store;
pub mod targets;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use diesel::prelude::*;
use serde::Serialize;

use self::contribution::{facts_of, Interner};
use self::definition::Definitions;
use self::recompute::{Report, Source, Verification, LIVE};
use self::registry::{AreaIndex, Fingerprint};
use self::store::Applied;
use crate::db::schema::{indicator_definitions, settings};
use crate::db::{Conn, Refresh};
use crate::error::AppError;
use crate::on_conn;

/// The settings row that remembers the area registry the live figures were placed with.
const REGISTRY_SETTING: &str = "indicators_area_registry";

/// The definitions in use and the area registry as last loaded.
pub struct Indicators {
    defs: Definitions,
    areas: Mutex<Option<(Fingerprint, Arc<AreaIndex>)>>,
}

impl Indicators {
    pub fn new(defs: Definitions) -> Indicators {
        Indicators {
            defs,
            areas: Mutex::new(None),
        }
    }

    /// The shipped definitions, with those of `dir` added or replacing them.
    pub fn load(dir: Option<&Path>) -> Result<Indicators, AppError> {
        Ok(Indicators::new(Definitions::load(dir)?))
    }

    /// The definitions the figures of this database were computed with (the shipped ones if
    /// the server never started on it): what command-line tools must use.
    pub fn in_effect(conn: &mut Conn<'_>) -> Result<Indicators, AppError> {
        let stored: Vec<(String, String)> = on_conn!(conn, c => indicator_definitions::table
            .select((indicator_definitions::indicator, indicator_definitions::source))
            .order(indicator_definitions::indicator)
            .load(c))?;
        if stored.is_empty() {
            return Indicators::load(None);
        }
        let files: Vec<(String, String)> = stored
            .into_iter()
            .map(|(code, text)| (format!("{code}.toml"), text))
            .collect();
        Ok(Indicators::new(Definitions::parse(&files)?))
    }

    pub fn definitions(&self) -> &Definitions {
        &self.defs
    }

    /// The area registry, reloaded when it changed.
    pub fn area_index(&self, conn: &mut Conn<'_>) -> Result<Arc<AreaIndex>, AppError> {
        let fp = registry::fingerprint(conn)?;
        if let Ok(guard) = self.areas.lock() {
            if let Some((f, index)) = guard.as_ref() {
                if *f == fp {
                    return Ok(index.clone());
                }
            }
        }
        let index = Arc::new(AreaIndex::load(conn)?);
        if let Ok(mut guard) = self.areas.lock() {
            *guard = Some((fp, index.clone()));
        }
        Ok(index)
    }
}

/// Brings the figures up to date with one submission: its current version and review state.
///
/// This is the one hook for every change to a submission. Call it inside the same write
/// transaction (`Conn::write_transaction`) as the change, after making it: storing a new
/// submission, an edit or an older version (`openrosa::submission`), a review state change (the
/// review code must call it after every update of `submissions.review_state`), an erasure. On
/// PostgreSQL that transaction keeps the writers of other server instances out until it
/// commits, so no other write changes the facts read here meanwhile. `by` is the user who made the
/// change, recorded on revisions of closed periods. Calling it when nothing changed costs two
/// small reads.
pub fn refresh_submission(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    submission_id: i64,
    by: Option<i64>,
) -> Result<(), AppError> {
    refresh_submissions(conn, indicators, &[Refresh { submission_id, by }])
}

/// [`refresh_submission`] for many submissions at once: the same figures as refreshing them
/// one after the other (the last `by` of a submission named twice counts), with each figure
/// written once.
pub fn refresh_submissions(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    refreshes: &[Refresh],
) -> Result<(), AppError> {
    let defs = indicators.definitions();
    let by: BTreeMap<i64, Option<i64>> =
        refreshes.iter().map(|r| (r.submission_id, r.by)).collect();
    let ids: Vec<i64> = by.keys().copied().collect();
    let before = store::applied(conn, &ids)?;
    let mut current = store::load_current(conn, &ids)?;
    let changed: Vec<(i64, Option<Applied>, Option<Applied>)> = ids
        .iter()
        .map(|id| {
            let after = current.get(id).map(|c| Applied {
                version_id: c.version_id,
                bases: c.bases,
            });
            (*id, before.get(id).copied(), after)
        })
        .filter(|(_, before, after)| before != after)
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let index = indicators.area_index(conn)?;
    let mut interner = Interner::default();
    let changed_ids: Vec<i64> = changed.iter().map(|(id, _, _)| *id).collect();
    let mut old = store::facts_of_submissions(conn, defs, &changed_ids, &mut interner)?;
    let changes: Vec<store::Change> = changed_ids
        .iter()
        .map(|id| {
            let mut new = current
                .remove(id)
                .map(|i| facts_of(defs, &i, None, &mut interner))
                .unwrap_or_default();
            new.sort();
            store::Change {
                submission_id: *id,
                old: old.remove(id).unwrap_or_default(),
                new,
            }
        })
        .collect();
    let deltas = store::apply(conn, defs, &index, &changes, &mut interner)?;
    let applied: Vec<(i64, Option<Applied>)> =
        changed.iter().map(|(id, _, after)| (*id, *after)).collect();
    store::set_applied(conn, &applied)?;
    let revisions: Vec<closing::Revision<'_>> = changed
        .iter()
        .zip(&deltas)
        .map(|((id, before, after), delta)| closing::Revision {
            submission_id: *id,
            delta,
            reason: match (before, after) {
                (None, _) => "new submission",
                (_, None) => "submission removed",
                (Some(b), Some(a)) if b.version_id != a.version_id => "submission edited",
                _ => "review state changed",
            },
            by: by.get(id).copied().flatten(),
        })
        .collect();
    closing::record_revisions(conn, defs, &index, &revisions)
}

fn stored_fingerprints(conn: &mut Conn<'_>) -> Result<HashMap<String, String>, AppError> {
    let rows: Vec<String> = on_conn!(conn, c => indicator_definitions::table
        .select(indicator_definitions::fingerprints)
        .load(c))?;
    let mut out = HashMap::new();
    for r in rows {
        let map: HashMap<String, String> = serde_json::from_str(&r)
            .map_err(|e| AppError::internal(format!("stored indicator fingerprints: {e}")))?;
        out.extend(map);
    }
    Ok(out)
}

fn setting(conn: &mut Conn<'_>, name: &str) -> Result<Option<String>, AppError> {
    Ok(on_conn!(conn, c => settings::table
        .filter(settings::name.eq(name))
        .select(settings::value)
        .first(c)
        .optional())?)
}

fn set_setting(conn: &mut Conn<'_>, name: &str, value: &str) -> Result<(), AppError> {
    on_conn!(conn, c => diesel::delete(settings::table.filter(settings::name.eq(name))).execute(c))?;
    on_conn!(conn, c => diesel::insert_into(settings::table)
        .values((settings::name.eq(name), settings::value.eq(value)))
        .execute(c))?;
    Ok(())
}

/// Records the definitions and registry the live figures now follow.
fn remember(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    registry: &Fingerprint,
) -> Result<(), AppError> {
    on_conn!(conn, c => diesel::delete(indicator_definitions::table).execute(c))?;
    let now = Utc::now().naive_utc();
    for ind in &defs.indicators {
        let fingerprints: HashMap<&str, &str> = ind
            .measures
            .iter()
            .map(|m| (m.id.as_str(), m.fingerprint.as_str()))
            .collect();
        let fingerprints =
            serde_json::to_string(&fingerprints).map_err(|e| AppError::internal(e.to_string()))?;
        on_conn!(conn, c => diesel::insert_into(indicator_definitions::table)
            .values((
                indicator_definitions::indicator.eq(&ind.code),
                indicator_definitions::source.eq(&ind.text),
                indicator_definitions::fingerprints.eq(&fingerprints),
                indicator_definitions::updated_at.eq(now),
            ))
            .execute(c))?;
    }
    set_setting(conn, REGISTRY_SETTING, &registry.0)
}

/// What starting with a set of definitions did to the figures.
#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    /// Every measure was recomputed (first start, or the area registry changed).
    pub full: bool,
    /// Measures recomputed because their counting rules changed or they are new.
    pub rebuilt: Vec<String>,
    /// Measures no longer defined, whose figures were removed.
    pub dropped: Vec<String>,
    pub report: Report,
}

/// At start: compares the definitions with those the figures were computed with and rebuilds
/// what changed (everything when the area registry changed meanwhile). One transaction.
pub fn sync(conn: &mut Conn<'_>, indicators: &Indicators) -> Result<SyncReport, AppError> {
    // What a stop left waiting is applied first; the measures whose definitions changed are
    // then rebuilt below from every submission, whatever the catch-up made of them.
    backlog::catch_up(conn, indicators)?;
    let defs = indicators.definitions();
    let registry = registry::fingerprint(conn)?;
    let stored = stored_fingerprints(conn)?;
    let full = stored.is_empty()
        || setting(conn, REGISTRY_SETTING)?.as_deref() != Some(registry.0.as_str());
    let mask: Vec<bool> = defs
        .numbered()
        .map(|(_, m)| full || stored.get(&m.id) != Some(&m.fingerprint))
        .collect();
    let mut out = SyncReport {
        full,
        rebuilt: defs
            .numbered()
            .filter(|(n, _)| mask[usize::from(*n)])
            .map(|(_, m)| m.id.clone())
            .collect(),
        dropped: stored
            .keys()
            .filter(|id| defs.number(id).is_none())
            .cloned()
            .collect(),
        ..Default::default()
    };
    out.dropped.sort();
    if !out.rebuilt.is_empty() || !out.dropped.is_empty() {
        let index = indicators.area_index(conn)?;
        let affected: Vec<String> = out.rebuilt.iter().chain(&out.dropped).cloned().collect();
        let before = closing::closed_totals(conn, &affected)?;
        recompute::drop_measures(conn, &out.dropped)?;
        out.report = if full {
            let r = recompute::recompute(conn, defs, &index, LIVE, &mask, Source::Raw)?;
            recompute::reset_applied(conn)?;
            r
        } else {
            recompute::recompute(conn, defs, &index, LIVE, &mask, Source::Applied)?
        };
        let reason = if full && !stored.is_empty() {
            "area registry changed".to_string()
        } else {
            format!("definitions changed: {}", affected.join(", "))
        };
        closing::record_rebuild(conn, &index, &affected, &before, &reason)?;
    }
    remember(conn, defs, &registry)?;
    Ok(out)
}

/// Recomputes every figure from the raw submissions (after an area import, or on request).
pub fn recompute_all(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    reason: &str,
) -> Result<Report, AppError> {
    let defs = indicators.definitions();
    let index = indicators.area_index(conn)?;
    let all: Vec<String> = defs.numbered().map(|(_, m)| m.id.clone()).collect();
    let before = closing::closed_totals(conn, &all)?;
    let mask = vec![true; defs.measure_count()];
    let report = recompute::recompute(conn, defs, &index, LIVE, &mask, Source::Raw)?;
    recompute::reset_applied(conn)?;
    // Every submission now counts as it stands: nothing waits any more.
    backlog::clear(conn)?;
    closing::record_rebuild(conn, &index, &all, &before, reason)?;
    let registry = registry::fingerprint(conn)?;
    remember(conn, defs, &registry)?;
    Ok(report)
}

/// Brings the maintained figures up to date with the backlog, then recomputes everything into a
/// scratch copy and compares it with them.
pub fn verify(conn: &mut Conn<'_>, indicators: &Indicators) -> Result<Verification, AppError> {
    backlog::catch_up(conn, indicators)?;
    let index = indicators.area_index(conn)?;
    recompute::verify(conn, indicators.definitions(), &index)
}
