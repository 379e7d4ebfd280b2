//! Reconcile against the test host: deletions, DMCA, audit, guard, encodings,
//! local deletions.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vidsync::daemon;
use vidsync::store::{FileRow, State, Store};
use vidsync_testhost::{DeletedBy, HostOptions, TestHost};

use crate::common;

fn rows(db: &Path) -> Vec<FileRow> {
    Store::open(db).unwrap().list(None).unwrap()
}

fn row<'a>(rows: &'a [FileRow], rel: &str) -> &'a FileRow {
    rows.iter()
        .find(|r| r.rel_path == rel)
        .unwrap_or_else(|| panic!("{rel} tracked"))
}

async fn scan(cfg: &vidsync::config::Config) {
    let s = common::scan(cfg).await;
    assert!(s.failed.is_empty(), "{:?}", s.failed);
}

const FAST: &str = "[reconcile]\ninterval = \"300ms\"\naudit_interval = \"24h\"\n\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_and_dmca_are_reflected_with_each_policy() {
    let host = common::host().await;
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    for i in 0..5 {
        common::write(
            a.path(),
            &format!("a{i}.mp4"),
            &common::content(&format!("a{i}"), 1000),
        );
        common::write(
            b.path(),
            &format!("sub/b{i}.mp4"),
            &common::content(&format!("b{i}"), 1000),
        );
    }
    let extra = format!(
        "{FAST}[[sync]]\nlocal = \"{}\"\nremote = \"BB\"\non_remote_delete = \"reupload\"\non_expired = \"keep\"\n",
        b.path().display()
    );
    let (cfg, _) = common::config(&host, state.path(), &[(a.path(), "AA")], &extra);
    scan(&cfg).await;
    let db = cfg.state.database.clone();
    let before = rows(&db);
    assert_eq!(before.len(), 10);
    let code = |rel: &str| row(&before, rel).file_code.clone().unwrap();

    let stop = CancellationToken::new();
    let h = tokio::spawn(daemon::run(cfg.clone(), stop.clone()));
    host.delete_file(&code("a0.mp4"), DeletedBy::Me); // keep -> remote_deleted
    host.delete_file(&code("a1.mp4"), DeletedBy::Expired); // A: on_expired = reupload (default)
    host.delete_file(&code("sub/b0.mp4"), DeletedBy::Admin); // B: reupload
    host.delete_file(&code("sub/b1.mp4"), DeletedBy::Expired); // B: on_expired = keep
    host.schedule_dmca(&code("a2.mp4"), Duration::from_secs(3600));

    let done = common::wait_for(Duration::from_secs(20), || {
        let r = rows(&db);
        row(&r, "a0.mp4").state == State::RemoteDeleted
            && row(&r, "sub/b1.mp4").state == State::RemoteDeleted
            && row(&r, "a2.mp4").state == State::Dmca
            && row(&r, "a1.mp4").state == State::Uploaded
            && row(&r, "a1.mp4").file_code != Some(code("a1.mp4"))
            && row(&r, "sub/b0.mp4").state == State::Uploaded
            && row(&r, "sub/b0.mp4").file_code != Some(code("sub/b0.mp4"))
    })
    .await;
    let after = rows(&db);
    assert!(
        done,
        "{:#?}",
        after
            .iter()
            .map(|r| (&r.rel_path, r.state, &r.deleted_by))
            .collect::<Vec<_>>()
    );
    assert_eq!(row(&after, "a0.mp4").deleted_by.as_deref(), Some("me"));
    assert_eq!(
        row(&after, "sub/b1.mp4").deleted_by.as_deref(),
        Some("expired")
    );
    assert!(
        row(&after, "a2.mp4")
            .remote_event_at
            .as_deref()
            .is_some_and(|t| !t.is_empty())
    );
    // Re-uploads land once, in the same folder as before.
    let live: Vec<_> = host
        .files()
        .into_iter()
        .filter(|f| f.deleted.is_none())
        .collect();
    for rel in ["a1.mp4", "sub/b0.mp4"] {
        let r = row(&after, rel);
        let title = rel.rsplit('/').next().unwrap().trim_end_matches(".mp4");
        let copies: Vec<_> = live.iter().filter(|f| f.title == title).collect();
        assert_eq!(copies.len(), 1, "{rel} uploaded again exactly once");
        assert_eq!(
            Some(copies[0].fld_id),
            row(&before, rel).fld_id,
            "{rel} in the same folder"
        );
        assert_eq!(copies[0].code, r.file_code.clone().unwrap());
        let store = Store::open(&db).unwrap();
        let hist = store.history(r.id).unwrap();
        assert!(
            hist.iter()
                .any(|h| h.event == "remote_deleted" && h.file_code == Some(code(rel))),
            "history keeps the old code"
        );
    }
    // DMCA: when the host then deletes it, it stays dmca and is never uploaded again.
    host.advance(Duration::from_secs(7200));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = rows(&db);
    assert_eq!(row(&r, "a2.mp4").state, State::Dmca);
    assert!(
        !host
            .files()
            .iter()
            .any(|f| f.title == "a2" && f.deleted.is_none())
    );
    stop.cancel();
    h.await.unwrap().unwrap();
    let st = vidsync::report::status_json(&Store::open(&db).unwrap()).unwrap();
    assert_eq!(st["counts"]["dmca"], 1);
    assert_eq!(st["counts"]["remote_deleted"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_older_than_the_window_is_found_by_the_audit() {
    let host = common::host().await;
    let a = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    for i in 0..4 {
        common::write(
            a.path(),
            &format!("v{i}.mp4"),
            &common::content(&format!("v{i}"), 1000),
        );
    }
    let (cfg, _) = common::config(
        &host,
        state.path(),
        &[(a.path(), "AA")],
        "[reconcile]\naudit_interval = \"24h\"\n",
    );
    scan(&cfg).await;
    let db = cfg.state.database.clone();
    let code = row(&rows(&db), "v1.mp4").file_code.clone().unwrap();
    // vidsync is stopped; the file is deleted, and a month passes on the host.
    host.delete_file(&code, DeletedBy::Admin);
    host.advance(Duration::from_secs(800 * 3600));
    let report = daemon::reconcile_once(cfg.clone(), false)
        .await
        .unwrap()
        .remove(0)
        .1;
    assert!(report.audited);
    assert_eq!(report.deleted, vec![code.clone()]);
    let r = rows(&db);
    assert_eq!(row(&r, "v1.mp4").state, State::RemoteDeleted);
    assert_eq!(row(&r, "v1.mp4").deleted_by.as_deref(), Some("unknown"));
    assert_eq!(r.iter().filter(|x| x.state == State::Uploaded).count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_glitch_listing_most_files_as_deleted_is_held_until_forced() {
    let host = common::host().await;
    let a = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    for i in 0..8 {
        common::write(
            a.path(),
            &format!("v{i}.mp4"),
            &common::content(&format!("v{i}"), 1000),
        );
    }
    let (cfg, _) = common::config(&host, state.path(), &[(a.path(), "AA")], "");
    scan(&cfg).await;
    let db = cfg.state.database.clone();
    let codes: Vec<String> = rows(&db)
        .iter()
        .filter_map(|r| r.file_code.clone())
        .collect();
    for c in &codes[..6] {
        host.delete_file(c, DeletedBy::Admin);
    }
    let report = daemon::reconcile_once(cfg.clone(), false)
        .await
        .unwrap()
        .remove(0)
        .1;
    assert!(report.blocked);
    assert_eq!((report.removals, report.uploaded), (6, 8));
    assert!(
        rows(&db).iter().all(|r| r.state == State::Uploaded),
        "nothing changed"
    );
    let st = vidsync::report::status_json(&Store::open(&db).unwrap()).unwrap();
    assert_eq!(st["last_reconcile"]["blocked"], true, "{st}");
    assert!(
        st["last_reconcile"]["result"]
            .as_str()
            .unwrap()
            .contains("NOT APPLIED")
    );
    // Still held on the next pass: the window did not move past the entries.
    assert!(
        daemon::reconcile_once(cfg.clone(), false)
            .await
            .unwrap()
            .remove(0)
            .1
            .blocked
    );
    let report = daemon::reconcile_once(cfg.clone(), true)
        .await
        .unwrap()
        .remove(0)
        .1;
    assert!(!report.blocked);
    assert_eq!(
        rows(&db)
            .iter()
            .filter(|r| r.state == State::RemoteDeleted)
            .count(),
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoding_progress_shows_in_status_and_the_file_becomes_playable() {
    let host = TestHost::start_with(HostOptions {
        encode_time: Duration::from_secs(3),
        ..HostOptions::default()
    })
    .await
    .unwrap();
    let a = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(a.path(), "v.mp4", &common::content("v", 1000));
    common::write(a.path(), "stuck.mp4", &common::content("s", 1000));
    let (cfg, _) = common::config(&host, state.path(), &[(a.path(), "AA")], FAST);
    let db = cfg.state.database.clone();
    let stop = CancellationToken::new();
    let h = tokio::spawn(daemon::run(cfg.clone(), stop.clone()));
    assert!(common::wait_for(Duration::from_secs(20), || host.files().len() == 2).await);
    let stuck = host
        .files()
        .into_iter()
        .find(|f| f.title == "stuck")
        .unwrap()
        .code;
    host.set_stuck(&stuck);
    let mut seen_progress = false;
    let ok = common::wait_for(Duration::from_secs(20), || {
        let st = vidsync::report::status_json(&Store::open(&db).unwrap()).unwrap();
        if st["encoding"].as_array().is_some_and(|e| {
            e.iter().any(|x| {
                x["status"] == "ENCODING"
                    && x["progress"].as_u64().is_some_and(|p| p > 0 && p < 100)
            })
        }) {
            seen_progress = true;
        }
        let r = rows(&db);
        r.iter()
            .any(|x| x.rel_path == "v.mp4" && x.playable == Some(true))
            && st["encoding_stuck"] == 1
    })
    .await;
    assert!(ok, "{:?}", rows(&db));
    assert!(
        seen_progress,
        "encoding progress was visible in status --json"
    );
    stop.cancel();
    h.await.unwrap().unwrap();
    let list: Vec<serde_json::Value> = rows(&db)
        .iter()
        .map(|f| vidsync::report::file_json("default", f))
        .collect();
    let v = list
        .iter()
        .find(|x| x["path"].as_str().unwrap().ends_with("/v.mp4"))
        .unwrap();
    assert_eq!(v["playable"], true);
    let s = list
        .iter()
        .find(|x| x["path"].as_str().unwrap().ends_with("/stuck.mp4"))
        .unwrap();
    assert_eq!(s["playable"], false);
    assert_eq!(s["encoding"], "STUCK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_deletion_keeps_the_remote_file_or_moves_it_to_trash() {
    let host = common::host().await;
    let keep = tempfile::tempdir().unwrap();
    let trash = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(keep.path(), "k.mp4", &common::content("k", 1000));
    common::write(trash.path(), "t.mp4", &common::content("t", 1000));
    let extra = format!(
        "[[sync]]\nlocal = \"{}\"\nremote = \"TT\"\non_local_delete = \"trash\"\ntrash = \"Trash/vidsync\"\n",
        trash.path().display()
    );
    let (cfg, _) = common::config(&host, state.path(), &[(keep.path(), "KK")], &extra);
    scan(&cfg).await;
    let before: Vec<_> = host.files();
    std::fs::remove_file(keep.path().join("k.mp4")).unwrap();
    std::fs::remove_file(trash.path().join("t.mp4")).unwrap();
    scan(&cfg).await;
    let r = rows(&cfg.state.database);
    assert_eq!(row(&r, "k.mp4").state, State::LocalDeleted);
    assert_eq!(row(&r, "t.mp4").state, State::LocalDeleted);
    let after = host.files();
    assert_eq!(after.len(), 2, "nothing deleted on the host");
    assert!(after.iter().all(|f| f.deleted.is_none()));
    let k = after.iter().find(|f| f.title == "k").unwrap();
    assert_eq!(
        k.fld_id,
        before.iter().find(|f| f.title == "k").unwrap().fld_id,
        "kept in place"
    );
    let t = after.iter().find(|f| f.title == "t").unwrap();
    let folders = host.folders();
    let tf = folders.iter().find(|f| f.fld_id == t.fld_id).unwrap();
    assert_eq!(tf.name, "vidsync");
    let parent = folders.iter().find(|f| f.fld_id == tf.parent).unwrap();
    assert_eq!((parent.name.as_str(), parent.parent), ("Trash", 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_refreshes_title_and_folder_changed_on_the_host_without_fighting_them() {
    let host = common::host().await;
    let a = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(a.path(), "sub/v.mp4", &common::content("v", 1000));
    let (cfg, _) = common::config(&host, state.path(), &[(a.path(), "AA")], "");
    scan(&cfg).await;
    let db = cfg.state.database.clone();
    let code = row(&rows(&db), "sub/v.mp4").file_code.clone().unwrap();
    // The user retitles and moves the file by hand on the host.
    let elsewhere = host.create_folder(0, "Elsewhere");
    let client = vidsync::api::Client::new(&common::api_config(&host)).unwrap();
    client
        .file_edit(
            std::slice::from_ref(&code),
            &vidsync::api::FileEdit {
                title: Some("My (better) title".into()),
                fld_id: Some(elsewhere),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let report = daemon::reconcile_once(cfg.clone(), false)
        .await
        .unwrap()
        .remove(0)
        .1;
    assert!(report.audited);
    let r = rows(&db);
    let v = row(&r, "sub/v.mp4");
    assert_eq!(v.title.as_deref(), Some("My (better) title"));
    assert_eq!(v.fld_id, Some(elsewhere));
    assert_eq!(v.state, State::Uploaded);
    // A later pass leaves the user's choice alone.
    scan(&cfg).await;
    let f = host.file(&code).unwrap();
    // The host keeps titles set by file/edit HTML-escaped.
    assert_eq!(
        (vidsync::api::unescape(&f.title).as_str(), f.fld_id),
        ("My (better) title", elsewhere)
    );
    assert_eq!(host.files().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_poll_does_not_move_the_window() {
    use vidsync_testhost::{Fault, Scope};
    let host = common::host().await;
    let a = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(a.path(), "v.mp4", &common::content("v", 1000));
    let (cfg, _) = common::config(&host, state.path(), &[(a.path(), "AA")], "");
    scan(&cfg).await; // includes a first, good poll
    let store = Store::open(&cfg.state.database).unwrap();
    let first = store
        .reconcile_last_poll()
        .unwrap()
        .expect("a good poll is recorded");
    host.faults()
        .always(Fault::Http502, Scope::endpoint("file/dmca"));
    assert!(daemon::reconcile_once(cfg.clone(), false).await.is_err());
    assert_eq!(
        store.reconcile_last_poll().unwrap(),
        Some(first),
        "a failed poll leaves the window's start where it was, so the next one covers the gap"
    );
    host.faults().clear();
    // Two hours later (our clock cannot move; the window is computed from
    // the recorded time, so move that back instead).
    let two_hours_ago = first - 2 * 3_600_000;
    store.set_reconcile_last_poll(two_hours_ago).unwrap();
    let report = daemon::reconcile_once(cfg.clone(), false)
        .await
        .unwrap()
        .remove(0)
        .1;
    // Two hours and a few milliseconds: rounded up to 3, plus the 1 h margin.
    assert_eq!(report.window_hours, 4);
    assert!(
        host.request_log()
            .iter()
            .any(|r| r.endpoint == "file/deleted")
    );
}
