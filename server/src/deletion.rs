//! Deleting a submission (administrators): every version, its answers, files' references,
//! review history and comments go, in one write transaction that also takes the submission out
//! of the indicator figures and records the deletion in the change feed and the audit log.
//! What remains is a tombstone (instanceID, form, collector, areas) so that clients pulling
//! the feed learn of the deletion, and only those who could see the submission do.
//!
//! The files themselves are removed after the commit by [`remove_unreferenced`], under the
//! blob store's exclusive lock, and only where nothing else refers to the same content.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::audit::{self, Actor};
use crate::blobs::Blobs;
use crate::changes::{self, Kind};
use crate::db::schema::{
    attachments, deleted_submission_areas, deleted_submissions, indicator_applied,
    indicator_backlog, indicator_revisions, submission_areas, submission_comments,
    submission_consent, submission_flags, submission_reviews, submission_versions, submissions,
};
use crate::db::Conn;
use crate::error::AppError;
use crate::indicators::{self, Indicators};
use crate::on_conn;
use crate::users::now;

/// What a deletion removed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub instance_id: String,
    pub form_id: String,
    pub versions: usize,
    /// Attachment rows, files received or not.
    pub attachments: usize,
    pub deleted_at: NaiveDateTime,
    /// Hashes of the files the deleted versions referred to, to remove once committed.
    #[serde(skip)]
    pub files: Vec<String>,
}

/// Deletes the submission that `instance_id` (any of its versions) belongs to. Runs in the
/// writer.
pub fn delete(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    actor: &Actor,
    instance_id: &str,
) -> Result<Deleted, AppError> {
    let sid = crate::submissions::submission_of(conn, instance_id)?;
    let removed = remove(conn, indicators, actor, sid)?;
    audit::record(
        conn,
        actor,
        "submission.deleted",
        Some(&removed.instance_id),
        json!({ "form_id": removed.form_id, "versions": removed.versions }),
    )?;
    Ok(removed)
}

/// Removes one submission (by row id) and leaves its tombstone and `deleted` change; the caller
/// audits. Shared by [`delete`] and a data subject's erasure (`subject::erase`), so that the
/// systems pulling the change feed learn of both.
pub fn remove(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    actor: &Actor,
    sid: i64,
) -> Result<Deleted, AppError> {
    let (root, form_id, collector_id): (String, String, i64) = on_conn!(conn, c => submissions::table
        .find(sid)
        .select((submissions::instance_id, submissions::form_id, submissions::collector_id))
        .first(c))?;
    let version_ids: Vec<i64> = on_conn!(conn, c => submission_versions::table
        .filter(submission_versions::submission_id.eq(sid))
        .select(submission_versions::id)
        .load(c))?;
    let hashes: Vec<Option<String>> = on_conn!(conn, c => attachments::table
        .filter(attachments::version_id.eq_any(&version_ids))
        .select(attachments::sha256)
        .load(c))?;
    let attachment_rows = hashes.len();
    let mut files: Vec<String> = hashes.into_iter().flatten().collect();
    files.sort();
    files.dedup();
    let areas: Vec<String> = on_conn!(conn, c => submission_areas::table
        .filter(submission_areas::submission_id.eq(sid))
        .select(submission_areas::area_code)
        .load(c))?;
    let at = now();

    on_conn!(conn, c => diesel::insert_into(deleted_submissions::table)
        .values((
            deleted_submissions::submission_id.eq(sid),
            deleted_submissions::instance_id.eq(&root),
            deleted_submissions::form_id.eq(&form_id),
            deleted_submissions::collector_id.eq(collector_id),
            deleted_submissions::deleted_at.eq(at),
            deleted_submissions::deleted_by.eq(actor.id),
        ))
        .execute(c))?;
    for code in &areas {
        on_conn!(conn, c => diesel::insert_into(deleted_submission_areas::table)
            .values((
                deleted_submission_areas::submission_id.eq(sid),
                deleted_submission_areas::area_code.eq(code),
            ))
            .execute(c))?;
    }

    // With no current version the submission counts nowhere: the figures (and the revisions
    // of closed periods) follow in this transaction.
    on_conn!(conn, c => diesel::update(
        submission_versions::table.filter(submission_versions::submission_id.eq(sid)),
    )
    .set(submission_versions::is_current.eq(false))
    .execute(c))?;
    indicators::refresh_submission(conn, indicators, sid, Some(actor.id))?;
    // Webhook receivers holding a copy hear of it in this transaction, while the row still
    // names the submission; the event carries no more than the instanceID and form.
    crate::push::webhook::enqueue_submission_event(conn, sid, crate::push::webhook::DELETED, None)?;
    // Revisions of closed periods stay, as history, without pointing at a submission that is
    // no longer there.
    on_conn!(conn, c => diesel::update(
        indicator_revisions::table.filter(indicator_revisions::submission_id.eq(sid)),
    )
    .set(indicator_revisions::submission_id.eq(None::<i64>))
    .execute(c))?;
    on_conn!(conn, c => diesel::delete(indicator_applied::table.find(sid)).execute(c))?;
    on_conn!(conn, c => diesel::delete(indicator_backlog::table.find(sid)).execute(c))?;

    on_conn!(conn, c => diesel::delete(
        submission_flags::table.filter(submission_flags::version_id.eq_any(&version_ids)),
    )
    .execute(c))?;
    on_conn!(conn, c => diesel::delete(
        attachments::table.filter(attachments::version_id.eq_any(&version_ids)),
    )
    .execute(c))?;
    on_conn!(conn, c => diesel::delete(
        submission_consent::table.filter(submission_consent::version_id.eq_any(&version_ids)),
    )
    .execute(c))?;
    on_conn!(conn, c => diesel::delete(
        submission_versions::table.filter(submission_versions::submission_id.eq(sid)),
    )
    .execute(c))?;
    on_conn!(conn, c => diesel::delete(
        submission_reviews::table.filter(submission_reviews::submission_id.eq(sid)),
    )
    .execute(c))?;
    on_conn!(conn, c => diesel::delete(
        submission_comments::table.filter(submission_comments::submission_id.eq(sid)),
    )
    .execute(c))?;
    on_conn!(conn, c => diesel::delete(
        submission_areas::table.filter(submission_areas::submission_id.eq(sid)),
    )
    .execute(c))?;
    on_conn!(conn, c => diesel::delete(submissions::table.find(sid)).execute(c))?;

    changes::record(conn, sid, &root, Kind::Deleted, at)?;
    Ok(Deleted {
        instance_id: root,
        form_id,
        versions: version_ids.len(),
        attachments: attachment_rows,
        deleted_at: at,
        files,
    })
}

/// Removes the files among `candidates` that no row refers to any more, with their cached
/// photo copies. Holds the blob store's exclusive lock, so no upload of the same content is
/// between storing its file and committing its row meanwhile.
pub async fn remove_unreferenced(
    db: &crate::db::Db,
    blobs: &Blobs,
    candidates: Vec<String>,
) -> Result<usize, AppError> {
    if candidates.is_empty() {
        return Ok(0);
    }
    let locker = blobs.clone();
    let lock = actix_web::web::block(move || locker.lock_exclusive()).await??;
    let referenced = db.read(crate::fsck::referenced).await?;
    let blobs = blobs.clone();
    let removed = actix_web::web::block(move || -> Result<usize, AppError> {
        let mut removed = 0;
        for sha in candidates.iter().filter(|s| !referenced.contains(*s)) {
            blobs.remove(sha)?;
            removed += 1;
        }
        Ok(removed)
    })
    .await??;
    drop(lock);
    Ok(removed)
}
