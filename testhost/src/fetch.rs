//! The upload/url worker: a loopback http URL is really fetched, in a background task, into the job's blob.
//!
//! This follows the real worker (`url_upload.pl`) and what it hands the file to
//! (`XUpload::ProcessFile`, then `fs.pm`): it GETs the URL with a browser's
//! User-Agent, follows redirects, writes the body to disk whatever the status, then
//! judges: a non-2xx reply is "File download failed:<status line>", an HTML page is
//! refused, the file name (Content-Disposition, else the last segment of the final
//! URL, query cut) must have a video extension, and the storage back end's size and
//! quota checks apply. A failure becomes the job's error text, stored with the
//! `0:0:0:` prefix cut and shown as status ERROR.
//!
//! No traffic may leave the machine: only `http` URLs whose host is a loopback
//! address or `localhost` are fetched (`localhost` is pinned to 127.0.0.1 rather
//! than resolved), a redirect is followed only to such a URL, and proxies from the
//! environment are ignored. Any other URL is never connected to: its job ends as an
//! empty file once its time has come, as this host always did.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::task::AbortHandle;
use url::{Host, Url};

use super::HostOptions;
use super::lock;
use super::state::{Fetch, Shared};
use super::upload::{is_video_name, stored_title};

/// The real worker's User-Agent (it poses as a browser).
const USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/86.0.4240.75 Safari/537.36";

/// LWP's default `max_redirect`.
const MAX_REDIRECTS: usize = 7;

/// The worker's LWP timeout (connect, and silence while reading).
const TIMEOUT: Duration = Duration::from_secs(120);

/// The error a remote 500 leaves (LWP's status line), used by `url_fetch_fails`.
pub(crate) const REMOTE_500: &str = "File download failed:500 Internal Server Error";

/// Whether `url` is one this host may connect to: http on a loopback address.
pub(crate) fn is_loopback_http(url: &Url) -> bool {
    url.scheme() == "http"
        && match url.host() {
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            Some(Host::Ipv6(ip)) => ip.is_loopback(),
            Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        }
}

/// Whether an upload/url job for `url` (as stored) is really fetched.
pub(crate) fn fetched_for_real(url: &str) -> bool {
    Url::parse(url).is_ok_and(|u| is_loopback_http(&u))
}

/// Counts a running fetch task for `TestHost::wait_url_fetches`; dropped when the task
/// ends or is aborted, so the count cannot leak.
struct Running(Arc<Shared>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetching.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Starts fetching `url` for try `attempt` of job `code`, into `blob`; the task reports
/// to the job when it ends. Call only for a URL `fetched_for_real` accepts.
pub(crate) fn start(
    host: &Arc<Shared>,
    code: &str,
    attempt: u64,
    url: &str,
    blob: PathBuf,
) -> AbortHandle {
    // Counted now, not when the task first runs: a wait right after upload/url sees it.
    host.fetching.send_modify(|n| *n += 1);
    let running = Running(host.clone());
    let host = host.clone();
    let (code, url) = (code.to_owned(), url.to_owned());
    tokio::spawn(async move {
        let _running = running;
        let outcome = fetch(&host, &code, attempt, &url, &blob).await;
        finish(&host, &code, attempt, &blob, outcome);
    })
    .abort_handle()
}

/// What a fetch brought: body bytes, and the file name the worker takes.
#[derive(Debug)]
struct Got {
    size: u64,
    name: String,
}

async fn fetch(
    host: &Shared,
    code: &str,
    attempt: u64,
    raw: &str,
    blob: &Path,
) -> Result<Got, String> {
    let url = Url::parse(raw).map_err(|e| format!("File download failed:500 URL invalid ({e})"))?;
    if !is_loopback_http(&url) {
        // `start` is only called for loopback URLs; never connect anywhere else.
        return Err("File download failed:500 not a loopback URL".to_owned());
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], 0)))
        .redirect(reqwest::redirect::Policy::custom(|a| {
            // Stopping hands back the 3xx reply itself: "File download failed:302 Found".
            if a.previous().len() > MAX_REDIRECTS || !is_loopback_http(a.url()) {
                a.stop()
            } else {
                a.follow()
            }
        }))
        .user_agent(USER_AGENT)
        .connect_timeout(TIMEOUT)
        .read_timeout(TIMEOUT)
        .build()
        .map_err(|e| format!("File download failed:500 {e}"))?;
    let mut resp = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| send_error(&e, &url))?;
    let status = resp.status();
    let total = resp.content_length();
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let disposition =
        header(reqwest::header::CONTENT_DISPOSITION).and_then(|v| disposition_name(&v));
    let html = header(reqwest::header::CONTENT_TYPE).is_some_and(|v| v.starts_with("text/html"));
    let final_url = resp.url().to_string();
    progress(host, code, attempt, 0, total);

    // Like the real worker, the body is written whatever the status.
    let storage = |e: std::io::Error| format!("File download failed:500 storage error ({e})");
    let mut out = tokio::fs::File::create(blob).await.map_err(storage)?;
    let mut size = 0u64;
    let cut = |size: u64| match total {
        Some(t) => format!("File download failed:500 body cut short after {size} of {t} bytes"),
        None => format!("File download failed:500 body cut short after {size} bytes"),
    };
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %root_cause(&e), "test host: upload/url body cut");
                return Err(cut(size));
            }
        };
        size += chunk.len() as u64;
        host.bytes_fetched
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        out.write_all(&chunk).await.map_err(storage)?;
        progress(host, code, attempt, size, total);
    }
    out.flush().await.map_err(storage)?;
    // A close-delimited body shorter than promised (hyper catches most cuts above).
    if total.is_some_and(|t| size < t) {
        return Err(cut(size));
    }
    if !status.is_success() {
        return Err(format!(
            "File download failed:{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ));
    }
    if html && !raw.to_ascii_lowercase().ends_with(".html") {
        // The real text appends the reply's content, which the worker never kept
        // (it streamed the body to disk), so nothing follows.
        return Err("Received HTML page instead of file".to_owned());
    }
    // The worker takes the final URL as the name only once a chunk arrived.
    let name = disposition.unwrap_or_else(|| if size > 0 { final_url } else { String::new() });
    Ok(Got {
        size,
        name: worker_file_name(&name),
    })
}

/// Records a fetch's progress on its job (if that try is still the job's).
fn progress(host: &Shared, code: &str, attempt: u64, bytes: u64, total: Option<u64>) {
    let mut st = lock(&host.state);
    if let Some(j) = st
        .url_queue
        .iter_mut()
        .find(|j| j.code == code && j.attempt == attempt)
    {
        j.fetch = Fetch::Running { bytes, total };
    }
}

/// Judges the bytes and records the outcome on the job: fetched (the file appears
/// once the job's time has come) or failed (ERROR from then on, the bytes removed).
fn finish(host: &Shared, code: &str, attempt: u64, blob: &Path, outcome: Result<Got, String>) {
    let opts = host.opts();
    let now_ms = host.clock.now_ms();
    let mut st = lock(&host.state);
    // Gone: the job was deleted (its task aborted and bytes removed) or restarted.
    let Some(i) = st
        .url_queue
        .iter()
        .position(|j| j.code == code && j.attempt == attempt)
    else {
        return;
    };
    let owner = st.url_queue[i].owner.clone();
    let used_kb = st.usage_kb(&owner).0;
    let verdict = outcome.and_then(|got| judge(&opts, used_kb, got));
    let job = &mut st.url_queue[i];
    job.task = None;
    match verdict {
        Ok((size, title)) => {
            job.title = title;
            job.fetch = Fetch::Fetched {
                size,
                at_ms: now_ms,
            };
        }
        Err(e) => {
            tracing::debug!(code, error = %e, "test host: upload/url fetch failed");
            job.fetch = Fetch::Failed(e);
            let _ = std::fs::remove_file(blob);
        }
    }
}

/// What the worker (`ProcessFile`) and then the storage back end (`fs.pm` `SaveFile`)
/// say of fetched bytes, in their order. Their refusals reach the queue as
/// `FS: <message>`, the `0:0:0:` prefix cut. Ok: the size and the title to store.
fn judge(opts: &HostOptions, used_kb: u64, got: Got) -> Result<(u64, String), String> {
    if !is_video_name(&got.name) {
        return Err(format!("FS: Not video file ({})", got.name));
    }
    // An empty body is no video to the format probe.
    if got.size == 0 {
        return Err("FS: Not video file format".to_owned());
    }
    if opts.max_file_size.is_some_and(|max| got.size > max) {
        return Err("FS: file is too big".to_owned());
    }
    // The upload's check, in KB: used + size/1024 > quota/1024.
    if let Some(q) = opts.quota()
        && used_kb as f64 + got.size as f64 / 1024.0 > q as f64 / 1024.0
    {
        return Err("FS: not enough disk space on your account".to_owned());
    }
    Ok((got.size, stored_title("", &got.name, opts)))
}

/// The error text of a request that got no reply, as LWP words it: its status line
/// is a made-up 500 ("500 Can't connect to 127.0.0.1:9 (Connection refused)").
fn send_error(e: &reqwest::Error, url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    let port = url.port_or_known_default().unwrap_or(80);
    if e.is_connect() {
        let reason = io_source(e).map_or_else(
            || root_cause(e),
            |io| match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "Connection refused".to_owned(),
                _ => io.to_string(),
            },
        );
        format!("File download failed:500 Can't connect to {host}:{port} ({reason})")
    } else if e.is_timeout() {
        "File download failed:500 read timeout".to_owned()
    } else {
        format!("File download failed:500 {}", root_cause(e))
    }
}

/// The `io::Error` under a reqwest error, if any.
fn io_source(e: &reqwest::Error) -> Option<&std::io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// The innermost message of an error chain (reqwest's own says little).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// `filename="..."` of a Content-Disposition header, as the worker's
/// `/filename="(.+?)"/i` takes it.
fn disposition_name(v: &str) -> Option<String> {
    let start = v.to_ascii_lowercase().find("filename=\"")? + "filename=\"".len();
    let rest = &v[start..];
    let end = rest.find('"')?;
    (end > 0).then(|| rest[..end].to_owned())
}

/// The worker's clean-up of a URL or file name into `file_name_orig`: the part after
/// the last `/` that has something on both sides, `.html` cut, the query cut at the
/// first `?` followed by a non-space, other `?` dropped, a trailing `/` and line
/// breaks removed. (Empty stays empty; the worker would then use five random digits.)
pub(crate) fn worker_file_name(s: &str) -> String {
    // `s/.+\/(.+)$/$1/`: greedy, so the last `/` with at least one char before and after.
    let mut name = s
        .char_indices()
        .rev()
        .find(|&(i, c)| c == '/' && i > 0 && i + 1 < s.len())
        .map_or(s, |(i, _)| &s[i + 1..])
        .to_owned();
    let lower = name.to_ascii_lowercase();
    for ext in [".html", ".htm"] {
        if lower.ends_with(ext) {
            name.truncate(name.len() - ext.len());
            break;
        }
    }
    // `s/\?\S.*$//`: the first `?` followed by a non-space char starts the query.
    let bytes: Vec<char> = name.chars().collect();
    if let Some(at) = (0..bytes.len())
        .find(|&i| bytes[i] == '?' && bytes.get(i + 1).is_some_and(|c| !c.is_whitespace()))
    {
        name = bytes[..at].iter().collect();
    }
    name.retain(|c| c != '?' && c != '\n' && c != '\r');
    if name.ends_with('/') {
        name.pop();
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_on_loopback_is_fetched() {
        for (url, real) in [
            ("http://127.0.0.1:8080/a.mp4", true),
            ("http://127.9.9.9/a.mp4", true),
            ("http://[::1]:80/a.mp4", true),
            ("http://localhost:1/a.mp4", true),
            ("http://LOCALHOST/a.mp4", true),
            ("https://127.0.0.1/a.mp4", false),
            ("ftp://127.0.0.1/a.mp4", false),
            ("http://localhost.example.com/a.mp4", false),
            ("http://localhost./a.mp4", false),
            ("http://10.0.0.1/a.mp4", false),
            ("http://[::ffff:127.0.0.1]/a.mp4", false),
            ("http://example.com/a.mp4", false),
            ("127.0.0.1/a.mp4", false),
            ("ftp://x/y", false),
        ] {
            assert_eq!(fetched_for_real(url), real, "{url}");
        }
    }

    #[test]
    fn names_as_the_worker_takes_them() {
        for (from, name) in [
            (
                "http://127.0.0.1:5/v/01/00000/abcdefghijkl_o/v.mp4?t=1f&s=5&e=60",
                "v.mp4",
            ),
            ("http://h/dir/My%20Clip.mp4", "My%20Clip.mp4"),
            ("http://h/dir/page.html", "page"),
            ("http://h/dir/", "dir"),
            ("http://h/a.mp4? x", "a.mp4 x"),
            ("clip.mkv", "clip.mkv"),
            ("", ""),
        ] {
            assert_eq!(worker_file_name(from), name, "{from}");
        }
        assert_eq!(
            disposition_name(r#"attachment; FileName="Show 1.mkv""#).as_deref(),
            Some("Show 1.mkv")
        );
        assert_eq!(disposition_name("attachment"), None);
        assert_eq!(disposition_name(r#"attachment; filename="""#), None);
    }
}
