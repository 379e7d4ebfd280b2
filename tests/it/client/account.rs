//! account/info and account/stats against the test host, and what a key may contain.

use vidsync::api::{ApiError, Client, ErrorClass, StorageLeft};
use vidsync::config::ApiKey;
use vidsync_testhost::{Fault, Scope};

use super::{client, params, upload};
use crate::common;

#[tokio::test]
async fn account_info_parses_string_numbers_and_unlimited_storage() {
    let host = common::host().await;
    let c = client(&host);
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = common::content("acct", 10_000);
    upload(&c, dir.path(), "a.mp4", &bytes, &params("a")).await;

    let info = c.account_info().await.expect("account info");
    assert_eq!(info.login, host.login());
    assert_eq!(info.email, format!("{}@example.com", host.login()));
    // The host sends these as strings ("1", "10000").
    assert_eq!(info.files_total, 1);
    // In KB, as the real software counts it (int(size / 1024) per file).
    assert_eq!(info.storage_used, 10_000 / 1024);
    assert!(!info.premium);
    assert_eq!(info.storage_left, StorageLeft::Unlimited);
}

#[tokio::test]
async fn account_info_parses_numeric_storage_left() {
    let host = common::host().await;
    host.configure(|o| o.storage_left = Some(1_288_483_337));
    let c = client(&host);
    let info = c.account_info().await.expect("account info");
    assert_eq!(info.storage_left, StorageLeft::Bytes(1_288_483_337));
    assert_eq!(info.files_total, 0);

    let dir = tempfile::tempdir().expect("tempdir");
    upload(
        &c,
        dir.path(),
        "a.mp4",
        &common::content("x", 10_000),
        &params("a"),
    )
    .await;
    let info = c.account_info().await.expect("account info");
    // The real software subtracts the KB used from the byte quota.
    assert_eq!(info.storage_left, StorageLeft::Bytes(1_288_483_337 - 9));
    assert_eq!(info.storage_used, 9);
}

#[tokio::test]
async fn account_stats_without_data_is_empty_and_with_data_has_rows() {
    let host = common::host().await;
    let c = client(&host);
    // "Not enough reports data" with result {}.
    let stats = c.account_stats(7).await.expect("stats");
    assert!(stats.is_empty(), "{stats:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    upload(&c, dir.path(), "a.mp4", b"abc", &params("a")).await;
    let stats = c.account_stats(3).await.expect("stats");
    assert_eq!(stats.len(), 3);
    assert!(stats.iter().all(|d| d.day.len() == 10 && d.views == 0));
}

#[tokio::test]
async fn wrong_key_is_rejected_on_account_info() {
    let host = common::host().await;
    let mut cfg = common::api_config(&host);
    cfg.key = ApiKey::new("wrongkey");
    let c = Client::new(&cfg).expect("client");
    let err = c.account_info().await.expect_err("wrong key");
    assert!(matches!(err, ApiError::KeyRejected { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::KeyRejected);
    assert!(!err.class().is_retryable());
}

#[tokio::test]
async fn api_not_enabled_is_key_rejected() {
    let host = common::host().await;
    let c = client(&host);
    host.faults().times(
        Fault::JsonError {
            status: 403,
            msg: "API not enabled for your account".into(),
        },
        Scope::Api,
        1,
    );
    let err = c.account_info().await.expect_err("api disabled");
    assert_eq!(err.class(), ErrorClass::KeyRejected, "{err:?}");
}

#[tokio::test]
async fn key_with_url_special_characters_is_encoded() {
    let host = common::host().await;
    let key = "pl+us&x=1 y;z%20";
    host.add_account("other", key);
    let mut cfg = common::api_config(&host);
    cfg.key = ApiKey::new(key);
    let c = Client::new(&cfg).expect("client");
    assert_eq!(c.account_info().await.expect("info").login, "other");
    let dir = tempfile::tempdir().expect("tempdir");
    let code = upload(&c, dir.path(), "k.mp4", b"key chars", &params("k")).await;
    assert_eq!(
        host.file(&code).expect("file").owner.as_deref(),
        Some("other")
    );
}
