//! Schema migrations, keyed on `PRAGMA user_version`: append-only, never edit
//! or remove one. All pending ones run in one transaction with the version bump, so a
//! crash mid-migration leaves the previous schema intact.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

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
    // 6: schema that lived in meta keys gets its own place: the device of
    // each sync root (`root_dev:{id}`, to tell an unmounted disk from
    // deleted files) and the remote trash folders (`trash_fld:{path}`).
    // Values are carried over; one that is not a number was ignored when
    // read and is dropped. (GLOB, not LIKE: `_` is a wildcard for LIKE.)
    "ALTER TABLE roots ADD COLUMN dev INTEGER;
    UPDATE roots SET dev = (
        SELECT CAST(v AS INTEGER) FROM meta
        WHERE k = 'root_dev:' || roots.id AND v GLOB '[0-9]*' AND v NOT GLOB '*[^0-9]*');
    DELETE FROM meta WHERE k GLOB 'root_dev:*';
    CREATE TABLE trash_folders (path TEXT PRIMARY KEY, fld_id INTEGER NOT NULL);
    INSERT INTO trash_folders (path, fld_id)
        SELECT substr(k, length('trash_fld:') + 1), CAST(v AS INTEGER) FROM meta
        WHERE k GLOB 'trash_fld:*' AND v GLOB '[0-9]*' AND v NOT GLOB '*[^0-9]*';
    DELETE FROM meta WHERE k GLOB 'trash_fld:*';",
    // 7: a waiting file held back because evidence says it is not complete
    // yet (the reason, when that was reported as overdue, and whether the
    // user said to upload it anyway); remote copies replaced by a new
    // version, to be moved to the trash folder once the new one is up.
    "ALTER TABLE files ADD COLUMN incomplete TEXT;
    ALTER TABLE files ADD COLUMN incomplete_reported_at INTEGER;
    ALTER TABLE files ADD COLUMN force_upload INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE superseded (
        file_code TEXT PRIMARY KEY,
        file_id INTEGER NOT NULL REFERENCES files(id),
        fld_id INTEGER,
        at INTEGER NOT NULL,
        trashed_at INTEGER
    );",
    // 8: notifications: events to tell (at most one per kind and file:
    // `subject`), their sends to each configured target with retries, and
    // each target's health for `status`.
    "CREATE TABLE notices (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        subject TEXT,
        path TEXT,
        code TEXT,
        detail TEXT,
        at INTEGER NOT NULL,
        target TEXT,
        fanned INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX notices_once ON notices(kind, subject) WHERE subject IS NOT NULL;
    CREATE INDEX notices_fresh ON notices(fanned) WHERE fanned = 0;
    CREATE TABLE notice_sends (
        notice_id INTEGER NOT NULL REFERENCES notices(id),
        target TEXT NOT NULL,
        tries INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL,
        done_at INTEGER,
        gave_up INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (target, notice_id)
    );
    CREATE TABLE notify_targets (
        target TEXT PRIMARY KEY,
        label TEXT NOT NULL,
        last_ok_at INTEGER,
        failing_since INTEGER,
        last_error TEXT,
        last_error_at INTEGER,
        gave_up INTEGER NOT NULL DEFAULT 0
    );",
    // 9: several hosts per library. A sync root is registered once per
    // host (`roots.host`), so everything keyed by a root (folders, files,
    // their history) is per host; folders vidsync created, trash folders
    // and the facts about an account are keyed by host too; `hosts`
    // remembers each host's API URL, so a host renamed in the config keeps
    // its records. Every record so far belongs to the one host a config
    // with `[api]` has: `default`. (Tables with a new key are rebuilt;
    // `migrate` runs this with foreign keys off and checks them after.)
    "CREATE TABLE roots_v9 (
        id INTEGER PRIMARY KEY,
        host TEXT NOT NULL,
        local TEXT NOT NULL,
        remote TEXT NOT NULL,
        dev INTEGER,
        UNIQUE (host, local)
    );
    INSERT INTO roots_v9 (id, host, local, remote, dev)
        SELECT id, 'default', local, remote, dev FROM roots;
    DROP TABLE roots;
    ALTER TABLE roots_v9 RENAME TO roots;
    CREATE TABLE created_folders_v9 (
        host TEXT NOT NULL,
        fld_id INTEGER NOT NULL,
        PRIMARY KEY (host, fld_id)
    );
    INSERT INTO created_folders_v9 (host, fld_id) SELECT 'default', fld_id FROM created_folders;
    DROP TABLE created_folders;
    ALTER TABLE created_folders_v9 RENAME TO created_folders;
    CREATE TABLE trash_folders_v9 (
        host TEXT NOT NULL,
        path TEXT NOT NULL,
        fld_id INTEGER NOT NULL,
        PRIMARY KEY (host, path)
    );
    INSERT INTO trash_folders_v9 (host, path, fld_id) SELECT 'default', path, fld_id FROM trash_folders;
    DROP TABLE trash_folders;
    ALTER TABLE trash_folders_v9 RENAME TO trash_folders;
    CREATE TABLE host_meta (
        host TEXT NOT NULL,
        k TEXT NOT NULL,
        v TEXT NOT NULL,
        PRIMARY KEY (host, k)
    );
    INSERT INTO host_meta (host, k, v) SELECT 'default', k, v FROM meta
        WHERE k IN ('last_error', 'key_ok', 'storage_left', 'account_pause',
                    'reconcile_last_poll_ok', 'reconcile_last_audit', 'last_reconcile');
    DELETE FROM meta
        WHERE k IN ('last_error', 'key_ok', 'storage_left', 'account_pause',
                    'reconcile_last_poll_ok', 'reconcile_last_audit', 'last_reconcile');
    CREATE TABLE hosts (name TEXT PRIMARY KEY, url TEXT);",
    // Version 10: a copy host to host (`copy_from`) in progress. The direct
    // link is recorded before upload/url is asked to fetch it, and the code
    // the host answered right after, so a crash at any instant can find the
    // job again (file/url_uploads lists each job with its URL) instead of
    // starting a second one. The stat is the local file's when the copy
    // began: a copy of an older version is never taken for the new one.
    "CREATE TABLE copies (
        file_id INTEGER PRIMARY KEY REFERENCES files(id) ON DELETE CASCADE,
        source TEXT NOT NULL,
        url TEXT NOT NULL,
        code TEXT,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        started_at INTEGER NOT NULL
    );",
    // Version 11: a notice names the host it happened on (NULL: the
    // library's, such as the daily summary). A file failing on two hosts,
    // or two hosts rejecting their keys, are two things to tell.
    "ALTER TABLE notices ADD COLUMN host TEXT;
    UPDATE notices SET host = 'default' WHERE target IS NULL;
    DROP INDEX notices_once;
    CREATE UNIQUE INDEX notices_once ON notices(kind, COALESCE(host, ''), subject)
        WHERE subject IS NOT NULL;",
    // Version 12: the watch link each host reports for a file code in
    // file/list (hosts differ: `/<code>`, `/<code>.html`, `/e/<code>`), for
    // `vidsync links`. Keyed by code, so a new upload never shows an old
    // link.
    "CREATE TABLE links (
        host TEXT NOT NULL,
        code TEXT NOT NULL,
        link TEXT NOT NULL,
        PRIMARY KEY (host, code)
    );",
    // Version 13: the files not yet playable, which the encoding polls
    // read, without going through every uploaded file of a large library.
    "CREATE INDEX files_not_playable ON files(state) WHERE COALESCE(playable, 0) = 0;",
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
    // Rebuilding a table (migration 9) drops the old one, which foreign
    // keys would refuse while rows refer to it; the pragma is a no-op
    // inside a transaction, so it is set around it, and the keys are
    // checked before the commit instead.
    conn.pragma_update(None, "foreign_keys", "OFF")
        .map_err(sql("disabling foreign keys for a migration"))?;
    let out = migrate_in_tx(conn, path);
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sql("enabling foreign keys"))?;
    out
}

fn migrate_in_tx(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
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
    let broken: Option<String> = tx
        .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
        .optional()
        .map_err(sql("checking foreign keys after a migration"))?;
    if let Some(table) = broken {
        return Err(StoreError::Sql {
            path: path.to_path_buf(),
            what: "checking foreign keys after a migration",
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
                Some(format!("a row of {table} refers to nothing")),
            ),
        });
    }
    tx.commit().map_err(sql("committing a migration"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Schema versions: reopening, refusing a newer one, and upgrades that
    //! lose nothing.

    use std::path::Path;

    use rusqlite::Connection;

    use super::super::tests::stat;
    use super::super::{AccountPause, LastError, State, StorageLeft, Store};
    use super::MIGRATIONS;

    #[test]
    fn reopening_keeps_everything_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let s = Store::open(&path).unwrap();
            let root = s.ensure_root(Path::new("/srv/a"), "").unwrap();
            s.insert_file(root, "a.mp4", stat(1, 1), 1).unwrap();
            s.set_reconcile_last_poll(123).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.list(None).unwrap().len(), 1);
        assert_eq!(s.reconcile_last_poll().unwrap(), Some(123));
        drop(s);
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.contains("newer vidsync"), "{err}");
    }

    #[test]
    fn the_read_side_never_creates_or_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let err = Store::open_existing(&path).unwrap_err().to_string();
        assert!(err.contains("has `vidsync run`"), "{err}");
        assert!(!path.exists(), "nothing created");
        drop(Store::open(&path).unwrap());
        assert!(Store::open_existing(&path).is_ok());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        drop(conn);
        let err = Store::open_existing(&path).unwrap_err().to_string();
        assert!(err.contains("older than this vidsync"), "{err}");
        let conn = Connection::open(&path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 1, "not migrated by the read side");
    }

    #[test]
    fn a_version_1_database_is_upgraded_without_losing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            // A database as the first release wrote it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
            "INSERT INTO roots (id, local, remote) VALUES (1, '/srv/a', 'A');
             INSERT INTO folders (root_id, rel_dir, fld_id) VALUES (1, '', 7);
             INSERT INTO files (id, root_id, rel_path, size, mtime_ns, dev, ino, state, file_code,
                                fld_id, title, first_seen_at, stable_since, updated_at)
             VALUES (1, 1, 'x/y.mp4', 10, 5, 1, 2, 'uploaded', 'abcdefghijkl', 7, 'y', 1, 1, 1),
                    (2, 1, 'w.mp4', 10, 5, 1, 3, 'queued', NULL, NULL, NULL, 1, 1, 1);
             INSERT INTO history (file_id, at, event, file_code) VALUES (1, 1, 'uploaded', 'abcdefghijkl');
             PRAGMA user_version = 1;",
        )
        .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let up = s.file(1).unwrap().unwrap();
        assert_eq!(up.state, State::Uploaded);
        assert_eq!(up.file_code.as_deref(), Some("abcdefghijkl"));
        assert_eq!(
            up.placed_path.as_deref(),
            Some("x/y.mp4"),
            "placed where it was"
        );
        let q = s.file(2).unwrap().unwrap();
        assert_eq!((q.state, q.placed_path), (State::Queued, None));
        assert_eq!(s.folder(1, "").unwrap(), Some(7));
        assert_eq!(s.history(1).unwrap().len(), 1);
    }

    #[test]
    fn meta_keys_that_held_schema_keep_their_values_in_their_own_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            // A database as version 5 wrote it, with the facts it kept in meta.
            let conn = Connection::open(&path).unwrap();
            for m in &MIGRATIONS[..5] {
                conn.execute_batch(m).unwrap();
            }
            conn.execute_batch(
            r#"INSERT INTO roots (id, local, remote) VALUES (1, '/srv/a', 'A'), (2, '/srv/b', 'B'),
                 (3, '/srv/c', 'C');
             INSERT INTO meta (k, v) VALUES
               ('root_dev:1', '2049'), ('root_dev:2', 'junk'),
               ('trash_fld:Trash', '77'), ('trash_fld:Old/Bin', '78'),
               ('last_error', '{"at":5,"error":"HTTP 502"}'), ('key_ok', 'false'),
               ('storage_left', '-12'), ('account_pause', '{"until":9,"reason":"quota"}'),
               ('reconcile_last_poll_ok', '11'), ('reconcile_last_audit', '12'),
               ('last_reconcile', '{"at":13,"ok":true,"result":"r","blocked":false,"removals":0,"uploaded":2}');
             PRAGMA user_version = 5;"#,
        )
        .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.root_dev(1).unwrap(), Some(2049));
        assert_eq!(
            s.root_dev(2).unwrap(),
            None,
            "a value never read as a device"
        );
        assert_eq!(s.root_dev(3).unwrap(), None);
        assert_eq!(s.trash_folder("Trash").unwrap(), Some(77));
        assert_eq!(s.trash_folder("Old/Bin").unwrap(), Some(78));
        // The facts that stay in meta read as before.
        assert_eq!(
            s.last_error().unwrap(),
            Some(LastError {
                at: Some(5),
                error: "HTTP 502".into()
            })
        );
        assert_eq!(s.key_ok().unwrap(), Some(false));
        assert_eq!(s.storage_left().unwrap(), Some(StorageLeft::Bytes(-12)));
        assert_eq!(
            s.account_pause().unwrap(),
            Some(AccountPause {
                until: 9,
                reason: "quota".into()
            })
        );
        assert_eq!(s.reconcile_last_poll().unwrap(), Some(11));
        assert_eq!(s.reconcile_last_audit().unwrap(), Some(12));
        assert_eq!(
            s.last_reconcile().unwrap().map(|r| (r.at, r.uploaded)),
            Some((13, Some(2)))
        );
        drop(s);
        let conn = Connection::open(&path).unwrap();
        let left: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM meta WHERE k GLOB 'root_dev:*' OR k GLOB 'trash_fld:*'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0, "no schema left hidden in meta");
    }

    /// A database written by the last one-host release (schema 8): made by
    /// `vidsync scan` against the test host, with files uploaded in three
    /// folders, one refused for good and one deleted locally.
    const FIXTURE_V8: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/state-v8.db");

    #[test]
    fn the_last_one_host_release_s_database_becomes_the_default_host_s() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::copy(FIXTURE_V8, &path).unwrap();
        type Row = (i64, String, String, Option<String>, Option<i64>);
        let before: Vec<Row> = {
            let conn = Connection::open(&path).unwrap();
            let v: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(v, 8, "the fixture is the one-host schema");
            let mut st = conn
                .prepare("SELECT id, rel_path, state, file_code, fld_id FROM files ORDER BY id")
                .unwrap();
            st.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        assert_eq!(before.len(), 6);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.host(), "default");
        // Every row, code and state as it was, seen from the default host.
        let after: Vec<_> = s
            .list(None)
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.id,
                    r.rel_path,
                    r.state.as_str().to_string(),
                    r.file_code,
                    r.fld_id.map(|v| v as i64),
                )
            })
            .collect();
        let mut sorted = after.clone();
        sorted.sort();
        assert_eq!(sorted, before);
        let codes = after.iter().filter(|r| r.3.is_some()).count();
        assert_eq!(codes, 5, "four uploaded, one deleted locally: no code lost");
        assert_eq!(
            s.counts()
                .unwrap()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect::<Vec<_>>(),
            vec![
                (State::Uploaded, 4),
                (State::Failed, 1),
                (State::LocalDeleted, 1)
            ]
        );
        let root = s.roots().unwrap()[0].id;
        assert_eq!(s.folder(root, "Shows/S1").unwrap(), Some(4));
        assert!(s.created_folder(4).unwrap());
        assert_eq!(s.key_ok().unwrap(), Some(true));
        assert_eq!(s.storage_left().unwrap(), Some(StorageLeft::Unlimited));
        assert!(s.last_error().unwrap().unwrap().error.contains("bad.ts"));
        assert_eq!(s.last_reconcile().unwrap().unwrap().uploaded, Some(4));
        assert!(s.history(5).unwrap().iter().any(|h| h.event == "uploaded"));
        // Nothing to upload again: no row queued, waiting or uploading.
        assert!(
            s.claim_next(i64::MAX / 2, i64::MAX, crate::store::QueueOrder::default())
                .unwrap()
                .is_none()
        );
        // A second host starts empty.
        let other = s.for_host("mirror");
        assert!(other.list(None).unwrap().is_empty());
        assert_eq!(other.key_ok().unwrap(), None);
        assert!(!other.created_folder(4).unwrap());
    }
}
