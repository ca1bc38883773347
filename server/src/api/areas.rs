//! The area registry: `GET /areas?on=DATE` (the tree valid that day) and `GET /areas/{code}`
//! (one area with its parents, children, predecessors and successors). Any signed-in user.

use actix_web::{web, HttpResponse};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::areas;
use crate::auth::ApiUser;
use crate::error::AppError;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/areas", web::get().to(tree))
        .route("/areas/{code}", web::get().to(detail));
}

#[derive(Deserialize)]
struct AreaQuery {
    /// YYYY-MM-DD.
    on: Option<String>,
    #[serde(default)]
    geometry: bool,
}

fn parse_on(on: Option<&str>) -> Result<Option<NaiveDate>, AppError> {
    on.map(|s| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
            AppError::bad_request(
                "bad_date",
                "`on` must be a date YYYY-MM-DD, e.g. 2025-03-01",
            )
        })
    })
    .transpose()
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AreaTree {
    /// The day the tree is valid on.
    on: NaiveDate,
    /// The roots (the province), each with its children.
    areas: Vec<areas::TreeNode>,
}

async fn tree(
    _user: ApiUser,
    state: web::Data<AppState>,
    query: web::Query<AreaQuery>,
) -> Result<HttpResponse, AppError> {
    let on = parse_on(query.on.as_deref())?.unwrap_or_else(areas::today);
    let roots = state.db.read(move |conn| areas::tree(conn, on)).await?;
    Ok(HttpResponse::Ok().json(AreaTree { on, areas: roots }))
}

async fn detail(
    _user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<AreaQuery>,
) -> Result<HttpResponse, AppError> {
    let code = path.into_inner();
    let on = parse_on(query.on.as_deref())?;
    let with_geometry = query.geometry;
    let d = state
        .db
        .read(move |conn| areas::detail(conn, &code, on, with_geometry))
        .await?;
    Ok(HttpResponse::Ok().json(d))
}
