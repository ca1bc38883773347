//! API keys of service accounts (administrators): `GET/POST /api/v1/api-keys`,
//! `DELETE /api/v1/api-keys/{id}` to revoke.

use actix_web::{web, HttpResponse};
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::Actor;
use crate::auth::api_keys::{self, KeyView, NewKey};
use crate::auth::ApiUser;
use crate::error::AppError;
use crate::scope::KeyScope;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api-keys")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .route("/api-keys/{id}", web::delete().to(revoke));
}

fn actor(user: &ApiUser) -> Actor {
    Actor {
        id: user.id,
        username: user.username.clone(),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ApiKeys {
    api_keys: Vec<KeyView>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedKey {
    /// The key itself (`ftk_…`), shown this once: it is stored as a hash.
    key: String,
    api_key: KeyView,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RevokedKey {
    api_key: KeyView,
}

async fn list(user: ApiUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let keys = state.db.read(api_keys::list).await?;
    Ok(HttpResponse::Ok().json(ApiKeys { api_keys: keys }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewApiKey)]
pub(crate) struct CreateBody {
    /// The account the key acts as (usually an `api_client` service account).
    username: String,
    /// What uses the key, e.g. "DHIS2 nightly pull".
    name: String,
    /// Any of `read_indicators`, `read_submissions`, `read_sensitive`, `export`, `administer`.
    scopes: Vec<String>,
    /// RFC 3339; the key never expires without it.
    expires_at: Option<String>,
}

async fn create(
    user: ApiUser,
    state: web::Data<AppState>,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let body = body.into_inner();
    let scopes = KeyScope::parse_list(&body.scopes.join(" "))?;
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.naive_utc())
                .map_err(|_| {
                    AppError::bad_request(
                        "bad_expiry",
                        "expires_at must be an RFC 3339 time such as 2026-12-31T00:00:00Z",
                    )
                })
        })
        .transpose()?;
    let new = NewKey {
        username: body.username,
        name: body.name,
        scopes,
        expires_at,
    };
    let actor = actor(&user);
    let (key, view) = state
        .db
        .write(move |conn| api_keys::create(conn, &actor, &new))
        .await?;
    // The only time the key is shown: it is stored as a hash.
    Ok(HttpResponse::Created().json(CreatedKey { key, api_key: view }))
}

async fn revoke(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = path.into_inner();
    let actor = actor(&user);
    let view = state
        .db
        .write(move |conn| api_keys::revoke(conn, &actor, id))
        .await?;
    Ok(HttpResponse::Ok().json(RevokedKey { api_key: view }))
}
