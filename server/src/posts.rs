//! A submission POST as the single writer stores it: its Digest nonce use, the submission, and
//! its webhook event, together with the POSTs next to it in the writer's batch. Each leaves a
//! [`Refresh`]: the writer records them in the indicator backlog before the batch commits.

use chrono::NaiveDateTime;

use crate::auth::replay::{self, NonceUse};
use crate::db::{Answers, Conn, Grouped, Refresh};
use crate::error::AppError;
use crate::push::webhook;
use crate::submissions::{self, Incoming, Outcome, Stored};

/// One POST: the submission and, for a Digest request, the nonce use it spent.
pub struct Post {
    pub incoming: Incoming,
    pub nonce_use: Option<NonceUse>,
}

/// The writer's kind of write for submission POSTs (one for the server, so that the writer
/// groups them).
pub struct Posts;

impl Grouped for Posts {
    type Item = Post;
    type Out = Stored;

    fn apply(&self, conn: &mut Conn<'_>, posts: &[&Post]) -> Result<Answers<Stored>, AppError> {
        store_posts(conn, posts)
    }
}

/// Stores `posts` in the open transaction, with the effect of storing them one after another:
/// each answer, and the refresh its figures need. A replayed nonce or a refused submission
/// fails the whole call; the writer then stores each POST alone.
pub fn store_posts(conn: &mut Conn<'_>, posts: &[&Post]) -> Result<Answers<Stored>, AppError> {
    let uses: Vec<(&NonceUse, NaiveDateTime)> = posts
        .iter()
        .filter_map(|p| Some((p.nonce_use.as_ref()?, p.incoming.received_at)))
        .collect();
    replay::record_all(conn, &uses)?;
    let incoming: Vec<&Incoming> = posts.iter().map(|p| &p.incoming).collect();
    let stored = submissions::store_all(conn, &incoming)?;
    // In the same transaction: a webhook is sent exactly when the change commits.
    let events: Vec<(i64, &str)> = stored
        .iter()
        .filter_map(|s| match s.outcome {
            Outcome::Created => Some((s.submission_id, webhook::CREATED)),
            Outcome::Edited => Some((s.submission_id, webhook::EDITED)),
            Outcome::OlderVersion | Outcome::Duplicate => None,
        })
        .collect();
    webhook::enqueue_submission_events(conn, &events)?;
    Ok(stored
        .into_iter()
        .zip(posts)
        .map(|(s, p)| {
            // Recorded in the same transaction: no stored submission is ever left uncounted.
            let refresh = (s.outcome != Outcome::Duplicate).then_some(Refresh {
                submission_id: s.submission_id,
                by: Some(p.incoming.collector_id),
            });
            (s, refresh)
        })
        .collect())
}
