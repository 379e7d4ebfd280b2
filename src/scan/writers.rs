//! Which files a writer still holds open, as inotify showed them: owned by
//! the scanner, fed by its hints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Writers {
    /// A weak mark (only seen created) counts for this long.
    stale: Duration,
    /// File -> (last event, seen written).
    open: HashMap<PathBuf, (Instant, bool)>,
}

impl Writers {
    pub fn new(settle: Duration) -> Writers {
        Writers {
            stale: (settle * 4).max(Duration::from_secs(30)),
            open: HashMap::new(),
        }
    }

    /// Is a writer still at work on this file? A file seen written stays
    /// "open" until its close-write event (the kernel sends one even when
    /// the writer crashes). A file only seen created (a hard link, `ln`,
    /// never sends a close-write) expires after a while instead.
    pub fn is_open(&self, path: &Path) -> bool {
        self.open
            .get(path)
            .is_some_and(|(t, written)| *written || t.elapsed() < self.stale)
    }

    /// inotify: the file was created (weak hint) or written (strong).
    pub fn writing(&mut self, path: &Path, written: bool) {
        // Weak marks of files never closed (hard links) would pile up over
        // months: drop the expired ones now and then.
        if self.open.len() > 10_000 {
            let stale = self.stale;
            self.open
                .retain(|_, (t, strong)| *strong || t.elapsed() < stale);
        }
        let strong = written || self.open.get(path).is_some_and(|(_, s)| *s);
        self.open
            .insert(path.to_path_buf(), (Instant::now(), strong));
    }

    /// inotify: closed after writing, removed, or renamed away.
    pub fn closed(&mut self, path: &Path) {
        self.open.remove(path);
    }

    /// inotify: a path removed or renamed away, file or directory: no
    /// writer mark below it stays.
    pub fn closed_under(&mut self, path: &Path) {
        self.open.retain(|p, _| !p.starts_with(path));
    }

    /// After an event overflow nothing is known about open files: fall back
    /// to the settle time alone.
    pub fn forget(&mut self) {
        self.open.clear();
    }
}
