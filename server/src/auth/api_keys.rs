//! Long-lived API keys for service accounts: an administrator creates one for an account with
//! a set of scopes (shown once, stored as its SHA-256), and revokes it. A key is sent as
//! `Authorization: Bearer ftk_…`, or exchanged for a short-lived access token; either way every
//! request reads the key's row, so a revocation holds at once on every instance.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::audit::{self, Actor};
use crate::db::schema::{api_keys, users};
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;
use crate::scope::KeyScope;
use crate::users::{now, User};

/// What every key starts with, so that a bearer key is told apart from an access token (and a
/// leaked key is easy to recognise in a secret scanner).
pub const PREFIX: &str = "ftk_";

const MAX_NAME_CHARS: usize = 100;

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A key as an administrator sees it: never the key itself.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ApiKey)]
pub struct KeyView {
    pub id: i64,
    pub name: String,
    pub username: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub scopes: Vec<&'static str>,
    pub created_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

type Row = (
    i64,
    String,
    String,
    String,
    String,
    NaiveDateTime,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);

fn view(row: Row) -> Result<KeyView, AppError> {
    let (id, name, username, prefix, scopes, created_at, expires_at, revoked_at) = row;
    Ok(KeyView {
        id,
        name,
        username,
        prefix,
        scopes: KeyScope::parse_list(&scopes)?
            .into_iter()
            .map(KeyScope::as_str)
            .collect(),
        created_at,
        expires_at,
        revoked_at,
    })
}

fn rows(conn: &mut Conn<'_>, id: Option<i64>) -> Result<Vec<KeyView>, AppError> {
    let rows: Vec<Row> = on_conn!(conn, c => {
        let mut q = api_keys::table
            .inner_join(users::table)
            .order(api_keys::id)
            .select((
                api_keys::id,
                api_keys::name,
                users::username,
                api_keys::prefix,
                api_keys::scopes,
                api_keys::created_at,
                api_keys::expires_at,
                api_keys::revoked_at,
            ))
            .into_boxed();
        if let Some(id) = id {
            q = q.filter(api_keys::id.eq(id));
        }
        q.load(c)
    })?;
    rows.into_iter().map(view).collect()
}

pub fn list(conn: &mut Conn<'_>) -> Result<Vec<KeyView>, AppError> {
    rows(conn, None)
}

fn get(conn: &mut Conn<'_>, id: i64) -> Result<KeyView, AppError> {
    rows(conn, Some(id))?
        .pop()
        .ok_or_else(|| AppError::not_found("unknown_api_key", format!("there is no API key {id}")))
}

/// What an administrator asks for.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub username: String,
    pub name: String,
    pub scopes: Vec<KeyScope>,
    pub expires_at: Option<NaiveDateTime>,
}

/// Creates a key; returns the key itself (to show once) and its view. Runs in the writer.
pub fn create(
    conn: &mut Conn<'_>,
    actor: &Actor,
    new: &NewKey,
) -> Result<(String, KeyView), AppError> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(AppError::bad_request(
            "bad_name",
            format!("a key needs a name of 1 to {MAX_NAME_CHARS} characters (what uses it)"),
        ));
    }
    if new.scopes.is_empty() {
        return Err(AppError::bad_request(
            "bad_scope",
            "a key needs at least one scope: read_indicators, read_submissions, read_sensitive, export or administer",
        ));
    }
    if new.expires_at.is_some_and(|t| t <= now()) {
        return Err(AppError::bad_request(
            "bad_expiry",
            "expires_at must lie in the future",
        ));
    }
    let user = crate::users::get(conn, &new.username)?;
    let key = format!("{PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
    let prefix: String = key.chars().take(PREFIX.len() + 8).collect();
    let scopes = KeyScope::join(&new.scopes);
    let id: i64 = on_conn!(conn, c => diesel::insert_into(api_keys::table)
        .values((
            api_keys::user_id.eq(user.id),
            api_keys::name.eq(name),
            api_keys::prefix.eq(&prefix),
            api_keys::key_hash.eq(hash(&key)),
            api_keys::scopes.eq(&scopes),
            api_keys::created_at.eq(now()),
            api_keys::created_by.eq(actor.id),
            api_keys::expires_at.eq(new.expires_at),
        ))
        .returning(api_keys::id)
        .get_result(c))?;
    audit::record(
        conn,
        actor,
        "api_key.created",
        Some(&user.username),
        serde_json::json!({ "key_id": id, "scopes": scopes, "expires_at": new.expires_at }),
    )?;
    Ok((key, get(conn, id)?))
}

/// Revokes a key at once; revoking a revoked key changes nothing. Runs in the writer.
pub fn revoke(conn: &mut Conn<'_>, actor: &Actor, id: i64) -> Result<KeyView, AppError> {
    let before = get(conn, id)?;
    if before.revoked_at.is_some() {
        return Ok(before);
    }
    on_conn!(conn, c => diesel::update(api_keys::table.find(id))
        .set(api_keys::revoked_at.eq(now()))
        .execute(c))?;
    audit::record(
        conn,
        actor,
        "api_key.revoked",
        Some(&before.username),
        serde_json::json!({ "key_id": id }),
    )?;
    get(conn, id)
}

/// A valid key and the account it belongs to.
#[derive(Debug)]
pub struct Holder {
    pub key_id: i64,
    pub user: User,
    pub scopes: Vec<KeyScope>,
    pub expires_at: Option<NaiveDateTime>,
}

/// The holder of a key that exists, is not revoked and has not expired.
pub fn authenticate(conn: &mut Conn<'_>, key: &str) -> Result<Option<Holder>, AppError> {
    let row: Option<(i64, String, Option<NaiveDateTime>, User)> = on_conn!(conn, c => api_keys::table
        .inner_join(users::table)
        .filter(api_keys::key_hash.eq(hash(key)))
        .filter(api_keys::revoked_at.is_null())
        .select((api_keys::id, api_keys::scopes, api_keys::expires_at, User::as_select()))
        .first(c)
        .optional())?;
    let Some((key_id, scopes, expires_at, user)) = row else {
        return Ok(None);
    };
    if expires_at.is_some_and(|t| t <= now()) {
        return Ok(None);
    }
    Ok(Some(Holder {
        key_id,
        user,
        scopes: KeyScope::parse_list(&scopes)?,
        expires_at,
    }))
}

/// The scopes of a key an access token was exchanged for, while the key is still valid and
/// still the user's.
pub fn active_scopes(
    conn: &mut Conn<'_>,
    key_id: i64,
    user_id: i64,
) -> Result<Option<Vec<KeyScope>>, AppError> {
    let row: Option<(String, Option<NaiveDateTime>)> = on_conn!(conn, c => api_keys::table
        .filter(api_keys::id.eq(key_id))
        .filter(api_keys::user_id.eq(user_id))
        .filter(api_keys::revoked_at.is_null())
        .select((api_keys::scopes, api_keys::expires_at))
        .first(c)
        .optional())?;
    match row {
        Some((scopes, expires_at)) if expires_at.is_none_or(|t| t > now()) => {
            Ok(Some(KeyScope::parse_list(&scopes)?))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_stored_hashed_and_stops_working_when_revoked() -> Result<(), AppError> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
        let (_, mut db) = crate::db::connect(&url)?;
        let mut conn = db.conn();
        let admin = crate::users::create(
            &mut conn,
            &crate::users::NewUser::prepare("root", "password-root", crate::users::Role::Admin)?,
        )?;
        crate::users::create(
            &mut conn,
            &crate::users::NewUser::prepare(
                "dhis2",
                "password-dhis2",
                crate::users::Role::ApiClient,
            )?,
        )?;
        let actor = Actor {
            id: admin.id,
            username: admin.username.clone(),
        };
        let new = NewKey {
            username: "dhis2".into(),
            name: "DHIS2 pull".into(),
            scopes: vec![KeyScope::ReadIndicators],
            expires_at: None,
        };
        let (key, view) = create(&mut conn, &actor, &new)?;
        assert!(key.starts_with(PREFIX) && key.starts_with(&view.prefix));
        let stored: String = on_conn!(&mut conn, c => api_keys::table
            .select(api_keys::key_hash)
            .first(c))?;
        assert!(!stored.contains(&key[PREFIX.len()..]));
        let holder = authenticate(&mut conn, &key)?.expect("valid key");
        assert_eq!(holder.user.username, "dhis2");
        assert_eq!(holder.scopes, [KeyScope::ReadIndicators]);
        assert!(authenticate(&mut conn, &format!("{key}0"))?.is_none());
        assert!(active_scopes(&mut conn, view.id, holder.user.id)?.is_some());
        assert!(active_scopes(&mut conn, view.id, admin.id)?.is_none());
        revoke(&mut conn, &actor, view.id)?;
        assert!(authenticate(&mut conn, &key)?.is_none());
        assert!(active_scopes(&mut conn, view.id, holder.user.id)?.is_none());
        let empty = NewKey {
            scopes: Vec::new(),
            ..new
        };
        assert!(create(&mut conn, &actor, &empty).is_err());
        Ok(())
    }
}
