//! Webhooks on submission events: what they carry and how they are signed.
//!
//! A payload names the submission (instanceID, form, version, review state) and what happened,
//! never an answer, a name or a comment: a receiver that needs more asks the API with its own
//! credentials, where scope and the access log apply.
//!
//! Each request carries `X-Fieldtally-Signature: t=<unix seconds>,v1=<hex>`, where `<hex>` is
//! HMAC-SHA256 with the target's secret over `<unix seconds>.<body>`. The timestamp is that of
//! the attempt, so a receiver can refuse old requests (replays) as well as forged ones.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{outbox, Kind};
use crate::db::schema::submissions;
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;
use crate::users::now;

pub const CREATED: &str = "submission.created";
pub const EDITED: &str = "submission.edited";
pub const REVIEW_CHANGED: &str = "submission.review_changed";
/// Deleted by an administrator or erased (`fieldtally subject erase`): a receiver should
/// remove its copy.
pub const DELETED: &str = "submission.deleted";
/// Every event a webhook can receive.
pub const EVENTS: [&str; 4] = [CREATED, EDITED, REVIEW_CHANGED, DELETED];

pub const SIGNATURE_HEADER: &str = "x-fieldtally-signature";
pub const EVENT_HEADER: &str = "x-fieldtally-event";
pub const DELIVERY_HEADER: &str = "x-fieldtally-delivery";

/// The signature header's value for `body` sent at `timestamp` (unix seconds).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> Result<String, AppError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|e| AppError::internal(format!("signing key: {e}")))?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

type SubmissionRow = (String, String, String, String, NaiveDateTime, NaiveDateTime);

/// Queues `event` about a submission for every enabled webhook that receives it; runs inside
/// the write that made the change. `previous_state` is the review state before a review change.
pub fn enqueue_submission_event(
    conn: &mut Conn<'_>,
    submission_id: i64,
    event: &str,
    previous_state: Option<&str>,
) -> Result<usize, AppError> {
    let targets = super::enabled(conn, Kind::Webhook)?;
    enqueue_to(conn, &targets, submission_id, event, previous_state)
}

/// Queues the events `(submission id, event)` of several submissions, in order, reading the
/// enabled webhooks once.
pub fn enqueue_submission_events(
    conn: &mut Conn<'_>,
    events: &[(i64, &str)],
) -> Result<(), AppError> {
    if events.is_empty() {
        return Ok(());
    }
    let targets = super::enabled(conn, Kind::Webhook)?;
    for (submission_id, event) in events {
        enqueue_to(conn, &targets, *submission_id, event, None)?;
    }
    Ok(())
}

fn enqueue_to(
    conn: &mut Conn<'_>,
    targets: &[super::Target],
    submission_id: i64,
    event: &str,
    previous_state: Option<&str>,
) -> Result<usize, AppError> {
    let targets: Vec<_> = targets
        .iter()
        .filter(|t| t.settings.events.iter().any(|e| e == event))
        .collect();
    if targets.is_empty() {
        return Ok(0);
    }
    let (instance_id, form_id, form_version, review_state, created_at, updated_at): SubmissionRow =
        on_conn!(conn, c => submissions::table
            .find(submission_id)
            .select((
                submissions::instance_id,
                submissions::form_id,
                submissions::form_version,
                submissions::review_state,
                submissions::created_at,
                submissions::updated_at,
            ))
            .first(c))?;
    let mut submission = json!({
        "instance_id": instance_id,
        "form_id": form_id,
        "form_version": form_version,
        "review_state": review_state,
        "created_at": created_at,
        "updated_at": updated_at,
    });
    if let Some(p) = previous_state {
        submission["previous_review_state"] = json!(p);
    }
    let payload = json!({
        "event": event,
        "occurred_at": now(),
        "submission": submission,
    })
    .to_string();
    for t in &targets {
        outbox::enqueue(conn, t.id, event, &payload)?;
    }
    Ok(targets.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        let s = signature(b"secret", 1_700_000_000, br#"{"a":1}"#).expect("sign");
        assert_eq!(
            s,
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }
}
