//! Reading submissions for the indicators and writing figures: the applied contribution of
//! each submission, cell amounts (multi-row upserts) and key occurrences.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Text};

use super::contribution::{Bases, Basis, CellKey, Contribution, Group, Input, Interner, Occurrence};
use super::definition::Definitions;
use super::period::Period;
use super::registry::MapKind;
use super::sql::{Bind, Sql, MAX_BINDS};
use crate::areas::Level;
use crate::db::schema::{indicator_applied, indicator_cells, submission_versions, submissions};
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;

/// Serializes, until the end of the transaction, changes to one submission's contribution or
/// to one key's records across server instances sharing a PostgreSQL database (within one
/// instance the single writer already does). SQLite has one writer at a time anyway.
pub fn lock(conn: &mut Conn<'_>, what: &str) -> Result<(), AppError> {
    if matches!(conn, Conn::Pg(_)) {
        let mut sql = Sql::new(conn, "SELECT pg_advisory_xact_lock(hashtextextended(");
        sql.bind(format!("fieldtally:{what}")).push(", 0))");
        sql.execute(conn)?;
    }
    Ok(())
}

/// The contribution a submission has applied: which version, counted in which bases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub version_id: i64,
    pub bases: Bases,
}

pub fn applied(conn: &mut Conn<'_>, submission_id: i64) -> Result<Option<Applied>, AppError> {
    let row: Option<(i64, bool, bool)> = on_conn!(conn, c => indicator_applied::table
        .find(submission_id)
        .select((
            indicator_applied::version_id,
            indicator_applied::provisional,
            indicator_applied::confirmed,
        ))
        .first(c)
        .optional())?;
    Ok(row.map(|(version_id, provisional, confirmed)| Applied {
        version_id,
        bases: Bases {
            provisional,
            confirmed,
        },
    }))
}

pub fn set_applied(
    conn: &mut Conn<'_>,
    submission_id: i64,
    applied: Option<Applied>,
) -> Result<(), AppError> {
    on_conn!(conn, c => diesel::delete(indicator_applied::table.find(submission_id)).execute(c))?;
    if let Some(a) = applied {
        on_conn!(conn, c => diesel::insert_into(indicator_applied::table)
            .values((
                indicator_applied::submission_id.eq(submission_id),
                indicator_applied::version_id.eq(a.version_id),
                indicator_applied::provisional.eq(a.bases.provisional),
                indicator_applied::confirmed.eq(a.bases.confirmed),
            ))
            .execute(c))?;
    }
    Ok(())
}

type InputRow = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<NaiveDate>,
    Option<String>,
    String,
);

fn input(row: InputRow, bases: Option<Bases>) -> Result<Input, AppError> {
    let (submission_id, version_id, form_id, fields, hamlet_code, activity_date, key, state) = row;
    Ok(Input {
        submission_id,
        version_id,
        form_id,
        fields: serde_json::from_str(&fields)
            .map_err(|e| AppError::internal(format!("stored fields are not JSON: {e}")))?,
        hamlet_code,
        activity_date,
        beneficiary_key: key,
        bases: bases.unwrap_or_else(|| Bases::of_state(&state)),
    })
}

/// A version of a submission, counted in `bases` (its review state's when `None`).
pub fn load_version(
    conn: &mut Conn<'_>,
    submission_id: i64,
    version: Option<i64>,
    bases: Option<Bases>,
) -> Result<Option<Input>, AppError> {
    let row: Option<InputRow> = on_conn!(conn, c => {
        let q = submissions::table
            .inner_join(submission_versions::table.on(submission_versions::submission_id.eq(submissions::id)))
            .filter(submissions::id.eq(submission_id))
            .select((
                submissions::id,
                submission_versions::id,
                submissions::form_id,
                submission_versions::fields,
                submission_versions::hamlet_code,
                submission_versions::activity_date,
                submission_versions::beneficiary_key,
                submissions::review_state,
            ))
            .into_boxed();
        let q = match version {
            Some(v) => q.filter(submission_versions::id.eq(v)),
            None => q.filter(submission_versions::is_current.eq(true)),
        };
        q.first(c).optional()
    })?;
    row.map(|r| input(r, bases)).transpose()
}

/// Submissions of a form after `after_id`, in id order: their current version and review
/// state, or (`from_applied`) the version and bases they have applied.
pub fn load_batch(
    conn: &mut Conn<'_>,
    form_id: &str,
    after_id: i64,
    limit: i64,
    from_applied: bool,
) -> Result<Vec<Input>, AppError> {
    if from_applied {
        let rows: Vec<(InputRow, (bool, bool))> = on_conn!(conn, c => indicator_applied::table
            .inner_join(submissions::table.on(submissions::id.eq(indicator_applied::submission_id)))
            .inner_join(submission_versions::table.on(submission_versions::id.eq(indicator_applied::version_id)))
            .filter(submissions::form_id.eq(form_id))
            .filter(submissions::id.gt(after_id))
            .order(submissions::id)
            .limit(limit)
            .select((
                (
                    submissions::id,
                    submission_versions::id,
                    submissions::form_id,
                    submission_versions::fields,
                    submission_versions::hamlet_code,
                    submission_versions::activity_date,
                    submission_versions::beneficiary_key,
                    submissions::review_state,
                ),
                (indicator_applied::provisional, indicator_applied::confirmed),
            ))
            .load(c))?;
        rows.into_iter()
            .map(|(r, (provisional, confirmed))| {
                input(
                    r,
                    Some(Bases {
                        provisional,
                        confirmed,
                    }),
                )
            })
            .collect()
    } else {
        let rows: Vec<InputRow> = on_conn!(conn, c => submissions::table
            .inner_join(submission_versions::table.on(
                submission_versions::submission_id.eq(submissions::id)
                    .and(submission_versions::is_current.eq(true)),
            ))
            .filter(submissions::form_id.eq(form_id))
            .filter(submissions::id.gt(after_id))
            .order(submissions::id)
            .limit(limit)
            .select((
                submissions::id,
                submission_versions::id,
                submissions::form_id,
                submission_versions::fields,
                submission_versions::hamlet_code,
                submission_versions::activity_date,
                submission_versions::beneficiary_key,
                submissions::review_state,
            ))
            .load(c))?;
        rows.into_iter().map(|r| input(r, None)).collect()
    }
}

fn cell_values(defs: &Definitions, snapshot: i64, k: &CellKey, value: i64) -> Vec<Bind> {
    let measure = defs.measure(k.measure).map(|m| m.id.clone()).unwrap_or_default();
    vec![
        snapshot.into(),
        measure.into(),
        k.group.basis.as_str().into(),
        k.group.map.as_str().into(),
        k.group.level.as_str().into(),
        k.group.period.to_string().into(),
        k.group.area_id.into(),
        k.dims.to_string().into(),
        value.into(),
    ]
}

#[derive(QueryableByName)]
struct CellRow {
    #[diesel(sql_type = Text)]
    measure: String,
    #[diesel(sql_type = Text)]
    basis: String,
    #[diesel(sql_type = Text)]
    map: String,
    #[diesel(sql_type = Text)]
    level: String,
    #[diesel(sql_type = Text)]
    period: String,
    #[diesel(sql_type = BigInt)]
    area_id: i64,
    #[diesel(sql_type = Text)]
    dims: String,
    #[diesel(sql_type = BigInt)]
    value: i64,
}

/// Adds amounts to cells of `snapshot`, creating missing cells and removing cells that come
/// to 0, so that a cell exists exactly when its figure is not 0.
pub fn add_to_cells(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    snapshot: i64,
    amounts: &[(&CellKey, i64)],
) -> Result<(), AppError> {
    for chunk in amounts.chunks(MAX_BINDS / 9) {
        let mut sql = Sql::new(
            conn,
            "INSERT INTO indicator_cells (snapshot, measure, basis, map, level, period, area_id, dims, value) VALUES ",
        );
        for (i, (k, v)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.row(cell_values(defs, snapshot, k, *v));
        }
        sql.push(
            " ON CONFLICT (snapshot, measure, basis, map, level, period, area_id, dims) \
             DO UPDATE SET value = indicator_cells.value + excluded.value \
             RETURNING measure, basis, map, level, period, area_id, dims, value",
        );
        let rows: Vec<CellRow> = sql.load(conn)?;
        for r in rows.into_iter().filter(|r| r.value == 0) {
            on_conn!(conn, c => diesel::delete(indicator_cells::table
                .filter(indicator_cells::snapshot.eq(snapshot))
                .filter(indicator_cells::measure.eq(&r.measure))
                .filter(indicator_cells::basis.eq(&r.basis))
                .filter(indicator_cells::map.eq(&r.map))
                .filter(indicator_cells::level.eq(&r.level))
                .filter(indicator_cells::period.eq(&r.period))
                .filter(indicator_cells::area_id.eq(r.area_id))
                .filter(indicator_cells::dims.eq(&r.dims)))
            .execute(c))?;
        }
    }
    Ok(())
}

/// Inserts key occurrences of submissions into `snapshot`.
pub fn insert_occurrences(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    snapshot: i64,
    rows: &[(&Occurrence, i64, NaiveDate)],
) -> Result<(), AppError> {
    for chunk in rows.chunks(MAX_BINDS / 11) {
        let mut sql = Sql::new(
            conn,
            "INSERT INTO indicator_keys (snapshot, measure, distinct_key, basis, map, level, period, area_id, submission_id, activity_date, dims) VALUES ",
        );
        for (i, (o, sid, date)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            let measure = defs.measure(o.measure).map(|m| m.id.clone()).unwrap_or_default();
            sql.row(vec![
                snapshot.into(),
                measure.into(),
                o.key.to_string().into(),
                o.group.basis.as_str().into(),
                o.group.map.as_str().into(),
                o.group.level.as_str().into(),
                o.group.period.to_string().into(),
                o.group.area_id.into(),
                (*sid).into(),
                (*date).into(),
                o.dims.to_string().into(),
            ]);
        }
        sql.execute(conn)?;
    }
    Ok(())
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    basis: String,
    #[diesel(sql_type = Text)]
    map: String,
    #[diesel(sql_type = Text)]
    level: String,
    #[diesel(sql_type = Text)]
    period: String,
    #[diesel(sql_type = BigInt)]
    area_id: i64,
    #[diesel(sql_type = BigInt)]
    submission_id: i64,
    #[diesel(sql_type = Date)]
    activity_date: NaiveDate,
    #[diesel(sql_type = Text)]
    dims: String,
}

pub fn group_of(
    basis: &str,
    map: &str,
    level: &str,
    period: &str,
    area_id: i64,
) -> Result<Group, AppError> {
    let corrupt = || AppError::internal("a stored indicator figure has an unknown basis, map or level");
    Ok(Group {
        basis: Basis::parse(basis).ok_or_else(corrupt)?,
        map: MapKind::parse(map).ok_or_else(corrupt)?,
        level: Level::parse(level).ok_or_else(corrupt)?,
        period: Period::parse(period)?,
        area_id,
    })
}

/// A key's record that decides its dimensions in a group: the latest by activity date, then
/// by submission.
type Record = (NaiveDate, i64, Arc<str>);

fn representative(records: Option<&Vec<Record>>) -> Option<&Arc<str>> {
    records?
        .iter()
        .max_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
        .map(|r| &r.2)
}

/// Applies the change from `old` to `new` (the contributions of submission `sid` before and
/// after) to the live figures; returns the change of every cell.
pub fn apply(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    sid: i64,
    old: &Contribution,
    new: &Contribution,
    interner: &mut Interner,
) -> Result<HashMap<CellKey, i64>, AppError> {
    let mut delta: HashMap<CellKey, i64> = new.cells.clone();
    for (k, v) in &old.cells {
        *delta.entry(k.clone()).or_insert(0) -= v;
    }

    let by_key = |c: &Contribution| {
        let mut m: BTreeMap<(u16, Arc<str>), Vec<(Group, Arc<str>)>> = BTreeMap::new();
        for o in &c.occurrences {
            m.entry((o.measure, o.key.clone()))
                .or_default()
                .push((o.group, o.dims.clone()));
        }
        m
    };
    let (old_keys, new_keys) = (by_key(old), by_key(new));
    let touched: BTreeSet<&(u16, Arc<str>)> = old_keys.keys().chain(new_keys.keys()).collect();
    let mut inserts: Vec<(Occurrence, i64, NaiveDate)> = Vec::new();
    for mk in touched {
        let (was, now) = (old_keys.get(mk), new_keys.get(mk));
        if was == now && old.activity_date == new.activity_date {
            continue;
        }
        let (n, key) = mk;
        let measure = defs.measure(*n).map(|m| m.id.clone()).unwrap_or_default();
        lock(conn, &format!("key:{measure}:{key}"))?;
        let mut sql = Sql::new(
            conn,
            "SELECT basis, map, level, period, area_id, submission_id, activity_date, dims FROM indicator_keys WHERE snapshot = 0 AND measure = ",
        );
        sql.bind(measure.as_str()).push(" AND distinct_key = ").bind(key.to_string());
        let rows: Vec<KeyRow> = sql.load(conn)?;
        let mut before: HashMap<Group, Vec<Record>> = HashMap::new();
        for r in rows {
            let g = group_of(&r.basis, &r.map, &r.level, &r.period, r.area_id)?;
            before
                .entry(g)
                .or_default()
                .push((r.activity_date, r.submission_id, interner.get(r.dims)));
        }
        let mut after = before.clone();
        for records in after.values_mut() {
            records.retain(|r| r.1 != sid);
        }
        if let (Some(list), Some(date)) = (now, new.activity_date) {
            for (g, dims) in list {
                after.entry(*g).or_default().push((date, sid, dims.clone()));
                inserts.push((
                    Occurrence {
                        measure: *n,
                        key: key.clone(),
                        group: *g,
                        dims: dims.clone(),
                    },
                    sid,
                    date,
                ));
            }
        }
        let groups: BTreeSet<Group> = was
            .into_iter()
            .chain(now)
            .flatten()
            .map(|(g, _)| *g)
            .collect();
        for g in groups {
            let (rb, ra) = (representative(before.get(&g)), representative(after.get(&g)));
            if rb == ra {
                continue;
            }
            if let Some(d) = rb {
                *delta
                    .entry(CellKey {
                        measure: *n,
                        group: g,
                        dims: d.clone(),
                    })
                    .or_insert(0) -= 1;
            }
            if let Some(d) = ra {
                *delta
                    .entry(CellKey {
                        measure: *n,
                        group: g,
                        dims: d.clone(),
                    })
                    .or_insert(0) += 1;
            }
        }
        let mut del = Sql::new(conn, "DELETE FROM indicator_keys WHERE snapshot = 0 AND measure = ");
        del.bind(measure.as_str())
            .push(" AND distinct_key = ")
            .bind(key.to_string())
            .push(" AND submission_id = ")
            .bind(sid);
        del.execute(conn)?;
    }
    let rows: Vec<(&Occurrence, i64, NaiveDate)> =
        inserts.iter().map(|(o, s, d)| (o, *s, *d)).collect();
    insert_occurrences(conn, defs, 0, &rows)?;

    delta.retain(|_, v| *v != 0);
    let mut amounts: Vec<(&CellKey, i64)> = delta.iter().map(|(k, v)| (k, *v)).collect();
    // One order for every writer, so concurrent transactions on PostgreSQL never deadlock.
    amounts.sort();
    add_to_cells(conn, defs, 0, &amounts)?;
    Ok(delta)
}
