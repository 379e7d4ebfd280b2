//! The sync engine in-process against the test host: real files, real SQLite.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vidsync::daemon;
use vidsync::store::{State, Store};
use vidsync_testhost::{Fault, HostFile, Scope, TestHost};

use crate::common;

/// Host files by "folder path/title", failing on duplicates (a duplicate
/// is the bug we are here to prevent).
pub fn by_place(host: &TestHost) -> HashMap<String, HostFile> {
    let mut m = HashMap::new();
    for f in host.files().into_iter().filter(|f| f.deleted.is_none()) {
        let key = format!("{}/{}", folder_path(host, f.fld_id), f.title);
        assert!(
            m.insert(key.clone(), f).is_none(),
            "two files at {key:?} on the host"
        );
    }
    m
}

/// The remote folder path of a folder id ("" = root).
fn folder_path(host: &TestHost, mut id: u64) -> String {
    let folders = host.folders();
    let mut parts = Vec::new();
    while id != 0 {
        let f = folders
            .iter()
            .find(|f| f.fld_id == id)
            .expect("folder exists");
        parts.push(f.name.clone());
        id = f.parent;
    }
    parts.reverse();
    parts.join("/")
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
    for rel in [
        ".hidden.mp4",
        "x.mp4.part",
        "y.mkv.!qB",
        "z.crdownload",
        ".a.mp4.Xy12Zw",
        "notes.txt",
        "cover.jpg",
        ".cache/q.mp4",
    ] {
        common::write(movies.path(), rel, b"not for upload");
    }
    let (cfg, _) = common::config(
        &host,
        state.path(),
        &[(movies.path(), "Movies/Main"), (shows.path(), "Shows")],
        "",
    );
    let summary = common::scan(&cfg).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);

    let files = host.files();
    assert_eq!(
        files.len(),
        videos.len(),
        "exactly the videos are uploaded: {files:?}"
    );
    let places = by_place(&host);
    let expect = [
        ("Movies/Main/a", movies.path(), "a.mp4"),
        ("Movies/Main/2024/b", movies.path(), "2024/b.mkv"),
        (
            "Movies/Main/2024/deep/er/c",
            movies.path(),
            "2024/deep/er/c.avi",
        ),
        ("Shows/S01/e1", shows.path(), "S01/e1.mp4"),
        ("Shows/S01/e2", shows.path(), "S01/e2.mp4"),
        ("Shows/S02/e1", shows.path(), "S02/e1.webm"),
    ];
    for (place, root, rel) in expect {
        let f = places
            .get(place)
            .unwrap_or_else(|| panic!("{place} uploaded: {places:?}"));
        assert_eq!(
            host.file_bytes(&f.code).unwrap(),
            std::fs::read(root.join(rel)).unwrap(),
            "{place} byte-identical"
        );
    }
    // Each remote folder exists once; "Shows" is the pre-existing one.
    let folders = host.folders();
    let mut names: Vec<(u64, String)> =
        folders.iter().map(|f| (f.parent, f.name.clone())).collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "no duplicate folder: {folders:?}");
    assert_eq!(folders.iter().filter(|f| f.name == "Shows").count(), 1);
    assert!(
        folders
            .iter()
            .any(|f| f.parent == existing && f.name == "S01")
    );

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
    let summary = common::scan(&cfg).await;
    assert!(summary.failed.is_empty());
    assert_eq!(
        host.uploads_started(),
        uploads,
        "a second scan uploads nothing"
    );
    assert_eq!(host.files().len(), videos.len());
}

/// Start the daemon in-process; returns its stop token and join handle.
fn start(
    cfg: &vidsync::config::Config,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), daemon::RunError>>,
) {
    let stop = CancellationToken::new();
    let h = tokio::spawn(daemon::run(cfg.clone(), stop.clone()));
    (stop, h)
}

async fn stop(token: CancellationToken, h: tokio::task::JoinHandle<Result<(), daemon::RunError>>) {
    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), h)
        .await
        .expect("daemon stops")
        .expect("daemon task")
        .expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_uploads_slow_writes_renamed_temps_new_dirs_and_follows_moves() {
    use std::io::Write;
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], "");
    let (token, h) = start(&cfg);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A file written slowly in pieces, for longer than `settle` (300 ms).
    let slow_content = common::content("slow", 64 * 1024);
    let slow_path = root.path().join("slow.mp4");
    let mut f = std::fs::File::create(&slow_path).unwrap();
    for chunk in slow_content.chunks(8 * 1024) {
        f.write_all(chunk).unwrap();
        f.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(f);

    // Written under a temporary name, then renamed (rsync, download clients).
    common::write(
        root.path(),
        ".final.mkv.a1B2c3",
        &common::content("final", 9000),
    );
    common::write(root.path(), "dl.mp4.part", &common::content("dl", 7000));
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::rename(
        root.path().join(".final.mkv.a1B2c3"),
        root.path().join("final.mkv"),
    )
    .unwrap();
    std::fs::rename(root.path().join("dl.mp4.part"), root.path().join("dl.mp4")).unwrap();

    // A new nested directory with files in it.
    common::write(
        root.path(),
        "new/inner/n1.mp4",
        &common::content("n1", 3000),
    );
    common::write(
        root.path(),
        "new/inner/n2.mp4",
        &common::content("n2", 3000),
    );

    let want = [
        "Lib/slow",
        "Lib/final",
        "Lib/dl",
        "Lib/new/inner/n1",
        "Lib/new/inner/n2",
    ];
    let ok = common::wait_for(Duration::from_secs(20), || {
        let p = by_place(&host);
        want.iter().all(|w| p.contains_key(*w))
    })
    .await;
    assert!(
        ok,
        "all uploaded: {:?}",
        by_place(&host).keys().collect::<Vec<_>>()
    );
    let places = by_place(&host);
    assert_eq!(
        places.len(),
        want.len(),
        "{:?}",
        places.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        host.file_bytes(&places["Lib/slow"].code).unwrap(),
        slow_content,
        "final content of the slow file"
    );
    let uploads = host.uploads_started();

    // Move a file to another directory and rename another: edited on the host, not uploaded again.
    let slow_code = places["Lib/slow"].code.clone();
    let n1_code = places["Lib/new/inner/n1"].code.clone();
    std::fs::create_dir_all(root.path().join("moved")).unwrap();
    std::fs::rename(
        root.path().join("slow.mp4"),
        root.path().join("moved/slow.mp4"),
    )
    .unwrap();
    std::fs::rename(
        root.path().join("new/inner/n1.mp4"),
        root.path().join("new/inner/renamed.mp4"),
    )
    .unwrap();
    let ok = common::wait_for(Duration::from_secs(20), || {
        let p = by_place(&host);
        p.get("Lib/moved/slow").map(|f| &f.code) == Some(&slow_code)
            && p.get("Lib/new/inner/renamed").map(|f| &f.code) == Some(&n1_code)
    })
    .await;
    assert!(
        ok,
        "moved and retitled: {:?}",
        by_place(&host).keys().collect::<Vec<_>>()
    );
    assert_eq!(host.uploads_started(), uploads, "nothing uploaded again");
    assert_eq!(by_place(&host).len(), want.len());

    // A renamed directory renames its remote folder.
    let folders_before = host.folders().len();
    std::fs::rename(root.path().join("new"), root.path().join("renamed-dir")).unwrap();
    let ok = common::wait_for(Duration::from_secs(20), || {
        let p = by_place(&host);
        p.get("Lib/renamed-dir/inner/renamed").map(|f| &f.code) == Some(&n1_code)
    })
    .await;
    assert!(
        ok,
        "folder renamed: {:?}",
        by_place(&host).keys().collect::<Vec<_>>()
    );
    assert_eq!(
        host.folders().len(),
        folders_before,
        "renamed, not recreated"
    );
    assert_eq!(host.uploads_started(), uploads, "nothing uploaded again");
    stop(token, h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_lands_exactly_once_through_heavy_faults() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let n = 12;
    // Names like real downloads: the host rewrites their titles.
    let name = |i: usize| format!("Show.Name.S01E{i:02}.1080p.WEB-DL.x264.mkv");
    for i in 0..n {
        common::write(
            root.path(),
            &format!("d{}/{}", i % 3, name(i)),
            &common::content(&format!("v{i}"), 20_000 + i),
        );
    }
    let faults = host.faults();
    faults.probability(Fault::Http502, Scope::Api, 0.15);
    faults.probability(Fault::NotJson, Scope::Api, 0.05);
    faults.probability(Fault::NoServers, Scope::endpoint("upload/server"), 0.2);
    // (No random rate-limit refusals: a real one means "nothing more this
    // host minute", and vidsync rightly waits for the next minute; that is
    // tested in `client::a_used_up_minute_is_waited_out_not_refused`.)
    faults.probability(Fault::DropMidUpload, Scope::Upload, 0.15);
    faults.probability(Fault::LoseReply, Scope::Upload, 0.25);
    faults.probability(Fault::Http503, Scope::Upload, 0.1);
    // The key check at start must pass; faults on it are covered elsewhere.
    // Each attempt makes several calls that may fail here; the per-file
    // attempt cap (a guard for files that never pass) must not be what ends it.
    let text = common::config_toml(&host, state.path(), &[(root.path(), "F/x")], "")
        .replace("max_attempts = 8", "max_attempts = 100");
    let (cfg, _) = common::config_from_text(&text, state.path());
    let summary = common::scan(&cfg).await;
    faults.clear();
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    let places = by_place(&host);
    assert_eq!(places.len(), n, "{:?}", places.keys().collect::<Vec<_>>());
    for i in 0..n {
        // One-letter folder names are refused by hosts: they get a "_".
        let f = &places[&format!("F_/x_/d{}/Show Name S01E{i:02} 1080p WEB-DL x264", i % 3)];
        assert_eq!(f.size, (20_000 + i) as u64);
    }
    let lost = host
        .request_log()
        .iter()
        .filter(|r| r.endpoint == "upload" && r.status == 0)
        .count();
    assert!(lost > 0, "the faults really hit uploads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_the_host_refuses_fails_once_and_the_others_go_on() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(root.path(), "bad.mp4", &common::content("bad", 1000));
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "")], "");
    host.faults()
        .times(Fault::unallowed_extension(), Scope::Upload, 1);
    let summary = common::scan(&cfg).await;
    assert_eq!(summary.failed.len(), 1);
    assert!(
        summary.failed[0].1.contains("unallowed video extension"),
        "{:?}",
        summary.failed
    );
    common::write(root.path(), "good1.mp4", &common::content("g1", 1000));
    common::write(root.path(), "good2.mp4", &common::content("g2", 1000));
    let summary = common::scan(&cfg).await;
    assert_eq!(summary.failed.len(), 1, "still only the refused one");
    let store = Store::open(&cfg.state.database).unwrap();
    let bad = store.list(Some(State::Failed)).unwrap();
    assert_eq!(bad.len(), 1);
    // Counted (the try happened) but not retried: one attempt, not eight.
    assert_eq!(bad[0].attempts, 1, "a permanent refusal is not retried");
    assert_eq!(
        bad[0]
            .last_error
            .as_deref()
            .map(|e| e.contains("unallowed video extension")),
        Some(true)
    );
    assert_eq!(store.list(Some(State::Uploaded)).unwrap().len(), 2);
    assert_eq!(host.files().len(), 2);
    // `retry` puts it back; the host now accepts it.
    assert_eq!(
        store.retry_failed(&[], vidsync::clock::now_ms()).unwrap(),
        1
    );
    drop(store);
    let summary = common::scan(&cfg).await;
    assert!(summary.failed.is_empty());
    assert_eq!(host.files().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_file_names_are_uploaded_and_titled_exactly() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let long = format!("{}.mp4", "long name ".repeat(22).trim());
    assert!(long.len() > 200);
    let names = [
        "with spaces.mp4".to_string(),
        "quote\"double'single.mp4".to_string(),
        "hash#percent%amp&.mp4".to_string(),
        "Paren (2020) [x].mkv".to_string(),
        "Cafe\u{301} NFD.mp4".to_string(),
        "Caf\u{e9} NFC.mp4".to_string(),
        "emoji 🎬🍿.mp4".to_string(),
        "<tag> & more.mp4".to_string(),
        long,
    ];
    for n in &names {
        common::write(root.path(), n, &common::content(n, 2000));
    }
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "")], "");
    let summary = common::scan(&cfg).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    let files = host.files();
    assert_eq!(files.len(), names.len());
    for n in &names {
        // Sent in the form the host stores (its rewriting applied).
        let stem = vidsync::engine::stored_title(n.rsplit_once('.').unwrap().0, false);
        let f = files
            .iter()
            .find(|f| f.title == stem)
            .unwrap_or_else(|| panic!("title {stem:?} on the host"));
        assert_eq!(
            host.file_bytes(&f.code).unwrap(),
            std::fs::read(root.path().join(n)).unwrap()
        );
    }
    // Uploading again finds nothing to do (titles matched exactly, including escapes).
    let before = host.uploads_started();
    common::scan(&cfg).await;
    assert_eq!(host.uploads_started(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_finds_new_files_without_inotify() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let text = common::config_toml(&host, state.path(), &[(root.path(), "Poll")], "")
        .replace("rescan = \"1h\"", "rescan = \"1h\"\nmode = \"poll\"");
    let (cfg, _) = common::config_from_text(&text, state.path());
    let (token, h) = start(&cfg);
    tokio::time::sleep(Duration::from_millis(300)).await;
    common::write(root.path(), "late/p.mp4", &common::content("p", 4000));
    let ok = common::wait_for(Duration::from_secs(20), || {
        by_place(&host).contains_key("Poll/late/p")
    })
    .await;
    assert!(ok, "{:?}", by_place(&host).keys().collect::<Vec<_>>());
    stop(token, h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rejected_while_running_pauses_everything_and_resumes_when_it_works() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Key")], "");
    let (token, h) = start(&cfg);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The account's key stops working (revoked on the host's side).
    host.faults().always(
        Fault::JsonError {
            status: 403,
            msg: "Wrong auth".into(),
        },
        Scope::Api,
    );
    common::write(root.path(), "k1.mp4", &common::content("k1", 3000));
    common::write(root.path(), "k2.mp4", &common::content("k2", 3000));
    let db = cfg.state.database.clone();
    let paused = common::wait_for(Duration::from_secs(20), || {
        Store::open(&db).unwrap().key_ok().unwrap() == Some(false)
    })
    .await;
    assert!(paused, "the rejection is recorded for `status`");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(host.files().is_empty());
    let before = host.uploads_started();
    assert_eq!(before, 0, "no upload is sent while the key is refused");
    let store = Store::open(&db).unwrap();
    assert!(
        store.list(None).unwrap().iter().all(|r| r.attempts == 0),
        "a refused key is never counted against files"
    );
    host.faults().clear();
    let resumed = common::wait_for(Duration::from_secs(20), || host.files().len() == 2).await;
    assert!(resumed, "uploads resume once the key works again");
    assert_eq!(store.key_ok().unwrap(), Some(true));
    stop(token, h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_after_upload_is_uploaded_again_as_a_new_version() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Ver")], "");
    let p = common::write(root.path(), "v.mp4", &common::content("one", 3000));
    common::scan(&cfg).await;
    let store = Store::open(&cfg.state.database).unwrap();
    let first = store.list(None).unwrap().remove(0);
    let old_code = first.file_code.clone().unwrap();
    // New content (a re-encode): different size and mtime.
    std::fs::write(&p, common::content("two", 4000)).unwrap();
    common::scan(&cfg).await;
    let now = store.file(first.id).unwrap().unwrap();
    let new_code = now.file_code.clone().unwrap();
    assert_ne!(new_code, old_code);
    assert_eq!(now.state, State::Uploaded);
    assert_eq!(
        host.file_bytes(&new_code).unwrap(),
        common::content("two", 4000)
    );
    let hist = store.history(first.id).unwrap();
    assert!(
        hist.iter()
            .any(|h| h.event == "replaced" && h.file_code.as_deref() == Some(old_code.as_str())),
        "the history keeps the old code: {hist:?}"
    );
    assert_eq!(host.files().len(), 2, "the old version stays on the host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_error_after_the_host_stored_the_file_is_adopted_not_resent() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(root.path(), "p.mp4", &common::content("p", 30_000));
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Proxy")], "");
    host.faults().times(Fault::StoredThen502, Scope::Upload, 1);
    let summary = common::scan(&cfg).await;
    assert!(summary.failed.is_empty());
    assert_eq!(host.files().len(), 1, "{:?}", host.files());
    assert_eq!(
        host.uploads_started(),
        1,
        "adopted after the 502, not sent again"
    );
    let store = Store::open(&cfg.state.database).unwrap();
    let row = store.list(None).unwrap().remove(0);
    assert_eq!(
        row.file_code.as_deref(),
        Some(host.files()[0].code.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_on_a_host_whose_listing_lags_still_gives_one_copy() {
    let host = vidsync_testhost::TestHost::start_with(vidsync_testhost::HostOptions {
        // Below `list_grace` (retry_max = 400 ms in the test config).
        list_lag: Duration::from_millis(300),
        ..vidsync_testhost::HostOptions::default()
    })
    .await
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    for i in 0..3 {
        common::write(
            root.path(),
            &format!("l{i}.mp4"),
            &common::content(&format!("l{i}"), 20_000),
        );
    }
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lag")], "");
    host.faults().always(Fault::LoseReply, Scope::Upload);
    let stop = CancellationToken::new();
    let h = tokio::spawn(daemon::scan_once(cfg.clone(), stop.clone()));
    // Every upload is stored, every reply lost: only searches can finish them.
    let done = common::wait_for(Duration::from_secs(30), || h.is_finished()).await;
    assert!(done, "scan finished");
    let summary = h.await.unwrap().unwrap();
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    let files = host.files();
    assert_eq!(
        files.len(),
        3,
        "one copy each, though nothing was listed at first: {files:?}"
    );
    assert_eq!(host.uploads_started(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_title_the_host_cuts_is_still_recognised_after_a_lost_reply() {
    let host = vidsync_testhost::TestHost::start_with(vidsync_testhost::HostOptions {
        max_title_chars: Some(100),
        ..vidsync_testhost::HostOptions::default()
    })
    .await
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let stem = "A very long programme title, episode ".repeat(5);
    common::write(
        root.path(),
        &format!("{stem}.mp4"),
        &common::content("long", 20_000),
    );
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Long")], "");
    host.faults().times(Fault::LoseReply, Scope::Upload, 1);
    let summary = common::scan(&cfg).await;
    assert!(summary.failed.is_empty());
    let files = host.files();
    assert_eq!(files.len(), 1, "adopted despite the cut title: {files:?}");
    assert_eq!(files[0].title.chars().count(), 100);
    assert_eq!(host.uploads_started(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_an_upload_in_flight_with_bytes_and_rate() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    // Large enough that loopback socket buffers cannot swallow it at once.
    let size = 24 * 1024 * 1024;
    common::write(root.path(), "slow.mp4", &common::content("slow", size));
    common::write(root.path(), "later.mp4", &common::content("later", 1000));
    let text = common::config_toml(&host, state.path(), &[(root.path(), "St")], "")
        .replace("concurrency = 2", "concurrency = 1");
    let (cfg, _) = common::config_from_text(&text, state.path());
    host.faults().always(
        Fault::SlowRead {
            bytes_per_sec: 4 * 1024 * 1024,
        },
        Scope::Upload,
    );
    let (token, h) = start(&cfg);
    let db = cfg.state.database.clone();
    let mut seen = serde_json::Value::Null;
    let ok = common::wait_for(Duration::from_secs(20), || {
        let Ok(store) = Store::open_existing(&db) else {
            return false;
        };
        let st = vidsync::report::status_json(&store).unwrap();
        let up = &st["uploading"][0];
        let good = up["total"].as_u64() == Some(size as u64)
            && up["sent"]
                .as_u64()
                .is_some_and(|s| s > 0 && s < size as u64)
            && up["rate"].as_u64().is_some_and(|r| r > 100_000)
            && st["counts"]["uploading"] == 1
            && st["queue"].as_u64().is_some();
        if good {
            seen = st;
        }
        good
    })
    .await;
    assert!(ok, "status showed the upload in flight with its rate");
    assert!(
        seen["uploading"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("slow.mp4")
    );
    host.faults().clear();
    stop(token, h).await;
}

// Regression: a file renamed while it was being uploaded was uploaded twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_during_upload_does_not_upload_twice() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let text = common::config_toml(&host, state.path(), &[(root.path(), "Lib")], "").replace(
        "read_timeout = \"5s\"",
        "read_timeout = \"5s\"\nbandwidth_limit = 400000",
    );
    let (cfg, _) = common::config_from_text(&text, state.path());
    common::write(root.path(), "show.mp4", &common::content("show", 2_000_000)); // ~5 s at 400 kB/s
    let stop = CancellationToken::new();
    let h = tokio::spawn(daemon::run(cfg.clone(), stop.clone()));
    let store = Store::open(&cfg.state.database).unwrap();
    assert!(
        common::wait_for(Duration::from_secs(10), || {
            store
                .list(Some(State::Uploading))
                .map(|v| !v.is_empty())
                .unwrap_or(false)
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // An *arr-style rename after import, mid-upload.
    std::fs::rename(
        root.path().join("show.mp4"),
        root.path().join("Show (2020).mp4"),
    )
    .unwrap();
    // Done when the one row is uploaded at the new path and retitled on the host.
    let followed = common::wait_for(Duration::from_secs(30), || {
        let rows = store.list(None).unwrap();
        rows.len() == 1
            && rows[0].rel_path == "Show (2020).mp4"
            && rows[0].state == State::Uploaded
            && host
                .files()
                .iter()
                .any(|f| vidsync::api::unescape(&f.title) == "Show (2020)")
    })
    .await;
    // A second copy, if the bug is back, would start right away: give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        followed,
        "the rename was followed on the host: {:?}",
        host.files()
    );
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
    let live = host
        .files()
        .into_iter()
        .filter(|f| f.deleted.is_none())
        .count();
    assert_eq!(
        live,
        1,
        "one local file, {live} copies on the host; rows: {:#?}",
        store
            .list(None)
            .unwrap()
            .iter()
            .map(|r| (&r.rel_path, r.state, &r.file_code))
            .collect::<Vec<_>>()
    );
}

// Regression: after an upload cut mid-body, the search adopted a same-titled sibling's code.
/// Two local files with the same title in one folder (Film_(2008).mp4 and Film.(2008).mkv, both "Film (2008)" on the host).
/// One upload is cut mid-body (nothing stored, outcome unknown): the search
/// that follows must not adopt the OTHER file's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_does_not_adopt_a_sibling_with_the_same_title() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(
        root.path(),
        "Film_(2008).mp4",
        &common::content("a", 50_000),
    );
    common::write(
        root.path(),
        "Film.(2008).mkv",
        &common::content("b", 50_000),
    );
    let text = common::config_toml(&host, state.path(), &[(root.path(), "Lib")], "")
        .replace("concurrency = 2", "concurrency = 1");
    let (cfg, _) = common::config_from_text(&text, state.path());
    // The second upload is cut mid-body: the host stores nothing.
    host.faults().times(Fault::DropMidUpload, Scope::Upload, 1);
    daemon::scan_once(cfg.clone(), CancellationToken::new())
        .await
        .unwrap();
    let store = Store::open(&cfg.state.database).unwrap();
    let rows = store.list(None).unwrap();
    let codes: Vec<_> = rows
        .iter()
        .map(|r| (r.rel_path.clone(), r.state, r.file_code.clone()))
        .collect();
    let live = host
        .files()
        .into_iter()
        .filter(|f| f.deleted.is_none())
        .count();
    assert!(
        rows[0].file_code.is_some() && rows[0].file_code != rows[1].file_code && live == 2,
        "two local files, {live} on the host, rows: {codes:?}"
    );
}

// Regression: a CDN's HTTP 429 counted against the file and failed it for good.
/// A CDN's HTTP 429 is a rate limit: it must not count against the file
/// (config.example.toml, `max_attempts`: "account-wide conditions ... retry without limit").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_429_does_not_fail_the_file() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(root.path(), "a.mp4", &common::content("a", 10_000));
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], "");
    // A burst of 429s from the CDN in front of upload/server (12 > max_attempts 8).
    host.faults()
        .times(Fault::Http429, Scope::endpoint("upload/server"), 12);
    let summary = daemon::scan_once(cfg.clone(), CancellationToken::new())
        .await
        .unwrap();
    let store = Store::open(&cfg.state.database).unwrap();
    let rows = store.list(None).unwrap();
    assert_eq!(
        rows[0].state,
        State::Uploaded,
        "a rate limit failed the file for good: {:?} / {:?}",
        rows[0].last_error,
        summary.failed
    );
}

// Regression: after a sync entry's `remote` changed, new uploads went to the old folder.
/// Changing the `remote` of an existing sync entry must send new uploads to
/// the new remote folder, not the remembered old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_remote_path_is_honoured() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(root.path(), "a.mp4", &common::content("a", 10_000));
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Old")], "");
    daemon::scan_once(cfg, CancellationToken::new())
        .await
        .unwrap();
    common::write(root.path(), "b.mp4", &common::content("b", 10_000));
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "New")], "");
    daemon::scan_once(cfg, CancellationToken::new())
        .await
        .unwrap();
    let folders = host.folders();
    let new_id = folders.iter().find(|f| f.name == "New").map(|f| f.fld_id);
    let b = host.files().into_iter().find(|f| f.title == "b").unwrap();
    assert_eq!(
        Some(b.fld_id),
        new_id,
        "b.mp4 went to folder {} (folders: {:?})",
        b.fld_id,
        folders
            .iter()
            .map(|f| (f.fld_id, f.name.clone()))
            .collect::<Vec<_>>()
    );
}

// Regression: after a lost reply for a new version, the search adopted the old version's code.
/// a.mp4 is uploaded (code A). Its content then changes (a re-encode lands
/// under the same name); the new version's upload is stored by the host
/// but the proxy answers 502 (outcome unknown). The search that follows
/// lists the folder for the title: it sees the OLD version A (no longer
/// in `files.file_code`, only in history, so not excluded) and the new
/// copy B, and adopts the earliest: A. The row claims the new content is
/// on the host as A (old bytes); B is an orphan duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_after_a_lost_reply_does_not_adopt_the_old_version() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], "");
    common::write(root.path(), "a.mp4", &common::content("v1", 4000));
    common::scan(&cfg).await;
    let s = Store::open(&cfg.state.database).unwrap();
    let old = s.list(None).unwrap()[0]
        .file_code
        .clone()
        .expect("v1 uploaded");
    drop(s);
    // New content (different size), same name.
    std::thread::sleep(Duration::from_millis(20));
    let v2 = common::content("v2", 5000);
    common::write(root.path(), "a.mp4", &v2);
    host.faults().times(Fault::StoredThen502, Scope::Upload, 1);
    common::scan(&cfg).await;
    let s = Store::open(&cfg.state.database).unwrap();
    let row = s.list(None).unwrap().remove(0);
    let code = row.file_code.clone().expect("a code");
    let files: Vec<_> = host.files().into_iter().map(|f| f.code).collect();
    eprintln!(
        "old code {old}, row {:?} code {code}, host files {files:?}",
        row.state
    );
    assert_ne!(
        code, old,
        "the new version was recorded under the OLD version's code"
    );
    assert_eq!(
        host.file_bytes(&code).unwrap(),
        v2,
        "row's code does not hold the new content"
    );
}

// Regression: a new version cut mid-upload was recorded under the old code and never sent.
/// Same, with the connection cut mid-body (the host stores nothing): the
/// search adopts the old version A, and the new content never reaches the
/// host at all, while the row says `uploaded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_cut_mid_upload_is_not_lost() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], "");
    common::write(root.path(), "a.mp4", &common::content("v1", 4000));
    common::scan(&cfg).await;
    std::thread::sleep(Duration::from_millis(20));
    let v2 = common::content("v2", 5000);
    common::write(root.path(), "a.mp4", &v2);
    host.faults().times(Fault::DropMidUpload, Scope::Upload, 1);
    common::scan(&cfg).await;
    let on_host = host
        .files()
        .iter()
        .any(|f| host.file_bytes(&f.code).as_deref() == Some(&v2[..]));
    let s = Store::open(&cfg.state.database).unwrap();
    let row = s.list(None).unwrap().remove(0);
    eprintln!(
        "row {:?} {:?}, host files {}",
        row.state,
        row.file_code,
        host.files().len()
    );
    assert!(
        on_host,
        "the new version is not on the host, yet the row is {:?}",
        row.state
    );
}

/// Hosts ration API calls: a first scan of 40 videos in 20 new directories
/// costs one folder/create per folder and a single listing (the account
/// root, where the sync folder is looked for), and one upload server serves
/// every upload. (Before: a folder/list before every folder/create, and an
/// upload/server call per file.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_of_new_folders_costs_one_call_per_folder_and_uploads_share_a_server() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    for d in 0..20 {
        for f in 0..2 {
            let rel = format!("Season {d:02}/E{f}.mp4");
            common::write(root.path(), &rel, &common::content(&rel, 2_000));
        }
    }
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], "");
    let summary = common::scan(&cfg).await;
    assert_eq!(host.files().len(), 40, "{summary:?}");
    assert_eq!(host.folders().len(), 21, "Lib and its 20 seasons");
    assert_eq!(host.request_count("folder/create"), 21);
    assert_eq!(
        host.request_count("folder/list"),
        1,
        "only the account root"
    );
    let servers = host.request_count("upload/server");
    // Concurrent workers may each ask once before a server is remembered.
    let workers = cfg.upload.concurrency.get();
    assert!(
        servers <= workers,
        "{servers} upload/server calls for 40 uploads"
    );
    let log = host.request_log();
    let api_calls = log.iter().filter(|r| r.endpoint != "upload").count();
    eprintln!(
        "API calls for 40 files in 20 new folders: {api_calls}: {:?}",
        {
            let mut by: std::collections::BTreeMap<&str, usize> = Default::default();
            for r in &log {
                *by.entry(r.endpoint.as_str()).or_default() += 1;
            }
            by
        }
    );
}
