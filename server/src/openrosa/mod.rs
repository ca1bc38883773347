//! The phone's side: the OpenRosa form list, form and media downloads, and submissions, served
//! both at the root (Digest/Basic) and under `/key/{key}` (an app key in the server URL).

mod submission;
pub mod xml;

use actix_files::NamedFile;
use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::auth::Collector;
use crate::error::{AppError, OpenRosaError};
use crate::fieldwork::{self, HAMLETS_CSV};
use crate::forms::{self, FormState, FormVersionInfo};
use crate::state::AppState;
use crate::users::{self, Role, User};

pub use submission::FormCache;

/// Registers the OpenRosa routes at the root and under `/key/{key}`.
pub fn routes(cfg: &mut web::ServiceConfig, max_submission_bytes: u64) {
    let headers = || {
        DefaultHeaders::new()
            .add(("X-OpenRosa-Version", "1.0"))
            .add((
                "X-OpenRosa-Accept-Content-Length",
                max_submission_bytes.to_string(),
            ))
    };
    cfg.service(
        web::scope("/key/{key}")
            .wrap(headers())
            .configure(endpoints),
    )
    .service(web::scope("").wrap(headers()).configure(endpoints));
}

fn endpoints(cfg: &mut web::ServiceConfig) {
    cfg.route("/formList", web::get().to(form_list))
        .route(
            "/forms/{form_id}/{version}/form.xml",
            web::get().to(form_xml),
        )
        .route(
            "/forms/{form_id}/{version}/manifest",
            web::get().to(manifest),
        )
        .route(
            "/forms/{form_id}/{version}/media/{filename}",
            web::get().to(media_file),
        )
        .route("/submission", web::head().to(submission::head))
        .route("/submission", web::get().to(submission::head))
        .route("/submission", web::post().to(submission::post));
}

/// This server's public URL: `--public-url`, or the request's scheme and host (honouring
/// `X-Forwarded-Proto` and `X-Forwarded-Host`).
pub fn public_root(req: &HttpRequest, state: &AppState) -> String {
    match &state.config.public_url {
        Some(u) => u.clone(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    }
}

/// The absolute URL phones use for this server, including `/key/{key}` when the request came
/// that way, so that every link keeps working for a phone configured with a key.
fn base_url(req: &HttpRequest, state: &AppState) -> String {
    let root = public_root(req, state);
    match req.match_info().get("key") {
        Some(key) => format!("{root}/key/{key}"),
        None => root,
    }
}

fn segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn version_url(base: &str, v: &FormVersionInfo) -> String {
    format!(
        "{base}/forms/{}/{}",
        segment(&v.form_id),
        segment(&v.version)
    )
}

/// The forms this user may fill, or `None` for every open form.
fn allowed_forms(
    conn: &mut crate::db::Conn<'_>,
    user: &User,
) -> Result<Option<Vec<String>>, AppError> {
    if user.role()? == Role::Admin {
        return Ok(None);
    }
    users::assigned_forms(conn, user.id)
}

fn may_use(allowed: &Option<Vec<String>>, form_id: &str) -> bool {
    allowed
        .as_ref()
        .is_none_or(|ids| ids.iter().any(|i| i == form_id))
}

// Path parameters by name: under `/key/{key}` the key is a parameter too, so a positional
// tuple would take the key for the form id.
#[derive(Deserialize)]
struct VersionPath {
    form_id: String,
    version: String,
}

#[derive(Deserialize)]
struct MediaPath {
    form_id: String,
    version: String,
    filename: String,
}

#[derive(Deserialize)]
struct FormListQuery {
    #[serde(rename = "formID")]
    form_id: Option<String>,
}

async fn form_list(
    req: HttpRequest,
    collector: Collector,
    state: web::Data<AppState>,
    query: web::Query<FormListQuery>,
) -> Result<HttpResponse, OpenRosaError> {
    let user = collector.user;
    let filter = query.into_inner().form_id;
    let (versions, with_media) = state
        .db
        .read(move |conn| {
            let allowed = allowed_forms(conn, &user)?;
            let versions = forms::open_for_phones(conn, allowed.as_deref(), filter.as_deref())?;
            let ids: Vec<i64> = versions.iter().map(|v| v.id).collect();
            let with_media = forms::with_media(conn, &ids)?;
            Ok((versions, with_media))
        })
        .await?;
    let base = base_url(&req, &state);
    let mut entries: Vec<xml::FormListEntry> = Vec::with_capacity(versions.len());
    for v in &versions {
        let url = version_url(&base, v);
        let has_media = with_media.contains(&v.id) || uses_hamlet_list(&state, v).await?;
        entries.push(xml::FormListEntry {
            form_id: v.form_id.clone(),
            name: v.title.clone(),
            version: v.version.clone(),
            hash: format!("md5:{}", v.md5),
            download_url: format!("{url}/form.xml"),
            manifest_url: has_media.then(|| format!("{url}/manifest")),
        });
    }
    Ok(xml::respond(
        &mut HttpResponse::Ok(),
        xml::form_list(&entries),
    ))
}

/// Finds a version the user may download: published (open or closed) and allowed.
async fn downloadable(
    state: &AppState,
    user: User,
    form_id: String,
    version: String,
) -> Result<FormVersionInfo, AppError> {
    state
        .db
        .read(move |conn| {
            let v = forms::get_version(conn, &form_id, &version)?;
            let allowed = allowed_forms(conn, &user)?;
            if v.state == FormState::Draft.as_str() || !may_use(&allowed, &form_id) {
                return Err(AppError::not_found(
                    "unknown_form_version",
                    format!("form '{form_id}' version '{version}' is not available to you"),
                ));
            }
            Ok(v)
        })
        .await
}

async fn form_xml(
    collector: Collector,
    state: web::Data<AppState>,
    path: web::Path<VersionPath>,
) -> Result<HttpResponse, OpenRosaError> {
    let VersionPath { form_id, version } = path.into_inner();
    let v = downloadable(&state, collector.user, form_id, version).await?;
    let id = v.id;
    let bytes = state.db.read(move |conn| forms::xml(conn, id)).await?;
    Ok(xml::respond(&mut HttpResponse::Ok(), bytes))
}

/// Whether the form picks the hamlet from `hamlets.csv`, which each collector gets made for
/// them (see `fieldwork.rs`).
async fn uses_hamlet_list(state: &AppState, v: &FormVersionInfo) -> Result<bool, AppError> {
    let def = submission::form_def(state, &v.form_id, &v.version).await?;
    Ok(def.media.iter().any(|m| m == HAMLETS_CSV))
}

/// The collector's own `hamlets.csv`: their hamlets as of today.
async fn hamlet_list(state: &AppState, user: &User) -> Result<Vec<u8>, AppError> {
    let user_id = user.id;
    let today = crate::areas::today();
    let choices = state
        .db
        .read(move |conn| fieldwork::hamlet_choices(conn, user_id, today))
        .await?;
    fieldwork::hamlets_csv(&choices)
}

async fn manifest(
    req: HttpRequest,
    collector: Collector,
    state: web::Data<AppState>,
    path: web::Path<VersionPath>,
) -> Result<HttpResponse, OpenRosaError> {
    let VersionPath { form_id, version } = path.into_inner();
    let v = downloadable(&state, collector.user.clone(), form_id, version).await?;
    let id = v.id;
    let media = state.db.read(move |conn| forms::media(conn, id)).await?;
    let url = version_url(&base_url(&req, &state), &v);
    let per_collector = uses_hamlet_list(&state, &v).await?;
    let mut entries: Vec<xml::ManifestEntry> = media
        .into_iter()
        // The collector's own list replaces any hamlets.csv attached to the version.
        .filter(|m| !(per_collector && m.filename == HAMLETS_CSV))
        .map(|m| xml::ManifestEntry {
            download_url: format!("{url}/media/{}", segment(&m.filename)),
            hash: format!("md5:{}", m.md5),
            filename: m.filename,
        })
        .collect();
    if per_collector {
        let csv = hamlet_list(&state, &collector.user).await?;
        entries.push(xml::ManifestEntry {
            download_url: format!("{url}/media/{HAMLETS_CSV}"),
            hash: format!("md5:{}", crate::auth::digest::md5_hex(&csv)),
            filename: HAMLETS_CSV.to_string(),
        });
    }
    Ok(xml::respond(
        &mut HttpResponse::Ok(),
        xml::manifest(&entries),
    ))
}

async fn media_file(
    req: HttpRequest,
    collector: Collector,
    state: web::Data<AppState>,
    path: web::Path<MediaPath>,
) -> Result<HttpResponse, OpenRosaError> {
    let MediaPath {
        form_id,
        version,
        filename,
    } = path.into_inner();
    let v = downloadable(&state, collector.user.clone(), form_id, version).await?;
    if filename == HAMLETS_CSV && uses_hamlet_list(&state, &v).await? {
        let csv = hamlet_list(&state, &collector.user).await?;
        return Ok(HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
            // Each collector gets their own list at this URL: no shared caches.
            .insert_header((header::CACHE_CONTROL, "no-cache, private"))
            .insert_header(ContentDisposition {
                disposition: DispositionType::Attachment,
                parameters: vec![DispositionParam::Filename(HAMLETS_CSV.to_string())],
            })
            .body(csv));
    }
    let id = v.id;
    let media = state.db.read(move |conn| forms::media(conn, id)).await?;
    let file = media
        .into_iter()
        .find(|m| m.filename == filename)
        .ok_or_else(|| {
            AppError::not_found(
                "unknown_media",
                format!("the form has no media file '{filename}'"),
            )
        })?;
    Ok(serve_blob(
        &req,
        &state,
        &file.sha256,
        &file.content_type,
        &file.filename,
    )
    .await?)
}

/// Streams a stored file as a download with a safe content type.
pub async fn serve_blob(
    req: &HttpRequest,
    state: &AppState,
    sha256: &str,
    content_type: &str,
    filename: &str,
) -> Result<HttpResponse, AppError> {
    let mime: mime::Mime = content_type
        .parse()
        .unwrap_or(mime::APPLICATION_OCTET_STREAM);
    let file = NamedFile::open_async(state.blobs.path(sha256))
        .await?
        .set_content_type(mime)
        .set_content_disposition(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(filename.to_string())],
        });
    let mut response = file.into_response(req);
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}
