//! `POST /api/v1/auth/token`: a user name and password for a short-lived access token, with the
//! sign-in rate limits; `POST /api/v1/auth/logout`: revoke every token of the caller at once.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{check_password, client_ip, token, ApiUser};
use crate::error::AppError;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/token", web::post().to(issue_token))
        .route("/auth/logout", web::post().to(logout));
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

async fn issue_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<Login>,
) -> Result<HttpResponse, AppError> {
    let Login { username, password } = body.into_inner();
    let ip = client_ip(&req, &state.config.trusted_proxies);
    let user = check_password(&state, &username, password, ip)
        .await?
        .ok_or_else(|| {
            AppError::client(
                actix_web::http::StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "wrong user name or password",
            )
        })?;
    let user_id = user.id;
    let gen = state
        .db
        .read(move |conn| token::generation(conn, user_id))
        .await?;
    let now = chrono::Utc::now().timestamp();
    let ttl = state.config.token_ttl;
    let claims = token::Claims {
        sub: user.id,
        username: user.username,
        role: user.role,
        iat: now,
        exp: now + ttl,
        gen,
    };
    let access_token = token::issue(&state.secrets.token_key, &claims)?;
    Ok(HttpResponse::Ok().json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl,
    })))
}

async fn logout(user: ApiUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let id = user.id;
    state
        .db
        .write(move |conn| token::revoke_all(conn, id))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "revoked": true })))
}
