//! file/info, file/edit, file/list, file/direct_link and file/clone against the test host,
//! and titles read back as they were sent.

use std::time::Duration;

use vidsync::api::{Created, ErrorClass, FileEdit, FileListQuery, UploadParams};

use super::{client, count, is_file_code, params, upload, upload_titled};
use crate::common;

#[tokio::test]
async fn file_info_reports_present_missing_and_dmca_files() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let fld = c.folder_create("Info", 0, None).await.expect("folder");
    let a = upload_titled(&c, dir.path(), "present", fld).await;
    let b = upload_titled(&c, dir.path(), "dmcad", 0).await;
    assert!(host.schedule_dmca(&b, Duration::from_secs(3600)));
    let missing = "zzzzzzzzzzzz".to_string();

    let infos = c
        .file_info(&[a.clone(), b.clone(), missing.clone()])
        .await
        .expect("file info");
    assert_eq!(infos.len(), 3);
    let by = |code: &str| {
        infos
            .iter()
            .find(|i| i.file_code == code)
            .unwrap_or_else(|| panic!("no entry for {code}"))
    };
    let ia = by(&a);
    assert_eq!(ia.status, 200);
    assert_eq!(ia.file_title, "present");
    assert_eq!(ia.file_fld_id, Some(fld));
    assert_eq!(by(&b).status, 451);
    assert_eq!(by(&missing).status, 404);
}

#[tokio::test]
async fn file_info_splits_more_than_50_codes_into_calls_of_50() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let real = upload_titled(&c, dir.path(), "real", 0).await;
    let mut codes: Vec<String> = (0..119).map(|i| format!("missing{i:05}")).collect();
    codes.insert(60, real.clone());
    let before = count(&host, "file/info");
    let infos = c.file_info(&codes).await.expect("file info of 120 codes");
    assert_eq!(
        count(&host, "file/info") - before,
        3,
        "120 codes = 50+50+20"
    );
    assert_eq!(infos.len(), 120);
    assert!(
        host.request_log()
            .iter()
            .filter(|r| r.endpoint == "file/info")
            .all(|r| r.status == 200),
        "no call was refused for too many codes"
    );
    let found: Vec<_> = infos.iter().filter(|i| i.status == 200).collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].file_code, real);

    // Exactly 50 is one call.
    let before = count(&host, "file/info");
    c.file_info(&codes[..50]).await.expect("50 codes");
    assert_eq!(count(&host, "file/info") - before, 1);
}

#[tokio::test]
async fn file_edit_changes_title_and_moves_folder() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let code = upload_titled(&c, dir.path(), "before", 0).await;
    let fld = c.folder_create("Target", 0, None).await.expect("folder");
    c.file_edit(
        std::slice::from_ref(&code),
        &FileEdit {
            title: Some("after".into()),
            fld_id: Some(fld),
            ..FileEdit::default()
        },
    )
    .await
    .expect("edit");
    let f = host.file(&code).expect("file");
    assert_eq!(f.title, "after");
    assert_eq!(f.fld_id, fld);
    // Skipped fields left alone.
    assert!(!f.public);

    c.file_edit(
        std::slice::from_ref(&code),
        &FileEdit {
            public: Some(true),
            ..FileEdit::default()
        },
    )
    .await
    .expect("edit public");
    let f = host.file(&code).expect("file");
    assert!(f.public);
    assert_eq!(f.title, "after");
    assert_eq!(f.fld_id, fld);
}

#[tokio::test]
async fn file_edit_answers_true_even_when_nothing_matched() {
    let host = common::host().await;
    let c = client(&host);
    let ghost = "nosuchfile00".to_string();
    c.file_edit(
        std::slice::from_ref(&ghost),
        &FileEdit {
            title: Some("x".into()),
            ..FileEdit::default()
        },
    )
    .await
    .expect("the host says true for an unknown code");
    let info = c.file_info(&[ghost]).await.expect("info");
    assert_eq!(info[0].status, 404, "only file/info tells the truth");
}

#[tokio::test]
async fn file_list_filters_by_folder_title_and_created_minutes() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let fld = c.folder_create("Listed", 0, None).await.expect("folder");
    let old = upload_titled(&c, dir.path(), "Alpha old", fld).await;
    host.advance(Duration::from_secs(2 * 3600));
    let a1 = upload_titled(&c, dir.path(), "Alpha one", fld).await;
    let a2 = upload_titled(&c, dir.path(), "alpha two", 0).await;
    let b1 = upload_titled(&c, dir.path(), "Beta one", fld).await;

    let codes = |page: &vidsync::api::FileListPage| {
        page.files
            .iter()
            .map(|f| f.file_code.clone())
            .collect::<Vec<_>>()
    };
    let all = c.file_list(&FileListQuery::default()).await.expect("list");
    assert_eq!(all.results_total, 4);
    // Newest first.
    assert_eq!(
        codes(&all),
        vec![b1.clone(), a2.clone(), a1.clone(), old.clone()]
    );

    let in_fld = c
        .file_list(&FileListQuery {
            fld_id: Some(fld),
            ..FileListQuery::default()
        })
        .await
        .expect("list fld");
    assert_eq!(codes(&in_fld), vec![b1.clone(), a1.clone(), old.clone()]);
    assert!(in_fld.files.iter().all(|f| f.fld_id == fld));

    let titled = c
        .file_list(&FileListQuery {
            title: Some("alpha".into()),
            ..FileListQuery::default()
        })
        .await
        .expect("list title");
    assert_eq!(codes(&titled), vec![a2.clone(), a1.clone(), old.clone()]);

    let recent = c
        .file_list(&FileListQuery {
            created: Some(Created::LastMinutes(60)),
            ..FileListQuery::default()
        })
        .await
        .expect("list created");
    assert_eq!(codes(&recent), vec![b1.clone(), a2.clone(), a1.clone()]);

    // All three together: how a caller finds a lost upload.
    let search = c
        .file_list(&FileListQuery {
            fld_id: Some(fld),
            title: Some("Alpha".into()),
            created: Some(Created::LastMinutes(60)),
            ..FileListQuery::default()
        })
        .await
        .expect("list combined");
    assert_eq!(codes(&search), vec![a1.clone()]);
    assert_eq!(search.files[0].title, "Alpha one");
}

#[tokio::test]
async fn file_list_pages_and_list_all_walks_every_page() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut uploaded = Vec::new();
    for i in 0..5 {
        uploaded.push(upload_titled(&c, dir.path(), &format!("page item {i}"), 0).await);
    }
    let q = |page| FileListQuery {
        per_page: Some(2),
        page: Some(page),
        ..FileListQuery::default()
    };
    let p1 = c.file_list(&q(1)).await.expect("page 1");
    let p3 = c.file_list(&q(3)).await.expect("page 3");
    let p4 = c.file_list(&q(4)).await.expect("page 4");
    assert_eq!(p1.results_total, 5);
    assert_eq!(p1.pages, 3);
    assert_eq!(p1.files.len(), 2);
    assert_eq!(p1.results, 2);
    assert_eq!(p3.files.len(), 1);
    assert_eq!(
        p3.files[0].file_code, uploaded[0],
        "oldest on the last page"
    );
    assert!(p4.files.is_empty());

    let before = count(&host, "file/list");
    let all = c
        .file_list_all(&FileListQuery {
            per_page: Some(2),
            ..FileListQuery::default()
        })
        .await
        .expect("list all");
    assert_eq!(count(&host, "file/list") - before, 3, "three pages of two");
    let mut got: Vec<String> = all.iter().map(|f| f.file_code.clone()).collect();
    let mut want: Vec<String> = uploaded.iter().rev().cloned().collect();
    assert_eq!(got, want, "newest first, each once");
    got.sort();
    want.sort();
    got.dedup();
    assert_eq!(got, want);

    // Default page size: one call.
    let before = count(&host, "file/list");
    let all = c
        .file_list_all(&FileListQuery::default())
        .await
        .expect("list all");
    assert_eq!(all.len(), 5);
    assert_eq!(count(&host, "file/list") - before, 1);
}

#[tokio::test]
async fn file_list_created_since_and_public_adult_filters() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let old = upload_titled(&c, dir.path(), "old", 0).await;
    host.advance(Duration::from_secs(3600));
    let since = vidsync_testhost::format_datetime(host.now() - 60);
    let p = UploadParams {
        title: "pub".into(),
        public: true,
        ..UploadParams::default()
    };
    let public = upload(&c, dir.path(), "pub.mp4", b"public one", &p).await;
    let p = UploadParams {
        title: "adult".into(),
        adult: true,
        ..UploadParams::default()
    };
    let adult = upload(&c, dir.path(), "adult.mp4", b"adult one", &p).await;

    let codes = |q: FileListQuery| {
        let c = c.clone();
        async move {
            c.file_list(&q)
                .await
                .expect("list")
                .files
                .into_iter()
                .map(|f| f.file_code)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        codes(FileListQuery {
            created: Some(Created::Since(since)),
            ..FileListQuery::default()
        })
        .await,
        vec![adult.clone(), public.clone()]
    );
    assert_eq!(
        codes(FileListQuery {
            public: Some(true),
            ..FileListQuery::default()
        })
        .await,
        vec![public.clone()]
    );
    assert_eq!(
        codes(FileListQuery {
            adult: Some(false),
            ..FileListQuery::default()
        })
        .await,
        vec![public, old]
    );
}

#[tokio::test]
async fn direct_link_lists_versions_and_quality_gives_a_url() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = common::content("direct", 20_000);
    let code = upload(&c, dir.path(), "d.mp4", &bytes, &params("d")).await;

    let links = c.direct_link(&code, true).await.expect("direct link");
    assert!(!links.versions.is_empty());
    let v = &links.versions[0];
    assert_eq!(v.size, bytes.len() as u64);
    assert!(v.url.contains(&code), "{}", v.url);
    assert!(links.hls_direct.contains(&code));

    let url = c
        .direct_link_quality(&code, "o")
        .await
        .expect("q=o")
        .expect("an original version");
    assert!(url.starts_with("http"), "{url}");
    assert!(url.contains(&code));
    // The link serves the stored bytes.
    let got = reqwest::get(&url)
        .await
        .expect("download")
        .bytes()
        .await
        .expect("body");
    assert_eq!(got.as_ref(), bytes.as_slice());

    let err = c
        .direct_link("nosuchfile00", false)
        .await
        .expect_err("missing file");
    assert_eq!(err.host_status(), Some(404));
    assert_eq!(err.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn file_clone_gives_a_new_code_with_the_same_content() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = common::content("clone", 5000);
    let code = upload(&c, dir.path(), "c.mp4", &bytes, &params("original")).await;
    let cloned = c
        .file_clone(&code, Some("the copy"), None)
        .await
        .expect("clone");
    assert!(is_file_code(&cloned.filecode), "{:?}", cloned.filecode);
    assert_ne!(cloned.filecode, code);
    assert!(cloned.url.contains(&cloned.filecode));
    let f = host.file(&cloned.filecode).expect("clone held");
    assert_eq!(f.title, "the copy");
    assert_eq!(host.file_bytes(&cloned.filecode).expect("bytes"), bytes);
    let untitled = c.file_clone(&code, None, None).await.expect("clone 2");
    assert_eq!(
        host.file(&untitled.filecode).expect("clone 2 held").title,
        "original"
    );
}

#[tokio::test]
async fn empty_code_list_makes_no_call_and_a_missing_quality_is_none() {
    let host = common::host().await;
    let c = client(&host);
    assert!(c.file_info(&[]).await.expect("no codes").is_empty());
    assert_eq!(count(&host, "file/info"), 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let code = upload_titled(&c, dir.path(), "q", 0).await;
    // The real host answers "" for a quality the file does not have.
    let got = c.direct_link_quality(&code, "x").await.expect("bad q");
    assert_eq!(got, None);
}

#[tokio::test]
async fn titles_with_html_characters_and_unicode_come_back_unescaped() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let title = r#"Tom & "Jerry" (1940) it's <b> – Ünïcödé 日本語 🎬"#;
    let code = upload(
        &c,
        dir.path(),
        "Tom (1940) ünï.mp4",
        b"some video bytes",
        &params(title),
    )
    .await;
    // The host rewrites upload titles (`"`, `<`, `>` become spaces).
    let stored = vidsync_testhost::host_title(title, false);
    assert_eq!(stored, "Tom &  Jerry  (1940) it's  b  – Ünïcödé 日本語 🎬");
    assert_eq!(host.file(&code).expect("file").title, stored);

    let info = c
        .file_info(std::slice::from_ref(&code))
        .await
        .expect("info");
    assert_eq!(info[0].file_title, stored);
    let list = c.file_list(&FileListQuery::default()).await.expect("list");
    assert_eq!(list.files[0].title, stored);
    let enc = c.encodings(Some(&code)).await.expect("encodings");
    if let Some(e) = enc.first() {
        assert_eq!(e.title, stored);
    }
    // The title filter finds it by a substring with specials.
    let found = c
        .file_list(&FileListQuery {
            title: Some("(1940) it's".into()),
            ..FileListQuery::default()
        })
        .await
        .expect("list by title");
    assert_eq!(found.files.len(), 1);

    // Retitle with file/edit, then read the title back with file/info.
    let retitle = async |title: &str| {
        c.file_edit(
            std::slice::from_ref(&code),
            &FileEdit {
                title: Some(title.into()),
                ..FileEdit::default()
            },
        )
        .await
        .expect("edit");
        c.file_info(std::slice::from_ref(&code))
            .await
            .expect("info")
            .remove(0)
            .file_title
    };
    // Titles set by file/edit are stored HTML-escaped and read back whole.
    let title2 = r#"<script>alert('x&y')</script> "quoted" (ü)"#;
    assert_eq!(retitle(title2).await, title2);
    // A value that still holds `<`, `>` or `"` after the host's escaping
    // (a literal `<br>`) is skipped silently, with "true".
    assert_eq!(retitle("line<br>break").await, title2);

    let name = r#"Séries & "Films" (vieux) <2>"#;
    let fld = c.folder_create(name, 0, None).await.expect("folder");
    let root = c.folder_list(0, false).await.expect("list");
    let f = root
        .folders
        .iter()
        .find(|f| f.fld_id == fld)
        .expect("folder");
    assert_eq!(f.name, name);

    assert!(host.delete_file(&code, vidsync_testhost::DeletedBy::Me));
    let del = c.deleted(1).await.expect("deleted");
    assert_eq!(del[0].title, title2);
}
