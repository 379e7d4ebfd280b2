//! API errors, classified by what the caller should do next.
//!
//! Callers never match on message text: they ask `ApiError::class()`. The only
//! place that reads a host's `msg` is `from_status`/`upload_rejection` below,
//! and only where the numeric status alone is ambiguous (a 403 is both "wrong
//! key" and "rate limited" on XVS hosts).

use std::path::PathBuf;

/// The endpoint name errors of the upload request itself carry.
pub const UPLOAD_ENDPOINT: &str = "upload";

/// What happens next after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The host refuses the API key: stop all API work and tell the user.
    KeyRejected,
    /// An account-wide condition that passes with time (rate limit, quota, no
    /// upload servers, daily limit): retry later, not counted against a file.
    AccountWide,
    /// A passing fault of this call (network, timeout, 5xx/429, garbage body):
    /// retry later; counts as an attempt of the file concerned.
    Transient,
    /// The host will never accept this file as it is (extension, size,
    /// length, format) or the request itself is wrong for this object.
    Permanent,
    /// The host answered JSON that does not fit the API: a retry may help (a
    /// proxy page, a half-deployed host) but it counts against the file.
    Protocol,
}

impl ErrorClass {
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::AccountWide | ErrorClass::Transient | ErrorClass::Protocol
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Connection refused/reset, TLS failure, body cut. The wrapped error has
    /// had its URL removed (it would carry the key).
    #[error("{endpoint}: network error: {source}")]
    Network {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{endpoint}: timed out")]
    Timeout { endpoint: String },
    /// A non-200 HTTP status, which XVS hosts only send from a proxy or CDN.
    #[error("{endpoint}: HTTP {status} from the host or its proxy")]
    Http { endpoint: String, status: u16 },
    #[error("{endpoint}: the host answered something that is not JSON: {snippet:?}")]
    NotJson { endpoint: String, snippet: String },
    #[error("{endpoint}: unexpected reply: {detail}")]
    Protocol { endpoint: String, detail: String },
    #[error("{endpoint}: the host rejected the API key ({msg})")]
    KeyRejected { endpoint: String, msg: String },
    #[error("{endpoint}: rate limited by the host ({msg})")]
    RateLimited { endpoint: String, msg: String },
    #[error("{endpoint}: no upload servers available")]
    NoServers { endpoint: String },
    /// Any other JSON error status (400 bad request, 403 permission, 404,
    /// 409, 451).
    #[error("{endpoint}: host error {status}: {msg}")]
    Host {
        endpoint: String,
        status: u16,
        msg: String,
    },
    /// The upload reply refused this one file; `class` says whether it can
    /// pass with time (quota) or never will (extension, size).
    #[error("the host refused {filename:?}: {msg}")]
    FileRejected {
        filename: String,
        msg: String,
        class: ErrorClass,
    },
    /// A 403 about a folder ("Folder not exist or not yours"): the folder
    /// is missing or belongs to someone else. Not a key problem: the caller
    /// forgets the folder id and finds or creates the folder again.
    #[error("{endpoint}: the remote folder is missing or not this account's ({msg})")]
    FolderMissing { endpoint: String, msg: String },
    /// The host disables this call for the API (403 "This function not
    /// allowed in API").
    #[error("{endpoint}: this host disables {endpoint} for the API ({msg})")]
    Disabled { endpoint: String, msg: String },
    /// The file is still being fetched (upload/url) and has no links yet.
    #[error("{endpoint}: the file is still being uploaded to the host")]
    NotReady { endpoint: String },
    /// The upload body was sent and the reply carried no file code and no
    /// per-file verdict (an array, HTML, invalid JSON, a cut body, an error
    /// status): the host may have stored the file.
    #[error(
        "{endpoint}: the host's reply to the upload is unclear ({detail}); the file may be stored"
    )]
    Unclear { endpoint: String, detail: String },
    /// upload/server named a plain-http server on another machine, https did
    /// not work there, and plain http is not allowed (the key would travel
    /// in clear text).
    #[error(
        "upload: the host hands out plain-http upload servers ({server}); https to it failed ({detail}); not sending the API key in clear text (set [api] allow_http_upload = true to allow it)"
    )]
    InsecureUploadServer { server: String, detail: String },
    #[error("{what} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl ApiError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiError::Network { .. } | ApiError::Timeout { .. } | ApiError::NotJson { .. } => {
                ErrorClass::Transient
            }
            // A 429 from a proxy is a rate limit: the account's, not a file's.
            ApiError::Http { status: 429, .. } => ErrorClass::AccountWide,
            ApiError::Http { status, .. } => {
                if *status >= 500 {
                    ErrorClass::Transient
                } else {
                    // 4xx from a proxy (404 on a wrong base URL, 401 from an auth
                    // wall): retrying the same thing will not help.
                    ErrorClass::Protocol
                }
            }
            ApiError::Protocol { .. } => ErrorClass::Protocol,
            ApiError::KeyRejected { .. } => ErrorClass::KeyRejected,
            ApiError::RateLimited { .. } | ApiError::NoServers { .. } => ErrorClass::AccountWide,
            ApiError::Host { .. } => ErrorClass::Permanent,
            // The caller re-resolves the folder; as a plain error it is
            // the request that is wrong for this object.
            ApiError::FolderMissing { .. } | ApiError::Disabled { .. } => ErrorClass::Permanent,
            ApiError::NotReady { .. } | ApiError::Unclear { .. } => ErrorClass::Transient,
            // The user must decide: wait for the account, like a quota.
            ApiError::InsecureUploadServer { .. } => ErrorClass::AccountWide,
            ApiError::FileRejected { class, .. } => *class,
            // A local file that cannot be read may be being replaced or on an
            // unmounted disk: try again later, counted against the file.
            ApiError::Io { .. } => ErrorClass::Transient,
        }
    }

    /// Did this error come from the upload request itself (the multipart
    /// POST, or the host's verdict on the file), rather than an API call?
    pub fn is_upload_request(&self) -> bool {
        match self {
            ApiError::FileRejected { .. } | ApiError::Io { .. } => true,
            ApiError::Network { endpoint, .. }
            | ApiError::Timeout { endpoint }
            | ApiError::Http { endpoint, .. }
            | ApiError::NotJson { endpoint, .. }
            | ApiError::Protocol { endpoint, .. }
            | ApiError::KeyRejected { endpoint, .. }
            | ApiError::RateLimited { endpoint, .. }
            | ApiError::NoServers { endpoint }
            | ApiError::Host { endpoint, .. }
            | ApiError::FolderMissing { endpoint, .. }
            | ApiError::Disabled { endpoint, .. }
            | ApiError::NotReady { endpoint }
            | ApiError::Unclear { endpoint, .. } => endpoint == UPLOAD_ENDPOINT,
            // Decided before anything of the file was sent.
            ApiError::InsecureUploadServer { .. } => false,
        }
    }

    /// The host refused a file because the account is out of space.
    pub fn is_over_quota(&self) -> bool {
        matches!(self, ApiError::FileRejected { msg, .. } if msg.to_ascii_lowercase().contains("disk space"))
    }

    /// A folder call refused because the folder is gone or not ours.
    pub fn is_folder_missing(&self) -> bool {
        matches!(self, ApiError::FolderMissing { .. })
    }

    /// A rate limit counted per day ("Requests limit reached: 1000 per
    /// day"): waiting a minute will not help.
    pub fn is_daily_limit(&self) -> bool {
        matches!(self, ApiError::RateLimited { msg, .. } if msg.to_ascii_lowercase().contains("day"))
    }

    /// The numeric XVS status of a JSON error reply, if this is one.
    pub fn host_status(&self) -> Option<u16> {
        match self {
            ApiError::Host { status, .. } => Some(*status),
            ApiError::KeyRejected { .. }
            | ApiError::RateLimited { .. }
            | ApiError::FolderMissing { .. }
            | ApiError::Disabled { .. } => Some(403),
            _ => None,
        }
    }

    /// Build the error for a JSON reply whose `status` is not 200.
    ///
    /// XVS hosts answer 403 both for a wrong key and for rate limiting, so the
    /// message is read here, and only here, to tell the two apart. Everything
    /// downstream uses the resulting variant.
    pub(crate) fn from_status(endpoint: &str, status: u16, msg: &str) -> ApiError {
        let lower = msg.to_ascii_lowercase();
        let endpoint = endpoint.to_string();
        let msg = msg.to_string();
        if lower.contains("limit") && (status == 403 || status == 429) {
            return ApiError::RateLimited { endpoint, msg };
        }
        let key_words = lower.contains("auth")
            || lower.contains("invalid key")
            || lower.contains("api not enabled")
            || lower.contains("api key");
        if (status == 403 || status == 400) && key_words {
            return ApiError::KeyRejected { endpoint, msg };
        }
        // 403 is also how the software says "Folder not exist or not
        // yours" and "This function not allowed in API".
        if status == 403 && lower.contains("folder") {
            return ApiError::FolderMissing { endpoint, msg };
        }
        if status == 403 && lower.contains("not allowed") && lower.contains("api") {
            return ApiError::Disabled { endpoint, msg };
        }
        ApiError::Host {
            endpoint,
            status,
            msg,
        }
    }

    /// Classify a per-file upload rejection message.
    pub(crate) fn upload_rejection(filename: &str, msg: &str) -> ApiError {
        let msg = strip_backend_prefix(msg);
        ApiError::FileRejected {
            filename: filename.to_string(),
            msg: msg.to_string(),
            class: classify_rejection(msg),
        }
    }
}

/// Per-file errors from the storage back end arrive prefixed with numbers
/// (`0:0:0:not enough disk space on your account`): drop them so the
/// message is classified and shown like the bare one.
pub fn strip_backend_prefix(msg: &str) -> &str {
    let mut rest = msg.trim();
    while let Some((head, tail)) = rest.split_once(':') {
        if !head.is_empty() && head.trim().chars().all(|c| c.is_ascii_digit()) {
            rest = tail.trim_start();
        } else {
            break;
        }
    }
    rest
}

/// The messages hosts of this family send per file, sorted by what they mean.
/// An unknown message is treated as transient: it counts against the file, so
/// a message we have never seen ends as `failed` after `max_attempts`, never
/// as an endless loop.
pub fn classify_rejection(msg: &str) -> ErrorClass {
    let m = msg.to_ascii_lowercase();
    const PERMANENT: &[&str] = &[
        "unallowed",
        "extension",
        "too big",
        "too long",
        "too short",
        "not video",
        "format",
        "null filesize",
        "wrong file path",
    ];
    const ACCOUNT: &[&str] = &[
        "disk space",
        "too many files",
        "last 24h",
        "not allowed to upload",
        "limit",
        "no servers",
    ];
    if ACCOUNT.iter().any(|p| m.contains(p)) {
        ErrorClass::AccountWide
    } else if PERMANENT.iter().any(|p| m.contains(p)) {
        ErrorClass::Permanent
    } else {
        ErrorClass::Transient
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_messages_are_classified() {
        let cases = [
            ("unallowed video extension", ErrorClass::Permanent),
            ("file is too big", ErrorClass::Permanent),
            ("video is too long", ErrorClass::Permanent),
            ("video is too short", ErrorClass::Permanent),
            ("Not video file format", ErrorClass::Permanent),
            ("null filesize or wrong file path", ErrorClass::Permanent),
            (
                "not enough disk space on your account",
                ErrorClass::AccountWide,
            ),
            ("too many files on your account", ErrorClass::AccountWide),
            ("too many files uploaded last 24h", ErrorClass::AccountWide),
            (
                "You are not allowed to upload files",
                ErrorClass::AccountWide,
            ),
            ("something new and strange", ErrorClass::Transient),
        ];
        for (msg, class) in cases {
            assert_eq!(classify_rejection(msg), class, "{msg}");
            // The storage back end's prefix changes nothing.
            let prefixed = format!("0:0:0:{msg}");
            let e = ApiError::upload_rejection("f.mp4", &prefixed);
            assert_eq!(e.class(), class, "{prefixed}");
            assert!(e.to_string().ends_with(&format!(": {msg}")), "{e}");
        }
    }

    #[test]
    fn a_403_about_a_folder_or_a_disabled_call_is_not_the_key() {
        let e = ApiError::from_status("folder/list", 403, "Folder not exist or not yours");
        assert!(e.is_folder_missing());
        assert_ne!(e.class(), ErrorClass::KeyRejected);
        let e = ApiError::from_status("file/direct_link", 403, "This function not allowed in API");
        assert!(matches!(e, ApiError::Disabled { .. }), "{e:?}");
        assert!(e.to_string().contains("disables"), "{e}");
        assert!(
            ApiError::from_status("x", 403, "Requests limit reached: 1000 per day")
                .is_daily_limit()
        );
        assert!(
            !ApiError::from_status("x", 403, "Requests limit reached: 5 per min").is_daily_limit()
        );
    }

    #[test]
    fn status_errors_are_classified() {
        let cases = [
            (403, "Wrong auth", ErrorClass::KeyRejected),
            (403, "Wrong Auth", ErrorClass::KeyRejected),
            (400, "Invalid key", ErrorClass::KeyRejected),
            (
                403,
                "API not enabled for your account",
                ErrorClass::KeyRejected,
            ),
            (
                403,
                "Requests limit reached: 5 per min",
                ErrorClass::AccountWide,
            ),
            (
                403,
                "Requests limit reached: 1000 per day",
                ErrorClass::AccountWide,
            ),
            (403, "Permission denied", ErrorClass::Permanent),
            (404, "Not found", ErrorClass::Permanent),
            (451, "DMCA", ErrorClass::Permanent),
        ];
        for (status, msg, class) in cases {
            assert_eq!(
                ApiError::from_status("x", status, msg).class(),
                class,
                "{status} {msg}"
            );
        }
        assert_eq!(
            ApiError::Http {
                endpoint: "x".into(),
                status: 502
            }
            .class(),
            ErrorClass::Transient
        );
        assert_eq!(
            ApiError::Http {
                endpoint: "x".into(),
                status: 429
            }
            .class(),
            ErrorClass::AccountWide
        );
    }
}
