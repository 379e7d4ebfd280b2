//! The daemon against a host that behaves like the real server software:
//! rewritten titles, a lost database, files another tool uploaded, tags
//! wiped by file/edit. One test per fact of the real server software
//! (docs/host-api.md, "Quirks of the real server software"), named after it.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use vidsync::store::{State, Store};
use vidsync_testhost::{Fault, HostFile, HostOptions, Scope, TestHost};

use crate::common;
use crate::common::bin;

fn live(host: &TestHost) -> Vec<HostFile> {
    host.files()
        .into_iter()
        .filter(|f| f.deleted.is_none())
        .collect()
}

/// Every row with a code points at a host file holding exactly its bytes.
fn assert_codes_hold_their_files(db: &Path, host: &TestHost) {
    let store = Store::open(db).unwrap();
    for row in store.list(None).unwrap() {
        if let Some(code) = &row.file_code {
            let bytes = host.file_bytes(code).unwrap_or_default();
            assert_eq!(
                bytes,
                std::fs::read(row.path()).unwrap(),
                "{} is recorded as {code}, which holds other bytes",
                row.rel_path
            );
        }
    }
}

fn delete_database(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_finds_the_file_under_the_title_the_host_rewrote() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let name = "Show.Name.S01E02_1080p.x264.WEB.mkv";
    common::write(root.path(), name, &common::content(name, 50_000));
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "TV")], "");
    // The host stores the file, the reply is lost.
    host.faults().times(Fault::LoseReply, Scope::Upload, 1);
    let summary = common::scan(&cfg).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    let files = live(&host);
    assert_eq!(files.len(), 1, "uploaded once: {files:?}");
    assert_eq!(files[0].title, "Show Name S01E02 1080p WEB");
    assert_eq!(host.uploads_started(), 1);
    let store = Store::open(&cfg.state.database).unwrap();
    let row = &store.list(None).unwrap()[0];
    assert_eq!(row.file_code.as_deref(), Some(files[0].code.as_str()));
    // The title recorded is the one the host stores.
    assert_eq!(row.title.as_deref(), Some("Show Name S01E02 1080p WEB"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn titles_equal_under_the_hosts_rules_are_told_apart_by_size_after_lost_replies() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    // Both are stored as "A B".
    common::write(root.path(), "A_B.mp4", &common::content("ab1", 30_000));
    common::write(root.path(), "A.B.mp4", &common::content("ab2", 40_000));
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Eq")], "");
    host.faults().times(Fault::LoseReply, Scope::Upload, 2);
    // Searches wait a little, so that both uploads are on the host when
    // the first search lists the folder.
    host.faults().times(
        Fault::Delay(Duration::from_millis(300)),
        Scope::endpoint("file/list"),
        2,
    );
    let summary = common::scan(&cfg).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(live(&host).len(), 2, "{:?}", live(&host));
    assert_eq!(host.uploads_started(), 2, "nothing sent twice");
    // The original's size (file/direct_link) told each copy's owner.
    assert_codes_hold_their_files(&cfg.state.database, &host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_database_uploads_nothing_again() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let names = [
        "Show.Name.S01E01.1080p.WEB-DL.x264.mkv",
        "Show.Name.S01E02.1080p.WEB-DL.x264.mkv",
        "Holidays/My_Holiday_2019.mp4",
        "Holidays/My_Holiday_2020.mp4",
        "Films/Film (2008) [1080p].mkv",
        "Films/Another.Film.2010.720p.mp4",
    ];
    for n in names {
        common::write(root.path(), n, &common::content(n, 20_000));
    }
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], "");
    common::scan(&cfg).await;
    assert_eq!(live(&host).len(), 6);
    let before = host.uploads_started();
    let folders_before = host.folders().len();
    let codes_before: HashSet<String> = live(&host).into_iter().map(|f| f.code).collect();

    // A reinstall, a disk swap: the database is gone.
    delete_database(&cfg.state.database);
    let summary = common::scan(&cfg).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(host.uploads_started(), before, "nothing uploaded again");
    assert_eq!(host.folders().len(), folders_before, "no folder made twice");
    let store = Store::open(&cfg.state.database).unwrap();
    let rows = store.list(None).unwrap();
    assert_eq!(rows.len(), 6);
    for r in &rows {
        assert_eq!(r.state, State::Uploaded, "{}", r.rel_path);
        let code = r.file_code.clone().unwrap();
        assert!(codes_before.contains(&code), "{}", r.rel_path);
        let h = store.history(r.id).unwrap();
        assert!(
            h.iter()
                .any(|e| e.detail.as_deref().is_some_and(|d| d.contains("adopted"))),
            "{}: {h:?}",
            r.rel_path
        );
    }
    assert_codes_hold_their_files(&cfg.state.database, &host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_another_tool_uploaded_are_adopted_and_a_different_size_is_not() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let movies = host.create_folder(0, "Movies");
    let film = common::content("film", 25_000);
    common::write(root.path(), "Film (2008) [1080p].mkv", &film);
    common::write(root.path(), "Other.mp4", &common::content("other", 9_000));
    // Uploaded before by another tool, under the host's title rules.
    let theirs = host.add_file(movies, "Film (2008) [1080p].mkv", &film, &[]);
    // Same title, other content: not this file.
    let stranger = host.add_file(movies, "Other.mp4", &common::content("x", 5_000), &[]);
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Movies")], "");
    let summary = common::scan(&cfg).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    let store = Store::open(&cfg.state.database).unwrap();
    let film_row = store
        .list(None)
        .unwrap()
        .into_iter()
        .find(|r| r.rel_path.starts_with("Film"))
        .unwrap();
    assert_eq!(film_row.file_code.as_deref(), Some(theirs.as_str()));
    assert_eq!(host.uploads_started(), 1, "only Other.mp4 was sent");
    let other_row = store
        .list(None)
        .unwrap()
        .into_iter()
        .find(|r| r.rel_path == "Other.mp4")
        .unwrap();
    assert_ne!(other_row.file_code.as_deref(), Some(stranger.as_str()));
    assert_codes_hold_their_files(&cfg.state.database, &host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_direct_links_equal_titles_are_ambiguous_listed_and_settled_by_adopt() {
    let host = common::host().await;
    host.configure(|o| o.direct_link_disabled = true);
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let fld = host.create_folder(0, "Amb");
    let ab1 = common::content("ab1", 30_000);
    let ab2 = common::content("ab2", 40_000);
    common::write(root.path(), "A_B.mp4", &ab1);
    common::write(root.path(), "A.B.mp4", &ab2);
    // A lost database: both are on the host as "A B", which is which is
    // not to be told from titles, and the host gives no sizes.
    let c1 = host.add_file(fld, "A_B.mp4", &ab1, &[]);
    let c2 = host.add_file(fld, "A.B.mp4", &ab2, &[]);
    let (cfg, path) = common::config(&host, state.path(), &[(root.path(), "Amb")], "");

    let out = bin()
        .arg("--config")
        .arg(&path)
        .args(["adopt", "--dry-run"])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("ambiguous").count(), 2, "{text}");
    assert!(text.contains(&c1) && text.contains(&c2), "{text}");

    // A scan neither adopts nor uploads them: it sets them aside.
    let summary = common::scan(&cfg).await;
    assert_eq!(host.uploads_started(), 0, "nothing uploaded twice");
    assert_eq!(summary.failed.len(), 2, "{:?}", summary.failed);
    assert!(
        summary.failed[0].1.contains("ambiguous"),
        "{:?}",
        summary.failed
    );
    // `vidsync retry` searches again before anything could be sent.
    let retry = bin()
        .arg("--config")
        .arg(&path)
        .arg("retry")
        .output()
        .unwrap();
    assert!(retry.status.success());
    common::scan(&cfg).await;
    assert_eq!(host.uploads_started(), 0, "retry did not upload either");

    // A code of another account is refused (file/info answers for any
    // account's file; the host's own listing decides).
    host.add_account("other", "otherkey00000000");
    let mut other = common::api_config(&host);
    other.key = vidsync::config::ApiKey::new("otherkey00000000");
    let other = vidsync::api::Client::new(&other).unwrap();
    let foreign_path = common::write(state.path(), "foreign.mp4", b"not yours");
    let foreign = other
        .upload_file(
            &foreign_path,
            &vidsync::api::UploadParams {
                title: "A B".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let out = bin()
        .arg("--config")
        .arg(&path)
        .arg("adopt")
        .arg(root.path().join("A_B.mp4"))
        .arg(&foreign)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a file of this account"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let sent = host.uploads_started(); // the other account's upload

    // The user settles each one.
    for (name, code) in [("A_B.mp4", &c1), ("A.B.mp4", &c2)] {
        let out = bin()
            .arg("--config")
            .arg(&path)
            .arg("adopt")
            .arg(root.path().join(name))
            .arg(code)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let summary = common::scan(&cfg).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(host.uploads_started(), sent, "nothing of ours uploaded");
    assert_codes_hold_their_files(&cfg.state.database, &host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_a_rename_and_a_trash_move_keep_the_users_tags() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(
        root.path(),
        "Show.Name.S01E02.mkv",
        &common::content("tags", 10_000),
    );
    let (cfg, _) = common::config(
        &host,
        state.path(),
        &[(root.path(), "Tagged")],
        "tags = [\"vidsync\"]\non_local_delete = \"trash\"\ntrash = \"Trash\"\n",
    );
    common::scan(&cfg).await;
    let code = live(&host)[0].code.clone();
    // The host added the show name; the user adds a tag by hand.
    let mut tags: Vec<String> = host.file(&code).unwrap().tags.0.clone();
    assert!(tags.contains(&"show name".to_string()), "{tags:?}");
    tags.push("favourite".into());
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    assert!(host.set_tags(&code, &refs));
    let expect: HashSet<String> = ["vidsync", "show name", "favourite"]
        .into_iter()
        .map(String::from)
        .collect();
    let have = |host: &TestHost| -> HashSet<String> {
        host.file(&code).unwrap().tags.0.iter().cloned().collect()
    };
    assert_eq!(have(&host), expect);

    // A rename (file/edit of the title) keeps them.
    std::fs::rename(
        root.path().join("Show.Name.S01E02.mkv"),
        root.path().join("Show.Name.S01E02.Final.mkv"),
    )
    .unwrap();
    common::scan(&cfg).await;
    let f = host.file(&code).unwrap();
    assert_eq!(f.title, "Show Name S01E02 Final");
    assert_eq!(have(&host), expect, "after the rename");

    // A move into a subfolder (file/edit of the folder) keeps them.
    std::fs::create_dir(root.path().join("Season 1")).unwrap();
    std::fs::rename(
        root.path().join("Show.Name.S01E02.Final.mkv"),
        root.path().join("Season 1/Show.Name.S01E02.Final.mkv"),
    )
    .unwrap();
    common::scan(&cfg).await;
    let season = host
        .folders()
        .into_iter()
        .find(|f| f.name == "Season 1")
        .expect("Season 1 on the host");
    assert_eq!(host.file(&code).unwrap().fld_id, season.fld_id);
    assert_eq!(have(&host), expect, "after the move");

    // A local deletion moves it to the trash folder, tags and all.
    std::fs::remove_file(root.path().join("Season 1/Show.Name.S01E02.Final.mkv")).unwrap();
    common::scan(&cfg).await;
    let trash = host
        .folders()
        .into_iter()
        .find(|f| f.name == "Trash")
        .expect("trash folder");
    assert_eq!(host.file(&code).unwrap().fld_id, trash.fld_id);
    assert_eq!(have(&host), expect, "after the trash move");
    assert_eq!(host.uploads_started(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sanitizing_host_is_matched_in_its_own_form_after_a_lost_reply() {
    let host = TestHost::start_with(HostOptions {
        sanitize_filename: true,
        ..HostOptions::default()
    })
    .await
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let name = "Film (2008) [1080p] – Director's Cut.mkv";
    common::write(root.path(), name, &common::content(name, 12_000));
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "San")], "");
    let mut cfg = cfg;
    cfg.api.sanitize_filename = true;
    host.faults().times(Fault::LoseReply, Scope::Upload, 1);
    let summary = common::scan(&cfg).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    let files = live(&host);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        files[0].title,
        vidsync_testhost::host_title("Film (2008) [1080p] – Director's Cut", true)
    );
    assert_eq!(host.uploads_started(), 1);
}

/// The end-to-end case: real download names, the host rewriting
/// titles, half the upload replies lost after the host stored the file,
/// and a SIGKILL in the middle of an upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_names_lost_replies_and_a_sigkill_end_with_each_file_on_the_host_once() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let names = [
        "Show.Name.S01E02.1080p.WEB-DL.x264.mkv",
        "Show.Name.S01E03.1080p.WEB-DL.x264.mkv",
        "My_Holiday_2019.mp4",
        "Films/Film (2008) [1080p].mkv",
        "Films/Film.2008.1080p.mkv",
        "Films/Big_Buck_Bunny.avi",
    ];
    for n in names {
        common::write(root.path(), n, &common::content(n, 300_000));
    }
    let (_, path) = common::config(
        &host,
        state.path(),
        &[(root.path(), "Media")],
        "tags = [\"mirror\"]\n",
    );
    // Slow uploads, so the kill lands mid-body; half the replies lost.
    host.faults().always(
        Fault::SlowRead {
            bytes_per_sec: 400_000,
        },
        Scope::Upload,
    );
    host.faults()
        .probability(Fault::LoseReply, Scope::Upload, 0.5);
    let spawn = || {
        bin()
            .arg("--config")
            .arg(&path)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    let started = common::wait_for(Duration::from_secs(30), || host.uploads_started() >= 2).await;
    assert!(started);
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap(); // SIGKILL, mid-upload
    child.wait().unwrap();
    let mut child = spawn();
    let done = common::wait_for(Duration::from_secs(90), || {
        Store::open_existing(&state.path().join("state.db"))
            .and_then(|s| s.list(None))
            .map(|rows| {
                rows.len() == names.len() && rows.iter().all(|r| r.state == State::Uploaded)
            })
            .unwrap_or(false)
    })
    .await;
    // A duplicate, if any, gets the chance to appear.
    tokio::time::sleep(Duration::from_millis(800)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(done, "all uploaded: {:?}", live(&host));

    let files = live(&host);
    assert_eq!(files.len(), names.len(), "each file once: {files:?}");
    let db = state.path().join("state.db");
    assert_codes_hold_their_files(&db, &host);
    let store = Store::open(&db).unwrap();
    let folders = host.folders();
    for row in store.list(None).unwrap() {
        let f = host.file(row.file_code.as_deref().unwrap()).unwrap();
        // In its folder.
        let dir = vidsync::engine::rel_dir_of(&row.rel_path);
        let want = if dir.is_empty() { "Media" } else { dir };
        let folder = folders.iter().find(|x| x.fld_id == f.fld_id).unwrap();
        assert_eq!(folder.name, want, "{}", row.rel_path);
        // With its tags.
        assert!(f.tags.0.contains(&"mirror".to_string()), "{:?}", f.tags);
    }
    // `list --json` shows the titles as the host stores them.
    let out = bin()
        .arg("--config")
        .arg(&path)
        .args(["list", "--json"])
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let titles: HashSet<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["title"].as_str().unwrap_or("").to_string())
        .collect();
    let stored: HashSet<String> = files.iter().map(|f| f.title.clone()).collect();
    assert_eq!(titles, stored);
    assert!(
        titles.contains("Show Name S01E02 1080p WEB-DL x264"),
        "{titles:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_over_quota_ends_with_a_clear_error_and_sends_nothing() {
    let host = TestHost::start_with(HostOptions {
        storage_left: Some(-5000),
        ..HostOptions::default()
    })
    .await
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(root.path(), "q.mp4", &common::content("q", 3000));
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Full")], "");
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        vidsync::daemon::scan_once(cfg, tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("scan ends")
    .expect_err("over quota");
    assert!(err.to_string().contains("over its storage quota"), "{err}");
    assert_eq!(
        host.uploads_started(),
        0,
        "no whole file sent to a full account"
    );
}
