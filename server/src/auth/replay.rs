//! Digest nonce counts are single-use: a request captured on the wire (Digest over plain http
//! signs the URL, not the body) cannot be sent again.
//!
//! Every instance keeps the nonce counts it has seen in memory, which refuses replays of any
//! request to that instance at no cost. A state-changing request (a submission) also records its
//! nonce count in the database, in the same transaction as the submission, so a replay sent to
//! another instance on the same database is refused as well. A replayed request gets a fresh
//! challenge with `stale=true`, which a real client answers without asking for the password.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::digest_nonce_uses;
use crate::db::Conn;
use crate::error::AppError;
use crate::{insert_rows, on_conn};

/// One use of a nonce: the nonce, the client's nonce count and client nonce.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NonceUse {
    pub nonce: String,
    pub nc: String,
    pub cnonce: String,
}

/// A nonce's expiry (unix seconds) and the (nc, cnonce) pairs seen with it.
type Uses = (i64, HashSet<(String, String)>);

/// Nonces this instance has seen.
#[derive(Default)]
pub struct SeenNonces {
    seen: Mutex<HashMap<String, Uses>>,
}

/// Bound on remembered nonces; past it, expired ones are dropped.
const MAX_REMEMBERED: usize = 100_000;

impl SeenNonces {
    /// Whether this is the first time `u` is seen (and remembers it). `expires` is when the nonce
    /// stops being accepted anyway.
    pub fn first_use(&self, u: &NonceUse, now: i64, expires: i64) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            // A poisoned lock only means another request panicked; the database check of
            // state-changing requests still holds.
            return true;
        };
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, (exp, _)| *exp > now);
        }
        if seen.len() >= MAX_REMEMBERED {
            // Still full of live nonces: forget the ones closest to expiry.
            let mut expiries: Vec<i64> = seen.values().map(|(e, _)| *e).collect();
            expiries.sort_unstable();
            let cut = expiries[expiries.len() / 2];
            seen.retain(|_, (exp, _)| *exp > cut);
        }
        let entry = seen
            .entry(u.nonce.clone())
            .or_insert_with(|| (expires, HashSet::new()));
        entry.1.insert((u.nc.clone(), u.cnonce.clone()))
    }
}

/// The error a replayed request gets; the caller answers it with a fresh stale challenge.
pub fn replayed() -> AppError {
    AppError::client(
        actix_web::http::StatusCode::UNAUTHORIZED,
        "nonce_reused",
        "this request's Digest nonce count was already used; send it again with a new one",
    )
}

pub fn is_replayed(e: &AppError) -> bool {
    matches!(
        e,
        AppError::Client {
            code: "nonce_reused",
            ..
        }
    )
}

/// Records the use in the database; a use seen before is refused with [`replayed`]. Runs in the
/// writer, in the same transaction as the request's own write.
pub fn record(conn: &mut Conn<'_>, u: &NonceUse, now: NaiveDateTime) -> Result<(), AppError> {
    record_all(conn, &[(u, now)])
}

/// Records the uses (and their times) of several requests written together; if any was seen
/// before, or comes twice among them, nothing is recorded and the answer is [`replayed`].
pub fn record_all(
    conn: &mut Conn<'_>,
    uses: &[(&NonceUse, NaiveDateTime)],
) -> Result<(), AppError> {
    if uses.is_empty() {
        return Ok(());
    }
    // Each use exactly: a phone keeps one nonce for many requests, so reading every use of
    // the nonces would read thousands of rows.
    let stored: Vec<(String, String, String)> = on_conn!(conn, c => {
        let mut q = digest_nonce_uses::table
            .select((
                digest_nonce_uses::nonce,
                digest_nonce_uses::nc,
                digest_nonce_uses::cnonce,
            ))
            .into_boxed();
        for (u, _) in uses {
            q = q.or_filter(
                digest_nonce_uses::nonce
                    .eq(&u.nonce)
                    .and(digest_nonce_uses::nc.eq(&u.nc))
                    .and(digest_nonce_uses::cnonce.eq(&u.cnonce)),
            );
        }
        q.load(c)
    })?;
    let mut seen: HashSet<(&str, &str, &str)> = stored
        .iter()
        .map(|(n, nc, cn)| (n.as_str(), nc.as_str(), cn.as_str()))
        .collect();
    for (u, _) in uses {
        if !seen.insert((&u.nonce, &u.nc, &u.cnonce)) {
            return Err(replayed());
        }
    }
    let rows: Vec<_> = uses
        .iter()
        .map(|(u, at)| {
            (
                digest_nonce_uses::nonce.eq(&u.nonce),
                digest_nonce_uses::nc.eq(&u.nc),
                digest_nonce_uses::cnonce.eq(&u.cnonce),
                digest_nonce_uses::used_at.eq(*at),
            )
        })
        .collect();
    // Two instances inserting the same use at once: one gets a unique violation, the writer
    // runs the write again, and the check above refuses it.
    insert_rows!(conn, digest_nonce_uses::table, rows.as_slice(), (q, c) => q.execute(c))?;
    Ok(())
}

/// Removes uses of nonces that have expired anyway.
pub fn purge(conn: &mut Conn<'_>, older_than: NaiveDateTime) -> Result<usize, AppError> {
    Ok(on_conn!(conn, c => diesel::delete(
        digest_nonce_uses::table.filter(digest_nonce_uses::used_at.lt(older_than)),
    )
    .execute(c))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(nc: &str) -> NonceUse {
        NonceUse {
            nonce: "n1".into(),
            nc: nc.into(),
            cnonce: "c".into(),
        }
    }

    #[test]
    fn memory_refuses_a_second_use() {
        let seen = SeenNonces::default();
        assert!(seen.first_use(&u("00000001"), 0, 100));
        assert!(seen.first_use(&u("00000002"), 0, 100));
        assert!(!seen.first_use(&u("00000001"), 0, 100));
    }

    #[test]
    fn memory_stays_bounded() {
        let seen = SeenNonces::default();
        for n in 0..(MAX_REMEMBERED + 10) {
            let use_ = NonceUse {
                nonce: format!("n{n}"),
                nc: "1".into(),
                cnonce: "c".into(),
            };
            seen.first_use(&use_, 0, n as i64);
        }
        assert!(seen.seen.lock().map(|s| s.len()).unwrap_or(0) <= MAX_REMEMBERED);
    }

    #[test]
    fn database_refuses_a_second_use() -> Result<(), AppError> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
        let (_, mut db) = crate::db::connect(&url)?;
        let mut conn = db.conn();
        let now = crate::users::now();
        record(&mut conn, &u("1"), now)?;
        assert!(is_replayed(&record(&mut conn, &u("1"), now).unwrap_err()));
        record(&mut conn, &u("2"), now)?;
        assert_eq!(purge(&mut conn, now + chrono::Duration::seconds(1))?, 2);
        record(&mut conn, &u("1"), now)?;
        Ok(())
    }

    #[test]
    fn uses_recorded_together_are_refused_whole_when_one_was_seen_or_repeats(
    ) -> Result<(), AppError> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
        let (_, mut db) = crate::db::connect(&url)?;
        let mut conn = db.conn();
        let now = crate::users::now();
        record_all(&mut conn, &[(&u("1"), now), (&u("2"), now)])?;
        let repeated = record_all(&mut conn, &[(&u("3"), now), (&u("3"), now)]).unwrap_err();
        assert!(is_replayed(&repeated));
        let seen_before = record_all(&mut conn, &[(&u("4"), now), (&u("2"), now)]).unwrap_err();
        assert!(is_replayed(&seen_before));
        record_all(&mut conn, &[(&u("3"), now), (&u("4"), now)])?;
        assert!(is_replayed(&record(&mut conn, &u("4"), now).unwrap_err()));
        assert_eq!(purge(&mut conn, now + chrono::Duration::seconds(1))?, 4);
        Ok(())
    }
}
