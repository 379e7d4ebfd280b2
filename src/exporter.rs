//! The metrics task: a small HTTP/1 server (hyper, which reqwest already
//! brings) on `[metrics] listen`, answering `GET /metrics` with the
//! registry of `context::metrics` and `GET /healthz` with 200 while the main
//! loop goes round (the same heartbeat the systemd watchdog is fed from),
//! 503 otherwise. Nothing else: no other path, no body read, no keys.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::context::metrics::Format;

/// Every host's context (the metrics of each, the shared exposition and
/// heartbeat); never empty.
pub type Library = Arc<Vec<Arc<Context>>>;

/// Connections served at once; a scraper needs one, a browser a few. More
/// wait in the kernel's backlog rather than costing memory here.
const MAX_CONNECTIONS: usize = 16;
/// A client that sends no complete request head in this time is dropped
/// (a half-open connection must not hold a slot for ever).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Bind the metrics listener. A reload restarts `run` with the same address
/// while the old listener may be a moment from closing: retry a busy
/// address briefly before giving up.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 10 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            r => return r,
        }
    }
}

/// Serve until `stop`; connections still open then are dropped with it.
pub async fn serve(listener: TcpListener, ctx: Library, stop: CancellationToken) {
    let mut conns = JoinSet::new();
    loop {
        // Reap finished connections; wait for one to end when at the cap.
        while conns.try_join_next().is_some() {}
        if conns.len() >= MAX_CONNECTIONS {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = conns.join_next() => continue,
            }
        }
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pass, but do
                    // not spin on it.
                    tracing::warn!(error = %e, "metrics: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let ctx = ctx.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(answer(&ctx, &req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics: connection ended with an error");
            }
        });
    }
}

/// Serve on a bound listener, its address logged first (port 0 lets the
/// system pick one).
pub async fn task(listener: TcpListener, ctx: Library, stop: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics at http://{addr}/metrics, health at /healthz");
    }
    serve(listener, ctx, stop).await
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

/// OpenMetrics only for a scraper that asks for it (Prometheus does);
/// the classic text format otherwise (curl, promtool, older scrapers).
fn format_for(req: &Request<Incoming>) -> Format {
    let wants_openmetrics = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

async fn answer(ctxs: &[Arc<Context>], req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(first) = ctxs.first() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "no host is configured\n".into(),
        );
    };
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "GET only\n".into());
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            // The store's counts are a few indexed queries; a store that
            // cannot answer leaves the gauges as they were (the counters
            // are still worth serving) and says so in the log.
            for ctx in ctxs {
                if let Err(e) = ctx.metrics.refresh(&ctx.store, ctx.host.account.key_ok()) {
                    tracing::warn!(error = %e, host = ctx.name(), "metrics: cannot read the store");
                }
            }
            let format = format_for(req);
            text(
                StatusCode::OK,
                format.content_type(),
                first.exposition.encode(format),
            )
        }
        "/healthz" => {
            if first.heartbeat.alive() {
                text(StatusCode::OK, PLAIN, "ok\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    PLAIN,
                    "the main loop has not gone round for too long\n".into(),
                )
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found; try /metrics or /healthz\n".into(),
        ),
    }
}
