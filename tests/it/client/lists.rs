//! The calls reconcile makes (file/deleted, file/dmca, file/encodings) and the alternative
//! list paths some hosts use.

use std::time::Duration;

use vidsync::api::{Client, DeletedBy};
use vidsync_testhost::{Fault, HostOptions, Scope};

use super::{client, count, host_with, upload_titled};
use crate::common;

#[tokio::test]
async fn deleted_honours_the_last_hours_window() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let a = upload_titled(&c, dir.path(), "gone early", 0).await;
    let b = upload_titled(&c, dir.path(), "gone late", 0).await;
    assert!(c.deleted(24).await.expect("deleted").is_empty());

    assert!(host.delete_file(&a, vidsync_testhost::DeletedBy::Me));
    host.advance(Duration::from_secs(3 * 3600));
    assert!(host.delete_file(&b, vidsync_testhost::DeletedBy::Admin));
    host.advance(Duration::from_secs(60));

    let last1 = c.deleted(1).await.expect("deleted 1h");
    assert_eq!(last1.len(), 1, "{last1:?}");
    assert_eq!(last1[0].file_code, b);
    assert_eq!(last1[0].deleted_by, DeletedBy::Admin);
    assert_eq!(last1[0].title, "gone late");
    assert!((60..120).contains(&last1[0].deleted_ago_sec));

    let last24 = c.deleted(24).await.expect("deleted 24h");
    assert_eq!(last24.len(), 2);
    let ea = last24.iter().find(|d| d.file_code == a).expect("a listed");
    assert_eq!(ea.deleted_by, DeletedBy::Me);
    assert!(ea.deleted_ago_sec >= 3 * 3600);
}

#[tokio::test]
async fn dmca_honours_the_last_hours_window() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let a = upload_titled(&c, dir.path(), "dmca early", 0).await;
    let b = upload_titled(&c, dir.path(), "dmca late", 0).await;
    assert!(c.dmca(24).await.expect("dmca").is_empty());

    assert!(host.schedule_dmca(&a, Duration::from_secs(48 * 3600)));
    host.advance(Duration::from_secs(5 * 3600));
    assert!(host.schedule_dmca(&b, Duration::from_secs(12 * 3600)));

    let last1 = c.dmca(1).await.expect("dmca 1h");
    assert_eq!(last1.len(), 1, "{last1:?}");
    assert_eq!(last1[0].file_code, b);
    assert!((12 * 3600 - 60..=12 * 3600).contains(&last1[0].del_in_sec));
    assert_eq!(last1[0].del_time.len(), 19);

    let last24 = c.dmca(24).await.expect("dmca 24h");
    let mut got: Vec<_> = last24.iter().map(|d| d.file_code.clone()).collect();
    got.sort();
    let mut want = vec![a, b.clone()];
    want.sort();
    assert_eq!(got, want);

    // When the time comes the file is deleted by admin and leaves the list.
    host.advance(Duration::from_secs(13 * 3600));
    let after = c.dmca(24).await.expect("dmca after");
    assert!(after.iter().all(|d| d.file_code != b), "{after:?}");
    let deleted = c.deleted(24).await.expect("deleted");
    let d = deleted
        .iter()
        .find(|d| d.file_code == b)
        .expect("b deleted");
    assert_eq!(d.deleted_by, DeletedBy::Admin);
}

#[tokio::test]
async fn deleted_by_expired_is_parsed() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let code = upload_titled(&c, dir.path(), "expires", 0).await;
    assert!(host.delete_file(&code, vidsync_testhost::DeletedBy::Expired));
    let d = c.deleted(1).await.expect("deleted");
    assert_eq!(d[0].deleted_by, DeletedBy::Expired);
    let info = c.file_info(&[code]).await.expect("info");
    assert_eq!(info[0].status, 404, "a deleted file is gone for file/info");
}

#[tokio::test]
async fn encodings_show_progress_then_the_file_can_play() {
    let host = host_with(HostOptions {
        encode_time: Duration::from_secs(600),
        ..HostOptions::default()
    })
    .await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let code = upload_titled(&c, dir.path(), "encode me", 0).await;

    let q = c.encodings(Some(&code)).await.expect("encodings");
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].file_code, code);
    assert_eq!(q[0].status, "PENDING");
    assert_eq!(q[0].title, "encode me");

    host.advance(Duration::from_secs(300));
    let q = c.encodings(None).await.expect("encodings all");
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].status, "ENCODING");
    assert!((45..=60).contains(&q[0].progress), "{}", q[0].progress);
    let info = c
        .file_info(std::slice::from_ref(&code))
        .await
        .expect("info");
    assert!(!info[0].canplay);

    host.advance(Duration::from_secs(301));
    assert!(c.encodings(Some(&code)).await.expect("enc").is_empty());
    let info = c
        .file_info(std::slice::from_ref(&code))
        .await
        .expect("info");
    assert!(info[0].canplay);
    assert!(info[0].file_length >= 1);
}

#[tokio::test]
async fn alt_list_paths_are_reached_through_the_fallback_and_remembered() {
    let host = host_with(HostOptions {
        alt_list_paths: true,
        encode_time: Duration::from_millis(200),
        ..HostOptions::default()
    })
    .await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let code = upload_titled(&c, dir.path(), "alt", 0).await;
    assert!(host.delete_file(&code, vidsync_testhost::DeletedBy::Me));

    let d = c.deleted(24).await.expect("deleted via fallback");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].file_code, code);
    let log: Vec<_> = host
        .request_log()
        .into_iter()
        .filter(|r| r.endpoint.ends_with("/deleted"))
        .map(|r| (r.endpoint, r.status))
        .collect();
    assert_eq!(
        log,
        vec![
            ("file/deleted".to_string(), 400),
            ("files/deleted".to_string(), 200)
        ]
    );
    c.deleted(24).await.expect("deleted again");
    assert_eq!(
        count(&host, "file/deleted"),
        1,
        "second call goes straight to the alt path"
    );
    assert_eq!(count(&host, "files/deleted"), 2);

    let code2 = upload_titled(&c, dir.path(), "alt dmca", 0).await;
    assert!(host.schedule_dmca(&code2, Duration::from_secs(3600)));
    let m = c.dmca(24).await.expect("dmca via fallback");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].file_code, code2);
    c.dmca(24).await.expect("dmca again");
    assert_eq!(count(&host, "file/dmca"), 1);
    assert_eq!(count(&host, "files/dmca"), 2);
}

#[tokio::test]
async fn list_paths_follow_a_host_that_switches_back() {
    let host = common::host().await;
    let c = client(&host);
    host.set_alt_list_paths(true);
    c.deleted(24).await.expect("alt");
    assert_eq!(count(&host, "files/deleted"), 1);
    host.set_alt_list_paths(false);
    c.deleted(24).await.expect("back to file/deleted");
    c.deleted(24).await.expect("again");
    let log: Vec<_> = host
        .request_log()
        .into_iter()
        .filter(|r| r.endpoint.ends_with("/deleted"))
        .map(|r| (r.endpoint, r.status))
        .collect();
    let s = |e: &str, st| (e.to_string(), st);
    assert_eq!(
        log,
        vec![
            s("file/deleted", 400),
            s("files/deleted", 200),
            s("files/deleted", 400),
            s("file/deleted", 200),
            s("file/deleted", 200),
        ]
    );
}

#[tokio::test]
async fn configured_alt_path_is_used_directly() {
    let host = common::host().await;
    host.set_alt_list_paths(true);
    let mut cfg = common::api_config(&host);
    cfg.paths.file_deleted = "/api/files/deleted".into();
    cfg.paths.file_dmca = "/api/files/dmca".into();
    let c = Client::new(&cfg).expect("client");
    c.deleted(24).await.expect("deleted");
    c.dmca(24).await.expect("dmca");
    assert_eq!(count(&host, "file/deleted") + count(&host, "file/dmca"), 0);
    assert_eq!(
        count(&host, "files/deleted") + count(&host, "files/dmca"),
        2
    );
    // A 400 that is not about the path (both paths refused) is returned, not looped on.
    host.faults().always(
        Fault::JsonError {
            status: 400,
            msg: "Invalid operation".into(),
        },
        Scope::Api,
    );
    let before = host.request_log().len();
    let err = c.deleted(24).await.expect_err("refused everywhere");
    assert_eq!(err.host_status(), Some(400));
    assert!(
        host.request_log().len() - before <= 2,
        "at most one fallback"
    );
}
