//! Replies and their error classes: proxy errors, HTML, JSON errors by status and meaning,
//! and odd replies from the raw loopback server that the test host never gives.

use std::sync::Arc;
use std::time::Duration;

use vidsync::api::{ApiError, Client, ErrorClass, FileEdit, FileListQuery};
use vidsync_testhost::{Fault, Scope};

use super::{assert_error_hides_key, client, is_file_code, params, upload};
use crate::common;
use crate::raw::{raw, raw_server};

#[tokio::test]
async fn status_as_a_string_parses() {
    let host = common::host().await;
    host.faults().always(Fault::StatusAsString, Scope::All);
    let c = client(&host);
    let info = c
        .account_info()
        .await
        .expect("account info with status \"200\"");
    assert_eq!(info.login, host.login());
    let dir = tempfile::tempdir().expect("tempdir");
    let code = upload(&c, dir.path(), "s.mp4", b"string status", &params("s")).await;
    assert!(is_file_code(&code));
    let l = c.file_list(&FileListQuery::default()).await.expect("list");
    assert_eq!(l.files.len(), 1);
    // An error status as a string is still an error.
    host.faults().times(
        Fault::JsonError {
            status: 404,
            msg: "Not found".into(),
        },
        Scope::endpoint("file/list"),
        1,
    );
    let err = c
        .file_list(&FileListQuery::default())
        .await
        .expect_err("404 as \"404\"");
    assert_eq!(err.host_status(), Some(404));
}

#[tokio::test]
async fn proxy_http_errors_are_transient_and_429_is_a_rate_limit() {
    let host = common::host().await;
    let c = client(&host);
    for (fault, status, class) in [
        (Fault::Http502, 502, ErrorClass::Transient),
        (Fault::Http503, 503, ErrorClass::Transient),
        (Fault::Http504, 504, ErrorClass::Transient),
        // A rate limit, whoever sends it: the account's, not a file's.
        (Fault::Http429, 429, ErrorClass::AccountWide),
    ] {
        host.faults().times(fault.clone(), Scope::Api, 1);
        let err = c.account_info().await.expect_err("proxy error");
        assert!(
            matches!(err, ApiError::Http { status: s, .. } if s == status),
            "{fault:?}: {err:?}"
        );
        assert_eq!(err.class(), class, "{fault:?}");
        c.account_info().await.expect("next call passes");
    }
    // On the upload listener too; nothing is stored.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::write(dir.path(), "u.mp4", b"upload behind a proxy");
    host.faults().times(Fault::Http502, Scope::Upload, 1);
    let err = c
        .upload_file(&path, &params("u"), None)
        .await
        .expect_err("502 on upload");
    assert_eq!(err.class(), ErrorClass::Transient, "{err:?}");
    assert!(host.files().is_empty());
}

#[tokio::test]
async fn html_instead_of_json_is_transient() {
    let host = common::host().await;
    let c = client(&host);
    host.faults().times(Fault::NotJson, Scope::Api, 1);
    let err = c.account_info().await.expect_err("html page");
    assert!(matches!(err, ApiError::NotJson { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Transient);
    c.account_info().await.expect("then fine");
}

#[tokio::test]
async fn rate_limited_reply_is_account_wide() {
    let host = common::host().await;
    let c = client(&host);
    host.faults().times(Fault::RateLimited, Scope::Api, 1);
    let err = c
        .file_list(&FileListQuery::default())
        .await
        .expect_err("limited");
    assert!(matches!(err, ApiError::RateLimited { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::AccountWide);
}

#[tokio::test]
async fn delay_beyond_the_read_timeout_is_a_transient_timeout() {
    let host = common::host().await;
    let mut cfg = common::api_config(&host);
    cfg.read_timeout = Duration::from_millis(300);
    let c = Client::new(&cfg).expect("client");
    host.faults()
        .times(Fault::Delay(Duration::from_millis(1500)), Scope::Api, 1);
    let started = std::time::Instant::now();
    let err = c.account_info().await.expect_err("too slow");
    assert!(matches!(err, ApiError::Timeout { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "gave up in time"
    );
    c.account_info().await.expect("next call");
}

#[tokio::test]
async fn json_error_statuses_are_classified_by_status_and_meaning() {
    let host = common::host().await;
    let c = client(&host);
    let cases = [
        (403, "Wrong Auth", ErrorClass::KeyRejected),
        (400, "Invalid key", ErrorClass::KeyRejected),
        (
            403,
            "Requests limit reached: 1000 per day",
            ErrorClass::AccountWide,
        ),
        (403, "Permission denied", ErrorClass::Permanent),
        (404, "Not found", ErrorClass::Permanent),
        (409, "Conflict", ErrorClass::Permanent),
        (451, "Unavailable for legal reasons", ErrorClass::Permanent),
    ];
    for (status, msg, class) in cases {
        host.faults().times(
            Fault::JsonError {
                status,
                msg: msg.into(),
            },
            Scope::Api,
            1,
        );
        // A fresh client each time: after a daily limit a client holds
        // every call until the host's next day.
        let c = client(&host);
        let err = c.account_info().await.expect_err(msg);
        assert_eq!(err.class(), class, "{status} {msg}: {err:?}");
        assert!(!err.outcome_unknown(), "{status} {msg}");
    }
    c.account_info().await.expect("then fine");
}

#[tokio::test]
async fn redirect_is_not_followed_and_is_a_protocol_error() {
    let (target, target_log) = raw_server(Arc::new(|_, _| {
        raw("200 OK", r#"{"status":200,"result":{}}"#)
    }))
    .await;
    let (port, log) = raw_server(Arc::new(move |_, line| {
        let path = line.split(' ').nth(1).unwrap_or("/").to_string();
        let mut r = raw("302 Found", "");
        r.headers.push((
            "Location".into(),
            format!("http://127.0.0.1:{target}{path}"),
        ));
        r
    }))
    .await;
    let c = common::raw_client(port, 60_000, Duration::from_secs(2));
    let err = c.account_info().await.expect_err("redirect");
    assert!(matches!(err, ApiError::Protocol { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Protocol);
    assert!(err.to_string().contains("302"), "{err}");
    assert_error_hides_key(&err);
    assert_eq!(log.lock().expect("log").len(), 1);
    assert!(
        target_log.lock().expect("log").is_empty(),
        "the key was not carried to the redirect target"
    );
}

#[tokio::test]
async fn proxy_4xx_is_protocol_and_html_echoing_the_key_is_redacted() {
    let (port, _) = raw_server(Arc::new(|_, line| {
        if line.contains("account/info") {
            let mut r = raw("404 Not Found", "<html>not here</html>");
            r.headers = vec![("Content-Type".into(), "text/html".into())];
            r
        } else {
            // A front end that echoes the request, key and all.
            let mut r = raw(
                "200 OK",
                format!("<html><body>Blocked: {line}</body></html>"),
            );
            r.headers = vec![("Content-Type".into(), "text/html".into())];
            r
        }
    }))
    .await;
    let c = common::raw_client(port, 60_000, Duration::from_secs(2));
    let err = c.account_info().await.expect_err("404 from a proxy");
    assert!(matches!(err, ApiError::Http { status: 404, .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Protocol);

    let err = c
        .file_list(&FileListQuery::default())
        .await
        .expect_err("html");
    assert!(matches!(err, ApiError::NotJson { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(err.to_string().contains("Blocked"), "{err}");
    assert_error_hides_key(&err);
}

#[tokio::test]
async fn trickled_reply_hits_the_total_call_timeout() {
    // Each byte arrives within the read timeout, but the whole reply takes far
    // longer than 3 read timeouts: the call must still give up.
    let body =
        r#"{"status":200,"msg":"OK","result":{"login":"slowpoke","storage_left":"unlimited"}}"#;
    let (port, _) = raw_server(Arc::new(move |_, _| {
        let mut r = raw("200 OK", body);
        r.trickle = Some(Duration::from_millis(100));
        r
    }))
    .await;
    let c = common::raw_client(port, 60_000, Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = c.account_info().await.expect_err("trickle");
    let took = started.elapsed();
    assert!(matches!(err, ApiError::Timeout { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(took < Duration::from_millis(2000), "{took:?}");
    assert_error_hides_key(&err);
}

#[tokio::test]
async fn odd_replies_are_protocol_errors() {
    let (port, _) = raw_server(Arc::new(|port, line| {
        let path = line.split(' ').nth(1).unwrap_or("");
        if path.starts_with("/api/upload/server") {
            raw(
                "200 OK",
                format!(r#"{{"status":200,"msg":"OK","result":"http://127.0.0.1:{port}/upload/01"}}"#),
            )
        } else if path.starts_with("/upload/") {
            // OK without a code.
            raw(
                "200 OK",
                r#"{"msg":"OK","status":200,"files":[{"filecode":"","filename":"a.mp4","status":"OK"}]}"#,
            )
        } else if path.starts_with("/api/account/info") {
            // No status at all.
            raw("200 OK", r#"{"msg":"OK","result":{}}"#)
        } else if path.starts_with("/api/file/edit") {
            raw("200 OK", r#"{"status":200,"msg":"OK","result":"false"}"#)
        } else {
            raw("200 OK", r#"{"status":200,"msg":"OK","result":42}"#)
        }
    }))
    .await;
    let c = common::raw_client(port, 60_000, Duration::from_secs(2));
    let err = c.account_info().await.expect_err("no status");
    assert!(matches!(err, ApiError::Protocol { .. }), "{err:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::write(dir.path(), "a.mp4", b"ok without a code");
    let err = c
        .upload_file(&path, &params("a"), None)
        .await
        .expect_err("OK without code");
    assert!(matches!(err, ApiError::Unclear { .. }), "{err:?}");
    assert!(err.outcome_unknown(), "the host may hold it");

    let err = c
        .file_edit(&["abcabcabcabc".into()], &FileEdit::default())
        .await
        .expect_err("\"false\"");
    assert_eq!(err.class(), ErrorClass::Protocol, "{err:?}");

    let err = c.deleted(24).await.expect_err("a number instead of a list");
    assert_eq!(err.class(), ErrorClass::Protocol, "{err:?}");
    assert_error_hides_key(&err);
}

#[tokio::test]
async fn upload_server_with_a_non_http_scheme_is_refused() {
    let (port, log) = raw_server(Arc::new(|_, _| {
        raw(
            "200 OK",
            r#"{"status":200,"msg":"OK","result":"file:///etc/passwd"}"#,
        )
    }))
    .await;
    let c = common::raw_client(port, 60_000, Duration::from_secs(2));
    let err = c.upload_server().await.expect_err("file:// server");
    assert!(matches!(err, ApiError::Protocol { .. }), "{err:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::write(dir.path(), "a.mp4", b"x");
    let err = c
        .upload_file(&path, &params("a"), None)
        .await
        .expect_err("file:// server");
    assert_eq!(err.class(), ErrorClass::Protocol, "{err:?}");
    assert_eq!(
        log.lock().expect("log").len(),
        2,
        "only the two upload/server calls"
    );
}
