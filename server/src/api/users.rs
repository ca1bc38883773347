//! User administration: create users, issue and revoke app keys, assign forms.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::auth::ApiUser;
use crate::error::AppError;
use crate::state::AppState;
use crate::users::{self, NewUser, Role, UserView};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/users")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/users/{username}/app-key")
            .route(web::post().to(create_app_key))
            .route(web::delete().to(revoke_app_key)),
    )
    .route(
        "/users/{username}/revoke-tokens",
        web::post().to(revoke_tokens),
    )
    .service(
        web::resource("/users/{username}/forms")
            .route(web::get().to(assigned_forms))
            .route(web::put().to(assign_forms)),
    );
}

#[derive(Deserialize)]
struct CreateUser {
    username: String,
    password: String,
    role: String,
}

async fn create(
    user: ApiUser,
    state: web::Data<AppState>,
    body: web::Json<CreateUser>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let body = body.into_inner();
    let role = Role::parse(&body.role)?;
    let new = web::block(move || NewUser::prepare(&body.username, &body.password, role)).await??;
    let created = state
        .db
        .write(move |conn| users::create(conn, &new))
        .await?;
    Ok(HttpResponse::Created().json(UserView::from(&created)))
}

async fn list(user: ApiUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let all = state.db.read(users::list).await?;
    Ok(HttpResponse::Ok().json(all.iter().map(UserView::from).collect::<Vec<_>>()))
}

/// The server URL to give Collect for a key: this server's public URL and `/key/{key}`.
pub(super) fn server_url(req: &HttpRequest, state: &AppState, key: &str) -> String {
    format!("{}/key/{key}", crate::openrosa::public_root(req, state))
}

async fn create_app_key(
    req: HttpRequest,
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let username = path.into_inner();
    let secret = state.secrets.app_key_secret.clone();
    let key = state
        .db
        .write(move |conn| {
            let target = users::get(conn, &username)?;
            users::create_app_key(conn, &secret, target.id)
        })
        .await?;
    Ok(HttpResponse::Created().json(json!({
        "key": key,
        "server_url": server_url(&req, &state, &key),
    })))
}

async fn revoke_app_key(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let username = path.into_inner();
    let revoked = state
        .db
        .write(move |conn| {
            let target = users::get(conn, &username)?;
            users::revoke_app_keys(conn, target.id)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "revoked": revoked })))
}

/// Revokes every access token of the user, on every instance, at once.
async fn revoke_tokens(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let username = path.into_inner();
    state
        .db
        .write(move |conn| {
            let target = users::get(conn, &username)?;
            crate::auth::token::revoke_all(conn, target.id)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "revoked": true })))
}

#[derive(Deserialize)]
struct Assignment {
    form_ids: Vec<String>,
}

async fn assign_forms(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Assignment>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let username = path.into_inner();
    let form_ids = body.into_inner().form_ids;
    let assigned = state
        .db
        .write(move |conn| {
            let target = users::get(conn, &username)?;
            users::assign_forms(conn, target.id, &form_ids)?;
            users::assigned_forms(conn, target.id)
        })
        .await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "form_ids": assigned, "all_open_forms": assigned.is_none() })))
}

async fn assigned_forms(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let username = path.into_inner();
    let assigned = state
        .db
        .read(move |conn| {
            let target = users::get(conn, &username)?;
            users::assigned_forms(conn, target.id)
        })
        .await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "form_ids": assigned, "all_open_forms": assigned.is_none() })))
}
