//! One server process per SQLite file. SQLite serialises writers inside one process's pool, but
//! nothing in voxbridge coordinates two processes on one file: each would think it owned the
//! live calls, the chat sweeper and the recordings. So a server holds an OS lock on a file next
//! to the database (`<database>.lock`) for as long as it lives, and a second server is refused
//! at start. The OS drops the lock when the process ends however it ends, so a crash never
//! leaves a stale lock behind. In-memory databases belong to one process anyway and need none.
//! Other commands (`migrate`, `keys …`) do not take the lock, so they work beside a running
//! server.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Why a server may not open its SQLite database.
#[derive(Debug, thiserror::Error)]
pub enum SqliteLockError {
    #[error(
        "the SQLite database {database} is already in use by another voxbridge server (it holds \
         {lock}); SQLite runs one server process per database file: stop the other server, give \
         this one its own database_url, or use PostgreSQL to run several servers on one database"
    )]
    InUse { database: PathBuf, lock: PathBuf },
    #[error("cannot lock {lock} for the SQLite database: {source}")]
    Io {
        lock: PathBuf,
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or ending the process) lets another server start.
#[derive(Debug)]
pub struct SqliteLock {
    _file: File,
}

impl SqliteLock {
    /// Takes the lock of the database `database_url` names, if it is a SQLite file; answers
    /// `None` for PostgreSQL and in-memory SQLite.
    pub fn acquire(database_url: &str) -> Result<Option<Self>, SqliteLockError> {
        let Some(database) = sqlite_file(database_url) else {
            return Ok(None);
        };
        let lock = lock_path(&database);
        let io = |source| SqliteLockError::Io {
            lock: lock.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(TryLockError::WouldBlock) => Err(SqliteLockError::InUse { database, lock }),
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

/// The file a `sqlite:` URL opens, read as sqlx reads it; `None` for other URLs and in-memory
/// databases.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = database.is_empty()
        || database == ":memory:"
        || params.split('&').any(|p| p == "mode=memory");
    (!in_memory).then(|| PathBuf::from(percent_decode(database)))
}

/// `<database>.lock`, in the database's directory made absolute, so two spellings of one path
/// (relative, through a symlinked directory) find the same lock.
fn lock_path(database: &Path) -> PathBuf {
    let name = format!(
        "{}.lock",
        database
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let dir = match database.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    dir.canonicalize().unwrap_or(dir).join(name)
}

/// `%XX` escapes decoded, as sqlx decodes the database part of the URL.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_found_as_sqlx_finds_them() {
        assert_eq!(
            sqlite_file("sqlite:voxbridge.db?mode=rwc"),
            Some(PathBuf::from("voxbridge.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:///tmp/a%20b.db"),
            Some(PathBuf::from("/tmp/a b.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://?mode=memory"), None);
        assert_eq!(sqlite_file("sqlite:a.db?mode=memory"), None);
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
    }

    #[test]
    fn a_second_lock_on_one_file_is_refused_until_the_first_is_dropped() {
        let path = std::env::temp_dir().join(format!("vb-lock-{}.db", uuid::Uuid::new_v4()));
        let url = format!("sqlite:{}", path.display());
        let first = SqliteLock::acquire(&url)
            .unwrap()
            .expect("a file is locked");
        let refused = SqliteLock::acquire(&url).unwrap_err();
        assert!(
            matches!(refused, SqliteLockError::InUse { .. }),
            "{refused}"
        );
        drop(first);
        let again = SqliteLock::acquire(&url).unwrap();
        assert!(again.is_some());
        drop(again);
        let _ = std::fs::remove_file(lock_path(&path));
    }
}
