//! The sync engine in-process against the test host: real files, real SQLite.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vidsync::daemon;
use vidsync::store::{State, Store};
use vidsync::testhost::{Fault, HostFile, Scope, TestHost};

use crate::common;

/// Host files by "folder path/title", failing on duplicates (a duplicate
/// is the bug we are here to prevent).
pub fn by_place(host: &TestHost) -> HashMap<String, HostFile> {
    let mut m = HashMap::new();
    for f in host.files().into_iter().filter(|f| f.deleted.is_none()) {
        let key = format!("{}/{}", folder_path(host, f.fld_id), f.title);
        assert!(m.insert(key.clone(), f).is_none(), "two files at {key:?} on the host");
    }
    m
}

/// The remote folder path of a folder id ("" = root).
fn folder_path(host: &TestHost, mut id: u64) -> String {
    let folders = host.folders();
    let mut parts = Vec::new();
    while id != 0 {
        let f = folders.iter().find(|f| f.fld_id == id).expect("folder exists");
        parts.push(f.name.clone());
        id = f.parent;
    }
    parts.reverse();
    parts.join("/")
}

async fn scan(cfg: &vidsync::config::Config) -> daemon::ScanSummary {
    tokio::time::timeout(
        Duration::from_secs(60),
        daemon::scan_once(cfg.clone(), CancellationToken::new()),
    )
    .await
    .expect("scan finishes")
    .expect("scan succeeds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_mirrors_two_trees_once_and_a_second_scan_uploads_nothing() {
    let host = common::host().await;
    let movies = tempfile::tempdir().unwrap();
    let shows = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    // A remote folder that already exists is reused, not duplicated.
    let existing = host.create_folder(0, "Shows");
    let videos = [
        (movies.path(), "a.mp4"),
        (movies.path(), "2024/b.mkv"),
        (movies.path(), "2024/deep/er/c.avi"),
        (shows.path(), "S01/e1.mp4"),
        (shows.path(), "S01/e2.mp4"),
        (shows.path(), "S02/e1.webm"),
    ];
    for (root, rel) in videos {
        common::write(root, rel, &common::content(rel, 5000 + rel.len()));
    }
    for rel in [".hidden.mp4", "x.mp4.part", "y.mkv.!qB", "z.crdownload", ".a.mp4.Xy12Zw", "notes.txt", "cover.jpg", ".cache/q.mp4"] {
        common::write(movies.path(), rel, b"not for upload");
    }
    let (cfg, _) = common::config(&host, state.path(), &[(movies.path(), "Movies/Main"), (shows.path(), "Shows")], "");
    let summary = scan(&cfg).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);

    let files = host.files();
    assert_eq!(files.len(), videos.len(), "exactly the videos are uploaded: {files:?}");
    let places = by_place(&host);
    let expect = [
        ("Movies/Main/a", movies.path(), "a.mp4"),
        ("Movies/Main/2024/b", movies.path(), "2024/b.mkv"),
        ("Movies/Main/2024/deep/er/c", movies.path(), "2024/deep/er/c.avi"),
        ("Shows/S01/e1", shows.path(), "S01/e1.mp4"),
        ("Shows/S01/e2", shows.path(), "S01/e2.mp4"),
        ("Shows/S02/e1", shows.path(), "S02/e1.webm"),
    ];
    for (place, root, rel) in expect {
        let f = places.get(place).unwrap_or_else(|| panic!("{place} uploaded: {places:?}"));
        assert_eq!(host.file_bytes(&f.code).unwrap(), std::fs::read(root.join(rel)).unwrap(), "{place} byte-identical");
    }
    // Each remote folder exists once; "Shows" is the pre-existing one.
    let folders = host.folders();
    let mut names: Vec<(u64, String)> = folders.iter().map(|f| (f.parent, f.name.clone())).collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "no duplicate folder: {folders:?}");
    assert_eq!(folders.iter().filter(|f| f.name == "Shows").count(), 1);
    assert!(folders.iter().any(|f| f.parent == existing && f.name == "S01"));

    // list agrees with the host.
    let store = Store::open(&cfg.state.database).unwrap();
    let rows = store.list(None).unwrap();
    assert_eq!(rows.len(), videos.len());
    for r in &rows {
        assert_eq!(r.state, State::Uploaded, "{}", r.rel_path);
        let code = r.file_code.as_deref().unwrap();
        let hf = host.file(code).expect("recorded code exists on the host");
        assert_eq!(Some(hf.fld_id), r.fld_id);
        assert_eq!(hf.size, r.stat.size);
    }
    drop(store);

    let uploads = host.uploads_started();
    let summary = scan(&cfg).await;
    assert!(summary.failed.is_empty());
    assert_eq!(host.uploads_started(), uploads, "a second scan uploads nothing");
    assert_eq!(host.files().len(), videos.len());
}

fn _unused(_: &Path, _: Fault, _: Scope) {}
