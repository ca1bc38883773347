//! Computing figures from scratch: the full recompute (`fieldtally indicators recompute`),
//! the rebuild of measures whose definition changed, and the verification that recomputes
//! into a scratch copy and compares it with the maintained figures.

use std::collections::{BTreeSet, HashMap};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde::Serialize;

use super::contribution::{add_facts, add_sum, facts_of, CellKey, Interner, Levels, StoredFact};
use super::definition::Definitions;
use super::registry::AreaIndex;
use super::sql::Sql;
use super::store;
use crate::db::schema::indicator_applied;
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;

/// Where figures are written: the live figures, or the scratch copy of a verification.
pub const LIVE: i64 = 0;
pub const SCRATCH: i64 = -1;

/// Submissions read per query.
const BATCH: i64 = 2_000;

/// What to compute from: the submissions as they are now (current version, review state), or
/// the contribution each has applied (to rebuild some measures consistently with the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Raw,
    Applied,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub submissions: u64,
    pub facts: u64,
    pub cells: u64,
}

fn delete_figures(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    snapshot: i64,
    mask: &[bool],
) -> Result<(), AppError> {
    let all = mask.iter().all(|m| *m);
    let ids: Vec<String> = defs
        .numbered()
        .filter(|(n, _)| mask.get(usize::from(*n)).copied().unwrap_or(false))
        .map(|(_, m)| m.id.clone())
        .collect();
    for table in ["indicator_cells", "indicator_rollups", "indicator_facts"] {
        let mut sql = Sql::new(conn, &format!("DELETE FROM {table} WHERE snapshot = "));
        sql.bind(snapshot);
        if !all {
            if ids.is_empty() {
                continue;
            }
            sql.push(" AND measure IN (").list(&ids).push(")");
        }
        sql.execute(conn)?;
    }
    Ok(())
}

/// Deletes the live figures of measures that are no longer defined.
pub fn drop_measures(conn: &mut Conn<'_>, ids: &[String]) -> Result<(), AppError> {
    if ids.is_empty() {
        return Ok(());
    }
    for table in ["indicator_cells", "indicator_rollups", "indicator_facts"] {
        let mut sql = Sql::new(
            conn,
            &format!("DELETE FROM {table} WHERE snapshot = 0 AND measure IN ("),
        );
        sql.list(ids).push(")");
        sql.execute(conn)?;
    }
    Ok(())
}

/// Recomputes the measures selected by `mask` into `snapshot` (LIVE or SCRATCH).
pub fn recompute(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    index: &AreaIndex,
    snapshot: i64,
    mask: &[bool],
    source: Source,
) -> Result<Report, AppError> {
    delete_figures(conn, defs, snapshot, mask)?;
    let mut report = Report::default();
    let forms: BTreeSet<&str> = defs
        .numbered()
        .filter(|(n, _)| mask.get(usize::from(*n)).copied().unwrap_or(false))
        .flat_map(|(_, m)| m.forms.iter().map(String::as_str))
        .collect();
    let mut interner = Interner::default();
    // Figures of sums are added up in memory fact by fact; facts of distinct keys wait until
    // every fact of their key is known.
    let mut cells: HashMap<CellKey, i64> = HashMap::new();
    let mut keyed: Vec<StoredFact> = Vec::new();
    for form in forms {
        let mut after = 0i64;
        loop {
            let batch = store::load_batch(conn, form, after, BATCH, source == Source::Applied)?;
            let Some(last) = batch.last() else { break };
            after = last.submission_id;
            let mut facts: Vec<StoredFact> = Vec::new();
            for input in &batch {
                report.submissions += 1;
                facts.extend(facts_of(defs, input, Some(mask), &mut interner));
            }
            report.facts += facts.len() as u64;
            store::insert_facts(conn, defs, snapshot, &facts)?;
            for f in facts {
                if f.key.is_some() {
                    keyed.push(f);
                } else {
                    add_sum(
                        defs,
                        index,
                        &f,
                        Levels::Stored,
                        1,
                        &mut cells,
                        &mut interner,
                    );
                }
            }
        }
    }
    add_facts(
        defs,
        index,
        &mut keyed,
        Levels::Stored,
        &mut cells,
        &mut interner,
    );
    cells.retain(|_, v| *v != 0);
    let mut amounts: Vec<(&CellKey, i64)> = cells.iter().map(|(k, v)| (k, *v)).collect();
    amounts.sort();
    report.cells = amounts.len() as u64;
    store::add_to_cells(conn, defs, snapshot, &amounts)?;
    Ok(report)
}

/// Makes `indicator_applied` say what the live figures now contain: every submission's
/// current version and the bases of its review state.
pub fn reset_applied(conn: &mut Conn<'_>) -> Result<(), AppError> {
    on_conn!(conn, c => diesel::delete(indicator_applied::table).execute(c))?;
    Sql::new(
        conn,
        "INSERT INTO indicator_applied (submission_id, version_id, provisional, confirmed) \
         SELECT s.id, v.id, s.review_state <> 'rejected', s.review_state = 'approved' \
         FROM submissions s JOIN submission_versions v ON v.submission_id = s.id AND v.is_current",
    )
    .execute(conn)?;
    Ok(())
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName, Debug)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

/// How the maintained figures differ from a recompute from the raw submissions.
#[derive(Debug, Default, Serialize)]
pub struct Verification {
    /// Maintained cells and roll-ups missing from the recompute or with another value, and
    /// recomputed ones missing from the maintained ones.
    pub cells_differing: i64,
    pub facts_differing: i64,
    /// Submissions whose applied contribution is not their current version and review state.
    pub submissions_differing: i64,
    /// Up to 20 examples.
    pub examples: Vec<String>,
    pub recomputed: Report,
}

impl Verification {
    pub fn identical(&self) -> bool {
        self.cells_differing == 0 && self.facts_differing == 0 && self.submissions_differing == 0
    }
}

/// The columns of a stored cell and of a roll-up after `snapshot`.
pub(super) const CELL_COLUMNS: &str = "measure, basis, map, level, period, area_id, dims, value";
pub(super) const ROLLUP_COLUMNS: &str =
    "measure, basis, map, level, period, area_id, dim, dim_value, value";
const FACT_COLUMNS: &str = store::FACT_COLUMNS;

fn except_count(
    conn: &mut Conn<'_>,
    table: &str,
    columns: &str,
    a: i64,
    b: i64,
) -> Result<i64, AppError> {
    let mut sql = Sql::new(
        conn,
        &format!("SELECT COUNT(*) AS n FROM (SELECT {columns} FROM {table} WHERE snapshot = "),
    );
    sql.bind(a)
        .push(&format!(
            " EXCEPT SELECT {columns} FROM {table} WHERE snapshot = "
        ))
        .bind(b)
        .push(") d");
    let rows: Vec<Count> = sql.load(conn)?;
    Ok(rows.first().map(|r| r.n).unwrap_or(0))
}

fn except_examples(
    conn: &mut Conn<'_>,
    a: i64,
    b: i64,
    label: &str,
) -> Result<Vec<String>, AppError> {
    // Rendered by the database so both backends print the same text.
    let concat = "measure || ' ' || basis || ' ' || map || ' ' || level || ' ' || period || ' area ' || CAST(area_id AS TEXT) || ' ' || dims || ' = ' || CAST(value AS TEXT)";
    let mut sql = Sql::new(
        conn,
        &format!("SELECT {concat} AS line FROM (SELECT {CELL_COLUMNS} FROM indicator_cells WHERE snapshot = "),
    );
    sql.bind(a)
        .push(&format!(
            " EXCEPT SELECT {CELL_COLUMNS} FROM indicator_cells WHERE snapshot = "
        ))
        .bind(b)
        .push(") d ORDER BY 1 LIMIT 10");
    let rows: Vec<Line> = sql.load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| format!("{label}: {}", r.line))
        .collect())
}

/// Recomputes every measure from the raw submissions into the scratch copy, compares, and
/// removes the scratch copy. Runs inside one transaction, so the comparison sees one state.
pub fn verify(
    conn: &mut Conn<'_>,
    defs: &Definitions,
    index: &AreaIndex,
) -> Result<Verification, AppError> {
    let all = vec![true; defs.measure_count()];
    let recomputed = recompute(conn, defs, index, SCRATCH, &all, Source::Raw)?;
    let mut v = Verification {
        recomputed,
        ..Default::default()
    };
    v.cells_differing = except_count(conn, "indicator_cells", CELL_COLUMNS, LIVE, SCRATCH)?
        + except_count(conn, "indicator_cells", CELL_COLUMNS, SCRATCH, LIVE)?
        + except_count(conn, "indicator_rollups", ROLLUP_COLUMNS, LIVE, SCRATCH)?
        + except_count(conn, "indicator_rollups", ROLLUP_COLUMNS, SCRATCH, LIVE)?;
    v.facts_differing = except_count(conn, "indicator_facts", FACT_COLUMNS, LIVE, SCRATCH)?
        + except_count(conn, "indicator_facts", FACT_COLUMNS, SCRATCH, LIVE)?;
    if v.cells_differing > 0 {
        v.examples
            .extend(except_examples(conn, LIVE, SCRATCH, "maintained")?);
        v.examples
            .extend(except_examples(conn, SCRATCH, LIVE, "recomputed")?);
    }
    let stale: Vec<Count> = Sql::new(
        conn,
        "SELECT COUNT(*) AS n FROM submissions s \
         JOIN submission_versions v ON v.submission_id = s.id AND v.is_current \
         LEFT JOIN indicator_applied a ON a.submission_id = s.id \
         WHERE a.submission_id IS NULL OR a.version_id <> v.id \
            OR a.provisional <> (s.review_state <> 'rejected') \
            OR a.confirmed <> (s.review_state = 'approved')",
    )
    .load(conn)?;
    v.submissions_differing = stale.first().map(|r| r.n).unwrap_or(0);
    delete_figures(conn, defs, SCRATCH, &all)?;
    Ok(v)
}
