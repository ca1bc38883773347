//! Server secrets kept in the database, so that every instance on one database checks nonces
//! and derives keys alike. The keys that sign access tokens are in `auth::signing`.

use diesel::prelude::*;

use crate::db::schema::settings;
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;

#[derive(Clone)]
pub struct Secrets {
    pub nonce_key: Vec<u8>,
    /// Keys the pseudonymous beneficiary hash (see `beneficiary.rs`); it never leaves the server.
    pub beneficiary_key: Vec<u8>,
    /// Derives app keys from their stored nonces, so a collector's QR code can be shown again.
    pub app_key_secret: Vec<u8>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

/// Reads the named secret, creating it on first use.
fn secret(conn: &mut Conn<'_>, name: &str) -> Result<Vec<u8>, AppError> {
    let existing: Option<String> = on_conn!(conn, c => settings::table
        .filter(settings::name.eq(name))
        .select(settings::value)
        .first(c)
        .optional())?;
    let value = match existing {
        Some(v) => v,
        None => {
            let v = hex::encode(rand::random::<[u8; 32]>());
            on_conn!(conn, c => diesel::insert_into(settings::table)
                .values((settings::name.eq(name), settings::value.eq(&v)))
                .execute(c))?;
            v
        }
    };
    hex::decode(value).map_err(|e| AppError::internal(format!("setting {name} is corrupt: {e}")))
}

pub fn load_or_create(conn: &mut Conn<'_>) -> Result<Secrets, AppError> {
    Ok(Secrets {
        nonce_key: secret(conn, "nonce_key")?,
        beneficiary_key: secret(conn, "beneficiary_key")?,
        app_key_secret: secret(conn, "app_key_secret")?,
    })
}
