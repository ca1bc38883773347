//! Encryption at rest of protected personal data: AES-256-GCM under data keys from
//! configuration (never from the database, so a copy of the database alone reveals nothing).
//!
//! A sealed value is self-describing: `MAGIC`, the id of the key that sealed it, a random
//! 96-bit nonce, then the ciphertext and its tag. The key id lets keys rotate: the newest key
//! seals, every listed key opens, and `fieldtally keys rotate` re-seals old values. Callers pass
//! a context (which table, column and record the value belongs to) that is authenticated with
//! the value, so a sealed value copied into another record does not open there.
//!
//! The key file has one key per line, `ID HEX` (an id of 1 to 32 characters `A-Za-z0-9._-` and
//! 32 bytes as 64 hex digits); blank lines and lines starting with `#` are ignored. The **last**
//! key is the current one: append a new line to rotate.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::error::AppError;

/// Marks sealed bytes. It starts with NUL, which never begins an XML document or UTF-8 text a
/// phone sends, so sealed and plain values can share a column.
const MAGIC: &[u8; 5] = b"\0FTS1";
const NONCE_LEN: usize = 12;
const MAX_KEY_ID: usize = 32;

struct DataKey {
    id: String,
    cipher: Aes256Gcm,
}

/// The configured data keys; the last one seals.
pub struct DataKeys {
    keys: Vec<DataKey>,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        write!(f, "DataKeys({ids:?})")
    }
}

fn bad_keys(message: impl Into<String>) -> AppError {
    AppError::internal(format!("data key file: {}", message.into()))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl DataKeys {
    /// Parses the key file's text.
    pub fn parse(text: &str) -> Result<DataKeys, AppError> {
        let mut keys: Vec<DataKey> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, hex_key) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad_keys(format!("line {} is not `ID HEX`", n + 1)))?;
            let hex_key = hex_key.trim();
            if !valid_id(id) {
                return Err(bad_keys(format!(
                    "line {}: a key id has 1 to {MAX_KEY_ID} characters A-Z, a-z, 0-9, '.', '_' or '-'",
                    n + 1
                )));
            }
            let bytes = hex::decode(hex_key)
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| {
                    bad_keys(format!("line {}: the key must be 64 hex digits", n + 1))
                })?;
            if keys.iter().any(|k| k.id == id) {
                return Err(bad_keys(format!(
                    "line {}: key id '{id}' appears twice",
                    n + 1
                )));
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes)
                .map_err(|_| bad_keys(format!("line {}: not a 256-bit key", n + 1)))?;
            keys.push(DataKey {
                id: id.to_string(),
                cipher,
            });
        }
        if keys.is_empty() {
            return Err(bad_keys("no key in the file"));
        }
        Ok(DataKeys { keys })
    }

    /// Reads the key file; refuses one that other users may read.
    pub fn load(path: &Path) -> Result<DataKeys, AppError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| bad_keys(format!("cannot read {}: {e}", path.display())))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(bad_keys(format!(
                    "{} is readable by other users; run: chmod 600 {}",
                    path.display(),
                    path.display()
                )));
            }
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad_keys(format!("cannot read {}: {e}", path.display())))?;
        DataKeys::parse(&text)
    }

    /// Reads the key file at `path`, or, if there is none and `create` allows, writes one with a
    /// new key (only the owner may read it). Several instances starting at once on one data
    /// folder agree on one file: the first creates it, the others read it.
    pub fn load_or_create(path: &Path, create: bool) -> Result<DataKeys, AppError> {
        if path.exists() || !create {
            return DataKeys::load(path);
        }
        let id = format!("k{}", chrono::Utc::now().format("%Y%m%d"));
        let line = DataKeys::generate_line(&id)?;
        let text = format!(
            "# fieldtally data keys: ID HEX per line, the last one seals. Keep a copy apart\n# from the database backups; sealed data cannot be read without it.\n{line}\n"
        );
        // Written whole under a temporary name, then linked into place: a link never replaces an
        // existing file, so an instance starting at the same moment either wins or reads the
        // winner's complete file.
        let temp = path.with_extension(format!("new-{}", hex::encode(rand::random::<[u8; 6]>())));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        {
            use std::io::Write;
            let mut file = options.open(&temp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        let linked = std::fs::hard_link(&temp, path);
        std::fs::remove_file(&temp)?;
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        DataKeys::load(path)
    }

    /// A new key line, to append to the key file.
    pub fn generate_line(id: &str) -> Result<String, AppError> {
        if !valid_id(id) {
            return Err(AppError::bad_request(
                "bad_key_id",
                format!("a key id has 1 to {MAX_KEY_ID} characters A-Z, a-z, 0-9, '.', '_' or '-'"),
            ));
        }
        Ok(format!("{id} {}", hex::encode(rand::random::<[u8; 32]>())))
    }

    fn current(&self) -> Result<&DataKey, AppError> {
        self.keys.last().ok_or_else(|| bad_keys("no key"))
    }

    /// The id of the key that seals new values.
    pub fn current_id(&self) -> &str {
        self.keys.last().map(|k| k.id.as_str()).unwrap_or_default()
    }

    /// Encrypts `plaintext` for the record described by `context`.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, AppError> {
        let key = self.current()?;
        let mut out = header(&key.id);
        let nonce: [u8; NONCE_LEN] = rand::random();
        let aad = [out.as_slice(), context].concat();
        let ciphertext = key
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| AppError::internal("encryption failed"))?;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Decrypts a sealed value of the record described by `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, AppError> {
        let parts = split(sealed).ok_or_else(|| AppError::internal("sealed value is damaged"))?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == parts.key_id)
            .ok_or_else(|| {
                AppError::internal(format!(
                    "data key '{}' is not in the data key file; add it back to read this value",
                    parts.key_id
                ))
            })?;
        let aad = [parts.header, context].concat();
        let nonce: [u8; NONCE_LEN] = parts
            .nonce
            .try_into()
            .map_err(|_| AppError::internal("sealed value is damaged"))?;
        key.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: parts.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                AppError::internal(
                    "sealed value does not open: damaged, or moved from another record",
                )
            })
    }
}

fn header(key_id: &str) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    // valid_id bounds the length to 32, so it fits one byte.
    h.push(key_id.len() as u8);
    h.extend_from_slice(key_id.as_bytes());
    h
}

struct Parts<'a> {
    header: &'a [u8],
    key_id: &'a str,
    nonce: &'a [u8],
    ciphertext: &'a [u8],
}

fn split(sealed: &[u8]) -> Option<Parts<'_>> {
    let rest = sealed.strip_prefix(MAGIC.as_slice())?;
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    let key_id = std::str::from_utf8(rest.get(..len)?).ok()?;
    let rest = rest.get(len..)?;
    let nonce = rest.get(..NONCE_LEN)?;
    let ciphertext = rest.get(NONCE_LEN..)?;
    Some(Parts {
        header: sealed.get(..MAGIC.len() + 1 + len)?,
        key_id,
        nonce,
        ciphertext,
    })
}

/// Whether `bytes` is a sealed value (rather than plain data).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The id of the key that sealed `bytes`, if it is a sealed value.
pub fn key_id_of(bytes: &[u8]) -> Option<&str> {
    split(bytes).map(|p| p.key_id)
}

/// The context a submission version's raw XML is sealed under.
pub fn xml_context(instance_id: &str) -> Vec<u8> {
    format!("submission_versions.xml:{instance_id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "k2 ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    #[test]
    fn seals_and_opens_with_the_same_context_only() {
        let keys = DataKeys::parse(K1).expect("keys");
        let sealed = keys.seal(b"<data>Lo Thi A</data>", b"ctx:1").expect("seal");
        assert!(is_sealed(&sealed));
        assert_eq!(key_id_of(&sealed), Some("k1"));
        assert!(!sealed.windows(6).any(|w| w == b"Lo Thi"), "no plaintext");
        assert_eq!(
            keys.open(&sealed, b"ctx:1").expect("open"),
            b"<data>Lo Thi A</data>"
        );
        assert!(
            keys.open(&sealed, b"ctx:2").is_err(),
            "moved to another record"
        );
        // Two seals of one value differ (random nonce).
        assert_ne!(
            sealed,
            keys.seal(b"<data>Lo Thi A</data>", b"ctx:1").expect("seal")
        );
    }

    #[test]
    fn tampering_is_detected() {
        let keys = DataKeys::parse(K1).expect("keys");
        let mut sealed = keys.seal(b"secret", b"c").expect("seal");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(keys.open(&sealed, b"c").is_err());
        assert!(keys.open(b"\0FTS1", b"c").is_err(), "truncated");
        assert!(keys.open(b"<data/>", b"c").is_err(), "plain data");
    }

    #[test]
    fn the_last_key_seals_and_every_key_opens() {
        let old = DataKeys::parse(K1).expect("keys");
        let sealed_old = old.seal(b"a", b"c").expect("seal");
        let both = DataKeys::parse(&format!("# rotated\n{K1}\n\n{K2}\n")).expect("keys");
        assert_eq!(both.current_id(), "k2");
        assert_eq!(both.open(&sealed_old, b"c").expect("open"), b"a");
        let sealed_new = both.seal(b"b", b"c").expect("seal");
        assert_eq!(key_id_of(&sealed_new), Some("k2"));
        let msg = old.open(&sealed_new, b"c").unwrap_err().to_string();
        assert!(msg.contains("'k2' is not in the data key file"), "{msg}");
        // Tampering with the key id in the header is caught too.
        let mut relabelled = sealed_new.clone();
        relabelled[6] = b'1';
        assert!(both.open(&relabelled, b"c").is_err());
    }

    #[test]
    fn bad_key_files_are_refused_with_a_reason() {
        for (text, want) in [
            ("", "no key"),
            ("k1", "not `ID HEX`"),
            ("k1 abcd", "64 hex digits"),
            (
                "bad/id 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                "key id",
            ),
            (&format!("{K1}\n{K1}"), "appears twice"),
        ] {
            let err = DataKeys::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let line = DataKeys::generate_line("2026-01").expect("line");
        assert_eq!(
            DataKeys::parse(&line).expect("parses").current_id(),
            "2026-01"
        );
        assert!(DataKeys::generate_line("a b").is_err());
        assert!(!format!("{:?}", DataKeys::parse(K1).expect("k")).contains("0001"));
    }

    #[test]
    fn a_world_readable_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keys");
        std::fs::write(&path, K1).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = DataKeys::load(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(DataKeys::load(&path).expect("load").current_id(), "k1");
    }

    #[test]
    fn a_missing_key_file_is_created_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("data.keys");
        assert!(
            DataKeys::load_or_create(&path, false).is_err(),
            "not created unless allowed"
        );
        let first = DataKeys::load_or_create(&path, true).expect("created");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = first.seal(b"x", b"c").expect("seal");
        let again = DataKeys::load_or_create(&path, true).expect("read back");
        assert_eq!(again.open(&sealed, b"c").expect("same key"), b"x");
    }
}
