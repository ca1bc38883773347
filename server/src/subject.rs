//! A data subject's rights: every record of one beneficiary (a woman counselled, a person
//! supported), found by her pseudonymous key or by the identity the key is derived from,
//! exported for her, or erased at her request.
//!
//! Erasure removes the submissions that carry the key (every version, attachment, review,
//! comment and area entry) and takes them out of the indicator figures in the same
//! transaction. Figures of closed periods stay as they were reported; the change is listed as
//! a revision of the period like any other late change. Each erased submission is reported as
//! `deleted` in the change feed (see `deletion.rs`), so the systems that pulled it learn to
//! erase it too; its tombstone keeps only the instanceID, form, collector and area codes.

use std::collections::BTreeSet;

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};

use crate::access_log::{self, Access};
use crate::audit::{self, Actor};
use crate::blobs::Blobs;
use crate::crypto::DataKeys;
use crate::db::schema::{
    submission_comments, submission_reviews, submission_versions, submissions,
};
use crate::db::Conn;
use crate::error::AppError;
use crate::indicators::Indicators;
use crate::on_conn;
use crate::users::now;

/// The key of one identity, as ingest derives it from a form's beneficiary fields: the hamlet
/// and `(role, value)` pairs such as `name`, `birth_year`, `household_code`.
pub fn key_of(secret: &[u8], hamlet: &str, parts: &[(String, String)]) -> Result<String, AppError> {
    crate::beneficiary::derive(secret, hamlet, parts).ok_or_else(|| {
        AppError::bad_request(
            "incomplete_identity",
            "a hamlet and every identity part (non-empty) are needed to find a beneficiary",
        )
    })
}

/// One submission that carries the key in at least one of its versions.
#[derive(Debug, Serialize, PartialEq)]
pub struct Record {
    pub instance_id: String,
    pub form_id: String,
    pub review_state: String,
    pub created_at: NaiveDateTime,
    pub hamlet_code: Option<String>,
    pub activity_date: Option<NaiveDate>,
    /// The instanceIDs of all its versions, oldest first.
    pub versions: Vec<String>,
}

fn submission_ids(conn: &mut Conn<'_>, key: &str) -> Result<Vec<i64>, AppError> {
    let ids: Vec<i64> = on_conn!(conn, c => submission_versions::table
        .filter(submission_versions::beneficiary_key.eq(key))
        .select(submission_versions::submission_id)
        .distinct()
        .order(submission_versions::submission_id)
        .load(c))?;
    Ok(ids)
}

/// Every submission that carries the key, oldest first.
pub fn find(conn: &mut Conn<'_>, key: &str) -> Result<Vec<Record>, AppError> {
    let mut out = Vec::new();
    for sid in submission_ids(conn, key)? {
        let (instance_id, form_id, review_state, created_at): (
            String,
            String,
            String,
            NaiveDateTime,
        ) = on_conn!(conn, c => submissions::table
            .find(sid)
            .select((submissions::instance_id, submissions::form_id, submissions::review_state, submissions::created_at))
            .first(c))?;
        let versions: Vec<(String, bool, Option<String>, Option<NaiveDate>)> = on_conn!(conn, c => submission_versions::table
                .filter(submission_versions::submission_id.eq(sid))
                .order((submission_versions::received_at, submission_versions::id))
                .select((submission_versions::instance_id, submission_versions::is_current, submission_versions::hamlet_code, submission_versions::activity_date))
                .load(c))?;
        let current = versions.iter().find(|v| v.1);
        out.push(Record {
            instance_id,
            form_id,
            review_state,
            created_at,
            hamlet_code: current.and_then(|v| v.2.clone()),
            activity_date: current.and_then(|v| v.3),
            versions: versions.iter().map(|v| v.0.clone()).collect(),
        });
    }
    Ok(out)
}

/// Everything stored about the subject, for her: each submission as the API shows it, with
/// the opened values of its sensitive fields per version, its reviews and its comments. Every
/// version opened is written to the access log with the stated purpose, in this transaction.
pub fn export(
    conn: &mut Conn<'_>,
    keys: &DataKeys,
    key: &str,
    by: &Actor,
    purpose: &str,
) -> Result<Value, AppError> {
    let purpose = access_log::validate_purpose(Some(purpose))?;
    let mut records = Vec::new();
    for record in find(conn, key)? {
        let detail = crate::submissions::detail(conn, &record.instance_id)?;
        let mut sensitive = serde_json::Map::new();
        for version in &record.versions {
            let (instance_id, stored) =
                crate::submissions::sensitive_values(conn, &record.instance_id, Some(version))?;
            if let Some(stored) = stored {
                sensitive.insert(
                    instance_id.clone(),
                    crate::sensitive::open(keys, &stored, &instance_id)?,
                );
                let access = Access {
                    user_id: by.id,
                    username: by.username.clone(),
                    action: "subject_export",
                    subject: instance_id,
                    purpose: purpose.clone(),
                };
                access_log::record(conn, &access, now())?;
            }
        }
        let sid = crate::submissions::submission_of(conn, &record.instance_id)?;
        let reviews: Vec<(String, Option<String>, NaiveDateTime)> = on_conn!(conn, c => submission_reviews::table
                .filter(submission_reviews::submission_id.eq(sid))
                .order(submission_reviews::id)
                .select((submission_reviews::state, submission_reviews::comment, submission_reviews::created_at))
                .load(c))?;
        let comments: Vec<(String, NaiveDateTime)> = on_conn!(conn, c => submission_comments::table
            .filter(submission_comments::submission_id.eq(sid))
            .order(submission_comments::id)
            .select((submission_comments::body, submission_comments::created_at))
            .load(c))?;
        records.push(json!({
            "submission": detail,
            "sensitive_values": sensitive,
            "reviews": reviews
                .into_iter()
                .map(|(state, comment, at)| json!({"state": state, "comment": comment, "at": at}))
                .collect::<Vec<_>>(),
            "comments": comments
                .into_iter()
                .map(|(body, at)| json!({"body": body, "at": at}))
                .collect::<Vec<_>>(),
        }));
    }
    Ok(json!({
        "beneficiary_key": key,
        "exported_at": now(),
        "records": records,
    }))
}

/// What an erasure removed. `blobs` are the attachment files the removed rows referred to: the
/// caller deletes those no other row refers to once the transaction has committed.
#[derive(Debug, Default, Serialize)]
pub struct Erased {
    pub submissions: usize,
    pub versions: usize,
    pub attachments: usize,
    #[serde(skip)]
    pub blobs: BTreeSet<String>,
}

/// Erases every submission that carries the key. Run inside one write transaction: the rows go
/// and the figures change together, or nothing happens.
pub fn erase(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    key: &str,
    by: &Actor,
    reason: &str,
) -> Result<Erased, AppError> {
    let reason = access_log::validate_purpose(Some(reason))?;
    let mut erased = Erased::default();
    let mut instance_ids = Vec::new();
    for sid in submission_ids(conn, key)? {
        // The same removal as an administrator's deletion: out of the figures in this
        // transaction, and reported as `deleted` to the systems pulling the change feed.
        let removed = crate::deletion::remove(conn, indicators, by, sid)?;
        erased.attachments += removed.attachments;
        erased.blobs.extend(removed.files);
        erased.submissions += 1;
        erased.versions += removed.versions;
        instance_ids.push(removed.instance_id);
    }
    // The audit entry names the removed submissions by instanceID only (no key, no values).
    audit::record(
        conn,
        by,
        "subject.erase",
        None,
        json!({
            "submissions": instance_ids,
            "versions": erased.versions,
            "attachments": erased.attachments,
            "reason": reason,
        }),
    )?;
    Ok(erased)
}

/// Deletes the files of an erasure that no row refers to any more (another submission may
/// hold the same photo); returns how many went. Run after the erasure committed.
pub fn remove_files(
    conn: &mut Conn<'_>,
    blobs: &Blobs,
    erased: &Erased,
) -> Result<usize, AppError> {
    let _lock = blobs.lock_exclusive()?;
    let referenced = crate::fsck::referenced(conn)?;
    let mut removed = 0;
    for sha in erased.blobs.iter().filter(|h| !referenced.contains(*h)) {
        blobs.remove(sha)?;
        removed += 1;
    }
    Ok(removed)
}
