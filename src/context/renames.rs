//! Directory renames seen by the scanner and still to be done on the host
//! (by the fix-up task). Files on either side are left alone until then:
//! applying them would move the files one by one into a new folder and
//! leave the old one behind.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::lock::lock;
use crate::relpath::is_under;

/// One directory rename: the old and the new relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirRename {
    pub old: String,
    pub new: String,
}

#[derive(Debug)]
pub struct Renames {
    pending: Mutex<HashMap<i64, Vec<DirRename>>>,
    /// Wait for a refused folder rename (`run`), or give up on it at once
    /// and move the files one by one (`scan`, which must finish).
    hold: AtomicBool,
}

impl Default for Renames {
    fn default() -> Self {
        Renames {
            pending: Mutex::new(HashMap::new()),
            hold: AtomicBool::new(true),
        }
    }
}

impl Renames {
    pub fn holds(&self) -> bool {
        self.hold.load(Ordering::Relaxed)
    }

    pub fn set_hold(&self, hold: bool) {
        self.hold.store(hold, Ordering::Relaxed);
    }

    /// The renames a full walk of the root found (replacing the last ones).
    pub fn set(&self, root_id: i64, pending: Vec<DirRename>) {
        let mut p = lock(&self.pending);
        if pending.is_empty() {
            p.remove(&root_id);
        } else {
            p.insert(root_id, pending);
        }
    }

    pub fn of(&self, root_id: i64) -> Vec<DirRename> {
        lock(&self.pending)
            .get(&root_id)
            .cloned()
            .unwrap_or_default()
    }

    /// A rename was done on the host, or given up: it holds nothing back.
    pub fn done(&self, root_id: i64, r: &DirRename) {
        let mut p = lock(&self.pending);
        if let Some(v) = p.get_mut(&root_id) {
            v.retain(|x| x != r);
            if v.is_empty() {
                p.remove(&root_id);
            }
        }
    }

    /// Is any rename waiting, in any root?
    pub fn any(&self) -> bool {
        !lock(&self.pending).is_empty()
    }

    /// How many renames wait, in every root.
    pub fn count(&self) -> usize {
        lock(&self.pending).values().map(Vec::len).sum()
    }

    /// Is this relative path on either side of a rename still to be done?
    pub fn holds_back(&self, root_id: i64, rel: &str) -> bool {
        lock(&self.pending).get(&root_id).is_some_and(|v| {
            v.iter()
                .any(|r| is_under(rel, &r.old) || is_under(rel, &r.new))
        })
    }
}
