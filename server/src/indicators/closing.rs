//! Closing a reporting period: its figures (and the targets, baselines and definitions they
//! were reported with) are frozen as a snapshot that stays retrievable exactly as reported.
//! Later changes that touch a closed period are listed as revisions: what changed, which
//! submission, who.

use std::collections::{BTreeMap, HashMap};

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde::Serialize;

use super::contribution::{add_facts, BasisTag, CellKey, Interner, Levels, MapTag};
use super::definition::Definitions;
use super::period::Period;
use super::registry::AreaIndex;
use super::sql::Sql;
use super::store;
use crate::areas::Level;
use crate::db::schema::{indicator_periods, indicator_revisions, submissions, users};
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;

#[derive(Debug, Clone, Queryable)]
pub struct PeriodRow {
    pub id: i64,
    pub period: String,
    pub closed_at: NaiveDateTime,
    pub closed_by: Option<i64>,
    pub note: Option<String>,
    pub definitions: String,
}

fn rows(conn: &mut Conn<'_>) -> Result<Vec<PeriodRow>, AppError> {
    Ok(on_conn!(conn, c => indicator_periods::table
        .select((
            indicator_periods::id,
            indicator_periods::period,
            indicator_periods::closed_at,
            indicator_periods::closed_by,
            indicator_periods::note,
            indicator_periods::definitions,
        ))
        .order(indicator_periods::id)
        .load(c))?)
}

pub fn find(conn: &mut Conn<'_>, period: Period) -> Result<Option<PeriodRow>, AppError> {
    let text = period.to_string();
    Ok(rows(conn)?.into_iter().find(|r| r.period == text))
}

/// The definitions a closed period was reported with.
pub fn definitions_of(row: &PeriodRow) -> Result<Definitions, AppError> {
    let files: Vec<(String, String)> = serde_json::from_str(&row.definitions)
        .map_err(|e| AppError::internal(format!("stored definitions of a closed period: {e}")))?;
    Definitions::parse(&files)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClosedPeriod {
    pub period: String,
    pub closed_at: NaiveDateTime,
    pub closed_by: Option<String>,
    pub note: Option<String>,
    pub revision_count: i64,
}

fn username(conn: &mut Conn<'_>, id: Option<i64>) -> Result<Option<String>, AppError> {
    let Some(id) = id else { return Ok(None) };
    Ok(on_conn!(conn, c => users::table
        .find(id)
        .select(users::username)
        .first(c)
        .optional())?)
}

fn view(conn: &mut Conn<'_>, r: &PeriodRow) -> Result<ClosedPeriod, AppError> {
    let revisions: i64 = on_conn!(conn, c => indicator_revisions::table
        .filter(indicator_revisions::period_id.eq(r.id))
        .count()
        .get_result(c))?;
    Ok(ClosedPeriod {
        period: r.period.clone(),
        closed_at: r.closed_at,
        closed_by: username(conn, r.closed_by)?,
        note: r.note.clone(),
        revision_count: revisions,
    })
}

pub fn list(conn: &mut Conn<'_>) -> Result<Vec<ClosedPeriod>, AppError> {
    rows(conn)?.iter().map(|r| view(conn, r)).collect()
}

/// Closes `period`: freezes the live figures of the period and of every shorter period within
/// it (hamlet figures too, computed from the facts), with the year's targets and baselines and
/// the definitions in use.
pub fn close(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    index: &AreaIndex,
    period: Period,
    by: Option<i64>,
    note: Option<&str>,
) -> Result<ClosedPeriod, AppError> {
    if find(conn, period)?.is_some() {
        return Err(AppError::conflict(
            "period_closed",
            format!("the period {period} is already closed; its snapshot cannot change"),
        ));
    }
    let sources =
        serde_json::to_string(&defs.sources()).map_err(|e| AppError::internal(e.to_string()))?;
    let now = Utc::now().naive_utc();
    let text = period.to_string();
    let id: i64 = on_conn!(conn, c => diesel::insert_into(indicator_periods::table)
        .values((
            indicator_periods::period.eq(&text),
            indicator_periods::closed_at.eq(now),
            indicator_periods::closed_by.eq(by),
            indicator_periods::note.eq(note),
            indicator_periods::definitions.eq(&sources),
        ))
        .returning(indicator_periods::id)
        .get_result(c))?;
    let covered: Vec<String> = period.covered().iter().map(Period::to_string).collect();
    for (table, columns) in [
        ("indicator_cells", super::recompute::CELL_COLUMNS),
        ("indicator_rollups", super::recompute::ROLLUP_COLUMNS),
    ] {
        let mut sql = Sql::new(
            conn,
            &format!("INSERT INTO {table} (snapshot, {columns}) SELECT "),
        );
        sql.bind(id)
            .push(&format!(
                ", {columns} FROM {table} WHERE snapshot = 0 AND period IN ("
            ))
            .list(&covered)
            .push(")");
        sql.execute(conn)?;
    }
    let ids: Vec<String> = defs.numbered().map(|(_, m)| m.id.clone()).collect();
    let (from, to) = period.bounds();
    let mut interner = Interner::default();
    let mut facts = store::facts_in(conn, defs, &ids, from, to, &[], &mut interner)?;
    let mut hamlets: HashMap<CellKey, i64> = HashMap::new();
    add_facts(
        defs,
        index,
        &mut facts,
        Levels::Hamlet,
        &mut hamlets,
        &mut interner,
    );
    let covered_set = period.covered();
    let mut amounts: Vec<(&CellKey, i64)> = hamlets
        .iter()
        .filter(|(k, v)| **v != 0 && covered_set.contains(&k.group.period))
        .map(|(k, v)| (k, *v))
        .collect();
    amounts.sort();
    store::add_to_cells(conn, defs, id, &amounts)?;
    let year = i64::from(period.year());
    for (table, columns) in [
        (
            "indicator_targets",
            "indicator, measure, area_id, year, target, updated_at",
        ),
        (
            "indicator_baselines",
            "baseline, area_id, year, value, updated_at",
        ),
    ] {
        let mut sql = Sql::new(
            conn,
            &format!("INSERT INTO {table} (snapshot, {columns}) SELECT "),
        );
        sql.bind(id)
            .push(&format!(
                ", {columns} FROM {table} WHERE snapshot = 0 AND year = "
            ))
            .bind(year);
        sql.execute(conn)?;
    }
    let row = find(conn, period)?.ok_or_else(|| AppError::internal("closed period vanished"))?;
    view(conn, &row)
}

/// One changed figure of a closed period, at the top of the area tree.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
#[schema(as = RevisionChange)]
pub struct Change {
    pub indicator: String,
    pub measure: String,
    pub basis: String,
    pub map: String,
    pub period: String,
    pub area: String,
    pub change: i64,
}

fn insert_revision(
    conn: &mut Conn<'_>,
    period_id: i64,
    submission_id: Option<i64>,
    reason: &str,
    by: Option<i64>,
    changes: &[Change],
) -> Result<(), AppError> {
    let text = serde_json::to_string(changes).map_err(|e| AppError::internal(e.to_string()))?;
    on_conn!(conn, c => diesel::insert_into(indicator_revisions::table)
        .values((
            indicator_revisions::period_id.eq(period_id),
            indicator_revisions::submission_id.eq(submission_id),
            indicator_revisions::reason.eq(reason),
            indicator_revisions::user_id.eq(by),
            indicator_revisions::at.eq(Utc::now().naive_utc()),
            indicator_revisions::changes.eq(&text),
        ))
        .execute(c))?;
    Ok(())
}

fn split_measure(id: &str) -> (String, String) {
    match id.split_once('/') {
        Some((i, m)) => (i.to_string(), m.to_string()),
        None => (id.to_string(), String::new()),
    }
}

fn area_code(index: &AreaIndex, id: i64) -> String {
    index
        .get(id)
        .map(|n| n.code.clone())
        .unwrap_or_else(|| id.to_string())
}

/// One submission's change to the figures, as a revision would list it.
pub struct Revision<'a> {
    pub submission_id: i64,
    pub delta: &'a HashMap<CellKey, i64>,
    pub reason: &'static str,
    pub by: Option<i64>,
}

/// Lists the changes each submission's `delta` makes to figures of closed periods.
pub fn record_revisions(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    index: &AreaIndex,
    revisions: &[Revision<'_>],
) -> Result<(), AppError> {
    if revisions.iter().all(|r| r.delta.is_empty()) {
        return Ok(());
    }
    let closed: Vec<(i64, String)> = on_conn!(conn, c => indicator_periods::table
        .select((indicator_periods::id, indicator_periods::period))
        .order(indicator_periods::id)
        .load(c))?;
    for (id, period) in &closed {
        let covered = Period::parse(period)?.covered();
        for r in revisions.iter().filter(|r| !r.delta.is_empty()) {
            record_revision(conn, defs, index, *id, &covered, r)?;
        }
    }
    Ok(())
}

fn record_revision(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    index: &AreaIndex,
    period_id: i64,
    covered: &[Period],
    r: &Revision<'_>,
) -> Result<(), AppError> {
    let mut sums: BTreeMap<(String, &'static str, &'static str, String, i64), i64> =
        BTreeMap::new();
    for (k, v) in r.delta {
        if k.group.level == Level::Province && covered.contains(&k.group.period) {
            let id = defs
                .measure(k.measure)
                .map(|m| m.id.clone())
                .unwrap_or_default();
            for basis in k.group.basis.bases() {
                for map in k.group.map.maps() {
                    *sums
                        .entry((
                            id.clone(),
                            basis.as_str(),
                            map.as_str(),
                            k.group.period.to_string(),
                            k.group.area_id,
                        ))
                        .or_insert(0) += v;
                }
            }
        }
    }
    let changes: Vec<Change> = sums
        .into_iter()
        .filter(|(_, v)| *v != 0)
        .map(|((id, basis, map, period, area), change)| {
            let (indicator, measure) = split_measure(&id);
            Change {
                indicator,
                measure,
                basis: basis.to_string(),
                map: map.to_string(),
                period,
                area: area_code(index, area),
                change,
            }
        })
        .collect();
    if !changes.is_empty() {
        insert_revision(
            conn,
            period_id,
            Some(r.submission_id),
            r.reason,
            r.by,
            &changes,
        )?;
    }
    Ok(())
}

#[derive(QueryableByName)]
struct Total {
    #[diesel(sql_type = Text)]
    measure: String,
    #[diesel(sql_type = Text)]
    basis: String,
    #[diesel(sql_type = Text)]
    map: String,
    #[diesel(sql_type = Text)]
    period: String,
    #[diesel(sql_type = BigInt)]
    area_id: i64,
    #[diesel(sql_type = BigInt)]
    total: i64,
}

/// Province totals of closed periods, per (measure, basis, map, period, area).
pub type Totals = BTreeMap<(String, String, String, String, i64), i64>;

/// The live province totals of the given measures in every closed period, to compare before
/// and after a rebuild.
pub fn closed_totals(conn: &mut Conn<'_>, measures: &[String]) -> Result<Totals, AppError> {
    let mut periods: Vec<String> = Vec::new();
    for p in rows(conn)? {
        periods.extend(
            Period::parse(&p.period)?
                .covered()
                .iter()
                .map(Period::to_string),
        );
    }
    if periods.is_empty() || measures.is_empty() {
        return Ok(Totals::new());
    }
    periods.sort();
    periods.dedup();
    let mut sql = Sql::new(
        conn,
        "SELECT measure, basis, map, period, area_id, CAST(SUM(value) AS BIGINT) AS total FROM indicator_cells \
         WHERE snapshot = 0 AND level = 'province' AND measure IN (",
    );
    sql.list(measures)
        .push(") AND period IN (")
        .list(&periods)
        .push(") GROUP BY measure, basis, map, period, area_id");
    let rows: Vec<Total> = sql.load(conn)?;
    let mut out = Totals::new();
    for r in rows {
        let (Some(basis), Some(map)) = (BasisTag::parse(&r.basis), MapTag::parse(&r.map)) else {
            continue;
        };
        for b in basis.bases() {
            for m in map.maps() {
                *out.entry((
                    r.measure.clone(),
                    b.as_str().to_string(),
                    m.as_str().to_string(),
                    r.period.clone(),
                    r.area_id,
                ))
                .or_insert(0) += r.total;
            }
        }
    }
    Ok(out)
}

/// Lists what a rebuild (changed definitions, changed area registry) changed in closed periods.
pub fn record_rebuild(
    conn: &mut Conn<'_>,
    index: &AreaIndex,
    measures: &[String],
    before: &Totals,
    reason: &str,
) -> Result<(), AppError> {
    let closed = rows(conn)?;
    if closed.is_empty() {
        return Ok(());
    }
    let after = closed_totals(conn, measures)?;
    let mut delta: Totals = after.clone();
    for (k, v) in before {
        *delta.entry(k.clone()).or_insert(0) -= v;
    }
    for p in closed {
        let covered: Vec<String> = Period::parse(&p.period)?
            .covered()
            .iter()
            .map(Period::to_string)
            .collect();
        let changes: Vec<Change> = delta
            .iter()
            .filter(|(k, v)| **v != 0 && covered.contains(&k.3))
            .map(|((id, basis, map, period, area), change)| {
                let (indicator, measure) = split_measure(id);
                Change {
                    indicator,
                    measure,
                    basis: basis.clone(),
                    map: map.clone(),
                    period: period.clone(),
                    area: area_code(index, *area),
                    change: *change,
                }
            })
            .collect();
        if !changes.is_empty() {
            insert_revision(conn, p.id, None, reason, None, &changes)?;
        }
    }
    Ok(())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Revision)]
pub struct RevisionView {
    pub at: NaiveDateTime,
    pub reason: String,
    /// instanceID of the submission, when one submission caused it.
    pub submission: Option<String>,
    pub by: Option<String>,
    pub changes: Vec<Change>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ClosedPeriodDetail)]
pub struct PeriodDetail {
    #[serde(flatten)]
    pub period: ClosedPeriod,
    pub revisions: Vec<RevisionView>,
}

type RevisionRow = (
    NaiveDateTime,
    String,
    Option<String>,
    Option<String>,
    String,
);

pub fn detail(conn: &mut Conn<'_>, period: Period) -> Result<PeriodDetail, AppError> {
    let row = find(conn, period)?.ok_or_else(|| {
        AppError::not_found(
            "period_not_closed",
            format!("the period {period} has not been closed"),
        )
    })?;
    let list: Vec<RevisionRow> = on_conn!(conn, c => indicator_revisions::table
        .left_join(submissions::table.on(submissions::id.nullable().eq(indicator_revisions::submission_id)))
        .left_join(users::table.on(users::id.nullable().eq(indicator_revisions::user_id)))
        .filter(indicator_revisions::period_id.eq(row.id))
        .order(indicator_revisions::id)
        .select((
            indicator_revisions::at,
            indicator_revisions::reason,
            submissions::instance_id.nullable(),
            users::username.nullable(),
            indicator_revisions::changes,
        ))
        .load(c))?;
    let revisions = list
        .into_iter()
        .map(|(at, reason, submission, by, changes)| {
            Ok(RevisionView {
                at,
                reason,
                submission,
                by,
                changes: serde_json::from_str(&changes)
                    .map_err(|e| AppError::internal(format!("stored revision: {e}")))?,
            })
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    Ok(PeriodDetail {
        period: view(conn, &row)?,
        revisions,
    })
}
