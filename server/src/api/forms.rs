//! Form administration: upload versions, publish or close them, attach media.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::auth::digest::md5_hex;
use crate::auth::ApiUser;
use crate::error::AppError;
use crate::forms::{self, FormState, FormVersionInfo, NewMedia};
use crate::protection::{self, Protection};
use crate::state::AppState;

/// Form definitions and media files larger than this are refused.
const MAX_FORM_BYTES: usize = 20 * 1024 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
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
    user: ApiUser,
    state: web::Data<AppState>,
    query: web::Query<UploadQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    if body.is_empty() {
        return Err(AppError::bad_request(
            "empty_body",
            "send the XForm XML as the request body",
        ));
    }
    let publish = query.publish;
    let xml = body.to_vec();
    let upload = state
        .db
        .write(move |conn| forms::add_version(conn, &xml, publish))
        .await?;
    let mut response = if upload.created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(response.json(upload.version))
}

#[derive(Serialize)]
struct FormSummary {
    form_id: String,
    versions: Vec<FormVersionInfo>,
}

async fn list(user: ApiUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
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
    user.require_admin()?;
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
    let v = state
        .db
        .write(move |conn| forms::set_state(conn, &form_id, &version, to))
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
    let stored = state
        .db
        .write(move |conn| forms::put_media(conn, &form_id, &version, &media))
        .await?;
    drop(lock);
    Ok(HttpResponse::Created().json(stored))
}

async fn list_media(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
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
