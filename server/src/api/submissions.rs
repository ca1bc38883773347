//! Submissions: list with filters and a cursor, detail, raw XML, attachments and their photo
//! copies, review (one or in bulk) and comments. Which submissions a caller sees is decided
//! by [`crate::scope`].

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use chrono::{DateTime, NaiveDateTime};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access_log::{self, Access};
use crate::auth::ApiUser;
use crate::error::AppError;
use crate::openrosa::serve_blob;
use crate::photos::{self, Size};
use crate::review::{self, BulkFilter, Decision, Selection};
use crate::scope::{self, Capability, Scope};
use crate::state::AppState;
use crate::submissions::{self, Filter};
use crate::{changes, deletion};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/submissions", web::get().to(list))
        .route("/submissions/review", web::post().to(review_bulk))
        .service(
            web::resource("/submissions/{instance_id}")
                .route(web::get().to(detail))
                .route(web::delete().to(delete)),
        )
        .route(
            "/submissions/{instance_id}/review",
            web::post().to(review_one),
        )
        .service(
            web::resource("/submissions/{instance_id}/comments")
                .route(web::get().to(comments))
                .route(web::post().to(add_comment)),
        )
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
    /// Current review state.
    state: Option<String>,
    /// An area code the submissions lie in (hamlet, commune, district or province).
    area: Option<String>,
    /// A flag the current version carries.
    flag: Option<String>,
    /// RFC 3339 time; submissions first received at or after it.
    since: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
    /// Incremental pull: the changes after this cursor (empty: from the beginning).
    updated_since: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SubmissionList {
    submissions: Vec<submissions::Summary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// A page of the change feed (`?updated_since=`).
#[derive(Serialize, ToSchema)]
pub(crate) struct ChangeFeed {
    changes: Vec<changes::Change>,
    /// Pass as `updated_since` next time: after the last change returned, or the cursor given
    /// when there is nothing new yet.
    next_cursor: String,
    /// Whether more changes are ready now (the page was full).
    more: bool,
}

/// A submission with its review state and history.
#[derive(Serialize, ToSchema)]
pub(crate) struct SubmissionView {
    #[serde(flatten)]
    detail: submissions::Detail,
    /// The latest review; `null` if never reviewed.
    review: Option<review::ReviewEvent>,
    reviews: Vec<review::ReviewEvent>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Deletion {
    deleted: deletion::Deleted,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SensitiveValues {
    /// The version the values belong to.
    instance_id: String,
    /// Field path → value.
    #[schema(value_type = Object)]
    values: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AccessLogPage {
    entries: Vec<access_log::Entry>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BulkReviewed {
    /// Submissions the selection covers whose state differs from the decision.
    count: i64,
    dry_run: bool,
    /// Whether anything was changed (false for a dry run).
    applied: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Comments {
    comments: Vec<review::Comment>,
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
    user.require(Capability::ReadSubmissions)?;
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::bad_request(
            "bad_limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    if let Some(s) = &q.state {
        if review::State::parse(s).is_none() {
            return Err(AppError::bad_request(
                "bad_state",
                format!("unknown review state '{s}'"),
            ));
        }
    }
    if let Some(after) = &q.updated_since {
        let filtered = q.form.is_some()
            || q.version.is_some()
            || q.collector.is_some()
            || q.state.is_some()
            || q.area.is_some()
            || q.flag.is_some()
            || q.since.is_some()
            || q.cursor.is_some();
        if filtered {
            return Err(AppError::bad_request(
                "bad_query",
                "updated_since takes only limit: the feed has every change you may see, in order",
            ));
        }
        let after = changes::Cursor::parse(after)?;
        let page = state
            .db
            .read(move |conn| {
                let scope = user.scope(conn)?;
                scope.require(Capability::ReadSubmissions)?;
                changes::feed(conn, &scope.visibility(), after, limit)
            })
            .await?;
        return Ok(HttpResponse::Ok().json(ChangeFeed {
            changes: page.changes,
            next_cursor: page.next_cursor.encode(),
            more: page.more,
        }));
    }
    let received_since = q.since.as_deref().map(parse_since).transpose()?;
    let cursor_id = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let rows = state
        .db
        .read(move |conn| {
            let scope = user.scope(conn)?;
            let mut filter = Filter::new(scope.visibility(), limit);
            filter.form_id = q.form;
            filter.form_version = q.version;
            filter.collector = q.collector;
            filter.state = q.state;
            filter.area = q.area;
            filter.flag = q.flag;
            filter.received_since = received_since;
            filter.cursor_id = cursor_id;
            submissions::list(conn, &filter)
        })
        .await?;
    let next = if rows.len() as i64 == limit {
        rows.last().map(|r| encode_cursor(r.id))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(SubmissionList {
        submissions: rows,
        next_cursor: next,
    }))
}

/// The submission's row id if the scope may read it; 404 otherwise.
pub(crate) fn visible_id(
    conn: &mut crate::db::Conn<'_>,
    scope: &Scope,
    instance_id: &str,
) -> Result<i64, AppError> {
    scope.require(Capability::ReadSubmissions)?;
    let id = submissions::submission_of(conn, instance_id).map_err(|_| scope::not_visible())?;
    scope::ensure_visible(conn, scope, id)?;
    Ok(id)
}

async fn detail(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let (d, reviews) = state
        .db
        .read(move |conn| {
            let scope = user.scope(conn)?;
            let sid = visible_id(conn, &scope, &id)?;
            Ok((submissions::detail(conn, &id)?, review::history(conn, sid)?))
        })
        .await?;
    Ok(HttpResponse::Ok().json(SubmissionView {
        detail: d,
        review: reviews.last().cloned(),
        reviews,
    }))
}

/// Deletes a submission with all its versions and files (administrators); the deletion is
/// audited and appears in the change feed.
async fn delete(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = path.into_inner();
    let indicators = state.indicators.clone();
    let actor = crate::audit::Actor {
        id: user.id,
        username: user.username.clone(),
    };
    let deleted = state
        .db
        .write(move |conn| deletion::delete(conn, &indicators, &actor, &id))
        .await?;
    let files = deleted.files.clone();
    if let Err(e) = deletion::remove_unreferenced(&state.db, &state.blobs, files).await {
        // The rows are gone; a file left behind is found by `fieldtally fsck --repair`.
        tracing::warn!(error = %e, "files of a deleted submission were not removed");
    }
    Ok(HttpResponse::Ok().json(Deletion { deleted }))
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
    let id = path.into_inner();
    let XmlQuery { version, purpose } = query.into_inner();
    let reader = user.clone();
    let (version_id, bytes) = state
        .db
        .read(move |conn| {
            let scope = reader.scope(conn)?;
            visible_id(conn, &scope, &id)?;
            submissions::xml(conn, &id, version.as_deref())
        })
        .await?;
    let bytes = if crate::crypto::is_sealed(&bytes) {
        user.require(Capability::ReadSensitive)?;
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

pub(crate) fn stated_purpose(req: &HttpRequest, query: Option<String>) -> Result<String, AppError> {
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
    user.require(Capability::ReadSensitive)?;
    let id = path.into_inner();
    let XmlQuery { version, purpose } = query.into_inner();
    let purpose = stated_purpose(&req, purpose)?;
    let reader = user.clone();
    let (version_id, stored) = state
        .db
        .read(move |conn| {
            let scope = reader.scope(conn)?;
            visible_id(conn, &scope, &id)?;
            submissions::sensitive_values(conn, &id, version.as_deref())
        })
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
    Ok(HttpResponse::Ok().json(SensitiveValues {
        instance_id: version_id,
        values,
    }))
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
    user.require(Capability::ReadAudit)?;
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
    Ok(HttpResponse::Ok().json(AccessLogPage { entries }))
}

#[derive(Deserialize)]
pub(crate) struct SizeQuery {
    /// `thumb` or `review` for a photo's smaller copy; the stored file by default.
    pub size: Option<String>,
}

async fn attachment(
    req: HttpRequest,
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<SizeQuery>,
) -> Result<HttpResponse, AppError> {
    let (id, name) = path.into_inner();
    let scope = state.db.read(move |conn| user.scope(conn)).await?;
    send_attachment(&req, &state, scope, id, name, query.into_inner().size).await
}

/// Sends an attachment of a submission the scope may see: the stored file with a safe content
/// type, or a photo's thumbnail or review-size copy, made on first request and cached.
pub(crate) async fn send_attachment(
    req: &HttpRequest,
    state: &AppState,
    scope: Scope,
    id: String,
    name: String,
    size: Option<String>,
) -> Result<HttpResponse, AppError> {
    let size = size
        .map(|s| {
            Size::parse(&s)
                .ok_or_else(|| AppError::bad_request("bad_size", "size must be thumb or review"))
        })
        .transpose()?;
    let n = name.clone();
    let (sha, claimed) = state
        .db
        .read(move |conn| {
            visible_id(conn, &scope, &id)?;
            submissions::attachment(conn, &id, &n)
        })
        .await?;
    let blobs = state.blobs.clone();
    match size {
        None => {
            let original = blobs.path(&sha);
            let content_type = web::block(move || -> Result<&'static str, AppError> {
                let mut head = [0u8; 16];
                let n = std::io::Read::read(&mut std::fs::File::open(original)?, &mut head)?;
                Ok(photos::safe_content_type(&claimed, &head[..n]))
            })
            .await??;
            serve_blob(req, state, &sha, content_type, &name).await
        }
        Some(size) => {
            let path = web::block(move || -> Result<std::path::PathBuf, AppError> {
                let cached = blobs.derived_path(&sha, size.as_str());
                if cached.is_file() {
                    return Ok(cached);
                }
                let bytes = std::fs::read(blobs.path(&sha))?;
                let copy = photos::derive(&bytes, size)?;
                Ok(blobs.put_derived(&sha, size.as_str(), &copy)?)
            })
            .await??;
            let stem = name.rsplit_once('.').map(|(s, _)| s).unwrap_or(&name);
            let file = actix_files::NamedFile::open_async(path)
                .await?
                .set_content_type(mime::IMAGE_JPEG)
                .set_content_disposition(header::ContentDisposition {
                    disposition: header::DispositionType::Inline,
                    parameters: vec![header::DispositionParam::Filename(format!(
                        "{stem}-{}.jpg",
                        size.as_str()
                    ))],
                });
            let mut response = file.into_response(req);
            let headers = response.headers_mut();
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                header::HeaderValue::from_static("nosniff"),
            );
            headers.insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("private, max-age=86400"),
            );
            Ok(response)
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[schema(as = ReviewDecision)]
pub(crate) struct ReviewBody {
    /// `approved`, `rejected` or `has_issues` (the last two need a comment).
    state: String,
    comment: Option<String>,
}

async fn review_one(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ReviewBody>,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::Review)?;
    let id = path.into_inner();
    let body = body.into_inner();
    let decision = Decision::new(&body.state, body.comment.as_deref())?;
    let indicators = state.indicators.clone();
    let done = state
        .db
        .write(move |conn| {
            let scope = user.scope(conn)?;
            review::review_one(conn, &indicators, &scope, &id, &decision)
        })
        .await?;
    Ok(HttpResponse::Ok().json(done))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BulkReview)]
pub(crate) struct BulkBody {
    /// `approved`, `rejected` or `has_issues` (the last two need a comment).
    state: String,
    comment: Option<String>,
    /// instanceIDs to review.
    ids: Option<Vec<String>>,
    /// Or every visible submission matching this filter.
    filter: Option<BulkFilter>,
    /// Only count what would change.
    #[serde(default)]
    dry_run: bool,
    /// The count the reviewer confirmed (from a dry run): the change is refused if it differs.
    expected_count: Option<i64>,
}

async fn review_bulk(
    user: ApiUser,
    state: web::Data<AppState>,
    body: web::Json<BulkBody>,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::Review)?;
    let body = body.into_inner();
    let decision = Decision::new(&body.state, body.comment.as_deref())?;
    let selection = match (body.ids, body.filter) {
        (Some(ids), None) => Selection::Ids(ids),
        (None, Some(f)) => Selection::Filter(f),
        _ => {
            return Err(AppError::bad_request(
                "bad_selection",
                "give either `ids` (a list of instanceIDs) or `filter`, not both",
            ))
        }
    };
    let (dry_run, expected) = (body.dry_run, body.expected_count);
    let indicators = state.indicators.clone();
    let outcome = if dry_run {
        state
            .db
            .read(move |conn| {
                let scope = user.scope(conn)?;
                review::review_bulk(
                    conn,
                    &indicators,
                    &scope,
                    &selection,
                    &decision,
                    true,
                    expected,
                )
            })
            .await?
    } else {
        state
            .db
            .write(move |conn| {
                let scope = user.scope(conn)?;
                review::review_bulk(
                    conn,
                    &indicators,
                    &scope,
                    &selection,
                    &decision,
                    false,
                    expected,
                )
            })
            .await?
    };
    Ok(HttpResponse::Ok().json(BulkReviewed {
        count: outcome.count,
        dry_run,
        applied: outcome.applied,
    }))
}

async fn comments(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let list = state
        .db
        .read(move |conn| {
            let scope = user.scope(conn)?;
            review::comments(conn, &scope, &id)
        })
        .await?;
    Ok(HttpResponse::Ok().json(Comments { comments: list }))
}

#[derive(Deserialize, ToSchema)]
#[schema(as = NewComment)]
pub(crate) struct CommentBody {
    /// The comment (also accepted as `comment`).
    #[serde(alias = "comment")]
    body: String,
}

async fn add_comment(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<CommentBody>,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::Comment)?;
    let id = path.into_inner();
    let text = body.into_inner().body;
    let comment = state
        .db
        .write(move |conn| {
            let scope = user.scope(conn)?;
            review::add_comment(conn, &scope, &id, &text)
        })
        .await?;
    Ok(HttpResponse::Created().json(comment))
}
