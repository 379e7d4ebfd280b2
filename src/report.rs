//! The read-only commands over the store: `status`, `list`, `links` and
//! `retry`.
//! They open the database beside a running daemon (WAL allows it).

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::config::Config;
use crate::store::{FileRow, State, Store};

fn open(config: &Config) -> Result<Store, ExitCode> {
    Store::open_existing(&config.state.database).map_err(|e| {
        eprintln!("vidsync: {e}");
        ExitCode::from(1)
    })
}

/// The store seen from each configured host (or only the one named), in
/// config order.
fn host_views(config: &Config, only: Option<&str>) -> Result<Vec<Store>, ExitCode> {
    if let Some(name) = only
        && config.host(name).is_none()
    {
        let names: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
        eprintln!(
            "vidsync: no host named {name:?} in the config (hosts: {})",
            names.join(", ")
        );
        return Err(ExitCode::from(2));
    }
    let base = open(config)?;
    Ok(config
        .hosts
        .iter()
        .filter(|h| only.is_none_or(|n| n == h.name))
        .map(|h| base.for_host(&h.name))
        .collect())
}

/// One `list --json` entry: one per file and host. The first eight keys
/// are the stable interface of PRODUCT.md; others may be added, never
/// removed or renamed.
pub fn file_json(host: &str, f: &FileRow) -> Value {
    json!({
        "host": host,
        "path": f.path().to_string_lossy(),
        "sync": f.root.to_string_lossy(),
        "state": f.state.as_str(),
        "file_code": f.file_code,
        "fld_id": f.fld_id,
        "size": f.stat.size,
        "attempts": f.attempts,
        "error": f.last_error,
        "title": f.title,
        "playable": f.playable.unwrap_or(false),
        "encoding": f.encoding,
        "encoding_progress": f.encoding_progress,
        "deleted_by": f.deleted_by,
        "remote_event_at": f.remote_event_at,
        "next_attempt_at": f.next_attempt_at,
        "updated_at": f.updated_at,
    })
}

/// `vidsync list`.
pub fn list(config: &Config, as_json: bool, state: Option<State>) -> ExitCode {
    let views = match host_views(config, None) {
        Ok(v) => v,
        Err(c) => return c,
    };
    let mut rows = Vec::new();
    for store in &views {
        match store.list(state) {
            Ok(r) => rows.extend(r.into_iter().map(|f| (store.host().to_string(), f))),
            Err(e) => {
                eprintln!("vidsync: {e}");
                return ExitCode::from(1);
            }
        }
    }
    // By path, then host in config order: a file's copies stand together.
    rows.sort_by_key(|r| r.1.path());
    let several = views.len() > 1;
    if as_json {
        let arr: Vec<Value> = rows.iter().map(|(h, f)| file_json(h, f)).collect();
        println!("{}", Value::Array(arr));
    } else {
        for (host, f) in &rows {
            println!(
                "{}{:<15} {:<13} {}{}",
                if several {
                    format!("{host:<12} ")
                } else {
                    String::new()
                },
                f.state.as_str(),
                f.file_code.as_deref().unwrap_or("-"),
                f.path().display(),
                f.last_error
                    .as_deref()
                    .map(|e| format!("  ({e})"))
                    .unwrap_or_default()
            );
        }
    }
    ExitCode::SUCCESS
}

/// The status report as JSON (also the source of the human table): the
/// keys of one host at the top (summed over the hosts where there are
/// several), and each host's own under `hosts`.
pub fn status_of(views: &[Store]) -> Result<Value, crate::store::StoreError> {
    let mut hosts = Vec::with_capacity(views.len());
    for store in views {
        let mut v = host_status_json(store)?;
        v["name"] = json!(store.host());
        hosts.push(v);
    }
    let mut top = match hosts.as_slice() {
        [] => json!({}),
        [one] => one.clone(),
        several => merged(several),
    };
    if let Some(obj) = top.as_object_mut() {
        obj.remove("name");
        if let Some(first) = views.first() {
            obj.insert("notify".into(), notify_json(first)?);
        }
        obj.insert("hosts".into(), Value::Array(hosts));
    }
    Ok(top)
}

/// The status of a library with one host (the store's).
pub fn status_json(store: &Store) -> Result<Value, crate::store::StoreError> {
    status_of(std::slice::from_ref(store))
}

/// The library's status from its hosts': counts, queue and uploads added
/// up, the key ok only if every host's is, the latest error of any.
fn merged(hosts: &[Value]) -> Value {
    let mut top = hosts[0].clone();
    let mut counts = serde_json::Map::new();
    for s in State::ALL {
        let n: u64 = hosts
            .iter()
            .map(|h| h["counts"][s.as_str()].as_u64().unwrap_or(0))
            .sum();
        counts.insert(s.as_str().into(), json!(n));
    }
    top["counts"] = Value::Object(counts);
    let sum = |k: &str| {
        hosts
            .iter()
            .map(|h| h[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    top["queue"] = json!(sum("queue"));
    top["incomplete_count"] = json!(
        hosts
            .iter()
            .map(|h| h["incomplete_count"].as_u64().unwrap_or(0))
            .max()
    );
    top["encoding_stuck"] = json!(sum("encoding_stuck"));
    let copied = |k: &str| {
        hosts
            .iter()
            .map(|h| h["copied"][k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    top["copied"] = json!({"files": copied("files"), "bytes": copied("bytes")});
    let concat = |k: &str| {
        Value::Array(
            hosts
                .iter()
                .flat_map(|h| h[k].as_array().cloned().unwrap_or_default())
                .collect(),
        )
    };
    top["uploading"] = concat("uploading");
    top["encoding"] = concat("encoding");
    let keys: Vec<Option<bool>> = hosts.iter().map(|h| h["key_ok"].as_bool()).collect();
    top["key_ok"] = if keys.contains(&Some(false)) {
        json!(false)
    } else if keys.iter().all(|k| *k == Some(true)) {
        json!(true)
    } else {
        Value::Null
    };
    top["next_retry_in_ms"] = json!(
        hosts
            .iter()
            .filter_map(|h| h["next_retry_in_ms"].as_i64())
            .min()
    );
    if let Some(latest) = hosts
        .iter()
        .filter(|h| h["last_error_at"].is_i64())
        .max_by_key(|h| h["last_error_at"].as_i64())
    {
        let host = latest["name"].as_str().unwrap_or("?");
        top["last_error"] = json!(format!(
            "{host}: {}",
            latest["last_error"].as_str().unwrap_or("?")
        ));
        top["last_error_at"] = latest["last_error_at"].clone();
    }
    top
}

/// One host's status.
fn host_status_json(store: &Store) -> Result<Value, crate::store::StoreError> {
    let counts = store.counts()?;
    let now = now_ms();
    let inflight: Vec<Value> = store
        .progress()?
        .iter()
        .map(|p| {
            json!({
                "path": p.path.to_string_lossy(),
                "sent": p.sent,
                "total": p.total,
                "rate": p.rate,
            })
        })
        .collect();
    let rate: u64 = inflight
        .iter()
        .map(|u| u["rate"].as_u64().unwrap_or(0))
        .sum();
    let mut count_map = serde_json::Map::new();
    for (s, n) in &counts {
        count_map.insert(s.as_str().to_string(), json!(n));
    }
    let queued = counts
        .iter()
        .find(|(s, _)| *s == State::Queued)
        .map_or(0, |(_, n)| *n);
    let (last_error, last_error_at) = match store.last_error()? {
        Some(e) => (Some(e.error), e.at),
        None => (None, None),
    };
    let encoding: Vec<Value> = store
        .encoding_pending()?
        .iter()
        .map(|f| {
            json!({
                "path": f.path().to_string_lossy(),
                "file_code": f.file_code,
                "status": f.encoding,
                "progress": f.encoding_progress,
            })
        })
        .collect();
    let stuck = encoding.iter().filter(|e| e["status"] == "STUCK").count();
    // An account-wide pause still in force: until when, and why.
    let paused: Value = store.account_pause()?.filter(|p| p.until > now).map_or(
        Value::Null,
        |p| json!({"until": p.until, "reason": p.reason}),
    );
    // Files held back as not complete yet (holes, a container cut short, a
    // writer), with their reasons: the first few, the oldest first.
    let mut held = store.held_incomplete()?;
    held.sort_by_key(|f| f.stable_since);
    let incomplete: Vec<Value> = held
        .iter()
        .take(10)
        .map(|f| {
            json!({
                "path": f.path().to_string_lossy(),
                "reason": f.incomplete,
                "unchanged_ms": (now - f.stable_since).max(0),
            })
        })
        .collect();
    let last_reconcile: Value = store
        .last_reconcile()?
        .and_then(|r| serde_json::to_value(r).ok())
        .unwrap_or(Value::Null);
    let copied = store.copied()?;
    Ok(json!({
        "counts": count_map,
        "copied": {"files": copied.files, "bytes": copied.bytes},
        "encoding": encoding,
        "encoding_stuck": stuck,
        "uploading": inflight,
        "queue": queued,
        "next_retry_in_ms": store.next_retry_at()?.map(|t| (t - now).max(0)),
        "last_reconcile": last_reconcile,
        "last_error": last_error,
        "last_error_at": last_error_at,
        "key_ok": store.key_ok()?,
        "storage_left": store.storage_left()?.map(|s| s.to_string()),
        "paused": paused,
        "incomplete_count": held.len(),
        "incomplete": incomplete,
        "rate": rate,
    }))
}

/// `status --json` key `notify`: each `[[notify]]` target's health.
fn notify_json(store: &Store) -> Result<Value, crate::store::StoreError> {
    let targets: Vec<Value> = store
        .notify_health()?
        .iter()
        .map(|t| {
            json!({
                "target": t.label,
                "ok": t.failing_since.is_none(),
                "last_ok_at": t.last_ok_at,
                "failing_since": t.failing_since,
                "last_error": t.last_error,
                "last_error_at": t.last_error_at,
                "pending": t.pending,
                "gave_up": t.gave_up,
            })
        })
        .collect();
    Ok(Value::Array(targets))
}

/// `vidsync status`.
pub fn status(config: &Config, as_json: bool) -> ExitCode {
    let views = match host_views(config, None) {
        Ok(v) => v,
        Err(c) => return c,
    };
    let v = match status_of(&views) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vidsync: {e}");
            return ExitCode::from(1);
        }
    };
    if as_json {
        println!("{v}");
        return ExitCode::SUCCESS;
    }
    println!("files by state:");
    for s in State::ALL {
        let n = v["counts"][s.as_str()].as_u64().unwrap_or(0);
        println!("  {:<15} {n}", s.as_str());
    }
    if let Some(list) = v["uploading"].as_array() {
        for u in list {
            let total = u["total"].as_u64().unwrap_or(0).max(1);
            let sent = u["sent"].as_u64().unwrap_or(0);
            println!(
                "uploading {} {:.0}% ({} of {} bytes, {:.1} MiB/s)",
                u["path"].as_str().unwrap_or("?"),
                sent as f64 * 100.0 / total as f64,
                sent,
                total,
                u["rate"].as_u64().unwrap_or(0) as f64 / 1048576.0
            );
        }
    }
    let show = |k: &str| match &v[k] {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    println!(
        "queue: {}  next retry in: {} ms",
        show("queue"),
        show("next_retry_in_ms")
    );
    println!(
        "key works: {}  storage left: {}",
        show("key_ok"),
        show("storage_left")
    );
    if let Some(reason) = v["paused"]["reason"].as_str() {
        let secs =
            (v["paused"]["until"].as_i64().unwrap_or(0) - crate::clock::now_ms()).max(0) / 1000;
        println!("uploads paused for {secs} s: {reason}");
    }
    if let Some(n) = v["incomplete_count"].as_u64().filter(|n| *n > 0) {
        println!("held back, not complete yet: {n} (`vidsync retry PATH` uploads one anyway)");
        for f in v["incomplete"].as_array().into_iter().flatten() {
            println!(
                "  {}: {} (unchanged for {} min)",
                f["path"].as_str().unwrap_or("?"),
                f["reason"].as_str().unwrap_or("?"),
                f["unchanged_ms"].as_i64().unwrap_or(0) / 60_000
            );
        }
    }
    if let Some(list) = v["encoding"].as_array() {
        for e in list {
            println!(
                "encoding {} {} {}%",
                e["path"].as_str().unwrap_or("?"),
                e["status"].as_str().unwrap_or("PENDING"),
                e["progress"].as_u64().unwrap_or(0)
            );
        }
    }
    for t in v["notify"].as_array().into_iter().flatten() {
        let label = t["target"].as_str().unwrap_or("?");
        let (pending, gave_up) = (&t["pending"], &t["gave_up"]);
        if t["ok"].as_bool() == Some(false) {
            let mins = (crate::clock::now_ms() - t["failing_since"].as_i64().unwrap_or(0)) / 60_000;
            println!(
                "notify {label}: FAILING for {mins} min: {} ({pending} pending, {gave_up} given up)",
                t["last_error"].as_str().unwrap_or("?")
            );
        } else {
            println!("notify {label}: ok ({pending} pending, {gave_up} given up)");
        }
    }
    let hosts = v["hosts"].as_array().cloned().unwrap_or_default();
    if hosts.len() > 1 {
        for h in &hosts {
            let show = |k: &str| match &h[k] {
                Value::Null => "-".to_string(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let c = &h["counts"];
            println!(
                "host {}: key works: {}  storage left: {}  uploaded: {}  queue: {}  uploading: {} ({:.1} MiB/s)  failed: {}",
                show("name"),
                show("key_ok"),
                show("storage_left"),
                c["uploaded"].as_u64().unwrap_or(0),
                show("queue"),
                h["uploading"].as_array().map_or(0, |a| a.len()),
                h["rate"].as_u64().unwrap_or(0) as f64 / 1048576.0,
                c["failed"].as_u64().unwrap_or(0),
            );
            if let Some(n) = h["copied"]["files"].as_u64().filter(|n| *n > 0) {
                println!(
                    "  copied from another host: {n} files, {}",
                    bytes_text(h["copied"]["bytes"].as_u64().unwrap_or(0))
                );
            }
            if let Some(reason) = h["paused"]["reason"].as_str() {
                println!("  paused: {reason}");
            }
            if h["last_error_at"].is_i64() {
                println!(
                    "  last error: {} s ago: {}",
                    (now_ms() - h["last_error_at"].as_i64().unwrap_or(0)) / 1000,
                    show("last_error")
                );
            }
        }
    }
    if let Some(n) = v["copied"]["files"].as_u64().filter(|n| *n > 0) {
        println!(
            "copied host to host: {n} files, {} not sent from this machine (copy_from)",
            bytes_text(v["copied"]["bytes"].as_u64().unwrap_or(0))
        );
    }
    let lr = &v["last_reconcile"];
    if lr.is_null() {
        println!("last reconcile: -");
    } else {
        let when = lr["at"]
            .as_i64()
            .map(|t| (now_ms() - t) / 1000)
            .map_or("?".into(), |s| format!("{s} s ago"));
        println!(
            "last reconcile: {when}: {}",
            lr["result"].as_str().unwrap_or("?")
        );
    }
    match v["last_error_at"].as_i64() {
        Some(at) => println!(
            "last error: {} s ago: {}",
            (now_ms() - at) / 1000,
            show("last_error")
        ),
        None => println!("last error: {}", show("last_error")),
    }
    ExitCode::SUCCESS
}

/// Bytes for a person: the exact count, and in GiB or MiB.
fn bytes_text(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n as f64 >= 1024.0 * MIB {
        format!("{n} bytes ({:.1} GiB)", n as f64 / 1024.0 / MIB)
    } else {
        format!("{n} bytes ({:.1} MiB)", n as f64 / MIB)
    }
}

/// `vidsync retry [--host NAME] [PATH...]`: on every host, or only the
/// one named.
pub fn retry(config: &Config, paths: &[PathBuf], host: Option<&str>) -> ExitCode {
    let views = match host_views(config, host) {
        Ok(v) => v,
        Err(c) => return c,
    };
    let abs: Vec<PathBuf> = paths
        .iter()
        .map(|p| {
            std::fs::canonicalize(p)
                .or_else(|_| std::path::absolute(p))
                .unwrap_or_else(|_| p.clone())
        })
        .collect();
    // Named files held back as incomplete are uploaded anyway.
    let once = |store: &Store| -> Result<(usize, usize), crate::store::StoreError> {
        let forced = if abs.is_empty() {
            0
        } else {
            store.force_upload(&abs, now_ms())?
        };
        Ok((store.retry_failed(&abs, now_ms())?, forced))
    };
    let mut total = Ok((0, 0));
    for store in &views {
        total = total.and_then(|(n, f)| once(store).map(|(n2, f2)| (n + n2, f + f2)));
    }
    match total {
        Ok((n, forced)) => {
            println!("{n} file{} queued again", if n == 1 { "" } else { "s" });
            if forced > 0 {
                println!(
                    "{forced} file{} held back as incomplete will be uploaded anyway",
                    if forced == 1 { "" } else { "s" }
                );
            }
            if n + forced == 0 && !paths.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("vidsync: {e}");
            ExitCode::from(1)
        }
    }
}

/// How `vidsync links` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFormat {
    Text,
    Json,
    Csv,
}

/// A file's watch link on a host when the host has not reported one:
/// `<url>/<code>`, the page every XVideoSharing host serves for a file.
pub fn watch_link(api_url: &url::Url, f: &FileRow) -> Option<String> {
    let code = f.file_code.as_deref()?;
    Some(format!("{}/{code}", api_url.as_str().trim_end_matches('/')))
}

/// `vidsync links [--json|--csv] [--host NAME]`: for each local file, its
/// code and watch link on each host it is up on (files deleted locally,
/// and copies the host deleted, are left out).
pub fn links(config: &Config, format: LinkFormat, host: Option<&str>) -> ExitCode {
    let views = match host_views(config, host) {
        Ok(v) => v,
        Err(c) => return c,
    };
    let mut rows: Vec<(String, PathBuf, String, String)> = Vec::new();
    for store in &views {
        let Some(entry) = config.host(store.host()) else {
            continue;
        };
        let (files, known) = match store
            .list(Some(State::Uploaded))
            .and_then(|f| Ok((f, store.links()?)))
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("vidsync: {e}");
                return ExitCode::from(1);
            }
        };
        for f in files {
            let Some(code) = f.file_code.clone() else {
                continue;
            };
            // The host's own link (from file/list, learnt by the audit),
            // else the form every host serves.
            let link = known
                .get(&code)
                .cloned()
                .or_else(|| watch_link(&entry.api.url, &f));
            if let Some(link) = link {
                rows.push((store.host().to_string(), f.path(), code, link));
            }
        }
    }
    rows.sort_by(|a, b| a.1.cmp(&b.1));
    match format {
        LinkFormat::Json => {
            // One entry per file, its copies by host.
            let mut out: Vec<Value> = Vec::new();
            for (host, path, code, link) in &rows {
                let p = path.to_string_lossy();
                if out.last().is_none_or(|v| v["path"] != *p) {
                    out.push(json!({"path": p, "hosts": {}}));
                }
                if let Some(last) = out.last_mut() {
                    last["hosts"][host] = json!({"file_code": code, "link": link});
                }
            }
            println!("{}", Value::Array(out));
        }
        LinkFormat::Csv => {
            println!("path,host,file_code,link");
            for (host, path, code, link) in &rows {
                println!(
                    "{},{},{},{}",
                    csv_field(&path.to_string_lossy()),
                    csv_field(host),
                    csv_field(code),
                    csv_field(link)
                );
            }
        }
        LinkFormat::Text => {
            for (host, path, code, link) in &rows {
                println!("{:<12} {code:<13} {link}  {}", host, path.display());
            }
        }
    }
    ExitCode::SUCCESS
}

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a
/// line break, quotes doubled.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
