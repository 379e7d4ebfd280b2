//! Events as data: what the watcher and the other tasks tell the scanner.
//!
//! Hints, never the truth: the scanner re-stats and compares with the
//! store, so a lost hint costs a delay, not a file. File events go through
//! a bounded channel; one that does not fit sets the overflow flag, which
//! the scanner treats like an inotify overflow (forget writers, walk every
//! root) after the events that did fit, so a storm cannot grow memory
//! without bound. The few hints that must not be lost (walk a root, poll a
//! root, an overflow the watcher saw) go through an unbounded side channel.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;

/// Room in the channel; beyond it the scanner falls back to full walks.
pub const CAPACITY: usize = 16_384;

/// One hint for the scanner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// A file was created (a weak sign of a writer: a hard link never sends
    /// a close) or written (a writer is at work until it closes).
    Writing { path: PathBuf, written: bool },
    /// A file was closed after writing.
    Closed(PathBuf),
    /// A file's metadata changed: look at it.
    Touched(PathBuf),
    /// A path was removed or renamed (away or into place): the scanner
    /// decides whether one file or the whole root needs a look.
    Renamed(PathBuf),
    /// Something else changed the tree at this path: walk its root.
    Tree(PathBuf),
    /// The watcher lost events: nothing is known about open files.
    Overflow,
    /// These sync folders can no longer be watched (the inotify limit):
    /// poll them from now on, and walk them now.
    Poll(Vec<PathBuf>),
    /// Walk this root soon (an error, a rename done on the host).
    Rescan(i64),
    /// Walk this root at this time (a retry gate opens then).
    RescanAt(i64, Instant),
    /// Walk every root.
    RescanAll,
}

/// The sending side, cheap to clone; sending never blocks.
#[derive(Debug, Clone)]
pub struct HintSender {
    events: mpsc::Sender<Hint>,
    control: mpsc::UnboundedSender<Hint>,
    overflow: Arc<AtomicBool>,
}

/// The receiving side, owned by whoever runs the scanner.
#[derive(Debug)]
pub struct HintReceiver {
    events: mpsc::Receiver<Hint>,
    control: mpsc::UnboundedReceiver<Hint>,
    overflow: Arc<AtomicBool>,
}

pub fn channel() -> (HintSender, HintReceiver) {
    let (tx, rx) = mpsc::channel(CAPACITY);
    let (ctx, crx) = mpsc::unbounded_channel();
    let overflow = Arc::new(AtomicBool::new(false));
    (
        HintSender {
            events: tx,
            control: ctx,
            overflow: overflow.clone(),
        },
        HintReceiver {
            events: rx,
            control: crx,
            overflow,
        },
    )
}

impl Hint {
    /// A hint that must not be dropped (rare: at most a few per root).
    fn is_control(&self) -> bool {
        matches!(
            self,
            Hint::Overflow | Hint::Poll(_) | Hint::Rescan(_) | Hint::RescanAt(..) | Hint::RescanAll
        )
    }
}

impl HintSender {
    pub fn send(&self, hint: Hint) {
        if hint.is_control() {
            // Closed: no scanner (a one-shot command), nobody to tell.
            let _ = self.control.send(hint);
            return;
        }
        match self.events.try_send(hint) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.store(true, Ordering::SeqCst);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

impl HintReceiver {
    /// Wait for the next hint (None once every sender is gone).
    pub async fn recv(&mut self) -> Option<Hint> {
        tokio::select! {
            biased;
            Some(h) = self.control.recv() => Some(h),
            Some(h) = self.events.recv() => Some(h),
            else => None,
        }
    }

    /// Every hint waiting now. An overflow comes last: the events that did
    /// fit are older than the ones dropped, so forgetting the writers must
    /// come after them (a close that was dropped must not leave a writer
    /// mark behind).
    pub fn drain(&mut self) -> Vec<Hint> {
        let mut out = Vec::new();
        while let Ok(h) = self.events.try_recv() {
            out.push(h);
        }
        while let Ok(h) = self.control.try_recv() {
            out.push(h);
        }
        if self.overflow.swap(false, Ordering::SeqCst) {
            out.push(Hint::Overflow);
        }
        out
    }

    /// Did hints get dropped for want of room since the last drain?
    pub fn overflowed(&self) -> bool {
        self.overflow.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_channel_turns_into_one_overflow_hint_after_what_fitted() {
        let (tx, mut rx) = channel();
        for i in 0..CAPACITY + 10 {
            tx.send(Hint::Touched(PathBuf::from(format!("/m/{i}"))));
        }
        assert!(rx.overflowed());
        let got = rx.drain();
        assert_eq!(got.last(), Some(&Hint::Overflow));
        assert_eq!(got[0], Hint::Touched(PathBuf::from("/m/0")));
        assert_eq!(got.len(), CAPACITY + 1);
        assert!(!rx.overflowed());
        assert!(rx.drain().is_empty());
    }

    #[test]
    fn control_hints_are_never_dropped() {
        let (tx, mut rx) = channel();
        for i in 0..CAPACITY + 10 {
            tx.send(Hint::Touched(PathBuf::from(format!("/m/{i}"))));
        }
        tx.send(Hint::Poll(vec![PathBuf::from("/3")]));
        let got = rx.drain();
        assert!(got.contains(&Hint::Poll(vec![PathBuf::from("/3")])));
    }

    #[test]
    fn sending_without_a_scanner_is_harmless() {
        let (tx, rx) = channel();
        drop(rx);
        tx.send(Hint::RescanAll);
    }
}
