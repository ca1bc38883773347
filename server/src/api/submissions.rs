//! Reading submissions: list with filters and a cursor, detail, raw XML, attachments.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use chrono::{DateTime, NaiveDateTime};
use serde::Deserialize;
use serde_json::json;

use crate::access_log::{self, Access};
use crate::auth::ApiUser;
use crate::error::AppError;
use crate::openrosa::serve_blob;
use crate::state::AppState;
use crate::submissions::{self, Filter};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/submissions", web::get().to(list))
        .route("/submissions/{instance_id}", web::get().to(detail))
        .route("/submissions/{instance_id}/xml", web::get().to(raw_xml))
        .route(
            "/submissions/{instance_id}/attachments/{name}",
            web::get().to(attachment),
        )
        .route(
            "/submissions/{instance_id}/sensitive",
            web::get().to(sensitive_values),
        )
        .route("/access-log", web::get().to(access_log_list));
}

#[derive(Deserialize)]
struct ListQuery {
    form: Option<String>,
    version: Option<String>,
    collector: Option<String>,
    /// RFC 3339 time; submissions first received at or after it.
    since: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

fn encode_cursor(id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("s{id}"))
}

fn decode_cursor(cursor: &str) -> Result<i64, AppError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix('s').and_then(|n| n.parse().ok()))
        .ok_or_else(|| {
            AppError::bad_request("bad_cursor", "the cursor is not one this API gave out")
        })
}

fn parse_since(s: &str) -> Result<NaiveDateTime, AppError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.naive_utc())
        .map_err(|_| {
            AppError::bad_request(
                "bad_since",
                "`since` must be an RFC 3339 time such as 2025-07-01T00:00:00Z",
            )
        })
}

async fn list(
    user: ApiUser,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::bad_request(
            "bad_limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let filter = Filter {
        form_id: q.form,
        form_version: q.version,
        collector: q.collector,
        received_since: q.since.as_deref().map(parse_since).transpose()?,
        after_id: q.cursor.as_deref().map(decode_cursor).transpose()?,
        limit,
    };
    let rows = state
        .db
        .read(move |conn| submissions::list(conn, &filter))
        .await?;
    let next = if rows.len() as i64 == limit {
        rows.last().map(|r| encode_cursor(r.id))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(json!({ "submissions": rows, "next_cursor": next })))
}

async fn detail(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = path.into_inner();
    let d = state
        .db
        .read(move |conn| submissions::detail(conn, &id))
        .await?;
    Ok(HttpResponse::Ok().json(d))
}

#[derive(Deserialize)]
struct XmlQuery {
    /// instanceID of an earlier version; the current version by default.
    version: Option<String>,
    /// Why the caller reads protected data (or the `X-Purpose` header); required when the XML
    /// is sealed, and written to the access log.
    purpose: Option<String>,
}

/// The raw XML as received. A sealed XML (a form marked sensitive) is opened only for a caller
/// who states a purpose, and only after the read is durably in the access log.
async fn raw_xml(
    req: HttpRequest,
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<XmlQuery>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = path.into_inner();
    let XmlQuery { version, purpose } = query.into_inner();
    let lookup = id.clone();
    let (version_id, bytes) = state
        .db
        .read(move |conn| submissions::xml(conn, &lookup, version.as_deref()))
        .await?;
    let bytes = if crate::crypto::is_sealed(&bytes) {
        let purpose = stated_purpose(&req, purpose)?;
        let plain = state
            .data_keys
            .open(&bytes, &crate::crypto::xml_context(&version_id))?;
        let access = Access {
            user_id: user.id,
            username: user.username.clone(),
            action: "submission_xml",
            subject: version_id,
            purpose,
        };
        state
            .db
            .write(move |conn| access_log::record(conn, &access, crate::users::now()))
            .await?;
        plain
    } else {
        bytes
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/xml; charset=utf-8"))
        .body(bytes))
}

fn stated_purpose(req: &HttpRequest, query: Option<String>) -> Result<String, AppError> {
    let purpose = query.or_else(|| {
        req.headers()
            .get("x-purpose")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    access_log::validate_purpose(purpose.as_deref())
}

/// The values of the sensitive fields (`sensitive_fields` in the detail), opened for a caller
/// who states a purpose, after the read is durably in the access log.
async fn sensitive_values(
    req: HttpRequest,
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<XmlQuery>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = path.into_inner();
    let XmlQuery { version, purpose } = query.into_inner();
    let purpose = stated_purpose(&req, purpose)?;
    let (version_id, stored) = state
        .db
        .read(move |conn| submissions::sensitive_values(conn, &id, version.as_deref()))
        .await?;
    let values = match &stored {
        Some(s) => crate::sensitive::open(&state.data_keys, s, &version_id)?,
        None => serde_json::Value::Object(Default::default()),
    };
    let access = Access {
        user_id: user.id,
        username: user.username.clone(),
        action: "sensitive_fields",
        subject: version_id.clone(),
        purpose,
    };
    state
        .db
        .write(move |conn| access_log::record(conn, &access, crate::users::now()))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "instance_id": version_id, "values": values })))
}

#[derive(Deserialize)]
struct AccessLogQuery {
    /// The `id` of the last entry seen; entries after it are returned.
    after: Option<i64>,
    limit: Option<i64>,
}

/// Who read which protected data, when, and why: oldest first, paged by `after`.
async fn access_log_list(
    user: ApiUser,
    state: web::Data<AppState>,
    query: web::Query<AccessLogQuery>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::bad_request(
            "bad_limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let after = q.after.unwrap_or(0);
    let entries = state
        .db
        .read(move |conn| access_log::list(conn, after, limit))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "entries": entries })))
}

async fn attachment(
    req: HttpRequest,
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let (id, name) = path.into_inner();
    let n = name.clone();
    let (sha, content_type) = state
        .db
        .read(move |conn| submissions::attachment(conn, &id, &n))
        .await?;
    serve_blob(&req, &state, &sha, &content_type, &name).await
}
