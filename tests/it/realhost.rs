//! One test per quirk of the real server software (docs/host-api.md,
//! "Quirks of the real server software"): behaviour of the deployed software
//! that a client must handle, checked against the test host, which models
//! it. Each test is named after the fact and says why it exists.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vidsync::api::{ApiError, Client, ErrorClass, FileListQuery, UploadParams};
use vidsync::config::Config;
use vidsync::daemon;
use vidsync::host::folders::remote_name;
use vidsync::store::{FileRow, State, Store};
use vidsync_testhost::{DeletedBy, Fault, HostOptions, Scope, TestHost};

use crate::common;
use crate::common::bin;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Run the real binary with `--config path args...`.
async fn run_bin(config: &Path, args: &[&str]) -> Output {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        bin()
            .arg("--config")
            .arg(&config)
            .args(&args)
            .output()
            .expect("run vidsync")
    })
    .await
    .expect("join")
}

async fn host_with(opts: HostOptions) -> TestHost {
    TestHost::start_with(HostOptions {
        encode_time: Duration::from_millis(200),
        ..opts
    })
    .await
    .expect("start test host")
}

fn client(host: &TestHost) -> Client {
    Client::new(&common::api_config(host)).expect("client")
}

fn params(title: &str, fld_id: u64) -> UploadParams {
    UploadParams {
        title: title.to_string(),
        fld_id,
        ..UploadParams::default()
    }
}

/// Upload a small distinct file titled `title` into `fld_id`; its code.
async fn upload(c: &Client, dir: &Path, title: &str, fld_id: u64) -> String {
    let path = common::write(dir, &format!("{title}.mp4"), &common::content(title, 4096));
    c.upload_file(&path, &params(title, fld_id), None)
        .await
        .unwrap_or_else(|e| panic!("upload {title}: {e}"))
}

fn rows(cfg: &Config) -> Vec<FileRow> {
    Store::open(&cfg.state.database)
        .unwrap()
        .list(None)
        .unwrap()
}

fn row(cfg: &Config, rel: &str) -> FileRow {
    rows(cfg)
        .into_iter()
        .find(|r| r.rel_path == rel)
        .unwrap_or_else(|| panic!("{rel} tracked"))
}

fn live_files(host: &TestHost) -> Vec<vidsync_testhost::HostFile> {
    host.files()
        .into_iter()
        .filter(|f| f.deleted.is_none())
        .collect()
}

/// A raw API call (for calls the client does not offer, like folder/delete).
async fn raw_call(host: &TestHost, call: &str, query: &str) -> serde_json::Value {
    let url = format!("{}/api/{call}?key={}&{query}", host.url(), host.key());
    reqwest::get(&url)
        .await
        .expect("raw call")
        .json()
        .await
        .expect("raw call JSON")
}

// ---------------------------------------------------------------------------
// 1. file/list pages
// ---------------------------------------------------------------------------

/// Fact: file/list's `pages` is `int(0.990 + total / on_this_page)` from a
/// cached count, so 1,001 files at 1,000 a page say `pages: 1`. A client
/// that stops at `pages` never sees the 1,001st file (and uploads it again
/// after a lost reply). It must read until a page comes back short.
#[tokio::test]
async fn file_list_paging_reads_until_a_short_page() {
    let host = common::host().await;
    let fld = host.create_folder(0, "Big");
    let bytes = b"tiny";
    let mut codes: Vec<String> = (0..1001)
        .map(|i| host.add_file(fld, &format!("clip {i:04}"), bytes, &[]))
        .collect();
    // Something elsewhere, which the folder filter must leave out.
    host.add_file(0, "elsewhere", bytes, &[]);
    let c = client(&host);

    let q = FileListQuery {
        fld_id: Some(fld),
        ..FileListQuery::default()
    };
    let first = c
        .file_list(&FileListQuery {
            per_page: Some(1000),
            page: Some(1),
            ..q.clone()
        })
        .await
        .expect("page 1");
    assert_eq!(first.files.len(), 1000);
    assert_eq!(first.pages, 1, "the host's rounding: 1,001 files is 1 page");

    let before = host.request_count("file/list");
    let all = c.file_list_all(&q).await.expect("list all");
    let mut got: Vec<String> = all.iter().map(|f| f.file_code.clone()).collect();
    assert_eq!(got.len(), 1001, "every file, though the host said 1 page");
    got.sort();
    codes.sort();
    assert_eq!(got, codes, "each file once, none from another folder");
    assert_eq!(
        host.request_count("file/list") - before,
        2,
        "a full page, then the short one"
    );
}

// ---------------------------------------------------------------------------
// 2. Negative storage_left
// ---------------------------------------------------------------------------

/// Fact: account/info's `storage_left` is the quota minus the space used,
/// negative when the account is over quota (not only "unlimited" or a
/// positive number). That is an account state to wait out, not a broken
/// key or a reply to reject: `check` says so and succeeds, the daemon
/// keeps the key, uploads nothing, fails nothing, and `status` says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_storage_left_is_over_quota_not_a_key_problem() {
    let host = host_with(HostOptions {
        storage_left: Some(-5000),
        ..HostOptions::default()
    })
    .await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    // A long retry_max: the quota pause (retry_max long) stays in force for
    // the whole test, so what `status` shows is the quota check's own reason.
    let text = common::config_toml(&host, state.path(), &[(root.path(), "Quota")], "")
        .replace("retry_max = \"400ms\"", "retry_max = \"20s\"");
    let (cfg, path) = common::config_from_text(&text, state.path());

    let out = run_bin(&path, &["check"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("OVER QUOTA"), "{stdout}");
    assert!(!stderr.contains("rejected the API key"), "{stderr}");

    // `scan` would wait for ever for the paused file: run the daemon.
    common::write(root.path(), "q.mp4", &common::content("q", 3000));
    let stop = CancellationToken::new();
    let h = tokio::spawn(daemon::run(cfg.clone(), stop.clone()));
    let queued = common::wait_for(Duration::from_secs(10), || {
        rows(&cfg)
            .iter()
            .any(|r| r.rel_path == "q.mp4" && r.state == State::Queued)
    })
    .await;
    assert!(queued, "{:?}", rows(&cfg));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let out = run_bin(&path, &["status", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), h)
        .await
        .expect("daemon stops")
        .expect("daemon task")
        .expect("clean stop");

    assert_eq!(st["key_ok"], true, "{st}");
    assert_eq!(st["storage_left"], "-5000", "{st}");
    assert!(!st["paused"].is_null(), "uploads are paused: {st}");
    let reason = st["paused"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("quota"), "the reason names the quota: {st}");
    let r = row(&cfg, "q.mp4");
    assert_ne!(r.state, State::Uploaded);
    assert_ne!(r.state, State::Failed);
    assert_eq!(r.attempts, 0, "an account state is not the file's fault");
    assert!(host.files().is_empty());
    assert_eq!(host.uploads_started(), 0, "nothing sent while over quota");
}

/// Same fact, over time: `check` and the daemon's own log say "uploads
/// wait until space is freed", and the host refuses every upload while the
/// account is over quota, each after receiving the whole file. So while
/// account/info still shows a negative `storage_left`, no upload should be
/// sent; once space is freed, the file goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quota_uploads_wait_until_space_is_freed() {
    let host = host_with(HostOptions {
        storage_left: Some(-5000),
        ..HostOptions::default()
    })
    .await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Quota")], "");
    common::write(root.path(), "q.mp4", &common::content("q", 3000));
    let stop = CancellationToken::new();
    let h = tokio::spawn(daemon::run(cfg.clone(), stop.clone()));
    // Many times retry_max (400 ms here; 1 h by default).
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let sent_over_quota = host.uploads_started();
    // Space is freed.
    host.configure(|o| o.storage_left = None);
    let done = common::wait_for(Duration::from_secs(20), || host.files().len() == 1).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), h)
        .await
        .expect("daemon stops")
        .expect("daemon task")
        .expect("clean stop");
    assert!(done, "uploaded once space is freed: {:?}", rows(&cfg));
    assert_eq!(
        sent_over_quota, 0,
        "whole files sent to an account known to be over quota"
    );
}

// ---------------------------------------------------------------------------
// 3. Folder 403s
// ---------------------------------------------------------------------------

/// Fact: folder/list (and folder/create, folder/edit) of a folder that is
/// missing or another account's answers 403 "Folder not exist or not
/// yours", the same status as a wrong key. It is a folder problem: the
/// client must not pause everything for the key, and the daemon must find
/// or create the folder again instead of failing the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_foreign_folder_is_a_folder_problem_not_a_key_rejection() {
    let host = common::host().await;
    host.add_account("other", "otherkey00000000");
    let theirs = host.create_folder_for("other", 0, "Theirs");
    let c = client(&host);
    let err = c.folder_list(theirs, false).await.expect_err("not mine");
    assert!(err.is_folder_missing(), "{err:?}");
    assert_ne!(err.class(), ErrorClass::KeyRejected, "{err:?}");
    let err = c.folder_list(999_999, false).await.expect_err("missing");
    assert!(err.is_folder_missing(), "{err:?}");
    assert_ne!(err.class(), ErrorClass::KeyRejected, "{err:?}");

    // The daemon: a remembered remote folder deleted on the host.
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "F")], "");
    common::write(root.path(), "d/a.mp4", &common::content("a", 3000));
    let s = common::scan(&cfg).await;
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    let a = row(&cfg, "d/a.mp4");
    let old_d = a.fld_id.expect("a placed");
    let old_f = host
        .folders()
        .into_iter()
        .find(|f| f.fld_id == old_d)
        .expect("F/d exists")
        .parent;
    // The user deletes F on the site (its file first, as the host requires).
    assert!(host.delete_file(a.file_code.as_deref().unwrap(), DeletedBy::Me));
    for id in [old_d, old_f] {
        let v = raw_call(&host, "folder/delete", &format!("fld_id={id}")).await;
        assert_eq!(v["status"], 200, "folder/delete {id}: {v}");
    }
    assert!(host.folders().iter().all(|f| f.fld_id != old_f));

    common::write(root.path(), "e/b.mp4", &common::content("b", 3000));
    let log_from = host.request_log().len();
    let s = common::scan(&cfg).await;
    assert!(s.failed.is_empty(), "nothing failed: {:?}", s.failed);
    // The daemon did meet the 403 (it looked in the remembered F first).
    assert!(
        host.request_log()[log_from..]
            .iter()
            .any(|r| r.endpoint.starts_with("folder/") && r.status == 403),
        "{:?}",
        &host.request_log()[log_from..]
    );
    // (One-letter names get a "_": hosts refuse names under two characters.)
    let (f_name, e_name) = (remote_name("F"), remote_name("e"));
    let folders = host.folders();
    let new_f = folders
        .iter()
        .find(|f| f.parent == 0 && f.name == f_name)
        .unwrap_or_else(|| panic!("F created again: {folders:?} {:?}", rows(&cfg)));
    assert_ne!(new_f.fld_id, old_f);
    let new_e = folders
        .iter()
        .find(|f| f.parent == new_f.fld_id && f.name == e_name)
        .expect("F/e created");
    let b = row(&cfg, "e/b.mp4");
    assert_eq!(b.state, State::Uploaded, "{b:?}");
    assert_eq!(b.fld_id, Some(new_e.fld_id));
    let hb = host
        .file(b.file_code.as_deref().unwrap())
        .expect("b on host");
    assert_eq!(hb.fld_id, new_e.fld_id, "b lands in the new F/e");
    assert_eq!(b.attempts, 0, "a folder gone is not the file's fault");
    let store = Store::open(&cfg.state.database).unwrap();
    assert_eq!(store.key_ok().unwrap(), Some(true));
}

// ---------------------------------------------------------------------------
// 4. direct_link and clone
// ---------------------------------------------------------------------------

/// Facts: file/direct_link may be disabled for the API (403 "This function
/// not allowed in API"), which is neither a key nor a file problem; it
/// answers `msg:"uploading"` with no result for a file upload/url is still
/// fetching; file/clone takes `fld_id` and may be disabled too.
#[tokio::test]
async fn direct_link_disabled_is_a_clear_error_and_clone_takes_a_folder() {
    // Where direct links work, the original's size is known (so the None
    // below comes from the disabled call, not from a missing version).
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().unwrap();
    let code = upload(&c, dir.path(), "sized", 0).await;
    assert_eq!(c.original_size(&code).await.expect("size"), Some(4096));
    // A file upload/url is still fetching: no links yet, and it says so.
    let queued = c
        .upload_url("https://example.com/v/Fetching.mp4", &params("", 0))
        .await
        .expect("upload/url");
    let err = c.direct_link(&queued, false).await.expect_err("not ready");
    assert!(matches!(err, ApiError::NotReady { .. }), "{err:?}");
    assert_eq!(c.original_size(&queued).await.expect("size"), None);
    host.finish_url_uploads();
    c.direct_link(&queued, false).await.expect("fetched: links");

    let host = host_with(HostOptions {
        direct_link_disabled: true,
        ..HostOptions::default()
    })
    .await;
    let c = client(&host);
    let code = upload(&c, dir.path(), "nolinks", 0).await;
    let err = c.direct_link(&code, true).await.expect_err("disabled");
    assert!(matches!(err, ApiError::Disabled { .. }), "{err:?}");
    assert!(err.to_string().contains("disables"), "{err}");
    assert_ne!(err.class(), ErrorClass::KeyRejected);
    let err = c
        .direct_link_quality(&code, "o")
        .await
        .expect_err("disabled");
    assert!(err.to_string().contains("disables"), "{err}");
    assert_eq!(c.original_size(&code).await.expect("no error"), None);

    let fld = c.folder_create("Copies", 0, None).await.expect("folder");
    let cloned = c.file_clone(&code, None, Some(fld)).await.expect("clone");
    assert_ne!(cloned.filecode, code);
    let f = host.file(&cloned.filecode).expect("clone held");
    assert_eq!(f.fld_id, fld, "the clone is in the folder asked for");
    assert_eq!(f.title, "nolinks");

    host.configure(|o| o.clone_disabled = true);
    let err = c
        .file_clone(&code, None, Some(fld))
        .await
        .expect_err("clone disabled");
    assert!(matches!(err, ApiError::Disabled { .. }), "{err:?}");
    assert!(err.to_string().contains("disables"), "{err}");
}

// ---------------------------------------------------------------------------
// 5. Upload replies without a code
// ---------------------------------------------------------------------------

/// Fact: the upload script stores the file, then may answer something that
/// is not the `{status, files}` object (an array, HTML, broken or cut JSON,
/// a proxy's 502). The file is on the host: the outcome is unknown, never
/// "refused for good", so the caller searches before sending again.
#[tokio::test]
async fn upload_replies_without_a_code_leave_the_outcome_unknown() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().unwrap();
    let faults = [
        ("array", Fault::StoredThenArray),
        ("html", Fault::StoredThenHtml),
        ("badjson", Fault::StoredThenBadJson),
        ("cut", Fault::StoredThenCut),
        ("proxy502", Fault::StoredThen502),
    ];
    for (i, (name, fault)) in faults.into_iter().enumerate() {
        host.faults().times(fault.clone(), Scope::Upload, 1);
        let title = format!("unclear {name}");
        let path = common::write(
            dir.path(),
            &format!("{name}.mp4"),
            &common::content(name, 5000),
        );
        let err = c
            .upload_file(&path, &params(&title, 0), None)
            .await
            .expect_err("no code came back");
        assert!(err.outcome_unknown(), "{fault:?}: {err:?}");
        assert_ne!(err.class(), ErrorClass::Permanent, "{fault:?}: {err:?}");
        let files = host.files();
        assert_eq!(files.len(), i + 1, "{fault:?}: the host stored it");
        assert_eq!(files[i].title, title, "{fault:?}");
    }
}

/// Fact (as above), daemon side: two files whose uploads were both stored
/// behind an array reply are each found by the search and adopted; neither
/// is sent twice, `retry` has nothing to retry, a second scan sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_files_stored_behind_an_array_reply_are_adopted_not_uploaded_twice() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(root.path(), "x/one.mp4", &common::content("one", 4000));
    common::write(root.path(), "x/two.mp4", &common::content("two", 5000));
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Arr")], "");
    host.faults().always(Fault::StoredThenArray, Scope::Upload);
    let s = common::scan(&cfg).await;
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(host.files().len(), 2, "{:?}", host.files());
    assert_eq!(host.uploads_started(), 2, "each sent once");
    let mut codes = Vec::new();
    for rel in ["x/one.mp4", "x/two.mp4"] {
        let r = row(&cfg, rel);
        assert_eq!(r.state, State::Uploaded, "{r:?}");
        let code = r.file_code.clone().expect("code");
        let hf = host.file(&code).expect("on the host");
        assert_eq!(hf.size, r.stat.size, "{rel} has its own copy");
        codes.push(code);
    }
    assert_ne!(codes[0], codes[1]);

    let store = Store::open(&cfg.state.database).unwrap();
    assert_eq!(
        store.retry_failed(&[], vidsync::clock::now_ms()).unwrap(),
        0
    );
    drop(store);
    let s = common::scan(&cfg).await;
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(host.uploads_started(), 2, "a second scan sends nothing");
    assert_eq!(host.files().len(), 2);
}

// ---------------------------------------------------------------------------
// 6. Prefixed per-file errors
// ---------------------------------------------------------------------------

/// Fact: the storage back end's per-file refusals arrive prefixed,
/// `0:0:0:<message>`. They mean what the bare message means: an unallowed
/// extension fails the file at once (shown without the prefix), a full
/// disk is the account's and passes, not counted against the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixed_per_file_errors_are_classified_like_bare_ones() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Pre")], "");
    common::write(root.path(), "bad.mp4", &common::content("bad", 2000));
    // The host sends "0:0:0:unallowed video extension".
    host.faults().times(
        Fault::RejectFilePrefixed("unallowed video extension".into()),
        Scope::Upload,
        1,
    );
    let s = common::scan(&cfg).await;
    assert_eq!(s.failed.len(), 1, "{:?}", s.failed);
    let bad = row(&cfg, "bad.mp4");
    assert_eq!(bad.state, State::Failed);
    assert_eq!(bad.attempts, 1, "permanent: one try, not retried");
    let e = bad.last_error.clone().unwrap_or_default();
    assert!(e.contains("unallowed video extension"), "{e}");
    assert!(!e.contains("0:0:0:"), "shown without the prefix: {e}");

    common::write(root.path(), "full.mp4", &common::content("full", 2000));
    host.faults().times(
        Fault::RejectFilePrefixed("not enough disk space on your account".into()),
        Scope::Upload,
        1,
    );
    let s = common::scan(&cfg).await;
    assert_eq!(s.failed.len(), 1, "still only bad.mp4: {:?}", s.failed);
    let full = row(&cfg, "full.mp4");
    assert_eq!(full.state, State::Uploaded, "{full:?}");
    assert_eq!(full.attempts, 0, "account-wide: not counted");
    assert_eq!(host.uploads_started(), 3, "bad once, full twice");
    assert_eq!(live_files(&host).len(), 1);
}

// ---------------------------------------------------------------------------
// 7. Malformed API replies
// ---------------------------------------------------------------------------

/// Fact: the API may answer a call that ran with a JSON array, a broken
/// body or HTML. Around an upload (upload/server, the folder lookup) that
/// is the host being unwell, not the file: every file is uploaded once in
/// the end, none fails, no attempt is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_replies_to_upload_server_and_folder_list_are_the_hosts_problem() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let rels = ["m1.mp4", "sub/m2.mp4", "sub/deeper/m3.mp4"];
    for rel in rels {
        common::write(root.path(), rel, &common::content(rel, 3000));
    }
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Mal")], "");
    for ep in ["upload/server", "folder/list"] {
        host.faults()
            .times(Fault::StoredThenBadJson, Scope::endpoint(ep), 2);
        host.faults()
            .times(Fault::StoredThenArray, Scope::endpoint(ep), 2);
    }
    let s = common::scan(&cfg).await;
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert!(
        host.faults().rules().is_empty(),
        "every fault fired: {:?}",
        host.faults().rules()
    );
    for rel in rels {
        let r = row(&cfg, rel);
        assert_eq!(r.state, State::Uploaded, "{r:?}");
        assert_eq!(r.attempts, 0, "{rel}: the host's problem, not counted");
    }
    assert_eq!(host.files().len(), rels.len());
    assert_eq!(host.uploads_started(), rels.len() as u64, "each sent once");
}

// ---------------------------------------------------------------------------
// 8. Plain-http upload servers
// ---------------------------------------------------------------------------

/// Fact: upload/server may hand out a plain `http://` URL on another
/// machine, and the key travels in the upload's form body. The client
/// tries https there; if that fails it does not send the key in clear
/// text unless the user allowed it (`allow_http_upload`).
#[tokio::test]
async fn a_plain_http_upload_server_is_tried_as_https_then_waits_unless_allowed() {
    let name = "uploads.vidsync.test";
    let host = host_with(HostOptions {
        upload_host: Some(name.into()),
        ..HostOptions::default()
    })
    .await;
    let upload_addr: SocketAddr = url::Url::parse(&host.upload_url())
        .unwrap()
        .socket_addrs(|| None)
        .unwrap()[0];
    let mut cfg = common::api_config(&host);
    cfg.resolve = vec![(name.into(), upload_addr)];
    let c = Client::new(&cfg).expect("client");
    let server = c.upload_server().await.expect("upload/server");
    assert_eq!(server.scheme(), "http");
    assert_eq!(server.host_str(), Some(name));

    let dir = tempfile::tempdir().unwrap();
    let path = common::write(dir.path(), "h.mp4", &common::content("h", 3000));
    let err = c
        .upload_file(&path, &params("h", 0), None)
        .await
        .expect_err("plain http refused");
    assert!(
        matches!(err, ApiError::InsecureUploadServer { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("plain-http"), "{msg}");
    assert!(msg.contains("allow_http_upload"), "{msg}");
    assert!(msg.contains(name), "names the server: {msg}");
    assert!(!err.outcome_unknown(), "nothing was sent");
    assert_eq!(err.class(), ErrorClass::AccountWide);
    assert_eq!(host.uploads_started(), 0, "the key never went out");
    assert!(host.files().is_empty());

    cfg.allow_http_upload = true;
    let c = Client::new(&cfg).expect("client");
    let code = c
        .upload_file(&path, &params("h", 0), None)
        .await
        .expect("allowed");
    assert_eq!(host.uploads_started(), 1);
    assert_eq!(host.file(&code).expect("stored").title, "h");
}

// ---------------------------------------------------------------------------
// 9. file/info 451
// ---------------------------------------------------------------------------

/// Fact: file/info answers 451 for a file whose DMCA deletion is scheduled
/// (it still exists). Reconcile marks such a file `dmca`, and never as a
/// deleted or missing file to upload again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_info_451_is_dmca() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(
        root.path(),
        "claimed.mp4",
        &common::content("claimed", 3000),
    );
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Dm")], "");
    let s = common::scan(&cfg).await;
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    let code = row(&cfg, "claimed.mp4").file_code.expect("code");
    assert!(host.schedule_dmca(&code, Duration::from_secs(3600)));
    let info = client(&host)
        .file_info(std::slice::from_ref(&code))
        .await
        .expect("info");
    assert_eq!(info[0].status, 451);

    daemon::reconcile_once(cfg.clone(), false)
        .await
        .expect("reconcile");
    let r = row(&cfg, "claimed.mp4");
    assert_eq!(r.state, State::Dmca, "{r:?}");
    assert_eq!(r.file_code.as_deref(), Some(code.as_str()));
    assert_eq!(host.uploads_started(), 1, "not uploaded again");
}

/// A host that refuses file/direct_link in its own words ("Access
/// denied", an unknown path) gives no sizes: the search for a copy goes on
/// without them instead of failing the file, and the call is not repeated.
#[tokio::test]
async fn a_direct_link_refused_in_other_words_means_no_sizes() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let code = upload(&c, dir.path(), "sized", 0).await;
    host.faults().times(
        Fault::JsonError {
            status: 403,
            msg: "Access denied".into(),
        },
        Scope::endpoint("file/direct_link"),
        1,
    );
    assert_eq!(c.original_size(&code).await.expect("no error"), None);
    let asked = host
        .request_log()
        .iter()
        .filter(|r| r.endpoint == "file/direct_link")
        .count();
    assert_eq!(c.original_size(&code).await.expect("no error"), None);
    let asked_again = host
        .request_log()
        .iter()
        .filter(|r| r.endpoint == "file/direct_link")
        .count();
    assert_eq!(asked, asked_again, "not asked again");
}

/// Regression (review): a file whose upload reply was lost and which then
/// changed must not adopt the old version's copy as "already on the host".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_never_adopts_its_old_versions_copy() {
    let host = host_with(HostOptions {
        direct_link_disabled: true,
        ..HostOptions::default()
    })
    .await;
    // A folder vidsync did not create (so the search for copies runs).
    host.create_folder(0, "Pre");
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = common::config(&host, state.path(), &[(root.path(), "Pre")], "");
    common::write(root.path(), "movie.mp4", &common::content("old", 4000));
    // The reply is lost (a slow upload, so the fault below is in place
    // before it ends), and the search after it cannot list the folder.
    host.faults().times(Fault::LoseReply, Scope::Upload, 1);
    host.faults().always(
        Fault::SlowRead {
            bytes_per_sec: 4000,
        },
        Scope::Upload,
    );
    let stop = CancellationToken::new();
    let h = tokio::spawn(daemon::run(cfg.clone(), stop.clone()));
    // The search for a copy before the first upload lists the folder once.
    assert!(common::wait_for(Duration::from_secs(20), || host.uploads_started() == 1).await);
    host.faults()
        .always(Fault::Http502, Scope::endpoint("file/list"));
    assert!(common::wait_for(Duration::from_secs(20), || host.files().len() == 1).await);
    // The file is rewritten meanwhile (a new version).
    let new = common::content("new", 6000);
    common::write(root.path(), "movie.mp4", &new);
    assert!(
        common::wait_for(Duration::from_secs(20), || {
            rows(&cfg)
                .iter()
                .any(|r| r.stat.size == 6000 && r.unknown_since.is_none())
        })
        .await,
        "{:?}",
        rows(&cfg)
    );
    host.faults().clear();
    let done = common::wait_for(Duration::from_secs(20), || {
        rows(&cfg)
            .iter()
            .any(|r| r.file_code.is_some() && r.stat.size == 6000)
    })
    .await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
    assert!(done, "{:?}", rows(&cfg));
    let r = row(&cfg, "movie.mp4");
    let code = r.file_code.expect("code");
    let got = host.file_bytes(&code).expect("bytes");
    assert!(
        got == new,
        "{code} holds {} bytes of another version, not the new {} bytes",
        got.len(),
        new.len()
    );
}
