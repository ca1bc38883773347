//! `fieldtally backup DIR` and `fieldtally restore DIR`.
//!
//! A backup of a SQLite installation is taken online: `VACUUM INTO` writes a consistent
//! snapshot of the database while servers keep running, then the blobs are copied. Blobs never
//! change (they are named by their content) and every blob a row refers to was stored before
//! that row was committed, so copying them after the snapshot gives every file the snapshot
//! needs. Copying into the same folder again only adds new blobs: backups are incremental.
//!
//! With PostgreSQL the database is dumped with `pg_dump` (see the README) before this command
//! copies the files.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::RunQueryDsl;
use serde::Serialize;

use crate::blobs::Blobs;
use crate::db::{self, DbConn};
use crate::error::AppError;

const DATABASE_FILE: &str = "fieldtally.sqlite3";

#[derive(Debug, Serialize)]
pub struct Summary {
    /// Whether the database is in the backup (SQLite) or must be dumped separately (PostgreSQL).
    pub database: bool,
    pub blobs_copied: usize,
    pub blobs_present: usize,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Copies `from` to `to` through a temporary name, synced, so `to` is whole or absent.
fn copy_durably(from: &Path, to: &Path) -> io::Result<()> {
    let partial = to.with_extension("partial");
    fs::copy(from, &partial)?;
    File::open(&partial)?.sync_all()?;
    fs::rename(&partial, to)?;
    sync_dir(to.parent().unwrap_or(Path::new(".")))
}

/// Copies every blob of `from` missing in `to_root`.
fn copy_blobs(from: &Path, to_root: &Path) -> Result<(usize, usize), AppError> {
    let (mut copied, mut present) = (0, 0);
    if !from.is_dir() {
        return Ok((0, 0));
    }
    for dir in fs::read_dir(from)? {
        let dir = dir?;
        if !dir.file_type()?.is_dir() {
            continue;
        }
        let target_dir = to_root.join(dir.file_name());
        fs::create_dir_all(&target_dir)?;
        for file in fs::read_dir(dir.path())? {
            let file = file?;
            if !file.file_type()?.is_file() {
                continue;
            }
            let target = target_dir.join(file.file_name());
            if target.is_file() {
                present += 1;
            } else {
                copy_durably(&file.path(), &target)?;
                copied += 1;
            }
        }
    }
    Ok((copied, present))
}

/// Backs up the installation at `url` and `data_dir` into `dir`.
pub fn backup(url: &str, data_dir: &Path, dir: &Path) -> Result<Summary, AppError> {
    fs::create_dir_all(dir)?;
    let (_, mut conn) = db::connect_existing(url)?;
    let database = match &mut conn {
        DbConn::Sqlite(c) => {
            let target = dir.join(DATABASE_FILE);
            let partial = dir.join(format!("{DATABASE_FILE}.partial"));
            if partial.exists() {
                fs::remove_file(&partial)?;
            }
            diesel::sql_query("VACUUM INTO ?")
                .bind::<Text, _>(partial.display().to_string())
                .execute(c)?;
            File::open(&partial)?.sync_all()?;
            fs::rename(&partial, &target)?;
            sync_dir(dir)?;
            true
        }
        DbConn::Pg(_) => false,
    };
    // Blobs are copied under the shared lock, so fsck --repair removes none meanwhile.
    let blobs = Blobs::open(data_dir)?;
    let _lock = blobs.lock_shared()?;
    let (blobs_copied, blobs_present) = copy_blobs(blobs.root(), &dir.join("blobs"))?;
    let summary = Summary {
        database,
        blobs_copied,
        blobs_present,
    };
    let manifest = serde_json::json!({
        "created_at": crate::users::now(),
        "database": database,
        "blobs": blobs_copied + blobs_present,
    });
    fs::write(dir.join("backup.json"), manifest.to_string())?;
    Ok(summary)
}

/// Restores a backup from `dir` into an installation that has no database yet (SQLite) and its
/// blobs into `data_dir`; then the database is checked and migrated to this version.
pub fn restore(url: &str, data_dir: &Path, dir: &Path) -> Result<Summary, AppError> {
    if !dir.join("backup.json").is_file() {
        return Err(AppError::not_found(
            "no_backup",
            format!(
                "{} is not a fieldtally backup (no backup.json)",
                dir.display()
            ),
        ));
    }
    let sqlite: Option<PathBuf> = db::sqlite_path(url)?;
    let database = match &sqlite {
        Some(target) => {
            let source = dir.join(DATABASE_FILE);
            if !source.is_file() {
                return Err(AppError::not_found(
                    "no_database_in_backup",
                    "the backup has no SQLite database (was it taken from PostgreSQL?)",
                ));
            }
            if target.exists() {
                return Err(AppError::conflict(
                    "database_exists",
                    format!(
                        "{} already exists; restore into an empty data folder, or move it away first",
                        target.display()
                    ),
                ));
            }
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)?;
            }
            copy_durably(&source, target)?;
            true
        }
        None => false,
    };
    let blobs = Blobs::open(data_dir)?;
    let (blobs_copied, blobs_present) = copy_blobs(&dir.join("blobs"), blobs.root())?;
    let (_, mut conn) = db::connect(url)?;
    if let DbConn::Sqlite(c) = &mut conn {
        #[derive(diesel::QueryableByName)]
        struct Check {
            #[diesel(sql_type = Text)]
            integrity_check: String,
        }
        let rows: Vec<Check> = diesel::sql_query("PRAGMA integrity_check").load(c)?;
        if rows.first().map(|r| r.integrity_check.as_str()) != Some("ok") {
            return Err(AppError::internal(
                "the restored database fails its integrity check",
            ));
        }
        c.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")?;
    }
    Ok(Summary {
        database,
        blobs_copied,
        blobs_present,
    })
}
