//! Users, their roles, app keys (token-in-URL access for ODK Collect) and form assignments.

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::auth::{digest, password};
use crate::db::schema::{app_keys, form_assignments, forms, user_areas, users};
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;

/// What a user is for. What each role may see and do is decided in [`crate::scope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Users, forms, areas and everything a province officer does.
    Admin,
    /// Sees and reviews every submission in the province; reads the audit log.
    ProvinceOfficer,
    /// Sees and reviews the submissions of their areas (communes, or districts before July 2025).
    Supervisor,
    /// Fills forms with ODK Collect; sees their own submissions and the comments on them.
    Collector,
    /// A service account of the province's systems: reads, never changes anything.
    ApiClient,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::ProvinceOfficer,
        Role::Supervisor,
        Role::Collector,
        Role::ApiClient,
    ];

    pub fn parse(s: &str) -> Result<Role, AppError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                AppError::bad_request(
                    "bad_role",
                    format!(
                        "unknown role '{s}': use admin, province_officer, supervisor, collector or api_client"
                    ),
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ProvinceOfficer => "province_officer",
            Role::Supervisor => "supervisor",
            Role::Collector => "collector",
            Role::ApiClient => "api_client",
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: String,
    pub password_hash: String,
    pub digest_ha1: String,
    pub created_at: NaiveDateTime,
}

impl User {
    pub fn role(&self) -> Result<Role, AppError> {
        Role::parse(&self.role)
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = User)]
pub struct UserView {
    pub username: String,
    pub role: String,
    pub created_at: NaiveDateTime,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            username: u.username.clone(),
            role: u.role.clone(),
            created_at: u.created_at,
        }
    }
}

pub fn now() -> NaiveDateTime {
    // Microseconds: what both backends store, so a value reads back equal to what was written.
    let t = Utc::now().naive_utc();
    t.with_nanosecond_micro()
}

trait TruncateMicros {
    fn with_nanosecond_micro(self) -> Self;
}

impl TruncateMicros for NaiveDateTime {
    fn with_nanosecond_micro(self) -> Self {
        use chrono::Timelike;
        let micros = self.nanosecond() / 1000 * 1000;
        self.with_nanosecond(micros).unwrap_or(self)
    }
}

pub fn validate_username(username: &str) -> Result<(), AppError> {
    let ok = !username.is_empty()
        && username.len() <= 64
        && username
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(
            "bad_username",
            "a user name has 1 to 64 characters: lowercase letters a-z, digits, '.', '_' or '-'",
        ))
    }
}

pub fn validate_password(password: &str) -> Result<(), AppError> {
    if password.chars().count() < 8 {
        return Err(AppError::bad_request(
            "weak_password",
            "a password needs at least 8 characters",
        ));
    }
    Ok(())
}

/// Prepared outside the writer: argon2 is deliberately slow and must not hold the write lock.
pub struct NewUser {
    pub username: String,
    pub role: Role,
    pub password_hash: String,
    pub digest_ha1: String,
}

impl NewUser {
    pub fn prepare(username: &str, password: &str, role: Role) -> Result<NewUser, AppError> {
        validate_username(username)?;
        validate_password(password)?;
        Ok(NewUser {
            username: username.to_string(),
            role,
            password_hash: password::hash(password)?,
            digest_ha1: digest::ha1(username, password),
        })
    }
}

pub fn create(conn: &mut Conn<'_>, new: &NewUser) -> Result<User, AppError> {
    if find(conn, &new.username)?.is_some() {
        return Err(AppError::conflict(
            "user_exists",
            format!("a user named '{}' already exists", new.username),
        ));
    }
    let row = (
        users::username.eq(&new.username),
        users::role.eq(new.role.as_str()),
        users::password_hash.eq(&new.password_hash),
        users::digest_ha1.eq(&new.digest_ha1),
        users::created_at.eq(now()),
    );
    let user = on_conn!(conn, c => diesel::insert_into(users::table)
        .values(row)
        .returning(User::as_returning())
        .get_result(c))?;
    Ok(user)
}

pub fn find(conn: &mut Conn<'_>, username: &str) -> Result<Option<User>, AppError> {
    Ok(on_conn!(conn, c => users::table
        .filter(users::username.eq(username))
        .select(User::as_select())
        .first(c)
        .optional())?)
}

pub fn get(conn: &mut Conn<'_>, username: &str) -> Result<User, AppError> {
    find(conn, username)?
        .ok_or_else(|| AppError::not_found("unknown_user", format!("no user named '{username}'")))
}

pub fn count(conn: &mut Conn<'_>) -> Result<i64, AppError> {
    Ok(on_conn!(conn, c => users::table.count().get_result(c))?)
}

pub fn list(conn: &mut Conn<'_>) -> Result<Vec<User>, AppError> {
    Ok(on_conn!(conn, c => users::table
        .order(users::username)
        .select(User::as_select())
        .load(c))?)
}

fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The app key for a stored nonce: HMAC-SHA256 under the server's app-key secret, URL-safe.
/// Keys are derived rather than stored so that the database alone does not reveal them, and
/// so that a collector's QR code can be shown again.
fn derive_app_key(secret: &[u8], nonce: &str) -> Result<String, AppError> {
    use base64::Engine;
    use hmac::Mac;
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|e| AppError::internal(format!("app key secret: {e}")))?;
    mac.update(b"fieldtally-app-key\x1f");
    mac.update(nonce.as_bytes());
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// Creates a new app key for the user, revoking the previous ones, and returns it.
pub fn create_app_key(
    conn: &mut Conn<'_>,
    secret: &[u8],
    user_id: i64,
) -> Result<String, AppError> {
    revoke_app_keys(conn, user_id)?;
    let nonce = hex::encode(rand::random::<[u8; 32]>());
    let key = derive_app_key(secret, &nonce)?;
    on_conn!(conn, c => diesel::insert_into(app_keys::table)
        .values((
            app_keys::user_id.eq(user_id),
            app_keys::key_hash.eq(key_hash(&key)),
            app_keys::created_at.eq(now()),
            app_keys::nonce.eq(&nonce),
        ))
        .execute(c))?;
    Ok(key)
}

/// The user's active app key, creating one when there is none. A key issued before keys were
/// derived cannot be shown again: that is a 409 asking for a new key.
pub fn current_or_new_app_key(
    conn: &mut Conn<'_>,
    secret: &[u8],
    user_id: i64,
) -> Result<String, AppError> {
    let active: Option<Option<String>> = on_conn!(conn, c => app_keys::table
        .filter(app_keys::user_id.eq(user_id))
        .filter(app_keys::revoked_at.is_null())
        .order(app_keys::id.desc())
        .select(app_keys::nonce)
        .first(c)
        .optional())?;
    match active {
        None => create_app_key(conn, secret, user_id),
        Some(Some(nonce)) => derive_app_key(secret, &nonce),
        Some(None) => Err(AppError::conflict(
            "app_key_not_shown",
            "this collector's app key was issued before keys could be shown again; issue a new one (POST /api/v1/users/{username}/app-key) and have the phone scan the new QR code",
        )),
    }
}

/// A fresh random key: 32 bytes, URL-safe, so it can stand in the server URL a phone uses.
pub fn generate_app_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

pub fn revoke_app_keys(conn: &mut Conn<'_>, user_id: i64) -> Result<usize, AppError> {
    Ok(on_conn!(conn, c => diesel::update(
        app_keys::table
            .filter(app_keys::user_id.eq(user_id))
            .filter(app_keys::revoked_at.is_null()),
    )
    .set(app_keys::revoked_at.eq(now()))
    .execute(c))?)
}

pub fn find_by_app_key(conn: &mut Conn<'_>, key: &str) -> Result<Option<User>, AppError> {
    let hash = key_hash(key);
    Ok(on_conn!(conn, c => app_keys::table
        .inner_join(users::table)
        .filter(app_keys::key_hash.eq(&hash))
        .filter(app_keys::revoked_at.is_null())
        .select(User::as_select())
        .first(c)
        .optional())?)
}

/// Restricts the collector to these forms; an empty list means every open form.
pub fn assign_forms(
    conn: &mut Conn<'_>,
    user_id: i64,
    form_ids: &[String],
) -> Result<(), AppError> {
    for form_id in form_ids {
        let exists: i64 = on_conn!(conn, c => forms::table
            .filter(forms::form_id.eq(form_id))
            .count()
            .get_result(c))?;
        if exists == 0 {
            return Err(AppError::not_found(
                "unknown_form",
                format!("no form with id '{form_id}'"),
            ));
        }
    }
    on_conn!(conn, c => diesel::delete(form_assignments::table.filter(form_assignments::user_id.eq(user_id))).execute(c))?;
    for form_id in form_ids {
        on_conn!(conn, c => diesel::insert_into(form_assignments::table)
            .values((form_assignments::user_id.eq(user_id), form_assignments::form_id.eq(form_id)))
            .execute(c))?;
    }
    Ok(())
}

/// The forms assigned to the user, or `None` when the user may fill every open form.
pub fn assigned_forms(conn: &mut Conn<'_>, user_id: i64) -> Result<Option<Vec<String>>, AppError> {
    let ids: Vec<String> = on_conn!(conn, c => form_assignments::table
        .filter(form_assignments::user_id.eq(user_id))
        .select(form_assignments::form_id)
        .order(form_assignments::form_id)
        .load(c))?;
    Ok(if ids.is_empty() { None } else { Some(ids) })
}

/// An area code as the registry writes it: `14` (province), `116` (district), `04243`
/// (commune), or an imported hamlet code.
pub fn validate_area_code(code: &str) -> Result<(), AppError> {
    let ok = !code.is_empty()
        && code.len() <= 32
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(
            "bad_area_code",
            format!("'{code}' is not an area code: 1 to 32 letters, digits, '.', '_' or '-'"),
        ))
    }
}

/// Replaces the areas a supervisor covers. The codes are not yet checked against an area
/// registry: that arrives with the registry, which will also resolve them on activity dates.
pub fn set_areas(conn: &mut Conn<'_>, user: &User, codes: &[String]) -> Result<(), AppError> {
    if user.role()? != Role::Supervisor {
        return Err(AppError::bad_request(
            "areas_not_applicable",
            format!(
                "only supervisors are limited to areas; '{}' is a {}",
                user.username, user.role
            ),
        ));
    }
    for code in codes {
        validate_area_code(code)?;
    }
    let mut unique: Vec<&String> = codes.iter().collect();
    unique.sort();
    unique.dedup();
    on_conn!(conn, c => diesel::delete(user_areas::table.filter(user_areas::user_id.eq(user.id))).execute(c))?;
    for code in unique {
        on_conn!(conn, c => diesel::insert_into(user_areas::table)
            .values((user_areas::user_id.eq(user.id), user_areas::area_code.eq(code)))
            .execute(c))?;
    }
    Ok(())
}

/// The area codes a user covers, sorted.
pub fn areas(conn: &mut Conn<'_>, user_id: i64) -> Result<Vec<String>, AppError> {
    Ok(on_conn!(conn, c => user_areas::table
        .filter(user_areas::user_id.eq(user_id))
        .select(user_areas::area_code)
        .order(user_areas::area_code)
        .load(c))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_keys_can_be_shown_again_unless_issued_before_derivation() {
        let (_, mut db) = crate::db::connect("sqlite://:memory:").unwrap();
        let mut conn = db.conn();
        let secret = b"app key secret for the test";
        let new = NewUser::prepare("lan", "lan-password-1", Role::Collector).unwrap();
        let user = create(&mut conn, &new).unwrap();

        // No key yet: one is created, and shown again unchanged.
        let first = current_or_new_app_key(&mut conn, secret, user.id).unwrap();
        assert_eq!(
            current_or_new_app_key(&mut conn, secret, user.id).unwrap(),
            first
        );
        assert_eq!(
            find_by_app_key(&mut conn, &first).unwrap().map(|u| u.id),
            Some(user.id)
        );
        // A new key replaces it.
        let second = create_app_key(&mut conn, secret, user.id).unwrap();
        assert_ne!(second, first);
        assert!(find_by_app_key(&mut conn, &first).unwrap().is_none());
        assert_eq!(
            current_or_new_app_key(&mut conn, secret, user.id).unwrap(),
            second
        );

        // A key stored only as a hash (issued by an earlier version) cannot be shown.
        revoke_app_keys(&mut conn, user.id).unwrap();
        on_conn!(&mut conn, c => diesel::insert_into(app_keys::table)
            .values((
                app_keys::user_id.eq(user.id),
                app_keys::key_hash.eq(key_hash("legacy")),
                app_keys::created_at.eq(now()),
            ))
            .execute(c))
        .unwrap();
        let err = current_or_new_app_key(&mut conn, secret, user.id).unwrap_err();
        assert!(
            matches!(
                err,
                AppError::Client {
                    code: "app_key_not_shown",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn roles_round_trip_and_unknown_ones_are_refused() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()).ok(), Some(role));
        }
        assert_eq!(Role::parse("admin").ok(), Some(Role::Admin));
        assert_eq!(Role::parse("collector").ok(), Some(Role::Collector));
        assert!(Role::parse("Admin").is_err());
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn area_codes_are_short_plain_tokens() {
        assert!(validate_area_code("04243").is_ok());
        assert!(validate_area_code("DEMO-116-01").is_ok());
        assert!(validate_area_code("").is_err());
        assert!(validate_area_code("14/116").is_err());
        assert!(validate_area_code(&"1".repeat(33)).is_err());
    }
}
