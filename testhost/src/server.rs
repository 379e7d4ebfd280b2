//! The accept loop: hyper connections we own, so a fault can close one without a reply.
//!
//! axum's `serve` hides the connection; here each connection gets a kill switch that
//! is put in every request's extensions. A handler that fires it makes the connection
//! task drop the connection future, which closes the socket with no reply, as a
//! crashed upload server or a cut network would.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Closes the connection that carried the request holding it.
#[derive(Clone, Debug)]
pub(crate) struct ConnKill(Arc<Notify>);

impl ConnKill {
    /// Fires the switch; the permit is stored, so this works before the connection task waits.
    pub(crate) fn fire(&self) {
        self.0.notify_one();
    }
}

/// Serves `router` on `listener` until the task is aborted; aborting it aborts every
/// connection too (they live in the loop's `JoinSet`).
pub(crate) async fn serve(listener: TcpListener, router: Router) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "test host: accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let kill = Arc::new(Notify::new());
                let switch = ConnKill(kill.clone());
                let tower = TowerToHyperService::new(router.clone());
                let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut().insert(switch.clone());
                    tower.call(req)
                });
                conns.spawn(async move {
                    let conn = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        res = conn => {
                            if let Err(e) = res {
                                tracing::debug!(error = %e, "test host: connection ended with an error");
                            }
                        }
                        () = kill.notified() => {
                            tracing::debug!("test host: connection dropped by a fault");
                        }
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}
