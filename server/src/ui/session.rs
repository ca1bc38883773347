//! Browser sessions and CSRF protection for the review page.
//!
//! Signing in stores a session row keyed by the hash of a random token; the browser holds the
//! token in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` over https). Each session has its
//! own CSRF token, which every state-changing form carries and the server compares in constant
//! time; a request whose `Origin` names another site is refused as well.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use base64::Engine;
use chrono::Duration;
use diesel::prelude::*;
use futures_util::future::LocalBoxFuture;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Lang, UiError};
use crate::db::schema::{users, web_sessions};
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;
use crate::scope::Scope;
use crate::state::AppState;
use crate::users::{now, Role, User};

pub const SESSION_COOKIE: &str = "ft_session";
pub const LOGIN_COOKIE: &str = "ft_login";
/// A session lasts a working day.
pub const SESSION_HOURS: i64 = 12;

pub fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether the request came over https (directly or through a proxy that says so).
pub fn is_https(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

/// A cookie with the page's protections.
pub fn cookie<'a>(req: &HttpRequest, name: &'a str, value: String, path: &'a str) -> Cookie<'a> {
    Cookie::build(name, value)
        .path(path)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(is_https(req))
        .finish()
}

/// Creates a session for the user; returns the token for the cookie. Runs in the writer.
pub fn create(conn: &mut Conn<'_>, user: &User, token: &str, csrf: &str) -> Result<(), AppError> {
    let at = now();
    // Expired sessions are cleared here rather than by a timer: sign-ins are rare enough.
    on_conn!(conn, c => diesel::delete(web_sessions::table.filter(web_sessions::expires_at.lt(at))).execute(c))?;
    on_conn!(conn, c => diesel::insert_into(web_sessions::table)
        .values((
            web_sessions::token_hash.eq(hash(token)),
            web_sessions::user_id.eq(user.id),
            web_sessions::csrf_token.eq(csrf),
            web_sessions::created_at.eq(at),
            web_sessions::expires_at.eq(at + Duration::hours(SESSION_HOURS)),
        ))
        .execute(c))?;
    Ok(())
}

pub fn delete(conn: &mut Conn<'_>, token: &str) -> Result<(), AppError> {
    on_conn!(conn, c => diesel::delete(web_sessions::table.filter(web_sessions::token_hash.eq(hash(token)))).execute(c))?;
    Ok(())
}

/// A signed-in person on the review page.
pub struct WebUser {
    pub scope: Scope,
    pub csrf: String,
    pub lang: Lang,
    /// The session cookie's token, to sign out.
    pub token: String,
}

impl WebUser {
    /// Refuses a state-changing request whose CSRF token does not match the session's.
    pub fn check_csrf(&self, req: &HttpRequest, sent: Option<&str>) -> Result<(), UiError> {
        check_origin(req)?;
        if sent.is_some_and(|s| same(s, &self.csrf)) {
            Ok(())
        } else {
            Err(UiError::app(
                AppError::forbidden("the form has expired or did not come from this site; reload the page and try again"),
                self.lang,
            ))
        }
    }
}

/// A browser sends `Origin` with every POST; one naming another site is a forged request.
pub fn check_origin(req: &HttpRequest) -> Result<(), UiError> {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    let host = req.connection_info().host().to_string();
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
    if origin_host.eq_ignore_ascii_case(&host) {
        Ok(())
    } else {
        Err(UiError::app(
            AppError::forbidden("request from another site refused"),
            Lang::from_request(req),
        ))
    }
}

impl FromRequest for WebUser {
    type Error = UiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let lang = Lang::from_request(&req);
            let Some(token) = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()) else {
                return Err(UiError::SignIn);
            };
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| {
                    UiError::app(AppError::internal("application state missing"), lang)
                })?;
            let t = token.clone();
            let found = state
                .db
                .read(move |conn| {
                    let row: Option<(i64, String, String, String)> = on_conn!(conn, c => web_sessions::table
                        .inner_join(users::table)
                        .filter(web_sessions::token_hash.eq(hash(&t)))
                        .filter(web_sessions::expires_at.gt(now()))
                        .select((users::id, users::username, users::role, web_sessions::csrf_token))
                        .first(c)
                        .optional())?;
                    let Some((id, username, role, csrf)) = row else {
                        return Ok(None);
                    };
                    let scope = Scope::load(conn, id, &username, Role::parse(&role)?)?;
                    Ok(Some((scope, csrf)))
                })
                .await
                .map_err(|e| UiError::app(e, lang))?;
            let Some((scope, csrf)) = found else {
                return Err(UiError::SignIn);
            };
            Ok(WebUser {
                scope,
                csrf,
                lang,
                token,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_compared_exactly() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &b));
        assert!(!same("", ""));
        assert!(!same(&a, &a[..42]));
        assert_ne!(hash(&a), a);
    }
}
