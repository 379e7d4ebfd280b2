//! The read-only commands over the store: `status`, `list`, and `retry`.
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

/// One `list --json` entry. The first eight keys are the stable interface
/// of PRODUCT.md; others may be added, never removed or renamed.
pub fn file_json(f: &FileRow) -> Value {
    json!({
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
    let store = match open(config) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let rows = match store.list(state) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vidsync: {e}");
            return ExitCode::from(1);
        }
    };
    if as_json {
        let arr: Vec<Value> = rows.iter().map(file_json).collect();
        println!("{}", Value::Array(arr));
    } else {
        for f in &rows {
            println!(
                "{:<15} {:<13} {}{}",
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

/// The status report as JSON (also the source of the human table).
pub fn status_json(store: &Store) -> Result<Value, crate::store::StoreError> {
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
    Ok(json!({
        "counts": count_map,
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
        "notify": notify_json(store)?,
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
    let store = match open(config) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let v = match status_json(&store) {
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

/// `vidsync retry [PATH...]`.
pub fn retry(config: &Config, paths: &[PathBuf]) -> ExitCode {
    let store = match open(config) {
        Ok(s) => s,
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
    let forced = if abs.is_empty() {
        Ok(0)
    } else {
        store.force_upload(&abs, now_ms())
    };
    match store
        .retry_failed(&abs, now_ms())
        .and_then(|n| Ok((n, forced?)))
    {
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
