//! Store tests on a real SQLite file in a temporary directory.

use super::*;

fn stat(size: u64, ino: u64) -> Stat {
    Stat {
        size,
        mtime_ns: 1_000,
        dev: 1,
        ino,
    }
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("sub/state.db")).unwrap();
    (dir, store)
}

#[test]
fn lifecycle_of_one_file() {
    let (_d, s) = open();
    let root = s.ensure_root(Path::new("/srv/a"), "A").unwrap();
    assert_eq!(s.ensure_root(Path::new("/srv/a"), "A").unwrap(), root);
    let id = s.insert_file(root, "x/y.mp4", stat(10, 5), 100).unwrap();
    assert_eq!(s.file(id).unwrap().unwrap().state, State::Waiting);
    s.queue(id, 200).unwrap();
    let claimed = s.claim_next(300, i64::MAX).unwrap().unwrap();
    assert_eq!(claimed.id, id);
    assert_eq!(claimed.state, State::Uploading);
    assert!(
        s.claim_next(300, i64::MAX).unwrap().is_none(),
        "claimed once"
    );
    s.begin_attempt(id, 7, "y", 310).unwrap();
    assert_eq!(s.file(id).unwrap().unwrap().unknown_since, Some(310));
    s.retry_later(id, "lost reply", 1000, true, false, 320)
        .unwrap();
    let f = s.file(id).unwrap().unwrap();
    assert_eq!(
        (f.state, f.attempts, f.unknown_since),
        (State::Queued, 1, Some(310))
    );
    assert!(
        s.claim_next(999, i64::MAX).unwrap().is_none(),
        "not due yet"
    );
    s.claim_next(1000, i64::MAX).unwrap().unwrap();
    s.begin_attempt(id, 7, "y", 1010).unwrap();
    assert_eq!(
        s.file(id).unwrap().unwrap().unknown_since,
        Some(310),
        "the earliest unknown attempt is kept"
    );
    s.finish_uploaded(id, "abcdefghijkl", 7, 1020, "upload")
        .unwrap();
    let f = s.file(id).unwrap().unwrap();
    assert_eq!(f.state, State::Uploaded);
    assert_eq!(f.file_code.as_deref(), Some("abcdefghijkl"));
    assert_eq!(f.unknown_since, None);
    let events: Vec<String> = s
        .history(id)
        .unwrap()
        .into_iter()
        .map(|h| h.event)
        .collect();
    assert_eq!(
        events,
        [
            "seen",
            "queued",
            "upload_started",
            "retry",
            "upload_started",
            "uploaded"
        ]
    );
}

#[test]
fn changed_content_after_upload_keeps_old_code_in_history() {
    let (_d, s) = open();
    let root = s.ensure_root(Path::new("/srv/a"), "").unwrap();
    let id = s.insert_file(root, "v.mp4", stat(10, 5), 1).unwrap();
    s.queue(id, 2).unwrap();
    s.claim_next(3, i64::MAX).unwrap();
    s.finish_uploaded(id, "oldcode00001", 0, 4, "upload")
        .unwrap();
    s.file_changed(id, stat(20, 5), 5).unwrap();
    let f = s.file(id).unwrap().unwrap();
    assert_eq!(f.state, State::Waiting);
    assert_eq!(f.file_code, None);
    assert!(
        s.history(id)
            .unwrap()
            .iter()
            .any(|h| h.event == "replaced" && h.file_code.as_deref() == Some("oldcode00001"))
    );
}

#[test]
fn directory_rename_moves_rows() {
    let (_d, s) = open();
    let root = s.ensure_root(Path::new("/srv/a"), "").unwrap();
    s.set_folder(root, "old", 5, Some(9)).unwrap();
    s.set_folder(root, "old/sub", 6, None).unwrap();
    s.set_folder(root, "older", 7, None).unwrap();
    let a = s.insert_file(root, "old/a.mp4", stat(1, 1), 1).unwrap();
    let b = s.insert_file(root, "old/sub/b.mp4", stat(1, 2), 1).unwrap();
    let c = s.insert_file(root, "older/c.mp4", stat(1, 3), 1).unwrap();
    s.rename_dir(root, "old", "new", 2).unwrap();
    assert_eq!(s.file(a).unwrap().unwrap().rel_path, "new/a.mp4");
    assert_eq!(s.file(b).unwrap().unwrap().rel_path, "new/sub/b.mp4");
    assert_eq!(s.file(c).unwrap().unwrap().rel_path, "older/c.mp4");
    assert_eq!(s.folder(root, "new").unwrap(), Some(5));
    assert_eq!(s.folder(root, "new/sub").unwrap(), Some(6));
    assert_eq!(s.folder(root, "older").unwrap(), Some(7));
    assert_eq!(s.folder(root, "old").unwrap(), None);
}

#[test]
fn retry_failed_by_path_and_counts() {
    let (_d, s) = open();
    let root = s.ensure_root(Path::new("/srv/a"), "").unwrap();
    let a = s.insert_file(root, "a.mp4", stat(1, 1), 1).unwrap();
    let b = s.insert_file(root, "b.mp4", stat(1, 2), 1).unwrap();
    for id in [a, b] {
        s.queue(id, 1).unwrap();
        s.claim_next(1, i64::MAX).unwrap();
        s.fail(id, "unallowed video extension", true, true, 2)
            .unwrap();
    }
    assert_eq!(
        s.retry_failed(&[PathBuf::from("/srv/a/b.mp4")], 3).unwrap(),
        1
    );
    assert_eq!(s.file(b).unwrap().unwrap().state, State::Queued);
    assert_eq!(s.file(a).unwrap().unwrap().state, State::Failed);
    let counts = s.counts().unwrap();
    assert!(counts.contains(&(State::Failed, 1)));
    assert!(counts.contains(&(State::Queued, 1)));
    assert!(counts.contains(&(State::Dmca, 0)));
}

#[test]
fn reopening_keeps_everything_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let s = Store::open(&path).unwrap();
        let root = s.ensure_root(Path::new("/srv/a"), "").unwrap();
        s.insert_file(root, "a.mp4", stat(1, 1), 1).unwrap();
        s.set_meta("last_reconcile", "123").unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.list(None).unwrap().len(), 1);
    assert_eq!(s.meta("last_reconcile").unwrap().as_deref(), Some("123"));
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
        conn.execute_batch(migrations::MIGRATIONS[0]).unwrap();
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
fn an_account_wide_wait_leaves_one_history_line_per_reason() {
    let (_d, s) = open();
    let root = s.ensure_root(Path::new("/srv/a"), "").unwrap();
    let id = s.insert_file(root, "a.mp4", stat(1, 1), 1).unwrap();
    for t in 0..100 {
        s.retry_later(id, "too many files uploaded last 24h", t, false, true, t)
            .unwrap();
    }
    s.retry_later(id, "No servers available", 200, false, true, 200)
        .unwrap();
    s.retry_later(id, "HTTP 502", 300, true, false, 300)
        .unwrap();
    s.retry_later(id, "HTTP 502", 400, true, false, 400)
        .unwrap();
    let retries: Vec<Option<String>> = s
        .history(id)
        .unwrap()
        .into_iter()
        .filter(|h| h.event == "retry")
        .map(|h| h.detail)
        .collect();
    assert_eq!(retries.len(), 4, "{retries:?}");
    assert_eq!(s.file(id).unwrap().unwrap().attempts, 2);
}

#[test]
fn a_retry_scheduled_before_the_clock_went_back_is_due() {
    let (_d, s) = open();
    let root = s.ensure_root(Path::new("/srv/a"), "").unwrap();
    let id = s.insert_file(root, "a.mp4", stat(1, 1), 1).unwrap();
    s.queue(id, 1).unwrap();
    // Scheduled 30 s ahead of a clock that was a day fast.
    let day = 86_400_000;
    s.retry_later(id, "x", day + 30_000, false, true, day)
        .unwrap();
    assert!(s.claim_next(1_000, 1_000 + 7_200_000).unwrap().is_some());
}
