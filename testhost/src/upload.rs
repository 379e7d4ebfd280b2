//! The upload listener: `POST /upload/<n>` multipart, streamed to disk part by part.
//!
//! Each file part is written chunk by chunk to a temporary file in the data dir and
//! only committed (renamed to its code, recorded in the state) once the whole body
//! has been read, so a connection cut mid-body stores nothing. Faults that need the
//! connection itself (drop mid-body, lose the reply) fire the connection's kill switch.
//!
//! As on the real host: refusals from the storage back end come prefixed `0:0:0:`; the
//! JSON reply (hand-built, so a `"` in a file name makes it invalid) is only given when
//! the body has a `key`, otherwise an HTML page; titles are rewritten (`host_title`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::HostOptions;
use super::api::{
    delay_fault, http_fault_response, json_response, malformed_response, status_value,
};
use super::faults::{Fault, Point};
use super::lock;
use super::server::ConnKill;
use super::state::{FileRec, Shared, UploadRecord};
use super::title::{VIDEO_EXTENSIONS, host_file_name, host_title, upload_tags};

/// How the storage back end's refusals reach the client (`fs.pm` `saveFileError`).
const PREFIX: &str = "0:0:0:";

/// The title the host stores: the `file_title` field unless empty or `"0"` (Perl's
/// `||=`), else the file name as the host cleans it; then `host_title`, then the
/// `max_title_chars` cut.
pub(crate) fn stored_title(file_title: &str, file_name: &str, opts: &HostOptions) -> String {
    let base = if file_title.is_empty() || file_title == "0" {
        host_file_name(file_name, opts.sanitize_filename)
    } else {
        file_title.to_owned()
    };
    let title = host_title(&base, opts.sanitize_filename);
    // Hosts store titles in a column of limited width: longer ones are cut.
    match opts.max_title_chars {
        Some(n) if title.chars().count() > n => title.chars().take(n).collect(),
        _ => title,
    }
}

/// Largest non-file field kept (titles, tags, ...); the rest of a longer one is dropped.
const MAX_TEXT_FIELD: usize = 64 * 1024;

/// Where a drop-mid-upload fault cuts a body of unknown length.
const DROP_AFTER_UNSIZED: u64 = 32 * 1024;

#[derive(Serialize)]
struct UploadReply<'a> {
    msg: &'a str,
    status: Value,
    files: Vec<FileOutcome>,
}

#[derive(Serialize, Clone)]
struct FileOutcome {
    filecode: String,
    filename: String,
    status: String,
}

/// A temporary upload file, removed on drop unless committed. Dropping also covers
/// the case of the handler future being dropped with its connection.
struct TempBlob {
    path: PathBuf,
    size: u64,
    keep: bool,
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// One `file` part: its name, and the bytes on disk or the refusal message.
struct Part {
    filename: String,
    outcome: Result<TempBlob, String>,
    /// The form fields sent before this part. Real hosts read the fields
    /// as the body streams by: a field after the file does not apply to it
    /// (a key sent after the file leaves it with no owner).
    fields: HashMap<String, String>,
}

pub(crate) fn is_video_name(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Closes the connection with no reply; the handler future is dropped with it.
async fn drop_connection(host: &Shared, kill: Option<ConnKill>) -> Response {
    host.log("upload", 0);
    match kill {
        Some(k) => {
            k.fire();
            std::future::pending::<()>().await;
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        // Not served by our accept loop (cannot happen in practice): say so loudly.
        None => (StatusCode::INTERNAL_SERVER_ERROR, "cannot drop connection").into_response(),
    }
}

/// The body as a stream, read at most `bytes_per_sec`, and cut (connection killed)
/// once `drop_after` bytes have been read.
fn guarded_body(
    host: Arc<Shared>,
    body: Body,
    bytes_per_sec: Option<u64>,
    drop_after: Option<u64>,
    kill: Option<ConnKill>,
) -> impl Stream<Item = Result<Bytes, axum::Error>> + Send {
    let mut seen = 0u64;
    body.into_data_stream().then(move |chunk| {
        let len = chunk.as_ref().map_or(0, |b| b.len() as u64);
        seen += len;
        let wait = bytes_per_sec.map(|bps| Duration::from_secs_f64(len as f64 / bps.max(1) as f64));
        let cut = drop_after.is_some_and(|n| seen >= n);
        let kill = kill.clone();
        let host = host.clone();
        async move {
            if let Some(w) = wait {
                tokio::time::sleep(w).await;
            }
            if cut && let Some(k) = kill {
                host.log("upload", 0);
                k.fire();
                std::future::pending::<()>().await;
            }
            chunk
        }
    })
}

fn upload_error(host: &Shared, status: u16, msg: &str) -> Response {
    host.log("upload", status);
    json_response(&UploadReply {
        msg,
        status: status_value(status, false),
        files: Vec::new(),
    })
}

/// Handler of `POST /upload/<n>`.
pub(crate) async fn upload(State(host): State<Arc<Shared>>, req: Request) -> Response {
    host.uploads_started.fetch_add(1, Ordering::Relaxed);
    let kill = req.extensions().get::<ConnKill>().cloned();
    let point = Point::Upload;
    delay_fault(&host, point).await;
    if let Some(fault) = host.faults.fire(point, Fault::is_http) {
        let (code, resp) = http_fault_response(&fault);
        host.log("upload", code);
        return resp;
    }
    let slow = match host
        .faults
        .fire(point, |f| matches!(f, Fault::SlowRead { .. }))
    {
        Some(Fault::SlowRead { bytes_per_sec }) => Some(bytes_per_sec),
        _ => None,
    };
    let drop_mid = host
        .faults
        .fire(point, |f| matches!(f, Fault::DropMidUpload))
        .is_some();
    let lose_reply = host
        .faults
        .fire(point, |f| matches!(f, Fault::LoseReply))
        .is_some();
    let stored_then_502 = host
        .faults
        .fire(point, |f| matches!(f, Fault::StoredThen502))
        .is_some();

    let max_file_size = host.opts().max_file_size;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Ok(boundary) = multer::parse_boundary(content_type) else {
        return upload_error(&host, 400, "Expected multipart/form-data");
    };
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let drop_after = drop_mid.then_some(match length {
        Some(n) if n > 1 => n / 2,
        _ => DROP_AFTER_UNSIZED,
    });
    let stream = guarded_body(
        host.clone(),
        req.into_body(),
        slow,
        drop_after,
        kill.clone(),
    );
    let mut multipart = multer::Multipart::new(stream, boundary);

    let mut fields: HashMap<String, String> = HashMap::new();
    let mut parts: Vec<Part> = Vec::new();
    let mut order: Vec<String> = Vec::new();
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return upload_error(&host, 400, &format!("Bad multipart body: {e}")),
        };
        let name = field.name().unwrap_or("").to_owned();
        order.push(name.clone());
        if name != "file" {
            let mut text = Vec::new();
            loop {
                match field.chunk().await {
                    Ok(Some(c)) => {
                        let room = MAX_TEXT_FIELD.saturating_sub(text.len());
                        text.extend_from_slice(&c[..c.len().min(room)]);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return upload_error(&host, 400, &format!("Bad multipart body: {e}"));
                    }
                }
            }
            // `snapshot` is an image: read and ignored.
            if name != "snapshot" {
                fields.insert(name, String::from_utf8_lossy(&text).into_owned());
            }
            continue;
        }
        let filename = field.file_name().unwrap_or("").to_owned();
        let refusal = if filename.is_empty() {
            Some("null filesize or wrong file path".to_owned())
        } else if !is_video_name(&filename) {
            // The upload script's own check (not prefixed), before the storage back end.
            Some(format!("Not video file ({})", orig_name(&filename)))
        } else {
            match host.faults.fire(point, |f| {
                matches!(f, Fault::RejectFile(_) | Fault::RejectFilePrefixed(_))
            }) {
                Some(Fault::RejectFile(msg)) => Some(msg),
                Some(Fault::RejectFilePrefixed(msg)) => Some(format!("{PREFIX}{msg}")),
                _ => None,
            }
        };
        let n = host.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let mut blob = TempBlob {
            path: host.data_dir.join(format!("upload-{n}.tmp")),
            size: 0,
            keep: false,
        };
        // A refused part is still read to its end (the next part follows it).
        let mut out = match refusal {
            Some(_) => None,
            None => match tokio::fs::File::create(&blob.path).await {
                Ok(f) => Some(f),
                Err(e) => return upload_error(&host, 500, &format!("Storage error: {e}")),
            },
        };
        let mut too_big = false;
        loop {
            let chunk = match field.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => return upload_error(&host, 400, &format!("Bad multipart body: {e}")),
            };
            blob.size += chunk.len() as u64;
            // Counted as read, whatever becomes of the file (refused, too big, cut off).
            host.bytes_uploaded
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if max_file_size.is_some_and(|max| blob.size > max) {
                too_big = true;
                out = None;
            }
            if let Some(f) = out.as_mut()
                && let Err(e) = f.write_all(&chunk).await
            {
                return upload_error(&host, 500, &format!("Storage error: {e}"));
            }
        }
        if let Some(mut f) = out
            && let Err(e) = f.flush().await
        {
            return upload_error(&host, 500, &format!("Storage error: {e}"));
        }
        let outcome = match refusal {
            Some(msg) => Err(msg),
            None if too_big => Err(format!("{PREFIX}file is too big")),
            None if blob.size == 0 => Err("null filesize or wrong file path".to_owned()),
            None => Ok(blob),
        };
        parts.push(Part {
            filename,
            outcome,
            fields: fields.clone(),
        });
    }

    if drop_mid {
        // The body was shorter than the cut point: still cut before storing anything.
        return drop_connection(&host, kill).await;
    }
    let files = commit(&host, parts, order);
    if lose_reply {
        return drop_connection(&host, kill).await;
    }
    if stored_then_502 {
        let (code, resp) = http_fault_response(&Fault::Http502);
        host.log("upload", code);
        return resp;
    }
    host.log("upload", 200);
    let as_string = host
        .faults
        .fire(point, |f| matches!(f, Fault::StatusAsString))
        .is_some();
    if let Some(fault) = host.faults.fire(point, Fault::is_malformed_reply) {
        let list: Vec<Value> = files
            .iter()
            .map(|f| serde_json::to_value(f).unwrap_or(Value::Null))
            .collect();
        let body = serde_json::to_value(UploadReply {
            msg: "OK",
            status: status_value(200, as_string),
            files: files.clone(),
        })
        .unwrap_or(Value::Null);
        return malformed_response(&fault, &Value::Array(list), &body);
    }
    let field = |name: &str| fields.get(name).is_some_and(|v| !v.is_empty() && v != "0");
    if field("key") && !field("html_redirect") {
        return hand_built_json(&files, as_string);
    }
    if field("json") {
        let list: Vec<Value> = files
            .iter()
            .map(|f| {
                let code = if f.filecode.is_empty() {
                    &f.filename
                } else {
                    &f.filecode
                };
                serde_json::json!({ "code": code, "status": f.status })
            })
            .collect();
        return json_response(&serde_json::json!({ "result": list }));
    }
    html_reply(&files)
}

/// The reply as `upload.cgi` prints it: built by string formatting, nothing escaped.
fn hand_built_json(files: &[FileOutcome], status_as_string: bool) -> Response {
    let list: Vec<String> = files
        .iter()
        .map(|f| {
            format!(
                r#"{{ "filecode":"{}", "filename": "{}", "status": "{}" }}"#,
                f.filecode, f.filename, f.status
            )
        })
        .collect();
    let status = if status_as_string { "\"200\"" } else { "200" };
    let body = format!(
        r#"{{"msg": "OK", "status": {status}, "files": [ {} ]}}"#,
        list.join(", ")
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The HTML form the upload script answers with when no `key` was sent.
fn html_reply(files: &[FileOutcome]) -> Response {
    let clean = |v: &str| v.replace(['<', '>', '\0', '/', '"'], "");
    let mut body = String::from(
        "<HTML><BODY><Form name='F1' action='/' target='_parent' method='POST'>\
         <textarea name=\"op\">upload_result</textarea><textarea name=\"sess_id\"></textarea>",
    );
    for f in files {
        let fname = if f.filecode.is_empty() {
            &f.filename
        } else {
            &f.filecode
        };
        body.push_str(&format!(
            "<textarea name=\"fn\">{}</textarea><textarea name=\"st\">{}</textarea>",
            clean(fname),
            clean(&f.status)
        ));
    }
    body.push_str(
        "</Form><Script>document.location='javascript:false';document.F1.submit();</Script></BODY></HTML>",
    );
    ([(header::CONTENT_TYPE, "text/html")], body).into_response()
}

/// The file name as the upload script reports it: only a backslash path is stripped.
fn orig_name(name: &str) -> &str {
    name.rsplit('\\').next().unwrap_or(name)
}

/// Records the accepted parts as files, each with the form fields that came
/// before it.
fn commit(host: &Shared, parts: Vec<Part>, order: Vec<String>) -> Vec<FileOutcome> {
    let opts = host.opts();
    let quota = opts.quota();
    let now_ms = host.clock.now_ms();
    let mut st = lock(&host.state);
    let mut used_by: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let fields = &part.fields;
        let field = |name: &str| fields.get(name).map(|s| s.trim()).filter(|s| !s.is_empty());
        let flag = |name: &str| field(name).is_some_and(|v| v != "0");
        // Quirk: a wrong or missing key is not refused; the file is stored with no owner.
        let owner = field("key").and_then(|k| st.login_for_key(k));
        let requested_fld = field("fld_id")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        // A folder that is missing or not the uploader's puts the file in the root.
        let fld_id = match (&owner, st.folders.get(&requested_fld)) {
            (Some(o), Some(f)) if &f.owner == o => requested_fld,
            _ => 0,
        };
        let cat_id = field("cat_id").and_then(|v| v.parse().ok()).unwrap_or(0);
        let descr = field("file_descr").unwrap_or("").to_owned();
        let used_kb = match &owner {
            Some(o) => *used_by.entry(o.clone()).or_insert_with(|| st.usage_kb(o).0),
            None => 0,
        };
        let mut blob = match part.outcome {
            Ok(b) => b,
            Err(msg) => {
                out.push(FileOutcome {
                    filecode: String::new(),
                    filename: orig_name(&part.filename).to_owned(),
                    status: msg,
                });
                continue;
            }
        };
        // The real check, in KB: used + size/1024 > quota/1024.
        if let Some(q) = quota
            && used_kb as f64 + blob.size as f64 / 1024.0 > q as f64 / 1024.0
        {
            out.push(FileOutcome {
                filecode: String::new(),
                filename: orig_name(&part.filename).to_owned(),
                status: format!("{PREFIX}not enough disk space on your account"),
            });
            continue;
        }
        let code = st.new_file_code();
        let path = host.data_dir.join(&code);
        if let Err(e) = std::fs::rename(&blob.path, &path) {
            out.push(FileOutcome {
                filecode: String::new(),
                filename: orig_name(&part.filename).to_owned(),
                status: format!("Storage error: {e}"),
            });
            continue;
        }
        blob.keep = true;
        if let Some(o) = &owner {
            used_by.insert(o.clone(), used_kb + blob.size / 1024);
        }
        let title = stored_title(
            fields.get("file_title").map_or("", String::as_str),
            &part.filename,
            &opts,
        );
        let tags = upload_tags(field("tags").unwrap_or(""), &title);
        let seq = st.take_seq();
        st.files.insert(
            code.clone(),
            FileRec {
                code: code.clone(),
                title,
                descr,
                fld_id,
                size: blob.size,
                owner: owner.clone(),
                created_ms: now_ms,
                seq,
                public: flag("file_public"),
                adult: flag("file_adult"),
                cat_id,
                tags,
                blob: path,
                ..FileRec::default()
            },
        );
        out.push(FileOutcome {
            filecode: code,
            filename: orig_name(&part.filename).to_owned(),
            status: "OK".to_owned(),
        });
    }
    st.uploads.push(UploadRecord {
        parts: order,
        filenames: out.iter().map(|f| f.filename.clone()).collect(),
        codes: out
            .iter()
            .filter(|f| !f.filecode.is_empty())
            .map(|f| f.filecode.clone())
            .collect(),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_extensions() {
        assert!(is_video_name("a.mp4"));
        assert!(is_video_name("A.MKV"));
        assert!(is_video_name("x.y.3gp"));
        assert!(!is_video_name("a.txt"));
        assert!(!is_video_name("mp4"));
    }
}
