//! Direct links: the URL shape the real host hands out, its signature and expiry, and the route that serves the bytes.
//!
//! The real `genDirectLink` (xapi.pm) points at the storage server, not the API host:
//! `{srv_htdocs_url}/v/{disk_id}/{dx}/{file_real}_{q}/{fname}?t={token}&s={time}&e={expire}&f={file_id}&sp={speed}&i={ip}`,
//! where `fname` is `v.mp4` for a call with `q` and `{code}_{q}.mp4` in the
//! versions list, `s` the issue time and `e` the lifetime (6 hours). The storage
//! server checks the token and the time and refuses a bad or old link with 403.
//!
//! The file name matters: upload/url names a fetched file after the URL's last
//! path segment, so a copy made from a `q=o` link is titled `v` on the other host,
//! whatever the original was called. Here the storage server is the upload listener,
//! and the token is a keyed hash of the code, quality, `s` and `e`: a link cannot be
//! stretched by editing `e`.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::lock;
use super::state::Shared;

/// The disk id in every link (one disk per storage server here).
const DISK_ID: &str = "01";

/// `files_per_folder` of the real config: `dx` is the file id divided by it.
const FILES_PER_FOLDER: u64 = 5000;

/// `sp`, the transfer speed the link allows in KB/s (the real default); not enforced.
const SPEED_KB: u64 = 25_000;

/// A direct link to version `q` of a file, issued at `now_secs` and valid for `ttl`
/// (`None`: for ever, and the link carries no `e`). `fname` is the last path segment:
/// `v.mp4` when the caller asked for one quality, `{code}_{q}.mp4` in the list.
pub(crate) fn direct_link(
    host: &Shared,
    code: &str,
    seq: u64,
    q: &str,
    fname: &str,
    now_secs: u64,
    ttl: Option<Duration>,
) -> String {
    let e = ttl.map(|d| d.as_secs().to_string()).unwrap_or_default();
    let token = sign(host.link_secret, code, q, now_secs, &e);
    let expire = if e.is_empty() {
        String::new()
    } else {
        format!("&e={e}")
    };
    format!(
        "{}/v/{DISK_ID}/{:05}/{code}_{q}/{fname}?t={token}&s={now_secs}{expire}&f={seq}&sp={SPEED_KB}&i=0.0",
        host.upload_base,
        seq / FILES_PER_FOLDER
    )
}

/// The token over what a link grants: which bytes, from when, for how long.
fn sign(secret: u64, code: &str, q: &str, s: u64, e: &str) -> String {
    let mut h = DefaultHasher::new();
    (secret, code, q, s, e).hash(&mut h);
    format!("{:016x}", h.finish())
}

/// What a link's query says about its validity at `now_secs`.
fn check(secret: u64, code: &str, q: &str, query: &HashMap<String, String>, now_secs: u64) -> bool {
    let (Some(t), Some(s)) = (
        query.get("t"),
        query.get("s").and_then(|s| s.parse::<u64>().ok()),
    ) else {
        return false;
    };
    let e = query.get("e").map_or("", String::as_str);
    if *t != sign(secret, code, q, s, e) {
        return false;
    }
    match e {
        "" => true,
        e => e
            .parse::<u64>()
            .is_ok_and(|e| now_secs <= s.saturating_add(e)),
    }
}

/// An error page as the storage server's nginx writes it.
fn error_page(host: Arc<Shared>, status: StatusCode) -> Response {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let page = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut resp = Response::new(counted(host, Body::from(page)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    resp
}

/// The body, counted into `bytes_served` chunk by chunk as the connection takes it,
/// so a reader that hangs up early is not counted for what it never got.
fn counted(host: Arc<Shared>, body: Body) -> Body {
    Body::from_stream(body.into_data_stream().inspect(move |chunk| {
        if let Ok(b) = chunk {
            host.bytes_served
                .fetch_add(b.len() as u64, Ordering::Relaxed);
        }
    }))
}

/// `GET /v/<disk>/<dx>/<code>_<q>/<fname>?t=..&s=..[&e=..]`: the bytes of a file,
/// streamed with their length, if the link is genuine and not expired (else 403, as
/// the storage server answers); 404 for a file that is gone.
pub(crate) async fn serve(
    State(host): State<Arc<Shared>>,
    Path((_disk, _dx, real, _fname)): Path<(String, String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some((code, q)) = real.rsplit_once('_') else {
        return error_page(host, StatusCode::NOT_FOUND);
    };
    if !check(host.link_secret, code, q, &query, host.clock.now_secs()) {
        return error_page(host, StatusCode::FORBIDDEN);
    }
    let blob = {
        let st = lock(&host.state);
        st.files
            .get(code)
            .filter(|f| f.deleted.is_none())
            .map(|f| f.blob.clone())
    };
    let Some(blob) = blob else {
        return error_page(host, StatusCode::NOT_FOUND);
    };
    let file = match tokio::fs::File::open(&blob).await {
        Ok(f) => f,
        Err(_) => return error_page(host, StatusCode::NOT_FOUND),
    };
    let len = file.metadata().await.map(|m| m.len()).ok();
    let body = counted(
        host.clone(),
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    );
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    // The length lets a fetcher see a reply cut short, and report progress.
    if let Some(len) = len {
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    resp.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, String)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn a_link_holds_until_its_lifetime_is_over_and_cannot_be_stretched() {
        let t = sign(7, "abcdefghijkl", "o", 1000, "60");
        let q = query(&[("t", t.clone()), ("s", "1000".into()), ("e", "60".into())]);
        assert!(check(7, "abcdefghijkl", "o", &q, 1060));
        assert!(!check(7, "abcdefghijkl", "o", &q, 1061));
        // Another file, quality, secret, a later `s` or a longer `e`: refused.
        assert!(!check(7, "abcdefghijkm", "o", &q, 1000));
        assert!(!check(7, "abcdefghijkl", "n", &q, 1000));
        assert!(!check(8, "abcdefghijkl", "o", &q, 1000));
        let later = query(&[("t", t.clone()), ("s", "2000".into()), ("e", "60".into())]);
        assert!(!check(7, "abcdefghijkl", "o", &later, 2000));
        let longer = query(&[("t", t.clone()), ("s", "1000".into()), ("e", "600".into())]);
        assert!(!check(7, "abcdefghijkl", "o", &longer, 1000));
        let dropped = query(&[("t", t), ("s", "1000".into())]);
        assert!(!check(7, "abcdefghijkl", "o", &dropped, 1000));
        // A link issued without a lifetime never expires.
        let forever = query(&[("t", sign(7, "c", "o", 5, "")), ("s", "5".into())]);
        assert!(check(7, "c", "o", &forever, u64::MAX));
        assert!(!check(7, "c", "o", &query(&[("s", "5".into())]), 5));
    }
}
