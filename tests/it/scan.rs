//! The scanner against real files: which local change is the same file (moves, renames,
//! links, mounts, directory inodes), so that nothing is uploaded twice or marked gone by mistake.

use tokio_util::sync::CancellationToken;
use vidsync::daemon;
use vidsync::store::{State, Store};

use crate::common;

// Regression: an unmounted (empty) mount point as sync root marked every uploaded file deleted.
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
    let (shared, _hints) = vidsync::context::Context::new(cfg.clone()).unwrap();
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
    vidsync::scan::scan_root(&shared, &Default::default(), &shared.roots[0])
        .await
        .unwrap();
    let deleted = store.list(Some(State::LocalDeleted)).unwrap().len();
    assert_eq!(
        deleted, 0,
        "an empty root marked {deleted} of 4 files deleted"
    );
}

// Regression: a DMCA'd file that disappeared and came back became `uploaded` again.
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
    let (shared, _hints) = vidsync::context::Context::new(cfg.clone()).unwrap();
    let hidden = tempfile::tempdir().unwrap();
    std::fs::rename(root.path().join("d.mp4"), hidden.path().join("d.mp4")).unwrap();
    vidsync::scan::scan_root(&shared, &Default::default(), &shared.roots[0])
        .await
        .unwrap();
    std::fs::rename(hidden.path().join("d.mp4"), root.path().join("d.mp4")).unwrap();
    vidsync::scan::scan_root(&shared, &Default::default(), &shared.roots[0])
        .await
        .unwrap();
    let st = store.file(row.id).unwrap().unwrap().state;
    assert_eq!(st, State::Dmca, "a DMCA'd file became {st}");
}

// Regression: `mv b.mp4 a.mp4` over an uploaded a.mp4 uploaded content already on the host.
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
        common::row_states(&cfg)
    );
}

// Regression: a file moved out of the sync folder and back into a subfolder was uploaded again.
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
        common::row_states(&cfg)
    );
}

// Regression: a file moved from one sync folder to another was uploaded a second time.
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
        common::row_states(&cfg)
    );
}

// Regression: repointing a symlinked sync root at a copy uploaded the whole library again.
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
        common::row_states(&cfg)
    );
}

// Regression: a hard link to an uploaded file was uploaded a second time.
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
    assert_eq!(
        host.uploads_started(),
        1,
        "rows: {:?}",
        common::row_states(&cfg)
    );
}

// Regression: `mv a.mp4 old.mp4` then a new a.mp4 uploaded old.mp4 (on the host already) again.
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
        common::row_states(&cfg)
    );
}

// Regression: a new directory given a deleted one's inode renamed that one's remote folder.
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
        common::row_states(&cfg)
    );
}

/// The scanner fed by hand, as the watcher would feed it: a context on a
/// test host's config with `syncs`, its settle time set to `settle`.
fn scanner_for(
    host: &vidsync_testhost::TestHost,
    state: &std::path::Path,
    syncs: &[(&std::path::Path, &str)],
    settle: &str,
) -> (
    vidsync::context::Context,
    vidsync::scan::Scanner,
    vidsync::config::Config,
) {
    let text = common::config_toml(host, state, syncs, "")
        .replace("settle = \"300ms\"", &format!("settle = \"{settle}\""));
    let (cfg, _) = common::config_from_text(&text, state);
    let (ctx, rx) = vidsync::context::Context::new(cfg.clone()).unwrap();
    let scanner = vidsync::scan::Scanner::new(rx, cfg.watch.settle);
    (ctx, scanner, cfg)
}

/// Events are hints: more than the channel holds (a storm while the
/// scanner was busy) must not lose a file; the overflow becomes a walk of
/// every root, including one no hint named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_storm_beyond_the_channel_becomes_a_walk_of_every_root() {
    use vidsync::context::Hint;
    let host = common::host().await;
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (ctx, mut scanner, cfg) = scanner_for(
        &host,
        state.path(),
        &[(a.path(), "A"), (b.path(), "B")],
        "1h",
    );
    // A file in B that no hint names.
    common::write(b.path(), "quiet.mp4", &common::content("q", 1000));
    for i in 0..vidsync::context::hints::CAPACITY + 1 {
        ctx.hints
            .send(Hint::Touched(a.path().join(format!("gone{i}.mp4"))));
    }
    scanner.pass(&ctx, &CancellationToken::new()).await;
    assert!(
        common::row_of(&cfg, "quiet.mp4").is_some(),
        "a file in a root no hint named was not found after the channel overflowed"
    );
}

/// A path removed or renamed away where nothing was tracked (a finished
/// `.part`, an rsync temporary) costs no walk; a tree event does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untracked_path_gone_costs_no_walk_and_a_tree_event_does() {
    use vidsync::context::Hint;
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (ctx, mut scanner, cfg) = scanner_for(&host, state.path(), &[(root.path(), "L")], "1h");
    common::write(root.path(), "new.mp4", &common::content("n", 1000));
    ctx.hints
        .send(Hint::Renamed(root.path().join("x.mkv.part")));
    scanner.pass(&ctx, &CancellationToken::new()).await;
    assert!(
        common::row_of(&cfg, "new.mp4").is_none(),
        "an untracked path gone made the scanner walk the root"
    );
    ctx.hints.send(Hint::Tree(root.path().join("Season 1")));
    scanner.pass(&ctx, &CancellationToken::new()).await;
    assert!(
        common::row_of(&cfg, "new.mp4").is_some(),
        "a tree event did not make the scanner walk the root"
    );
}

/// The scanner owns the writer tracking: a file a writer holds open stays
/// `waiting` past its settle time, and is queued once the writer closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_held_open_for_writing_waits_until_it_is_closed() {
    use vidsync::context::Hint;
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (ctx, mut scanner, cfg) = scanner_for(&host, state.path(), &[(root.path(), "L")], "1ms");
    let path = common::write(root.path(), "dl.mp4", &common::content("d", 1000));
    scanner.scan_all(&ctx).await;
    ctx.hints.send(Hint::Writing {
        path: path.clone(),
        written: true,
    });
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    scanner.pass(&ctx, &CancellationToken::new()).await;
    let st = common::row_of(&cfg, "dl.mp4").unwrap().state;
    assert_eq!(st, State::Waiting, "a file open for writing became {st}");
    ctx.hints.send(Hint::Closed(path));
    scanner.pass(&ctx, &CancellationToken::new()).await;
    let st = common::row_of(&cfg, "dl.mp4").unwrap().state;
    assert_eq!(
        st,
        State::Queued,
        "a closed, settled file is {st}, not queued"
    );
}

// Regression: a close dropped by a full hint channel left the writer mark
// behind (the overflow was applied before the older hints), and the file
// waited until a restart.
/// A close lost to an overflow does not hold the file forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_lost_to_overflow_does_not_hold_the_file_forever() {
    use vidsync::context::Hint;
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (ctx, mut scanner, cfg) = scanner_for(&host, state.path(), &[(root.path(), "L")], "1ms");
    let path = common::write(root.path(), "dl.mp4", &common::content("d", 1000));
    scanner.scan_all(&ctx).await;
    ctx.hints.send(Hint::Writing {
        path: path.clone(),
        written: true,
    });
    for i in 0..vidsync::context::hints::CAPACITY {
        ctx.hints
            .send(Hint::Touched(root.path().join(format!("t{i}.mp4"))));
    }
    ctx.hints.send(Hint::Closed(path.clone())); // dropped: channel full
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    for _ in 0..3 {
        scanner.pass(&ctx, &CancellationToken::new()).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let st = common::row_of(&cfg, "dl.mp4").unwrap().state;
    assert_eq!(
        st,
        State::Queued,
        "closed file still held after overflow: {st}"
    );
}
