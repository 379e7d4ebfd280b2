//! The key never shows in an error, its sources, or a Debug of the client or its config.

use std::sync::Arc;
use std::time::Duration;

use vidsync::api::{ApiError, Client, ErrorClass};
use vidsync::config::{ApiConfig, ApiKey};
use vidsync_testhost::{Fault, HostOptions, Scope};

use super::{assert_error_hides_key, assert_no_key, host_with, params};
use crate::common;
use crate::common::SECRET;
use crate::raw::{raw, raw_server};

#[tokio::test]
async fn connection_refused_error_does_not_show_the_key() {
    let (_reserved, port) = common::refused_port();
    let cfg = ApiConfig {
        url: url::Url::parse(&format!("http://127.0.0.1:{port}")).expect("url"),
        key: ApiKey::new(SECRET),
        requests_per_minute: 60_000,
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        bandwidth_limit: None,
        sanitize_filename: false,
        allow_http_upload: false,
        resolve: Vec::new(),
        paths: Default::default(),
    };
    let c = Client::new(&cfg).expect("client");
    let err = c.account_info().await.expect_err("nobody listens");
    assert!(matches!(err, ApiError::Network { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_error_hides_key(&err);
    let err = c
        .file_info(&["abcdefabcdef".into()])
        .await
        .expect_err("refused");
    assert_error_hides_key(&err);
    assert_no_key("Client Debug", &format!("{c:?}"));
    assert_no_key("ApiConfig Debug", &format!("{cfg:?}"));
    assert_no_key("ApiConfig alternate Debug", &format!("{cfg:#?}"));
}

#[tokio::test]
async fn timeout_error_does_not_show_the_key() {
    let host = host_with(HostOptions {
        key: Some(SECRET.into()),
        ..HostOptions::default()
    })
    .await;
    let mut cfg = common::api_config(&host);
    assert_eq!(cfg.key.expose(), SECRET);
    cfg.read_timeout = Duration::from_millis(300);
    let c = Client::new(&cfg).expect("client");
    host.faults()
        .times(Fault::Delay(Duration::from_millis(1500)), Scope::Api, 1);
    let err = c.account_info().await.expect_err("timeout");
    assert!(matches!(err, ApiError::Timeout { .. }), "{err:?}");
    assert_error_hides_key(&err);

    // The upload path too: a slow upload server.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::write(dir.path(), "t.mp4", b"timeout upload");
    // Longer than the reply wait after the last byte (5 read timeouts).
    host.faults()
        .times(Fault::Delay(Duration::from_millis(3000)), Scope::Upload, 1);
    let err = c
        .upload_file(&path, &params("t"), None)
        .await
        .expect_err("upload timeout");
    assert_eq!(err.class(), ErrorClass::Transient, "{err:?}");
    assert!(err.outcome_unknown());
    assert_error_hides_key(&err);

    // A host message echoing the key is redacted too.
    host.faults().times(
        Fault::JsonError {
            status: 400,
            msg: format!("Bad request key={SECRET}"),
        },
        Scope::Api,
        1,
    );
    let err = c.account_info().await.expect_err("echo");
    assert_error_hides_key(&err);
    assert_no_key("Client Debug", &format!("{c:?}"));
    assert_no_key("ApiConfig Debug", &format!("{cfg:?}"));
}

#[tokio::test]
async fn upload_server_unreachable_error_does_not_show_the_key() {
    let (_reserved, closed) = common::refused_port();
    let (port, _) = raw_server(Arc::new(move |_, _| {
        raw(
            "200 OK",
            format!(
                r#"{{"status":200,"msg":"OK","result":"http://127.0.0.1:{closed}/upload/01?key={SECRET}"}}"#
            ),
        )
    }))
    .await;
    let c = common::raw_client(port, 60_000, Duration::from_secs(2));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::write(dir.path(), "a.mp4", b"nowhere to go");
    let err = c
        .upload_file(&path, &params("a"), None)
        .await
        .expect_err("upload server down");
    assert!(matches!(err, ApiError::Network { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_error_hides_key(&err);
}
