//! `GET /api/v1/audit`: the append-only audit log, oldest first, with a cursor.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::{self, Filter};
use crate::auth::ApiUser;
use crate::error::AppError;
use crate::scope::Capability;
use crate::state::AppState;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/audit", web::get().to(list));
}

#[derive(Deserialize)]
struct AuditQuery {
    action: Option<String>,
    /// What the entry is about, e.g. a submission's instanceID or a user name.
    target: Option<String>,
    actor: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<i64>,
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuditPage {
    entries: Vec<audit::Entry>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<i64>,
}

async fn list(
    user: ApiUser,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
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
    let filter = Filter {
        action: q.action,
        target: q.target,
        actor: q.actor,
        after_id: q.cursor,
        limit,
    };
    let entries = state
        .db
        .read(move |conn| audit::list(conn, &filter))
        .await?;
    let next = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(HttpResponse::Ok().json(AuditPage {
        entries,
        next_cursor: next,
    }))
}
