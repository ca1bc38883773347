//! Who is calling: collectors on the OpenRosa routes (Digest, Basic over https, or an app key in
//! the URL) and people or machines on the REST API (bearer access tokens).

pub mod digest;
pub mod password;
pub mod token;

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest};
use base64::Engine;
use futures_util::future::LocalBoxFuture;

use crate::error::{AppError, OpenRosaError};
use crate::scope::{Capability, Scope};
use crate::state::AppState;
use crate::users::{self, Role, User};

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, AppError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| AppError::internal("application state missing"))
}

/// A user authenticated on the OpenRosa routes.
pub struct Collector {
    pub user: User,
}

impl FromRequest for Collector {
    type Error = OpenRosaError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            let user = authenticate_collector(&req, &state).await?;
            if !Capability::Collect.allows(user.role()?) {
                return Err(AppError::forbidden(
                    "this account is a service account and cannot use ODK Collect",
                )
                .into());
            }
            Ok(Collector { user })
        })
    }
}

fn is_https(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

fn challenges(req: &HttpRequest, state: &AppState, stale: bool) -> AppError {
    let nonce = digest::make_nonce(&state.secrets.nonce_key, chrono::Utc::now().timestamp());
    let mut challenges = vec![digest::challenge(&nonce, stale)];
    // Collect ignores a Basic challenge over plain http, and credentials must not travel in the
    // clear, so Basic is offered only over https.
    if is_https(req) {
        challenges.push(format!(
            "Basic realm=\"{}\", charset=\"UTF-8\"",
            digest::REALM
        ));
    }
    AppError::Unauthorized { challenges }
}

async fn authenticate_collector(req: &HttpRequest, state: &AppState) -> Result<User, AppError> {
    if let Some(key) = req.match_info().get("key") {
        let key = key.to_string();
        let user = state
            .db
            .read(move |conn| users::find_by_app_key(conn, &key))
            .await?;
        // 403, not 401: a 401 would make Collect ask for a password that does not exist.
        return user.ok_or_else(|| {
            AppError::forbidden(
                "this app key is not valid or has been revoked; ask your supervisor for a new QR code",
            )
        });
    }
    let Some(auth) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(challenges(req, state, false));
    };
    let (scheme, rest) = auth.split_once(' ').unwrap_or((auth, ""));
    if scheme.eq_ignore_ascii_case("digest") {
        authenticate_digest(req, state, rest).await
    } else if scheme.eq_ignore_ascii_case("basic") && is_https(req) {
        authenticate_basic(state, rest)
            .await?
            .ok_or_else(|| challenges(req, state, false))
    } else {
        Err(challenges(req, state, false))
    }
}

async fn authenticate_digest(
    req: &HttpRequest,
    state: &AppState,
    header_rest: &str,
) -> Result<User, AppError> {
    let Some(params) = digest::parse(header_rest) else {
        return Err(challenges(req, state, false));
    };
    // A proxy may strip a path prefix, so the request path must end the signed URI's path.
    let signed_path = params.uri.split('?').next().unwrap_or("");
    if !signed_path.ends_with(req.path()) {
        return Err(challenges(req, state, false));
    }
    let now = chrono::Utc::now().timestamp();
    let nonce = digest::check_nonce(&state.secrets.nonce_key, &params.nonce, now);
    let username = params.username.clone();
    let user = state
        .db
        .read(move |conn| users::find(conn, &username))
        .await?;
    let Some(user) = user else {
        return Err(challenges(req, state, false));
    };
    if !digest::verify(&params, &user.digest_ha1, req.method().as_str()) {
        return Err(challenges(req, state, false));
    }
    match nonce {
        digest::NonceCheck::Valid => Ok(user),
        // Right password, old nonce: Collect retries with the new nonce without prompting.
        digest::NonceCheck::Stale => Err(challenges(req, state, true)),
        digest::NonceCheck::Invalid => Err(challenges(req, state, false)),
    }
}

fn decode_basic(header_rest: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(header_rest.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Checks `username:password` (Basic auth or login) against the stored argon2 hash, off the
/// async workers since argon2 is slow by design.
pub async fn check_password(
    state: &AppState,
    username: String,
    password: String,
) -> Result<Option<User>, AppError> {
    let user = state
        .db
        .read(move |conn| users::find(conn, &username))
        .await?;
    let Some(user) = user else {
        return Ok(None);
    };
    let ok = web::block(move || password::verify(&password, &user.password_hash).then_some(user))
        .await?;
    Ok(ok)
}

async fn authenticate_basic(state: &AppState, header_rest: &str) -> Result<Option<User>, AppError> {
    let Some((username, password)) = decode_basic(header_rest) else {
        return Ok(None);
    };
    check_password(state, username, password).await
}

/// A caller of the REST API, identified by a bearer access token.
pub struct ApiUser {
    pub id: i64,
    pub username: String,
    pub role: Role,
}

impl ApiUser {
    /// The caller's scope: what they may see and do (see [`crate::scope`]).
    pub fn scope(&self, conn: &mut crate::db::Conn<'_>) -> Result<Scope, AppError> {
        Scope::load(conn, self.id, &self.username, self.role)
    }

    /// The role part of the scope, for routes that touch no submission.
    pub fn require(&self, capability: Capability) -> Result<(), AppError> {
        Scope {
            user_id: self.id,
            username: self.username.clone(),
            role: self.role,
            areas: Vec::new(),
        }
        .require(capability)
    }

    pub fn require_admin(&self) -> Result<(), AppError> {
        self.require(Capability::Administer)
    }
}

impl FromRequest for ApiUser {
    type Error = AppError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(api_user(req))
    }
}

fn api_user(req: &HttpRequest) -> Result<ApiUser, AppError> {
    let state = state(req)?;
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or_else(|| {
            AppError::client(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send an access token: Authorization: Bearer <token> (POST /api/v1/auth/token)",
            )
        })?;
    let claims = token::verify(&state.secrets.token_key, token.trim())?;
    Ok(ApiUser {
        id: claims.sub,
        username: claims.username,
        role: Role::parse(&claims.role)?,
    })
}
