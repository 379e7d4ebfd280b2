//! One test per bug found in review, named after the bug; each failed
//! before its fix.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vidsync::api::{Client, UploadParams};
use vidsync::config::{ApiConfig, ApiKey};
use vidsync::daemon;
use vidsync::store::{State, Store};
use vidsync::testhost::{Fault, Scope};

use crate::common;

/// The raw loopback server of `crate::raw`, answering each request line
/// with a JSON body, optionally trickled one byte per pause.
async fn raw_server(
    handler: impl Fn(u16, &str) -> (String, Option<Duration>) + Send + Sync + 'static,
) -> u16 {
    let (port, _) = crate::raw::raw_server(Arc::new(move |port, line| {
        let (body, trickle) = handler(port, line);
        crate::raw::RawReply {
            trickle,
            ..crate::raw::raw("200 OK", body)
        }
    }))
    .await;
    port
}

fn raw_client(port: u16, rpm: u32, read_timeout: Duration) -> Client {
    Client::new(&ApiConfig {
        url: url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        key: ApiKey::new("k3yk3yk3yk3yk3y"),
        requests_per_minute: rpm,
        connect_timeout: Duration::from_secs(2),
        read_timeout,
        bandwidth_limit: None,
        sanitize_filename: false,
        allow_http_upload: false,
        resolve: Vec::new(),
        paths: Default::default(),
    })
    .unwrap()
}

const OK_UPLOAD: &str = r#"{"msg":"OK","status":200,"files":[{"filecode":"abcdefabcdef","filename":"a.mp4","status":"OK"}]}"#;

fn server_reply(port: u16) -> String {
    format!(r#"{{"msg":"OK","status":200,"result":"http://127.0.0.1:{port}/upload/01"}}"#)
}

/// The upload reply body was read with no timeout at all.
#[tokio::test]
async fn upload_reply_body_that_stalls_is_bounded() {
    let port = raw_server(|port, line| {
        if line.starts_with("POST") {
            // Headers at once, then one byte every 30 s.
            (OK_UPLOAD.to_string(), Some(Duration::from_secs(30)))
        } else {
            (server_reply(port), None)
        }
    })
    .await;
    let c = raw_client(port, 60_000, Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let p = common::write(dir.path(), "a.mp4", &common::content("a", 10_000));
    let params = UploadParams {
        title: "a".into(),
        ..Default::default()
    };
    // The watchdog promises at most read_timeout * 5 (1.5 s) of silence.
    let r = tokio::time::timeout(Duration::from_secs(10), c.upload_file(&p, &params, None)).await;
    assert!(
        r.is_ok(),
        "upload_file still hanging after 10 s: the reply body has no timeout"
    );
}

/// Time spent waiting for the pacer counted as "upload silence".
#[tokio::test]
async fn pacer_wait_is_not_a_stalled_upload() {
    let port = raw_server(|port, line| {
        if line.starts_with("POST") {
            (OK_UPLOAD.to_string(), None)
        } else {
            (server_reply(port), None)
        }
    })
    .await;
    // 10/min: burst 1, then one token per ~6.7 s. read_timeout 1 s.
    let c = raw_client(port, 10, Duration::from_secs(1));
    let dir = tempfile::tempdir().unwrap();
    let p = common::write(dir.path(), "a.mp4", &common::content("a", 10_000));
    let params = UploadParams {
        title: "a".into(),
        ..Default::default()
    };
    let r = c.upload_file(&p, &params, None).await;
    assert!(r.is_ok(), "a healthy instant host, yet: {r:?}");
}

/// A sync root that is an (unmounted, now empty) mount point: every
/// uploaded file is marked local_deleted (and, with trash, moved to trash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_mountpoint_is_not_a_mass_local_deletion() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    for i in 0..4 {
        common::write(
            root.path(),
            &format!("v{i}.mp4"),
            &common::content(&format!("v{i}"), 4000),
        );
    }
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], "");
    daemon::scan_once(cfg.clone(), CancellationToken::new())
        .await
        .unwrap();
    let store = Store::open(&cfg.state.database).unwrap();
    assert_eq!(store.list(Some(State::Uploaded)).unwrap().len(), 4);
    // "Unmount": the directory stays, empty.
    let hidden = tempfile::tempdir().unwrap();
    for i in 0..4 {
        std::fs::rename(
            root.path().join(format!("v{i}.mp4")),
            hidden.path().join(format!("v{i}.mp4")),
        )
        .unwrap();
    }
    let shared = daemon::Shared::new(cfg.clone()).unwrap();
    // The files lived on a disk mounted there: record another device for
    // the root than the one its (empty) mount point is on now.
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(root.path()).unwrap().dev();
    let root_id = shared.roots[0].id;
    assert_eq!(
        store.root_dev(root_id).unwrap(),
        Some(dev),
        "the root's device is recorded"
    );
    store.set_root_dev(root_id, dev + 1).unwrap();
    vidsync::scan::scan_root(&shared, &shared.roots[0])
        .await
        .unwrap();
    let deleted = store.list(Some(State::LocalDeleted)).unwrap().len();
    assert_eq!(
        deleted, 0,
        "an empty root marked {deleted} of 4 files deleted"
    );
}

/// A DMCA'd file that disappears and reappears comes back as `uploaded`
/// (and a changed copy is queued for upload again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dmca_survives_a_local_disappearance() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(root.path(), "d.mp4", &common::content("d", 4000));
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], "");
    daemon::scan_once(cfg.clone(), CancellationToken::new())
        .await
        .unwrap();
    let store = Store::open(&cfg.state.database).unwrap();
    let row = store.list(Some(State::Uploaded)).unwrap().remove(0);
    store
        .mark_dmca(
            row.id,
            row.file_code.as_deref().unwrap(),
            "2030-01-01 00:00:00",
            1,
        )
        .unwrap();
    let shared = daemon::Shared::new(cfg.clone()).unwrap();
    let hidden = tempfile::tempdir().unwrap();
    std::fs::rename(root.path().join("d.mp4"), hidden.path().join("d.mp4")).unwrap();
    vidsync::scan::scan_root(&shared, &shared.roots[0])
        .await
        .unwrap();
    std::fs::rename(hidden.path().join("d.mp4"), root.path().join("d.mp4")).unwrap();
    vidsync::scan::scan_root(&shared, &shared.roots[0])
        .await
        .unwrap();
    let st = store.file(row.id).unwrap().unwrap().state;
    assert_eq!(st, State::Dmca, "a DMCA'd file became {st}");
}

/// A file renamed while it is being uploaded is uploaded twice.
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

/// A CDN's HTTP 429 is a rate limit: it must not count against the file
/// (PRODUCT: "account-wide conditions retry without limit").
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

fn rows3(cfg: &vidsync::config::Config) -> Vec<(String, State, Option<String>)> {
    let s = Store::open(&cfg.state.database).unwrap();
    s.list(None)
        .unwrap()
        .into_iter()
        .map(|r| (r.rel_path, r.state, r.file_code))
        .collect()
}

/// `mv b.mp4 a.mp4` over an uploaded a.mp4: b's content is already on the
/// host (b's code); nothing needs uploading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_over_a_tracked_file_uploads_nothing() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], "");
    common::write(root.path(), "a.mp4", &common::content("a", 4000));
    common::write(root.path(), "b.mp4", &common::content("b", 5000));
    common::scan(&cfg).await;
    assert_eq!(host.uploads_started(), 2);
    std::fs::rename(root.path().join("b.mp4"), root.path().join("a.mp4")).unwrap();
    common::scan(&cfg).await;
    assert_eq!(
        host.uploads_started(),
        2,
        "content already on the host was uploaded again; rows: {:?}",
        rows3(&cfg)
    );
}

/// A file moved out of the sync folder (seen as deleted) and later moved
/// back to another subfolder: same inode, size, mtime: it is the file that
/// is on the host already.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_comes_back_elsewhere_is_not_uploaded_again() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], "");
    common::write(root.path(), "a.mp4", &common::content("a", 4000));
    common::scan(&cfg).await;
    assert_eq!(host.uploads_started(), 1);
    std::fs::rename(root.path().join("a.mp4"), outside.path().join("a.mp4")).unwrap();
    common::scan(&cfg).await;
    std::fs::create_dir(root.path().join("sub")).unwrap();
    std::fs::rename(outside.path().join("a.mp4"), root.path().join("sub/a.mp4")).unwrap();
    common::scan(&cfg).await;
    assert_eq!(
        host.uploads_started(),
        1,
        "uploaded again; rows: {:?}",
        rows3(&cfg)
    );
}

/// `mv` from one sync folder to another (same disk): one file, one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_across_sync_roots_is_not_a_second_upload() {
    let host = common::host().await;
    let base = tempfile::tempdir().unwrap();
    let r1 = base.path().join("Movies");
    let r2 = base.path().join("Shows");
    std::fs::create_dir_all(&r1).unwrap();
    std::fs::create_dir_all(&r2).unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = common::config(&host, state.path(), &[(&r1, "Movies"), (&r2, "Shows")], "");
    common::write(&r1, "a.mp4", &common::content("a", 4000));
    common::scan(&cfg).await;
    assert_eq!(host.uploads_started(), 1);
    std::fs::rename(r1.join("a.mp4"), r2.join("a.mp4")).unwrap();
    common::scan(&cfg).await;
    assert_eq!(
        host.uploads_started(),
        1,
        "moved across roots -> uploaded again; rows: {:?}",
        rows3(&cfg)
    );
}

/// The sync folder is a symlink; the admin moves the library to a new disk
/// (cp -a) and repoints the link. The config text did not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repointing_a_symlinked_sync_root_does_not_reupload_the_library() {
    let host = common::host().await;
    let base = tempfile::tempdir().unwrap();
    let d1 = base.path().join("disk1");
    let d2 = base.path().join("disk2");
    let link = base.path().join("media");
    std::fs::create_dir_all(&d1).unwrap();
    std::os::unix::fs::symlink(&d1, &link).unwrap();
    let state = tempfile::tempdir().unwrap();
    for i in 0..3 {
        common::write(
            &d1,
            &format!("m{i}.mp4"),
            &common::content(&format!("m{i}"), 3000),
        );
    }
    let (cfg, _) = common::config(&host, state.path(), &[(&link, "Lib")], "");
    common::scan(&cfg).await;
    assert_eq!(host.uploads_started(), 3);
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&d1)
        .arg(&d2)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&d2, &link).unwrap();
    // A restart (or SIGHUP) parses the same config text again.
    let (cfg, _) = common::config(&host, state.path(), &[(&link, "Lib")], "");
    common::scan(&cfg).await;
    assert_eq!(
        host.uploads_started(),
        3,
        "the whole library was uploaded again; rows: {:?}",
        rows3(&cfg)
    );
}

/// A directory deleted, then later a new directory created that gets the
/// freed inode (ext4 reuses it at once): the remote folder of the deleted
/// directory must not be renamed to the new name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_directory_inode_is_not_a_rename() {
    use std::os::unix::fs::MetadataExt;
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], "");
    common::write(root.path(), "Old/e1.mp4", &common::content("e1", 4000));
    common::scan(&cfg).await;
    let old_ino = std::fs::metadata(root.path().join("Old")).unwrap().ino();
    std::fs::remove_dir_all(root.path().join("Old")).unwrap();
    common::scan(&cfg).await;
    // Create directories until one gets the freed inode (ext4 hands it out
    // again soon), name it "New", remove the others.
    let mut found = false;
    for i in 0..5000 {
        let d = root.path().join(format!("t{i}"));
        std::fs::create_dir(&d).unwrap();
        if std::fs::metadata(&d).unwrap().ino() == old_ino {
            std::fs::rename(&d, root.path().join("New")).unwrap();
            found = true;
            break;
        }
    }
    for e in std::fs::read_dir(root.path()).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_str().unwrap().starts_with('t') {
            std::fs::remove_dir(p).unwrap();
        }
    }
    if !found {
        // The filesystem did not hand the inode out again: nothing to show.
        eprintln!("skipped: the freed inode {old_ino} was not reused by this filesystem");
        return;
    }
    common::write(root.path(), "New/x.mp4", &common::content("x", 4500));
    common::scan(&cfg).await;
    let names: Vec<String> = host.folders().into_iter().map(|f| f.name).collect();
    assert!(
        names.contains(&"Old".to_string()),
        "the deleted directory's remote folder was renamed: folders {names:?}; rows {:?}",
        rows3(&cfg)
    );
}

/// A directory rename the host keeps refusing (folder/edit 502): the root
/// must not stall, and the daemon must not walk it in a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_folder_rename_does_not_stall_the_root() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    // A library with many non-video files: each walk stats them all.
    for d in 0..20 {
        let dir = root.path().join(format!("misc{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..1000 {
            std::fs::write(dir.join(format!("{i}.txt")), b"x").unwrap();
        }
    }
    common::write(root.path(), "D/a.mp4", &common::content("a", 4000));
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], "");
    let stop = CancellationToken::new();
    let h = tokio::spawn(daemon::run(cfg.clone(), stop.clone()));
    assert!(common::wait_for(Duration::from_secs(20), || host.uploads_started() == 1).await);
    tokio::time::sleep(Duration::from_secs(1)).await;

    host.faults()
        .always(Fault::Http502, Scope::endpoint("folder/edit"));
    std::fs::rename(root.path().join("D"), root.path().join("E")).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    common::write(root.path(), "new.mp4", &common::content("new", 4000));
    let uploaded = common::wait_for(Duration::from_secs(6), || host.uploads_started() == 2).await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
    assert!(
        uploaded,
        "new.mp4 not uploaded within 6 s while a folder rename is pending; rows {:?}",
        rows3(&cfg)
    );
}

/// Many renames at once (a renaming tool): the file/edit calls are paced;
/// meanwhile a new file must still be seen (the scanner loop must go round).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_fixups_do_not_block_the_scanner_loop() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    for i in 0..30 {
        common::write(
            root.path(),
            &format!("a{i}.mp4"),
            &common::content(&format!("a{i}"), 2000),
        );
    }
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], "");
    common::scan(&cfg).await;
    assert_eq!(host.uploads_started(), 30);
    // The same library with the default-ish pacing of a real host.
    let text = common::config_toml(&host, state.path(), &[(root.path(), "Lib")], "")
        .replace("requests_per_minute = 60000", "requests_per_minute = 120");
    let (cfg, _) = common::config_from_text(&text, state.path());
    let stop = CancellationToken::new();
    let h = tokio::spawn(daemon::run(cfg.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..30 {
        std::fs::rename(
            root.path().join(format!("a{i}.mp4")),
            root.path().join(format!("b{i}.mp4")),
        )
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    common::write(root.path(), "new.mp4", &common::content("new", 3000));
    let seen = common::wait_for(Duration::from_secs(4), || {
        rows3(&cfg).iter().any(|(p, _, _)| p == "new.mp4")
    })
    .await;
    let edits = host.request_count("file/edit");
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
    assert!(
        seen,
        "new.mp4 not even recorded 4 s after it was written: the scanner loop is inside the fix-ups ({edits} file/edit calls so far)"
    );
}

/// A hard link (`ln a.mp4 b.mp4`, or an *arr import by hard link) is the
/// same file: same device and inode. Policy question: uploaded twice today.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_link_is_not_uploaded_twice() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], "");
    common::write(root.path(), "a.mp4", &common::content("a", 4000));
    common::scan(&cfg).await;
    std::fs::hard_link(root.path().join("a.mp4"), root.path().join("b.mp4")).unwrap();
    common::scan(&cfg).await;
    assert_eq!(host.uploads_started(), 1, "rows: {:?}", rows3(&cfg));
}

// ---- review 4 ----

fn row_of(cfg: &vidsync::config::Config, rel: &str) -> Option<vidsync::store::FileRow> {
    let s = Store::open(&cfg.state.database).unwrap();
    s.list(None)
        .unwrap()
        .into_iter()
        .find(|r| r.rel_path == rel)
}

/// the fix-up task runs beside the scanner. A file moved again while
/// its file/edit is in flight: set_remote_place stamps placed_path with the
/// *current* rel_path, so the second move is never sent to the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_during_a_fixup_edit_is_not_lost() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], "");
    common::write(root.path(), "a.mp4", &common::content("a", 4000));
    common::scan(&cfg).await;
    let code = row_of(&cfg, "a.mp4").unwrap().file_code.unwrap();
    let stop = CancellationToken::new();
    let h = tokio::spawn(daemon::run(cfg.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    host.faults().always(
        Fault::Delay(Duration::from_secs(2)),
        Scope::endpoint("file/edit"),
    );
    std::fs::rename(root.path().join("a.mp4"), root.path().join("b.mp4")).unwrap();
    // The scanner records b.mp4 and the fix-up sends its edit (held 2 s).
    assert!(
        common::wait_for(Duration::from_secs(3), || host.request_count("file/edit")
            > 0
            || row_of(&cfg, "b.mp4").is_some())
        .await
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    std::fs::rename(root.path().join("b.mp4"), root.path().join("c.mp4")).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    host.faults().clear();
    let want = vidsync::engine::render_title(&cfg.upload.title_template, "c.mp4");
    let ok = common::wait_for(Duration::from_secs(8), || {
        host.file(&code).is_some_and(|f| f.title == want)
    })
    .await;
    let row = row_of(&cfg, "c.mp4");
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
    assert!(
        ok,
        "host title {:?}, want {want:?}; row placed_path {:?} rel_path {:?}",
        host.file(&code).map(|f| f.title),
        row.as_ref().and_then(|r| r.placed_path.clone()),
        row.as_ref().map(|r| r.rel_path.clone())
    );
}

/// with on_local_delete = "trash", a file that comes back while its
/// trash move is in flight stays in the trash on the host, recorded as placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_back_during_its_trash_move_leaves_the_trash() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let text = common::config_toml(&host, state.path(), &[], "")
        + &format!(
            "[[sync]]\nlocal = \"{}\"\nremote = \"Lib\"\non_local_delete = \"trash\"\ntrash = \"Trash/vidsync\"\n",
            root.path().display()
        );
    let (cfg, _) = common::config_from_text(&text, state.path());
    common::write(root.path(), "a.mp4", &common::content("a", 4000));
    common::scan(&cfg).await;
    let code = row_of(&cfg, "a.mp4").unwrap().file_code.unwrap();
    let lib_fld = host.file(&code).unwrap().fld_id;
    let stop = CancellationToken::new();
    let h = tokio::spawn(daemon::run(cfg.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    host.faults().always(
        Fault::Delay(Duration::from_secs(2)),
        Scope::endpoint("file/edit"),
    );
    std::fs::rename(root.path().join("a.mp4"), outside.path().join("a.mp4")).unwrap();
    assert!(
        common::wait_for(Duration::from_secs(3), || row_of(&cfg, "a.mp4")
            .is_some_and(|r| r.state == State::LocalDeleted))
        .await
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    std::fs::rename(outside.path().join("a.mp4"), root.path().join("a.mp4")).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    host.faults().clear();
    let ok = common::wait_for(Duration::from_secs(8), || {
        host.file(&code).is_some_and(|f| f.fld_id == lib_fld)
    })
    .await;
    let row = row_of(&cfg, "a.mp4");
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
    assert!(
        ok,
        "present file left in the host's trash: host fld {:?} (Lib {lib_fld}); row {:?}",
        host.file(&code).map(|f| f.fld_id),
        row.map(|r| (r.state, r.fld_id, r.placed_path, r.rel_path))
    );
}

/// `mv a.mp4 old.mp4` then a new a.mp4 (an *arr upgrade keeping the
/// old copy, a recorder rotating): old.mp4 is content already on the host,
/// yet it is uploaded again (a.mp4's row takes the new inode first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_then_replace_does_not_upload_the_moved_file_again() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], "");
    common::write(root.path(), "a.mp4", &common::content("a", 4000));
    common::scan(&cfg).await;
    assert_eq!(host.uploads_started(), 1);
    std::fs::rename(root.path().join("a.mp4"), root.path().join("old.mp4")).unwrap();
    common::write(root.path(), "a.mp4", &common::content("a2", 6000));
    common::scan(&cfg).await;
    assert_eq!(
        host.uploads_started(),
        2,
        "old.mp4 (already on the host) uploaded again; rows: {:?}",
        rows3(&cfg)
    );
}

// ---- review 5 ----

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
