//! Bearer access tokens (JWT, HS256) for the REST API.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::AppError;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: i64,
    pub username: String,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
}

pub fn issue(secret: &[u8], claims: &Claims) -> Result<String, AppError> {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| AppError::internal(format!("cannot sign token: {e}")))
}

pub fn verify(secret: &[u8], token: &str) -> Result<Claims, AppError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 30;
    decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation)
        .map(|d| d.claims)
        .map_err(|e| {
            AppError::client(
                actix_web::http::StatusCode::UNAUTHORIZED,
                "invalid_token",
                format!("the access token is not valid: {e}"),
            )
        })
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
        }
    }

    #[test]
    fn round_trips_and_rejects_tampering_and_expiry() {
        let now = chrono::Utc::now().timestamp();
        let t = issue(b"k1", &claims(now + 60)).expect("sign");
        assert_eq!(verify(b"k1", &t).expect("valid").sub, 7);
        assert!(verify(b"k2", &t).is_err());
        let expired = issue(b"k1", &claims(now - 3600)).expect("sign");
        assert!(verify(b"k1", &expired).is_err());
    }
}
