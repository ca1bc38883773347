//! The machine's own limits, measured beside fieldtally's figures: fsyncs per second of the
//! disk, SQLite (WAL) commits per second with `synchronous=FULL` and `NORMAL`, rows per second
//! at 100 rows per transaction, and PostgreSQL durable commits per second from one client.
//!
//! ```sh
//! target/release/disklimits --dir /tmp --seconds 5 --postgres postgres://postgres@127.0.0.1:5432
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};

#[derive(Parser)]
#[command(about = "Measures fsync and database commit rates of this machine")]
struct Args {
    /// Folder on the disk to measure (the data folder's disk).
    #[arg(long, default_value = "/tmp")]
    dir: PathBuf,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// PostgreSQL server URL; a scratch database is created and dropped on it.
    #[arg(long)]
    postgres: Option<String>,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn report(what: &str, count: u64, elapsed: Duration, unit: &str) {
    println!(
        "{what:<52} {:>9.0} {unit}/s   (loadavg {})",
        count as f64 / elapsed.as_secs_f64(),
        loadavg()
    );
}

fn fsync_rate(
    dir: &std::path::Path,
    seconds: u64,
    data_only: bool,
) -> anyhow::Result<(u64, Duration)> {
    let mut f = tempfile::tempfile_in(dir)?;
    let block = [7u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        f.write_all(&block)?;
        if data_only {
            f.sync_data()?;
        } else {
            f.sync_all()?;
        }
        n += 1;
    }
    Ok((n, start.elapsed()))
}

/// A ~2 KB row, the size of a submission's version row.
const PAYLOAD_BYTES: usize = 2000;

fn sqlite_rate(
    dir: &std::path::Path,
    seconds: u64,
    synchronous: &str,
    per_tx: usize,
) -> anyhow::Result<(u64, Duration)> {
    let tmp = tempfile::tempdir_in(dir)?;
    let path = tmp.path().join("commits.db");
    let mut c = SqliteConnection::establish(&path.display().to_string())?;
    c.batch_execute(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL);"
    ))?;
    let insert = format!("INSERT INTO t (body) VALUES (randomblob({PAYLOAD_BYTES}));");
    let tx = format!("BEGIN IMMEDIATE; {} COMMIT;", insert.repeat(per_tx));
    let start = Instant::now();
    let mut rows = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        c.batch_execute(&tx)?;
        rows += per_tx as u64;
    }
    Ok((rows, start.elapsed()))
}

fn postgres_rate(base: &str, seconds: u64, per_tx: usize) -> anyhow::Result<(u64, Duration)> {
    let base = base.trim_end_matches('/');
    let name = format!("fieldtally_disklimits_{}", std::process::id());
    let mut admin = PgConnection::establish(&format!("{base}/postgres")).context("PostgreSQL")?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}")).execute(&mut admin)?;
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin)?;
    let result = (|| -> anyhow::Result<(u64, Duration)> {
        let mut c = PgConnection::establish(&format!("{base}/{name}"))?;
        c.batch_execute("CREATE TABLE t (id BIGSERIAL PRIMARY KEY, body BYTEA NOT NULL)")?;
        let insert = format!(
            "INSERT INTO t (body) SELECT decode(repeat(md5(random()::text), {}), 'hex');",
            PAYLOAD_BYTES / 16
        );
        let tx = format!("BEGIN; {} COMMIT;", insert.repeat(per_tx));
        let start = Instant::now();
        let mut rows = 0u64;
        while start.elapsed() < Duration::from_secs(seconds) {
            c.batch_execute(&tx)?;
            rows += per_tx as u64;
        }
        Ok((rows, start.elapsed()))
    })();
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}")).execute(&mut admin)?;
    result
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "machine limits on {} ({} cores)",
        args.dir.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let s = args.seconds;
    let (n, t) = fsync_rate(&args.dir, s, false)?;
    report("fsync (4 KiB write + fsync)", n, t, "fsyncs");
    let (n, t) = fsync_rate(&args.dir, s, true)?;
    report("fdatasync (4 KiB write + fdatasync)", n, t, "fsyncs");
    for sync in ["FULL", "NORMAL"] {
        let (n, t) = sqlite_rate(&args.dir, s, sync, 1)?;
        report(
            &format!("SQLite WAL synchronous={sync}, 1 row per commit"),
            n,
            t,
            "commits",
        );
    }
    let (n, t) = sqlite_rate(&args.dir, s, "FULL", 100)?;
    report(
        "SQLite WAL synchronous=FULL, 100 rows per commit",
        n,
        t,
        "rows",
    );
    if let Some(pg) = &args.postgres {
        let (n, t) = postgres_rate(pg, s, 1)?;
        report("PostgreSQL, 1 row per commit, one client", n, t, "commits");
        let (n, t) = postgres_rate(pg, s, 100)?;
        report("PostgreSQL, 100 rows per commit, one client", n, t, "rows");
    }
    Ok(())
}
