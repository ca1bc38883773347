//! `POST /api/v1/auth/token`: a user name and password, or an API key, for a short-lived access
//! token, with the sign-in rate limits; `POST /api/v1/auth/logout`: revoke every token of the
//! caller at once; the signing keys and their rotation (administrators).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::audit::Actor;
use crate::auth::{check_password, client_ip, key_holder, signing, token, ApiUser};
use crate::error::AppError;
use crate::scope::KeyScope;
use crate::state::AppState;
use crate::users::User;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/token", web::post().to(issue_token))
        .route("/auth/logout", web::post().to(logout))
        .route("/auth/signing-keys", web::get().to(signing_keys))
        .route("/auth/signing-keys/rotate", web::post().to(rotate));
}

/// A user name and password, or an API key.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Login {
    Password { username: String, password: String },
    ApiKey { api_key: String },
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TokenResponse {
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds the token is valid for.
    expires_in: i64,
    /// The key's scopes, space-separated (tokens exchanged for an API key only).
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Revoked {
    pub(super) revoked: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SigningKeys {
    signing_keys: Vec<signing::KeyInfo>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Rotated {
    /// The new signing key's id.
    kid: String,
}

async fn issue_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<Login>,
) -> Result<HttpResponse, AppError> {
    let now = chrono::Utc::now().timestamp();
    let mut ttl = state.config.token_ttl;
    let (user, key): (User, Option<(i64, Vec<KeyScope>)>) = match body.into_inner() {
        Login::Password { username, password } => {
            let ip = client_ip(&req, &state.config.trusted_proxies);
            let user = check_password(&state, &username, password, ip)
                .await?
                .ok_or_else(|| {
                    AppError::client(
                        StatusCode::UNAUTHORIZED,
                        "bad_credentials",
                        "wrong user name or password",
                    )
                })?;
            (user, None)
        }
        Login::ApiKey { api_key } => {
            let holder = key_holder(&state, api_key.trim()).await?;
            // A token never outlives the key it was exchanged for.
            if let Some(expires) = holder.expires_at {
                ttl = ttl.min(expires.and_utc().timestamp() - now).max(1);
            }
            (holder.user, Some((holder.key_id, holder.scopes)))
        }
    };
    let user_id = user.id;
    let (gen, signing_key) = state
        .db
        .read(move |conn| Ok((token::generation(conn, user_id)?, signing::current(conn)?)))
        .await?;
    let signing_key =
        signing_key.ok_or_else(|| AppError::internal("there is no token signing key"))?;
    let claims = token::Claims {
        sub: user.id,
        username: user.username,
        role: user.role,
        iat: now,
        exp: now + ttl,
        gen,
        key: key.as_ref().map(|(id, _)| *id),
    };
    let access_token = token::issue(&signing_key, &claims)?;
    Ok(HttpResponse::Ok().json(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        scope: key.map(|(_, scopes)| KeyScope::join(&scopes)),
    }))
}

async fn logout(user: ApiUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let id = user.id;
    state
        .db
        .write(move |conn| token::revoke_all(conn, id))
        .await?;
    Ok(HttpResponse::Ok().json(Revoked { revoked: true }))
}

/// The signing keys' ids and dates (never their secrets).
async fn signing_keys(user: ApiUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let keys = state.db.read(signing::list).await?;
    Ok(HttpResponse::Ok().json(SigningKeys { signing_keys: keys }))
}

/// A new key signs new tokens; tokens signed with the previous keys stay valid until they
/// expire. Keys retired longer ago than the token lifetime are deleted.
async fn rotate(user: ApiUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let keep = state.config.token_ttl + 60;
    let actor = Actor {
        id: user.id,
        username: user.username.clone(),
    };
    let kid = state
        .db
        .write(move |conn| {
            let kid = signing::rotate(conn, keep)?;
            crate::audit::record(conn, &actor, "signing_key.rotated", Some(&kid), json!({}))?;
            Ok(kid)
        })
        .await?;
    Ok(HttpResponse::Ok().json(Rotated { kid }))
}
