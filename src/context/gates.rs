//! Retry gates of remote fix-ups: failures in a row and the earliest next
//! try per item, so a host that keeps refusing is not asked on every pass.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::lock::lock;

/// What a gate holds back: one remote fix-up item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Gate {
    /// The rename of a remote folder for a renamed local directory.
    DirRename { root: i64, dir: String },
    /// The move/retitle of one uploaded file (by row id).
    FilePlace(i64),
    /// Finding or creating a root's trash folder.
    TrashFolder(i64),
    /// Moving a root's locally deleted files to its trash folder.
    Trash(i64),
    /// Moving a root's copies replaced by new versions to its trash folder.
    TrashOld(i64),
}

/// The gates, with the backoff bounds they use.
#[derive(Debug)]
pub struct Gates {
    min: Duration,
    max: Duration,
    gates: Mutex<HashMap<Gate, (u32, Instant)>>,
}

impl Gates {
    pub fn new(min: Duration, max: Duration) -> Gates {
        Gates {
            min,
            max,
            gates: Mutex::new(HashMap::new()),
        }
    }

    /// May this item be tried now?
    pub fn allowed(&self, gate: &Gate) -> bool {
        lock(&self.gates)
            .get(gate)
            .is_none_or(|(_, at)| Instant::now() >= *at)
    }

    /// One more failure: close the gate for a backoff that grows.
    pub fn failed(&self, gate: &Gate) {
        let mut g = lock(&self.gates);
        let n = g.get(gate).map_or(0, |(n, _)| *n) + 1;
        let delay = crate::engine::backoff(n, self.min, self.max, rand::random::<f64>());
        g.insert(gate.clone(), (n, Instant::now() + delay));
    }

    pub fn succeeded(&self, gate: &Gate) {
        lock(&self.gates).remove(gate);
    }

    /// Is any gate closed (a retry waiting for its time)?
    pub fn any_closed(&self) -> bool {
        !lock(&self.gates).is_empty()
    }

    /// When a closed gate opens (None: it is open).
    pub fn opens_at(&self, gate: &Gate) -> Option<Instant> {
        lock(&self.gates).get(gate).map(|(_, at)| *at)
    }
}
