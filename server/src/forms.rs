//! Versioned form definitions: each (form id, version) is immutable and kept byte for byte, so
//! the md5 that phones compare is always the md5 of exactly the bytes they download.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{form_media, form_sources, form_versions, forms};
use crate::db::Conn;
use crate::error::{AppError, Detail};
use crate::on_conn;
use crate::users::now;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FormState {
    Draft,
    Open,
    Closed,
}

impl FormState {
    pub fn as_str(self) -> &'static str {
        match self {
            FormState::Draft => "draft",
            FormState::Open => "open",
            FormState::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = form_versions)]
#[schema(as = FormVersion)]
pub struct FormVersionInfo {
    #[serde(skip)]
    pub id: i64,
    pub form_id: String,
    pub version: String,
    pub title: String,
    pub state: String,
    pub md5: String,
    pub created_at: NaiveDateTime,
    pub published_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = form_media)]
pub struct MediaFile {
    #[serde(skip)]
    pub id: i64,
    pub filename: String,
    pub content_type: String,
    pub md5: String,
    pub sha256: String,
    pub size: i64,
    pub created_at: NaiveDateTime,
}

/// Result of uploading a form definition.
pub struct Upload {
    pub version: FormVersionInfo,
    pub created: bool,
}

/// Stores a new form version, or returns the existing one when the same bytes were uploaded
/// before. `publish` opens the version for phones.
pub fn add_version(conn: &mut Conn<'_>, xml: &[u8], publish: bool) -> Result<Upload, AppError> {
    let def = fieldtally_forms::parse_form(xml)?;
    if def.version.is_empty() {
        return Err(AppError::bad_request(
            "form_without_version",
            "the form has no version; set `version` in the XLSForm settings sheet (e.g. 2025040301)",
        ));
    }
    let md5 = crate::auth::digest::md5_hex(xml);
    if let Some(existing) = find_version(conn, &def.form_id, &def.version)? {
        if existing.md5 != md5 {
            return Err(AppError::conflict(
                "version_exists",
                format!(
                    "form '{}' version '{}' already exists with different content; a published version never changes, so give the new definition a new version",
                    def.form_id, def.version
                ),
            ));
        }
        let version = if publish && existing.state == FormState::Draft.as_str() {
            set_state(conn, &def.form_id, &def.version, FormState::Open)?
        } else {
            existing
        };
        return Ok(Upload {
            version,
            created: false,
        });
    }
    let at = now();
    let form_known: i64 = on_conn!(conn, c => forms::table.filter(forms::form_id.eq(&def.form_id)).count().get_result(c))?;
    if form_known == 0 {
        on_conn!(conn, c => diesel::insert_into(forms::table)
            .values((forms::form_id.eq(&def.form_id), forms::created_at.eq(at)))
            .execute(c))?;
    }
    let state = if publish {
        FormState::Open
    } else {
        FormState::Draft
    };
    let version = on_conn!(conn, c => diesel::insert_into(form_versions::table)
        .values((
            form_versions::form_id.eq(&def.form_id),
            form_versions::version.eq(&def.version),
            form_versions::title.eq(&def.title),
            form_versions::state.eq(state.as_str()),
            form_versions::xml.eq(xml),
            form_versions::md5.eq(&md5),
            form_versions::created_at.eq(at),
            form_versions::published_at.eq(publish.then_some(at)),
        ))
        .returning(FormVersionInfo::as_returning())
        .get_result(c))?;
    Ok(Upload {
        version,
        created: true,
    })
}

pub fn find_version(
    conn: &mut Conn<'_>,
    form_id: &str,
    version: &str,
) -> Result<Option<FormVersionInfo>, AppError> {
    Ok(on_conn!(conn, c => form_versions::table
        .filter(form_versions::form_id.eq(form_id))
        .filter(form_versions::version.eq(version))
        .select(FormVersionInfo::as_select())
        .first(c)
        .optional())?)
}

pub fn get_version(
    conn: &mut Conn<'_>,
    form_id: &str,
    version: &str,
) -> Result<FormVersionInfo, AppError> {
    find_version(conn, form_id, version)?.ok_or_else(|| {
        AppError::not_found(
            "unknown_form_version",
            format!("form '{form_id}' has no version '{version}'"),
        )
    })
}

/// The stored definition, exactly as uploaded.
pub fn xml(conn: &mut Conn<'_>, version_id: i64) -> Result<Vec<u8>, AppError> {
    Ok(on_conn!(conn, c => form_versions::table
        .find(version_id)
        .select(form_versions::xml)
        .first(c))?)
}

pub fn set_state(
    conn: &mut Conn<'_>,
    form_id: &str,
    version: &str,
    state: FormState,
) -> Result<FormVersionInfo, AppError> {
    let current = get_version(conn, form_id, version)?;
    if state == FormState::Draft {
        return Err(AppError::bad_request(
            "bad_state",
            "a version cannot go back to draft",
        ));
    }
    let published_at = match (state, current.published_at) {
        (FormState::Open, None) => Some(now()),
        (_, p) => p,
    };
    Ok(
        on_conn!(conn, c => diesel::update(form_versions::table.find(current.id))
        .set((
            form_versions::state.eq(state.as_str()),
            form_versions::published_at.eq(published_at),
        ))
        .returning(FormVersionInfo::as_returning())
        .get_result(c))?,
    )
}

pub fn versions(conn: &mut Conn<'_>, form_id: &str) -> Result<Vec<FormVersionInfo>, AppError> {
    let list: Vec<FormVersionInfo> = on_conn!(conn, c => form_versions::table
        .filter(form_versions::form_id.eq(form_id))
        .order(form_versions::id)
        .select(FormVersionInfo::as_select())
        .load(c))?;
    if list.is_empty() {
        return Err(AppError::not_found(
            "unknown_form",
            format!("no form with id '{form_id}'"),
        ));
    }
    Ok(list)
}

pub fn all_versions(conn: &mut Conn<'_>) -> Result<Vec<FormVersionInfo>, AppError> {
    Ok(on_conn!(conn, c => form_versions::table
        .order((form_versions::form_id, form_versions::id))
        .select(FormVersionInfo::as_select())
        .load(c))?)
}

/// The newest open version of each form (optionally only the given forms): what phones list.
/// Older open versions keep accepting submissions but are not offered for download.
pub fn open_for_phones(
    conn: &mut Conn<'_>,
    only: Option<&[String]>,
    form_filter: Option<&str>,
) -> Result<Vec<FormVersionInfo>, AppError> {
    let open: Vec<FormVersionInfo> = on_conn!(conn, c => {
        let mut q = form_versions::table
            .filter(form_versions::state.eq(FormState::Open.as_str()))
            .select(FormVersionInfo::as_select())
            .order((form_versions::form_id, form_versions::published_at.desc(), form_versions::id.desc()))
            .into_boxed();
        if let Some(ids) = only {
            q = q.filter(form_versions::form_id.eq_any(ids));
        }
        if let Some(id) = form_filter {
            q = q.filter(form_versions::form_id.eq(id));
        }
        q.load(c)
    })?;
    let mut newest: Vec<FormVersionInfo> = Vec::new();
    for v in open {
        if newest
            .last()
            .map(|n| n.form_id != v.form_id)
            .unwrap_or(true)
        {
            newest.push(v);
        }
    }
    Ok(newest)
}

/// A media file name must be a plain file name: phones save it beside the form.
pub fn validate_media_name(name: &str) -> Result<(), AppError> {
    let bad = name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if bad {
        return Err(AppError::bad_request(
            "bad_filename",
            "a media file name must be a plain file name without '/', '\\' or control characters",
        ));
    }
    Ok(())
}

pub struct NewMedia {
    pub filename: String,
    pub content_type: String,
    pub md5: String,
    pub sha256: String,
    pub size: i64,
}

/// Attaches (or replaces) a media file of a form version; a changed md5 makes phones fetch it again.
pub fn put_media(
    conn: &mut Conn<'_>,
    form_id: &str,
    version: &str,
    media: &NewMedia,
) -> Result<MediaFile, AppError> {
    validate_media_name(&media.filename)?;
    let v = get_version(conn, form_id, version)?;
    on_conn!(conn, c => diesel::delete(
        form_media::table
            .filter(form_media::form_version_id.eq(v.id))
            .filter(form_media::filename.eq(&media.filename)),
    )
    .execute(c))?;
    Ok(on_conn!(conn, c => diesel::insert_into(form_media::table)
        .values((
            form_media::form_version_id.eq(v.id),
            form_media::filename.eq(&media.filename),
            form_media::content_type.eq(&media.content_type),
            form_media::md5.eq(&media.md5),
            form_media::sha256.eq(&media.sha256),
            form_media::size.eq(media.size),
            form_media::created_at.eq(now()),
        ))
        .returning(MediaFile::as_returning())
        .get_result(c))?)
}

pub fn media(conn: &mut Conn<'_>, version_id: i64) -> Result<Vec<MediaFile>, AppError> {
    Ok(on_conn!(conn, c => form_media::table
        .filter(form_media::form_version_id.eq(version_id))
        .order(form_media::filename)
        .select(MediaFile::as_select())
        .load(c))?)
}

/// Version ids (among `ids`) that have at least one media file.
pub fn with_media(conn: &mut Conn<'_>, ids: &[i64]) -> Result<Vec<i64>, AppError> {
    Ok(on_conn!(conn, c => form_media::table
        .filter(form_media::form_version_id.eq_any(ids))
        .select(form_media::form_version_id)
        .distinct()
        .load(c))?)
}

pub fn count(conn: &mut Conn<'_>) -> Result<i64, AppError> {
    Ok(on_conn!(conn, c => form_versions::table.count().get_result(c))?)
}

/// The workbook a version was generated from, without its bytes.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = form_sources)]
#[schema(as = FormSource)]
pub struct SourceInfo {
    pub filename: Option<String>,
    pub format: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub created_at: NaiveDateTime,
}

/// An uploaded XLSForm workbook, kept beside the version generated from it.
pub struct NewSource {
    pub filename: Option<String>,
    pub format: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub warnings: Vec<Detail>,
}

/// Stores the XForm generated from a workbook together with the workbook and the media files
/// the conversion produced, all in one transaction. The same XForm again returns the existing
/// version untouched (with the workbook stored the first time, if any).
pub fn add_generated_version(
    conn: &mut Conn<'_>,
    xform: &[u8],
    source: &NewSource,
    media: &[NewMedia],
    publish: bool,
) -> Result<(Upload, Option<SourceInfo>), AppError> {
    let upload = add_version(conn, xform, publish)?;
    if upload.created {
        let warnings = serde_json::to_string(&source.warnings)
            .map_err(|e| AppError::internal(e.to_string()))?;
        on_conn!(conn, c => diesel::insert_into(form_sources::table)
            .values((
                form_sources::form_version_id.eq(upload.version.id),
                form_sources::filename.eq(&source.filename),
                form_sources::format.eq(&source.format),
                form_sources::content_type.eq(&source.content_type),
                form_sources::bytes.eq(&source.bytes),
                form_sources::size.eq(source.bytes.len() as i64),
                form_sources::sha256.eq(&source.sha256),
                form_sources::warnings.eq(&warnings),
                form_sources::created_at.eq(upload.version.created_at),
            ))
            .execute(c))?;
        for m in media {
            put_media(conn, &upload.version.form_id, &upload.version.version, m)?;
        }
    }
    let info = source_info(conn, upload.version.id)?;
    Ok((upload, info))
}

pub fn source_info(conn: &mut Conn<'_>, version_id: i64) -> Result<Option<SourceInfo>, AppError> {
    Ok(on_conn!(conn, c => form_sources::table
        .find(version_id)
        .select(SourceInfo::as_select())
        .first(c)
        .optional())?)
}

/// The workbook a version was generated from, as uploaded.
pub fn source(
    conn: &mut Conn<'_>,
    form_id: &str,
    version: &str,
) -> Result<(SourceInfo, Vec<u8>), AppError> {
    let v = get_version(conn, form_id, version)?;
    let found: Option<(SourceInfo, Vec<u8>)> = on_conn!(conn, c => form_sources::table
        .find(v.id)
        .select((SourceInfo::as_select(), form_sources::bytes))
        .first(c)
        .optional())?;
    found.ok_or_else(|| {
        AppError::not_found(
            "no_source",
            format!("form '{form_id}' version '{version}' was uploaded as XForm XML, not as an XLSForm workbook"),
        )
    })
}
