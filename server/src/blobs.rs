//! Content-addressed file storage for attachments and form media: `blobs/ab/abcdef…` named by
//! the sha256 of the content. A file is written to `tmp/`, synced, then renamed into place and
//! its folder synced, so a stored name always holds its complete content, even after a crash.
//!
//! A blob is stored before the row that refers to it is committed. So that `fieldtally fsck
//! --repair` never deletes a blob in that gap (or one that an upload of the same content is
//! about to refer to again), writers hold a shared lock on `blobs.lock` from storing the blob
//! until their row is committed, and the repair takes the lock exclusively.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct Blobs {
    root: PathBuf,
    tmp: PathBuf,
    lock: PathBuf,
}

/// Held while blobs are stored and until the rows referring to them are committed (shared), or
/// while unreferenced blobs are deleted (exclusive). Released when dropped.
#[derive(Debug)]
pub struct BlobsLock {
    _file: File,
}

impl Blobs {
    pub fn open(data_dir: &Path) -> io::Result<Blobs> {
        let root = data_dir.join("blobs");
        let tmp = data_dir.join("tmp");
        fs::create_dir_all(&root)?;
        fs::create_dir_all(&tmp)?;
        Ok(Blobs {
            root,
            tmp,
            lock: data_dir.join("blobs.lock"),
        })
    }

    fn lock_file(&self) -> io::Result<File> {
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
    }

    /// Blocks while a repair is deleting blobs.
    pub fn lock_shared(&self) -> io::Result<BlobsLock> {
        let f = self.lock_file()?;
        f.lock_shared()?;
        Ok(BlobsLock { _file: f })
    }

    /// Waits until no blob is between being stored and being referred to.
    pub fn lock_exclusive(&self) -> io::Result<BlobsLock> {
        let f = self.lock_file()?;
        f.lock()?;
        Ok(BlobsLock { _file: f })
    }

    /// The folder of stored blobs, for fsck and backups.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of upload temporary files.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// A new temporary file; it is removed when dropped unless [`Blobs::commit`] moves it.
    pub fn temp_file(&self) -> io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(&self.tmp)
    }

    pub fn path(&self, sha256: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("00");
        self.root.join(prefix).join(sha256)
    }

    pub fn exists(&self, sha256: &str) -> bool {
        self.path(sha256).is_file()
    }

    /// Makes the temporary file durable under its content hash. Hold [`Blobs::lock_shared`]
    /// until the row that refers to it is committed.
    pub fn commit(&self, temp: tempfile::TempPath, sha256: &str) -> io::Result<()> {
        let target = self.path(sha256);
        if target.is_file() {
            // Same content already stored; the temporary file is removed on drop.
            return Ok(());
        }
        File::open(&temp)?.sync_all()?;
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir)?;
        temp.persist(&target).map_err(|e| e.error)?;
        File::open(&dir)?.sync_all()?;
        Ok(())
    }

    /// Where a copy derived from a blob (a photo's thumbnail or review size) is cached.
    pub fn derived_path(&self, sha256: &str, kind: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("00");
        self.root
            .join("derived")
            .join(prefix)
            .join(format!("{sha256}.{kind}.jpg"))
    }

    /// Caches a derived copy. Not synced: after a crash it is simply made again, and the
    /// rename means a reader never sees half a file.
    pub fn put_derived(&self, sha256: &str, kind: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        let target = self.derived_path(sha256, kind);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir)?;
        let mut temp = self.temp_file()?;
        temp.write_all(bytes)?;
        temp.persist(&target).map_err(|e| e.error)?;
        Ok(target)
    }

    /// Removes a blob and the copies derived from it (erasure). Hold [`Blobs::lock_exclusive`]
    /// and make sure no row refers to it any more.
    pub fn remove(&self, sha256: &str) -> io::Result<()> {
        match fs::remove_file(self.path(sha256)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let derived = self.derived_path(sha256, "any");
        let Some(dir) = derived.parent() else {
            return Ok(());
        };
        let prefix = format!("{sha256}.");
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Stores a small in-memory file (form media); returns its sha256. Hold
    /// [`Blobs::lock_shared`] until the row that refers to it is committed.
    pub fn put(&self, bytes: &[u8]) -> io::Result<String> {
        let sha = hex::encode(Sha256::digest(bytes));
        let mut temp = self.temp_file()?;
        temp.write_all(bytes)?;
        self.commit(temp.into_temp_path(), &sha)?;
        Ok(sha)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_by_content_hash_once() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = Blobs::open(dir.path())?;
        let a = blobs.put(b"hello")?;
        assert_eq!(
            a,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(fs::read(blobs.path(&a))?, b"hello");
        assert_eq!(blobs.put(b"hello")?, a);
        // Nothing is left behind in tmp/.
        assert_eq!(fs::read_dir(dir.path().join("tmp"))?.count(), 0);
        Ok(())
    }

    #[test]
    fn derived_copies_are_cached_beside_their_blob() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = Blobs::open(dir.path())?;
        let a = blobs.put(b"photo")?;
        let path = blobs.put_derived(&a, "thumb", b"small")?;
        assert_eq!(path, blobs.derived_path(&a, "thumb"));
        assert_eq!(fs::read(&path)?, b"small");
        assert_ne!(blobs.derived_path(&a, "review"), path);
        assert_eq!(fs::read_dir(dir.path().join("tmp"))?.count(), 0);
        Ok(())
    }
}
