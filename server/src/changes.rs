//! The change feed behind incremental pulls (`GET /api/v1/submissions?updated_since=CURSOR`):
//! every change to a submission (created, edited, review changed, deleted) is a row written in
//! the same transaction as the change, and the feed returns rows after a cursor in a stable
//! order, keyset-paged.
//!
//! A client following cursors must see every change exactly once, also while changes commit
//! concurrently. On SQLite the one writer hands out `seq` in commit order, so `seq` alone is a
//! sound order. On PostgreSQL sequence values commit out of order (a transaction that took 7
//! may commit after one that took 8), so each row also carries its transaction id (`txid`) and
//! the feed orders by `(txid, seq)`, showing only rows whose transaction is older than every
//! transaction still in flight (`pg_snapshot_xmin`). Those transactions have all ended, so no
//! row can later appear before a cursor already given out.

use std::collections::HashMap;

use base64::Engine;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{submission_changes, submission_versions};
use crate::db::Conn;
use crate::error::AppError;
use crate::scope::Visibility;
use crate::submissions::Summary;
use crate::{insert_rows, on_conn, visible_changes};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Created,
    Edited,
    ReviewChanged,
    Deleted,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Created => "created",
            Kind::Edited => "edited",
            Kind::ReviewChanged => "review_changed",
            Kind::Deleted => "deleted",
        }
    }
}

/// Records a change; runs in the write that makes it.
pub fn record(
    conn: &mut Conn<'_>,
    submission_id: i64,
    instance_id: &str,
    kind: Kind,
    at: NaiveDateTime,
) -> Result<(), AppError> {
    record_all(conn, &[(submission_id, instance_id, kind, at)])
}

/// Records several changes, in order, with one statement.
pub fn record_all(
    conn: &mut Conn<'_>,
    changes: &[(i64, &str, Kind, NaiveDateTime)],
) -> Result<(), AppError> {
    if changes.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = changes
        .iter()
        .map(|(submission_id, instance_id, kind, at)| {
            (
                submission_changes::submission_id.eq(*submission_id),
                submission_changes::instance_id.eq(*instance_id),
                submission_changes::kind.eq(kind.as_str()),
                submission_changes::at.eq(*at),
            )
        })
        .collect();
    insert_rows!(conn, submission_changes::table, rows.as_slice(), (q, c) => q.execute(c))?;
    Ok(())
}

/// A position in the feed: after the change `(txid, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    txid: i64,
    seq: i64,
}

impl Cursor {
    /// The beginning of the feed.
    pub const START: Cursor = Cursor { txid: -1, seq: 0 };

    /// Opaque to clients; an empty string or `0` means the beginning.
    pub fn parse(s: &str) -> Result<Cursor, AppError> {
        if s.is_empty() || s == "0" {
            return Ok(Cursor::START);
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                let (txid, seq) = s.strip_prefix('c')?.split_once('.')?;
                Some(Cursor {
                    txid: txid.parse().ok()?,
                    seq: seq.parse().ok()?,
                })
            })
            .ok_or_else(|| {
                AppError::bad_request(
                    "bad_cursor",
                    "updated_since must be empty (the beginning) or a next_cursor this API gave out",
                )
            })
    }

    pub fn encode(self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("c{}.{}", self.txid, self.seq))
    }
}

/// One entry of the feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = FeedChange)]
pub struct Change {
    /// `created`, `edited`, `review_changed` or `deleted`.
    pub change: String,
    pub at: NaiveDateTime,
    /// The submission's instanceID when the change was made.
    pub instance_id: String,
    /// The submission as it is now; `null` once deleted.
    pub submission: Option<Current>,
}

/// A submission's current state in the feed: the list's summary with its answers (never the
/// values of sensitive fields, as in the detail).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = FeedSubmission)]
pub struct Current {
    #[serde(flatten)]
    pub summary: Summary,
    pub fields: serde_json::Value,
    pub sensitive_fields: Vec<String>,
}

pub struct Page {
    pub changes: Vec<Change>,
    /// Where to go on from: after the last change returned, or the given cursor when there is
    /// nothing new yet.
    pub next_cursor: Cursor,
    /// Whether more changes are ready now (the page was full).
    pub more: bool,
}

/// The transaction id below which every transaction has ended, or no bound on SQLite.
fn horizon(conn: &mut Conn<'_>) -> Result<i64, AppError> {
    #[derive(QueryableByName)]
    struct Xmin {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        xmin: i64,
    }
    match conn {
        Conn::Sqlite(_) => Ok(i64::MAX),
        Conn::Pg(c) => {
            let row: Xmin = diesel::sql_query(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin",
            )
            .get_result(*c)?;
            Ok(row.xmin)
        }
    }
}

/// The changes after `after` that the visibility allows, at most `limit`.
pub fn feed(
    conn: &mut Conn<'_>,
    visibility: &Visibility,
    after: Cursor,
    limit: i64,
) -> Result<Page, AppError> {
    let horizon = horizon(conn)?;
    let rows: Vec<(i64, i64, i64, String, String, NaiveDateTime)> = on_conn!(conn, c => {
        let q = submission_changes::table
            .filter(submission_changes::txid.lt(horizon))
            // Implied by the next filter; it makes the page a range of the (txid, seq) index.
            .filter(submission_changes::txid.ge(after.txid))
            .filter(
                submission_changes::txid.gt(after.txid).or(submission_changes::txid
                    .eq(after.txid)
                    .and(submission_changes::seq.gt(after.seq))),
            )
            .order((submission_changes::txid, submission_changes::seq))
            .limit(limit)
            .select((
                submission_changes::txid,
                submission_changes::seq,
                submission_changes::submission_id,
                submission_changes::instance_id,
                submission_changes::kind,
                submission_changes::at,
            ))
            .into_boxed();
        visible_changes!(q, visibility).load(c)
    })?;
    let mut ids: Vec<i64> = rows.iter().map(|r| r.2).collect();
    ids.sort_unstable();
    ids.dedup();
    let current = current_of(conn, &ids)?;
    let next_cursor = rows
        .last()
        .map(|r| Cursor {
            txid: r.0,
            seq: r.1,
        })
        .unwrap_or(after);
    let more = rows.len() as i64 == limit;
    let changes = rows
        .into_iter()
        // The same submission may change twice in one page; each entry shows it as it is now.
        .map(|(_, _, submission_id, instance_id, kind, at)| {
            Ok(Change {
                change: kind,
                at,
                instance_id,
                submission: current
                    .get(&submission_id)
                    .map(Loaded::to_current)
                    .transpose()?,
            })
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    Ok(Page {
        changes,
        next_cursor,
        more,
    })
}

struct Loaded {
    summary: Summary,
    fields: String,
    sensitive: Option<String>,
}

impl Loaded {
    fn to_current(&self) -> Result<Current, AppError> {
        Ok(Current {
            summary: self.summary.clone(),
            fields: serde_json::from_str(&self.fields)
                .map_err(|e| AppError::internal(format!("stored fields are not JSON: {e}")))?,
            sensitive_fields: crate::sensitive::withheld_paths(self.sensitive.as_deref()),
        })
    }
}

/// The current state of the submissions that still exist among `ids`.
fn current_of(conn: &mut Conn<'_>, ids: &[i64]) -> Result<HashMap<i64, Loaded>, AppError> {
    let summaries = crate::submissions::summaries(conn, ids)?;
    let answers: Vec<(i64, String, Option<String>)> = on_conn!(conn, c => submission_versions::table
        .filter(submission_versions::submission_id.eq_any(ids))
        .filter(submission_versions::is_current.eq(true))
        .select((
            submission_versions::submission_id,
            submission_versions::fields,
            submission_versions::sensitive,
        ))
        .load(c))?;
    let mut answers: HashMap<i64, (String, Option<String>)> = answers
        .into_iter()
        .map(|(id, fields, sensitive)| (id, (fields, sensitive)))
        .collect();
    Ok(summaries
        .into_iter()
        .filter_map(|summary| {
            let (fields, sensitive) = answers.remove(&summary.id)?;
            Some((
                summary.id,
                Loaded {
                    summary,
                    fields,
                    sensitive,
                },
            ))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let c = Cursor { txid: 812, seq: 40 };
        assert_eq!(Cursor::parse(&c.encode()).expect("valid"), c);
        assert_eq!(Cursor::parse("").expect("start"), Cursor::START);
        assert!(Cursor::parse("c1.2").is_err());
        assert!(Cursor::parse("czEuMg").is_err());
    }
}
