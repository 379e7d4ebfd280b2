//! Schema migrations, keyed on `PRAGMA user_version`: append-only, never edit
//! or remove one. All pending ones run in one transaction with the version bump, so a
//! crash mid-migration leaves the previous schema intact.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE roots (
        id INTEGER PRIMARY KEY,
        local TEXT NOT NULL UNIQUE,
        remote TEXT NOT NULL
    );
    CREATE TABLE folders (
        root_id INTEGER NOT NULL REFERENCES roots(id),
        rel_dir TEXT NOT NULL,
        fld_id INTEGER NOT NULL,
        ino INTEGER,
        PRIMARY KEY (root_id, rel_dir)
    );
    CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        root_id INTEGER NOT NULL REFERENCES roots(id),
        rel_path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        dev INTEGER NOT NULL,
        ino INTEGER NOT NULL,
        state TEXT NOT NULL,
        file_code TEXT,
        fld_id INTEGER,
        title TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        next_attempt_at INTEGER,
        unknown_since INTEGER,
        first_seen_at INTEGER NOT NULL,
        stable_since INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        playable INTEGER,
        encoding TEXT,
        deleted_by TEXT,
        remote_event_at TEXT,
        UNIQUE (root_id, rel_path)
    );
    CREATE INDEX files_state ON files(state, next_attempt_at);
    CREATE INDEX files_code ON files(file_code);
    CREATE INDEX files_inode ON files(dev, ino);
    CREATE TABLE history (
        id INTEGER PRIMARY KEY,
        file_id INTEGER NOT NULL REFERENCES files(id),
        at INTEGER NOT NULL,
        event TEXT NOT NULL,
        file_code TEXT,
        detail TEXT
    );
    CREATE INDEX history_file ON history(file_id);
    CREATE TABLE progress (
        file_id INTEGER PRIMARY KEY REFERENCES files(id),
        sent INTEGER NOT NULL,
        total INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);",
    // 2: where each uploaded file was last placed on the host (its relative
    // path then), so moves are told apart from host-side edits; encoding
    // progress.
    "ALTER TABLE files ADD COLUMN placed_path TEXT;
    ALTER TABLE files ADD COLUMN encoding_progress INTEGER;
    UPDATE files SET placed_path = rel_path WHERE file_code IS NOT NULL;",
    // 3: the current rate of an upload in flight (bytes/s over the last
    // seconds, not the average since it began).
    "ALTER TABLE progress ADD COLUMN rate INTEGER NOT NULL DEFAULT 0;",
    // 4: codes in the history are looked up when adopting after a lost reply.
    "CREATE INDEX history_code ON history(file_code);",
    // 5: remote folders vidsync created itself: they held nothing of
    // another tool's, so a file uploaded into one needs no search for a
    // copy already there.
    "CREATE TABLE created_folders (fld_id INTEGER PRIMARY KEY);",
];

/// The schema version this build writes.
pub(super) fn known() -> i64 {
    MIGRATIONS.len() as i64
}

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sql = |what| {
        let path = path.to_path_buf();
        move |source| StoreError::Sql { path, what, source }
    };
    // IMMEDIATE takes the write lock before reading the version, so two
    // processes opening a new database at once (the daemon and `status`)
    // cannot both run the same migration.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql("starting a migration"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql("reading the schema version"))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known,
        });
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(m).map_err(sql("migrating the schema"))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(sql("recording the schema version"))?;
    }
    tx.commit().map_err(sql("committing a migration"))?;
    Ok(())
}
