//! The validated settings the API client runs on: the key (redacted in every
//! `Debug` and `Display`), the endpoint paths and the connection limits.
//! `config` fills them from the TOML file; tests build them directly.

use std::fmt;
use std::time::Duration;

/// The account's API key. Its `Debug` and `Display` never show it: the only way
/// to read it is `expose()`, used where the key is put on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }
    /// The key itself, for the request that carries it. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Paths of each endpoint, relative to the host URL; each can be overridden in
/// `[api.paths]` because hosts of this family differ a little.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPaths {
    pub account_info: String,
    pub account_stats: String,
    pub upload_server: String,
    pub upload_url: String,
    pub file_info: String,
    pub file_edit: String,
    pub file_list: String,
    pub file_direct_link: String,
    pub file_clone: String,
    pub file_deleted: String,
    pub file_dmca: String,
    pub file_encodings: String,
    pub file_url_uploads: String,
    pub file_url_actions: String,
    pub folder_list: String,
    pub folder_create: String,
    pub folder_edit: String,
}

impl Default for ApiPaths {
    fn default() -> Self {
        let p = |s: &str| format!("/api/{s}");
        ApiPaths {
            account_info: p("account/info"),
            account_stats: p("account/stats"),
            upload_server: p("upload/server"),
            upload_url: p("upload/url"),
            file_info: p("file/info"),
            file_edit: p("file/edit"),
            file_list: p("file/list"),
            file_direct_link: p("file/direct_link"),
            file_clone: p("file/clone"),
            file_deleted: p("file/deleted"),
            file_dmca: p("file/dmca"),
            file_encodings: p("file/encodings"),
            file_url_uploads: p("file/url_uploads"),
            file_url_actions: p("file/url_actions"),
            folder_list: p("folder/list"),
            folder_create: p("folder/create"),
            folder_edit: p("folder/edit"),
        }
    }
}

/// Everything the API client needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// Base URL, e.g. `https://watching.vn`. `url::Url` always keeps a `/` path
    /// for a bare host, so join endpoint paths with
    /// `url.as_str().trim_end_matches('/')` + path. No query, fragment or
    /// credentials: validation rejects them so that nothing secret hides here.
    pub url: url::Url,
    pub key: ApiKey,
    pub requests_per_minute: u32,
    pub connect_timeout: Duration,
    /// Longest silence on a connection before the call fails (read timeout).
    pub read_timeout: Duration,
    /// Optional upload bandwidth limit in bytes per second.
    pub bandwidth_limit: Option<u64>,
    pub paths: ApiPaths,
    /// The host runs with the `sanitize_filename` option: stored titles also
    /// have every run of characters other than letters, digits, `.`, `_`
    /// and `-` turned into `_` (see `engine::host_title`).
    pub sanitize_filename: bool,
    /// Accept plain-http upload servers (other than loopback); the key then
    /// travels in clear text. Off: such a server is tried as https first.
    pub allow_http_upload: bool,
    /// Test seam, never read from TOML: host names resolved to these
    /// addresses instead of through DNS (a test host posing as another machine).
    pub resolve: Vec<(String, std::net::SocketAddr)>,
}
