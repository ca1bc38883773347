//! `POST /api/v1/auth/token`: a user name and password for a short-lived access token.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{check_password, token};
use crate::error::AppError;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/token", web::post().to(issue_token));
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

async fn issue_token(
    state: web::Data<AppState>,
    body: web::Json<Login>,
) -> Result<HttpResponse, AppError> {
    let Login { username, password } = body.into_inner();
    let user = check_password(&state, username, password)
        .await?
        .ok_or_else(|| {
            AppError::client(
                actix_web::http::StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "wrong user name or password",
            )
        })?;
    let now = chrono::Utc::now().timestamp();
    let ttl = state.config.token_ttl;
    let claims = token::Claims {
        sub: user.id,
        username: user.username,
        role: user.role,
        iat: now,
        exp: now + ttl,
    };
    let access_token = token::issue(&state.secrets.token_key, &claims)?;
    Ok(HttpResponse::Ok().json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl,
    })))
}
