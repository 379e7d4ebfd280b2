//! Upload progress: bytes sent of each upload in flight, sampled into the
//! store once a second for `status` (a bounded rate that does not slow
//! uploads).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::lock::lock;
use crate::store::Store;

#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes sent of each upload in flight: (total, sent).
    inflight: Mutex<HashMap<i64, (u64, Arc<AtomicU64>)>>,
    /// Last sample of each upload: (sent, at ms, smoothed rate).
    rates: Mutex<HashMap<i64, (u64, i64, f64)>>,
    /// Told when an upload starts: the progress task, sleeping long while
    /// nothing is in flight, goes back to sampling every second (shared by
    /// the hosts of a library).
    started: Arc<tokio::sync::Notify>,
}

impl Progress {
    /// Progress whose starts are told on `started`.
    pub fn telling(started: Arc<tokio::sync::Notify>) -> Progress {
        Progress {
            started,
            ..Progress::default()
        }
    }

    /// Wait for an upload to start.
    pub async fn started(&self) {
        self.started.notified().await
    }

    pub fn start(&self, id: i64, total: u64, sent: Arc<AtomicU64>) {
        lock(&self.inflight).insert(id, (total, sent));
        self.started.notify_waiters();
    }

    /// Is any upload (or copy) in flight?
    pub fn busy(&self) -> bool {
        !lock(&self.inflight).is_empty()
    }

    pub fn clear(&self, store: &Store, id: i64) {
        lock(&self.inflight).remove(&id);
        let _ = store.clear_progress(id);
    }

    /// Write the progress of uploads in flight to the store.
    pub fn flush(&self, store: &Store, now: i64) {
        let snapshot: Vec<(i64, u64, u64)> = lock(&self.inflight)
            .iter()
            .map(|(id, (total, sent))| (*id, sent.load(Ordering::Relaxed), *total))
            .collect();
        let mut rates = lock(&self.rates);
        rates.retain(|id, _| snapshot.iter().any(|(i, _, _)| i == id));
        for (id, sent, total) in snapshot {
            // The rate over the last flushes (smoothed), not the average
            // since the upload began (which counts waits for the pacer).
            let rate = match rates.get(&id) {
                Some((prev_sent, prev_at, prev_rate)) => {
                    let dt = (now - prev_at).max(1) as f64 / 1000.0;
                    let current = sent.saturating_sub(*prev_sent) as f64 / dt;
                    0.5 * current + 0.5 * prev_rate
                }
                None => 0.0,
            };
            rates.insert(id, (sent, now, rate));
            if let Err(e) = store.set_progress(id, sent, total, rate as u64, now) {
                tracing::debug!(error = %e, "cannot record progress");
            }
        }
    }
}
