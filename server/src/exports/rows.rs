//! Reading the submissions of an export a page at a time (keyset on the row id), so that an
//! export of any size holds one page in memory.

use std::collections::HashMap;

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use crate::db::schema::{attachments, submission_versions, submissions, users};
use crate::db::Conn;
use crate::error::AppError;
use crate::scope::Visibility;
use crate::{in_area_with_flag, on_conn, visible_submissions};

/// Which submissions an export holds.
#[derive(Debug, Clone)]
pub struct Selection {
    pub visibility: Visibility,
    pub form_id: String,
    /// An area code the submissions lie in (any level).
    pub area: Option<String>,
    /// Activity dates from and to (inclusive).
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// Current review state.
    pub state: Option<String>,
}

/// One submission's current version, as an export needs it.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: i64,
    /// The submission's instanceID: the `KEY` of its row.
    pub key: String,
    pub received_at: NaiveDateTime,
    pub form_version: String,
    pub collector: String,
    pub review_state: String,
    pub hamlet_code: Option<String>,
    pub activity_date: Option<NaiveDate>,
    /// The current version's instanceID (what sensitive values are sealed under).
    pub version_instance_id: String,
    /// The answers without sensitive values (JSON).
    pub fields: String,
    /// The sealed sensitive values, if any.
    pub sensitive: Option<String>,
    /// Attachments that arrived: (name, sha256); only when asked for.
    pub attachments: Vec<(String, String)>,
}

macro_rules! selected {
    ($s:expr) => {{
        let s = $s;
        let no_flag: Option<String> = None;
        let mut q = submissions::table
            .filter(submissions::form_id.eq(s.form_id.clone()))
            .into_boxed();
        q = visible_submissions!(q, &s.visibility);
        q = in_area_with_flag!(q, &s.area, &no_flag);
        if let Some(state) = &s.state {
            q = q.filter(submissions::review_state.eq(state.clone()));
        }
        if s.from.is_some() || s.to.is_some() {
            let mut current = submission_versions::table
                .filter(submission_versions::is_current.eq(true))
                .select(submission_versions::submission_id)
                .into_boxed();
            if let Some(from) = s.from {
                current = current.filter(submission_versions::activity_date.ge(from));
            }
            if let Some(to) = s.to {
                current = current.filter(submission_versions::activity_date.le(to));
            }
            q = q.filter(submissions::id.eq_any(current));
        }
        q
    }};
}

/// How many submissions the selection holds.
pub fn count(conn: &mut Conn<'_>, s: &Selection) -> Result<i64, AppError> {
    Ok(on_conn!(conn, c => selected!(s).count().get_result(c))?)
}

type Row = (
    (i64, String, NaiveDateTime, String),
    (String, String, Option<String>, Option<NaiveDate>),
    (i64, String, String, Option<String>),
);

/// Up to `limit` submissions of the selection after row id `after`, in id order.
pub fn page(
    conn: &mut Conn<'_>,
    s: &Selection,
    after: i64,
    limit: i64,
    with_attachments: bool,
) -> Result<Vec<Record>, AppError> {
    let ids: Vec<i64> = on_conn!(conn, c => selected!(s)
        .filter(submissions::id.gt(after))
        .order(submissions::id)
        .limit(limit)
        .select(submissions::id)
        .load(c))?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows: Vec<Row> = on_conn!(conn, c => submissions::table
        .inner_join(submission_versions::table.on(
            submission_versions::submission_id.eq(submissions::id)
                .and(submission_versions::is_current.eq(true)),
        ))
        .inner_join(users::table.on(users::id.eq(submissions::collector_id)))
        .filter(submissions::id.eq_any(&ids))
        .select((
            (
                submissions::id,
                submissions::instance_id,
                submissions::created_at,
                submission_versions::form_version,
            ),
            (
                users::username,
                submissions::review_state,
                submission_versions::hamlet_code,
                submission_versions::activity_date,
            ),
            (
                submission_versions::id,
                submission_versions::instance_id,
                submission_versions::fields,
                submission_versions::sensitive,
            ),
        ))
        .load(c))?;
    rows.sort_by_key(|r| (r.0).0);
    let mut files: HashMap<i64, Vec<(String, String)>> = HashMap::new();
    if with_attachments {
        let version_ids: Vec<i64> = rows.iter().map(|r| (r.2).0).collect();
        let found: Vec<(i64, String, Option<String>)> = on_conn!(conn, c => attachments::table
            .filter(attachments::version_id.eq_any(&version_ids))
            .filter(attachments::sha256.is_not_null())
            .order(attachments::id)
            .select((attachments::version_id, attachments::name, attachments::sha256))
            .load(c))?;
        for (version_id, name, sha) in found {
            if let Some(sha) = sha {
                files.entry(version_id).or_default().push((name, sha));
            }
        }
    }
    Ok(rows
        .into_iter()
        .map(
            |(
                (id, key, received_at, form_version),
                (collector, review_state, hamlet_code, activity_date),
                (version_id, version_instance_id, fields, sensitive),
            )| Record {
                id,
                key,
                received_at,
                form_version,
                collector,
                review_state,
                hamlet_code,
                activity_date,
                version_instance_id,
                fields,
                sensitive,
                attachments: files.remove(&version_id).unwrap_or_default(),
            },
        )
        .collect())
}
