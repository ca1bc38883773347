//! Exports of a form's submissions: answered at once when small
//! (`GET /forms/{form_id}/export`), or as a job (`POST /exports`) whose progress and file are
//! at `/exports/{id}`.

use actix_files::NamedFile;
use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::access_log::{self, Access};
use crate::auth::ApiUser;
use crate::error::AppError;
use crate::exports::jobs::{self, Job};
use crate::exports::{self, Context, Params, Spec};
use crate::scope::Capability;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/forms/{form_id}/export", web::get().to(direct))
        .service(
            web::resource("/exports")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .route("/exports/{id}", web::get().to(status))
        .route("/exports/{id}/download", web::get().to(download));
}

/// The purpose stated for sensitive values, if any; stating one needs the right to read them.
fn purpose(
    req: &HttpRequest,
    user: &ApiUser,
    given: Option<String>,
) -> Result<Option<String>, AppError> {
    let stated = given.is_some() || req.headers().contains_key("x-purpose");
    if !stated {
        return Ok(None);
    }
    user.require(Capability::ReadSensitive)?;
    super::submissions::stated_purpose(req, given).map(Some)
}

fn access(user: &ApiUser, spec: &Spec, subject: String) -> Option<Access> {
    spec.purpose.as_ref().map(|purpose| Access {
        user_id: user.id,
        username: user.username.clone(),
        action: "export",
        subject,
        purpose: purpose.clone(),
    })
}

fn send_file(
    req: &HttpRequest,
    file: std::fs::File,
    spec: &Spec,
) -> Result<HttpResponse, AppError> {
    let name = spec.file_name();
    let mime: mime::Mime = spec
        .format
        .content_type()
        .parse()
        .unwrap_or(mime::APPLICATION_OCTET_STREAM);
    let file = NamedFile::from_file(file, &name)?
        .set_content_type(mime)
        .set_content_disposition(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(name)],
        });
    Ok(file.into_response(req))
}

/// A small export, written and sent in one request.
async fn direct(
    req: HttpRequest,
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<Params>,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::Export)?;
    let mut params = query.into_inner();
    let purpose = purpose(&req, &user, params.purpose.take())?;
    let spec = Spec::from_params(path.into_inner(), params, purpose)?;
    let reader = user.clone();
    let s = spec.clone();
    let (layout, selection, count) = state
        .db
        .read(move |conn| {
            let scope = reader.scope(conn)?;
            let layout = exports::layout(conn, &s)?;
            let selection = s.selection(scope.visibility());
            let count = exports::rows::count(conn, &selection)?;
            Ok((layout, selection, count))
        })
        .await?;
    let limit = state.config.export_direct_max;
    if count > limit {
        return Err(AppError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "export_too_large",
            format!("this export holds {count} submissions, more than the {limit} answered at once: run it as a job with POST /api/v1/exports"),
        ));
    }
    if let Some(a) = access(
        &user,
        &spec,
        format!("{} ({count} submissions)", spec.form_id),
    ) {
        state
            .db
            .write(move |conn| access_log::record(conn, &a, crate::users::now()))
            .await?;
    }
    let tmp = state.blobs.temp_file()?;
    let ctx = Context::of(&state);
    exports::produce(&ctx, &spec, layout, selection, tmp.path(), |_| async {
        Ok(true)
    })
    .await?;
    // The open file stays readable after its name is removed with the temporary file.
    let file = std::fs::File::open(tmp.path())?;
    drop(tmp);
    send_file(&req, file, &spec)
}

/// An export job as the API shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = ExportJobView)]
pub(crate) struct JobView {
    #[serde(flatten)]
    job: Job,
    /// From 0 to 1.
    progress: f64,
    /// Where to fetch the file once the job is done; `null` until then.
    download: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExportJobs {
    exports: Vec<JobView>,
}

fn view(job: Job) -> JobView {
    let progress = match job.total {
        Some(t) if t > 0 => (job.done as f64 / t as f64).min(1.0),
        _ if job.status == jobs::DONE => 1.0,
        _ => 0.0,
    };
    let download =
        (job.status == jobs::DONE).then(|| format!("/api/v1/exports/{}/download", job.id));
    JobView {
        job,
        progress,
        download,
    }
}

/// Starts an export job.
async fn create(
    req: HttpRequest,
    user: ApiUser,
    state: web::Data<AppState>,
    body: web::Json<Params>,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::Export)?;
    let mut params = body.into_inner();
    let purpose = purpose(&req, &user, params.purpose.take())?;
    let form = params.form.take().unwrap_or_default();
    let spec = Spec::from_params(form, params, purpose)?;
    let reader = user.clone();
    let s = spec.clone();
    let total = state
        .db
        .read(move |conn| {
            let scope = reader.scope(conn)?;
            exports::layout(conn, &s)?;
            exports::rows::count(conn, &s.selection(scope.visibility()))
        })
        .await?;
    let id = jobs::new_id();
    let log = access(&user, &spec, format!("{} (export {id})", spec.form_id));
    let user_id = user.id;
    let job = state
        .db
        .write(move |conn| {
            if let Some(a) = &log {
                access_log::record(conn, a, crate::users::now())?;
            }
            jobs::create(conn, &id, user_id, &spec, total)
        })
        .await?;
    state.export_wake.notify_one();
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/v1/exports/{}", job.id)))
        .json(view(job)))
}

async fn list(user: ApiUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    user.require(Capability::Export)?;
    let user_id = user.id;
    let list = state
        .db
        .read(move |conn| jobs::list(conn, user_id, 100))
        .await?;
    Ok(HttpResponse::Ok().json(ExportJobs {
        exports: list.into_iter().map(view).collect(),
    }))
}

async fn status(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::Export)?;
    let (id, user_id) = (path.into_inner(), user.id);
    let job = state
        .db
        .read(move |conn| jobs::get(conn, &id, user_id))
        .await?;
    Ok(HttpResponse::Ok().json(view(job)))
}

async fn download(
    req: HttpRequest,
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::Export)?;
    let (id, user_id) = (path.into_inner(), user.id);
    let job = state
        .db
        .read(move |conn| jobs::get(conn, &id, user_id))
        .await?;
    match job.status.as_str() {
        jobs::DONE => {}
        jobs::EXPIRED => {
            return Err(AppError::client(
                StatusCode::GONE,
                "export_expired",
                "this export's file was deleted after the retention time; run it again",
            ))
        }
        jobs::FAILED => {
            return Err(AppError::conflict(
                "export_failed",
                format!(
                    "this export failed: {}",
                    job.error.as_deref().unwrap_or("unknown error")
                ),
            ))
        }
        _ => {
            return Err(AppError::conflict(
                "export_not_ready",
                "this export is still being written; see its progress at /api/v1/exports/{id}",
            ))
        }
    }
    let file =
        std::fs::File::open(jobs::file_path(&state.config.data_dir, &job.id)).map_err(|_| {
            AppError::client(
                StatusCode::GONE,
                "export_expired",
                "this export's file is gone; run it again",
            )
        })?;
    send_file(&req, file, &job.spec()?)
}
