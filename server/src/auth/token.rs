//! Bearer access tokens (JWT, HS256) for the REST API.
//!
//! A token expires after the configured lifetime, and can be revoked before that: each token
//! carries its user's token generation at issue, and a request is accepted only while the
//! generation in the database is still the same. Revoking raises the generation, so every
//! instance refuses the user's older tokens at once, at the cost of one primary-key lookup per
//! request.
//!
//! Each token names the key that signed it in its `kid` header (see [`super::signing`]); a token
//! exchanged for an API key also names the key (`key`), and is refused once that key is revoked.

use diesel::prelude::*;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

use crate::db::schema::token_generations;
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;

use super::signing::{SigningKey, LEGACY_KID};

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: i64,
    pub username: String,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
    /// The user's token generation when the token was issued.
    #[serde(default)]
    pub gen: i64,
    /// The API key this token was exchanged for; `None` for a person's sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<i64>,
}

/// The user's current token generation (0 until the first revocation).
pub fn generation(conn: &mut Conn<'_>, user_id: i64) -> Result<i64, AppError> {
    Ok(on_conn!(conn, c => token_generations::table
        .find(user_id)
        .select(token_generations::generation)
        .first(c)
        .optional())?
    .unwrap_or(0))
}

/// Revokes every token issued to the user so far; returns the new generation.
pub fn revoke_all(conn: &mut Conn<'_>, user_id: i64) -> Result<i64, AppError> {
    let raised = on_conn!(conn, c => diesel::update(token_generations::table.find(user_id))
        .set(token_generations::generation.eq(token_generations::generation + 1))
        .execute(c))?;
    if raised == 0 {
        // Another instance inserting at once makes this a unique violation; the writer runs
        // the write again, which then takes the update above.
        on_conn!(conn, c => diesel::insert_into(token_generations::table)
            .values((token_generations::user_id.eq(user_id), token_generations::generation.eq(1)))
            .execute(c))?;
    }
    generation(conn, user_id)
}

pub fn issue(key: &SigningKey, claims: &Claims) -> Result<String, AppError> {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    encode(&header, claims, &EncodingKey::from_secret(&key.secret))
        .map_err(|e| AppError::internal(format!("cannot sign token: {e}")))
}

fn invalid(reason: impl std::fmt::Display) -> AppError {
    AppError::client(
        actix_web::http::StatusCode::UNAUTHORIZED,
        "invalid_token",
        format!("the access token is not valid: {reason}"),
    )
}

/// The key a token says signed it, read before anything in it is trusted.
pub fn kid_of(token: &str) -> Result<String, AppError> {
    let header = decode_header(token).map_err(invalid)?;
    Ok(header.kid.unwrap_or_else(|| LEGACY_KID.to_string()))
}

pub fn verify(secret: &[u8], token: &str) -> Result<Claims, AppError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 30;
    decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation)
        .map(|d| d.claims)
        .map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: 7,
            username: "admin".into(),
            role: "admin".into(),
            iat: 0,
            exp,
            gen: 0,
            key: None,
        }
    }

    #[test]
    fn round_trips_and_rejects_tampering_and_expiry() {
        let now = chrono::Utc::now().timestamp();
        let k1 = SigningKey {
            kid: "one".into(),
            secret: b"k1".to_vec(),
        };
        let t = issue(&k1, &claims(now + 60)).expect("sign");
        assert_eq!(kid_of(&t).expect("header"), "one");
        assert_eq!(verify(b"k1", &t).expect("valid").sub, 7);
        assert!(verify(b"k2", &t).is_err());
        let expired = issue(&k1, &claims(now - 3600)).expect("sign");
        assert!(verify(b"k1", &expired).is_err());
        assert!(kid_of("not a token").is_err());
    }

    #[test]
    fn revoking_raises_the_generation() -> Result<(), AppError> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
        let (_, mut db) = crate::db::connect(&url)?;
        let mut conn = db.conn();
        assert_eq!(generation(&mut conn, 7)?, 0);
        // token_generations references users, so create user 7's row first.
        let new =
            crate::users::NewUser::prepare("seven", "password-seven", crate::users::Role::Admin)?;
        let user = crate::users::create(&mut conn, &new)?;
        assert_eq!(revoke_all(&mut conn, user.id)?, 1);
        assert_eq!(revoke_all(&mut conn, user.id)?, 2);
        assert_eq!(generation(&mut conn, user.id)?, 2);
        Ok(())
    }
}
