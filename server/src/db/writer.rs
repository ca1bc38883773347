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
//!
//! A write may leave a [`Refresh`] of derived figures for later: the refreshes of consecutive
//! writes are done together, by one call of their [`Refresher`], still inside the transaction
//! and before any other write of the batch runs or the batch commits.
//!
//! Writes of a [`Grouped`] kind that follow one another in a batch are applied by one call, so
//! that their rows go to the database in a few multi-row statements rather than a round trip
//! per statement per write; under savepoints each is applied alone.
//!
//! A long write (bringing the figures up to date for many submissions) may ask to run alone, in
//! a transaction of its own: the writes queued before it are then acknowledged without waiting
//! for it.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use tokio::sync::{mpsc, oneshot};

use super::{Conn, DbConn};
use crate::error::AppError;

/// How many writes share one transaction at most.
const MAX_BATCH: usize = 256;

/// A submission whose derived figures a write changed and must be brought up to date before
/// the transaction commits; `by` is the user who made the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refresh {
    pub submission_id: i64,
    pub by: Option<i64>,
}

/// Brings the figures of some submissions up to date, inside the open transaction.
pub type Refresher = Arc<dyn Fn(&mut Conn<'_>, &[Refresh]) -> Result<(), AppError> + Send + Sync>;

/// Refreshes left by the writes run so far and not yet done.
#[derive(Default)]
struct Deferred {
    refresher: Option<Refresher>,
    pending: Vec<Refresh>,
}

impl Deferred {
    fn add(&mut self, refresher: &Refresher, refresh: Refresh) {
        self.refresher = Some(refresher.clone());
        self.pending.push(refresh);
    }

    /// Does the pending refreshes; `Err` spoils the transaction.
    fn flush(&mut self, conn: &mut Conn<'_>) -> Result<(), JobFailed> {
        let pending = std::mem::take(&mut self.pending);
        match self.refresher.take() {
            Some(refresher) if !pending.is_empty() => refresher(conn, &pending).map_err(|e| {
                tracing::warn!(error = %e, submissions = pending.len(), "grouped refresh failed");
                JobFailed
            }),
            _ => Ok(()),
        }
    }
}

/// The answers of grouped writes, each with the refresh it leaves.
pub type Answers<T> = Vec<(T, Option<Refresh>)>;

/// A kind of write the writer may apply several of at once: consecutive writes of one kind (the
/// same `Arc`) in a batch are applied by one call.
pub trait Grouped: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Out: Send + 'static;
    /// Applies `items` in the open transaction with the effect of applying them one after
    /// another in order, giving each one's answer and the refresh it leaves. `Err` spoils the
    /// transaction: the batch then runs again with each write applied alone under a savepoint.
    fn apply(
        &self,
        conn: &mut Conn<'_>,
        items: &[&Self::Item],
    ) -> Result<Answers<Self::Out>, AppError>;
}

trait Job: Send {
    /// Applies the write directly in the open transaction, with the writes of its group that
    /// follow it in `rest`, leaving their refreshes in `deferred` (whose earlier refreshes it
    /// first does, if they are not of its refresher); returns how many writes it applied. `Err`
    /// means the transaction is spoiled and the batch must be run again with savepoints.
    fn apply_plain(
        &mut self,
        conn: &mut Conn<'_>,
        deferred: &mut Deferred,
        rest: &mut [Box<dyn Job>],
    ) -> Result<usize, JobFailed>;
    /// Applies the write and its refresh under its own savepoint; `Err` means the savepoint was
    /// rolled back.
    fn apply(&mut self, conn: &mut Conn<'_>) -> Result<(), JobFailed>;
    /// Answers the caller once the batch's fate is known.
    fn finish(self: Box<Self>, committed: Result<(), String>);
    /// For a grouped write to recognise the writes of its group.
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// Whether a write with `refresher` must first do the refreshes already deferred: a write may
/// read what they will change, unless its own refreshes are done by the same refresher.
fn must_flush(refresher: &Option<Refresher>, deferred: &Deferred) -> bool {
    match (refresher, &deferred.refresher) {
        (Some(mine), Some(theirs)) => !Arc::ptr_eq(mine, theirs),
        (_, None) => false,
        (None, Some(_)) => true,
    }
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
    /// Set for writes that leave a refresh: the closure's answer then names the submission.
    refresher: Option<Refresher>,
    outcome: Option<Result<T, AppError>>,
    reply: oneshot::Sender<Result<T, AppError>>,
}

impl<T, F> Pending<T, F>
where
    T: Send,
    F: FnMut(&mut Conn<'_>) -> Result<(T, Option<Refresh>), AppError> + Send,
{
    /// Runs the write and, if `now`, its refresh right away; otherwise returns the refresh.
    fn run(&mut self, conn: &mut Conn<'_>, now: bool) -> Result<(T, Option<Refresh>), AppError> {
        let (value, refresh) = (self.f)(conn)?;
        match (&self.refresher, refresh) {
            (Some(refresher), Some(r)) if now => {
                refresher(conn, &[r])?;
                Ok((value, None))
            }
            (_, refresh) => Ok((value, refresh)),
        }
    }

    fn record(&mut self, result: Result<T, AppError>) -> Result<(), JobFailed> {
        let failed = result.is_err();
        self.outcome = Some(result);
        if failed {
            Err(JobFailed)
        } else {
            Ok(())
        }
    }

    fn apply_alone(&mut self, conn: &mut Conn<'_>) -> Result<(), JobFailed> {
        let mut result = conn.transaction(|c| self.run(c, true));
        // Another server instance on the same database may have written the same key between
        // our read and our insert; running the write again sees its row and decides correctly.
        if result
            .as_ref()
            .err()
            .is_some_and(AppError::is_unique_violation)
        {
            result = conn.transaction(|c| self.run(c, true));
        }
        self.record(result.map(|(value, _)| value))
    }

    fn answer(self, committed: Result<(), String>) {
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

impl<T, F> Job for Pending<T, F>
where
    T: Send + 'static,
    F: FnMut(&mut Conn<'_>) -> Result<(T, Option<Refresh>), AppError> + Send + 'static,
{
    fn apply_plain(
        &mut self,
        conn: &mut Conn<'_>,
        deferred: &mut Deferred,
        _rest: &mut [Box<dyn Job>],
    ) -> Result<usize, JobFailed> {
        if must_flush(&self.refresher, deferred) {
            deferred.flush(conn)?;
        }
        match self.run(conn, false) {
            Ok((value, refresh)) => {
                if let (Some(refresher), Some(r)) = (&self.refresher, refresh) {
                    deferred.add(refresher, r);
                }
                self.record(Ok(value))?;
            }
            Err(e) => self.record(Err(e))?,
        }
        Ok(1)
    }

    fn apply(&mut self, conn: &mut Conn<'_>) -> Result<(), JobFailed> {
        self.apply_alone(conn)
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        self.answer(committed);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

type WriteFn<T> = Box<dyn FnMut(&mut Conn<'_>) -> Result<(T, Option<Refresh>), AppError> + Send>;

/// A write of a [`Grouped`] kind; alone (under a savepoint) it is a group of one.
struct GroupPending<G: Grouped> {
    group: Arc<G>,
    item: Arc<G::Item>,
    pending: Pending<G::Out, WriteFn<G::Out>>,
}

impl<G: Grouped> GroupPending<G> {
    fn joins(&self, other: &dyn Job) -> bool {
        other
            .as_any()
            .downcast_ref::<GroupPending<G>>()
            .is_some_and(|o| {
                Arc::ptr_eq(&o.group, &self.group)
                    && match (&o.pending.refresher, &self.pending.refresher) {
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                        (None, None) => true,
                        _ => false,
                    }
            })
    }
}

impl<G: Grouped> Job for GroupPending<G> {
    fn apply_plain(
        &mut self,
        conn: &mut Conn<'_>,
        deferred: &mut Deferred,
        rest: &mut [Box<dyn Job>],
    ) -> Result<usize, JobFailed> {
        if must_flush(&self.pending.refresher, deferred) {
            deferred.flush(conn)?;
        }
        let others = rest.iter().take_while(|j| self.joins(j.as_ref())).count();
        let items: Vec<&G::Item> = std::iter::once(&*self.item)
            .chain(rest[..others].iter().filter_map(|j| {
                j.as_any()
                    .downcast_ref::<GroupPending<G>>()
                    .map(|o| &*o.item)
            }))
            .collect();
        let answers = match self.group.apply(conn, &items) {
            Ok(answers) if answers.len() == items.len() => answers,
            Ok(answers) => {
                tracing::error!(
                    writes = items.len(),
                    answers = answers.len(),
                    "a grouped write answered for a different number of writes"
                );
                return Err(JobFailed);
            }
            Err(e) => {
                tracing::debug!(error = %e, writes = items.len(), "grouped write failed");
                return Err(JobFailed);
            }
        };
        let mut jobs =
            std::iter::once(&mut self.pending).chain(rest[..others].iter_mut().filter_map(|j| {
                j.as_any_mut()
                    .downcast_mut::<GroupPending<G>>()
                    .map(|o| &mut o.pending)
            }));
        for (value, refresh) in answers {
            let Some(job) = jobs.next() else { break };
            if let (Some(refresher), Some(r)) = (&job.refresher, refresh) {
                deferred.add(refresher, r);
            }
            job.record(Ok(value))?;
        }
        Ok(1 + others)
    }

    fn apply(&mut self, conn: &mut Conn<'_>) -> Result<(), JobFailed> {
        self.pending.apply_alone(conn)
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        self.pending.answer(committed);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
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

/// A write as queued: `alone` if it runs in a transaction of its own.
struct Queued {
    job: Box<dyn Job>,
    alone: bool,
}

/// A handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Queued>,
    pub stats: Arc<WriterStats>,
}

impl Writer {
    pub fn start(conn: DbConn) -> Writer {
        let (queue, rx) = mpsc::channel::<Queued>(4 * MAX_BATCH);
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

    pub async fn run<T, F>(&self, mut f: F) -> Result<T, AppError>
    where
        F: FnMut(&mut Conn<'_>) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        self.submit(None, false, move |c| f(c).map(|v| (v, None)))
            .await
    }

    /// Runs a write in a transaction of its own, after the writes queued before it have been
    /// committed and acknowledged.
    pub async fn run_alone<T, F>(&self, mut f: F) -> Result<T, AppError>
    where
        F: FnMut(&mut Conn<'_>) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        self.submit(None, true, move |c| f(c).map(|v| (v, None)))
            .await
    }

    /// Runs a write that may name a submission whose figures `refresher` must bring up to date
    /// before the transaction commits, together with those of the other writes of the batch.
    pub async fn run_refreshing<T, F>(&self, refresher: Refresher, f: F) -> Result<T, AppError>
    where
        F: FnMut(&mut Conn<'_>) -> Result<(T, Option<Refresh>), AppError> + Send + 'static,
        T: Send + 'static,
    {
        self.submit(Some(refresher), false, f).await
    }

    /// Runs a write of the kind `group`, applied together with the writes of that kind (and
    /// refresher) next to it in its batch.
    pub async fn run_grouped<G: Grouped>(
        &self,
        group: Arc<G>,
        refresher: Option<Refresher>,
        item: G::Item,
    ) -> Result<G::Out, AppError> {
        let item = Arc::new(item);
        let (reply, answer) = oneshot::channel();
        let (g, i) = (group.clone(), item.clone());
        let alone: WriteFn<G::Out> = Box::new(move |c| {
            g.apply(c, &[&*i])?
                .pop()
                .ok_or_else(|| AppError::internal("a grouped write gave no answer"))
        });
        let job: Box<dyn Job> = Box::new(GroupPending {
            group,
            item,
            pending: Pending {
                f: alone,
                refresher,
                outcome: None,
                reply,
            },
        });
        self.enqueue(Queued { job, alone: false }, answer).await
    }

    async fn submit<T, F>(
        &self,
        refresher: Option<Refresher>,
        alone: bool,
        f: F,
    ) -> Result<T, AppError>
    where
        F: FnMut(&mut Conn<'_>) -> Result<(T, Option<Refresh>), AppError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            f,
            refresher,
            outcome: None,
            reply,
        });
        self.enqueue(Queued { job, alone }, answer).await
    }

    async fn enqueue<T>(
        &self,
        queued: Queued,
        answer: oneshot::Receiver<Result<T, AppError>>,
    ) -> Result<T, AppError> {
        self.queue
            .send(queued)
            .await
            .map_err(|_| AppError::internal("the writer has stopped"))?;
        answer
            .await
            .map_err(|_| AppError::internal("the writer dropped the request"))?
    }
}

fn run(mut conn: DbConn, mut rx: mpsc::Receiver<Queued>, stats: &WriterStats) {
    let mut held: Option<Queued> = None;
    while let Some(first) = held.take().or_else(|| rx.blocking_recv()) {
        let mut batch = vec![first.job];
        while !first.alone && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(q) if q.alone => {
                    held = Some(q);
                    break;
                }
                Ok(q) => batch.push(q.job),
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
        let mut deferred = Deferred::default();
        let mut rest: &mut [Box<dyn Job>] = batch;
        while let Some((job, after)) = std::mem::take(&mut rest).split_first_mut() {
            let applied = job
                .apply_plain(c, &mut deferred, after)
                .map_err(|JobFailed| Retry::WithSavepoints)?;
            rest = &mut after[applied.saturating_sub(1)..];
        }
        deferred.flush(c).map_err(|JobFailed| Retry::WithSavepoints)
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;

    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::sql_types::Text;
    use diesel::sqlite::SqliteConnection;

    use super::*;

    #[derive(QueryableByName)]
    struct Entry {
        #[diesel(sql_type = Text)]
        what: String,
    }

    fn log(conn: &mut Conn<'_>, what: String) -> Result<(), AppError> {
        let Conn::Sqlite(c) = conn else {
            return Err(AppError::internal("these tests run on SQLite"));
        };
        diesel::sql_query("INSERT INTO log (what) VALUES (?)")
            .bind::<Text, _>(what)
            .execute(&mut **c)?;
        Ok(())
    }

    fn entries(conn: &mut Conn<'_>) -> Result<Vec<String>, AppError> {
        let Conn::Sqlite(c) = conn else {
            return Err(AppError::internal("these tests run on SQLite"));
        };
        let rows: Vec<Entry> =
            diesel::sql_query("SELECT what FROM log ORDER BY rowid").load(&mut **c)?;
        Ok(rows.into_iter().map(|e| e.what).collect())
    }

    fn writer() -> Writer {
        let mut c = SqliteConnection::establish(":memory:").expect("in-memory database");
        c.batch_execute("CREATE TABLE log (what TEXT NOT NULL)")
            .expect("log table");
        Writer::start(DbConn::Sqlite(c))
    }

    /// Logs the submissions it refreshes together; refuses submission 13.
    fn refresher() -> Refresher {
        Arc::new(|conn, refreshes| {
            let ids: Vec<String> = refreshes
                .iter()
                .map(|r| r.submission_id.to_string())
                .collect();
            if ids.iter().any(|id| id == "13") {
                return Err(AppError::internal("cannot refresh 13"));
            }
            log(conn, format!("refreshed {}", ids.join(",")))
        })
    }

    /// Holds the writer in a batch of its own until the returned sender is dropped, so that
    /// the writes queued meanwhile form the next batch.
    async fn hold(writer: &Writer) -> (std_mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, wait) = std_mpsc::channel::<()>();
        let (started, is_started) = oneshot::channel::<()>();
        let mut started = Some(started);
        let w = writer.clone();
        let held = tokio::spawn(async move {
            w.run(move |_| {
                if let Some(s) = started.take() {
                    let _ = s.send(());
                }
                // Returns when the sender is dropped.
                let _ = wait.recv();
                Ok(())
            })
            .await
            .expect("held write");
        });
        is_started.await.expect("the writer runs the held write");
        (release, held)
    }

    /// Queues a write and waits until it is in the queue, so that writes queue in order.
    async fn queue<T: Send + 'static>(
        writer: &Writer,
        job: impl std::future::Future<Output = Result<T, AppError>> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<T, AppError>> {
        let before = writer.queue_length();
        let handle = tokio::spawn(job);
        while writer.queue_length() == before {
            tokio::task::yield_now().await;
        }
        handle
    }

    fn refreshing(
        writer: &Writer,
        refresher: &Refresher,
        id: i64,
    ) -> impl std::future::Future<Output = Result<i64, AppError>> + Send + 'static {
        let (w, r) = (writer.clone(), refresher.clone());
        async move {
            w.run_refreshing(r, move |c| {
                log(c, format!("write {id}"))?;
                Ok((
                    id,
                    Some(Refresh {
                        submission_id: id,
                        by: None,
                    }),
                ))
            })
            .await
        }
    }

    #[tokio::test]
    async fn refreshes_of_a_batch_are_done_together_before_a_plain_write_and_the_commit() {
        let writer = writer();
        let refresher = refresher();
        let (release, held) = hold(&writer).await;
        let one = queue(&writer, refreshing(&writer, &refresher, 1)).await;
        let two = queue(&writer, refreshing(&writer, &refresher, 2)).await;
        let w = writer.clone();
        let reader = queue(&writer, async move { w.run(entries).await }).await;
        let three = queue(&writer, refreshing(&writer, &refresher, 3)).await;
        drop(release);
        held.await.expect("held write");
        for (handle, id) in [(one, 1), (two, 2), (three, 3)] {
            assert_eq!(handle.await.expect("task").expect("write"), id);
        }
        assert_eq!(
            reader.await.expect("task").expect("read"),
            ["write 1", "write 2", "refreshed 1,2"],
            "a plain write sees the refreshes of the writes before it"
        );
        assert_eq!(
            writer.run(entries).await.expect("read"),
            [
                "write 1",
                "write 2",
                "refreshed 1,2",
                "write 3",
                "refreshed 3"
            ]
        );
        assert_eq!(writer.stats.batches.load(Ordering::Relaxed), 3);
    }

    fn logging(
        writer: &Writer,
        what: &'static str,
    ) -> impl std::future::Future<Output = Result<(), AppError>> + Send + 'static {
        let w = writer.clone();
        async move { w.run(move |c| log(c, what.to_string())).await }
    }

    #[tokio::test]
    async fn a_write_alone_runs_in_its_own_transaction_after_those_queued_before_it() {
        let writer = writer();
        let (release, held) = hold(&writer).await;
        let a = queue(&writer, logging(&writer, "a")).await;
        let b = queue(&writer, logging(&writer, "b")).await;
        let w = writer.clone();
        let alone = queue(&writer, async move {
            w.run_alone(|c| {
                let seen = entries(c)?;
                log(c, "alone".into())?;
                Ok(seen)
            })
            .await
        })
        .await;
        let c = queue(&writer, logging(&writer, "c")).await;
        let d = queue(&writer, logging(&writer, "d")).await;
        drop(release);
        held.await.expect("held write");
        for h in [a, b, c, d] {
            h.await.expect("task").expect("write");
        }
        assert_eq!(alone.await.expect("task").expect("alone"), ["a", "b"]);
        assert_eq!(
            writer.run(entries).await.expect("read"),
            ["a", "b", "alone", "c", "d"]
        );
        // The held write, then a and b, the write alone, c and d, and the read.
        assert_eq!(writer.stats.batches.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn a_failing_grouped_refresh_fails_only_its_own_write() {
        let writer = writer();
        let refresher = refresher();
        let (release, held) = hold(&writer).await;
        let ok = queue(&writer, refreshing(&writer, &refresher, 12)).await;
        let bad = queue(&writer, refreshing(&writer, &refresher, 13)).await;
        let also_ok = queue(&writer, refreshing(&writer, &refresher, 14)).await;
        drop(release);
        held.await.expect("held write");
        assert_eq!(ok.await.expect("task").expect("write 12"), 12);
        let err = bad.await.expect("task").expect_err("write 13 fails");
        assert!(err.to_string().contains("cannot refresh 13"), "{err}");
        assert_eq!(also_ok.await.expect("task").expect("write 14"), 14);
        assert_eq!(
            writer.run(entries).await.expect("read"),
            ["write 12", "refreshed 12", "write 14", "refreshed 14"],
            "the batch ran again with a savepoint per write, refreshing each at once"
        );
    }

    /// Logs the items it applies together; refuses item 13. Leaves a refresh for each.
    struct Logged;

    impl Grouped for Logged {
        type Item = i64;
        type Out = i64;

        fn apply(&self, conn: &mut Conn<'_>, items: &[&i64]) -> Result<Answers<i64>, AppError> {
            if items.iter().any(|i| **i == 13) {
                return Err(AppError::internal("cannot write 13"));
            }
            let ids: Vec<String> = items.iter().map(|i| i.to_string()).collect();
            log(conn, format!("group {}", ids.join(",")))?;
            Ok(items
                .iter()
                .map(|i| {
                    let refresh = Refresh {
                        submission_id: **i,
                        by: None,
                    };
                    (**i * 10, Some(refresh))
                })
                .collect())
        }
    }

    fn grouped(
        writer: &Writer,
        group: &Arc<Logged>,
        refresher: &Refresher,
        id: i64,
    ) -> impl std::future::Future<Output = Result<i64, AppError>> + Send + 'static {
        let (w, g, r) = (writer.clone(), group.clone(), refresher.clone());
        async move { w.run_grouped(g, Some(r), id).await }
    }

    #[tokio::test]
    async fn consecutive_grouped_writes_are_applied_by_one_call() {
        let writer = writer();
        let refresher = refresher();
        let group = Arc::new(Logged);
        let other = Arc::new(Logged);
        let (release, held) = hold(&writer).await;
        let mut handles = Vec::new();
        for id in [1, 2, 3] {
            handles.push((
                id,
                queue(&writer, grouped(&writer, &group, &refresher, id)).await,
            ));
        }
        handles.push((
            4,
            queue(&writer, grouped(&writer, &other, &refresher, 4)).await,
        ));
        handles.push((5, queue(&writer, refreshing(&writer, &refresher, 5)).await));
        handles.push((
            6,
            queue(&writer, grouped(&writer, &group, &refresher, 6)).await,
        ));
        drop(release);
        held.await.expect("held write");
        for (id, handle) in handles {
            let expected = if id == 5 { 5 } else { id * 10 };
            assert_eq!(handle.await.expect("task").expect("write"), expected);
        }
        assert_eq!(
            writer.run(entries).await.expect("read"),
            [
                "group 1,2,3",
                "group 4",
                "write 5",
                "group 6",
                "refreshed 1,2,3,4,5,6"
            ],
            "a write of another group or kind ends a group; refreshes of one refresher wait for the commit"
        );
    }

    #[tokio::test]
    async fn a_failing_group_is_applied_write_by_write() {
        let writer = writer();
        let refresher = refresher();
        let group = Arc::new(Logged);
        let (release, held) = hold(&writer).await;
        let ok = queue(&writer, grouped(&writer, &group, &refresher, 12)).await;
        let bad = queue(&writer, grouped(&writer, &group, &refresher, 13)).await;
        let also_ok = queue(&writer, grouped(&writer, &group, &refresher, 14)).await;
        drop(release);
        held.await.expect("held write");
        assert_eq!(ok.await.expect("task").expect("write 12"), 120);
        let err = bad.await.expect("task").expect_err("write 13 fails");
        assert!(err.to_string().contains("cannot write 13"), "{err}");
        assert_eq!(also_ok.await.expect("task").expect("write 14"), 140);
        assert_eq!(
            writer.run(entries).await.expect("read"),
            ["group 12", "refreshed 12", "group 14", "refreshed 14"],
        );
    }
}
