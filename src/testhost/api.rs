//! The JSON API under `/api/<group>/<op>`: parameter parsing, the reply envelope, the 15 calls.
//!
//! Errors are HTTP 200 with the error in the JSON `status`, as XVS does; only the
//! proxy-style faults produce other HTTP statuses. Each call is a synchronous
//! function over the locked state, so a call is atomic.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::clock::{format_date, format_datetime, parse_datetime};
use super::faults::{Fault, Point};
use super::lock;
use super::state::{DeletedBy, EncodeState, FileRec, Shared, State as HostState};

/// Largest form-encoded POST body read for an API call.
const MAX_FORM_BODY: usize = 1 << 20;

/// The most codes `file/info` takes at once.
const MAX_INFO_CODES: usize = 50;

/// A reply before it is put in the envelope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub status: u16,
    pub msg: String,
    pub result: Option<Value>,
}

fn ok(result: Value) -> Reply {
    Reply {
        status: 200,
        msg: "OK".to_owned(),
        result: Some(result),
    }
}

fn err(status: u16, msg: impl Into<String>) -> Reply {
    Reply {
        status,
        msg: msg.into(),
        result: None,
    }
}

/// `status` as a number, or as a string when the fault says so.
pub(crate) fn status_value(status: u16, as_string: bool) -> Value {
    if as_string {
        Value::String(status.to_string())
    } else {
        Value::from(status)
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    msg: &'a str,
    server_time: String,
    status: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
}

pub(crate) fn json_response(body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The reply a CDN or a broken front end would give instead of the application's.
pub(crate) fn http_fault_response(fault: &Fault) -> (u16, Response) {
    let (code, title) = match fault {
        Fault::Http502 => (StatusCode::BAD_GATEWAY, "502 Bad Gateway"),
        Fault::Http503 => (
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Temporarily Unavailable",
        ),
        Fault::Http504 => (StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out"),
        Fault::Http429 => (StatusCode::TOO_MANY_REQUESTS, "429 Too Many Requests"),
        _ => (StatusCode::OK, "Site maintenance"),
    };
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    if code == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    (code.as_u16(), resp)
}

/// HTML-escapes text the way XVS returns titles: `(` comes back as `&#40;`.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '(' => out.push_str("&#40;"),
            ')' => out.push_str("&#41;"),
            c => out.push(c),
        }
    }
    out
}

/// Query and form parameters merged (form fields win). Empty values count as absent,
/// so that "skipped fields are left as they are" holds for `name=` too.
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    fn extend_from(&mut self, encoded: &[u8]) {
        for (k, v) in url::form_urlencoded::parse(encoded) {
            self.0.insert(k.into_owned(), v.into_owned());
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    fn u64(&self, name: &str) -> Result<Option<u64>, Reply> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| err(400, format!("Invalid {name}"))),
        }
    }

    fn flag(&self, name: &str) -> Result<Option<bool>, Reply> {
        match self.get(name) {
            None => Ok(None),
            Some("0") => Ok(Some(false)),
            Some("1") => Ok(Some(true)),
            Some(_) => Err(err(400, format!("Invalid {name}"))),
        }
    }

    /// A comma-separated list, trimmed, empty items dropped.
    fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn read_params(req: Request) -> Result<Params, Reply> {
    let mut params = Params::default();
    if let Some(q) = req.uri().query() {
        params.extend_from(q.as_bytes());
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if req.method() == Method::POST && is_form {
        let body = axum::body::to_bytes(req.into_body(), MAX_FORM_BODY)
            .await
            .map_err(|_| err(400, "Bad request body"))?;
        params.extend_from(&body);
    }
    Ok(params)
}

/// The API calls this host knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    AccountInfo,
    AccountStats,
    UploadServer,
    UploadUrl,
    FileInfo,
    FileEdit,
    FileList,
    DirectLink,
    FileClone,
    Deleted,
    Dmca,
    Encodings,
    FolderList,
    FolderCreate,
    FolderEdit,
}

impl Op {
    fn parse(endpoint: &str, alt_list_paths: bool) -> Option<Op> {
        Some(match endpoint {
            "account/info" => Op::AccountInfo,
            "account/stats" => Op::AccountStats,
            "upload/server" => Op::UploadServer,
            "upload/url" => Op::UploadUrl,
            "file/info" => Op::FileInfo,
            "file/edit" => Op::FileEdit,
            "file/list" => Op::FileList,
            "file/direct_link" => Op::DirectLink,
            "file/clone" => Op::FileClone,
            "file/encodings" => Op::Encodings,
            "folder/list" => Op::FolderList,
            "folder/create" => Op::FolderCreate,
            "folder/edit" => Op::FolderEdit,
            // Some hosts serve these two lists under `files/`; the option makes this
            // host one of them, so that clients' fallback is exercised.
            "file/deleted" if !alt_list_paths => Op::Deleted,
            "file/dmca" if !alt_list_paths => Op::Dmca,
            "files/deleted" if alt_list_paths => Op::Deleted,
            "files/dmca" if alt_list_paths => Op::Dmca,
            _ => return None,
        })
    }
}

/// Entry point for every request on the API listener.
pub(crate) async fn api_entry(State(host): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let Some(endpoint) = path.strip_prefix("/api/") else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let endpoint = endpoint.trim_end_matches('/').to_owned();
    let point = Point::Api(&endpoint);
    delay_fault(&host, point).await;
    if let Some(fault) = host.faults.fire(point, Fault::is_http) {
        let (code, resp) = http_fault_response(&fault);
        host.log(&endpoint, code);
        return resp;
    }
    let reply = match read_params(req).await {
        Ok(params) => call(&host, &endpoint, &params),
        Err(reply) => reply,
    };
    host.log(&endpoint, reply.status);
    let as_string = host
        .faults
        .fire(point, |f| matches!(f, Fault::StatusAsString))
        .is_some();
    json_response(&Envelope {
        msg: &reply.msg,
        server_time: format_datetime(host.clock.now_secs()),
        status: status_value(reply.status, as_string),
        result: reply.result.as_ref(),
    })
}

/// Runs one API call against the state: operation, key, rate limit, then the call.
pub(crate) fn call(host: &Shared, endpoint: &str, params: &Params) -> Reply {
    let opts = host.opts();
    let now_ms = host.clock.now_ms();
    let now = now_ms / 1000;
    let mut st = lock(&host.state);
    st.settle(now);
    let Some(op) = Op::parse(endpoint, opts.alt_list_paths) else {
        return err(400, "Invalid operation");
    };
    let point = Point::Api(endpoint);
    let limit = opts.rate_limit_per_min;
    match host.faults.fire(point, |f| {
        matches!(f, Fault::RateLimited | Fault::JsonError { .. })
    }) {
        Some(Fault::JsonError { status, msg }) => return err(status, msg),
        Some(_) => return rate_limited(limit.unwrap_or(5)),
        None => {}
    }
    let Some(key) = params.get("key") else {
        return err(400, "Invalid key");
    };
    let Some(login) = st.login_for_key(key) else {
        return err(403, "Wrong auth");
    };
    if let Some(limit) = limit {
        let minute = now / 60;
        let slot = st.rate.entry(login.clone()).or_insert((minute, 0));
        if slot.0 != minute {
            *slot = (minute, 0);
        }
        if slot.1 >= limit {
            return rate_limited(limit);
        }
        slot.1 += 1;
    }
    if op == Op::UploadServer
        && host
            .faults
            .fire(point, |f| matches!(f, Fault::NoServers))
            .is_some()
    {
        return Reply {
            status: 200,
            msg: "No servers available for uploads".to_owned(),
            result: Some(json!({})),
        };
    }
    let ctx = Ctx {
        host,
        login: &login,
        now_ms,
        now,
        encode_ms: opts.encode_ms(),
        storage_left: opts.storage_left,
        list_lag_ms: opts.list_lag.as_millis() as u64,
    };
    let out = match op {
        Op::AccountInfo => ctx.account_info(&st),
        Op::AccountStats => ctx.account_stats(&st, params),
        Op::UploadServer => Ok(ctx.upload_server(&mut st)),
        Op::UploadUrl => ctx.upload_url(&mut st, params),
        Op::FileInfo => ctx.file_info(&st, params),
        Op::FileEdit => ctx.file_edit(&mut st, params),
        Op::FileList => ctx.file_list(&st, params),
        Op::DirectLink => ctx.direct_link(&st, params),
        Op::FileClone => ctx.file_clone(&mut st, params),
        Op::Deleted => ctx.deleted(&st, params),
        Op::Dmca => ctx.dmca(&st, params),
        Op::Encodings => Ok(ctx.encodings(&st, params)),
        Op::FolderList => ctx.folder_list(&st, params),
        Op::FolderCreate => ctx.folder_create(&mut st, params),
        Op::FolderEdit => ctx.folder_edit(&mut st, params),
    };
    out.unwrap_or_else(|e| e)
}

/// Sleeps when a `Delay` fault fires at `point`.
pub(crate) async fn delay_fault(host: &Shared, point: Point<'_>) {
    if let Some(Fault::Delay(d)) = host.faults.fire(point, |f| matches!(f, Fault::Delay(_))) {
        tokio::time::sleep(d).await;
    }
}

fn rate_limited(n: u32) -> Reply {
    err(403, format!("Requests limit reached: {n} per min"))
}

/// What every call needs besides the state.
struct Ctx<'a> {
    host: &'a Shared,
    login: &'a str,
    now_ms: u64,
    /// Files younger than this are not listed yet.
    list_lag_ms: u64,
    now: u64,
    encode_ms: u64,
    storage_left: Option<u64>,
}

type CallResult = Result<Reply, Reply>;

fn bool_str(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

impl Ctx<'_> {
    fn link(&self, code: &str) -> String {
        format!("{}/{code}.html", self.host.api_base)
    }

    fn thumbnail(&self, code: &str) -> String {
        format!("{}/{code}_t.jpg", self.host.api_base)
    }

    /// A live file of this account, or 404.
    fn own_file<'s>(&self, st: &'s HostState, code: &str) -> Result<&'s FileRec, Reply> {
        st.files
            .get(code)
            .filter(|f| f.visible_to(self.login))
            .ok_or_else(|| err(404, "File not found"))
    }

    /// 0 (the root) or a folder of this account.
    fn check_folder(&self, st: &HostState, fld_id: u64) -> Result<(), Reply> {
        if fld_id == 0 {
            return Ok(());
        }
        match st.folders.get(&fld_id) {
            None => Err(err(404, "Folder not found")),
            Some(f) if f.owner != self.login => Err(err(403, "Not your folder")),
            Some(_) => Ok(()),
        }
    }

    /// One file as `file/list` and `folder/list` show it.
    fn list_entry(&self, f: &FileRec) -> Value {
        json!({
            "file_code": f.code,
            "fld_id": f.fld_id.to_string(),
            "title": escape_html(&f.title),
            "uploaded": format_datetime(f.created_ms / 1000),
            "length": f.length(self.now_ms, self.encode_ms).to_string(),
            "public": bool_str(f.public),
            "views": "0",
            "canplay": u8::from(f.canplay(self.now_ms, self.encode_ms)),
            "link": self.link(&f.code),
            "thumbnail": self.thumbnail(&f.code),
        })
    }

    fn account_info(&self, st: &HostState) -> CallResult {
        let (used, count) = st.usage(self.login);
        let left = match self.storage_left {
            Some(n) => json!(n.saturating_sub(used)),
            None => json!("unlimited"),
        };
        Ok(ok(json!({
            "login": self.login,
            "email": format!("{}@example.com", self.login),
            "balance": "0.00000",
            "premium": 0,
            "premium_expire": "",
            "storage_used": used.to_string(),
            "storage_left": left,
            "files_total": count.to_string(),
        })))
    }

    fn account_stats(&self, st: &HostState, params: &Params) -> CallResult {
        let last = params.u64("last")?.unwrap_or(7).min(365);
        let (_, count) = st.usage(self.login);
        // The host keeps no view statistics; an account with files gets zero rows.
        if count == 0 || last == 0 {
            return Ok(Reply {
                status: 200,
                msg: "Not enough reports data".to_owned(),
                result: Some(json!({})),
            });
        }
        let rows: Vec<Value> = (0..last)
            .map(|i| {
                json!({
                    "day": format_date(self.now.saturating_sub(i * 86_400)),
                    "views": "0",
                    "downloads": "0",
                    "sales": "0",
                    "profit_views": "0.00000",
                    "profit_sales": "0.00000",
                    "profit_refs": "0.00000",
                    "profit_site": "0.00000",
                    "profit_total": "0.00000",
                })
            })
            .collect();
        Ok(ok(Value::Array(rows)))
    }

    fn upload_server(&self, st: &mut HostState) -> Reply {
        // Two server names, rotating, both served by the one upload listener.
        st.upload_rr += 1;
        let n = (st.upload_rr - 1) % 2 + 1;
        ok(json!(format!("{}/upload/{n:02}", self.host.upload_base)))
    }

    fn upload_url(&self, st: &mut HostState, params: &Params) -> CallResult {
        let raw = params
            .get("url")
            .ok_or_else(|| err(400, "No URL specified"))?;
        let parsed = url::Url::parse(raw).map_err(|_| err(400, "Invalid URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(err(400, "Invalid URL"));
        }
        let segment = parsed
            .path_segments()
            .and_then(|mut s| s.rfind(|seg| !seg.is_empty()))
            .map(percent_decode)
            .unwrap_or_default();
        let title = if segment.is_empty() {
            parsed.host_str().unwrap_or("video").to_owned()
        } else {
            segment
        };
        let fld_id = params.u64("fld_id")?.unwrap_or(0);
        self.check_folder(st, fld_id)?;
        let cat_id = params.u64("cat_id")?.unwrap_or(0);
        let public = params.flag("file_public")?.unwrap_or(false);
        let adult = params.flag("file_adult")?.unwrap_or(false);
        let tags = params.get("tags").unwrap_or("").to_owned();
        let code = st.new_file_code();
        // Nothing is fetched: the file holds no bytes.
        let blob = self.host.data_dir.join(&code);
        std::fs::write(&blob, b"").map_err(|e| err(500, format!("Storage error: {e}")))?;
        let seq = st.next_seq;
        st.next_seq += 1;
        st.files.insert(
            code.clone(),
            FileRec {
                code: code.clone(),
                title,
                descr: String::new(),
                fld_id,
                size: 0,
                owner: Some(self.login.to_owned()),
                created_ms: self.now_ms,
                seq,
                public,
                adult,
                cat_id,
                tags,
                blob,
                stuck: false,
                encoded: false,
                deleted: None,
                dmca: None,
            },
        );
        Ok(ok(json!({ "filecode": code })))
    }

    fn file_info(&self, st: &HostState, params: &Params) -> CallResult {
        let codes = params.list("file_code");
        if codes.is_empty() {
            return Err(err(400, "No file_code specified"));
        }
        if codes.len() > MAX_INFO_CODES {
            return Err(err(
                400,
                format!("Max {MAX_INFO_CODES} file codes per request"),
            ));
        }
        let entries = codes
            .iter()
            .map(|code| match self.own_file(st, code) {
                Err(_) => json!({ "status": 404, "file_code": code }),
                Ok(f) => {
                    let created = format_datetime(f.created_ms / 1000);
                    json!({
                        "status": if f.dmca.is_some() { 451 } else { 200 },
                        "file_code": f.code,
                        "canplay": u8::from(f.canplay(self.now_ms, self.encode_ms)),
                        "file_title": escape_html(&f.title),
                        "file_length": f.length(self.now_ms, self.encode_ms).to_string(),
                        "file_views": "0",
                        "file_views_full": "0",
                        "file_created": created,
                        "file_last_download": created,
                        "player_img": self.thumbnail(&f.code),
                        "cat_id": f.cat_id.to_string(),
                        "file_fld_id": f.fld_id.to_string(),
                        "file_public": bool_str(f.public),
                        "file_adult": bool_str(f.adult),
                        "file_premium_only": "0",
                        "tags": f.tags,
                    })
                }
            })
            .collect();
        Ok(ok(Value::Array(entries)))
    }

    fn file_edit(&self, st: &mut HostState, params: &Params) -> CallResult {
        let codes = params.list("file_code");
        if codes.is_empty() {
            return Err(err(400, "No file_code specified"));
        }
        let title = params.get("file_title").map(str::to_owned);
        let descr = params.get("file_descr").map(str::to_owned);
        let cat_id = params.u64("cat_id")?;
        let fld_id = params.u64("file_fld_id")?;
        if let Some(fld) = fld_id {
            self.check_folder(st, fld)?;
        }
        let public = params.flag("file_public")?;
        let adult = params.flag("file_adult")?;
        let tags = params.get("tags").map(str::to_owned);
        for code in &codes {
            let Some(f) = st.files.get_mut(code).filter(|f| f.visible_to(self.login)) else {
                // Quirk: unknown codes are skipped silently and the call still says "true".
                continue;
            };
            if let Some(v) = &title {
                f.title.clone_from(v);
            }
            if let Some(v) = &descr {
                f.descr.clone_from(v);
            }
            if let Some(v) = &tags {
                f.tags.clone_from(v);
            }
            if let Some(v) = cat_id {
                f.cat_id = v;
            }
            if let Some(v) = fld_id {
                f.fld_id = v;
            }
            if let Some(v) = public {
                f.public = v;
            }
            if let Some(v) = adult {
                f.adult = v;
            }
        }
        Ok(ok(json!("true")))
    }

    fn file_list(&self, st: &HostState, params: &Params) -> CallResult {
        let fld_id = params.u64("fld_id")?;
        let title = params.get("title").map(str::to_lowercase);
        let created_after = match params.get("created") {
            None => None,
            Some(v) => Some(if let Ok(minutes) = v.parse::<u64>() {
                self.now.saturating_sub(minutes.saturating_mul(60))
            } else {
                parse_datetime(v).ok_or_else(|| err(400, "Invalid created"))?
            }),
        };
        let public = params.flag("public")?;
        let adult = params.flag("adult")?;
        let per_page = params.u64("per_page")?.unwrap_or(100).clamp(1, 1000) as usize;
        let page = params.u64("page")?.unwrap_or(1).max(1) as usize;
        let mut files: Vec<&FileRec> = st
            .files
            .values()
            .filter(|f| f.visible_to(self.login))
            .filter(|f| f.created_ms.saturating_add(self.list_lag_ms) <= self.now_ms)
            .filter(|f| fld_id.is_none_or(|id| f.fld_id == id))
            .filter(|f| {
                title
                    .as_deref()
                    .is_none_or(|t| f.title.to_lowercase().contains(t))
            })
            .filter(|f| created_after.is_none_or(|at| f.created_ms / 1000 >= at))
            .filter(|f| public.is_none_or(|p| f.public == p))
            .filter(|f| adult.is_none_or(|a| f.adult == a))
            .collect();
        sort_newest_first(&mut files);
        let total = files.len();
        let pages = total.div_ceil(per_page);
        let shown: Vec<Value> = files
            .iter()
            .skip((page - 1).saturating_mul(per_page))
            .take(per_page)
            .map(|f| self.list_entry(f))
            .collect();
        Ok(ok(json!({
            "results": shown.len(),
            "results_total": total.to_string(),
            "pages": pages,
            "files": shown,
        })))
    }

    fn direct_link(&self, st: &HostState, params: &Params) -> CallResult {
        let code = params
            .get("file_code")
            .ok_or_else(|| err(400, "No file_code specified"))?;
        let f = self.own_file(st, code)?;
        let url = |q: &str| format!("{}/d/{}/{q}", self.host.api_base, f.code);
        if let Some(q) = params.get("q") {
            if !matches!(q, "n" | "h" | "l" | "o") {
                return Err(err(400, "Invalid q"));
            }
            return Ok(ok(json!(url(q))));
        }
        Ok(ok(json!({
            "versions": [{ "name": "n", "size": f.size.to_string(), "url": url("n") }],
            "file_length": f.length(self.now_ms, self.encode_ms).to_string(),
            "player_img": self.thumbnail(&f.code),
            "hls_direct": format!("{}/hls/{}/master.m3u8", self.host.api_base, f.code),
        })))
    }

    fn file_clone(&self, st: &mut HostState, params: &Params) -> CallResult {
        let code = params
            .get("file_code")
            .ok_or_else(|| err(400, "No file_code specified"))?;
        // Any live file can be cloned (public sharing), not only one's own.
        let src = st
            .files
            .get(code)
            .filter(|f| f.deleted.is_none())
            .ok_or_else(|| err(404, "File not found"))?
            .clone();
        let new_code = st.new_file_code();
        let seq = st.next_seq;
        st.next_seq += 1;
        let encoded = src.canplay(self.now_ms, self.encode_ms);
        st.files.insert(
            new_code.clone(),
            FileRec {
                code: new_code.clone(),
                title: params
                    .get("file_title")
                    .map(str::to_owned)
                    .unwrap_or(src.title),
                fld_id: 0,
                owner: Some(self.login.to_owned()),
                created_ms: self.now_ms,
                seq,
                encoded,
                stuck: false,
                deleted: None,
                dmca: None,
                ..src
            },
        );
        Ok(ok(
            json!({ "filecode": new_code, "url": self.link(&new_code) }),
        ))
    }

    fn deleted(&self, st: &HostState, params: &Params) -> CallResult {
        let last = params.u64("last")?.unwrap_or(24);
        let since = self.now.saturating_sub(last.saturating_mul(3600));
        let mut rows: Vec<(u64, &FileRec, DeletedBy)> = st
            .files
            .values()
            .filter(|f| f.owner.as_deref() == Some(self.login))
            .filter_map(|f| f.deleted.map(|(at, by)| (at, f, by)))
            .filter(|(at, _, _)| *at >= since)
            .collect();
        rows.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.seq.cmp(&a.1.seq)));
        let out: Vec<Value> = rows
            .into_iter()
            .map(|(at, f, by)| {
                json!({
                    "file_code": f.code,
                    "title": escape_html(&f.title),
                    "deleted": format_datetime(at),
                    "deleted_ago_sec": self.now.saturating_sub(at).to_string(),
                    "deleted_by": by.as_str(),
                })
            })
            .collect();
        Ok(ok(Value::Array(out)))
    }

    fn dmca(&self, st: &HostState, params: &Params) -> CallResult {
        let last = params.u64("last")?.unwrap_or(24);
        let since = self.now.saturating_sub(last.saturating_mul(3600));
        let mut rows: Vec<(u64, &FileRec)> = st
            .files
            .values()
            .filter(|f| f.visible_to(self.login))
            .filter_map(|f| match f.dmca {
                Some((scheduled, at)) if scheduled >= since => Some((at, f)),
                _ => None,
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.seq.cmp(&b.1.seq)));
        let out: Vec<Value> = rows
            .into_iter()
            .map(|(at, f)| {
                json!({
                    "file_code": f.code,
                    "del_time": format_datetime(at),
                    "del_in_sec": at.saturating_sub(self.now).to_string(),
                })
            })
            .collect();
        Ok(ok(Value::Array(out)))
    }

    fn encodings(&self, st: &HostState, params: &Params) -> Reply {
        let filter = params.list("file_code");
        let mut files: Vec<&FileRec> = st
            .files
            .values()
            .filter(|f| f.visible_to(self.login))
            .filter(|f| filter.is_empty() || filter.contains(&f.code))
            .collect();
        sort_newest_first(&mut files);
        let out: Vec<Value> = files
            .into_iter()
            .filter_map(|f| {
                let (status, progress) = match f.encoding(self.now_ms, self.encode_ms) {
                    EncodeState::Done => return None,
                    EncodeState::Pending => ("PENDING", 0),
                    EncodeState::Encoding(p) => ("ENCODING", p),
                    EncodeState::Stuck => ("STUCK", 0),
                };
                Some(json!({
                    "file_code": f.code,
                    "quality": "h",
                    "title": escape_html(&f.title),
                    "status": status,
                    "progress": progress,
                    "link": self.link(&f.code),
                }))
            })
            .collect();
        ok(Value::Array(out))
    }

    fn folder_list(&self, st: &HostState, params: &Params) -> CallResult {
        let fld_id = params.u64("fld_id")?.unwrap_or(0);
        self.check_folder(st, fld_id)?;
        let with_files = params.flag("files")?.unwrap_or(false);
        let folders: Vec<Value> = st
            .folders
            .values()
            .filter(|f| f.parent == fld_id && f.owner == self.login)
            .map(|f| {
                json!({
                    "fld_id": f.fld_id.to_string(),
                    "name": escape_html(&f.name),
                    "code": f.code,
                })
            })
            .collect();
        let mut result = json!({ "folders": folders });
        if with_files {
            let mut files: Vec<&FileRec> = st
                .files
                .values()
                .filter(|f| f.visible_to(self.login) && f.fld_id == fld_id)
                .collect();
            sort_newest_first(&mut files);
            result["files"] = files.iter().map(|f| self.list_entry(f)).collect();
        }
        Ok(ok(result))
    }

    fn folder_create(&self, st: &mut HostState, params: &Params) -> CallResult {
        let name = params.get("name").unwrap_or("");
        if name.chars().count() < 2 {
            return Err(err(400, "Folder name must be at least 2 characters"));
        }
        let parent = params.u64("parent_id")?.unwrap_or(0);
        self.check_folder(st, parent)?;
        let descr = params.get("descr").unwrap_or("");
        let fld_id = st.create_folder(self.login, parent, name, descr);
        Ok(ok(json!({ "fld_id": fld_id.to_string() })))
    }

    fn folder_edit(&self, st: &mut HostState, params: &Params) -> CallResult {
        let fld_id = params.u64("fld_id")?.unwrap_or(0);
        if fld_id == 0 {
            return Err(err(400, "Invalid fld_id"));
        }
        self.check_folder(st, fld_id)?;
        let name = params.get("name");
        if name.is_some_and(|n| n.chars().count() < 2) {
            return Err(err(400, "Folder name must be at least 2 characters"));
        }
        let parent = params.u64("parent_id")?;
        if let Some(p) = parent {
            self.check_folder(st, p)?;
            if st.is_within(p, fld_id) {
                return Err(err(400, "Invalid parent_id"));
            }
        }
        let descr = params.get("descr");
        if let Some(f) = st.folders.get_mut(&fld_id) {
            if let Some(n) = name {
                f.name = n.to_owned();
            }
            if let Some(p) = parent {
                f.parent = p;
            }
            if let Some(d) = descr {
                f.descr = d.to_owned();
            }
        }
        Ok(ok(json!("true")))
    }
}

/// Decodes `%XX` escapes of a URL path segment (invalid UTF-8 is replaced, not refused).
fn percent_decode(seg: &str) -> String {
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn sort_newest_first(files: &mut [&FileRec]) {
    files.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.seq.cmp(&a.seq)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_xvs() {
        assert_eq!(
            escape_html(r#"A&B <c> "d" 'e' (f)"#),
            "A&amp;B &lt;c&gt; &quot;d&quot; &#39;e&#39; &#40;f&#41;"
        );
    }

    #[test]
    fn decodes_url_segments() {
        assert_eq!(percent_decode("My%20Video%281%29.mp4"), "My Video(1).mp4");
        assert_eq!(percent_decode("bad%2"), "bad%2");
    }

    #[test]
    fn alt_paths_replace_the_old_ones() {
        assert_eq!(Op::parse("file/deleted", false), Some(Op::Deleted));
        assert_eq!(Op::parse("files/deleted", false), None);
        assert_eq!(Op::parse("file/dmca", true), None);
        assert_eq!(Op::parse("files/dmca", true), Some(Op::Dmca));
        assert_eq!(Op::parse("file/nope", false), None);
    }
}
