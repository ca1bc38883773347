//! Collectors in the field: their hamlets, and the QR code that configures their phone.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::users::server_url;
use crate::auth::ApiUser;
use crate::error::AppError;
use crate::fieldwork;
use crate::state::AppState;
use crate::users;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/users/{username}/hamlets")
            .route(web::get().to(hamlets))
            .route(web::put().to(assign_hamlets)),
    )
    .route(
        "/users/{username}/collect-settings.json",
        web::get().to(settings_json),
    )
    .route(
        "/users/{username}/collect-settings.png",
        web::get().to(settings_png),
    );
}

#[derive(Deserialize, ToSchema)]
#[schema(as = HamletAssignment)]
pub(crate) struct Assignment {
    hamlet_codes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Hamlets {
    hamlet_codes: Vec<String>,
    /// No hamlet assigned: the collector chooses among every hamlet.
    all_hamlets: bool,
    /// The hamlets the collector's phone offers, with their communes today.
    hamlets: Vec<fieldwork::HamletChoice>,
}

async fn hamlets_view(state: &AppState, username: String) -> Result<HttpResponse, AppError> {
    let today = crate::areas::today();
    let (codes, choices) = state
        .db
        .read(move |conn| {
            let target = users::get(conn, &username)?;
            let codes = fieldwork::assigned_codes(conn, target.id)?;
            let choices = fieldwork::hamlet_choices(conn, target.id, today)?;
            Ok((codes, choices))
        })
        .await?;
    Ok(HttpResponse::Ok().json(Hamlets {
        all_hamlets: codes.is_empty(),
        hamlet_codes: codes,
        hamlets: choices,
    }))
}

async fn hamlets(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    hamlets_view(&state, path.into_inner()).await
}

async fn assign_hamlets(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Assignment>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let username = path.into_inner();
    let codes = body.into_inner().hamlet_codes;
    let u = username.clone();
    state
        .db
        .write(move |conn| {
            let target = users::get(conn, &u)?;
            fieldwork::assign(conn, target.id, &codes)
        })
        .await?;
    hamlets_view(&state, username).await
}

/// The settings JSON for the collector, with their app key (created if they have none).
async fn settings(
    req: &HttpRequest,
    state: &AppState,
    username: String,
) -> Result<Vec<u8>, AppError> {
    let secret = state.secrets.app_key_secret.clone();
    let today = crate::areas::today();
    let (key, choices) = state
        .db
        .write(move |conn| {
            let target = users::get(conn, &username)?;
            let key = users::current_or_new_app_key(conn, &secret, target.id)?;
            let choices = fieldwork::hamlet_choices(conn, target.id, today)?;
            Ok((key, choices))
        })
        .await?;
    fieldwork::collect_settings(
        &server_url(req, state, &key),
        &fieldwork::project_name(&choices),
    )
}

async fn settings_json(
    req: HttpRequest,
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let json = settings(&req, &state, path.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("application/json")
        .body(json))
}

async fn settings_png(
    req: HttpRequest,
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let json = settings(&req, &state, path.into_inner()).await?;
    let png = web::block(move || fieldwork::qr_png(&fieldwork::qr_payload(&json)?)).await??;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("image/png")
        .body(png))
}
