//! Rate limiting of sign-in (`POST /api/v1/auth/token`, Basic and Digest on the OpenRosa
//! routes): failed attempts are counted per account and per client address; past the limit the
//! account or the address is locked out for a while, even with the right password.
//!
//! The counts live in the database, not in memory, so that every server instance on one database
//! enforces the same limits: an attacker gains nothing by spreading guesses over instances.
//! Counting a failure is one atomic `UPDATE … SET failures = failures + 1`, so concurrent
//! failures on several instances are all counted.

use std::net::IpAddr;

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;

use crate::db::schema::auth_throttle;
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;

/// How many failures within `window` lock the account or address for `lockout`.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max_failures: i64,
    pub window: Duration,
    pub lockout: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub account: Limit,
    pub address: Limit,
}

/// The throttle key of an account. Unknown user names are counted too, so that a lock-out does
/// not reveal which names exist; names are cut to 64 characters (the longest valid one).
pub fn account_key(username: &str) -> String {
    let name: String = username.chars().take(64).collect();
    format!("user:{}", name.to_lowercase())
}

/// The throttle key of a client address; IPv6 clients are counted per /64, the block one
/// subscriber usually gets.
pub fn address_key(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => format!("addr:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("addr:{v4}"),
            None => {
                let s = v6.segments();
                format!("addr:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// A lock-out in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    /// Seconds until the sign-in may be tried again.
    pub retry_after: i64,
    /// `account` or `address`.
    pub what: &'static str,
}

impl Locked {
    pub fn into_error(self) -> AppError {
        let minutes = (self.retry_after + 59) / 60;
        let whom = if self.what == "account" {
            "this account"
        } else {
            "your network address"
        };
        AppError::TooManyAttempts {
            retry_after: self.retry_after,
            message: format!(
                "too many failed sign-ins for {whom}; sign-in is locked for {minutes} more minute(s). Ask your supervisor if you have forgotten the password."
            ),
        }
    }
}

/// What the throttle holds on some keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The longest lock-out in force on any of the keys.
    pub locked: Option<Locked>,
    /// The keys with failures on record (so that a success has something to reset).
    pub recorded: Vec<String>,
}

/// The standing of these keys, in one query: it runs before every authenticated request.
pub fn standing(
    conn: &mut Conn<'_>,
    keys: &[String],
    now: NaiveDateTime,
) -> Result<Standing, AppError> {
    // The keys are compared one by one: PostgreSQL plans `key = ANY($1)` about ten times slower
    // than a comparison.
    let Some((first, others)) = keys.split_first() else {
        return Ok(Standing {
            locked: None,
            recorded: Vec::new(),
        });
    };
    let rows: Vec<(String, Option<NaiveDateTime>)> = on_conn!(conn, c => {
        let mut any_key = auth_throttle::table
            .select((auth_throttle::key, auth_throttle::locked_until))
            .filter(auth_throttle::key.eq(first))
            .into_boxed();
        for key in others {
            any_key = any_key.or_filter(auth_throttle::key.eq(key));
        }
        any_key.load(c)
    })?;
    let locked = rows
        .iter()
        .filter_map(|(key, until)| {
            let until = until.filter(|u| *u > now)?;
            let retry_after = (until - now).num_seconds().max(1);
            let what = if key.starts_with("user:") {
                "account"
            } else {
                "address"
            };
            Some(Locked { retry_after, what })
        })
        .max_by_key(|l| l.retry_after);
    Ok(Standing {
        locked,
        recorded: rows.into_iter().map(|(key, _)| key).collect(),
    })
}

/// Counts one failed sign-in against `key`, locking it once the limit is reached.
pub fn record_failure(
    conn: &mut Conn<'_>,
    key: &str,
    limit: Limit,
    now: NaiveDateTime,
) -> Result<(), AppError> {
    let window_open = now - limit.window;
    let counted = on_conn!(conn, c => diesel::update(
        auth_throttle::table
            .filter(auth_throttle::key.eq(key))
            .filter(auth_throttle::window_start.ge(window_open)),
    )
    .set((
        auth_throttle::failures.eq(auth_throttle::failures + 1),
        auth_throttle::updated_at.eq(now),
    ))
    .execute(c))?;
    if counted == 0 {
        // No row, or its window has passed: start a new window.
        let restarted = on_conn!(conn, c => diesel::update(auth_throttle::table.find(key))
            .set((
                auth_throttle::failures.eq(1),
                auth_throttle::window_start.eq(now),
                auth_throttle::updated_at.eq(now),
            ))
            .execute(c))?;
        if restarted == 0 {
            // A concurrent insert by another instance makes this fail with a unique violation;
            // the writer then runs the whole write again, which takes the update path.
            on_conn!(conn, c => diesel::insert_into(auth_throttle::table)
                .values((
                    auth_throttle::key.eq(key),
                    auth_throttle::failures.eq(1),
                    auth_throttle::window_start.eq(now),
                    auth_throttle::updated_at.eq(now),
                ))
                .execute(c))?;
        }
    }
    on_conn!(conn, c => diesel::update(
        auth_throttle::table
            .filter(auth_throttle::key.eq(key))
            .filter(auth_throttle::failures.ge(limit.max_failures))
            .filter(auth_throttle::locked_until.is_null().or(auth_throttle::locked_until.lt(now))),
    )
    .set(auth_throttle::locked_until.eq(now + limit.lockout))
    .execute(c))?;
    Ok(())
}

/// Forgets the failures of an account after a successful sign-in. The address's count stays:
/// signing in to one's own account must not reset guesses at others'.
pub fn record_success(conn: &mut Conn<'_>, account_key: &str) -> Result<(), AppError> {
    on_conn!(conn, c => diesel::delete(
        auth_throttle::table
            .filter(auth_throttle::key.eq(account_key))
            .filter(auth_throttle::locked_until.is_null()),
    )
    .execute(c))?;
    Ok(())
}

/// Removes rows whose window and lock-out have both passed.
pub fn purge(conn: &mut Conn<'_>, older_than: NaiveDateTime) -> Result<usize, AppError> {
    Ok(on_conn!(conn, c => diesel::delete(
        auth_throttle::table
            .filter(auth_throttle::updated_at.lt(older_than))
            .filter(auth_throttle::locked_until.is_null().or(auth_throttle::locked_until.lt(older_than))),
    )
    .execute(c))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit() -> Limit {
        Limit {
            max_failures: 3,
            window: Duration::minutes(15),
            lockout: Duration::minutes(10),
        }
    }

    #[test]
    fn locks_after_the_limit_and_unlocks_after_the_lockout() -> Result<(), AppError> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
        let (_, mut db) = crate::db::connect(&url)?;
        let mut conn = db.conn();
        let t0 = crate::users::now();
        let keys = vec![
            account_key("Lan"),
            address_key("10.0.0.1".parse().expect("ip")),
        ];
        let locked = |conn: &mut Conn<'_>, at| standing(conn, &keys, at).map(|s| s.locked);
        let recorded = |conn: &mut Conn<'_>| standing(conn, &keys, t0).map(|s| s.recorded);
        assert_eq!(recorded(&mut conn)?, Vec::<String>::new());
        for n in 0..3 {
            assert_eq!(locked(&mut conn, t0)?, None, "after {n} failures");
            record_failure(&mut conn, &keys[0], limit(), t0)?;
        }
        assert_eq!(recorded(&mut conn)?, vec![keys[0].clone()]);
        let locked_now = locked(&mut conn, t0)?.expect("locked");
        assert_eq!(locked_now.what, "account");
        assert_eq!(locked_now.retry_after, 600);
        // A success does not lift a lock-out.
        record_success(&mut conn, &keys[0])?;
        assert!(locked(&mut conn, t0 + Duration::minutes(9))?.is_some());
        assert_eq!(locked(&mut conn, t0 + Duration::minutes(11))?, None);
        // The window restarts once it has passed.
        let later = t0 + Duration::minutes(20);
        record_failure(&mut conn, &keys[0], limit(), later)?;
        assert_eq!(locked(&mut conn, later)?, None);
        assert_eq!(recorded(&mut conn)?, vec![keys[0].clone()]);
        assert_eq!(purge(&mut conn, later + Duration::minutes(1))?, 1);
        assert_eq!(recorded(&mut conn)?, Vec::<String>::new());
        Ok(())
    }

    #[test]
    fn keys_are_normalized() {
        assert_eq!(account_key("LAN"), "user:lan");
        assert_eq!(account_key(&"x".repeat(500)).len(), 5 + 64);
        assert_eq!(
            address_key("2001:db8:1:2:3:4:5:6".parse().expect("ip")),
            "addr:2001:db8:1:2::/64"
        );
        assert_eq!(
            address_key("::ffff:192.0.2.7".parse().expect("ip")),
            "addr:192.0.2.7"
        );
    }
}
