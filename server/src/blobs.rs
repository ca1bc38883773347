//! Content-addressed file storage for attachments and form media: `blobs/ab/abcdef…` named by
//! the sha256 of the content. A file is written to `tmp/`, synced, then renamed into place and
//! its folder synced, so a stored name always holds its complete content, even after a crash.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct Blobs {
    root: PathBuf,
    tmp: PathBuf,
}

impl Blobs {
    pub fn open(data_dir: &Path) -> io::Result<Blobs> {
        let root = data_dir.join("blobs");
        let tmp = data_dir.join("tmp");
        fs::create_dir_all(&root)?;
        fs::create_dir_all(&tmp)?;
        Ok(Blobs { root, tmp })
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

    /// Makes the temporary file durable under its content hash.
    pub fn commit(&self, temp: tempfile::NamedTempFile, sha256: &str) -> io::Result<()> {
        let target = self.path(sha256);
        if target.is_file() {
            // Same content already stored; the temporary file is removed on drop.
            return Ok(());
        }
        temp.as_file().sync_all()?;
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

    /// Stores a small in-memory file (form media); returns its sha256.
    pub fn put(&self, bytes: &[u8]) -> io::Result<String> {
        let sha = hex::encode(Sha256::digest(bytes));
        let mut temp = self.temp_file()?;
        temp.write_all(bytes)?;
        self.commit(temp, &sha)?;
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
