//! Tests of the API client against the test host, one file per call group; the helpers
//! they share are here (the raw loopback server and its client are in `common`/`raw`).

mod account;
mod errors;
mod files;
mod folders;
mod lists;
mod pacing;
mod redaction;
mod upload;
mod upload_stream;

use std::path::Path;

use vidsync::api::{ApiError, Client, UploadParams};
use vidsync_testhost::{HostOptions, TestHost};

use crate::common;
use crate::common::SECRET;

fn client(host: &TestHost) -> Client {
    Client::new(&common::api_config(host)).expect("client")
}

fn params(title: &str) -> UploadParams {
    UploadParams {
        title: title.to_string(),
        ..UploadParams::default()
    }
}

/// Write `bytes` as `dir/name` and upload it with `p`; returns the code.
async fn upload(c: &Client, dir: &Path, name: &str, bytes: &[u8], p: &UploadParams) -> String {
    let path = common::write(dir, name, bytes);
    c.upload_file(&path, p, None)
        .await
        .unwrap_or_else(|e| panic!("upload {name}: {e}"))
}

/// Upload a small distinct file titled `title` into folder `fld_id`.
async fn upload_titled(c: &Client, dir: &Path, title: &str, fld_id: u64) -> String {
    let name = format!(
        "{}.mp4",
        title.replace(|ch: char| !ch.is_ascii_alphanumeric(), "_")
    );
    let p = UploadParams {
        title: title.to_string(),
        fld_id,
        ..UploadParams::default()
    };
    upload(c, dir, &name, &common::content(title, 4096), &p).await
}

fn is_file_code(code: &str) -> bool {
    code.len() == 12
        && code
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())
}

fn count(host: &TestHost, endpoint: &str) -> usize {
    host.request_log()
        .iter()
        .filter(|r| r.endpoint == endpoint)
        .count()
}

async fn host_with(opts: HostOptions) -> TestHost {
    TestHost::start_with(opts).await.expect("start test host")
}

fn assert_no_key(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} leaks the key: {text}");
}

fn assert_error_hides_key(err: &ApiError) {
    assert_no_key("to_string", &err.to_string());
    assert_no_key("Debug", &format!("{err:?}"));
    assert_no_key("alternate Debug", &format!("{err:#?}"));
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        assert_no_key("source", &s.to_string());
        assert_no_key("source Debug", &format!("{s:?}"));
        source = s.source();
    }
}
