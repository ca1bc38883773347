//! Database access for both backends: connections, the read pool, the single writer, migrations.
//!
//! Queries are written once with diesel's query builder and run on either backend through the
//! [`on_conn!`] macro, which expands the same code for SQLite and PostgreSQL. Every write goes
//! through the [`Writer`], which groups concurrent writes into one durable transaction.

pub mod schema;
mod writer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::AppError;
pub use writer::{Answers, Grouped, Refresh, Refresher, Writer, WriterStats};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// PostgreSQL advisory lock key that every writing transaction holds (see `write_transaction`).
const WRITE_LOCK: i64 = 727_466;

/// An owned connection to either backend.
pub enum DbConn {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

/// A borrowed connection: what query functions take, so that the same function runs inside a
/// SQLite `BEGIN IMMEDIATE` transaction, a savepoint, or on a pooled connection.
pub enum Conn<'a> {
    Sqlite(&'a mut SqliteConnection),
    Pg(&'a mut PgConnection),
}

/// Runs the same diesel expression on whichever backend `$conn` (a `&mut Conn`) holds.
#[macro_export]
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::db::Conn::Sqlite(inner) => {
                let $c = &mut **inner;
                $body
            }
            $crate::db::Conn::Pg(inner) => {
                let $c = &mut **inner;
                $body
            }
        }
    };
}

/// Inserts `$rows` (a slice of value tuples) into `$table` on whichever backend `$conn` holds,
/// finishing the statement `$q` on the connection `$c` with `$finish`. One row goes as a
/// one-row statement, which diesel keeps prepared; a statement of several rows is prepared anew
/// each time, which made storing a single submission slower than before batching.
#[macro_export]
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr, ($q:ident, $c:ident) => $finish:expr) => {
        match $rows {
            [one] => $crate::on_conn!($conn, $c => {
                let $q = diesel::insert_into($table).values(one);
                $finish
            }),
            many => $crate::on_conn!($conn, $c => {
                let $q = diesel::insert_into($table).values(many);
                $finish
            }),
        }
    };
}

impl DbConn {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            DbConn::Sqlite(c) => Conn::Sqlite(c),
            DbConn::Pg(c) => Conn::Pg(c),
        }
    }
}

impl Conn<'_> {
    /// A transaction that writes; on SQLite it takes the write lock up front (`BEGIN IMMEDIATE`),
    /// because a deferred transaction that upgrades from read to write deadlocks under
    /// concurrent writers. On PostgreSQL it takes a transaction-level advisory lock, for the same
    /// reason: two instances' writers each insert a batch of rows, and two batches holding the
    /// same new keys in different orders deadlock (one of them then fails). Writes of all
    /// instances thus take turns, one grouped transaction at a time, as on SQLite.
    pub fn write_transaction<T, E>(
        &mut self,
        f: impl FnOnce(&mut Conn<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<diesel::result::Error>,
    {
        match self {
            Conn::Sqlite(c) => c.immediate_transaction(|c| f(&mut Conn::Sqlite(c))),
            Conn::Pg(c) => c.transaction(|c| {
                c.batch_execute(&format!("SELECT pg_advisory_xact_lock({WRITE_LOCK})"))?;
                f(&mut Conn::Pg(c))
            }),
        }
    }

    /// A plain transaction, which diesel turns into a savepoint inside an open transaction.
    pub fn transaction<T, E>(
        &mut self,
        f: impl FnOnce(&mut Conn<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<diesel::result::Error>,
    {
        match self {
            Conn::Sqlite(c) => c.transaction(|c| f(&mut Conn::Sqlite(c))),
            Conn::Pg(c) => c.transaction(|c| f(&mut Conn::Pg(c))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Parses a database URL into the backend and the string diesel wants.
pub fn parse_url(url: &str) -> Result<(Backend, String), AppError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok((Backend::Postgres, url.to_string()))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Ok((Backend::Sqlite, path.to_string()))
    } else if url.contains("://") {
        Err(AppError::bad_request(
            "bad_database_url",
            "unsupported database URL: use sqlite://PATH or postgres://…",
        ))
    } else {
        Ok((Backend::Sqlite, url.to_string()))
    }
}

/// SQLite page cache of a pooled read connection, in KiB: SQLite's default, since eight of them
/// count in the server's memory and the operating system caches the file for them anyway.
const READER_CACHE_KIB: u32 = 2 * 1024;

/// SQLite page cache of the writer connection, in KiB. Every submission updates indicator cells
/// all over their table; with SQLite's default 2 MiB the writer spilled pages to the WAL in the
/// middle of its transactions and read them back from the file.
const WRITER_CACHE_KIB: u32 = 64 * 1024;

/// Pages the WAL grows by before the writer copies it into the database file, in its commit
/// (SQLite's default is 1,000). A checkpoint copies each page once however often the log holds
/// it, and a busy writer rewrites the same indicator and index pages in every batch: ten times
/// the default gave a fifth more submissions per second at 64 devices, with a log of ~45 MB.
/// (Checkpointing on another thread instead let the log grow without bound: a checkpoint that
/// runs while the writer appends never copies the last frames, so the log never restarts.)
const WRITER_CHECKPOINT_PAGES: u32 = 10_000;

/// Opens connections for the pool and for the writer.
#[derive(Debug, Clone)]
pub struct Manager {
    backend: Backend,
    target: String,
}

impl Manager {
    fn open(&self) -> Result<DbConn, AppError> {
        match self.backend {
            Backend::Sqlite => {
                let mut c = SqliteConnection::establish(&self.target)
                    .map_err(|e| AppError::internal(format!("cannot open SQLite database: {e}")))?;
                // busy_timeout first so the other pragmas wait for a busy database too;
                // synchronous=FULL makes every commit durable before a phone is told 201.
                // temp_store=MEMORY keeps the statement journals of multi-row upserts (the
                // indicator cells) out of temporary files.
                c.batch_execute(&format!(
                    "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; \
                     PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{READER_CACHE_KIB};"
                ))?;
                Ok(DbConn::Sqlite(c))
            }
            Backend::Postgres => {
                let c = PgConnection::establish(&self.target).map_err(|e| {
                    AppError::internal(format!("cannot connect to PostgreSQL: {e}"))
                })?;
                Ok(DbConn::Pg(c))
            }
        }
    }
}

/// A pooled connection, with when it last answered a read.
pub struct Pooled {
    conn: DbConn,
    answered: Instant,
}

/// A pooled connection that answered this recently is handed out without a test query. Under
/// load every submission checks out connections two or three times, and on PostgreSQL each test
/// was a round trip and a statement for the server; a connection that died since (the database
/// restarted) fails one read and is tested, and replaced, at its next checkout.
const TRUSTED_FOR: Duration = Duration::from_secs(1);

impl ManageConnection for Manager {
    type Connection = Pooled;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<Pooled, r2d2::Error> {
        let conn = self.open().map_err(|e| {
            r2d2::Error::QueryError(diesel::result::Error::QueryBuilderError(
                e.to_string().into(),
            ))
        })?;
        Ok(Pooled {
            conn,
            answered: Instant::now(),
        })
    }

    fn is_valid(&self, pooled: &mut Pooled) -> Result<(), r2d2::Error> {
        if pooled.answered.elapsed() < TRUSTED_FOR {
            return Ok(());
        }
        match &mut pooled.conn {
            DbConn::Sqlite(c) => c.batch_execute("SELECT 1"),
            DbConn::Pg(c) => c.batch_execute("SELECT 1"),
        }
        .map_err(r2d2::Error::QueryError)?;
        pooled.answered = Instant::now();
        Ok(())
    }

    fn has_broken(&self, _conn: &mut Pooled) -> bool {
        false
    }
}

pub type Pool = r2d2::Pool<Manager>;

/// The database as the server uses it: a pool for reads, one writer for writes.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    writer: Writer,
    pub backend: Backend,
}

/// Opens a single connection after creating the SQLite file's folder and running migrations.
pub fn connect(url: &str) -> Result<(Manager, DbConn), AppError> {
    let (backend, target) = parse_url(url)?;
    if backend == Backend::Sqlite {
        if let Some(dir) = std::path::Path::new(&target).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
    }
    let manager = Manager { backend, target };
    let mut conn = manager.open()?;
    migrate(&mut conn)?;
    match &mut conn {
        DbConn::Sqlite(c) => c.batch_execute(&format!(
            "PRAGMA cache_size = -{WRITER_CACHE_KIB}; PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES};"
        ))?,
        // The writer's statements are prepared once and run for the life of the process. By
        // default PostgreSQL soon settles on one generic plan per statement, made from the
        // tables as they were then: on a new database, a scan of every submission to find a
        // batch's by id, kept while the table grew (one scan per batch, 13 million rows read
        // over 29,000 submissions). Planning each run for its values and the tables as they are
        // costs far less than such a scan.
        DbConn::Pg(c) => c.batch_execute("SET plan_cache_mode = force_custom_plan")?,
    }
    Ok((manager, conn))
}

/// Opens a single connection to an existing database without migrating it (for backups, which
/// must not change the database they copy).
pub fn connect_existing(url: &str) -> Result<(Backend, DbConn), AppError> {
    let (backend, target) = parse_url(url)?;
    if backend == Backend::Sqlite && !std::path::Path::new(&target).is_file() {
        return Err(AppError::not_found(
            "no_database",
            format!("there is no database at {target}"),
        ));
    }
    let manager = Manager { backend, target };
    Ok((backend, manager.open()?))
}

/// The SQLite file of a `sqlite://` URL, `None` for PostgreSQL.
pub fn sqlite_path(url: &str) -> Result<Option<std::path::PathBuf>, AppError> {
    let (backend, target) = parse_url(url)?;
    Ok((backend == Backend::Sqlite).then(|| std::path::PathBuf::from(target)))
}

fn migrate(conn: &mut DbConn) -> Result<(), AppError> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| {
        AppError::internal(format!("database migration failed: {e}"))
    };
    match conn {
        DbConn::Sqlite(c) => {
            c.batch_execute("PRAGMA journal_mode = WAL;")?;
            c.run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(failed)?;
        }
        DbConn::Pg(c) => {
            // Several instances may start at once on one database: migrate one at a time.
            c.batch_execute("SELECT pg_advisory_lock(727465)")?;
            let result = c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ());
            c.batch_execute("SELECT pg_advisory_unlock(727465)")?;
            result.map_err(failed)?;
        }
    }
    Ok(())
}

impl Db {
    /// Connects, migrates, and starts the writer thread.
    pub fn open(url: &str, pool_size: u32) -> Result<Db, AppError> {
        let (manager, write_conn) = connect(url)?;
        let backend = manager.backend;
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .build(manager)?;
        Ok(Db {
            pool,
            writer: Writer::start(write_conn),
            backend,
        })
    }

    /// Runs a read on a pooled connection, off the async workers.
    pub async fn read<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut Conn<'_>) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        actix_web::web::block(move || {
            let mut pooled = pool.get()?;
            let answer = f(&mut pooled.conn.conn())?;
            pooled.answered = Instant::now();
            Ok(answer)
        })
        .await?
    }

    /// Runs a write in the writer's next grouped transaction, in a savepoint of its own, and
    /// answers once that transaction is durably committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnMut(&mut Conn<'_>) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        self.writer.run(f).await
    }

    /// Like [`Db::write`], in a transaction of its own, once the writes queued before it are
    /// committed: for a long write that they need not wait for.
    pub async fn write_alone<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnMut(&mut Conn<'_>) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        self.writer.run_alone(f).await
    }

    /// Like [`Db::write`], for a write that may name a submission whose figures `refresher`
    /// brings up to date, together with those of the other writes of its batch, before the
    /// transaction commits.
    pub async fn write_refreshing<T, F>(&self, refresher: Refresher, f: F) -> Result<T, AppError>
    where
        F: FnMut(&mut Conn<'_>) -> Result<(T, Option<Refresh>), AppError> + Send + 'static,
        T: Send + 'static,
    {
        self.writer.run_refreshing(refresher, f).await
    }

    /// Like [`Db::write_refreshing`], for a write of the kind `group`: the writes of that kind
    /// next to it in its batch are applied together, by one call.
    pub async fn write_grouped<G: Grouped>(
        &self,
        group: Arc<G>,
        refresher: Option<Refresher>,
        item: G::Item,
    ) -> Result<G::Out, AppError> {
        self.writer.run_grouped(group, refresher, item).await
    }

    pub fn writer_stats(&self) -> &WriterStats {
        &self.writer.stats
    }

    pub fn writer_running(&self) -> bool {
        self.writer.running()
    }

    pub fn writer_queue_length(&self) -> usize {
        self.writer.queue_length()
    }

    /// Whether the database answers (for readiness checks and tests).
    pub async fn ping(&self) -> Result<(), AppError> {
        self.read(|conn| {
            on_conn!(conn, c => c.batch_execute("SELECT 1"))?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};

    #[derive(QueryableByName)]
    struct Number {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    #[derive(QueryableByName)]
    struct CompileOption {
        #[diesel(sql_type = Text)]
        compile_options: String,
    }

    fn pragma(c: &mut SqliteConnection, name: &str) -> i64 {
        diesel::sql_query(format!("SELECT {name} AS n FROM pragma_{name}"))
            .get_result::<Number>(c)
            .map(|r| r.n)
            .unwrap_or_else(|e| panic!("PRAGMA {name}: {e}"))
    }

    /// Without the planner stability guarantee (`.cargo/config.toml`), every statement with a
    /// `LIMIT ?` is compiled again each time it runs.
    #[test]
    fn sqlite_is_built_with_the_planner_stability_guarantee() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
        let (_, mut conn) = connect(&url).expect("connect");
        let DbConn::Sqlite(c) = &mut conn else {
            panic!("not SQLite")
        };
        let options: Vec<String> = diesel::sql_query("PRAGMA compile_options")
            .load::<CompileOption>(c)
            .expect("compile options")
            .into_iter()
            .map(|o| o.compile_options)
            .collect();
        assert!(
            options.iter().any(|o| o == "ENABLE_QPSG"),
            "compile options: {options:?}"
        );
    }

    #[test]
    fn a_pooled_connection_is_tested_at_checkout_only_when_it_has_not_answered_lately() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
        let (manager, _writer) = connect(&url).expect("connect");
        let mut pooled = manager.connect().expect("pooled");
        let fresh = pooled.answered;
        manager.is_valid(&mut pooled).expect("valid");
        assert_eq!(pooled.answered, fresh, "trusted without a test");
        let stale = Instant::now() - TRUSTED_FOR - Duration::from_millis(1);
        pooled.answered = stale;
        manager.is_valid(&mut pooled).expect("valid");
        assert!(pooled.answered > stale, "tested, and trusted again");
    }

    #[test]
    fn the_writer_has_a_large_page_cache_and_checkpoint_interval_and_readers_a_smaller_cache_all_with_memory_temp_store(
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
        let (manager, mut writer) = connect(&url).expect("connect");
        let mut reader = manager.open().expect("reader");
        let (DbConn::Sqlite(w), DbConn::Sqlite(r)) = (&mut writer, &mut reader) else {
            panic!("not SQLite")
        };
        assert_eq!(pragma(w, "cache_size"), -i64::from(WRITER_CACHE_KIB));
        assert_eq!(pragma(r, "cache_size"), -i64::from(READER_CACHE_KIB));
        // 2 = MEMORY
        assert_eq!(pragma(w, "temp_store"), 2);
        assert_eq!(pragma(r, "temp_store"), 2);
        assert_eq!(pragma(w, "synchronous"), 2, "FULL: every commit durable");
        #[derive(QueryableByName)]
        struct Setting {
            #[diesel(sql_type = BigInt)]
            wal_autocheckpoint: i64,
        }
        let checkpoint = |c: &mut SqliteConnection| {
            diesel::sql_query("PRAGMA wal_autocheckpoint")
                .get_result::<Setting>(c)
                .expect("wal_autocheckpoint")
                .wal_autocheckpoint
        };
        assert_eq!(checkpoint(w), i64::from(WRITER_CHECKPOINT_PAGES));
    }

    #[derive(QueryableByName)]
    struct Column {
        #[diesel(sql_type = Text)]
        name: String,
    }

    /// SQLite reaches a column stored after a large value by walking that value's overflow
    /// pages: an area's boundary must come after every column the area reads select.
    #[test]
    fn an_area_s_boundary_moves_to_its_last_column_and_is_kept() {
        use diesel::migration::MigrationSource;
        use diesel::sqlite::Sqlite;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut c = SqliteConnection::establish(&dir.path().join("t.sqlite3").to_string_lossy())
            .expect("connect");
        let mut migrations =
            MigrationSource::<Sqlite>::migrations(&SQLITE_MIGRATIONS).expect("migrations");
        migrations.sort_by_key(|m| m.name().to_string());
        let (before, after): (Vec<_>, Vec<_>) = migrations
            .into_iter()
            .partition(|m| m.name().to_string().as_str() < "2026-03-01-000000_area_boundary_last");
        diesel::migration::MigrationConnection::setup(&mut c).expect("migrations table");
        for m in &before {
            c.run_migration(m).expect("earlier migration");
        }
        diesel::sql_query(
            "INSERT INTO areas (id, level, code, name, geometry, updated_at) \
             VALUES (1, 'province', '14', 'Sơn La', '{\"type\":\"Polygon\"}', '2025-03-01 00:00:00')",
        )
        .execute(&mut c)
        .expect("an area");
        for m in &after {
            c.run_migration(m).expect("later migration");
        }
        let columns: Vec<String> = diesel::sql_query("SELECT name FROM pragma_table_info('areas')")
            .load::<Column>(&mut c)
            .expect("columns")
            .into_iter()
            .map(|col| col.name)
            .collect();
        assert_eq!(
            columns.last().map(String::as_str),
            Some("geometry"),
            "{columns:?}"
        );
        assert!(columns.contains(&"updated_at".to_string()));
        let kept: Option<String> = schema::areas::table
            .find(1)
            .select(schema::areas::geometry)
            .first(&mut c)
            .expect("the area");
        assert_eq!(kept.as_deref(), Some("{\"type\":\"Polygon\"}"));
    }
}
