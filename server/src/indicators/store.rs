//! Reading submissions for the indicators and writing figures: the applied contribution of
//! each submission, cell amounts (multi-row upserts) and key occurrences.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Date, Nullable, Text};

use super::contribution::{
    add_key, add_sum, Bases, CellKey, Group, Input, Interner, Levels, StoredFact,
};
use super::definition::Definitions;
use super::registry::AreaIndex;
use super::sql::{Bind, Sql, MAX_BINDS};
use crate::db::schema::{indicator_applied, submission_versions, submissions};
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;

/// The contribution a submission has applied: which version, counted in which bases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub version_id: i64,
    pub bases: Bases,
}

/// Submission ids per statement of the batch reads and writes below.
const IDS_PER_STATEMENT: usize = 1_000;

/// The contributions the given submissions have applied.
pub fn applied(conn: &mut Conn<'_>, ids: &[i64]) -> Result<HashMap<i64, Applied>, AppError> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let rows: Vec<(i64, i64, bool, bool)> = on_conn!(conn, c => indicator_applied::table
            .filter(indicator_applied::submission_id.eq_any(chunk))
            .select((
                indicator_applied::submission_id,
                indicator_applied::version_id,
                indicator_applied::provisional,
                indicator_applied::confirmed,
            ))
            .load(c))?;
        out.extend(
            rows.into_iter()
                .map(|(id, version_id, provisional, confirmed)| {
                    (
                        id,
                        Applied {
                            version_id,
                            bases: Bases {
                                provisional,
                                confirmed,
                            },
                        },
                    )
                }),
        );
    }
    Ok(out)
}

/// Records what each submission has now applied (nothing: `None`).
pub fn set_applied(
    conn: &mut Conn<'_>,
    changes: &[(i64, Option<Applied>)],
) -> Result<(), AppError> {
    for chunk in changes.chunks(IDS_PER_STATEMENT) {
        let ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
        on_conn!(conn, c => diesel::delete(indicator_applied::table
            .filter(indicator_applied::submission_id.eq_any(&ids)))
            .execute(c))?;
        let rows: Vec<_> = chunk
            .iter()
            .filter_map(|(id, a)| {
                a.map(|a| {
                    (
                        indicator_applied::submission_id.eq(*id),
                        indicator_applied::version_id.eq(a.version_id),
                        indicator_applied::provisional.eq(a.bases.provisional),
                        indicator_applied::confirmed.eq(a.bases.confirmed),
                    )
                })
            })
            .collect();
        if !rows.is_empty() {
            on_conn!(conn, c => diesel::insert_into(indicator_applied::table)
                .values(&rows)
                .execute(c))?;
        }
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

/// The current version of each of the given submissions that has one, counted in its review
/// state's bases.
pub fn load_current(conn: &mut Conn<'_>, ids: &[i64]) -> Result<HashMap<i64, Input>, AppError> {
    let mut out = HashMap::new();
    // Two lookups by index rather than a join: before it has statistics of a new database,
    // PostgreSQL joined the batch's submissions to a scan of every version (or of every
    // submission), a scan per batch that slowed as the tables grew.
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let states: HashMap<i64, (String, String)> = on_conn!(conn, c => submissions::table
            .filter(submissions::id.eq_any(chunk))
            .select((submissions::id, (submissions::form_id, submissions::review_state)))
            .load::<(i64, (String, String))>(c))?
        .into_iter()
        .collect();
        let versions: Vec<CurrentVersion> = on_conn!(conn, c => submission_versions::table
            .filter(submission_versions::submission_id.eq_any(chunk))
            .filter(submission_versions::is_current.eq(true))
            .select((
                submission_versions::submission_id,
                submission_versions::id,
                submission_versions::fields,
                submission_versions::hamlet_code,
                submission_versions::activity_date,
                submission_versions::beneficiary_key,
            ))
            .load(c))?;
        for (submission_id, version_id, fields, hamlet, date, key) in versions {
            let Some((form_id, state)) = states.get(&submission_id) else {
                continue;
            };
            let row = (
                submission_id,
                version_id,
                form_id.clone(),
                fields,
                hamlet,
                date,
                key,
                state.clone(),
            );
            out.insert(submission_id, input(row, None)?);
        }
    }
    Ok(out)
}

/// A current version as [`load_current`] reads it.
type CurrentVersion = (
    i64,
    i64,
    String,
    Option<String>,
    Option<NaiveDate>,
    Option<String>,
);

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

/// The values of a figure's columns before its own (`dims` or `dim, dim_value`): snapshot,
/// measure, basis, map, level, period, area id.
fn group_values(defs: &Definitions, snapshot: i64, measure: u16, g: &Group) -> Vec<Bind> {
    let measure = defs
        .measure(measure)
        .map(|m| m.id.clone())
        .unwrap_or_default();
    vec![
        snapshot.into(),
        measure.into(),
        g.basis.as_str().into(),
        g.map.as_str().into(),
        g.level.as_str().into(),
        g.period.to_string().into(),
        g.area_id.into(),
    ]
}

/// Adds amounts to rows of `table` (primary key `keys`, then `value`), each given as its key
/// values followed by the amount, in statements of as many rows as the binds allow. Returns
/// the rows as they came out, for the caller to remove those that came to 0.
fn upsert_adding<T>(
    conn: &mut Conn<'_>,
    table: &str,
    keys: &str,
    rows: Vec<Vec<Bind>>,
) -> Result<Vec<T>, AppError>
where
    T: QueryableByName<diesel::sqlite::Sqlite> + QueryableByName<diesel::pg::Pg> + 'static,
{
    let per_statement = MAX_BINDS / (keys.split(',').count() + 1);
    let mut rows = rows.into_iter().peekable();
    let mut out = Vec::new();
    while rows.peek().is_some() {
        let mut sql = Sql::new(
            conn,
            &format!("INSERT INTO {table} ({keys}, value) VALUES "),
        );
        for (i, row) in rows.by_ref().take(per_statement).enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.row(row);
        }
        sql.push(&format!(
            " ON CONFLICT ({keys}) DO UPDATE SET value = {table}.value + excluded.value \
             RETURNING {keys}, value"
        ));
        out.extend(sql.load::<T>(conn)?);
    }
    Ok(out)
}

const CELL_KEYS: &str = "snapshot, measure, basis, map, level, period, area_id, dims";
const ROLLUP_KEYS: &str = "snapshot, measure, basis, map, level, period, area_id, dim, dim_value";

/// The columns of a stored figure before its dims, as an upsert returns them.
#[derive(QueryableByName)]
struct GroupColumns {
    #[diesel(sql_type = BigInt)]
    snapshot: i64,
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
}

#[derive(QueryableByName)]
struct CellRow {
    #[diesel(embed)]
    group: GroupColumns,
    #[diesel(sql_type = Text)]
    dims: String,
    #[diesel(sql_type = BigInt)]
    value: i64,
}

#[derive(QueryableByName)]
struct RollupRow {
    #[diesel(embed)]
    group: GroupColumns,
    #[diesel(sql_type = Text)]
    dim: String,
    #[diesel(sql_type = Text)]
    dim_value: String,
    #[diesel(sql_type = BigInt)]
    value: i64,
}

/// Deletes the row of `table` with the key `group` and then `rest` (column, value).
fn delete_row(
    conn: &mut Conn<'_>,
    table: &str,
    group: GroupColumns,
    rest: &[(&str, String)],
) -> Result<(), AppError> {
    let mut sql = Sql::new(conn, &format!("DELETE FROM {table} WHERE snapshot = "));
    sql.bind(group.snapshot)
        .push(" AND measure = ")
        .bind(group.measure)
        .push(" AND basis = ")
        .bind(group.basis)
        .push(" AND map = ")
        .bind(group.map)
        .push(" AND level = ")
        .bind(group.level)
        .push(" AND period = ")
        .bind(group.period)
        .push(" AND area_id = ")
        .bind(group.area_id);
    for (column, value) in rest {
        sql.push(&format!(" AND {column} = ")).bind(value.as_str());
    }
    sql.execute(conn)?;
    Ok(())
}

/// A roll-up of cells: a figure's total (`dim` empty) or its sum for one value of one
/// dimension.
type RollupKey<'a> = (u16, Group, &'a str, &'a str);

/// What `amounts` add to the roll-ups: each cell's amount to its figure's total and to the
/// figure's row for each (dimension, value) the cell has.
fn rollup_amounts<'a>(
    amounts: &[(&'a CellKey, i64)],
) -> Result<Vec<(RollupKey<'a>, i64)>, AppError> {
    let mut parsed: HashMap<&'a str, Vec<(&'a str, &'a str)>> = HashMap::new();
    let mut sums: HashMap<RollupKey<'a>, i64> = HashMap::new();
    for (k, v) in amounts {
        *sums.entry((k.measure, k.group, "", "")).or_insert(0) += v;
        let text: &'a str = &k.dims;
        if !parsed.contains_key(text) {
            parsed.insert(text, dims_of(text)?);
        }
        for (dim, value) in parsed.get(text).into_iter().flatten() {
            *sums.entry((k.measure, k.group, dim, value)).or_insert(0) += v;
        }
    }
    let mut out: Vec<(RollupKey<'a>, i64)> = sums.into_iter().filter(|(_, v)| *v != 0).collect();
    // One order for every writer, so concurrent transactions on PostgreSQL never deadlock.
    out.sort();
    Ok(out)
}

/// The (dimension, value) pairs of a cell's dims text, a flat JSON object of strings.
fn dims_of(text: &str) -> Result<Vec<(&str, &str)>, AppError> {
    let map: BTreeMap<&str, &str> = serde_json::from_str(text)
        .map_err(|e| AppError::internal(format!("cell dims {text}: {e}")))?;
    Ok(map.into_iter().collect())
}

/// Adds amounts to cells of `snapshot`, and to their roll-ups, creating missing rows and
/// removing rows that come to 0, so that a row exists exactly when its figure is not 0.
pub fn add_to_cells(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    snapshot: i64,
    amounts: &[(&CellKey, i64)],
) -> Result<(), AppError> {
    let rows = amounts
        .iter()
        .map(|(k, v)| {
            let mut row = group_values(defs, snapshot, k.measure, &k.group);
            row.extend([k.dims.to_string().into(), (*v).into()]);
            row
        })
        .collect();
    let cells: Vec<CellRow> = upsert_adding(conn, "indicator_cells", CELL_KEYS, rows)?;
    for r in cells.into_iter().filter(|r| r.value == 0) {
        delete_row(conn, "indicator_cells", r.group, &[("dims", r.dims)])?;
    }
    let rows = rollup_amounts(amounts)?
        .into_iter()
        .map(|((measure, group, dim, value), v)| {
            let mut row = group_values(defs, snapshot, measure, &group);
            row.extend([dim.into(), value.into(), v.into()]);
            row
        })
        .collect();
    let rollups: Vec<RollupRow> = upsert_adding(conn, "indicator_rollups", ROLLUP_KEYS, rows)?;
    for r in rollups.into_iter().filter(|r| r.value == 0) {
        delete_row(
            conn,
            "indicator_rollups",
            r.group,
            &[("dim", r.dim), ("dim_value", r.dim_value)],
        )?;
    }
    Ok(())
}

/// Inserts facts into `snapshot`.
pub fn insert_facts(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    snapshot: i64,
    facts: &[StoredFact],
) -> Result<(), AppError> {
    for chunk in facts.chunks(MAX_BINDS / 11) {
        let mut sql = Sql::new(
            conn,
            "INSERT INTO indicator_facts (snapshot, submission_id, measure, seq, distinct_key, value, hamlet_code, activity_date, dims, provisional, confirmed) VALUES ",
        );
        for (i, f) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            let measure = defs
                .measure(f.measure)
                .map(|m| m.id.clone())
                .unwrap_or_default();
            sql.row(vec![
                snapshot.into(),
                f.submission_id.into(),
                measure.into(),
                f.seq.into(),
                Bind::OptText(f.key.as_ref().map(|k| k.to_string())),
                f.value.into(),
                f.hamlet.to_string().into(),
                f.date.into(),
                f.dims.to_string().into(),
                f.bases.provisional.into(),
                f.bases.confirmed.into(),
            ]);
        }
        sql.execute(conn)?;
    }
    Ok(())
}

#[derive(QueryableByName)]
pub struct FactRow {
    #[diesel(sql_type = BigInt)]
    submission_id: i64,
    #[diesel(sql_type = Text)]
    measure: String,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Nullable<Text>)]
    distinct_key: Option<String>,
    #[diesel(sql_type = BigInt)]
    value: i64,
    #[diesel(sql_type = Text)]
    hamlet_code: String,
    #[diesel(sql_type = Date)]
    activity_date: NaiveDate,
    #[diesel(sql_type = Text)]
    dims: String,
    #[diesel(sql_type = Bool)]
    provisional: bool,
    #[diesel(sql_type = Bool)]
    confirmed: bool,
}

pub const FACT_COLUMNS: &str = "submission_id, measure, seq, distinct_key, value, hamlet_code, activity_date, dims, provisional, confirmed";

/// Facts read from the database; those of measures no longer defined are left out.
pub fn to_facts(
    defs: &Definitions,
    rows: Vec<FactRow>,
    interner: &mut Interner,
) -> Vec<StoredFact> {
    rows.into_iter()
        .filter_map(|r| {
            Some(StoredFact {
                measure: defs.number(&r.measure)?,
                key: r.distinct_key.map(|k| interner.get(k)),
                submission_id: r.submission_id,
                seq: r.seq,
                value: r.value,
                hamlet: interner.get(r.hamlet_code),
                date: r.activity_date,
                dims: interner.get(r.dims),
                bases: Bases {
                    provisional: r.provisional,
                    confirmed: r.confirmed,
                },
            })
        })
        .collect()
}

/// The live facts of each of the given submissions, sorted.
pub fn facts_of_submissions(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    ids: &[i64],
    interner: &mut Interner,
) -> Result<HashMap<i64, Vec<StoredFact>>, AppError> {
    let mut out: HashMap<i64, Vec<StoredFact>> = HashMap::new();
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let mut sql = Sql::new(
            conn,
            &format!(
                "SELECT {FACT_COLUMNS} FROM indicator_facts WHERE snapshot = 0 AND submission_id IN ("
            ),
        );
        sql.list(chunk).push(")");
        for f in to_facts(defs, sql.load(conn)?, interner) {
            out.entry(f.submission_id).or_default().push(f);
        }
    }
    for facts in out.values_mut() {
        facts.sort();
    }
    Ok(out)
}

/// Lists longer than this are filtered in memory rather than by an IN list.
const MAX_IN_LIST: usize = 500;

/// The live facts of some measures in a date range, for some hamlets (all when the list is
/// empty or long).
pub fn facts_in(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    measures: &[String],
    from: NaiveDate,
    to: NaiveDate,
    hamlets: &[String],
    interner: &mut Interner,
) -> Result<Vec<StoredFact>, AppError> {
    if measures.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(
        conn,
        &format!("SELECT {FACT_COLUMNS} FROM indicator_facts WHERE snapshot = 0 AND measure IN ("),
    );
    sql.list(measures)
        .push(") AND activity_date >= ")
        .bind(from)
        .push(" AND activity_date <= ")
        .bind(to);
    let filtered = !hamlets.is_empty() && hamlets.len() <= MAX_IN_LIST;
    if filtered {
        sql.push(" AND hamlet_code IN (").list(hamlets).push(")");
    }
    let mut facts = to_facts(defs, sql.load(conn)?, interner);
    if !hamlets.is_empty() && !filtered {
        let wanted: std::collections::HashSet<&str> = hamlets.iter().map(String::as_str).collect();
        facts.retain(|f| wanted.contains(&*f.hamlet));
    }
    Ok(facts)
}

/// Keys compared in one statement: PostgreSQL plans each key's `OR` (see [`facts_of_keys`]).
const KEYS_PER_STATEMENT: usize = 200;

/// The live facts of some keys of some measures (measure, key), from every submission, in one
/// statement per 200 keys: a batch of submissions touches a key or two each, and a
/// statement per key was a tenth of the PostgreSQL writer's time.
fn facts_of_keys(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    keys: &[(String, Arc<str>)],
    interner: &mut Interner,
) -> Result<Vec<StoredFact>, AppError> {
    // Each backend gets the form its planner reads through the key index. SQLite's planner
    // prefers the primary key of this WITHOUT ROWID table (snapshot = 0 alone: every live fact)
    // unless told, and walked that range testing every fact against a list of `OR`s; it looks
    // a `VALUES` list up in the index. PostgreSQL joined such a list to a scan of every fact
    // until it had statistics, and reads each of the `OR`s through the index.
    let sqlite = matches!(conn, Conn::Sqlite(_));
    let (from, open, between, close) = if sqlite {
        (
            " INDEXED BY indicator_facts_key WHERE snapshot = 0 AND (measure, distinct_key) IN (VALUES ",
            "(",
            ", ",
            ")",
        )
    } else {
        (
            " WHERE snapshot = 0 AND (",
            "(measure = ",
            " AND distinct_key = ",
            ")",
        )
    };
    let mut out = Vec::new();
    for chunk in keys.chunks(KEYS_PER_STATEMENT) {
        let mut sql = Sql::new(
            conn,
            &format!("SELECT {FACT_COLUMNS} FROM indicator_facts{from}"),
        );
        for (i, (measure, key)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(if sqlite { ", " } else { " OR " });
            }
            sql.push(open)
                .bind(measure.as_str())
                .push(between)
                .bind(&**key)
                .push(close);
        }
        sql.push(")");
        out.extend(to_facts(defs, sql.load(conn)?, interner));
    }
    Ok(out)
}

/// One submission's facts before and after a change.
pub struct Change {
    pub submission_id: i64,
    pub old: Vec<StoredFact>,
    pub new: Vec<StoredFact>,
}

/// Replaces the live facts of each changed submission (`old`, as stored) with its `new` ones
/// and applies the difference to the live figures, writing each cell once for all of them;
/// returns the change each submission made to each cell, as if they had been applied one after
/// the other in the given order.
pub fn apply(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    index: &AreaIndex,
    changes: &[Change],
    interner: &mut Interner,
) -> Result<Vec<HashMap<CellKey, i64>>, AppError> {
    let mut deltas: Vec<HashMap<CellKey, i64>> = vec![HashMap::new(); changes.len()];
    for (c, delta) in changes.iter().zip(deltas.iter_mut()) {
        for f in c.new.iter().filter(|f| f.key.is_none()) {
            add_sum(defs, index, f, Levels::Stored, 1, delta, interner);
        }
        for f in c.old.iter().filter(|f| f.key.is_none()) {
            add_sum(defs, index, f, Levels::Stored, -1, delta, interner);
        }
    }
    // A key's cells depend on all its facts: its cells before and after each submission's
    // change, from every submission's facts, give that change.
    let mut touched: BTreeMap<(u16, Arc<str>), Vec<usize>> = BTreeMap::new();
    for (i, c) in changes.iter().enumerate() {
        let keys: BTreeSet<(u16, Arc<str>)> = c
            .old
            .iter()
            .chain(&c.new)
            .filter_map(|f| f.key.clone().map(|k| (f.measure, k)))
            .collect();
        for k in keys {
            touched.entry(k).or_default().push(i);
        }
    }
    let wanted: Vec<(String, Arc<str>)> = touched
        .keys()
        .map(|(n, key)| {
            let measure = defs.measure(*n).map(|m| m.id.clone()).unwrap_or_default();
            (measure, key.clone())
        })
        .collect();
    // As stored: the old facts of the changed submissions are still there.
    let mut stored: HashMap<(u16, Arc<str>), Vec<StoredFact>> = HashMap::new();
    for f in facts_of_keys(conn, defs, &wanted, interner)? {
        if let Some(key) = f.key.clone() {
            stored.entry((f.measure, key)).or_default().push(f);
        }
    }
    for ((n, key), by) in touched {
        let mut facts = stored.remove(&(n, key.clone())).unwrap_or_default();
        // Sorted as everywhere else: a key's latest fact in a submission is then always the same.
        facts.sort();
        let of_key = |f: &&StoredFact| f.measure == n && f.key.as_ref() == Some(&key);
        for i in by {
            let c = &changes[i];
            let mut after: Vec<StoredFact> = facts
                .iter()
                .filter(|f| f.submission_id != c.submission_id)
                .chain(c.new.iter().filter(of_key))
                .cloned()
                .collect();
            after.sort();
            add_key(
                defs,
                index,
                &facts,
                Levels::Stored,
                -1,
                &mut deltas[i],
                interner,
            );
            add_key(
                defs,
                index,
                &after,
                Levels::Stored,
                1,
                &mut deltas[i],
                interner,
            );
            facts = after;
        }
    }
    let ids: Vec<i64> = changes.iter().map(|c| c.submission_id).collect();
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let mut del = Sql::new(
            conn,
            "DELETE FROM indicator_facts WHERE snapshot = 0 AND submission_id IN (",
        );
        del.list(chunk).push(")");
        del.execute(conn)?;
    }
    let new: Vec<StoredFact> = changes.iter().flat_map(|c| c.new.iter().cloned()).collect();
    insert_facts(conn, defs, 0, &new)?;

    let mut total: HashMap<&CellKey, i64> = HashMap::new();
    for delta in deltas.iter_mut() {
        delta.retain(|_, v| *v != 0);
        for (k, v) in delta.iter() {
            *total.entry(k).or_insert(0) += v;
        }
    }
    let mut amounts: Vec<(&CellKey, i64)> = total.into_iter().filter(|(_, v)| *v != 0).collect();
    // One order for every writer, so concurrent transactions on PostgreSQL never deadlock.
    amounts.sort();
    add_to_cells(conn, defs, 0, &amounts)?;
    Ok(deltas)
}
