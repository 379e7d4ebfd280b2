//! The JSON API under `/api/<group>/<op>`: parameter parsing, the reply envelope, the 19 calls.
//!
//! Each call follows the real server's code path (`xapi.pm`): its checks, messages,
//! quirks and the text it stores (titles and names are returned as stored).
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

use super::HostOptions;
use super::clock::{format_date, format_datetime, parse_datetime};
use super::faults::{Fault, Point};
use super::fetch;
use super::links;
use super::lock;
use super::state::{
    DeletedBy, EncodeState, Fetch, FileRec, Shared, State as HostState, UrlJob, UrlStatus,
};
use super::title::{parse_tags, secure_str};

/// Largest form-encoded POST body read for an API call.
const MAX_FORM_BODY: usize = 1 << 20;

/// The most codes `file/info` takes at once (the rest are silently dropped).
const MAX_INFO_CODES: usize = 50;

/// The most folders an account may have.
const MAX_FOLDERS: usize = 10_000;

/// A reply before it is put in the envelope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub status: u16,
    pub msg: String,
    pub result: Option<Value>,
    /// Calls left (minute or day), when a rate limit is configured.
    pub requests_available: Option<u64>,
}

fn ok(result: Value) -> Reply {
    Reply {
        status: 200,
        msg: "OK".to_owned(),
        result: Some(result),
        requests_available: None,
    }
}

fn err(status: u16, msg: impl Into<String>) -> Reply {
    Reply {
        status,
        msg: msg.into(),
        result: None,
        requests_available: None,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    requests_available: Option<u64>,
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

    /// The value as sent (not trimmed; an empty value is still "defined", as in Perl).
    pub(crate) fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
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
    FolderDelete,
    FileDelete,
    UrlUploads,
    UrlActions,
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
            "folder/delete" => Op::FolderDelete,
            "file/delete" => Op::FileDelete,
            "file/url_uploads" => Op::UrlUploads,
            "file/url_actions" => Op::UrlActions,
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
    let envelope = Envelope {
        msg: &reply.msg,
        server_time: format_datetime(host.clock.now_secs()),
        status: status_value(reply.status, as_string),
        result: reply.result.as_ref(),
        requests_available: reply.requests_available,
    };
    if let Some(fault) = host.faults.fire(point, Fault::is_malformed_reply) {
        let body = serde_json::to_value(&envelope).unwrap_or(Value::Null);
        return malformed_response(&fault, &Value::Array(vec![body.clone()]), &body);
    }
    json_response(&envelope)
}

/// A reply that is not what a client expects (`StoredThen*` faults): `array` for
/// `StoredThenArray`, else `body` made HTML, invalid JSON, or cut short.
pub(crate) fn malformed_response(fault: &Fault, array: &Value, body: &Value) -> Response {
    let text = serde_json::to_string(body).unwrap_or_default();
    match fault {
        Fault::StoredThenArray => json_response(array),
        Fault::StoredThenHtml => http_fault_response(&Fault::NotJson).1,
        Fault::StoredThenBadJson => {
            // A trailing comma and a PHP-style notice: not JSON any more.
            let bad = match text.strip_suffix('}') {
                Some(head) => format!("{head},}}\n<b>Notice</b>: output truncated"),
                None => format!("{text},"),
            };
            ([(header::CONTENT_TYPE, "application/json")], bad).into_response()
        }
        _ => cut_response(text.into_bytes()),
    }
}

/// Headers promising `body.len()` bytes, then half of them, then the connection closes.
pub(crate) fn cut_response(body: Vec<u8>) -> Response {
    let full = body.len();
    let half = bytes::Bytes::from(body[..full / 2].to_vec());
    // Half the body, a pause (so the headers and that half go out), then an error,
    // which makes hyper close the connection short of the promised length.
    let chunks = futures_util::stream::unfold(Some(Some(half)), |state| async move {
        match state {
            Some(Some(half)) => Some((Ok(half), Some(None))),
            Some(None) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let e = std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "reply cut short by a fault",
                );
                Some((Err::<bytes::Bytes, _>(e), None))
            }
            None => None,
        }
    });
    let mut resp = Response::new(Body::from_stream(chunks));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(full));
    resp
}

/// How many calls this request found already counted (for `requests_available`).
#[derive(Debug, Default)]
struct Used {
    day: Option<u32>,
    min: Option<u32>,
}

/// `requests_available` as the real `out` computes it: from the day limit, then
/// (overriding it) from the minute limit; never below 0; absent without limits.
fn requests_available(per_min: Option<u32>, per_day: Option<u32>, used: &Used) -> Option<u64> {
    let mut avail: Option<i64> = None;
    if let Some(day) = per_day {
        avail = Some(i64::from(day) - i64::from(used.day.unwrap_or(0)) - 1);
    }
    if let Some(min) = per_min {
        avail = Some(i64::from(min) - i64::from(used.min.unwrap_or(0)) - 1);
    }
    avail.map(|a| u64::try_from(a).unwrap_or(0))
}

/// Runs one API call against the state: key, operation, rate limits, then the call.
pub(crate) fn call(host: &Arc<Shared>, endpoint: &str, params: &Params) -> Reply {
    let opts = host.opts();
    let now_ms = host.clock.now_ms();
    let mut st = lock(&host.state);
    st.settle(now_ms, opts.dmca_delete_delay.as_secs());
    let mut used = Used::default();
    let mut reply = call_inner(host, &opts, &mut st, endpoint, params, now_ms, &mut used);
    reply.requests_available =
        requests_available(opts.rate_limit_per_min, opts.rate_limit_per_day, &used);
    reply
}

fn call_inner(
    host: &Arc<Shared>,
    opts: &HostOptions,
    st: &mut HostState,
    endpoint: &str,
    params: &Params,
    now_ms: u64,
    used: &mut Used,
) -> Reply {
    let now = now_ms / 1000;
    let point = Point::Api(endpoint);
    let limit = opts.rate_limit_per_min;
    match host.faults.fire(point, |f| {
        matches!(f, Fault::RateLimited | Fault::JsonError { .. })
    }) {
        Some(Fault::JsonError { status, msg }) => return err(status, msg),
        Some(_) => return rate_limited(limit.unwrap_or(5), "min"),
        None => {}
    }
    // The real order: key, then the operation, then the limits.
    let Some(key) = params.get("key") else {
        return err(400, "Invalid key");
    };
    let Some(login) = st.login_for_key(key) else {
        return err(403, "Wrong auth");
    };
    let Some(op) = Op::parse(endpoint, opts.alt_list_paths) else {
        return err(400, "Invalid operation");
    };
    if let Some(limit) = opts.rate_limit_per_day {
        let day = now / 86_400;
        let slot = st.rate_day.entry(login.clone()).or_insert((day, 0));
        if slot.0 != day {
            *slot = (day, 0);
        }
        used.day = Some(slot.1);
        if slot.1 >= limit {
            return rate_limited(limit, "day");
        }
        // Counted before the minute limit is checked: refused calls count too.
        slot.1 += 1;
    }
    if let Some(limit) = limit {
        let minute = now / 60;
        let slot = st.rate.entry(login.clone()).or_insert((minute, 0));
        if slot.0 != minute {
            *slot = (minute, 0);
        }
        used.min = Some(slot.1);
        if slot.1 >= limit {
            return rate_limited(limit, "min");
        }
        slot.1 += 1;
    }
    let disabled = match op {
        Op::DirectLink => opts.direct_link_disabled,
        Op::FileClone => opts.clone_disabled,
        _ => false,
    } || opts.disabled_calls.iter().any(|c| c == endpoint);
    if disabled {
        return err(403, "This function not allowed in API");
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
            requests_available: None,
        };
    }
    let ctx = Ctx {
        host,
        opts,
        login: &login,
        now_ms,
        now,
        encode_ms: opts.encode_ms(),
        list_lag_ms: opts.list_lag.as_millis() as u64,
    };
    let out = match op {
        Op::AccountInfo => ctx.account_info(st),
        Op::AccountStats => ctx.account_stats(st, params),
        Op::UploadServer => Ok(ctx.upload_server(st)),
        Op::UploadUrl => ctx.upload_url(st, params),
        Op::FileInfo => ctx.file_info(st, params),
        Op::FileEdit => ctx.file_edit(st, params),
        Op::FileList => ctx.file_list(st, params),
        Op::DirectLink => ctx.direct_link(st, params),
        Op::FileClone => ctx.file_clone(st, params),
        Op::Deleted => ctx.deleted(st, params),
        Op::Dmca => ctx.dmca(st, params),
        Op::Encodings => Ok(ctx.encodings(st, params)),
        Op::FolderList => ctx.folder_list(st, params),
        Op::FolderCreate => ctx.folder_create(st, params),
        Op::FolderEdit => ctx.folder_edit(st, params),
        Op::FolderDelete => ctx.folder_delete(st, params),
        Op::FileDelete => ctx.file_delete(st, params),
        Op::UrlUploads => Ok(ctx.url_uploads(st, params)),
        Op::UrlActions => Ok(ctx.url_actions(st, params)),
    };
    out.unwrap_or_else(|e| e)
}

/// Sleeps when a `Delay` fault fires at `point`.
pub(crate) async fn delay_fault(host: &Shared, point: Point<'_>) {
    if let Some(Fault::Delay(d)) = host.faults.fire(point, |f| matches!(f, Fault::Delay(_))) {
        tokio::time::sleep(d).await;
    }
}

fn rate_limited(n: u32, per: &str) -> Reply {
    err(403, format!("Requests limit reached: {n} per {per}"))
}

/// Perl truth of a form value: present, not empty, not `"0"`.
fn truthy(v: Option<&str>) -> bool {
    v.is_some_and(|v| !v.is_empty() && v != "0")
}

/// A value as MySQL reads a number from a string: its leading digits, else 0.
fn leading_u64(v: &str) -> u64 {
    let digits: String = v
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or(0)
}

/// `s/\D+//` (the first run only), as file/list treats `page` and `per_page`.
fn strip_first_non_digits(v: &str) -> String {
    let start = v.find(|c: char| !c.is_ascii_digit());
    match start {
        None => v.to_owned(),
        Some(i) => {
            let end = v[i..]
                .find(|c: char| c.is_ascii_digit())
                .map_or(v.len(), |j| i + j);
            format!("{}{}", &v[..i], &v[end..])
        }
    }
}

/// A file code as the real host accepts it in lists: exactly 12 word chars.
fn is_code(c: &str) -> bool {
    c.len() == 12 && c.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// SQL `LIKE` (case-insensitive, as MySQL's default collation): `%` any run, `_` any
/// one char, `\` escapes the next char.
fn sql_like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    // Iterative matcher with backtracking to the last `%`.
    let (mut ti, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let (pc, width) = match p.get(pi) {
            Some('\\') if pi + 1 < p.len() => (Some((p[pi + 1], true)), 2),
            Some(c) => (Some((*c, false)), 1),
            None => (None, 0),
        };
        match pc {
            Some(('%', false)) => {
                star = Some((pi + 1, ti));
                pi += 1;
            }
            Some(('_', false)) => {
                ti += 1;
                pi += width;
            }
            Some((c, _)) if c == t[ti] => {
                ti += 1;
                pi += width;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    while p.get(pi) == Some(&'%') {
        pi += 1;
    }
    pi == p.len()
}

/// What every call needs besides the state.
struct Ctx<'a> {
    /// Shared, not borrowed only: upload/url starts fetch tasks that hold it.
    host: &'a Arc<Shared>,
    opts: &'a HostOptions,
    login: &'a str,
    now_ms: u64,
    /// Files younger than this are not listed yet.
    list_lag_ms: u64,
    now: u64,
    encode_ms: u64,
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

    /// A folder of this account by a form value, if the value names one.
    fn own_folder(&self, st: &HostState, raw: &str) -> Option<u64> {
        let id: u64 = raw.trim().parse().ok()?;
        st.folders
            .get(&id)
            .filter(|f| f.owner == self.login)
            .map(|f| f.fld_id)
    }

    /// One file as `file/list` and `folder/list` show it (the title as stored).
    fn list_entry(&self, f: &FileRec) -> Value {
        json!({
            "file_code": f.code,
            "fld_id": f.fld_id.to_string(),
            "title": f.title,
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
        let (used_kb, count) = st.usage_kb(self.login);
        // As the real code computes it: quota in bytes minus KB used.
        let left = match self.opts.quota() {
            Some(q) => json!(q.saturating_sub(i64::try_from(used_kb).unwrap_or(i64::MAX))),
            None => json!("unlimited"),
        };
        Ok(ok(json!({
            "login": self.login,
            "email": format!("{}@example.com", self.login),
            "balance": "0.00000",
            "premium": 0,
            "premium_expire": "",
            "storage_used": used_kb.to_string(),
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
                requests_available: None,
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
        let base = match &self.opts.upload_host {
            Some(h) => format!("http://{h}:{}", self.host.upload_port),
            None => self.host.upload_base.clone(),
        };
        ok(json!(format!("{base}/upload/{n:02}")))
    }

    fn upload_url(&self, st: &mut HostState, params: &Params) -> CallResult {
        // The real host validates nothing: it unescapes, strips a few things and queues.
        let url = clean_url(params.raw("url").unwrap_or(""));
        if st.url_queue.iter().any(|j| j.url == url) {
            return Err(err(400, "This URL already in upload queue"));
        }
        let fld_id = params
            .raw("fld_id")
            .and_then(|v| self.own_folder(st, v))
            .unwrap_or(0);
        // The title a URL that is not fetched gets; a fetch names the file anew.
        let path = url.split(['?', '#']).next().unwrap_or("");
        let name = path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_owned();
        let title = super::upload::stored_title("", &name, self.opts);
        let code = st.new_file_code();
        let blob = self.host.data_dir.join(&code);
        let mut job = UrlJob {
            code: code.clone(),
            url,
            owner: self.login.to_owned(),
            fld_id,
            cat_id: params.raw("cat_id").map_or(0, leading_u64),
            public: truthy(params.raw("file_public")),
            adult: truthy(params.raw("file_adult")),
            tags: params.raw("tags").unwrap_or("").to_owned(),
            title,
            blob,
            queued_ms: self.now_ms,
            done_ms: self.now_ms,
            fetch: Fetch::Running {
                bytes: 0,
                total: None,
            },
            attempt: 0,
            task: None,
        };
        self.begin_fetch(&mut job);
        st.url_queue.push(job);
        Ok(ok(json!({ "filecode": code })))
    }

    /// Starts a try of `job` now (a new job, or an ERROR one restarted): a loopback
    /// URL is fetched in the background; any other is never connected to and ends
    /// as an empty file; with `url_fetch_fails` every try ends as a remote 500 would.
    /// The outcome shows once `url_fetch_time` has passed.
    fn begin_fetch(&self, job: &mut UrlJob) {
        let fetch_ms = u64::try_from(self.opts.url_fetch_time.as_millis()).unwrap_or(u64::MAX);
        job.queued_ms = self.now_ms;
        job.done_ms = self.now_ms.saturating_add(fetch_ms);
        job.attempt += 1;
        job.task = None;
        job.fetch = if self.opts.url_fetch_fails {
            Fetch::Failed(fetch::REMOTE_500.to_owned())
        } else if fetch::fetched_for_real(&job.url) {
            job.task = Some(fetch::start(
                self.host,
                &job.code,
                job.attempt,
                &job.url,
                job.blob.clone(),
            ));
            Fetch::Running {
                bytes: 0,
                total: None,
            }
        } else {
            // Nothing is fetched: the file holds no bytes.
            match std::fs::write(&job.blob, b"") {
                Ok(()) => Fetch::Fetched {
                    size: 0,
                    at_ms: self.now_ms,
                },
                Err(e) => Fetch::Failed(format!("Storage error: {e}")),
            }
        };
    }

    fn file_info(&self, st: &HostState, params: &Params) -> CallResult {
        let codes: Vec<&str> = params
            .raw("file_code")
            .unwrap_or("")
            .split(',')
            .filter(|c| is_code(c))
            .take(MAX_INFO_CODES)
            .collect();
        if codes.is_empty() {
            return Err(err(400, "Invalid file codes"));
        }
        // No owner filter: any existing file answers.
        let entries = codes
            .iter()
            .map(
                |code| match st.files.get(*code).filter(|f| f.deleted.is_none()) {
                    None => json!({ "status": 404, "file_code": code }),
                    Some(f) => {
                        let created = format_datetime(f.created_ms / 1000);
                        json!({
                            "status": if f.dmca.is_some() { 451 } else { 200 },
                            "file_code": f.code,
                            "canplay": u8::from(f.canplay(self.now_ms, self.encode_ms)),
                            "file_title": f.title,
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
                            "tags": f.tags.join(", "),
                        })
                    }
                },
            )
            .collect();
        Ok(ok(Value::Array(entries)))
    }

    fn file_edit(&self, st: &mut HostState, params: &Params) -> CallResult {
        // A real bug kept: it checks `title`, not `file_title`.
        if params.raw("title").is_some_and(|t| t.len() >= 2) {
            return Err(err(400, "Invalid file name"));
        }
        // A field whose value holds `<`, `>`, `"` or NUL is skipped, silently.
        let usable = |v: String| (!v.contains(['<', '>', '"', '\0'])).then_some(v);
        let title = params.raw("file_title").map(secure_str).and_then(usable);
        let descr = params.raw("file_descr").map(secure_str).and_then(usable);
        let raw = |name: &str| params.raw(name).map(str::to_owned).and_then(usable);
        let flag = |name: &str| params.raw(name).map(|v| truthy(Some(v)));
        let public = flag("file_public");
        let adult = flag("file_adult");
        let cat_id = raw("cat_id").map(|v| leading_u64(&v));
        // The folder is not checked: any number is taken.
        let fld_id = raw("file_fld_id").map(|v| leading_u64(&v));
        let codes: Vec<&str> = params
            .raw("file_code")
            .unwrap_or("")
            .split(',')
            .filter(|c| is_code(c))
            .collect();
        let tags = params.raw("tags").unwrap_or("");
        for code in &codes {
            let Some(f) = st.files.get_mut(*code).filter(|f| f.deleted.is_none()) else {
                // Unknown codes are skipped silently and the call still says "true".
                continue;
            };
            // Tags are wiped and re-set for every named file, whoever owns it.
            f.tags.clear();
            parse_tags(tags, &mut f.tags);
            if f.owner.as_deref() != Some(self.login) {
                continue;
            }
            if let Some(v) = &title {
                f.title.clone_from(v);
            }
            if let Some(v) = &descr {
                f.descr.clone_from(v);
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

    fn file_list(&self, st: &mut HostState, params: &Params) -> CallResult {
        let raw_fld = params.raw("fld_id");
        // A folder that is missing or not yours filters nothing (lists every file).
        let fld_id = match raw_fld {
            Some("0") => Some(0),
            v if truthy(v) => v.and_then(|v| self.own_folder(st, v)),
            _ => None,
        };
        let bit = |name: &str| match params.raw(name) {
            Some("0") => Some(false),
            Some("1") => Some(true),
            _ => None,
        };
        let public = bit("public");
        let adult = bit("adult");
        let raw_created = params.raw("created").unwrap_or("");
        let created_after = if raw_created.len() == 19 && parse_datetime(raw_created).is_some() {
            parse_datetime(raw_created)
        } else if !raw_created.is_empty() && raw_created.chars().all(|c| c.is_ascii_digit()) {
            Some(
                self.now
                    .saturating_sub(leading_u64(raw_created).saturating_mul(60)),
            )
        } else {
            None
        };
        let title = params
            .raw("title")
            .filter(|t| truthy(Some(t)) && !t.contains(['"', '\0', '\n', '\r']));
        let per_page = match leading_u64(&strip_first_non_digits(
            params.raw("per_page").unwrap_or(""),
        )) {
            0 => 100,
            n => n.min(1000),
        } as usize;
        let page = leading_u64(&strip_first_non_digits(params.raw("page").unwrap_or(""))) as usize;
        let filtered = |f: &&FileRec| {
            f.visible_to(self.login)
                && fld_id.is_none_or(|id| f.fld_id == id)
                && title.is_none_or(|t| sql_like(&f.title, &format!("%{t}%")))
                && created_after.is_none_or(|at| f.created_ms / 1000 > at)
                && public.is_none_or(|p| f.public == p)
                && adult.is_none_or(|a| f.adult == a)
        };
        let mut files: Vec<&FileRec> = st
            .files
            .values()
            .filter(filtered)
            .filter(|f| f.created_ms.saturating_add(self.list_lag_ms) <= self.now_ms)
            .collect();
        sort_newest_first(&mut files);
        let start = page.saturating_mul(per_page).saturating_sub(per_page);
        let shown: Vec<Value> = files
            .iter()
            .skip(start)
            .take(per_page)
            .map(|f| self.list_entry(f))
            .collect();
        // The total comes from a cache keyed by the query text; it can lag.
        let key = format!(
            "{}|{fld_id:?}|{public:?}|{adult:?}|{raw_created}|{title:?}",
            self.login
        );
        let ttl = self.opts.list_total_cache.as_secs();
        let total = match st.list_cache.get(&key) {
            Some((n, at)) if self.now < at.saturating_add(ttl) => *n,
            _ => {
                let n = st.files.values().filter(filtered).count() as u64;
                if ttl > 0 {
                    st.list_cache.insert(key, (n, self.now));
                }
                n
            }
        };
        let pages = if shown.is_empty() {
            0
        } else {
            (0.990 + total as f64 / shown.len() as f64) as u64
        };
        Ok(ok(json!({
            "results": shown.len(),
            "results_total": total,
            "pages": pages,
            "files": shown,
        })))
    }

    fn direct_link(&self, st: &HostState, params: &Params) -> CallResult {
        let code = params.raw("file_code").unwrap_or("");
        // No owner filter, as on the real host.
        let Some(f) = st.files.get(code).filter(|f| f.deleted.is_none()) else {
            if st.url_queue.iter().any(|j| j.code == code) {
                return Ok(Reply {
                    status: 200,
                    msg: "uploading".to_owned(),
                    result: None,
                    requests_available: None,
                });
            }
            return Err(err(404, "no file"));
        };
        // Pointing at the storage server, signed, valid for `direct_link_ttl`; the
        // last path segment is what a host fetching the link names the file after.
        let now = self.now;
        let ttl = self.opts.direct_link_ttl;
        let url = |q: &str, fname: &str| {
            links::direct_link(self.host, &f.code, f.seq, q, fname, now, ttl)
        };
        // The versions that exist: `n` once encoded, `o` (the original) when it has bytes.
        let mut versions: Vec<(&str, u64)> = Vec::new();
        if f.canplay(self.now_ms, self.encode_ms) {
            versions.push(("n", f.size));
        }
        if f.size > 0 {
            versions.push(("o", f.size));
        }
        if let Some(q) = params.raw("q")
            && q.chars().count() == 1
            && q.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            let link = if versions.iter().any(|(n, _)| *n == q) {
                url(q, "v.mp4")
            } else {
                String::new()
            };
            return Ok(ok(json!(link)));
        }
        let mut result = json!({
            "versions": versions
                .iter()
                .map(|(n, size)| {
                    let fname = format!("{}_{n}.mp4", f.code);
                    json!({ "name": n, "size": size.to_string(), "url": url(n, &fname) })
                })
                .collect::<Vec<_>>(),
            "file_length": f.length(self.now_ms, self.encode_ms).to_string(),
            "player_img": self.thumbnail(&f.code),
        });
        if truthy(params.raw("hls")) {
            result["hls_direct"] =
                json!(format!("{}/hls/{}/master.m3u8", self.host.api_base, f.code));
        }
        Ok(ok(result))
    }

    fn file_clone(&self, st: &mut HostState, params: &Params) -> CallResult {
        let code = params.raw("file_code").unwrap_or("");
        // Any live file can be cloned (public sharing), not only one's own.
        let src = st
            .files
            .get(code)
            .filter(|f| f.deleted.is_none())
            .ok_or_else(|| err(404, "No file"))?
            .clone();
        let new_code = st.new_file_code();
        let seq = st.take_seq();
        let encoded = src.canplay(self.now_ms, self.encode_ms);
        let title = params
            .raw("file_title")
            .map(secure_str)
            .filter(|t| truthy(Some(t)))
            .unwrap_or(src.title.clone());
        st.files.insert(
            new_code.clone(),
            FileRec {
                code: new_code.clone(),
                title,
                // The folder is not checked: any number is taken.
                fld_id: params.raw("fld_id").map_or(0, leading_u64),
                owner: Some(self.login.to_owned()),
                created_ms: self.now_ms,
                seq,
                public: truthy(params.raw("file_public")),
                adult: truthy(params.raw("file_adult")),
                cat_id: params
                    .raw("cat_id")
                    .filter(|v| truthy(Some(v)))
                    .map_or(src.cat_id, leading_u64),
                tags: Vec::new(),
                encoded,
                stuck: false,
                deleted: None,
                dmca: None,
                trash_cleaned: false,
                is_clone: true,
                ..src
            },
        );
        Ok(ok(json!({
            "filecode": new_code,
            "url": format!("{}/{new_code}", self.host.api_base),
        })))
    }

    /// `last` in hours; anything but digits means 30 days, as on the real host.
    fn last_hours(params: &Params) -> u64 {
        match params.raw("last") {
            Some(v) if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) => leading_u64(v),
            _ => 24 * 30,
        }
    }

    fn deleted(&self, st: &HostState, params: &Params) -> CallResult {
        let last = Self::last_hours(params);
        let since = self.now.saturating_sub(last.saturating_mul(3600));
        let mut rows: Vec<(u64, &FileRec, DeletedBy)> = st
            .files
            .values()
            .filter(|f| f.owner.as_deref() == Some(self.login) && !f.trash_cleaned)
            .filter_map(|f| f.deleted.map(|(at, by)| (at, f, by)))
            .filter(|(at, _, _)| *at > since)
            .collect();
        rows.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.seq.cmp(&a.1.seq)));
        let out: Vec<Value> = rows
            .into_iter()
            .map(|(at, f, by)| {
                json!({
                    "file_code": f.code,
                    "title": f.title,
                    "deleted": format_datetime(at),
                    "deleted_ago_sec": self.now.saturating_sub(at).to_string(),
                    "deleted_by": by.as_str(),
                })
            })
            .collect();
        Ok(ok(Value::Array(out)))
    }

    fn dmca(&self, st: &HostState, params: &Params) -> CallResult {
        let last = Self::last_hours(params);
        let since = self.now.saturating_sub(last.saturating_mul(3600));
        // Filtered on the report time; a deletion not carried out yet is overdue.
        let mut rows: Vec<(u64, &FileRec)> = st
            .files
            .values()
            .filter(|f| f.visible_to(self.login))
            .filter_map(|f| match f.dmca {
                Some((reported, at)) if reported > since => Some((at, f)),
                _ => None,
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.seq.cmp(&b.1.seq)));
        let out: Vec<Value> = rows
            .into_iter()
            .map(|(at, f)| {
                let in_sec = i128::from(at) - i128::from(self.now);
                json!({
                    "file_code": f.code,
                    "del_time": format_datetime(at),
                    "del_in_sec": in_sec.to_string(),
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
                    "title": f.title,
                    "status": status,
                    "progress": progress,
                    "link": self.link(&f.code),
                }))
            })
            .collect();
        ok(Value::Array(out))
    }

    fn folder_list(&self, st: &HostState, params: &Params) -> CallResult {
        let raw = params.raw("fld_id");
        let fld_id = if truthy(raw) {
            raw.and_then(|v| self.own_folder(st, v))
                .ok_or_else(|| err(403, "Folder not exist or not yours"))?
        } else {
            0
        };
        let folders: Vec<Value> = st
            .folders
            .values()
            .filter(|f| f.parent == fld_id && f.owner == self.login)
            .map(|f| {
                json!({
                    "fld_id": f.fld_id.to_string(),
                    "name": f.name,
                    "code": f.code,
                })
            })
            .collect();
        let mut result = json!({ "folders": folders });
        if truthy(params.raw("files")) {
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
        if st.folder_count(self.login) >= MAX_FOLDERS {
            return Err(err(
                400,
                format!("You have can't have more than {MAX_FOLDERS} folders"),
            ));
        }
        let raw_parent = params.raw("parent_id");
        let parent = if truthy(raw_parent) {
            raw_parent
                .and_then(|v| self.own_folder(st, v))
                .ok_or_else(|| err(403, "Parent folder not exist or not yours"))?
        } else {
            0
        };
        let name = secure_str(params.raw("name").unwrap_or(""));
        if name.len() < 2 {
            return Err(err(400, "Invalid folder name"));
        }
        let descr = secure_str(params.raw("descr").unwrap_or(""));
        let fld_id = st.create_folder(self.login, parent, &name, &descr);
        Ok(ok(json!({ "fld_id": fld_id.to_string() })))
    }

    fn folder_edit(&self, st: &mut HostState, params: &Params) -> CallResult {
        let raw = params.raw("fld_id").unwrap_or("");
        if raw.is_empty() || !raw.chars().all(|c| c.is_ascii_digit()) {
            return Err(err(400, "Folder id required"));
        }
        let fld_id = self
            .own_folder(st, raw)
            .ok_or_else(|| err(403, "Folder not exist"))?;
        let name = params.raw("name").map(|n| {
            if truthy(Some(n)) {
                secure_str(n)
            } else {
                n.to_owned()
            }
        });
        if name.as_ref().is_some_and(|n| n.len() < 2) {
            return Err(err(400, "Invalid folder name"));
        }
        // `s/\D+//g`: an empty or non-numeric parent_id means the root.
        let parent: Option<u64> = params.raw("parent_id").map(|p| {
            let digits: String = p.chars().filter(char::is_ascii_digit).collect();
            digits.parse().unwrap_or(0)
        });
        if let Some(p) = parent {
            if p == fld_id {
                return Err(err(400, "Invalid parent folder id"));
            }
            // No cycle check, as on the real host.
            if p != 0 && self.own_folder(st, &p.to_string()).is_none() {
                return Err(err(400, "Invalid parent folder id"));
            }
        }
        let descr = params.raw("descr").map(|d| {
            if truthy(Some(d)) {
                secure_str(d)
            } else {
                d.to_owned()
            }
        });
        if let Some(f) = st.folders.get_mut(&fld_id) {
            if let Some(n) = name {
                f.name = n;
            }
            if let Some(p) = parent {
                f.parent = p;
            }
            if let Some(d) = descr {
                f.descr = d;
            }
        }
        Ok(ok(json!("true")))
    }

    fn folder_delete(&self, st: &mut HostState, params: &Params) -> CallResult {
        let raw = params.raw("fld_id").unwrap_or("");
        if raw.is_empty() || !raw.chars().all(|c| c.is_ascii_digit()) {
            return Err(err(400, "Folder id required"));
        }
        let fld_id = self
            .own_folder(st, raw)
            .ok_or_else(|| err(403, "Folder not exist"))?;
        if st.files_in_folder(fld_id) > 0 {
            return Err(err(403, "Folder have files inside"));
        }
        if st.folders.values().any(|f| f.parent == fld_id) {
            return Err(err(403, "Folder have sub-folders inside"));
        }
        st.folders.remove(&fld_id);
        Ok(msg_only("OK"))
    }

    fn file_delete(&self, st: &mut HostState, params: &Params) -> CallResult {
        let code = params.raw("file_code").unwrap_or("");
        let f = st
            .files
            .get_mut(code)
            .filter(|f| f.visible_to(self.login))
            .ok_or_else(|| err(404, "No file"))?;
        f.deleted = Some((self.now, DeletedBy::Me));
        f.dmca = None;
        Ok(msg_only("OK"))
    }

    fn url_uploads(&self, st: &HostState, params: &Params) -> Reply {
        let filter = params.raw("file_code").filter(|c| is_code(c));
        let mut jobs: Vec<(UrlStatus, u64, &UrlJob)> = st
            .url_queue
            .iter()
            .filter(|j| j.owner == self.login)
            .filter(|j| filter.is_none_or(|c| j.code == c))
            .map(|j| {
                let (status, progress) = j.status(self.now_ms);
                (status, progress, j)
            })
            .collect();
        // ORDER BY status DESC, started DESC.
        jobs.sort_by(|a, b| {
            b.0.as_str()
                .cmp(a.0.as_str())
                .then(b.2.queued_ms.cmp(&a.2.queued_ms))
        });
        // These five fields and no more: the real call does not return the error text.
        let out: Vec<Value> = jobs
            .into_iter()
            .map(|(status, progress, j)| {
                json!({
                    "file_code": j.code,
                    "remote_url": j.url,
                    "fld_id": j.fld_id.to_string(),
                    "status": status.as_str(),
                    "progress": progress,
                })
            })
            .collect();
        ok(Value::Array(out))
    }

    fn url_actions(&self, st: &mut HostState, params: &Params) -> Reply {
        let mine = |j: &UrlJob| j.owner == self.login;
        let failed = |j: &UrlJob| j.status(self.now_ms).0 == UrlStatus::Error;
        // Each action in the real order; every one may be given in the same call.
        if truthy(params.raw("restart_errors")) {
            for j in st.url_queue.iter_mut().filter(|j| mine(j) && failed(j)) {
                self.begin_fetch(j);
            }
        }
        if truthy(params.raw("delete_errors")) {
            drop_jobs(st, |j| mine(j) && failed(j));
        }
        if truthy(params.raw("delete_all")) {
            drop_jobs(st, mine);
        }
        if let Some(codes) = params.raw("delete_code") {
            let codes: Vec<&str> = codes.split(',').filter(|c| is_code(c)).collect();
            // A job being fetched goes too: its fetch is stopped and the file never appears.
            drop_jobs(st, |j| mine(j) && codes.contains(&j.code.as_str()));
        }
        msg_only("OK")
    }
}

/// Removes the upload/url jobs `which` picks, stopping their fetches.
fn drop_jobs(st: &mut HostState, which: impl Fn(&UrlJob) -> bool) {
    st.url_queue.retain(|j| {
        let drop = which(j);
        if drop {
            j.discard();
        }
        !drop
    });
}

/// The URL as the real upload/url stores it: unescaped (`uri_unescape`), then stripped
/// of `` ` ``, `|`, `<`, `>`, `"`, `&&`, the words base64/xvideos/youtube (any case),
/// NUL, and white space at either end.
fn clean_url(raw: &str) -> String {
    let mut url: String = percent_decode(raw)
        .chars()
        .filter(|c| !matches!(c, '`' | '|' | '>' | '<' | '"' | '\0'))
        .collect();
    url = url.replace("&&", "");
    // One pass, as `s/(base64|xvideos|youtube)//gi` does ("youyoutubetube" keeps one).
    let lower = url.to_ascii_lowercase();
    let mut out = String::with_capacity(url.len());
    let mut i = 0;
    while let Some(c) = url[i..].chars().next() {
        match ["base64", "xvideos", "youtube"]
            .iter()
            .find(|w| lower[i..].starts_with(*w))
        {
            Some(w) => i += w.len(),
            None => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out.trim().to_owned()
}

/// `{status: 200, msg}` with no result.
fn msg_only(msg: &str) -> Reply {
    Reply {
        status: 200,
        msg: msg.to_owned(),
        result: None,
        requests_available: None,
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
    fn cleans_urls_as_upload_url_stores_them() {
        assert_eq!(
            clean_url("%20http://h/a%20b.mp4?x=1&&y=%22q%22 "),
            "http://h/a b.mp4?x=1y=q"
        );
        assert_eq!(
            clean_url("http://h/YouTube/youyoutubetube.mp4"),
            "http://h//youtube.mp4"
        );
        assert_eq!(clean_url("http://h/Base64é.mp4"), "http://h/é.mp4");
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
