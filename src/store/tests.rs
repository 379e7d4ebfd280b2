//! Store tests on a real SQLite file in a temporary directory.

use super::*;

pub(super) fn stat(size: u64, ino: u64) -> Stat {
    Stat {
        size,
        mtime_ns: 1_000,
        dev: 1,
        ino,
    }
}

pub(super) fn open() -> (tempfile::TempDir, Store) {
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
    let claimed = s
        .claim_next(300, i64::MAX, QueueOrder::default())
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, id);
    assert_eq!(claimed.state, State::Uploading);
    assert!(
        s.claim_next(300, i64::MAX, QueueOrder::default())
            .unwrap()
            .is_none(),
        "claimed once"
    );
    s.begin_attempt(id, 7, "y", 310).unwrap();
    assert_eq!(s.file(id).unwrap().unwrap().unknown_since, Some(310));
    s.retry_later(
        id,
        "lost reply",
        1000,
        Attempt::Counted,
        HostCopy::Unknown,
        320,
    )
    .unwrap();
    let f = s.file(id).unwrap().unwrap();
    assert_eq!(
        (f.state, f.attempts, f.unknown_since),
        (State::Queued, 1, Some(310))
    );
    assert!(
        s.claim_next(999, i64::MAX, QueueOrder::default())
            .unwrap()
            .is_none(),
        "not due yet"
    );
    s.claim_next(1000, i64::MAX, QueueOrder::default())
        .unwrap()
        .unwrap();
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
    s.claim_next(3, i64::MAX, QueueOrder::default()).unwrap();
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
        s.claim_next(1, i64::MAX, QueueOrder::default()).unwrap();
        s.fail(
            id,
            "unallowed video extension",
            Attempt::Counted,
            HostCopy::SurelyNone,
            2,
        )
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
fn an_account_wide_wait_leaves_one_history_line_per_reason() {
    let (_d, s) = open();
    let root = s.ensure_root(Path::new("/srv/a"), "").unwrap();
    let id = s.insert_file(root, "a.mp4", stat(1, 1), 1).unwrap();
    for t in 0..100 {
        s.retry_later(
            id,
            "too many files uploaded last 24h",
            t,
            Attempt::Free,
            HostCopy::SurelyNone,
            t,
        )
        .unwrap();
    }
    s.retry_later(
        id,
        "No servers available",
        200,
        Attempt::Free,
        HostCopy::SurelyNone,
        200,
    )
    .unwrap();
    s.retry_later(
        id,
        "HTTP 502",
        300,
        Attempt::Counted,
        HostCopy::Unknown,
        300,
    )
    .unwrap();
    s.retry_later(
        id,
        "HTTP 502",
        400,
        Attempt::Counted,
        HostCopy::Unknown,
        400,
    )
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
    s.retry_later(
        id,
        "x",
        day + 30_000,
        Attempt::Free,
        HostCopy::SurelyNone,
        day,
    )
    .unwrap();
    assert!(
        s.claim_next(1_000, 1_000 + 7_200_000, QueueOrder::default())
            .unwrap()
            .is_some()
    );
}

// Regression: a damaged database ended every command with no way out named.
#[test]
fn a_damaged_database_error_names_the_way_out() {
    use rusqlite::ffi;
    let path = std::path::Path::new("/var/lib/vidsync/state.db");
    for code in [ffi::SQLITE_CORRUPT, ffi::SQLITE_NOTADB] {
        let e = super::StoreError::Sql {
            path: path.to_path_buf(),
            what: "reading",
            source: rusqlite::Error::SqliteFailure(ffi::Error::new(code), None),
        };
        let text = e.to_string();
        assert!(
            text.contains("mv /var/lib/vidsync/state.db /var/lib/vidsync/state.db.broken"),
            "{text}"
        );
    }
    let busy = super::StoreError::Sql {
        path: path.to_path_buf(),
        what: "reading",
        source: rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_BUSY), None),
    };
    assert!(!busy.to_string().contains("broken"), "{busy}");
}

// Regression: opening the database beside a daemon that was creating it
// (switching it to WAL, migrating) failed "enabling WAL: database is
// locked" now and then: the journal-mode switch answers busy without the
// busy handler. Tests that watch a starting daemon's store failed by chance.
#[test]
fn opening_beside_another_opener_never_fails() {
    for round in 0..30 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("state{round}.db"));
        let openers: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let s = Store::open(&path).map_err(|e| e.to_string())?;
                    s.counts().map_err(|e| e.to_string())?;
                    Ok::<(), String>(())
                })
            })
            .collect();
        for o in openers {
            o.join().unwrap().expect("open beside another opener");
        }
    }
}

#[test]
fn each_host_sees_only_its_own_records() {
    let (_d, a) = open();
    let b = a.for_host("b");
    let ra = a.ensure_root(Path::new("/srv/a"), "A").unwrap();
    let rb = b.ensure_root(Path::new("/srv/a"), "A").unwrap();
    assert_ne!(ra, rb, "one root per host");
    let fa = a.insert_file(ra, "x.mp4", stat(10, 5), 1).unwrap();
    let fb = b.insert_file(rb, "x.mp4", stat(10, 5), 1).unwrap();
    a.queue(fa, 2).unwrap();
    b.queue(fb, 2).unwrap();
    // Host a uploads; b's copy of the same file is untouched.
    let claimed = a
        .claim_next(3, i64::MAX, QueueOrder::default())
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, fa);
    assert!(
        a.claim_next(3, i64::MAX, QueueOrder::default())
            .unwrap()
            .is_none()
    );
    a.begin_attempt(fa, 7, "x", 4).unwrap();
    a.finish_uploaded(fa, "aaaaaaaaaaaa", 7, 5, "uploaded")
        .unwrap();
    assert_eq!(b.file(fb).unwrap().unwrap().state, State::Queued);
    assert!(b.file(fa).unwrap().is_none(), "a's row is not b's");
    assert_eq!(
        b.claim_next(6, i64::MAX, QueueOrder::default())
            .unwrap()
            .unwrap()
            .id,
        fb
    );
    let count = |s: &Store, st: State| {
        s.counts()
            .unwrap()
            .into_iter()
            .find(|(x, _)| *x == st)
            .unwrap()
            .1
    };
    assert_eq!(count(&a, State::Uploaded), 1);
    assert_eq!(count(&b, State::Uploaded), 0);
    assert_eq!(count(&b, State::Uploading), 1);
    assert!(a.code_known("aaaaaaaaaaaa").unwrap());
    assert!(!b.code_known("aaaaaaaaaaaa").unwrap(), "codes are per host");
    assert_eq!(a.by_inode(1, 5).unwrap().len(), 1);
    // Facts about an account, folders vidsync created, trash folders.
    a.set_key_ok(false).unwrap();
    b.set_key_ok(true).unwrap();
    assert_eq!(a.key_ok().unwrap(), Some(false));
    assert_eq!(b.key_ok().unwrap(), Some(true));
    a.note_created_folder(7).unwrap();
    assert!(a.created_folder(7).unwrap());
    assert!(!b.created_folder(7).unwrap());
    a.set_trash_folder("Trash", 9).unwrap();
    assert_eq!(b.trash_folder("Trash").unwrap(), None);
    assert_eq!(a.roots().unwrap().len(), 1);
    assert_eq!(b.roots().unwrap()[0].id, rb);
}

#[test]
fn a_renamed_host_takes_over_the_records_of_the_old_name() {
    let (_d, old) = open();
    let r = old.ensure_root(Path::new("/srv/a"), "A").unwrap();
    let f = old.insert_file(r, "x.mp4", stat(10, 5), 1).unwrap();
    old.set_key_ok(true).unwrap();
    old.note_created_folder(3).unwrap();
    old.note_host_url("http://h").unwrap();
    let new = old.for_host("main");
    assert_eq!(
        new.known_hosts().unwrap(),
        vec![("default".to_string(), Some("http://h".to_string()))]
    );
    assert!(new.take_over_host("default").unwrap());
    assert_eq!(new.file(f).unwrap().unwrap().rel_path, "x.mp4");
    assert_eq!(new.key_ok().unwrap(), Some(true));
    assert!(new.created_folder(3).unwrap());
    assert!(old.file(f).unwrap().is_none());
    assert_eq!(new.known_hosts().unwrap(), vec![("main".to_string(), None)]);
    // A host with records of its own takes nothing over.
    let other = old.for_host("other");
    other.ensure_root(Path::new("/srv/b"), "B").unwrap();
    assert!(!other.take_over_host("main").unwrap());
    assert_eq!(new.roots().unwrap().len(), 1);
}

#[test]
fn the_queue_goes_oldest_newest_or_smallest_first_and_waits_for_retries() {
    let (_d, s) = open();
    let root = s.ensure_root(Path::new("/srv/a"), "A").unwrap();
    // (name, size, mtime): three different orders by age and by size.
    let files = [
        ("old.mp4", 200, 1_000),
        ("new.mp4", 300, 3_000),
        ("mid.mp4", 100, 2_000),
    ];
    let mut ids = Vec::new();
    for (i, (name, size, mtime)) in files.iter().enumerate() {
        let st = Stat {
            size: *size,
            mtime_ns: *mtime,
            dev: 1,
            ino: i as u64 + 1,
        };
        let id = s.insert_file(root, name, st, 10).unwrap();
        s.queue(id, 20).unwrap();
        ids.push(id);
    }
    let claim_all = |order: QueueOrder| -> Vec<i64> {
        let mut got = Vec::new();
        while let Some(r) = s.claim_next(100, i64::MAX, order).unwrap() {
            got.push(r.id);
        }
        for id in &got {
            s.retry_later(*id, "again", 0, Attempt::Free, HostCopy::SurelyNone, 50)
                .unwrap();
        }
        got
    };
    let (old, new, mid) = (ids[0], ids[1], ids[2]);
    assert_eq!(claim_all(QueueOrder::Oldest), vec![old, mid, new]);
    assert_eq!(claim_all(QueueOrder::Newest), vec![new, mid, old]);
    assert_eq!(claim_all(QueueOrder::Smallest), vec![mid, old, new]);
    // A retry not due yet waits, whatever the order.
    s.retry_later(new, "later", 500, Attempt::Free, HostCopy::SurelyNone, 60)
        .unwrap();
    assert_eq!(claim_all(QueueOrder::Newest), vec![mid, old]);
}

#[test]
fn a_copy_is_recorded_only_for_a_row_still_being_uploaded() {
    let (_d, s) = open();
    let root = s.ensure_root(Path::new("/srv/a"), "A").unwrap();
    let id = s.insert_file(root, "v.mp4", stat(10, 5), 1).unwrap();
    s.queue(id, 2).unwrap();
    s.claim_next(3, i64::MAX, QueueOrder::default())
        .unwrap()
        .unwrap();
    s.begin_copy(id, 7, "v", "a", "http://a/v.mp4", stat(10, 5), 4)
        .unwrap();
    assert!(s.copy_job(id).unwrap().is_some());
    // The row moved on meanwhile (here: put back in the queue).
    s.retry_later(id, "later", 10, Attempt::Free, HostCopy::Unknown, 5)
        .unwrap();
    assert!(!s.finish_copied(id, "code1", 7, "v", 10, 6).unwrap());
    let f = s.file(id).unwrap().unwrap();
    assert_eq!((f.state, f.file_code), (State::Queued, None));
    assert_eq!(s.copied().unwrap().files, 0, "nothing counted");
    // Claimed again and copied: recorded and counted.
    s.claim_next(20, i64::MAX, QueueOrder::default())
        .unwrap()
        .unwrap();
    s.begin_copy(id, 7, "v", "a", "http://a/v.mp4", stat(10, 5), 21)
        .unwrap();
    assert!(s.finish_copied(id, "code2", 7, "v", 10, 22).unwrap());
    let f = s.file(id).unwrap().unwrap();
    assert_eq!(
        (f.state, f.file_code.as_deref()),
        (State::Uploaded, Some("code2"))
    );
    assert_eq!(
        s.copied().unwrap(),
        Copied {
            files: 1,
            bytes: 10
        }
    );
    assert!(s.copy_job(id).unwrap().is_none());
}
