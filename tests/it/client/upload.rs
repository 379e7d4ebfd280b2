//! Uploads against the test host: upload/server, upload/url and the upload form; what the
//! host stores, files that change while they are sent, and the class of each refusal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use vidsync::api::{
    ApiError, Client, Created, ErrorClass, FileListQuery, ProgressFn, UploadParams,
};
use vidsync::config::ApiKey;
use vidsync_testhost::{Fault, Scope};

use super::{client, is_file_code, params, upload};
use crate::common;

#[tokio::test]
async fn upload_server_is_on_a_different_port_than_the_api() {
    let host = common::host().await;
    let c = client(&host);
    let api = url::Url::parse(&host.url()).expect("api url");
    let up = c.upload_server().await.expect("upload server");
    assert_ne!(up.port(), api.port(), "{up} vs {api}");
    let expected = url::Url::parse(&host.upload_url()).expect("upload url");
    assert_eq!(up.port(), expected.port());
    assert!(up.path().starts_with("/upload/"), "{up}");
}

#[tokio::test]
async fn upload_file_stores_identical_bytes_in_folder_with_title_and_flags() {
    let host = common::host().await;
    let c = client(&host);
    let fld = c.folder_create("Movies", 0, None).await.expect("folder");
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = common::content("movie", 300_000);
    let p = UploadParams {
        title: "My Movie".into(),
        descr: Some("a description".into()),
        fld_id: fld,
        cat_id: Some(7),
        tags: Some("one,two".into()),
        public: true,
        adult: true,
    };
    let code = upload(&c, dir.path(), "movie.mp4", &bytes, &p).await;
    assert!(is_file_code(&code), "{code:?}");

    let f = host.file(&code).expect("host holds the file");
    assert_eq!(f.title, "My Movie");
    assert_eq!(f.descr, "a description");
    assert_eq!(f.fld_id, fld);
    assert_eq!(f.size, bytes.len() as u64);
    assert_eq!(f.owner.as_deref(), Some(host.login().as_str()));
    assert!(f.public);
    assert!(f.adult);
    assert_eq!(f.cat_id, 7);
    assert_eq!(f.tags, "one,two");
    assert_eq!(host.file_bytes(&code).expect("bytes"), bytes);

    // Flags off stay off.
    let p2 = UploadParams {
        title: "Plain".into(),
        ..UploadParams::default()
    };
    let code2 = upload(&c, dir.path(), "plain.mkv", b"plain bytes", &p2).await;
    let f2 = host.file(&code2).expect("second file");
    assert!(!f2.public && !f2.adult);
    assert_eq!(f2.fld_id, 0);
    assert_ne!(code, code2);
}

#[tokio::test]
async fn upload_url_creates_a_file_in_the_folder() {
    let host = common::host().await;
    let c = client(&host);
    let fld = c.folder_create("Remote", 0, None).await.expect("folder");
    let p = UploadParams {
        title: String::new(),
        fld_id: fld,
        cat_id: Some(2),
        tags: Some("web".into()),
        public: true,
        ..UploadParams::default()
    };
    let code = c
        .upload_url("https://example.com/videos/My%20Clip.mp4", &p)
        .await
        .expect("upload url");
    assert!(is_file_code(&code), "{code:?}");
    // The file exists once the host has fetched it.
    host.finish_url_uploads();
    let f = host.file(&code).expect("host holds it");
    // The host's title rules cut the extension.
    assert_eq!(f.title, "My Clip");
    assert_eq!(f.fld_id, fld);
    assert_eq!(f.cat_id, 2);
    assert_eq!(f.tags, "web");
    assert!(f.public);
}

#[tokio::test]
async fn upload_sends_key_and_fields_before_the_file() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = UploadParams {
        title: "order".into(),
        descr: Some("d".into()),
        cat_id: Some(1),
        tags: Some("t".into()),
        ..UploadParams::default()
    };
    let code = upload(&c, dir.path(), "order.mp4", b"order matters", &p).await;
    let log = host.upload_log();
    assert_eq!(log.len(), 1);
    let rec = &log[0];
    assert_eq!(
        rec.parts.first().map(String::as_str),
        Some("key"),
        "{:?}",
        rec.parts
    );
    assert_eq!(
        rec.parts.last().map(String::as_str),
        Some("file"),
        "{:?}",
        rec.parts
    );
    assert_eq!(rec.parts.iter().filter(|p| *p == "file").count(), 1);
    for field in [
        "file_title",
        "fld_id",
        "file_public",
        "file_adult",
        "file_descr",
        "cat_id",
        "tags",
    ] {
        assert!(
            rec.parts.iter().any(|p| p == field),
            "{field} missing: {:?}",
            rec.parts
        );
    }
    assert!(!rec.parts.iter().any(|p| p == "html_redirect"));
    assert_eq!(rec.filenames, vec!["order.mp4".to_string()]);
    assert_eq!(rec.codes, vec![code]);
}

#[tokio::test]
async fn progress_callback_reaches_the_file_size() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let len = 3 * 1024 * 1024 + 123;
    let path = common::write(dir.path(), "p.mp4", &common::content("progress", len));
    let last = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let monotonic = Arc::new(AtomicBool::new(true));
    let cb: ProgressFn = {
        let (last, calls, monotonic) = (last.clone(), calls.clone(), monotonic.clone());
        Arc::new(move |n| {
            if n < last.swap(n, Ordering::SeqCst) {
                monotonic.store(false, Ordering::SeqCst);
            }
            calls.fetch_add(1, Ordering::SeqCst);
        })
    };
    let code = c
        .upload_file(&path, &params("progress"), Some(cb))
        .await
        .expect("upload");
    assert_eq!(last.load(Ordering::SeqCst), len as u64);
    assert!(calls.load(Ordering::SeqCst) > 1, "called per chunk");
    assert!(monotonic.load(Ordering::SeqCst), "never goes backwards");
    assert_eq!(host.file(&code).expect("file").size, len as u64);
}

#[tokio::test]
async fn drop_mid_upload_is_transient_outcome_unknown_and_stores_nothing() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::write(
        dir.path(),
        "cut.mp4",
        &common::content("cut", 2 * 1024 * 1024),
    );
    host.faults().times(Fault::DropMidUpload, Scope::Upload, 1);
    let err = c
        .upload_file(&path, &params("cut"), None)
        .await
        .expect_err("connection cut");
    assert_eq!(err.class(), ErrorClass::Transient, "{err:?}");
    assert!(err.outcome_unknown(), "{err:?}");
    assert!(host.files().is_empty(), "nothing stored");
    assert!(host.upload_log().is_empty());
    // The retry works.
    c.upload_file(&path, &params("cut"), None)
        .await
        .expect("retry");
    assert_eq!(host.files().len(), 1);
}

#[tokio::test]
async fn lost_reply_is_outcome_unknown_and_the_host_stored_the_file() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let fld = c.folder_create("Lost", 0, None).await.expect("folder");
    let bytes = common::content("lost", 100_000);
    let path = common::write(dir.path(), "lost.mp4", &bytes);
    host.faults().times(Fault::LoseReply, Scope::Upload, 1);
    let p = UploadParams {
        title: "lost reply".into(),
        fld_id: fld,
        ..UploadParams::default()
    };
    let err = c
        .upload_file(&path, &p, None)
        .await
        .expect_err("reply lost");
    assert!(err.outcome_unknown(), "{err:?}");
    assert!(err.class().is_retryable(), "{err:?}");
    let files = host.files();
    assert_eq!(files.len(), 1, "the host DID store it");
    assert_eq!(files[0].title, "lost reply");
    assert_eq!(host.file_bytes(&files[0].code).expect("bytes"), bytes);

    // The caller's search finds it.
    let found = c
        .file_list(&FileListQuery {
            fld_id: Some(fld),
            title: Some("lost reply".into()),
            created: Some(Created::LastMinutes(10)),
            ..FileListQuery::default()
        })
        .await
        .expect("search");
    assert_eq!(found.files.len(), 1);
    assert_eq!(found.files[0].file_code, files[0].code);
}

#[tokio::test]
async fn no_upload_servers_is_account_wide() {
    let host = common::host().await;
    let c = client(&host);
    host.faults()
        .times(Fault::NoServers, Scope::endpoint("upload/server"), 2);
    let err = c.upload_server().await.expect_err("no servers");
    assert!(matches!(err, ApiError::NoServers { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::AccountWide);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::write(dir.path(), "n.mp4", b"no servers");
    let err = c
        .upload_file(&path, &params("n"), None)
        .await
        .expect_err("upload without servers");
    assert_eq!(err.class(), ErrorClass::AccountWide, "{err:?}");
    assert!(!err.outcome_unknown());
    assert_eq!(host.uploads_started(), 0);
    c.upload_server().await.expect("servers back");
}

#[tokio::test]
async fn unallowed_extension_is_permanent() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::write(dir.path(), "r.mp4", b"rejected");
    host.faults()
        .times(Fault::unallowed_extension(), Scope::Upload, 1);
    let err = c
        .upload_file(&path, &params("r"), None)
        .await
        .expect_err("rejected");
    assert!(matches!(err, ApiError::FileRejected { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(!err.outcome_unknown());
    assert!(host.files().is_empty());

    // A real non-video extension gets the same answer from the host itself.
    let txt = common::write(dir.path(), "notes.txt", b"not a video");
    let err = c
        .upload_file(&txt, &params("notes"), None)
        .await
        .expect_err("txt");
    assert_eq!(err.class(), ErrorClass::Permanent, "{err:?}");
}

#[tokio::test]
async fn too_many_uploads_last_24h_is_account_wide() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::write(dir.path(), "q.mp4", b"quota");
    host.faults()
        .times(Fault::too_many_last_24h(), Scope::Upload, 1);
    let err = c
        .upload_file(&path, &params("q"), None)
        .await
        .expect_err("daily limit");
    assert!(matches!(err, ApiError::FileRejected { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::AccountWide);
    assert!(host.files().is_empty());
}

#[tokio::test]
async fn awkward_local_file_names_are_sent_safely() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let code = upload(
        &c,
        dir.path(),
        "My \"quoted\" ünï (1) 日本.mp4",
        b"awkward",
        &params("awkward"),
    )
    .await;
    let log = host.upload_log();
    assert_eq!(
        log[0].filenames,
        vec!["My _quoted_ ünï (1) 日本.mp4".to_string()],
        "quotes replaced, UTF-8 kept"
    );
    assert_eq!(log[0].codes, vec![code]);
}

#[tokio::test]
async fn empty_file_is_refused_permanently() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::write(dir.path(), "empty.mp4", b"");
    let err = c
        .upload_file(&path, &params("empty"), None)
        .await
        .expect_err("empty file");
    assert!(matches!(err, ApiError::FileRejected { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn file_too_big_is_permanent_and_full_storage_is_account_wide() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::write(dir.path(), "big.mp4", &common::content("big", 5000));

    host.configure(|o| o.max_file_size = Some(1000));
    let err = c
        .upload_file(&path, &params("big"), None)
        .await
        .expect_err("too big");
    assert!(err.to_string().contains("too big"), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);

    host.configure(|o| {
        o.max_file_size = None;
        o.storage_left = Some(1000);
    });
    let err = c
        .upload_file(&path, &params("big"), None)
        .await
        .expect_err("no space");
    assert!(err.to_string().contains("disk space"), "{err}");
    assert_eq!(err.class(), ErrorClass::AccountWide);
    assert!(host.files().is_empty());
}

#[tokio::test]
async fn missing_local_file_is_an_io_error_and_sends_nothing() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let err = c
        .upload_file(&dir.path().join("gone.mp4"), &params("gone"), None)
        .await
        .expect_err("missing file");
    assert!(matches!(err, ApiError::Io { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(!err.outcome_unknown(), "nothing was sent");
    assert_eq!(host.uploads_started(), 0);
}

#[tokio::test]
async fn concurrent_uploads_through_one_client() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = c.clone();
        let bytes = common::content(&format!("par{i}"), 50_000 + i * 1000);
        let path = common::write(dir.path(), &format!("par{i}.mp4"), &bytes);
        tasks.push(tokio::spawn(async move {
            let code = c
                .upload_file(&path, &params(&format!("par {i}")), None)
                .await
                .expect("parallel upload");
            (code, bytes)
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        let (code, bytes) = t.await.expect("join");
        assert_eq!(host.file_bytes(&code).expect("bytes"), bytes);
        codes.push(code);
    }
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), 8);
    assert_eq!(host.files().len(), 8);
}

#[tokio::test]
async fn upload_with_a_wrong_key_fails_at_upload_server_before_sending() {
    // The upload listener itself would store a wrong-key file with no owner
    // (the XVS quirk); the client never gets there because it asks
    // upload/server, with the key, before every upload.
    let host = common::host().await;
    let mut cfg = common::api_config(&host);
    cfg.key = ApiKey::new("wrongkey");
    let c = Client::new(&cfg).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::write(dir.path(), "w.mp4", b"wrong key");
    let err = c
        .upload_file(&path, &params("w"), None)
        .await
        .expect_err("upload/server refuses the key");
    assert_eq!(err.class(), ErrorClass::KeyRejected, "{err:?}");
    assert_eq!(host.uploads_started(), 0);
    assert!(host.files().is_empty());
}

#[tokio::test]
async fn file_shrinking_during_upload_fails_without_storing() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::write(
        dir.path(),
        "shrink.mp4",
        &common::content("shrink", 4 * 1024 * 1024),
    );
    let p2 = path.clone();
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    let cb: ProgressFn = Arc::new(move |_| {
        if !d2.swap(true, Ordering::SeqCst) {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&p2)
                .expect("open");
            f.set_len(1000).expect("truncate");
        }
    });
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        c.upload_file(&path, &params("shrink"), Some(cb)),
    )
    .await
    .expect("does not hang");
    eprintln!("shrink: {:?}", res.as_ref().map_err(|e| e.to_string()));
    let err = res.expect_err("a short body is not a valid upload");
    assert!(err.class().is_retryable(), "{err:?}");
    assert!(
        host.files().is_empty(),
        "nothing stored: {:?}",
        host.files()
    );
}

#[tokio::test]
async fn file_growing_during_upload_sends_the_size_seen_at_open_or_fails() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let len = 2 * 1024 * 1024;
    let bytes = common::content("grow", len);
    let path = common::write(dir.path(), "grow.mp4", &bytes);
    let p2 = path.clone();
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    let cb: ProgressFn = Arc::new(move |_| {
        if !d2.swap(true, Ordering::SeqCst) {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&p2)
                .expect("open");
            f.write_all(&vec![7u8; 1024 * 1024]).expect("append");
        }
    });
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        c.upload_file(&path, &params("grow"), Some(cb)),
    )
    .await
    .expect("does not hang");
    eprintln!(
        "grow: {:?} files {:?}",
        res.as_ref().map_err(|e| e.to_string()),
        host.files().iter().map(|f| f.size).collect::<Vec<_>>()
    );
    match res {
        Ok(code) => assert_eq!(host.file_bytes(&code).expect("bytes"), bytes),
        Err(e) => {
            assert!(e.class().is_retryable(), "{e:?}");
            assert!(host.files().is_empty());
        }
    }
}

/// One upload server serves the uploads that follow (an API call saved per
/// file); a failure that is not a verdict on the file makes the next upload
/// ask for a server again.
#[tokio::test]
async fn an_upload_server_is_reused_until_an_upload_to_it_fails() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().unwrap();
    let calls = || host.request_count("upload/server");
    for i in 0..3 {
        let p = common::write(
            dir.path(),
            &format!("v{i}.mp4"),
            &common::content("v", 1000 + i),
        );
        c.upload_file(&p, &params(&format!("v{i}")), None)
            .await
            .expect("upload");
    }
    assert_eq!(calls(), 1, "one upload/server for three uploads");
    // A file the host refuses: a verdict, the server stays.
    let bad = common::write(dir.path(), "notes.txt", b"not a video");
    c.upload_file(&bad, &params("notes"), None)
        .await
        .expect_err("refused");
    let p = common::write(dir.path(), "v3.mp4", &common::content("v3", 1000));
    c.upload_file(&p, &params("v3"), None)
        .await
        .expect("upload");
    assert_eq!(calls(), 1, "a refusal of the file keeps the server");
    // The upload server answers 502: the next upload asks again.
    host.faults().times(Fault::Http502, Scope::Upload, 1);
    let p = common::write(dir.path(), "v4.mp4", &common::content("v4", 1000));
    c.upload_file(&p, &params("v4"), None)
        .await
        .expect_err("502");
    c.upload_file(&p, &params("v4"), None)
        .await
        .expect("upload");
    assert_eq!(calls(), 2, "a failed server is asked for again");
}
