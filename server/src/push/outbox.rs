//! The outbox: deliveries waiting to be sent, being sent, sent, or given up.
//!
//! A delivery is inserted by the write that causes it, in the same transaction. Workers (one
//! per server; several servers may share a PostgreSQL database) claim due deliveries by taking a
//! lease in a write: writes of all instances take turns (see `Conn::write_transaction`), so two
//! workers never hold the same delivery. A worker that dies leaves its lease to expire, and
//! another one (or itself, restarted) sends the delivery again with the same idempotency key.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::Target;
use crate::db::schema::{deliveries, push_targets};
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;
use crate::users::now;

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

/// Longest error text kept with a delivery.
const MAX_ERROR_CHARS: usize = 500;

/// How retries are spaced and when they stop.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The wait after the first failure; doubled after each further one.
    pub base: Duration,
    /// The longest wait between two attempts.
    pub max: Duration,
    /// A delivery still failing this long after it was created (or retried by hand) fails.
    pub give_up: Duration,
}

impl RetryPolicy {
    /// The wait before the next attempt after `attempts` failed ones: exponential, capped, with
    /// "equal jitter" (between half and all of it) so that deliveries that failed together do
    /// not all come back at the same moment.
    pub fn delay(&self, attempts: i64, jitter: f64) -> Duration {
        let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let full = self
            .base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.max);
        full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// A stable, unguessable key for one delivery, sent with every attempt.
fn new_key() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Adds a delivery; runs inside the write that causes it.
pub fn enqueue(
    conn: &mut Conn<'_>,
    target_id: i64,
    event: &str,
    payload: &str,
) -> Result<i64, AppError> {
    let at = now();
    Ok(on_conn!(conn, c => diesel::insert_into(deliveries::table)
        .values((
            deliveries::target_id.eq(target_id),
            deliveries::event.eq(event),
            deliveries::idempotency_key.eq(new_key()),
            deliveries::payload.eq(payload),
            deliveries::status.eq(PENDING),
            deliveries::attempts.eq(0i64),
            deliveries::created_at.eq(at),
            deliveries::retry_from.eq(at),
            deliveries::next_attempt_at.eq(at),
        ))
        .returning(deliveries::id)
        .get_result(c))?)
}

/// Records a delivery that could not even be built (a mapping that does not fit the figures):
/// it fails at once, so the province sees why nothing was pushed.
pub fn enqueue_failed(
    conn: &mut Conn<'_>,
    target_id: i64,
    event: &str,
    error: &str,
) -> Result<i64, AppError> {
    let id = enqueue(conn, target_id, event, "")?;
    on_conn!(conn, c => diesel::update(deliveries::table.find(id))
        .set((
            deliveries::status.eq(FAILED),
            deliveries::last_error.eq(truncate(error)),
        ))
        .execute(c))?;
    Ok(id)
}

/// A delivery a worker holds a lease on, with its target.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub event: String,
    pub idempotency_key: String,
    pub payload: String,
    pub target: Target,
}

/// Whether any delivery is due (a read, before taking the writer to claim).
pub fn has_due(conn: &mut Conn<'_>) -> Result<bool, AppError> {
    let at = now();
    let first: Option<i64> = on_conn!(conn, c => deliveries::table
        .inner_join(push_targets::table)
        .filter(push_targets::enabled.eq(true))
        .filter(deliveries::status.eq(PENDING))
        .filter(deliveries::next_attempt_at.le(at))
        .filter(deliveries::lease_until.is_null().or(deliveries::lease_until.le(at)))
        .select(deliveries::id)
        .first(c)
        .optional())?;
    Ok(first.is_some())
}

/// Takes leases on up to `limit` due deliveries of enabled targets for `worker`; runs in the
/// writer.
pub fn claim(
    conn: &mut Conn<'_>,
    worker: &str,
    lease: Duration,
    limit: i64,
) -> Result<Vec<Claimed>, AppError> {
    let at = now();
    type Row = (i64, i64, String, String, String);
    let rows: Vec<Row> = on_conn!(conn, c => deliveries::table
        .inner_join(push_targets::table)
        .filter(deliveries::status.eq(PENDING))
        .filter(deliveries::next_attempt_at.le(at))
        .filter(deliveries::lease_until.is_null().or(deliveries::lease_until.le(at)))
        .filter(push_targets::enabled.eq(true))
        .order((deliveries::next_attempt_at, deliveries::id))
        .limit(limit)
        .select((
            deliveries::id,
            deliveries::target_id,
            deliveries::event,
            deliveries::idempotency_key,
            deliveries::payload,
        ))
        .load(c))?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let until = at + chrono_duration(lease);
    on_conn!(conn, c => diesel::update(deliveries::table.filter(deliveries::id.eq_any(&ids)))
        .set((
            deliveries::leased_by.eq(worker),
            deliveries::lease_until.eq(until),
        ))
        .execute(c))?;
    let mut out = Vec::new();
    for (id, target_id, event, idempotency_key, payload) in rows {
        out.push(Claimed {
            id,
            event,
            idempotency_key,
            payload,
            target: super::get(conn, target_id)?,
        });
    }
    Ok(out)
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_ERROR_CHARS).collect()
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Failed in a way that may pass (no answer, a server error): tried again later.
    Failed(String),
    /// The receiver read the delivery and refused it: sending it again cannot help, so it
    /// fails at once (a manual retry is still possible once the cause is fixed).
    Refused(String),
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Delivered,
    /// Failed; tried again at this time.
    Retry(NaiveDateTime),
    /// Failed for the last time.
    Failed,
    /// The lease had passed to another worker (this one took too long): its outcome decides.
    LeaseLost,
}

/// Records an attempt's outcome, if `worker` still holds the lease; runs in the writer.
pub fn record(
    conn: &mut Conn<'_>,
    id: i64,
    worker: &str,
    outcome: &Attempt,
    policy: &RetryPolicy,
    jitter: f64,
) -> Result<Recorded, AppError> {
    let held: Option<(i64, NaiveDateTime)> = on_conn!(conn, c => deliveries::table
        .find(id)
        .filter(deliveries::leased_by.eq(worker))
        .filter(deliveries::status.eq(PENDING))
        .select((deliveries::attempts, deliveries::retry_from))
        .first(c)
        .optional())?;
    let Some((attempts, retry_from)) = held else {
        return Ok(Recorded::LeaseLost);
    };
    let attempts = attempts + 1;
    let at = now();
    let row = deliveries::table.find(id);
    let recorded = match outcome {
        Attempt::Delivered => {
            on_conn!(conn, c => diesel::update(row)
                .set((
                    deliveries::status.eq(DELIVERED),
                    deliveries::attempts.eq(attempts),
                    deliveries::delivered_at.eq(Some(at)),
                    deliveries::last_error.eq(None::<String>),
                    deliveries::leased_by.eq(None::<String>),
                    deliveries::lease_until.eq(None::<NaiveDateTime>),
                ))
                .execute(c))?;
            Recorded::Delivered
        }
        Attempt::Failed(error) | Attempt::Refused(error) => {
            let next = at + chrono_duration(policy.delay(attempts, jitter));
            let deadline = retry_from + chrono_duration(policy.give_up);
            let last = matches!(outcome, Attempt::Refused(_)) || next > deadline;
            let (status, recorded) = if last {
                (FAILED, Recorded::Failed)
            } else {
                (PENDING, Recorded::Retry(next))
            };
            on_conn!(conn, c => diesel::update(row)
                .set((
                    deliveries::status.eq(status),
                    deliveries::attempts.eq(attempts),
                    deliveries::next_attempt_at.eq(next),
                    deliveries::last_error.eq(Some(truncate(error))),
                    deliveries::leased_by.eq(None::<String>),
                    deliveries::lease_until.eq(None::<NaiveDateTime>),
                ))
                .execute(c))?;
            recorded
        }
    };
    Ok(recorded)
}

/// Sends a failed delivery again, with a fresh give-up clock; runs in the writer.
pub fn retry(conn: &mut Conn<'_>, id: i64) -> Result<Delivery, AppError> {
    let d = get(conn, id)?;
    if d.status != FAILED {
        return Err(AppError::conflict(
            "not_failed",
            format!(
                "delivery {id} is {}; only failed deliveries are retried",
                d.status
            ),
        ));
    }
    if d.attempts == 0 && d.payload_empty {
        return Err(AppError::conflict(
            "nothing_to_send",
            "this delivery could not be built (see its last error); fix the target's mapping, and the next push sends the values",
        ));
    }
    let at = now();
    on_conn!(conn, c => diesel::update(deliveries::table.find(id))
        .set((
            deliveries::status.eq(PENDING),
            deliveries::retry_from.eq(at),
            deliveries::next_attempt_at.eq(at),
            deliveries::leased_by.eq(None::<String>),
            deliveries::lease_until.eq(None::<NaiveDateTime>),
        ))
        .execute(c))?;
    get(conn, id)
}

/// A delivery as `GET /api/v1/deliveries` shows it (the payload is not shown: fetch it from
/// the values API or the submission).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub target_id: i64,
    pub target: String,
    pub kind: String,
    pub event: String,
    pub idempotency_key: String,
    pub status: String,
    pub attempts: i64,
    pub created_at: NaiveDateTime,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: Option<NaiveDateTime>,
    /// Whether a worker is sending it right now.
    pub sending: bool,
    pub last_error: Option<String>,
    pub delivered_at: Option<NaiveDateTime>,
    #[serde(skip)]
    pub payload_empty: bool,
}

type DeliveryRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    String,
    i64,
    NaiveDateTime,
    NaiveDateTime,
    Option<NaiveDateTime>,
    Option<String>,
    Option<NaiveDateTime>,
    bool,
);

macro_rules! delivery_columns {
    () => {
        (
            deliveries::id,
            deliveries::target_id,
            push_targets::name,
            push_targets::kind,
            deliveries::event,
            deliveries::idempotency_key,
            deliveries::status,
            deliveries::attempts,
            deliveries::created_at,
            deliveries::next_attempt_at,
            deliveries::lease_until,
            deliveries::last_error,
            deliveries::delivered_at,
            deliveries::payload.eq(""),
        )
    };
}

fn view(r: DeliveryRow, at: NaiveDateTime) -> Delivery {
    let (
        id,
        target_id,
        target,
        kind,
        event,
        idempotency_key,
        status,
        attempts,
        created_at,
        next_attempt_at,
        lease_until,
        last_error,
        delivered_at,
        payload_empty,
    ) = r;
    let pending = status == PENDING;
    Delivery {
        id,
        target_id,
        target,
        kind,
        event,
        idempotency_key,
        attempts,
        created_at,
        next_attempt_at: pending.then_some(next_attempt_at),
        sending: pending && lease_until.is_some_and(|l| l > at),
        last_error,
        delivered_at,
        status,
        payload_empty,
    }
}

pub fn get(conn: &mut Conn<'_>, id: i64) -> Result<Delivery, AppError> {
    let row: Option<DeliveryRow> = on_conn!(conn, c => deliveries::table
        .inner_join(push_targets::table)
        .filter(deliveries::id.eq(id))
        .select(delivery_columns!())
        .first(c)
        .optional())?;
    row.map(|r| view(r, now()))
        .ok_or_else(|| AppError::not_found("no_delivery", format!("there is no delivery {id}")))
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<String>,
    pub target_id: Option<i64>,
    pub event: Option<String>,
    /// Keyset cursor: deliveries with a smaller id (newest first).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Deliveries, newest first.
pub fn list(conn: &mut Conn<'_>, f: &Filter) -> Result<Vec<Delivery>, AppError> {
    if let Some(s) = &f.status {
        if ![PENDING, DELIVERED, FAILED].contains(&s.as_str()) {
            return Err(AppError::bad_request(
                "bad_status",
                "status is pending, delivered or failed",
            ));
        }
    }
    let rows: Vec<DeliveryRow> = on_conn!(conn, c => {
        let mut q = deliveries::table
            .inner_join(push_targets::table)
            .select(delivery_columns!())
            .order(deliveries::id.desc())
            .limit(f.limit)
            .into_boxed();
        if let Some(s) = &f.status {
            q = q.filter(deliveries::status.eq(s.clone()));
        }
        if let Some(t) = f.target_id {
            q = q.filter(deliveries::target_id.eq(t));
        }
        if let Some(e) = &f.event {
            q = q.filter(deliveries::event.eq(e.clone()));
        }
        if let Some(b) = f.before_id {
            q = q.filter(deliveries::id.lt(b));
        }
        q.load(c)
    })?;
    let at = now();
    Ok(rows.into_iter().map(|r| view(r, at)).collect())
}

/// How long delivered deliveries stay listed.
pub const KEEP_DELIVERED_DAYS: i64 = 90;

/// Removes deliveries delivered before `before` (pending and failed ones stay); runs in the
/// writer. Returns how many went.
pub fn purge_delivered(conn: &mut Conn<'_>, before: NaiveDateTime) -> Result<usize, AppError> {
    Ok(on_conn!(conn, c => diesel::delete(
        deliveries::table
            .filter(deliveries::status.eq(DELIVERED))
            .filter(deliveries::delivered_at.lt(before)),
    )
    .execute(c))?)
}

/// Pending deliveries (the queue's length) and failed ones, for `/metrics`.
pub fn counts(conn: &mut Conn<'_>) -> Result<(i64, i64), AppError> {
    let count = |conn: &mut Conn<'_>, status: &str| -> Result<i64, AppError> {
        Ok(on_conn!(conn, c => deliveries::table
            .filter(deliveries::status.eq(status))
            .count()
            .get_result(c))?)
    };
    Ok((count(conn, PENDING)?, count(conn, FAILED)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::DataKeys;
    use crate::push::{check, create, TargetInput};

    #[test]
    fn a_delivery_is_claimed_once_recorded_and_purged_when_old() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
        let (_, mut db) = crate::db::connect(&url).expect("database");
        let keys = DataKeys::parse(&format!("k1 {}", "ab".repeat(32))).expect("keys");
        let mut conn = db.conn();
        let input = TargetInput {
            name: Some("hook".into()),
            kind: Some("webhook".into()),
            url: Some("https://example.org/hook".into()),
            events: Some(vec!["submission.created".into()]),
            ..Default::default()
        };
        let target = create(&mut conn, &keys, &check(input, None).expect("valid")).expect("target");
        let sent = enqueue(&mut conn, target.id, "submission.created", "{}").expect("enqueue");
        let waiting = enqueue(&mut conn, target.id, "submission.created", "{}").expect("enqueue");
        let lease = Duration::from_secs(60);
        let claimed = claim(&mut conn, "a", lease, 1).expect("claim");
        assert_eq!(claimed.iter().map(|c| c.id).collect::<Vec<_>>(), vec![sent]);
        // Leased: another worker gets only the other one.
        let other = claim(&mut conn, "b", lease, 10).expect("claim");
        assert_eq!(
            other.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![waiting]
        );
        let policy = RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(1),
            give_up: Duration::from_secs(60),
        };
        // Only the lease holder records.
        assert_eq!(
            record(&mut conn, sent, "b", &Attempt::Delivered, &policy, 0.5).expect("record"),
            Recorded::LeaseLost
        );
        assert_eq!(
            record(&mut conn, sent, "a", &Attempt::Delivered, &policy, 0.5).expect("record"),
            Recorded::Delivered
        );
        assert!(matches!(
            record(
                &mut conn,
                waiting,
                "b",
                &Attempt::Failed("HTTP 500".into()),
                &policy,
                0.5
            )
            .expect("record"),
            Recorded::Retry(_)
        ));
        // Not old enough yet: nothing goes.
        let earlier = now() - chrono::Duration::days(1);
        assert_eq!(purge_delivered(&mut conn, earlier).expect("purge"), 0);
        // Old enough: the delivered one goes; the pending one stays.
        let later = now() + chrono::Duration::seconds(1);
        assert_eq!(purge_delivered(&mut conn, later).expect("purge"), 1);
        let left = list(
            &mut conn,
            &Filter {
                limit: 10,
                ..Default::default()
            },
        )
        .expect("list");
        assert_eq!(left.iter().map(|d| d.id).collect::<Vec<_>>(), vec![waiting]);
        assert_eq!(left[0].status, PENDING);
        assert_eq!(left[0].last_error.as_deref(), Some("HTTP 500"));
    }

    #[test]
    fn the_delay_doubles_with_jitter_and_a_cap() {
        let p = RetryPolicy {
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
            give_up: Duration::from_secs(3600),
        };
        assert_eq!(p.delay(1, 1.0), Duration::from_secs(10));
        assert_eq!(p.delay(1, 0.0), Duration::from_secs(5));
        assert_eq!(p.delay(2, 1.0), Duration::from_secs(20));
        assert_eq!(p.delay(3, 1.0), Duration::from_secs(40));
        assert_eq!(p.delay(4, 1.0), Duration::from_secs(60));
        assert_eq!(p.delay(400, 0.0), Duration::from_secs(30));
        let d = p.delay(2, 0.3);
        assert!(d > Duration::from_secs(10) && d < Duration::from_secs(20));
    }
}
