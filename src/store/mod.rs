//! The only SQL in vidsync: schema, append-only migrations, typed queries.
//!
//! The store is both the queue and the memory of the daemon: every state
//! change is one transaction, so a crash at any instant leaves a database that
//! a restart can resume from. Times are unix milliseconds passed in by the
//! caller (one clock, chosen by the daemon), which keeps this module free of
//! hidden time and easy to test.
//!
//! `Store` is one type (the one owner of the connection) with its methods
//! split by concern: `roots`, `folders`, `files` (what the disk says),
//! `uploads` (the exactly-once upload transitions), `remote` (what the host
//! says), `queries` (reads of file rows), `history`, `progress` and `meta`
//! (small typed facts). This file opens the database and runs transactions.

mod copies;
mod files;
mod folders;
mod history;
mod meta;
mod migrations;
mod notices;
mod progress;
mod queries;
mod remote;
mod roots;
mod rows;
mod uploads;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

pub use copies::{CopyJob, Twin};
pub use meta::{AccountPause, Copied, LastError, ReconcileRecord, StorageLeft};
pub use notices::{EventKind, Notice, QueuedNotice, TargetHealth};
pub use remote::{OnDeleted, Superseded};
pub use rows::{FileRow, HistoryRow, Progress, QueueOrder, RootRow, Stat, State, add_counts};
pub use uploads::{Attempt, Holder, HostCopy, Placement};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {}: {what}: {source}{}", path.display(), way_out(path, source))]
    Sql {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database {}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "database {}: written by a newer vidsync (schema {found}, this one knows {known})",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "database {}: schema {found} is older than this vidsync's ({known}); run `vidsync run` or `vidsync scan` once to upgrade it",
        path.display()
    )]
    TooOld {
        path: PathBuf,
        found: i64,
        known: i64,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What to do about a database SQLite says is damaged or not a database:
/// without it, every command ended on "database disk image is malformed"
/// with no way out named.
fn way_out(path: &Path, e: &rusqlite::Error) -> String {
    let damaged = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    );
    if !damaged {
        return String::new();
    }
    let p = path.display();
    format!(
        "; the file is damaged. Stop vidsync, move it aside (mv {p} {p}.broken, with its -wal and -shm files) \
         and start again: the records are rebuilt from the disk, and copies already on the host are \
         adopted instead of uploaded again (`vidsync adopt --dry-run` lists them first)"
    )
}

/// The name of the one host of a library configured with `[api]`, and of
/// the host every record written before several hosts existed belongs to.
pub const DEFAULT_HOST: &str = "default";

/// The one owner of the SQLite connection, seen from one host: a library
/// mirrored to several hosts has one `Store` per host (`for_host`), sharing
/// the connection. A sync root is registered once per host, so a local file
/// has one row per host it goes to, each with its own state, code, attempts
/// and history; every query that is not keyed by a row id or a root id
/// keeps to this host's roots.
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    host: Arc<str>,
    /// Transactions this process committed (every view of the database
    /// shares it): an idle daemon can tell that nothing changed without
    /// asking SQLite.
    changes: Arc<std::sync::atomic::AtomicU64>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("host", &self.host)
            .finish()
    }
}

impl Store {
    /// Open (creating if needed) the database and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_path_buf(),
                what: "creating the database directory",
                source,
            })?;
        }
        let sql = |what| {
            let path = path.to_path_buf();
            move |source| StoreError::Sql { path, what, source }
        };
        let mut conn = Connection::open(path).map_err(sql("opening"))?;
        // First: every statement below may meet a daemon writing (switching
        // to WAL takes a lock), and must wait for it, not fail "busy".
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql("setting busy timeout"))?;
        // WAL lets `status` and `list` read while the daemon writes;
        // synchronous=NORMAL is durable across process crashes in WAL mode.
        // Switching the journal mode can answer "busy" at once, without the
        // busy handler, while another connection writes: try again for as
        // long as the busy timeout would have waited.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(sql("enabling WAL")(e)),
            }
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql("setting synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql("enabling foreign keys"))?;
        migrations::migrate(&mut conn, path)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
            host: Arc::from(DEFAULT_HOST),
            changes: Arc::default(),
        })
    }

    /// Open an existing database for the commands that look at it beside a
    /// running daemon (`status`, `list`, `retry`): never create it, never
    /// migrate it (a new binary's `status` must not upgrade the schema under
    /// an old daemon), and refuse a schema other than this build's.
    pub fn open_existing(path: &Path) -> Result<Store> {
        let sql = |what| {
            let path = path.to_path_buf();
            move |source| StoreError::Sql { path, what, source }
        };
        if !path.exists() {
            return Err(StoreError::Io {
                path: path.to_path_buf(),
                what: "opening the database (has `vidsync run` or `scan` run yet?)",
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql("opening"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql("setting busy timeout"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql("enabling foreign keys"))?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql("reading the schema version"))?;
        let known = migrations::known();
        if found > known {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found,
                known,
            });
        }
        if found < known {
            return Err(StoreError::TooOld {
                path: path.to_path_buf(),
                found,
                known,
            });
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
            host: Arc::from(DEFAULT_HOST),
            changes: Arc::default(),
        })
    }

    /// The same database seen from the host `name`.
    pub fn for_host(&self, name: &str) -> Store {
        Store {
            conn: self.conn.clone(),
            path: self.path.clone(),
            host: Arc::from(name),
            changes: self.changes.clone(),
        }
    }

    /// How many transactions that wrote rows this process has committed to
    /// the database so far (any view). Equal twice: nothing changed in
    /// between (by this process; `vidsync retry` is another).
    pub fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn changed(&self) {
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The host this view keeps to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// This host's name as an SQL string literal. Host names are checked
    /// by the config (letters, digits, `-`, `_`); quoting keeps any other
    /// name harmless too.
    fn host_sql(&self) -> String {
        format!("'{}'", self.host.replace('\'', "''"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sql {
            path: self.path.clone(),
            what,
            source,
        }
    }

    /// Run `f` in one transaction: all of it lands, or none.
    fn tx<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn();
        // IMMEDIATE: take the write lock first. Many changes read then
        // write; a deferred transaction could find its snapshot stale when
        // another process (`vidsync retry`) wrote meanwhile, an error the
        // busy timeout does not cover.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.err(what))?;
        let before = tx.total_changes();
        let out = f(&tx).map_err(self.err(what))?;
        let wrote = tx.total_changes() != before;
        tx.commit().map_err(self.err(what))?;
        if wrote {
            self.changed();
        }
        Ok(out)
    }
}

/// Paths are stored as text. Non-UTF-8 names are refused earlier (scan) with
/// a warning, so this lossy conversion never changes a stored path.
pub fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests;
