//! Statements diesel's query builder cannot express on both backends: multi-row upserts with
//! RETURNING, INSERT … SELECT with window functions, EXCEPT. One statement carries many rows, so
//! a submission's whole change to the figures is one round trip, also on PostgreSQL.

use std::fmt::Write as _;

use chrono::NaiveDate;
use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Bool, Date, Nullable, Text};
use diesel::sqlite::Sqlite;
use diesel::{QueryableByName, RunQueryDsl};

use crate::db::Conn;
use crate::error::AppError;

/// Bind parameters stay far below both backends' limits (SQLite 32,766; PostgreSQL 65,535).
pub const MAX_BINDS: usize = 30_000;

#[derive(Debug, Clone)]
pub enum Bind {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Date(NaiveDate),
    Bool(bool),
}

impl From<&str> for Bind {
    fn from(v: &str) -> Self {
        Bind::Text(v.to_string())
    }
}

impl From<String> for Bind {
    fn from(v: String) -> Self {
        Bind::Text(v)
    }
}

impl From<i64> for Bind {
    fn from(v: i64) -> Self {
        Bind::Int(v)
    }
}

impl From<NaiveDate> for Bind {
    fn from(v: NaiveDate) -> Self {
        Bind::Date(v)
    }
}

impl From<bool> for Bind {
    fn from(v: bool) -> Self {
        Bind::Bool(v)
    }
}

/// SQL text with its binds, written with the placeholders of the connection's backend.
pub struct Sql {
    pg: bool,
    text: String,
    binds: Vec<Bind>,
}

macro_rules! bound {
    ($backend:ty, $sql:expr) => {{
        let mut q = diesel::sql_query($sql.text).into_boxed::<$backend>();
        for b in $sql.binds {
            q = match b {
                Bind::Text(v) => q.bind::<Text, _>(v),
                Bind::OptText(v) => q.bind::<Nullable<Text>, _>(v),
                Bind::Int(v) => q.bind::<BigInt, _>(v),
                Bind::Date(v) => q.bind::<Date, _>(v),
                Bind::Bool(v) => q.bind::<Bool, _>(v),
            };
        }
        q
    }};
}

impl Sql {
    pub fn new(conn: &Conn<'_>, text: &str) -> Sql {
        Sql {
            pg: matches!(conn, Conn::Pg(_)),
            text: text.to_string(),
            binds: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `value`.
    pub fn bind(&mut self, value: impl Into<Bind>) -> &mut Self {
        self.binds.push(value.into());
        if self.pg {
            let _ = write!(self.text, "${}", self.binds.len());
        } else {
            self.text.push('?');
        }
        self
    }

    /// Appends `(?, ?, …)` for a row of values.
    pub fn row(&mut self, values: Vec<Bind>) -> &mut Self {
        self.text.push('(');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(v);
        }
        self.text.push(')');
        self
    }

    /// Appends `?, ?, …` for a list (never empty: callers skip empty lists).
    pub fn list<T: Into<Bind> + Clone>(&mut self, values: &[T]) -> &mut Self {
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(v.clone());
        }
        self
    }

    pub fn execute(self, conn: &mut Conn<'_>) -> Result<usize, AppError> {
        Ok(match conn {
            Conn::Sqlite(c) => bound!(Sqlite, self).execute(&mut **c)?,
            Conn::Pg(c) => bound!(Pg, self).execute(&mut **c)?,
        })
    }

    pub fn load<T>(self, conn: &mut Conn<'_>) -> Result<Vec<T>, AppError>
    where
        T: QueryableByName<Sqlite> + QueryableByName<Pg> + 'static,
    {
        Ok(match conn {
            Conn::Sqlite(c) => bound!(Sqlite, self).load::<T>(&mut **c)?,
            Conn::Pg(c) => bound!(Pg, self).load::<T>(&mut **c)?,
        })
    }
}
