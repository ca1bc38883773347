//! Periodic clean-up of rows that only matter for a while: expired sign-in counters, used
//! Digest nonces, and push deliveries delivered long ago. Every instance runs it; the deletes
//! are idempotent.

use std::time::Duration;

use chrono::Duration as Age;

use crate::auth::{digest, replay, throttle};
use crate::db::Db;
use crate::push::outbox;
use crate::users::now;

const EVERY: Duration = Duration::from_secs(600);

pub async fn run(db: Db) {
    loop {
        tokio::time::sleep(EVERY).await;
        let result = db
            .write(|conn| {
                let t = now();
                let counters = throttle::purge(conn, t - Age::days(1))?;
                let nonces =
                    replay::purge(conn, t - Age::seconds(digest::NONCE_LIFETIME_SECS + 120))?;
                let deliveries =
                    outbox::purge_delivered(conn, t - Age::days(outbox::KEEP_DELIVERED_DAYS))?;
                Ok((counters, nonces, deliveries))
            })
            .await;
        match result {
            Ok((counters, nonces, deliveries)) => {
                tracing::debug!(
                    counters,
                    nonces,
                    deliveries,
                    "purged expired sign-in counters, nonces and old deliveries"
                )
            }
            Err(e) => tracing::warn!(error = %e, "maintenance failed"),
        }
    }
}
