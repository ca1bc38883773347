//! User administration: create users, issue and revoke app keys, assign forms.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::audit::{self, Actor};
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
    )
    .service(
        web::resource("/users/{username}/areas")
            .route(web::get().to(areas))
            .route(web::put().to(set_areas)),
    );
}

#[derive(Deserialize, ToSchema)]
#[schema(as = NewUser)]
pub(crate) struct CreateUser {
    username: String,
    password: String,
    /// `admin`, `province_officer`, `supervisor`, `collector` or `api_client`.
    role: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AppKey {
    key: String,
    /// The server URL to give ODK Collect: it carries the key.
    server_url: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RevokedAppKeys {
    /// How many app keys were revoked.
    revoked: usize,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AssignedForms {
    /// `null` when the collector may fill every open form.
    form_ids: Option<Vec<String>>,
    all_open_forms: bool,
}

impl AssignedForms {
    fn of(form_ids: Option<Vec<String>>) -> Self {
        let all_open_forms = form_ids.is_none();
        AssignedForms {
            form_ids,
            all_open_forms,
        }
    }
}

#[derive(Deserialize, Serialize, ToSchema)]
pub(crate) struct Areas {
    /// Commune codes (or district codes before July 2025).
    area_codes: Vec<String>,
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
    let actor = actor(&user);
    let created = state
        .db
        .write(move |conn| {
            let created = users::create(conn, &new)?;
            audit::record(
                conn,
                &actor,
                "user.create",
                Some(&created.username),
                json!({ "role": created.role }),
            )?;
            Ok(created)
        })
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
    let actor = actor(&user);
    let key = state
        .db
        .write(move |conn| {
            let target = users::get(conn, &username)?;
            let key = users::create_app_key(conn, &secret, target.id)?;
            audit::record(conn, &actor, "user.app_key", Some(&username), json!({}))?;
            Ok(key)
        })
        .await?;
    let server_url = server_url(&req, &state, &key);
    Ok(HttpResponse::Created().json(AppKey { key, server_url }))
}

async fn revoke_app_key(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let username = path.into_inner();
    let actor = actor(&user);
    let revoked = state
        .db
        .write(move |conn| {
            let target = users::get(conn, &username)?;
            let revoked = users::revoke_app_keys(conn, target.id)?;
            audit::record(
                conn,
                &actor,
                "user.app_key_revoke",
                Some(&username),
                json!({ "revoked": revoked }),
            )?;
            Ok(revoked)
        })
        .await?;
    Ok(HttpResponse::Ok().json(RevokedAppKeys { revoked }))
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
    Ok(HttpResponse::Ok().json(super::auth::Revoked { revoked: true }))
}

#[derive(Deserialize, ToSchema)]
#[schema(as = FormAssignment)]
pub(crate) struct Assignment {
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
    let actor = actor(&user);
    let assigned = state
        .db
        .write(move |conn| {
            let target = users::get(conn, &username)?;
            users::assign_forms(conn, target.id, &form_ids)?;
            audit::record(
                conn,
                &actor,
                "user.forms",
                Some(&username),
                json!({ "form_ids": form_ids }),
            )?;
            users::assigned_forms(conn, target.id)
        })
        .await?;
    Ok(HttpResponse::Ok().json(AssignedForms::of(assigned)))
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
    Ok(HttpResponse::Ok().json(AssignedForms::of(assigned)))
}

fn actor(user: &ApiUser) -> Actor {
    Actor {
        id: user.id,
        username: user.username.clone(),
    }
}

/// Sets the areas (commune codes, or district codes before July 2025) a supervisor covers.
async fn set_areas(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Areas>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let username = path.into_inner();
    let codes = body.into_inner().area_codes;
    let actor = actor(&user);
    let areas = state
        .db
        .write(move |conn| {
            let target = users::get(conn, &username)?;
            users::set_areas(conn, &target, &codes)?;
            let areas = users::areas(conn, target.id)?;
            audit::record(
                conn,
                &actor,
                "user.areas",
                Some(&username),
                json!({ "area_codes": areas }),
            )?;
            Ok(areas)
        })
        .await?;
    Ok(HttpResponse::Ok().json(Areas { area_codes: areas }))
}

async fn areas(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let username = path.into_inner();
    let areas = state
        .db
        .read(move |conn| {
            let target = users::get(conn, &username)?;
            users::areas(conn, target.id)
        })
        .await?;
    Ok(HttpResponse::Ok().json(Areas { area_codes: areas }))
}
