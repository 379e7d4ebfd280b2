//! Remote fix-ups (directory renames, moves and renames on the host, trash moves) beside the
//! scanner: they never block it, and a change made while one is in flight is not lost.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vidsync::daemon;
use vidsync::store::State;
use vidsync_testhost::{Fault, Scope};

use crate::common;

// Regression: a directory rename the host kept refusing stalled the root (walked in a loop).
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
        common::row_states(&cfg)
    );
}

// Regression: many paced renames on the host blocked the scanner loop; new files went unseen.
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
        common::row_states(&cfg)
            .iter()
            .any(|(p, _, _)| p == "new.mp4")
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

// Regression: a move made while the file's file/edit was in flight never reached the host.
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
    let code = common::row_of(&cfg, "a.mp4").unwrap().file_code.unwrap();
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
            || common::row_of(&cfg, "b.mp4").is_some())
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
    let row = common::row_of(&cfg, "c.mp4");
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

// Regression: a file back while its trash move was in flight stayed in the host's trash.
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
    let code = common::row_of(&cfg, "a.mp4").unwrap().file_code.unwrap();
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
        common::wait_for(Duration::from_secs(3), || common::row_of(&cfg, "a.mp4")
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
    let row = common::row_of(&cfg, "a.mp4");
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
    assert!(
        ok,
        "present file left in the host's trash: host fld {:?} (Lib {lib_fld}); row {:?}",
        host.file(&code).map(|f| f.fld_id),
        row.map(|r| (r.state, r.fld_id, r.placed_path, r.rel_path))
    );
}

/// A file changed after upload goes up again as a new version. With a
/// trash folder (and `on_new_version` left at its default, "trash"), the
/// copy it replaced is moved there once the new one is up, so a broken or
/// outdated copy does not stay live; with "keep" it stays. The history
/// keeps both codes either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_version_goes_to_the_trash_folder_once_the_new_one_is_up() {
    for (policy, trashed) in [("", true), ("on_new_version = \"keep\"\n", false)] {
        let host = common::host().await;
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let extra = format!("trash = \"Old/Trash\"\n{policy}");
        let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Lib")], &extra);
        common::write(root.path(), "Show.S01E01.mkv", &common::content("v1", 5000));
        common::scan(&cfg).await;
        let first = common::row_of(&cfg, "Show.S01E01.mkv").unwrap();
        let old = first.file_code.clone().expect("first version uploaded");
        // A better copy replaces the file (another size and mtime).
        tokio::time::sleep(Duration::from_millis(20)).await;
        common::write(root.path(), "Show.S01E01.mkv", &common::content("v2", 6000));
        common::scan(&cfg).await;
        let row = common::row_of(&cfg, "Show.S01E01.mkv").unwrap();
        assert_eq!(row.state, State::Uploaded);
        let new = row.file_code.clone().expect("new version uploaded");
        assert_ne!(new, old);
        let trash_id = host
            .folders()
            .into_iter()
            .find(|f| f.name == "Trash")
            .map(|f| f.fld_id);
        let old_fld = host
            .file(&old)
            .expect("the old copy is kept on the host")
            .fld_id;
        let new_fld = host.file(&new).expect("the new copy").fld_id;
        if trashed {
            assert_eq!(Some(old_fld), trash_id, "the old copy went to Old/Trash");
            assert_ne!(Some(new_fld), trash_id, "the new copy stays in place");
        } else {
            assert_eq!(
                old_fld, new_fld,
                "with keep, the old copy stays beside the new"
            );
        }
        let store = vidsync::store::Store::open(&cfg.state.database).unwrap();
        let codes: Vec<Option<String>> = store
            .history(row.id)
            .unwrap()
            .into_iter()
            .map(|h| h.file_code)
            .collect();
        assert!(codes.contains(&Some(old.clone())), "{codes:?}");
        assert!(codes.contains(&Some(new.clone())), "{codes:?}");
        // A third scan moves nothing again.
        let edits = host.request_count("file/edit");
        common::scan(&cfg).await;
        assert_eq!(host.request_count("file/edit"), edits);
    }
}
