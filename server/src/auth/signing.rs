//! The keys that sign access tokens, kept in the database so that every instance signs and
//! checks alike. Each token names its key in the `kid` header. Rotating makes a new key sign
//! new tokens while the previous keys go on verifying the tokens they signed until those
//! expire, so a rotation logs nobody out.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::token_signing_keys;
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;
use crate::users::now;

/// The key that signed tokens without a `kid`: the single key of earlier releases.
pub const LEGACY_KID: &str = "legacy";

#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.kid)
    }
}

/// A signing key as an administrator sees it: never the secret.
#[derive(Debug, Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = token_signing_keys)]
#[schema(as = SigningKey)]
pub struct KeyInfo {
    pub kid: String,
    pub created_at: NaiveDateTime,
    pub retired_at: Option<NaiveDateTime>,
}

fn decode(kid: String, secret: &str) -> Result<SigningKey, AppError> {
    let secret = hex::decode(secret)
        .map_err(|e| AppError::internal(format!("signing key {kid} is corrupt: {e}")))?;
    Ok(SigningKey { kid, secret })
}

/// The key that signs new tokens, if there is one yet.
pub fn current(conn: &mut Conn<'_>) -> Result<Option<SigningKey>, AppError> {
    let row: Option<(String, String)> = on_conn!(conn, c => token_signing_keys::table
        .filter(token_signing_keys::retired_at.is_null())
        .order(token_signing_keys::created_at.desc())
        .select((token_signing_keys::kid, token_signing_keys::secret))
        .first(c)
        .optional())?;
    row.map(|(kid, secret)| decode(kid, &secret)).transpose()
}

/// The key named `kid`, current or retired.
pub fn find(conn: &mut Conn<'_>, kid: &str) -> Result<Option<SigningKey>, AppError> {
    let row: Option<(String, String)> = on_conn!(conn, c => token_signing_keys::table
        .find(kid)
        .select((token_signing_keys::kid, token_signing_keys::secret))
        .first(c)
        .optional())?;
    row.map(|(kid, secret)| decode(kid, &secret)).transpose()
}

fn insert_new(conn: &mut Conn<'_>) -> Result<SigningKey, AppError> {
    let kid = hex::encode(rand::random::<[u8; 8]>());
    let secret = rand::random::<[u8; 32]>().to_vec();
    on_conn!(conn, c => diesel::insert_into(token_signing_keys::table)
        .values((
            token_signing_keys::kid.eq(&kid),
            token_signing_keys::secret.eq(hex::encode(&secret)),
            token_signing_keys::created_at.eq(now()),
        ))
        .execute(c))?;
    Ok(SigningKey { kid, secret })
}

/// The current key, made on first start. Runs in the writer.
pub fn ensure_current(conn: &mut Conn<'_>) -> Result<SigningKey, AppError> {
    match current(conn)? {
        Some(k) => Ok(k),
        None => insert_new(conn),
    }
}

/// Retires the current key and makes a new one sign from now on; keys retired longer ago than
/// `keep_secs` (the longest token lifetime) can no longer have valid tokens and are deleted.
/// Runs in the writer; returns the new key's id.
pub fn rotate(conn: &mut Conn<'_>, keep_secs: i64) -> Result<String, AppError> {
    let at = now();
    on_conn!(conn, c => diesel::update(
        token_signing_keys::table.filter(token_signing_keys::retired_at.is_null()),
    )
    .set(token_signing_keys::retired_at.eq(at))
    .execute(c))?;
    let cutoff = at - chrono::Duration::seconds(keep_secs.max(0));
    on_conn!(conn, c => diesel::delete(
        token_signing_keys::table.filter(token_signing_keys::retired_at.le(cutoff)),
    )
    .execute(c))?;
    Ok(insert_new(conn)?.kid)
}

pub fn list(conn: &mut Conn<'_>) -> Result<Vec<KeyInfo>, AppError> {
    Ok(on_conn!(conn, c => token_signing_keys::table
        .order(token_signing_keys::created_at)
        .select(KeyInfo::as_select())
        .load(c))?)
}

/// Verification keys already read from the database, by `kid`. A token signed with a key this
/// instance has not seen yet (another instance rotated) makes it read that key once.
#[derive(Default)]
pub struct KeyCache {
    keys: RwLock<HashMap<String, Vec<u8>>>,
}

impl KeyCache {
    pub fn get(&self, kid: &str) -> Option<Vec<u8>> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    pub fn insert(&self, key: &SigningKey) {
        if let Ok(mut keys) = self.keys.write() {
            keys.insert(key.kid.clone(), key.secret.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_recent_keys_and_makes_a_new_current_one() -> Result<(), AppError> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
        let (_, mut db) = crate::db::connect(&url)?;
        let mut conn = db.conn();
        let first = ensure_current(&mut conn)?;
        assert_eq!(ensure_current(&mut conn)?.kid, first.kid);
        let second = rotate(&mut conn, 3600)?;
        assert_ne!(second, first.kid);
        assert_eq!(current(&mut conn)?.map(|k| k.kid), Some(second.clone()));
        assert!(
            find(&mut conn, &first.kid)?.is_some(),
            "the old key still verifies"
        );
        let third = rotate(&mut conn, 0)?;
        // With no lifetime to honour, the retired keys go.
        assert!(find(&mut conn, &first.kid)?.is_none());
        assert!(find(&mut conn, &second)?.is_none());
        assert_eq!(list(&mut conn)?.len(), 1);
        assert_eq!(current(&mut conn)?.map(|k| k.kid), Some(third));
        Ok(())
    }
}
