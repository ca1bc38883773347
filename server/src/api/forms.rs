//! Form administration: upload versions, publish or close them, attach media.

use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::audit::{self, Actor};
use crate::auth::digest::md5_hex;
use crate::auth::ApiUser;
use crate::error::{AppError, Detail};
use crate::forms::{self, FormState, FormVersionInfo, NewMedia, NewSource, SourceInfo};
use crate::protection::{self, Protection};
use crate::scope::Capability;
use crate::state::AppState;
use crate::xlsform::{self, Format};

/// How many versions above the upload hour a versionless workbook may take when earlier ones
/// already hold other content (two days of uploads within one hour).
const MAX_DERIVED_VERSIONS: u64 = 48;

/// Form definitions and media files larger than this are refused.
const MAX_FORM_BYTES: usize = 20 * 1024 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/forms/convert")
            .app_data(web::PayloadConfig::new(MAX_FORM_BYTES))
            .route(web::post().to(convert)),
    )
    .service(
        web::resource("/forms")
            .app_data(web::PayloadConfig::new(MAX_FORM_BYTES))
            .route(web::get().to(list))
            .route(web::post().to(upload)),
    )
    .route("/forms/{form_id}/versions", web::get().to(versions))
    .route(
        "/forms/{form_id}/versions/{version}/publish",
        web::post().to(publish),
    )
    .route(
        "/forms/{form_id}/versions/{version}/close",
        web::post().to(close),
    )
    .service(
        web::resource("/forms/{form_id}/versions/{version}/media/{filename}")
            .app_data(web::PayloadConfig::new(MAX_FORM_BYTES))
            .route(web::put().to(put_media)),
    )
    .route(
        "/forms/{form_id}/versions/{version}/media",
        web::get().to(list_media),
    )
    .service(
        web::resource("/forms/{form_id}/protection")
            .route(web::get().to(get_protection))
            .route(web::put().to(put_protection)),
    )
    .route(
        "/forms/{form_id}/versions/{version}/source",
        web::get().to(download_source),
    )
    .route(
        "/forms/{form_id}/versions/{version}/form.xml",
        web::get().to(download_xform),
    );
}

async fn get_protection(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let form_id = path.into_inner();
    let p = state
        .db
        .read(move |conn| {
            forms::versions(conn, &form_id)?;
            protection::get(conn, &form_id)
        })
        .await?;
    Ok(HttpResponse::Ok().json(p))
}

/// Marks a form sensitive (or not): its later submissions are sealed, geotags reduced, consent
/// recorded. (A form that marks fields `fieldtally:sensitive` is sensitive whatever this says.)
async fn put_protection(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Protection>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let form_id = path.into_inner();
    let p = body.into_inner();
    p.validate()?;
    let saved = state
        .db
        .write(move |conn| protection::set(conn, &form_id, &p))
        .await?;
    Ok(HttpResponse::Ok().json(saved))
}

#[derive(Deserialize)]
struct UploadQuery {
    #[serde(default)]
    publish: bool,
}

async fn upload(
    req: HttpRequest,
    user: ApiUser,
    state: web::Data<AppState>,
    query: web::Query<UploadQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    if body.is_empty() {
        return Err(AppError::bad_request(
            "empty_body",
            "send the XForm XML or the XLSForm workbook (.xlsx, .xls, .ods) as the request body",
        ));
    }
    let publish = query.publish;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if let Some(format) = xlsform::sniff(&body, content_type) {
        return upload_workbook(&req, &state, format, body, publish).await;
    }
    let xml = body.to_vec();
    let actor = Actor {
        id: user.id,
        username: user.username.clone(),
    };
    let upload = state
        .db
        .write(move |conn| {
            let upload = forms::add_version(conn, &xml, publish)?;
            if upload.created {
                audit::record(
                    conn,
                    &actor,
                    "form.upload",
                    Some(&upload.version.form_id),
                    json!({ "version": upload.version.version, "state": upload.version.state }),
                )?;
            }
            Ok(upload)
        })
        .await?;
    let mut response = if upload.created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(response.json(upload.version))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct FormSummary {
    form_id: String,
    versions: Vec<FormVersionInfo>,
}

async fn list(user: ApiUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    user.require(Capability::ReadForms)?;
    let all = state.db.read(forms::all_versions).await?;
    let mut out: Vec<FormSummary> = Vec::new();
    for v in all {
        match out.last_mut() {
            Some(f) if f.form_id == v.form_id => f.versions.push(v),
            _ => out.push(FormSummary {
                form_id: v.form_id.clone(),
                versions: vec![v],
            }),
        }
    }
    Ok(HttpResponse::Ok().json(out))
}

async fn versions(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::ReadForms)?;
    let form_id = path.into_inner();
    let list = state
        .db
        .read(move |conn| forms::versions(conn, &form_id))
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

async fn change_state(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    to: FormState,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let (form_id, version) = path.into_inner();
    let actor = Actor {
        id: user.id,
        username: user.username.clone(),
    };
    let v = state
        .db
        .write(move |conn| {
            let v = forms::set_state(conn, &form_id, &version, to)?;
            audit::record(
                conn,
                &actor,
                "form.state",
                Some(&form_id),
                json!({ "version": version, "state": to.as_str() }),
            )?;
            Ok(v)
        })
        .await?;
    Ok(HttpResponse::Ok().json(v))
}

async fn publish(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    change_state(user, state, path, FormState::Open).await
}

async fn close(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    change_state(user, state, path, FormState::Closed).await
}

async fn put_media(
    req: HttpRequest,
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let (form_id, version, filename) = path.into_inner();
    forms::validate_media_name(&filename)?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let blobs = state.blobs.clone();
    let bytes = body.clone();
    let (lock, sha256) = web::block(move || {
        let lock = blobs.lock_shared()?;
        blobs.put(&bytes).map(|sha| (lock, sha))
    })
    .await??;
    let media = NewMedia {
        filename,
        content_type,
        md5: md5_hex(&body),
        sha256,
        size: body.len() as i64,
    };
    let actor = Actor {
        id: user.id,
        username: user.username.clone(),
    };
    let stored = state
        .db
        .write(move |conn| {
            let stored = forms::put_media(conn, &form_id, &version, &media)?;
            audit::record(
                conn,
                &actor,
                "form.media",
                Some(&form_id),
                json!({ "version": version, "file": media.filename }),
            )?;
            Ok(stored)
        })
        .await?;
    drop(lock);
    Ok(HttpResponse::Created().json(stored))
}

async fn list_media(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::ReadForms)?;
    let (form_id, version) = path.into_inner();
    let media = state
        .db
        .read(move |conn| {
            let v = forms::get_version(conn, &form_id, &version)?;
            forms::media(conn, v.id)
        })
        .await?;
    Ok(HttpResponse::Ok().json(media))
}

/// The uploaded file's name, from `Content-Disposition` (a plain file name, or none).
fn upload_filename(req: &HttpRequest) -> Option<String> {
    let cd = req
        .headers()
        .get(header::CONTENT_DISPOSITION)
        .and_then(|v| ContentDisposition::from_raw(v).ok())?;
    let name = cd.get_filename().map(str::to_string).or_else(|| {
        cd.get_filename_ext()
            .and_then(|ext| String::from_utf8(ext.value.clone()).ok())
    })?;
    let base = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .to_string();
    forms::validate_media_name(&base).ok().map(|_| base)
}

/// What stands in for the form id when the settings sheet has none: ODK Central's
/// `X-XlsForm-FormId-Fallback` header, or the file name without its extension.
fn fallback_name(req: &HttpRequest, filename: Option<&str>) -> Option<String> {
    let header = req
        .headers()
        .get("x-xlsform-formid-fallback")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    header.or_else(|| {
        filename.map(|f| match f.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem.to_string(),
            _ => f.to_string(),
        })
    })
}

/// A version stored from an XLSForm workbook.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WorkbookUpload)]
pub(crate) struct GeneratedUpload {
    #[serde(flatten)]
    version: FormVersionInfo,
    source: Option<SourceInfo>,
    version_derived: bool,
    warnings: Vec<Detail>,
}

/// Converts an XLSForm workbook and stores the generated XForm with the workbook. A workbook
/// without a version gets the upload hour (see [`xlsform::time_version`]); if the form already
/// has that version with other content, the next number up.
async fn upload_workbook(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    format: Format,
    body: web::Bytes,
    publish: bool,
) -> Result<HttpResponse, AppError> {
    let filename = upload_filename(req);
    let fallback = fallback_name(req, filename.as_deref());
    let bytes = body.clone();
    let workbook = web::block(move || xlsform::read(&bytes)).await??;
    let sha256 = hex::encode(Sha256::digest(&body));
    // Held until the generated media's rows are committed (see `Blobs::lock_shared`).
    let blobs = state.blobs.clone();
    let _blob_lock = web::block(move || blobs.lock_shared()).await??;
    let first = xlsform::time_version(chrono::Utc::now());
    for derived in first..first + MAX_DERIVED_VERSIONS {
        let (wb, fb) = (workbook.clone(), fallback.clone());
        let conversion =
            web::block(move || xlsform::convert(&wb, fb.as_deref(), derived)).await??;
        let mut media = Vec::new();
        for (name, bytes) in &conversion.media {
            let blobs = state.blobs.clone();
            let stored = bytes.clone();
            media.push(NewMedia {
                filename: name.clone(),
                content_type: "text/csv".into(),
                md5: md5_hex(bytes),
                sha256: web::block(move || blobs.put(&stored)).await??,
                size: bytes.len() as i64,
            });
        }
        let source = NewSource {
            filename: filename.clone(),
            format: format.as_str().into(),
            content_type: format.content_type().into(),
            bytes: body.to_vec(),
            sha256: sha256.clone(),
            warnings: conversion.warnings.clone(),
        };
        let xform = conversion.xform.clone();
        let stored = state
            .db
            .write(move |conn| forms::add_generated_version(conn, &xform, &source, &media, publish))
            .await;
        let (upload, source) = match stored {
            Err(AppError::Client {
                code: "version_exists",
                ..
            }) if conversion.version_derived => continue,
            other => other?,
        };
        let mut response = if upload.created {
            HttpResponse::Created()
        } else {
            HttpResponse::Ok()
        };
        return Ok(response.json(GeneratedUpload {
            version: upload.version,
            source,
            version_derived: conversion.version_derived,
            warnings: conversion.warnings,
        }));
    }
    Err(AppError::conflict(
        "version_exists",
        "every version derived from this hour is taken; set `version` in the settings sheet",
    ))
}

async fn download_source(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let (form_id, version) = path.into_inner();
    let (f, v) = (form_id.clone(), version.clone());
    let (info, bytes) = state
        .db
        .read(move |conn| forms::source(conn, &f, &v))
        .await?;
    let name = info
        .filename
        .clone()
        .unwrap_or_else(|| format!("{form_id}-{version}.{}", info.format));
    Ok(HttpResponse::Ok()
        .content_type(info.content_type)
        .insert_header(attachment(&name))
        .body(bytes))
}

/// `Content-Disposition: attachment` with an ASCII file name, plus the UTF-8 one when they differ.
fn attachment(name: &str) -> ContentDisposition {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut parameters = vec![DispositionParam::Filename(ascii.clone())];
    if ascii != name {
        parameters.push(DispositionParam::FilenameExt(header::ExtendedValue {
            charset: header::Charset::Ext("UTF-8".into()),
            language_tag: None,
            value: name.as_bytes().to_vec(),
        }));
    }
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters,
    }
}

/// The stored XForm of any version (drafts included), byte for byte as phones get it.
async fn download_xform(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let (form_id, version) = path.into_inner();
    let xml = state
        .db
        .read(move |conn| {
            let v = forms::get_version(conn, &form_id, &version)?;
            forms::xml(conn, v.id)
        })
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(xml))
}

/// A workbook's conversion, nothing stored.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ConversionPreview)]
pub(crate) struct Preview {
    form_id: String,
    version: String,
    version_derived: bool,
    warnings: Vec<Detail>,
    media: Vec<String>,
    xform: String,
}

/// Converts a workbook and shows the result without storing anything: a designer's check
/// before using up a version number.
async fn convert(
    req: HttpRequest,
    user: ApiUser,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if xlsform::sniff(&body, content_type).is_none() {
        return Err(AppError::bad_request(
            "not_a_workbook",
            "send an XLSForm workbook (.xlsx, .xls or .ods) as the request body",
        ));
    }
    let fallback = fallback_name(&req, upload_filename(&req).as_deref());
    let version = xlsform::time_version(chrono::Utc::now());
    let conversion = web::block(move || {
        let workbook = xlsform::read(&body)?;
        xlsform::convert(&workbook, fallback.as_deref(), version)
    })
    .await??;
    Ok(HttpResponse::Ok().json(Preview {
        form_id: conversion.form_id,
        version: conversion.version,
        version_derived: conversion.version_derived,
        warnings: conversion.warnings,
        media: conversion.media.into_iter().map(|(name, _)| name).collect(),
        xform: String::from_utf8_lossy(&conversion.xform).into_owned(),
    }))
}
