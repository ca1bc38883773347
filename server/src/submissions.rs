//! Submissions: storing what phones send (exactly once, edits as new versions, attachments
//! merged across split uploads) and reading it back.
//!
//! Every decision that depends on what is already stored is made in [`store`] (or [`store_all`]
//! for the POSTs of one writer batch), which runs in the single writer, so two copies of one
//! submission arriving at once cannot both be stored.

use std::collections::HashMap;

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{
    attachments, form_versions, forms, submission_consent, submission_flags, submission_versions,
    submissions, users,
};
use crate::db::Conn;
use crate::error::AppError;
use crate::forms::FormState;
use crate::scope::Visibility;
use crate::{in_area_with_flag, insert_rows, on_conn, visible_submissions};

pub const STATE_RECEIVED: &str = "received";
pub const STATE_EDITED: &str = "edited";

/// A file that arrived with a POST and is already durable in the blob store.
#[derive(Debug, Clone)]
pub struct IncomingFile {
    pub name: String,
    pub sha256: String,
    pub size: i64,
    pub content_type: String,
}

/// What ingest derived from the answers (see `ingest.rs`).
#[derive(Debug, Clone, Default)]
pub struct Derived {
    pub hamlet_code: Option<String>,
    pub activity_date: Option<NaiveDate>,
    pub beneficiary_key: Option<String>,
    /// Values of sensitive fields, sealed by `sensitive::seal`; never in `fields_json`.
    pub sensitive: Option<String>,
    pub flags: Vec<String>,
}

/// A parsed submission POST, ready to be stored.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub identity: fieldtally_forms::Identity,
    /// The answers without sensitive values.
    pub fields_json: String,
    pub derived: Derived,
    pub geopoint: Option<fieldtally_forms::Geopoint>,
    /// File names the instance refers to in its binary fields.
    pub expected: Vec<String>,
    pub xml: Vec<u8>,
    pub xml_sha256: String,
    pub collector_id: i64,
    pub device_id: Option<String>,
    /// Files of this POST that the instance refers to.
    pub files: Vec<IncomingFile>,
    pub received_at: NaiveDateTime,
    /// The form's consent or legal-basis field and this submission's answer to it.
    pub consent: Option<(String, Option<String>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new submission.
    Created,
    /// A new version of an existing submission (an edit, by deprecatedID).
    Edited,
    /// An older version that arrived after the edit that replaced it.
    OlderVersion,
    /// The same XML again: a retry or the next part of a split upload.
    Duplicate,
}

#[derive(Debug, Clone, Copy)]
pub struct Stored {
    pub submission_id: i64,
    pub outcome: Outcome,
    /// Attachments the instance names that have not arrived yet.
    pub missing: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = submission_versions)]
struct VersionRow {
    id: i64,
    submission_id: i64,
    xml_sha256: String,
    is_current: bool,
}

fn version_by_instance(
    conn: &mut Conn<'_>,
    instance_id: &str,
) -> Result<Option<VersionRow>, AppError> {
    Ok(on_conn!(conn, c => submission_versions::table
        .filter(submission_versions::instance_id.eq(instance_id))
        .select(VersionRow::as_select())
        .first(c)
        .optional())?)
}

fn version_deprecating(
    conn: &mut Conn<'_>,
    instance_id: &str,
) -> Result<Option<VersionRow>, AppError> {
    Ok(on_conn!(conn, c => submission_versions::table
        .filter(submission_versions::deprecated_id.eq(instance_id))
        .select(VersionRow::as_select())
        .first(c)
        .optional())?)
}

fn missing_count(conn: &mut Conn<'_>, version_id: i64) -> Result<i64, AppError> {
    Ok(on_conn!(conn, c => attachments::table
        .filter(attachments::version_id.eq(version_id))
        .filter(attachments::sha256.is_null())
        .count()
        .get_result(c))?)
}

/// Fills in attachments of a stored version that were still missing.
fn add_files(conn: &mut Conn<'_>, version_id: i64, inc: &Incoming) -> Result<(), AppError> {
    for f in &inc.files {
        on_conn!(conn, c => diesel::update(
            attachments::table
                .filter(attachments::version_id.eq(version_id))
                .filter(attachments::name.eq(&f.name))
                .filter(attachments::sha256.is_null()),
        )
        .set((
            attachments::sha256.eq(&f.sha256),
            attachments::size.eq(f.size),
            attachments::content_type.eq(&f.content_type),
            attachments::received_at.eq(inc.received_at),
        ))
        .execute(c))?;
    }
    Ok(())
}

/// Checks that the form version exists and accepts new data.
fn check_form_open(conn: &mut Conn<'_>, form_id: &str, version: &str) -> Result<(), AppError> {
    let state: Option<String> = on_conn!(conn, c => form_versions::table
        .filter(form_versions::form_id.eq(form_id))
        .filter(form_versions::version.eq(version))
        .select(form_versions::state)
        .first(c)
        .optional())?;
    match state.as_deref() {
        Some(s) if s == FormState::Open.as_str() => Ok(()),
        Some(s) if s == FormState::Closed.as_str() => Err(AppError::conflict(
            "form_closed",
            format!("the form '{form_id}' version '{version}' is closed and no longer accepts submissions"),
        )),
        Some(_) => Err(AppError::conflict(
            "form_not_published",
            format!("the form '{form_id}' version '{version}' has not been published yet"),
        )),
        None => {
            let known: i64 = on_conn!(conn, c => forms::table.filter(forms::form_id.eq(form_id)).count().get_result(c))?;
            if known == 0 {
                Err(AppError::not_found(
                    "unknown_form",
                    format!("there is no form '{form_id}' on this server"),
                ))
            } else {
                Err(AppError::not_found(
                    "unknown_form_version",
                    format!("the form '{form_id}' has no version '{version}'; get the current forms and fill the form again"),
                ))
            }
        }
    }
}

/// Inserts one version row and its attachment rows; `carried` gives files of the previous
/// version by name, used when an edit does not send a file again. Returns the version's id and
/// how many of its attachments are still missing.
fn insert_version(
    conn: &mut Conn<'_>,
    submission_id: i64,
    inc: &Incoming,
    is_current: bool,
    carried: &HashMap<String, IncomingFile>,
) -> Result<(i64, i64), AppError> {
    let mut inserted = insert_versions(
        conn,
        &[NewVersion {
            submission_id,
            inc,
            is_current,
            carried,
        }],
    )?;
    inserted
        .pop()
        .ok_or_else(|| AppError::internal("the version was not inserted"))
}

/// A version to insert; see [`insert_version`].
struct NewVersion<'a> {
    submission_id: i64,
    inc: &'a Incoming,
    is_current: bool,
    carried: &'a HashMap<String, IncomingFile>,
}

/// Inserts version rows (of distinct instanceIDs) and their consent, flag and attachment rows,
/// a statement per table. Returns each version's id and its count of missing attachments.
fn insert_versions(
    conn: &mut Conn<'_>,
    versions: &[NewVersion<'_>],
) -> Result<Vec<(i64, i64)>, AppError> {
    if versions.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<_> = versions
        .iter()
        .map(|v| {
            let (id, inc, g) = (&v.inc.identity, v.inc, v.inc.geopoint);
            (
                submission_versions::submission_id.eq(v.submission_id),
                submission_versions::instance_id.eq(&id.instance_id),
                submission_versions::deprecated_id.eq(&id.deprecated_id),
                submission_versions::form_version.eq(&id.version),
                submission_versions::xml.eq(&inc.xml),
                submission_versions::xml_sha256.eq(&inc.xml_sha256),
                submission_versions::instance_name.eq(&id.instance_name),
                submission_versions::collector_id.eq(inc.collector_id),
                submission_versions::device_id.eq(&inc.device_id),
                submission_versions::received_at.eq(inc.received_at),
                submission_versions::geo_lat.eq(g.map(|g| g.lat)),
                submission_versions::geo_lon.eq(g.map(|g| g.lon)),
                submission_versions::geo_alt.eq(g.and_then(|g| g.alt)),
                submission_versions::geo_accuracy.eq(g.and_then(|g| g.accuracy)),
                submission_versions::fields.eq(&inc.fields_json),
                submission_versions::is_current.eq(v.is_current),
                submission_versions::hamlet_code.eq(&inc.derived.hamlet_code),
                submission_versions::activity_date.eq(inc.derived.activity_date),
                submission_versions::beneficiary_key.eq(&inc.derived.beneficiary_key),
                submission_versions::sensitive.eq(&inc.derived.sensitive),
            )
        })
        .collect();
    let ids: Vec<(i64, String)> = insert_rows!(conn, submission_versions::table, rows.as_slice(), (q, c) => q
        .returning((submission_versions::id, submission_versions::instance_id))
        .get_results(c))?;
    let ids: HashMap<String, i64> = ids.into_iter().map(|(id, i)| (i, id)).collect();
    let mut out = Vec::with_capacity(versions.len());
    let (mut consent, mut flags, mut files) = (Vec::new(), Vec::new(), Vec::new());
    for v in versions {
        let inc = v.inc;
        let version_id = *ids
            .get(&inc.identity.instance_id)
            .ok_or_else(|| AppError::internal("an inserted version has no id"))?;
        if let Some((field, value)) = &inc.consent {
            consent.push((
                submission_consent::version_id.eq(version_id),
                submission_consent::field.eq(field),
                submission_consent::value.eq(value),
                submission_consent::recorded_at.eq(inc.received_at),
            ));
        }
        for flag in &inc.derived.flags {
            flags.push((
                submission_flags::version_id.eq(version_id),
                submission_flags::flag.eq(flag),
            ));
        }
        let mut missing = 0;
        for name in &inc.expected {
            let file = inc
                .files
                .iter()
                .find(|f| &f.name == name)
                .or_else(|| v.carried.get(name));
            missing += i64::from(file.is_none());
            files.push((
                attachments::version_id.eq(version_id),
                attachments::name.eq(name),
                attachments::sha256.eq(file.map(|f| &f.sha256)),
                attachments::size.eq(file.map(|f| f.size)),
                attachments::content_type.eq(file.map(|f| &f.content_type)),
                attachments::received_at.eq(file.map(|_| inc.received_at)),
            ));
        }
        out.push((version_id, missing));
    }
    if !consent.is_empty() {
        insert_rows!(conn, submission_consent::table, consent.as_slice(), (q, c) => q.execute(c))?;
    }
    if !flags.is_empty() {
        insert_rows!(conn, submission_flags::table, flags.as_slice(), (q, c) => q.execute(c))?;
    }
    if !files.is_empty() {
        insert_rows!(conn, attachments::table, files.as_slice(), (q, c) => q.execute(c))?;
    }
    Ok(out)
}

/// An attachment row as stored: the file is present once `sha256` is set.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = attachments)]
struct AttachmentRow {
    name: String,
    sha256: Option<String>,
    size: Option<i64>,
    content_type: Option<String>,
}

fn attachment_rows(conn: &mut Conn<'_>, version_id: i64) -> Result<Vec<AttachmentRow>, AppError> {
    Ok(on_conn!(conn, c => attachments::table
        .filter(attachments::version_id.eq(version_id))
        .order(attachments::id)
        .select(AttachmentRow::as_select())
        .load(c))?)
}

fn present_files(
    conn: &mut Conn<'_>,
    version_id: i64,
) -> Result<HashMap<String, IncomingFile>, AppError> {
    Ok(attachment_rows(conn, version_id)?
        .into_iter()
        .filter_map(|a| {
            Some((
                a.name.clone(),
                IncomingFile {
                    name: a.name,
                    sha256: a.sha256?,
                    size: a.size.unwrap_or(0),
                    content_type: a
                        .content_type
                        .unwrap_or_else(|| "application/octet-stream".into()),
                },
            ))
        })
        .collect())
}

/// The checks [`store`] makes that need no write: a new submission must be for an open form
/// version. Run before the upload's files are stored so a refused upload stores nothing; the
/// writer decides again, authoritatively.
pub fn precheck(conn: &mut Conn<'_>, id: &fieldtally_forms::Identity) -> Result<(), AppError> {
    if version_by_instance(conn, &id.instance_id)?.is_none() {
        check_form_open(conn, &id.form_id, &id.version)?;
    }
    Ok(())
}

/// Stores a submission POST. Runs inside the writer's transaction; the caller records the
/// submission in the indicator backlog in the same transaction (`indicators::backlog`).
pub fn store(conn: &mut Conn<'_>, inc: &Incoming) -> Result<Stored, AppError> {
    let id = &inc.identity;
    if let Some(existing) = version_by_instance(conn, &id.instance_id)? {
        if existing.xml_sha256 != inc.xml_sha256 {
            return Err(AppError::conflict(
                "different_xml",
                "a submission with this instanceID already exists with different content; resubmissions that add attachments must send identical XML",
            ));
        }
        add_files(conn, existing.id, inc)?;
        return Ok(Stored {
            submission_id: existing.submission_id,
            outcome: Outcome::Duplicate,
            missing: missing_count(conn, existing.id)?,
        });
    }
    check_form_open(conn, &id.form_id, &id.version)?;

    // An edit of this instance arrived first: this is the older version of that submission.
    if let Some(newer) = version_deprecating(conn, &id.instance_id)? {
        let (_, missing) = insert_version(conn, newer.submission_id, inc, false, &HashMap::new())?;
        let predecessor_known = match &id.deprecated_id {
            Some(d) => version_by_instance(conn, d)?.is_some(),
            None => false,
        };
        if !predecessor_known {
            // The submission is known by its earliest version's instanceID.
            on_conn!(conn, c => diesel::update(submissions::table.find(newer.submission_id))
                .set(submissions::instance_id.eq(&id.instance_id))
                .execute(c))?;
        }
        return Ok(Stored {
            submission_id: newer.submission_id,
            outcome: Outcome::OlderVersion,
            missing,
        });
    }

    if let Some(deprecated) = &id.deprecated_id {
        if let Some(old) = version_by_instance(conn, deprecated)? {
            if !old.is_current {
                return Err(AppError::conflict(
                    "edit_out_of_date",
                    format!("the copy you edited ({deprecated}) has already been replaced by a newer edit; get the newest version and make your changes again"),
                ));
            }
            let carried = present_files(conn, old.id)?;
            on_conn!(conn, c => diesel::update(submission_versions::table.find(old.id))
                .set(submission_versions::is_current.eq(false))
                .execute(c))?;
            let (_, missing) = insert_version(conn, old.submission_id, inc, true, &carried)?;
            let from_state: String = on_conn!(conn, c => submissions::table
                .find(old.submission_id)
                .select(submissions::review_state)
                .first(c))?;
            crate::review::record_edit(
                conn,
                old.submission_id,
                &from_state,
                inc.collector_id,
                inc.received_at,
            )?;
            let collector: String = on_conn!(conn, c => users::table
                .find(inc.collector_id)
                .select(users::username)
                .first(c))?;
            let actor = crate::audit::Actor {
                id: inc.collector_id,
                username: collector,
            };
            crate::audit::record(
                conn,
                &actor,
                "submission.edited",
                Some(&id.instance_id),
                serde_json::json!({ "from_state": from_state, "deprecated": deprecated }),
            )?;
            on_conn!(conn, c => diesel::update(submissions::table.find(old.submission_id))
                .set((
                    submissions::form_version.eq(&id.version),
                    submissions::review_state.eq(STATE_EDITED),
                    submissions::updated_at.eq(inc.received_at),
                ))
                .execute(c))?;
            crate::scope::index_areas(conn, old.submission_id)?;
            let root: String = on_conn!(conn, c => submissions::table
                .find(old.submission_id)
                .select(submissions::instance_id)
                .first(c))?;
            crate::changes::record(
                conn,
                old.submission_id,
                &root,
                crate::changes::Kind::Edited,
                inc.received_at,
            )?;
            return Ok(Stored {
                submission_id: old.submission_id,
                outcome: Outcome::Edited,
                missing,
            });
        }
    }

    insert_new(conn, &[inc])?
        .pop()
        .ok_or_else(|| AppError::internal("the submission was not inserted"))
}

/// Stores the submission POSTs of one writer batch, with the effect of [`store`] on each in
/// order. New submissions that nothing stored or in the batch refers to (the usual case) are
/// inserted together, a statement per table; the others (repeats, edits, older versions,
/// refusals) are stored one by one after them, which ends the same since the two share no
/// instanceID.
pub fn store_all(conn: &mut Conn<'_>, incs: &[&Incoming]) -> Result<Vec<Stored>, AppError> {
    let fresh = independent_new(conn, incs)?;
    let new: Vec<&Incoming> = incs
        .iter()
        .zip(&fresh)
        .filter(|(_, f)| **f)
        .map(|(inc, _)| *inc)
        .collect();
    let mut created = insert_new(conn, &new)?.into_iter();
    let mut out = Vec::with_capacity(incs.len());
    let mut later = Vec::new();
    for (i, (inc, f)) in incs.iter().zip(&fresh).enumerate() {
        if *f {
            out.push(created.next());
        } else {
            out.push(None);
            later.push((i, *inc));
        }
    }
    for (i, inc) in later {
        out[i] = Some(store(conn, inc)?);
    }
    out.into_iter()
        .map(|s| s.ok_or_else(|| AppError::internal("a submission of the batch was not stored")))
        .collect()
}

/// Which of `incs` are new submissions for an open form version whose instanceID no stored
/// version and no other POST of the batch has or replaces, and that replace nothing.
fn independent_new(conn: &mut Conn<'_>, incs: &[&Incoming]) -> Result<Vec<bool>, AppError> {
    let ids: Vec<&str> = incs
        .iter()
        .map(|i| i.identity.instance_id.as_str())
        .collect();
    // Two statements, not one with OR: PostgreSQL planned the OR once, on an empty table, as a
    // scan of every version, and kept that plan while the table grew (5 to 25 ms a batch at
    // 5,000 submissions).
    let mut stored: Vec<(String, Option<String>)> = on_conn!(conn, c => submission_versions::table
        .filter(submission_versions::instance_id.eq_any(&ids))
        .select((submission_versions::instance_id, submission_versions::deprecated_id))
        .load(c))?;
    let replacing: Vec<(String, Option<String>)> = on_conn!(conn, c => submission_versions::table
        .filter(submission_versions::deprecated_id.eq_any(&ids))
        .filter(submission_versions::instance_id.ne_all(&ids))
        .select((submission_versions::instance_id, submission_versions::deprecated_id))
        .load(c))?;
    stored.extend(replacing);
    let mut forms: Vec<&str> = incs.iter().map(|i| i.identity.form_id.as_str()).collect();
    forms.sort_unstable();
    forms.dedup();
    let open: Vec<(String, String)> = on_conn!(conn, c => form_versions::table
        .filter(form_versions::form_id.eq_any(&forms))
        .filter(form_versions::state.eq(FormState::Open.as_str()))
        .select((form_versions::form_id, form_versions::version))
        .load(c))?;
    let mut named: HashMap<&str, usize> = HashMap::new();
    for (instance_id, deprecated_id) in &stored {
        *named.entry(instance_id).or_default() += 1;
        if let Some(d) = deprecated_id {
            *named.entry(d).or_default() += 1;
        }
    }
    for inc in incs {
        *named.entry(&inc.identity.instance_id).or_default() += 1;
        if let Some(d) = &inc.identity.deprecated_id {
            *named.entry(d).or_default() += 1;
        }
    }
    Ok(incs
        .iter()
        .map(|inc| {
            let id = &inc.identity;
            id.deprecated_id.is_none()
                && named.get(id.instance_id.as_str()) == Some(&1)
                && open
                    .iter()
                    .any(|(f, v)| f == &id.form_id && v == &id.version)
        })
        .collect())
}

/// Inserts new submissions (of distinct instanceIDs, nothing referring to them) with their
/// first versions, area index and change feed entries.
fn insert_new(conn: &mut Conn<'_>, incs: &[&Incoming]) -> Result<Vec<Stored>, AppError> {
    if incs.is_empty() {
        return Ok(Vec::new());
    }
    let values: Vec<_> = incs
        .iter()
        .map(|inc| {
            let id = &inc.identity;
            (
                submissions::instance_id.eq(&id.instance_id),
                submissions::form_id.eq(&id.form_id),
                submissions::form_version.eq(&id.version),
                submissions::collector_id.eq(inc.collector_id),
                submissions::review_state.eq(STATE_RECEIVED),
                submissions::created_at.eq(inc.received_at),
                submissions::updated_at.eq(inc.received_at),
            )
        })
        .collect();
    let ids: Vec<(i64, String)> = match unused_sqlite_id(conn)? {
        Some(first) => {
            let rows: Vec<_> = (first..)
                .zip(values)
                .map(|(fresh, v)| (submissions::id.eq(fresh), v))
                .collect();
            insert_rows!(conn, submissions::table, rows.as_slice(), (q, c) => q
                .returning((submissions::id, submissions::instance_id))
                .get_results(c))?
        }
        None => insert_rows!(conn, submissions::table, values.as_slice(), (q, c) => q
            .returning((submissions::id, submissions::instance_id))
            .get_results(c))?,
    };
    let ids: HashMap<String, i64> = ids.into_iter().map(|(id, i)| (i, id)).collect();
    let submission_ids = incs
        .iter()
        .map(|inc| {
            ids.get(&inc.identity.instance_id)
                .copied()
                .ok_or_else(|| AppError::internal("an inserted submission has no id"))
        })
        .collect::<Result<Vec<i64>, AppError>>()?;
    let none = HashMap::new();
    let versions: Vec<NewVersion<'_>> = incs
        .iter()
        .zip(&submission_ids)
        .map(|(inc, submission_id)| NewVersion {
            submission_id: *submission_id,
            inc,
            is_current: true,
            carried: &none,
        })
        .collect();
    let inserted = insert_versions(conn, &versions)?;

    let placed: Vec<(i64, (&str, Option<NaiveDate>))> = incs
        .iter()
        .zip(&submission_ids)
        .filter_map(|(inc, id)| {
            let hamlet = inc.derived.hamlet_code.as_deref()?;
            Some((*id, (hamlet, inc.derived.activity_date)))
        })
        .collect();
    let places: Vec<(&str, Option<NaiveDate>)> = placed.iter().map(|(_, p)| *p).collect();
    let codes = crate::scope::area_codes(conn, &places)?;
    let index: Vec<(i64, &std::collections::BTreeSet<String>)> =
        placed.iter().map(|(id, _)| *id).zip(&codes).collect();
    crate::scope::add_area_index(conn, &index)?;

    let changes: Vec<_> = incs
        .iter()
        .zip(&submission_ids)
        .map(|(inc, id)| {
            (
                *id,
                inc.identity.instance_id.as_str(),
                crate::changes::Kind::Created,
                inc.received_at,
            )
        })
        .collect();
    crate::changes::record_all(conn, &changes)?;
    Ok(submission_ids
        .into_iter()
        .zip(inserted)
        .map(|(submission_id, (_, missing))| Stored {
            submission_id,
            outcome: Outcome::Created,
            missing,
        })
        .collect())
}

/// On SQLite, the id for a new submission. Without AUTOINCREMENT SQLite gives a new row the
/// largest id plus one, so after the newest submission was deleted its id would come again, and
/// the change feed and the tombstones, which name submissions by id, would mix the two. The new
/// id therefore also follows every deleted one. PostgreSQL's sequence never gives an id twice.
fn unused_sqlite_id(conn: &mut Conn<'_>) -> Result<Option<i64>, AppError> {
    use crate::db::schema::deleted_submissions;
    use diesel::dsl::max;
    let Conn::Sqlite(c) = conn else {
        return Ok(None);
    };
    let live: Option<i64> = submissions::table
        .select(max(submissions::id))
        .first(&mut **c)?;
    let deleted: Option<i64> = deleted_submissions::table
        .select(max(deleted_submissions::submission_id))
        .first(&mut **c)?;
    Ok(Some(live.max(deleted).unwrap_or(0) + 1))
}

/// One row of the submission list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = SubmissionSummary)]
pub struct Summary {
    pub instance_id: String,
    pub form_id: String,
    pub form_version: String,
    pub collector: String,
    pub review_state: String,
    pub instance_name: Option<String>,
    pub hamlet_code: Option<String>,
    pub activity_date: Option<NaiveDate>,
    pub flags: Vec<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    #[serde(skip)]
    pub id: i64,
}

#[derive(Debug, Clone)]
pub struct Filter {
    /// Which submissions the caller may see at all (from [`crate::scope`]).
    pub visibility: Visibility,
    pub form_id: Option<String>,
    pub form_version: Option<String>,
    pub collector: Option<String>,
    /// Current review state.
    pub state: Option<String>,
    /// An area code the submission lies in (hamlet, commune, district or province).
    pub area: Option<String>,
    /// A flag the current version carries.
    pub flag: Option<String>,
    pub received_since: Option<NaiveDateTime>,
    /// Received strictly before this time.
    pub received_before: Option<NaiveDateTime>,
    /// Keyset cursor: rows after this id (oldest first) or before it (newest first).
    pub cursor_id: Option<i64>,
    pub newest_first: bool,
    pub limit: i64,
}

impl Filter {
    pub fn new(visibility: Visibility, limit: i64) -> Filter {
        Filter {
            visibility,
            form_id: None,
            form_version: None,
            collector: None,
            state: None,
            area: None,
            flag: None,
            received_since: None,
            received_before: None,
            cursor_id: None,
            newest_first: false,
            limit,
        }
    }
}

type SummaryRow = (
    (i64, i64),
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    (Option<String>, Option<NaiveDate>),
    NaiveDateTime,
    NaiveDateTime,
);

/// Flags of the given versions, by version id.
fn flags_of(
    conn: &mut Conn<'_>,
    version_ids: &[i64],
) -> Result<HashMap<i64, Vec<String>>, AppError> {
    let rows: Vec<(i64, String)> = on_conn!(conn, c => submission_flags::table
        .filter(submission_flags::version_id.eq_any(version_ids))
        .select((submission_flags::version_id, submission_flags::flag))
        .load(c))?;
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    for (id, flag) in rows {
        out.entry(id).or_default().push(flag);
    }
    // Stored in the order checks run; keep that order stable for readers.
    for list in out.values_mut() {
        list.sort_by_key(|f| crate::geotag::order(f));
    }
    Ok(out)
}

/// Submissions the filter's visibility allows, in the order they were first received (or the
/// reverse), after the cursor. Keyset paging on the primary key: every page is an index range.
pub fn list(conn: &mut Conn<'_>, f: &Filter) -> Result<Vec<Summary>, AppError> {
    // Two steps, so that no query planner can turn a page into a sort of the whole table:
    // first the page's ids from `submissions` alone (an index range in id order), then the
    // rows for those ids.
    let collector_id = match &f.collector {
        Some(name) => match crate::users::find(conn, name)? {
            Some(u) => Some(u.id),
            None => return Ok(Vec::new()),
        },
        None => None,
    };
    let ids: Vec<i64> = on_conn!(conn, c => {
        let mut q = submissions::table
            .select(submissions::id)
            .limit(f.limit)
            .into_boxed();
        q = visible_submissions!(q, &f.visibility);
        q = in_area_with_flag!(q, &f.area, &f.flag);
        q = if f.newest_first {
            q.order(submissions::id.desc())
        } else {
            q.order(submissions::id)
        };
        if let Some(v) = &f.form_id {
            q = q.filter(submissions::form_id.eq(v));
        }
        if let Some(v) = &f.form_version {
            q = q.filter(submissions::form_version.eq(v));
        }
        if let Some(v) = collector_id {
            q = q.filter(submissions::collector_id.eq(v));
        }
        if let Some(v) = f.received_since {
            q = q.filter(submissions::created_at.ge(v));
        }
        if let Some(v) = &f.state {
            q = q.filter(submissions::review_state.eq(v));
        }
        if let Some(v) = f.received_before {
            q = q.filter(submissions::created_at.lt(v));
        }
        match (f.cursor_id, f.newest_first) {
            (Some(v), false) => q = q.filter(submissions::id.gt(v)),
            (Some(v), true) => q = q.filter(submissions::id.lt(v)),
            (None, _) => {}
        }
        q.load(c)
    })?;
    let mut rows = summaries(conn, &ids)?;
    if f.newest_first {
        rows.reverse();
    }
    Ok(rows)
}

/// The list rows of the given submissions (those that exist), in id order.
pub fn summaries(conn: &mut Conn<'_>, ids: &[i64]) -> Result<Vec<Summary>, AppError> {
    let mut rows: Vec<SummaryRow> = on_conn!(conn, c => submissions::table
        .inner_join(users::table.on(users::id.eq(submissions::collector_id)))
        .inner_join(submission_versions::table.on(
            submission_versions::submission_id.eq(submissions::id)
                .and(submission_versions::is_current.eq(true)),
        ))
        .filter(submissions::id.eq_any(ids))
        .select((
            (submissions::id, submission_versions::id),
            submissions::instance_id,
            submissions::form_id,
            submissions::form_version,
            users::username,
            submissions::review_state,
            submission_versions::instance_name,
            (submission_versions::hamlet_code, submission_versions::activity_date),
            submissions::created_at,
            submissions::updated_at,
        ))
        .load(c))?;
    rows.sort_by_key(|r| (r.0).0);
    let version_ids: Vec<i64> = rows.iter().map(|r| (r.0).1).collect();
    let mut flags = flags_of(conn, &version_ids)?;
    Ok(rows
        .into_iter()
        .map(
            |(
                (id, version_id),
                instance_id,
                form_id,
                form_version,
                collector,
                review_state,
                instance_name,
                (hamlet_code, activity_date),
                created_at,
                updated_at,
            )| Summary {
                id,
                instance_id,
                form_id,
                form_version,
                collector,
                review_state,
                instance_name,
                hamlet_code,
                activity_date,
                flags: flags.remove(&version_id).unwrap_or_default(),
                created_at,
                updated_at,
            },
        )
        .collect())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Geopoint)]
pub struct GeopointView {
    pub lat: f64,
    pub lon: f64,
    pub alt: Option<f64>,
    pub accuracy: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Attachment)]
pub struct AttachmentView {
    pub name: String,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub content_type: Option<String>,
    pub complete: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SubmissionVersion)]
pub struct VersionView {
    pub instance_id: String,
    pub deprecated_id: Option<String>,
    pub form_version: String,
    pub received_at: NaiveDateTime,
    pub current: bool,
    /// What this version changed compared with the version it replaced (by deprecatedID);
    /// empty for the first version.
    pub changes: Vec<Change>,
}

/// One answer that differs between a version and the one it replaced.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = AnswerChange)]
pub struct Change {
    /// Field path; inside repeats with the item number, e.g. `members[2]/member_age`.
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Flattens stored fields to path → text, repeats numbered from 1, so versions can be compared.
fn flatten(
    value: &serde_json::Value,
    prefix: &str,
    out: &mut std::collections::BTreeMap<String, String>,
) {
    use serde_json::Value;
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}/{k}")
        }
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Array(items)
                        if items.iter().all(Value::is_object) && !items.is_empty() =>
                    {
                        for (i, item) in items.iter().enumerate() {
                            flatten(item, &format!("{}[{}]", key(k), i + 1), out);
                        }
                    }
                    Value::Object(_) => flatten(v, &key(k), out),
                    Value::Null => {}
                    Value::Array(items) => {
                        let words: Vec<String> = items
                            .iter()
                            .map(|i| {
                                i.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| i.to_string())
                            })
                            .collect();
                        out.insert(key(k), words.join(" "));
                    }
                    Value::String(t) => {
                        out.insert(key(k), t.clone());
                    }
                    other => {
                        out.insert(key(k), other.to_string());
                    }
                }
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// The answers that differ between two versions' stored fields; `meta/` (instanceID,
/// deprecatedID) differs in every edit by definition and is left out.
pub fn diff(before: &serde_json::Value, after: &serde_json::Value) -> Vec<Change> {
    let (mut a, mut b) = (Default::default(), Default::default());
    flatten(before, "", &mut a);
    flatten(after, "", &mut b);
    let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| !p.starts_with("meta/") && a.get(*p) != b.get(*p))
        .map(|p| Change {
            path: p.clone(),
            before: a.get(p).cloned(),
            after: b.get(p).cloned(),
        })
        .collect()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Consent)]
pub struct ConsentView {
    pub field: String,
    pub value: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SubmissionDetail)]
pub struct Detail {
    pub instance_id: String,
    pub current_instance_id: String,
    pub form_id: String,
    pub form_version: String,
    pub collector: String,
    pub device_id: Option<String>,
    pub review_state: String,
    pub instance_name: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub hamlet_code: Option<String>,
    pub activity_date: Option<NaiveDate>,
    /// Pseudonymous: the same woman gives the same key; it reveals nothing by itself.
    pub beneficiary_key: Option<String>,
    pub flags: Vec<String>,
    /// The answers, without the values of sensitive fields.
    pub fields: serde_json::Value,
    /// Paths of sensitive fields whose values are kept apart and not shown here.
    pub sensitive_fields: Vec<String>,
    pub geopoint: Option<GeopointView>,
    pub attachments: Vec<AttachmentView>,
    pub versions: Vec<VersionView>,
    /// Whether the raw XML is sealed with a data key (the form is marked sensitive).
    pub xml_sealed: bool,
    /// The consent or legal basis recorded with the current version, where the form has it.
    pub consent: Option<ConsentView>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = submission_versions)]
struct FullVersion {
    id: i64,
    instance_id: String,
    deprecated_id: Option<String>,
    form_version: String,
    instance_name: Option<String>,
    device_id: Option<String>,
    received_at: NaiveDateTime,
    geo_lat: Option<f64>,
    geo_lon: Option<f64>,
    geo_alt: Option<f64>,
    geo_accuracy: Option<f64>,
    fields: String,
    is_current: bool,
    hamlet_code: Option<String>,
    activity_date: Option<NaiveDate>,
    beneficiary_key: Option<String>,
    sensitive: Option<String>,
}

/// Finds the submission that any of its versions' instanceIDs belongs to.
pub fn submission_of(conn: &mut Conn<'_>, instance_id: &str) -> Result<i64, AppError> {
    version_by_instance(conn, instance_id)?
        .map(|v| v.submission_id)
        .ok_or_else(|| {
            AppError::not_found(
                "unknown_submission",
                format!("no submission with instanceID '{instance_id}'"),
            )
        })
}

fn current_version(conn: &mut Conn<'_>, submission_id: i64) -> Result<FullVersion, AppError> {
    Ok(on_conn!(conn, c => submission_versions::table
        .filter(submission_versions::submission_id.eq(submission_id))
        .filter(submission_versions::is_current.eq(true))
        .select(FullVersion::as_select())
        .first(c))?)
}

pub fn detail(conn: &mut Conn<'_>, instance_id: &str) -> Result<Detail, AppError> {
    let sid = submission_of(conn, instance_id)?;
    let (root, form_id, form_version, review_state, created_at, updated_at, collector): (
        String,
        String,
        String,
        String,
        NaiveDateTime,
        NaiveDateTime,
        String,
    ) = on_conn!(conn, c => submissions::table
            .inner_join(users::table.on(users::id.eq(submissions::collector_id)))
            .filter(submissions::id.eq(sid))
            .select((submissions::instance_id, submissions::form_id, submissions::form_version, submissions::review_state, submissions::created_at, submissions::updated_at, users::username))
            .first(c))?;
    let current = current_version(conn, sid)?;
    let attachments = attachment_rows(conn, current.id)?;
    let versions: Vec<FullVersion> = on_conn!(conn, c => submission_versions::table
        .filter(submission_versions::submission_id.eq(sid))
        .order(submission_versions::received_at)
        .select(FullVersion::as_select())
        .load(c))?;
    let parse = |text: &str| -> Result<serde_json::Value, AppError> {
        serde_json::from_str(text)
            .map_err(|e| AppError::internal(format!("stored fields are not JSON: {e}")))
    };
    let fields = parse(&current.fields)?;
    let mut by_instance: HashMap<String, serde_json::Value> = HashMap::new();
    for v in &versions {
        by_instance.insert(v.instance_id.clone(), parse(&v.fields)?);
    }
    let xml: Vec<u8> = on_conn!(conn, c => submission_versions::table
        .find(current.id)
        .select(submission_versions::xml)
        .first(c))?;
    let consent: Option<(String, Option<String>)> = on_conn!(conn, c => submission_consent::table
        .find(current.id)
        .select((submission_consent::field, submission_consent::value))
        .first(c)
        .optional())?;
    let geopoint = match (current.geo_lat, current.geo_lon) {
        (Some(lat), Some(lon)) => Some(GeopointView {
            lat,
            lon,
            alt: current.geo_alt,
            accuracy: current.geo_accuracy,
        }),
        _ => None,
    };
    let flags = flags_of(conn, &[current.id])?
        .remove(&current.id)
        .unwrap_or_default();
    Ok(Detail {
        hamlet_code: current.hamlet_code.clone(),
        activity_date: current.activity_date,
        beneficiary_key: current.beneficiary_key.clone(),
        flags,
        sensitive_fields: crate::sensitive::withheld_paths(current.sensitive.as_deref()),
        instance_id: root,
        current_instance_id: current.instance_id.clone(),
        form_id,
        form_version,
        collector,
        device_id: current.device_id.clone(),
        review_state,
        instance_name: current.instance_name.clone(),
        created_at,
        updated_at,
        fields,
        geopoint,
        attachments: attachments
            .into_iter()
            .map(|a| AttachmentView {
                complete: a.sha256.is_some(),
                name: a.name,
                size: a.size,
                sha256: a.sha256,
                content_type: a.content_type,
            })
            .collect(),
        versions: versions
            .into_iter()
            .map(|v| VersionView {
                changes: match (
                    v.deprecated_id.as_ref().and_then(|d| by_instance.get(d)),
                    by_instance.get(&v.instance_id),
                ) {
                    (Some(before), Some(after)) => diff(before, after),
                    _ => Vec::new(),
                },
                instance_id: v.instance_id,
                deprecated_id: v.deprecated_id,
                form_version: v.form_version,
                received_at: v.received_at,
                current: v.is_current,
            })
            .collect(),
        xml_sealed: crate::crypto::is_sealed(&xml),
        consent: consent.map(|(field, value)| ConsentView { field, value }),
    })
}

/// The stored XML (plain, or sealed under the version's instanceID) of the current version, or
/// of the version with the given instanceID: (that version's instanceID, bytes).
pub fn xml(
    conn: &mut Conn<'_>,
    instance_id: &str,
    version: Option<&str>,
) -> Result<(String, Vec<u8>), AppError> {
    let sid = submission_of(conn, instance_id)?;
    let q = submission_versions::table
        .filter(submission_versions::submission_id.eq(sid))
        .select((submission_versions::instance_id, submission_versions::xml));
    let found: Option<(String, Vec<u8>)> = match version {
        Some(v) => {
            on_conn!(conn, c => q.filter(submission_versions::instance_id.eq(v)).first(c).optional())?
        }
        None => {
            on_conn!(conn, c => q.filter(submission_versions::is_current.eq(true)).first(c).optional())?
        }
    };
    found.ok_or_else(|| {
        AppError::not_found("unknown_version", "this submission has no such version")
    })
}

/// The sealed sensitive values (see `sensitive.rs`) of the current version, or of the version
/// with the given instanceID: (that version's instanceID, stored text if any).
pub fn sensitive_values(
    conn: &mut Conn<'_>,
    instance_id: &str,
    version: Option<&str>,
) -> Result<(String, Option<String>), AppError> {
    let sid = submission_of(conn, instance_id)?;
    let q = submission_versions::table
        .filter(submission_versions::submission_id.eq(sid))
        .select((
            submission_versions::instance_id,
            submission_versions::sensitive,
        ));
    let found: Option<(String, Option<String>)> = match version {
        Some(v) => {
            on_conn!(conn, c => q.filter(submission_versions::instance_id.eq(v)).first(c).optional())?
        }
        None => {
            on_conn!(conn, c => q.filter(submission_versions::is_current.eq(true)).first(c).optional())?
        }
    };
    found.ok_or_else(|| {
        AppError::not_found("unknown_version", "this submission has no such version")
    })
}

/// A stored attachment of the current version: (sha256, content type).
pub fn attachment(
    conn: &mut Conn<'_>,
    instance_id: &str,
    name: &str,
) -> Result<(String, String), AppError> {
    let sid = submission_of(conn, instance_id)?;
    let current = current_version(conn, sid)?;
    let row: Option<(Option<String>, Option<String>)> = on_conn!(conn, c => attachments::table
        .filter(attachments::version_id.eq(current.id))
        .filter(attachments::name.eq(name))
        .select((attachments::sha256, attachments::content_type))
        .first(c)
        .optional())?;
    match row {
        None => Err(AppError::not_found(
            "unknown_attachment",
            format!("this submission has no attachment named '{name}'"),
        )),
        Some((None, _)) => Err(AppError::not_found(
            "attachment_missing",
            format!("the attachment '{name}' has not been uploaded yet"),
        )),
        Some((Some(sha), ct)) => Ok((sha, ct.unwrap_or_else(|| "application/octet-stream".into()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_lists_changed_added_and_removed_answers_with_repeat_items_numbered() {
        let before = json!({"a": 1, "sel": ["x", "y"], "g/b": "same", "gone": "v", "meta/instanceID": "uuid:1",
            "members": [{"name": "A", "age": 40}, {"name": "B", "age": 39}]});
        let after = json!({"a": 2, "sel": ["x", "y"], "g/b": "same", "new": "n", "meta/instanceID": "uuid:2",
            "members": [{"name": "A", "age": 41}, {"name": "B", "age": 39}]});
        let d = diff(&before, &after);
        let show: Vec<(&str, Option<&str>, Option<&str>)> = d
            .iter()
            .map(|c| (c.path.as_str(), c.before.as_deref(), c.after.as_deref()))
            .collect();
        assert_eq!(
            show,
            [
                ("a", Some("1"), Some("2")),
                ("gone", Some("v"), None),
                ("members[1]/age", Some("40"), Some("41")),
                ("new", None, Some("n")),
            ]
        );
        assert!(diff(&after, &after).is_empty());
    }
}
