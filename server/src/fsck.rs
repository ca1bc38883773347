//! `fieldtally fsck`: checks that the blob store and the database agree. It finds blobs that no
//! row refers to (left by a crash between storing a file and committing its row, or by a refused
//! upload) and rows whose blob is missing; `--repair` removes the unreferenced blobs and stale
//! upload temporaries.
//!
//! Which columns refer to blobs is read from the database's own catalogue: every column named
//! `sha256` or ending in `_sha256`, in any table. A table added later that keeps blob hashes in
//! such a column is therefore protected without changing this file; a column that holds some
//! other hash (like `submission_versions.xml_sha256`) only makes the check more careful.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use diesel::prelude::*;
use diesel::sql_types::Text;
use serde::Serialize;

use crate::blobs::Blobs;
use crate::db::schema::{attachments, form_media};
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;

#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Files in the blob store.
    pub blobs: usize,
    /// Blobs no row refers to (older than the grace period).
    pub unreferenced: Vec<String>,
    /// Rows that refer to a blob that is not in the store.
    pub missing: Vec<Missing>,
    /// Upload temporaries older than the grace period (left by a killed server).
    pub stale_temporaries: usize,
    /// What `--repair` removed.
    pub removed_blobs: usize,
    pub removed_temporaries: usize,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Missing {
    pub table: &'static str,
    pub id: i64,
    pub sha256: String,
}

impl Report {
    /// Whether the store and the database agree (after repair, if repairing).
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.unreferenced.len() == self.removed_blobs
            && self.stale_temporaries == self.removed_temporaries
    }
}

#[derive(QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    tbl: String,
    #[diesel(sql_type = Text)]
    col: String,
}

#[derive(QueryableByName)]
struct Hash {
    #[diesel(sql_type = Text)]
    sha: String,
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Every hash in every `sha256`-named column of every table.
pub fn referenced(conn: &mut Conn<'_>) -> Result<HashSet<String>, AppError> {
    let columns: Vec<Column> = match conn {
        Conn::Sqlite(c) => diesel::sql_query(
            "SELECT m.name AS tbl, p.name AS col FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND (p.name = 'sha256' OR p.name LIKE '%\\_sha256' ESCAPE '\\')",
        )
        .load(*c)?,
        Conn::Pg(c) => diesel::sql_query(
            "SELECT table_name::text AS tbl, column_name::text AS col FROM information_schema.columns \
             WHERE table_schema = current_schema() AND (column_name = 'sha256' OR column_name LIKE '%\\_sha256' ESCAPE '\\')",
        )
        .load(*c)?,
    };
    let mut hashes = HashSet::new();
    for column in columns {
        let sql = format!(
            "SELECT DISTINCT {col} AS sha FROM {tbl} WHERE {col} IS NOT NULL",
            col = quote(&column.col),
            tbl = quote(&column.tbl)
        );
        let rows: Vec<Hash> = on_conn!(conn, c => diesel::sql_query(&sql).load(c))?;
        hashes.extend(rows.into_iter().map(|h| h.sha));
    }
    Ok(hashes)
}

/// Rows of the tables that store files whose blob is not in the store.
fn missing(conn: &mut Conn<'_>, blobs: &Blobs) -> Result<Vec<Missing>, AppError> {
    let attached: Vec<(i64, Option<String>)> = on_conn!(conn, c => attachments::table
        .filter(attachments::sha256.is_not_null())
        .select((attachments::id, attachments::sha256))
        .load(c))?;
    let media: Vec<(i64, String)> = on_conn!(conn, c => form_media::table
        .select((form_media::id, form_media::sha256))
        .load(c))?;
    let mut out = Vec::new();
    for (id, sha) in attached {
        if let Some(sha) = sha.filter(|s| !blobs.exists(s)) {
            out.push(Missing {
                table: "attachments",
                id,
                sha256: sha,
            });
        }
    }
    for (id, sha) in media {
        if !blobs.exists(&sha) {
            out.push(Missing {
                table: "form_media",
                id,
                sha256: sha,
            });
        }
    }
    Ok(out)
}

fn older_than(path: &Path, grace: Duration, now: SystemTime) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|t| now.duration_since(t).unwrap_or_default() >= grace)
        .unwrap_or(false)
}

/// Files under the blob store, as (name, path).
fn stored(blobs: &Blobs) -> Result<Vec<(String, PathBuf)>, AppError> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(blobs.root())? {
        let dir = dir?;
        if !dir.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(dir.path())? {
            let file = file?;
            if file.file_type()?.is_file() {
                out.push((file.file_name().to_string_lossy().into_owned(), file.path()));
            }
        }
    }
    Ok(out)
}

/// Checks the store against the database; with `repair`, removes unreferenced blobs and stale
/// temporaries older than `grace`. Safe while servers run: the repair holds the blob lock, so
/// no upload is between storing a file and committing its row.
pub fn run(
    conn: &mut Conn<'_>,
    blobs: &Blobs,
    grace: Duration,
    repair: bool,
) -> Result<Report, AppError> {
    let _lock = if repair {
        Some(blobs.lock_exclusive()?)
    } else {
        None
    };
    let now = SystemTime::now();
    // Files first, then references: a blob stored in between is then referenced or too young.
    let files = stored(blobs)?;
    let referenced = referenced(conn)?;
    let mut report = Report {
        blobs: files.len(),
        missing: missing(conn, blobs)?,
        ..Report::default()
    };
    for (name, path) in files {
        if referenced.contains(&name) || !older_than(&path, grace, now) {
            continue;
        }
        if repair {
            std::fs::remove_file(&path)?;
            report.removed_blobs += 1;
        }
        report.unreferenced.push(name);
    }
    for entry in std::fs::read_dir(blobs.tmp_dir())? {
        let path = entry?.path();
        if path.is_file() && older_than(&path, grace, now) {
            report.stale_temporaries += 1;
            if repair {
                std::fs::remove_file(&path)?;
                report.removed_temporaries += 1;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_repairs_unreferenced_blobs_and_missing_ones() -> Result<(), AppError> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
        let (_, mut db) = crate::db::connect(&url)?;
        let blobs = Blobs::open(dir.path())?;
        let mut conn = db.conn();
        let kept = blobs.put(b"referenced media")?;
        let orphan = blobs.put(b"nobody refers to this")?;
        let xml = fieldtally_forms::shipped::FORMS[0].1;
        let v = crate::forms::add_version(&mut conn, xml, true)?;
        for (name, sha) in [("a.csv", kept.clone()), ("gone.csv", "ab".repeat(32))] {
            let media = crate::forms::NewMedia {
                filename: name.into(),
                content_type: "text/csv".into(),
                md5: String::new(),
                sha256: sha,
                size: 1,
            };
            crate::forms::put_media(&mut conn, &v.version.form_id, &v.version.version, &media)?;
        }
        std::fs::write(blobs.tmp_dir().join("upload-left"), b"x")?;

        let report = run(&mut conn, &blobs, Duration::ZERO, false)?;
        assert_eq!(report.blobs, 2);
        assert_eq!(report.unreferenced, vec![orphan.clone()]);
        assert_eq!(report.missing.len(), 1);
        assert_eq!(report.missing[0].table, "form_media");
        assert_eq!(report.stale_temporaries, 1);
        assert!(!report.is_clean());
        assert!(blobs.exists(&orphan), "a check changes nothing");

        // A long grace period protects young files.
        let young = run(&mut conn, &blobs, Duration::from_secs(3600), true)?;
        assert!(young.unreferenced.is_empty());
        assert!(blobs.exists(&orphan));

        let repaired = run(&mut conn, &blobs, Duration::ZERO, true)?;
        assert_eq!(repaired.removed_blobs, 1);
        assert_eq!(repaired.removed_temporaries, 1);
        assert!(!blobs.exists(&orphan));
        assert!(blobs.exists(&kept));
        let again = run(&mut conn, &blobs, Duration::ZERO, false)?;
        assert!(again.unreferenced.is_empty());
        assert_eq!(
            again.missing.len(),
            1,
            "a missing blob cannot be repaired, only reported"
        );
        Ok(())
    }
}
