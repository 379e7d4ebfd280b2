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
    let mut file = std::fs::File::open(path)?;
    let first_hole = first_hole(&file, size);
    let structure = if first_hole.is_some() {
        // Holes already say it; no need to read the container.
        None
    } else {
        crate::engine::complete::judge(&mut file, size)?
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
