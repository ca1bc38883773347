//! Who is calling: collectors on the OpenRosa routes (Digest, Basic over https, or an app key in
//! the URL) and people or machines on the REST API (bearer access tokens or API keys).

pub mod api_keys;
pub mod digest;
pub mod password;
pub mod replay;
pub mod signing;
pub mod throttle;
pub mod token;

use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest};
use base64::Engine;
use futures_util::future::LocalBoxFuture;

use crate::error::{AppError, OpenRosaError};
use crate::scope::{Capability, KeyScope, Scope};
use crate::state::AppState;
use crate::users::{self, Role, User};
use replay::NonceUse;

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, AppError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| AppError::internal("application state missing"))
}

/// The client's address: the peer, or, when the peer is a trusted reverse proxy, the nearest
/// address in `X-Forwarded-For` that is not itself a trusted proxy. Headers from anyone else are
/// ignored, since a client could write any address there to dodge the rate limits.
pub fn client_ip(req: &HttpRequest, trusted: &[IpAddr]) -> IpAddr {
    let peer = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    forwarded
        .iter()
        .rev()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .find(|a| !trusted.contains(a))
        .unwrap_or(peer)
}

/// A user authenticated on the OpenRosa routes.
pub struct Collector {
    pub user: User,
    /// The Digest nonce count this request used; a state-changing request records it in its own
    /// transaction (see [`replay`]).
    pub nonce_use: Option<NonceUse>,
}

impl FromRequest for Collector {
    type Error = OpenRosaError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            let collector = authenticate_collector(&req, &state).await?;
            if !Capability::Collect.allows(collector.user.role()?) {
                return Err(AppError::forbidden(
                    "this account is a service account and cannot use ODK Collect",
                )
                .into());
            }
            Ok(collector)
        })
    }
}

fn is_https(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

/// A 401 with fresh challenges; `stale` tells a Digest client its password was right.
pub fn challenges(req: &HttpRequest, state: &AppState, stale: bool) -> AppError {
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

/// What the database says about a sign-in attempt before the credentials are checked.
struct Attempt {
    user: Option<User>,
    locked: Option<throttle::Locked>,
    account_has_failures: bool,
}

/// Looks up the user and any lock-out on the account or address, in one read.
async fn attempt(state: &AppState, username: &str, ip: IpAddr) -> Result<Attempt, AppError> {
    let username = username.to_string();
    state
        .db
        .read(move |conn| {
            let account = throttle::account_key(&username);
            let keys = [account.clone(), throttle::address_key(ip)];
            let standing = throttle::standing(conn, &keys, users::now())?;
            Ok(Attempt {
                user: users::find(conn, &username)?,
                locked: standing.locked,
                account_has_failures: standing.recorded.contains(&account),
            })
        })
        .await
}

/// Counts a failed sign-in against the account name and the address.
async fn failed(state: &AppState, username: Option<&str>, ip: IpAddr) -> Result<(), AppError> {
    let limits = state.config.limits;
    let account = username.map(throttle::account_key);
    state
        .db
        .write(move |conn| {
            let now = users::now();
            if let Some(account) = &account {
                throttle::record_failure(conn, account, limits.account, now)?;
            }
            throttle::record_failure(conn, &throttle::address_key(ip), limits.address, now)
        })
        .await
}

async fn succeeded(state: &AppState, attempt: &Attempt, username: &str) -> Result<(), AppError> {
    if attempt.account_has_failures {
        let account = throttle::account_key(username);
        state
            .db
            .write(move |conn| throttle::record_success(conn, &account))
            .await?;
    }
    Ok(())
}

/// Refuses a request from a locked-out address before anything else is looked at.
async fn check_address(state: &AppState, ip: IpAddr) -> Result<(), AppError> {
    let locked = state
        .db
        .read(move |conn| throttle::standing(conn, &[throttle::address_key(ip)], users::now()))
        .await?
        .locked;
    match locked {
        Some(l) => Err(l.into_error()),
        None => Ok(()),
    }
}

async fn authenticate_collector(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Collector, AppError> {
    let ip = client_ip(req, &state.config.trusted_proxies);
    if let Some(key) = req.match_info().get("key") {
        check_address(state, ip).await?;
        let key = key.to_string();
        let user = state
            .db
            .read(move |conn| users::find_by_app_key(conn, &key))
            .await?;
        let Some(user) = user else {
            failed(state, None, ip).await?;
            // 403, not 401: a 401 would make Collect ask for a password that does not exist.
            return Err(AppError::forbidden(
                "this app key is not valid or has been revoked; ask your supervisor for a new QR code",
            ));
        };
        return Ok(Collector {
            user,
            nonce_use: None,
        });
    }
    let Some(auth) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        check_address(state, ip).await?;
        return Err(challenges(req, state, false));
    };
    let (scheme, rest) = auth.split_once(' ').unwrap_or((auth, ""));
    if scheme.eq_ignore_ascii_case("digest") {
        authenticate_digest(req, state, rest, ip).await
    } else if scheme.eq_ignore_ascii_case("basic") && is_https(req) {
        let Some((username, password)) = decode_basic(rest) else {
            return Err(challenges(req, state, false));
        };
        match check_password(state, &username, password, ip).await? {
            Some(user) => Ok(Collector {
                user,
                nonce_use: None,
            }),
            None => Err(challenges(req, state, false)),
        }
    } else {
        Err(challenges(req, state, false))
    }
}

async fn authenticate_digest(
    req: &HttpRequest,
    state: &AppState,
    header_rest: &str,
    ip: IpAddr,
) -> Result<Collector, AppError> {
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
    let attempt = attempt(state, &params.username, ip).await?;
    if let Some(locked) = attempt.locked {
        return Err(locked.into_error());
    }
    let verified = attempt
        .user
        .as_ref()
        .is_some_and(|u| digest::verify(&params, &u.digest_ha1, req.method().as_str()));
    if !verified {
        failed(state, Some(&params.username), ip).await?;
        return Err(challenges(req, state, false));
    }
    match nonce {
        digest::NonceCheck::Valid => {}
        // Right password, old nonce: Collect retries with the new nonce without prompting.
        digest::NonceCheck::Stale => return Err(challenges(req, state, true)),
        digest::NonceCheck::Invalid => return Err(challenges(req, state, false)),
    }
    let nonce_use = NonceUse {
        nonce: params.nonce.clone(),
        nc: params.nc.clone().unwrap_or_default(),
        cnonce: params.cnonce.clone().unwrap_or_default(),
    };
    let expires = digest::nonce_expiry(&params.nonce).unwrap_or(now);
    if !state.seen_nonces.first_use(&nonce_use, now, expires) {
        return Err(challenges(req, state, true));
    }
    succeeded(state, &attempt, &params.username).await?;
    let user = attempt
        .user
        .ok_or_else(|| AppError::internal("verified without a user"))?;
    Ok(Collector {
        user,
        nonce_use: Some(nonce_use),
    })
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
/// async workers since argon2 is slow by design, with the sign-in rate limits applied: a
/// locked-out account or address gets [`AppError::TooManyAttempts`] whatever the password.
pub async fn check_password(
    state: &AppState,
    username: &str,
    password: String,
    ip: IpAddr,
) -> Result<Option<User>, AppError> {
    let attempt = attempt(state, username, ip).await?;
    if let Some(locked) = attempt.locked {
        return Err(locked.into_error());
    }
    let hash = attempt.user.as_ref().map(|u| u.password_hash.clone());
    let ok = web::block(move || hash.is_some_and(|h| password::verify(&password, &h))).await?;
    if !ok {
        failed(state, Some(username), ip).await?;
        return Ok(None);
    }
    succeeded(state, &attempt, username).await?;
    Ok(attempt.user)
}

/// A caller of the REST API, identified by a bearer access token or API key.
#[derive(Debug, Clone)]
pub struct ApiUser {
    pub id: i64,
    pub username: String,
    pub role: Role,
    /// The scopes of the API key the request came with (directly or through an access token
    /// exchanged for it); `None` for a person's sign-in.
    pub key_scopes: Option<Vec<KeyScope>>,
}

impl ApiUser {
    /// The caller's scope: what they may see and do (see [`crate::scope`]).
    pub fn scope(&self, conn: &mut crate::db::Conn<'_>) -> Result<Scope, AppError> {
        let mut scope = Scope::load(conn, self.id, &self.username, self.role)?;
        scope.key_scopes = self.key_scopes.clone();
        Ok(scope)
    }

    /// The role (and key scope) part of the scope, for routes that touch no submission.
    pub fn require(&self, capability: Capability) -> Result<(), AppError> {
        Scope {
            user_id: self.id,
            username: self.username.clone(),
            role: self.role,
            areas: Vec::new(),
            key_scopes: self.key_scopes.clone(),
        }
        .require(capability)
    }

    pub fn require_admin(&self) -> Result<(), AppError> {
        self.require(Capability::Administer)
    }
}

impl FromRequest for ApiUser {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { api_user(&req).await })
    }
}

async fn api_user(req: &HttpRequest) -> Result<ApiUser, AppError> {
    let state = state(req)?;
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            AppError::client(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send an access token or API key: Authorization: Bearer <token> (POST /api/v1/auth/token)",
            )
        })?;
    if bearer.starts_with(api_keys::PREFIX) {
        let holder = key_holder(&state, bearer).await?;
        return Ok(ApiUser {
            id: holder.user.id,
            role: holder.user.role()?,
            username: holder.user.username,
            key_scopes: Some(holder.scopes),
        });
    }
    let claims = verify_token(&state, bearer).await?;
    let (user_id, key_id) = (claims.sub, claims.key);
    let (current, key_scopes) = state
        .db
        .read(move |conn| {
            let generation = token::generation(conn, user_id)?;
            let scopes = match key_id {
                Some(id) => Some(api_keys::active_scopes(conn, id, user_id)?),
                None => None,
            };
            Ok((generation, scopes))
        })
        .await?;
    if current != claims.gen {
        return Err(AppError::client(
            StatusCode::UNAUTHORIZED,
            "token_revoked",
            "this access token has been revoked; sign in again",
        ));
    }
    let key_scopes = match key_scopes {
        None => None,
        Some(Some(scopes)) => Some(scopes),
        Some(None) => {
            return Err(AppError::client(
                StatusCode::UNAUTHORIZED,
                "token_revoked",
                "the API key this access token was issued for has been revoked or has expired",
            ))
        }
    };
    Ok(ApiUser {
        id: claims.sub,
        username: claims.username,
        role: Role::parse(&claims.role)?,
        key_scopes,
    })
}

/// The account of a valid API key; 401 for an unknown, revoked or expired key.
pub async fn key_holder(state: &AppState, key: &str) -> Result<api_keys::Holder, AppError> {
    let key = key.to_string();
    state
        .db
        .read(move |conn| api_keys::authenticate(conn, &key))
        .await?
        .ok_or_else(|| {
            AppError::client(
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "this API key is not valid, has expired or has been revoked",
            )
        })
}

/// Checks an access token's signature with the key its `kid` names: from this instance's cache,
/// or read once from the database when another instance made the key.
async fn verify_token(state: &AppState, token: &str) -> Result<token::Claims, AppError> {
    let kid = token::kid_of(token)?;
    let secret = match state.signing_keys.get(&kid) {
        Some(secret) => secret,
        None => {
            let wanted = kid.clone();
            let key = state
                .db
                .read(move |conn| signing::find(conn, &wanted))
                .await?
                .ok_or_else(|| {
                    AppError::client(
                        StatusCode::UNAUTHORIZED,
                        "invalid_token",
                        "the access token was signed with a key this server no longer has; sign in again",
                    )
                })?;
            state.signing_keys.insert(&key);
            key.secret
        }
    };
    token::verify(&secret, token)
}
