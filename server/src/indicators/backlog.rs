//! Submissions whose figures are not yet up to date (table `indicator_backlog`).
//!
//! Storing a submission or an edit only records it here, in the transaction that stores it: the
//! phone's acknowledgement never waits for the figures, and what is recorded survives any crash
//! with the submission itself. [`follow`] then brings the figures up to date every moment, for
//! all the submissions recorded meanwhile at once; most of them change the same district and
//! province figures, which are thus written once per group rather than once per batch of
//! uploads. Every read of the figures first calls [`settle`], so it shows every change that was
//! acknowledged before it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::upsert::excluded;

use super::{refresh_submissions, Indicators};
use crate::db::schema::indicator_backlog;
use crate::db::{Conn, Db, Refresh, Refresher};
use crate::error::AppError;
use crate::on_conn;

/// How long the figures may lag behind the uploads when nobody reads them. Longer pauses give
/// larger groups, which write each shared figure less often; reads never see the lag.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// Submissions refreshed per transaction while following: large enough that the district and
/// province figures are written once for many submissions, small enough that the uploads
/// arriving meanwhile wait only tens of milliseconds for their transaction.
const GROUP: usize = 500;

/// The writer's refresher: records the submissions a batch of writes changed, in the batch's
/// transaction (the last `by` of a submission counts).
pub fn recorder() -> Refresher {
    Arc::new(record)
}

/// Records that the figures of these submissions must be brought up to date.
pub fn record(conn: &mut Conn<'_>, refreshes: &[Refresh]) -> Result<(), AppError> {
    // One row per submission: an upsert may not touch the same row twice in one statement.
    let by: BTreeMap<i64, Option<i64>> =
        refreshes.iter().map(|r| (r.submission_id, r.by)).collect();
    let rows: Vec<_> = by
        .into_iter()
        .map(|(id, by)| {
            (
                indicator_backlog::submission_id.eq(id),
                indicator_backlog::by_user.eq(by),
            )
        })
        .collect();
    for chunk in rows.chunks(1_000) {
        on_conn!(conn, c => diesel::insert_into(indicator_backlog::table)
            .values(chunk)
            .on_conflict(indicator_backlog::submission_id)
            .do_update()
            .set(indicator_backlog::by_user.eq(excluded(indicator_backlog::by_user)))
            .execute(c))?;
    }
    Ok(())
}

/// Whether any submission waits for its figures.
pub fn pending(conn: &mut Conn<'_>) -> Result<bool, AppError> {
    let first: Option<i64> = on_conn!(conn, c => indicator_backlog::table
        .select(indicator_backlog::submission_id)
        .first(c)
        .optional())?;
    Ok(first.is_some())
}

/// How many submissions wait for their figures (for `/metrics`).
pub fn waiting(conn: &mut Conn<'_>) -> Result<i64, AppError> {
    Ok(on_conn!(conn, c => indicator_backlog::table.count().get_result(c))?)
}

/// Forgets every waiting submission: for a recompute that brings all of them up to date.
pub fn clear(conn: &mut Conn<'_>) -> Result<(), AppError> {
    on_conn!(conn, c => diesel::delete(indicator_backlog::table).execute(c))?;
    Ok(())
}

/// Brings the figures up to date with every waiting submission, in the open write transaction;
/// returns how many there were.
pub fn catch_up(conn: &mut Conn<'_>, indicators: &Indicators) -> Result<usize, AppError> {
    let mut done = 0;
    loop {
        match catch_up_group(conn, indicators)? {
            0 => return Ok(done),
            n => done += n,
        }
    }
}

/// Brings the figures up to date with at most [`GROUP`] waiting submissions, those of lowest
/// id; returns how many.
fn catch_up_group(conn: &mut Conn<'_>, indicators: &Indicators) -> Result<usize, AppError> {
    let rows: Vec<(i64, Option<i64>)> = on_conn!(conn, c => indicator_backlog::table
        .select((indicator_backlog::submission_id, indicator_backlog::by_user))
        .order(indicator_backlog::submission_id)
        .limit(GROUP as i64)
        .load(c))?;
    if rows.is_empty() {
        return Ok(0);
    }
    let refreshes: Vec<Refresh> = rows
        .iter()
        .map(|(submission_id, by)| Refresh {
            submission_id: *submission_id,
            by: *by,
        })
        .collect();
    refresh_submissions(conn, indicators, &refreshes)?;
    let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
    on_conn!(conn, c => diesel::delete(indicator_backlog::table
        .filter(indicator_backlog::submission_id.eq_any(&ids)))
        .execute(c))?;
    Ok(rows.len())
}

/// Waits until the figures include every change acknowledged so far. Cheap when nothing waits;
/// otherwise one write, queued behind the writes already acknowledged.
pub async fn settle(db: &Db, indicators: &Arc<Indicators>) -> Result<(), AppError> {
    if !db.read(pending).await? {
        return Ok(());
    }
    let indicators = indicators.clone();
    db.write_alone(move |conn| catch_up(conn, &indicators))
        .await?;
    Ok(())
}

/// Keeps the figures following the uploads, for as long as the server runs: every
/// [`FOLLOW_EVERY`], what waits is applied in transactions of [`GROUP`] submissions. Every
/// instance on a database runs it; each transaction takes the write lock, so they never apply a
/// change twice.
pub async fn follow(db: Db, indicators: Arc<Indicators>) {
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        if let Err(e) = follow_once(&db, &indicators).await {
            tracing::warn!(error = %e, "bringing the indicator figures up to date failed");
        }
    }
}

async fn follow_once(db: &Db, indicators: &Arc<Indicators>) -> Result<(), AppError> {
    while db.read(pending).await? {
        let ind = indicators.clone();
        let started = Instant::now();
        let done = db
            .write_alone(move |conn| catch_up_group(conn, &ind))
            .await?;
        tracing::debug!(
            submissions = done,
            ms = started.elapsed().as_millis() as u64,
            "indicator figures brought up to date"
        );
        if done < GROUP {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(conn: &mut Conn<'_>) -> Vec<(i64, Option<i64>)> {
        on_conn!(conn, c => indicator_backlog::table
            .select((indicator_backlog::submission_id, indicator_backlog::by_user))
            .order(indicator_backlog::submission_id)
            .load(c))
        .expect("backlog")
    }

    #[test]
    fn a_submission_recorded_again_waits_once_with_its_last_author() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
        let (_, mut db) = crate::db::connect(&url).expect("database");
        let mut conn = db.conn();
        let r = |submission_id, by| Refresh { submission_id, by };
        assert!(!pending(&mut conn).expect("pending"));
        record(&mut conn, &[r(7, Some(1)), r(3, None), r(7, Some(2))]).expect("record");
        assert_eq!(rows(&mut conn), vec![(3, None), (7, Some(2))]);
        record(&mut conn, &[r(3, Some(5))]).expect("record again");
        assert_eq!(rows(&mut conn), vec![(3, Some(5)), (7, Some(2))]);
        assert_eq!(waiting(&mut conn).expect("waiting"), 2);
        assert!(pending(&mut conn).expect("pending"));
        clear(&mut conn).expect("clear");
        assert!(!pending(&mut conn).expect("pending"));
    }
}
