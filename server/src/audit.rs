//! The append-only audit log: who changed what, when. Rows are only ever inserted (the
//! database refuses updates and deletions with triggers); details never hold field values,
//! names or comment texts, only ids and states.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::db::schema::audit_log;
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;
use crate::scope::Scope;
use crate::users::now;

/// Who did something: a person or service account.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: i64,
    pub username: String,
}

impl From<&Scope> for Actor {
    fn from(s: &Scope) -> Self {
        Actor {
            id: s.user_id,
            username: s.username.clone(),
        }
    }
}

/// Appends one entry. Runs inside the caller's write, so the entry and the change it
/// describes commit together or not at all.
pub fn record(
    conn: &mut Conn<'_>,
    actor: &Actor,
    action: &str,
    target: Option<&str>,
    details: Value,
) -> Result<(), AppError> {
    let details = details.to_string();
    on_conn!(conn, c => diesel::insert_into(audit_log::table)
        .values((
            audit_log::at.eq(now()),
            audit_log::actor_id.eq(actor.id),
            audit_log::actor.eq(&actor.username),
            audit_log::action.eq(action),
            audit_log::target.eq(target),
            audit_log::details.eq(&details),
        ))
        .execute(c))?;
    Ok(())
}

#[derive(Debug, Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = audit_log)]
#[schema(as = AuditEntry)]
pub struct Entry {
    pub id: i64,
    pub at: NaiveDateTime,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    /// What the action changed, e.g. `{"role": "collector"}`.
    #[serde(serialize_with = "as_json")]
    #[schema(value_type = Object)]
    pub details: String,
}

fn as_json<S: serde::Serializer>(details: &str, s: S) -> Result<S::Ok, S::Error> {
    let v: Value = serde_json::from_str(details).unwrap_or(Value::Null);
    v.serialize(s)
}

#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub action: Option<String>,
    pub target: Option<String>,
    pub actor: Option<String>,
    pub after_id: Option<i64>,
    pub limit: i64,
}

/// Entries in the order they were written, after the cursor.
pub fn list(conn: &mut Conn<'_>, f: &Filter) -> Result<Vec<Entry>, AppError> {
    Ok(on_conn!(conn, c => {
        let mut q = audit_log::table
            .select(Entry::as_select())
            .order(audit_log::id)
            .limit(f.limit)
            .into_boxed();
        if let Some(v) = &f.action {
            q = q.filter(audit_log::action.eq(v));
        }
        if let Some(v) = &f.target {
            q = q.filter(audit_log::target.eq(v));
        }
        if let Some(v) = &f.actor {
            q = q.filter(audit_log::actor.eq(v));
        }
        if let Some(v) = f.after_id {
            q = q.filter(audit_log::id.gt(v));
        }
        q.load(c)
    })?)
}
