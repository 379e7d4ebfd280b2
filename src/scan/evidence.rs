//! The facts behind "is this settled file complete?": holes (`SEEK_HOLE`),
//! the container's structure (read from the head, the tail and box
//! headers), and other processes holding it open for writing (from
//! `/proc/*/fd` and fdinfo flags, where permissions allow). The verdict is
//! `engine::evidence::assess`.

use std::collections::{HashMap, HashSet};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::engine::evidence::{Facts, Writer};

/// The offset of the first hole in the file, if it comes before `size`.
/// Filesystems without `SEEK_HOLE` report the end: no claim.
fn first_hole(file: &std::fs::File, size: u64) -> Option<u64> {
    // SAFETY: lseek on a descriptor we own; it does not touch memory.
    let at = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_HOLE) };
    (at >= 0 && (at as u64) < size).then_some(at as u64)
}

/// The facts about one file of `size` bytes (its writers come from
/// `writers_of`, one sweep of /proc for every candidate of a pass).
pub fn facts(path: &Path, size: u64, writers: Vec<Writer>) -> std::io::Result<Facts> {
    let file = std::fs::File::open(path)?;
    let first_hole = first_hole(&file, size);
    let structure = if first_hole.is_some() {
        // Holes already say it; no need to read the container.
        None
    } else {
        crate::engine::complete::judge(&mut Ends::new(file, size), size)?
            .err()
            .map(|i| i.to_string())
    };
    Ok(Facts {
        size,
        first_hole,
        structure,
        writers,
    })
}

/// The facts of many settled files (writers left out: `writers_of` sweeps
/// /proc once for all). A library copied in at once settles thousands of
/// files in one pass: they are read on every core, in order.
pub fn facts_of_all(rows: &[crate::store::FileRow]) -> Vec<std::io::Result<Facts>> {
    let one = |r: &crate::store::FileRow| facts(&r.path(), r.stat.size, Vec::new());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    if rows.len() < 64 || threads < 2 {
        return rows.iter().map(one).collect();
    }
    let chunk = rows.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                (
                    part.len(),
                    s.spawn(move || part.iter().map(one).collect::<Vec<_>>()),
                )
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|(n, h)| {
                h.join().unwrap_or_else(|_| {
                    // A panic in a reader thread: no verdict for its files
                    // (they wait for the next pass), one error each so the
                    // others keep their places.
                    (0..n)
                        .map(|_| Err(std::io::Error::other("the completeness check failed")))
                        .collect()
                })
            })
            .collect()
    })
}

/// How much of each end of a file is read at once: one page, enough for
/// the head the checker reads, the first box headers and the last block.
const END: u64 = 4096;

/// A file whose head and tail are read once each (the first time a read
/// falls there), so the checker's small reads (the head, box headers near
/// either end, the tail) cost one or two system calls, not one each: a
/// small file is read in one go. Reads elsewhere go to the file.
struct Ends {
    file: std::fs::File,
    size: u64,
    head: Option<Vec<u8>>,
    tail: Option<Vec<u8>>,
}

impl Ends {
    fn new(file: std::fs::File, size: u64) -> Ends {
        Ends {
            file,
            size,
            head: None,
            tail: None,
        }
    }

    /// `len` bytes at `at`, read whole (short only at the end of the file).
    fn load(&mut self, at: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
        let n = crate::engine::complete::Probe::read_at(&mut self.file, at, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
}

impl crate::engine::complete::Probe for Ends {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let end = offset + buf.len() as u64;
        let tail_at = self.size.saturating_sub(END).max(END.min(self.size));
        let cached = if end <= END.min(self.size) {
            if self.head.is_none() {
                self.head = Some(self.load(0, END.min(self.size))?);
            }
            self.head.as_deref().map(|h| (h, 0))
        } else if offset >= tail_at && end <= self.size {
            if self.tail.is_none() {
                self.tail = Some(self.load(tail_at, self.size - tail_at)?);
            }
            self.tail.as_deref().map(|t| (t, tail_at))
        } else {
            None
        };
        match cached {
            Some((bytes, base)) => {
                // What was read may be short (the file shrank): copy what is.
                let from = (offset - base) as usize;
                let n = bytes.len().saturating_sub(from).min(buf.len());
                buf[..n].copy_from_slice(&bytes[from..from + n]);
                Ok(n)
            }
            None => crate::engine::complete::Probe::read_at(&mut self.file, offset, buf),
        }
    }
}

/// Processes other than this one that hold any of `paths` open for writing
/// (the access mode in `/proc/PID/fdinfo/FD` is write-only or read-write).
/// Processes whose /proc entries this user may not read are not seen.
pub fn writers_of(paths: &HashSet<PathBuf>) -> HashMap<PathBuf, Vec<Writer>> {
    let mut out: HashMap<PathBuf, Vec<Writer>> = HashMap::new();
    if paths.is_empty() {
        return out;
    }
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if !paths.contains(&target) {
                continue;
            }
            let info = p.path().join("fdinfo").join(fd.file_name());
            if !open_for_writing(&std::fs::read_to_string(info).unwrap_or_default()) {
                continue;
            }
            let name = std::fs::read_to_string(p.path().join("comm"))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            out.entry(target).or_default().push(Writer { pid, name });
        }
    }
    out
}

/// Does an fdinfo text say the descriptor was opened for writing? Its
/// `flags:` line is octal; the access mode is its two low bits.
fn open_for_writing(fdinfo: &str) -> bool {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .is_some_and(|flags| {
            let mode = flags & libc::O_ACCMODE as u32;
            mode == libc::O_WRONLY as u32 || mode == libc::O_RDWR as u32
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fdinfo_flags_tell_writers_from_readers() {
        assert!(open_for_writing("pos:\t0\nflags:\t0100001\nmnt_id:\t1\n"));
        assert!(open_for_writing("pos:\t0\nflags:\t02\n"));
        assert!(!open_for_writing("pos:\t0\nflags:\t0100000\n"));
        assert!(!open_for_writing("garbage"));
    }

    #[test]
    fn a_writer_in_this_test_is_seen_from_another_process_view() {
        // This process is skipped (vidsync's own reads), so a child writes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.mp4");
        std::fs::File::create(&path).unwrap();
        let path = std::fs::canonicalize(&path).unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec 3>>'{}'; sleep 5", path.display()))
            .spawn()
            .unwrap();
        let want: HashSet<PathBuf> = [path.clone()].into();
        let mut seen = HashMap::new();
        for _ in 0..100 {
            seen = writers_of(&want);
            if !seen.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        let w = seen
            .get(&path)
            .expect("the child's write descriptor is seen");
        assert!(w.iter().any(|w| w.pid == child.id()), "{w:?}");
        // Our own descriptors do not count.
        let own = dir.path().join("own.mp4");
        let mut mine = std::fs::File::create(&own).unwrap();
        mine.write_all(b"x").unwrap();
        let own: HashSet<PathBuf> = [std::fs::canonicalize(&own).unwrap()].into();
        assert!(writers_of(&own).is_empty());
    }

    #[test]
    fn reads_through_the_cached_ends_equal_reads_of_the_file() {
        use crate::engine::complete::Probe;
        let dir = tempfile::tempdir().unwrap();
        for size in [0usize, 10, 4096, 65_536, 65_537, 100_000, 200_000, 300_001] {
            let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let path = dir.path().join(format!("{size}.bin"));
            std::fs::write(&path, &bytes).unwrap();
            let mut ends = Ends::new(std::fs::File::open(&path).unwrap(), size as u64);
            for (at, len) in [
                (0, 8),
                (0, 4096),
                (100, 16),
                (size.saturating_sub(16), 16),
                (size.saturating_sub(65_536), 65_536),
                (size / 2, 32),
                (size.saturating_sub(3), 8),
            ] {
                let mut got = vec![0u8; len];
                let n = ends.read_at(at as u64, &mut got).unwrap();
                let want = &bytes[at.min(size)..(at + len).min(size)];
                assert_eq!(&got[..n], want, "size {size}, read {len} at {at}");
            }
        }
    }

    #[test]
    fn a_sparse_file_has_a_hole_before_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.bin");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(1 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&[1u8; 4096], 0).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        assert_eq!(first_hole(&f, 1 << 20), Some(4096));
        f.sync_all().unwrap();
        let full = dir.path().join("f.bin");
        std::fs::write(&full, vec![1u8; 8192]).unwrap();
        let f = std::fs::File::open(&full).unwrap();
        assert_eq!(first_hole(&f, 8192), None);
    }
}
