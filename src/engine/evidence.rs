//! Is a settled file complete? The verdict over the facts the scanner
//! gathered, cheapest evidence first: holes, then the container's structure
//! (cut short, a zero tail: see `complete`), then writers in /proc. A file
//! about which nothing says "incomplete" is complete; vidsync detects
//! incomplete videos, it does not judge whether a file is a video.

/// A process that holds a file open for writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub name: String,
}

/// What the scanner found out about one settled file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    pub size: u64,
    /// The first hole (`SEEK_HOLE`) before the end of the file: parts never
    /// written, in a sparse or preallocated file.
    pub first_hole: Option<u64>,
    /// Why the container says the file is cut short or unfilled (from
    /// `complete::judge`), if it does.
    pub structure: Option<String>,
    /// Other processes with the file open for writing.
    pub writers: Vec<Writer>,
}

/// None when nothing says the file is incomplete; else the reason, as
/// shown to the user (`list --json` error, `status`).
pub fn assess(f: &Facts) -> Option<String> {
    if let Some(at) = f.first_hole.filter(|at| *at < f.size) {
        return Some(format!(
            "incomplete: unwritten parts (a hole at byte {at} of {}): a download in progress?",
            f.size
        ));
    }
    if let Some(why) = &f.structure {
        return Some(why.clone());
    }
    if let Some(w) = f.writers.first() {
        return Some(format!(
            "incomplete: open for writing by {} (pid {})",
            w.name, w.pid
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_evidence_found_is_the_reason() {
        let done = Facts {
            size: 100,
            ..Default::default()
        };
        assert_eq!(assess(&done), None);
        // A hole at the very end is no hole before the end.
        let at_end = Facts {
            first_hole: Some(100),
            ..done.clone()
        };
        assert_eq!(assess(&at_end), None);
        let all = Facts {
            size: 100,
            first_hole: Some(40),
            structure: Some("incomplete: cut short".into()),
            writers: vec![Writer {
                pid: 7,
                name: "qbittorrent".into(),
            }],
        };
        assert!(assess(&all).is_some_and(|r| r.contains("hole at byte 40 of 100")));
        let no_hole = Facts {
            first_hole: None,
            ..all.clone()
        };
        assert_eq!(assess(&no_hole).as_deref(), Some("incomplete: cut short"));
        let only_writer = Facts {
            structure: None,
            ..no_hole
        };
        assert_eq!(
            assess(&only_writer).as_deref(),
            Some("incomplete: open for writing by qbittorrent (pid 7)")
        );
    }
}
