//! The single writer: one thread owns the write connection and applies the writes that arrive
//! together in one transaction, then commits once and answers every request. One durable commit
//! (one fsync) thus serves many submissions, and the idempotency decisions made inside a write
//! never race with another write of this process.
//!
//! A batch first runs every write directly in the transaction, without savepoints: nearly every
//! batch has no failing write, and savepoints cost (on PostgreSQL each is a subtransaction). If a
//! write fails, the whole transaction is rolled back and the batch runs again with a savepoint
//! per write, so that the failing write alone is undone. Writes are therefore closures that can
//! run more than once; only the run that is committed counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use tokio::sync::{mpsc, oneshot};

use super::{Conn, DbConn};
use crate::error::AppError;

/// How many writes share one transaction at most.
const MAX_BATCH: usize = 256;

trait Job: Send {
    /// Applies the write directly in the open transaction; `Err` means the transaction is
    /// spoiled and the batch must be run again with savepoints.
    fn apply_plain(&mut self, conn: &mut Conn<'_>) -> Result<(), JobFailed>;
    /// Applies the write under its own savepoint; `Err` means the savepoint was rolled back.
    fn apply(&mut self, conn: &mut Conn<'_>) -> Result<(), JobFailed>;
    /// Answers the caller once the batch's fate is known.
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

/// Marker that a job failed; the job keeps its own error to answer with.
struct JobFailed;

impl From<diesel::result::Error> for JobFailed {
    fn from(_: diesel::result::Error) -> Self {
        JobFailed
    }
}

struct Pending<T, F> {
    f: F,
    outcome: Option<Result<T, AppError>>,
    reply: oneshot::Sender<Result<T, AppError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnMut(&mut Conn<'_>) -> Result<T, AppError> + Send,
{
    fn apply_plain(&mut self, conn: &mut Conn<'_>) -> Result<(), JobFailed> {
        let result = (self.f)(conn);
        let failed = result.is_err();
        self.outcome = Some(result);
        if failed {
            Err(JobFailed)
        } else {
            Ok(())
        }
    }

    fn apply(&mut self, conn: &mut Conn<'_>) -> Result<(), JobFailed> {
        let mut result = conn.transaction(|c| (self.f)(c));
        // Another server instance on the same database may have written the same key between
        // our read and our insert; running the write again sees its row and decides correctly.
        if result
            .as_ref()
            .err()
            .is_some_and(AppError::is_unique_violation)
        {
            result = conn.transaction(|c| (self.f)(c));
        }
        let failed = result.is_err();
        self.outcome = Some(result);
        if failed {
            Err(JobFailed)
        } else {
            Ok(())
        }
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let answer = match (committed, self.outcome) {
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(v))) => Ok(v),
            (Err(e), _) => Err(AppError::internal(format!("transaction failed: {e}"))),
            (Ok(()), None) => Err(AppError::internal("write was not applied")),
        };
        // The caller may have gone away (client disconnected); the write stands regardless.
        let _ = self.reply.send(answer);
    }
}

/// Upper bounds of the batch size histogram.
const BATCH_BUCKETS: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// How many writes went into each committed transaction, for `/metrics`.
#[derive(Default)]
pub struct WriterStats {
    buckets: [AtomicU64; BATCH_BUCKETS.len()],
    batches: AtomicU64,
    jobs: AtomicU64,
}

impl WriterStats {
    fn observe(&self, size: usize) {
        for (i, bound) in BATCH_BUCKETS.iter().enumerate() {
            if size <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.jobs.fetch_add(size as u64, Ordering::Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        let buckets: Vec<(usize, u64)> = BATCH_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(b, n)| (*b, n.load(Ordering::Relaxed)))
            .collect();
        crate::metrics::render_batches(
            out,
            &buckets,
            self.batches.load(Ordering::Relaxed),
            self.jobs.load(Ordering::Relaxed),
        );
    }
}

/// A handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Box<dyn Job>>,
    pub stats: Arc<WriterStats>,
}

impl Writer {
    pub fn start(conn: DbConn) -> Writer {
        let (queue, rx) = mpsc::channel::<Box<dyn Job>>(4 * MAX_BATCH);
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        thread::Builder::new()
            .name("fieldtally-writer".into())
            .spawn(move || run(conn, rx, &thread_stats))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the writer thread"));
        Writer { queue, stats }
    }

    /// Whether the writer thread still takes writes.
    pub fn running(&self) -> bool {
        !self.queue.is_closed()
    }

    /// Writes waiting in the queue.
    pub fn queue_length(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    pub async fn run<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnMut(&mut Conn<'_>) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            f,
            outcome: None,
            reply,
        });
        self.queue
            .send(job)
            .await
            .map_err(|_| AppError::internal("the writer has stopped"))?;
        answer
            .await
            .map_err(|_| AppError::internal("the writer dropped the request"))?
    }
}

fn run(mut conn: DbConn, mut rx: mpsc::Receiver<Box<dyn Job>>, stats: &WriterStats) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let committed = commit_batch(&mut conn, &mut batch);
        if let Err(e) = &committed {
            tracing::error!(error = %e, jobs = batch.len(), "write transaction failed");
        }
        stats.observe(batch.len());
        for job in batch {
            job.finish(committed.clone());
        }
    }
}

/// Runs the batch in one transaction without savepoints; if a write fails, rolls that back and
/// runs the batch again with a savepoint per write.
fn commit_batch(conn: &mut DbConn, batch: &mut [Box<dyn Job>]) -> Result<(), String> {
    let plain = conn.conn().write_transaction(|c| {
        for job in batch.iter_mut() {
            if job.apply_plain(c).is_err() {
                return Err(Retry::WithSavepoints);
            }
        }
        Ok(())
    });
    match plain {
        Ok(()) => Ok(()),
        Err(Retry::Database(e)) => Err(e.to_string()),
        Err(Retry::WithSavepoints) => conn
            .conn()
            .write_transaction(|c| {
                for job in batch.iter_mut() {
                    // A failed job's savepoint is already rolled back; the others go on.
                    let _ = job.apply(c);
                }
                Ok::<(), diesel::result::Error>(())
            })
            .map_err(|e| e.to_string()),
    }
}

/// Why a savepoint-free batch did not commit.
enum Retry {
    /// A write failed: run the batch again with savepoints.
    WithSavepoints,
    /// Beginning or committing the transaction failed.
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for Retry {
    fn from(e: diesel::result::Error) -> Self {
        Retry::Database(e)
    }
}
