//! The access log: every read of decrypted sensitive data, with who read it, what, when, and
//! the purpose they stated. It is written (durably) before the data leaves the server, so a read
//! that cannot be logged does not happen.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::access_log;
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;

/// Longest stated purpose kept; a sentence or two.
const MAX_PURPOSE_CHARS: usize = 500;

/// One read of sensitive data about to happen.
#[derive(Debug, Clone)]
pub struct Access {
    pub user_id: i64,
    pub username: String,
    /// What was read, e.g. `submission_xml`.
    pub action: &'static str,
    /// Which record, e.g. the instanceID.
    pub subject: String,
    pub purpose: String,
}

#[derive(Debug, Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = access_log)]
#[schema(as = AccessLogEntry)]
pub struct Entry {
    pub id: i64,
    pub at: NaiveDateTime,
    #[serde(skip)]
    pub user_id: i64,
    pub username: String,
    pub action: String,
    pub subject: String,
    pub purpose: String,
}

/// Checks a stated purpose: required, one line of at most 500 characters.
pub fn validate_purpose(purpose: Option<&str>) -> Result<String, AppError> {
    let purpose = purpose.map(str::trim).unwrap_or_default();
    if purpose.is_empty() {
        return Err(AppError::bad_request(
            "purpose_required",
            "this returns protected personal data: state why you need it with ?purpose=… or an X-Purpose header; it is recorded in the access log",
        ));
    }
    if purpose.chars().count() > MAX_PURPOSE_CHARS || purpose.chars().any(char::is_control) {
        return Err(AppError::bad_request(
            "bad_purpose",
            format!("a purpose is one line of at most {MAX_PURPOSE_CHARS} characters"),
        ));
    }
    Ok(purpose.to_string())
}

pub fn record(conn: &mut Conn<'_>, access: &Access, at: NaiveDateTime) -> Result<(), AppError> {
    on_conn!(conn, c => diesel::insert_into(access_log::table)
        .values((
            access_log::at.eq(at),
            access_log::user_id.eq(access.user_id),
            access_log::username.eq(&access.username),
            access_log::action.eq(access.action),
            access_log::subject.eq(&access.subject),
            access_log::purpose.eq(&access.purpose),
        ))
        .execute(c))?;
    Ok(())
}

/// Entries after `after_id`, oldest first.
pub fn list(conn: &mut Conn<'_>, after_id: i64, limit: i64) -> Result<Vec<Entry>, AppError> {
    Ok(on_conn!(conn, c => access_log::table
        .filter(access_log::id.gt(after_id))
        .order(access_log::id)
        .limit(limit)
        .select(Entry::as_select())
        .load(c))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purpose_is_required_and_bounded() {
        assert_eq!(
            validate_purpose(None).unwrap_err().to_string(),
            validate_purpose(Some("  ")).unwrap_err().to_string()
        );
        assert!(validate_purpose(Some("referral follow-up")).is_ok());
        assert!(validate_purpose(Some(&"x".repeat(501))).is_err());
        assert!(validate_purpose(Some("a\nb")).is_err());
        assert_eq!(validate_purpose(Some(" case 12 ")).expect("ok"), "case 12");
    }

    #[test]
    fn records_and_lists_in_order() -> Result<(), AppError> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
        let (_, mut db) = crate::db::connect(&url)?;
        let mut conn = db.conn();
        for n in 0..3 {
            let a = Access {
                user_id: 1,
                username: "admin".into(),
                action: "submission_xml",
                subject: format!("uuid:{n}"),
                purpose: "audit test".into(),
            };
            record(&mut conn, &a, crate::users::now())?;
        }
        let all = list(&mut conn, 0, 10)?;
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].subject, "uuid:2");
        assert_eq!(list(&mut conn, all[0].id, 10)?.len(), 2);
        Ok(())
    }
}
