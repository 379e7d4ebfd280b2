//! Never a half-written video, with real writers (issue 14): the daemon
//! in-process against the test host while files are preallocated and
//! filled piece by piece, written by ffmpeg, cut short, or held open by
//! another process across a stall longer than `settle`. Each is held back
//! while incomplete and uploaded exactly once, byte for byte, when done.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use vidsync::config::Config;
use vidsync::daemon;
use vidsync::store::{Stat, State};
use vidsync_testhost::TestHost;

use crate::common;

/// `settle` of these tests; every stall below is longer.
const SETTLE: Duration = Duration::from_millis(200);
/// A stall between pieces: well past `settle` and a scanner tick.
const STALL: Duration = Duration::from_millis(400);

/// A daemon config syncing `root` to "Lib" with `settle` = `SETTLE`.
fn config(host: &TestHost, state: &Path, root: &Path) -> (Config, PathBuf) {
    let text = common::config_toml(host, state, &[(root, "Lib")], "")
        .replace("settle = \"300ms\"", "settle = \"200ms\"");
    assert!(text.contains("settle = \"200ms\""), "{text}");
    common::config_from_text(&text, state)
}

type Daemon = (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), daemon::RunError>>,
);

/// The daemon in-process, past its first walk of the (empty) root.
async fn start(cfg: &Config) -> Daemon {
    let stop = CancellationToken::new();
    let h = tokio::spawn(daemon::run(cfg.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    (stop, h)
}

async fn stop((token, h): Daemon) {
    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), h)
        .await
        .expect("daemon stops")
        .expect("daemon task")
        .expect("clean stop");
}

/// Nothing on the host and no upload begun.
fn nothing_uploaded(host: &TestHost, cfg: &Config, when: &str) {
    assert_eq!(
        host.uploads_started(),
        0,
        "an upload began {when}: {:?}",
        common::row_states(cfg)
    );
    assert!(host.files().is_empty(), "on the host {when}");
}

/// Wait until `rel` is on the host, then check it is there exactly once,
/// byte for byte `want`, from one upload, and its row is `uploaded`.
async fn uploaded_once(host: &TestHost, cfg: &Config, rel: &str, want: &[u8]) {
    let ok = common::wait_for(Duration::from_secs(8), || {
        common::row_of(cfg, rel).is_some_and(|r| r.state == State::Uploaded)
    })
    .await;
    assert!(ok, "{rel} not uploaded: {:?}", common::row_states(cfg));
    let row = common::row_of(cfg, rel).unwrap();
    assert_eq!(row.incomplete, None, "{rel} uploaded with a reason held");
    let code = row.file_code.expect("an uploaded row has a code");
    let on_host: Vec<_> = host
        .files()
        .into_iter()
        .filter(|f| f.code == code)
        .collect();
    assert_eq!(on_host.len(), 1, "{rel}: {:?}", host.files());
    assert_eq!(
        on_host[0].size,
        want.len() as u64,
        "{rel}: size on the host"
    );
    assert!(
        host.file_bytes(&code).unwrap() == want,
        "{rel}: the host's copy differs from the finished file"
    );
}

/// Wait (up to `within`) until the row of `rel` has seen the file as it is
/// now and is held back with a reason for which `why` holds; the reason.
async fn held_now(
    cfg: &Config,
    path: &Path,
    rel: &str,
    within: Duration,
    why: impl Fn(&str) -> bool,
) -> String {
    let now = Stat::of(&std::fs::metadata(path).unwrap());
    let mut reason = None;
    let ok = common::wait_for(within, || {
        let row = common::row_of(cfg, rel);
        reason = row.as_ref().and_then(|r| r.incomplete.clone());
        row.is_some_and(|r| {
            r.state == State::Waiting
                && r.stat.size == now.size
                && r.stat.mtime_ns == now.mtime_ns
                && r.incomplete.as_deref().is_some_and(&why)
                && r.last_error == r.incomplete
        })
    })
    .await;
    assert!(
        ok,
        "{rel} not held back as expected; reason {reason:?}, rows {:?}",
        common::row_states(cfg)
    );
    reason.unwrap()
}

// ---------------------------------------------------------------- pieces

const PIECE: usize = 64 * 1024;
/// The order a download client (libtorrent) fills the 8 pieces in: any.
/// The first piece comes second, the last piece third, and the piece
/// that completes the file sits in the middle.
const ORDER: [usize; 8] = [5, 0, 7, 2, 6, 1, 3, 4];

#[derive(Clone, Copy, Debug)]
enum Prealloc {
    /// `set_len`: a sparse file at its full size.
    Sparse,
    /// `fallocate`: space reserved as unwritten extents.
    Fallocate,
}

/// Create `path` at its full size, or why this filesystem cannot show it.
fn preallocate(path: &Path, len: u64, how: Prealloc) -> Result<(), String> {
    let f = std::fs::File::create(path).unwrap();
    match how {
        Prealloc::Sparse => f.set_len(len).unwrap(),
        Prealloc::Fallocate => {
            // SAFETY: fallocate on a descriptor we own; no memory is touched.
            let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len as libc::off_t) };
            if r != 0 {
                return Err(format!("fallocate: {}", std::io::Error::last_os_error()));
            }
        }
    }
    assert_eq!(f.metadata().unwrap().len(), len);
    // SAFETY: lseek on a descriptor we own.
    let hole = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_HOLE) };
    if hole != 0 {
        return Err(format!(
            "this filesystem reports no hole in {how:?} space (SEEK_HOLE = {hole})"
        ));
    }
    Ok(())
}

/// A file created at its full size and filled piece by piece in random
/// order, closed and stalled between pieces: held back by its holes after
/// every piece but the last, then uploaded once, identical.
async fn pieces_in_random_order(how: Prealloc) {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = config(&host, state.path(), root.path());
    // Unknown format (pseudo-random bytes): only the holes can tell.
    let rel = "torrent.mkv";
    let want = common::content(&format!("{how:?}"), ORDER.len() * PIECE);
    let path = root.path().join(rel);

    // Whether the filesystem shows this at all, before the daemon runs.
    let probe = state.path().join("probe");
    if let Err(why) = preallocate(&probe, want.len() as u64, how) {
        println!("skipped: {why}");
        return;
    }
    let d = start(&cfg).await;
    preallocate(&path, want.len() as u64, how).unwrap();

    let mut written = [false; ORDER.len()];
    for (n, &i) in ORDER.iter().enumerate() {
        tokio::time::sleep(STALL).await;
        nothing_uploaded(&host, &cfg, &format!("before piece {n} ({i})"));
        // A client opens, writes one piece, closes.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&want[i * PIECE..(i + 1) * PIECE], (i * PIECE) as u64)
            .unwrap();
        drop(f);
        written[i] = true;
        let Some(first_unwritten) = written.iter().position(|w| !w) else {
            break;
        };
        // Held back by the hole where the first unwritten piece is, with
        // the file as it is now.
        let at = first_unwritten * PIECE;
        let reason = held_now(&cfg, &path, rel, Duration::from_secs(3), |r| {
            r.contains(&format!("hole at byte {at} of {}", want.len()))
        })
        .await;
        println!("after piece {i}: {reason}");
    }
    uploaded_once(&host, &cfg, rel, &want).await;
    tokio::time::sleep(STALL).await;
    assert_eq!(
        host.uploads_started(),
        1,
        "one upload, no broken copy first"
    );
    assert_eq!(host.files().len(), 1);
    stop(d).await;
}

/// A sparse file (qBittorrent's default preallocation) filled in random
/// order with stalls longer than `settle` is never uploaded before its last
/// piece, then exactly once (issue 14).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_file_filled_in_random_order_is_uploaded_once_after_its_last_piece() {
    pieces_in_random_order(Prealloc::Sparse).await;
}

/// The same with space reserved by `fallocate` (unwritten extents, which
/// ext4 and XFS report as holes): full size and allocated, still never
/// uploaded before its last piece.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallocated_file_filled_in_random_order_is_uploaded_once_after_its_last_piece() {
    pieces_in_random_order(Prealloc::Fallocate).await;
}

// ---------------------------------------------------------------- ffmpeg

/// ffmpeg, or a printed reason the test is skipped (it must pass without).
fn ffmpeg() -> bool {
    let ok = Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("skipped: ffmpeg not found");
    }
    ok
}

fn has_encoder(name: &str) -> bool {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(name))
}

/// An ffmpeg command making `secs` of video and sound into `out`, as fast
/// as it can or (`live`) in real time, as a recorder or a stream capture
/// writes. The noise keeps the video incompressible: a few hundred KB.
fn ffmpeg_cmd(out: &Path, secs: f32, live: bool, extra: &[&str]) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"]);
    for input in [
        format!("testsrc=duration={secs}:size=160x120:rate=10"),
        format!("sine=duration={secs}"),
    ] {
        if live {
            c.arg("-re");
        }
        c.args(["-f", "lavfi", "-i", &input]);
    }
    c.args(["-vf", "noise=alls=60:allf=t"]).args(extra).arg(out);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// A finished file made by ffmpeg.
fn make(out: &Path, extra: &[&str]) -> Vec<u8> {
    let o = ffmpeg_cmd(out, 2.0, false, extra).output().unwrap();
    assert!(
        o.status.success(),
        "ffmpeg {}: {}",
        out.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(out).unwrap()
}

/// MP4s written by ffmpeg in real time straight into the sync folder, one
/// with `+faststart` (moov moved to the front at the end) and one with the
/// moov at the end: neither is uploaded while ffmpeg writes (seconds, many
/// times `settle`), each once, identical, when it is done; and copies of
/// them written in two parts with a stall are held by their structure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mp4s_written_by_ffmpeg_are_uploaded_once_when_ffmpeg_is_done() {
    if !ffmpeg() {
        return;
    }
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = config(&host, state.path(), root.path());
    let d = start(&cfg).await;

    let cases = [
        ("faststart.mp4", vec!["-movflags", "+faststart"]),
        ("moov-last.mp4", vec![]),
    ];
    let began = Instant::now();
    let mut children: Vec<_> = cases
        .iter()
        .map(|(rel, extra)| ffmpeg_cmd(&root.path().join(rel), 3.0, true, extra))
        .map(|mut c| Some(c.spawn().unwrap()))
        .collect();
    let mut seen = [false; 2];
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); 2];
    while children.iter().any(Option::is_some) {
        for (i, (rel, _)) in cases.iter().enumerate() {
            let Some(child) = &mut children[i] else {
                continue;
            };
            // Read the row first: if ffmpeg still runs after, it ran then.
            let row = common::row_of(&cfg, rel);
            // This file's uploads only: the other one may be done (and
            // rightly uploaded) while this ffmpeg still runs.
            let started = host
                .upload_log()
                .iter()
                .filter(|u| u.filenames.iter().any(|f| f == rel))
                .count();
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                assert!(status.success(), "ffmpeg {rel}: {err}");
                println!("ffmpeg wrote {rel} in {:?}", began.elapsed());
                children[i] = None;
                continue;
            }
            assert_eq!(started, 0, "an upload began while ffmpeg wrote {rel}");
            if let Some(row) = row {
                seen[i] = true;
                assert_eq!(
                    row.state,
                    State::Waiting,
                    "{rel} while ffmpeg writes it ({:?} in)",
                    began.elapsed()
                );
                if let Some(r) = row.incomplete
                    && !reasons[i].contains(&r)
                {
                    reasons[i].push(r);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        began.elapsed() > 4 * SETTLE,
        "ffmpeg was too quick to show anything: {:?}",
        began.elapsed()
    );
    for (i, (rel, _)) in cases.iter().enumerate() {
        assert!(seen[i], "{rel} was never seen while ffmpeg wrote it");
        println!("{rel} held back while written: {:?}", reasons[i]);
    }
    for (rel, _) in &cases {
        let want = std::fs::read(root.path().join(rel)).unwrap();
        uploaded_once(&host, &cfg, rel, &want).await;
    }
    tokio::time::sleep(STALL).await;
    assert_eq!(host.uploads_started(), 2, "{:?}", host.files());
    assert_eq!(host.files().len(), 2);

    // While ffmpeg runs, its writes (inotify) and its descriptor hold the
    // files back. The same files copied in two parts by a writer that
    // closes between them and stalls (a downloader, a copy over the
    // network) show what the structure alone says: the faststart file
    // cut in its mdat, the other cut just before its moov (every box
    // whole, the moov not there yet).
    for (uploads, (rel, _)) in (2..).zip(&cases) {
        let whole = std::fs::read(root.path().join(rel)).unwrap();
        let cut = match top_box(&whole, b"moov") {
            Some(at) if at > whole.len() / 2 => at,
            _ => whole.len() / 2,
        };
        let copy = format!("copy-{rel}");
        let path = common::write(root.path(), &copy, &whole[..cut]);
        let reason = held_now(&cfg, &path, &copy, Duration::from_secs(3), |r| {
            r.starts_with("incomplete: ")
        })
        .await;
        println!("{copy} cut to {cut} of {}: {reason}", whole.len());
        tokio::time::sleep(STALL).await;
        assert_eq!(host.uploads_started(), uploads, "{copy} uploaded cut");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&whole[cut..]).unwrap();
        drop(f);
        uploaded_once(&host, &cfg, &copy, &whole).await;
    }
    tokio::time::sleep(STALL).await;
    assert_eq!(host.uploads_started(), 4, "{:?}", host.files());
    stop(d).await;
}

/// The offset of the first top-level MP4 box of this type.
fn top_box(bytes: &[u8], kind: &[u8; 4]) -> Option<usize> {
    let mut off = 0;
    while off + 16 <= bytes.len() {
        let len = match u32::from_be_bytes(bytes[off..off + 4].try_into().unwrap()) {
            0 => bytes.len() - off,
            1 => u64::from_be_bytes(bytes[off + 8..off + 16].try_into().unwrap()) as usize,
            n => n as usize,
        };
        if &bytes[off + 4..off + 8] == kind {
            return Some(off);
        }
        if len < 8 {
            return None;
        }
        off += len;
    }
    None
}

/// A real MKV cut short (a copy or a download that stopped) is held back
/// with its reason across a stall, and uploaded once, identical, when the
/// rest is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mkv_cut_short_is_held_with_a_reason_and_uploaded_once_completed() {
    if !ffmpeg() {
        return;
    }
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (cfg, _) = config(&host, state.path(), root.path());
    let want = make(&scratch.path().join("whole.mkv"), &[]);
    let cut = want.len() * 6 / 10;
    let d = start(&cfg).await;

    let rel = "cut.mkv";
    let path = common::write(root.path(), rel, &want[..cut]);
    let reason = held_now(&cfg, &path, rel, Duration::from_secs(3), |r| {
        r.starts_with("incomplete: ")
    })
    .await;
    println!("{rel} cut to {cut} of {}: {reason}", want.len());
    assert!(reason.contains("Matroska"), "{reason}");
    // `list --json` and `status` show it as the file's error.
    let out = common::bin()
        .arg("--config")
        .arg(state.path().join("config.toml"))
        .args(["list", "--json"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{list}");
    assert!(list.contains(&reason), "list --json: {list}");
    tokio::time::sleep(2 * STALL).await;
    nothing_uploaded(&host, &cfg, "while the MKV was cut short");

    // The rest arrives.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&want[cut..]).unwrap();
    drop(f);
    uploaded_once(&host, &cfg, rel, &want).await;
    assert_eq!(host.uploads_started(), 1);
    stop(d).await;
}

/// No false positive: a folder of finished files made by ffmpeg in every
/// container vidsync judges is uploaded in full by `scan`, none held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_files_in_every_container_are_all_uploaded_by_scan() {
    if !ffmpeg() {
        return;
    }
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = config(&host, state.path(), root.path());
    use vidsync::engine::complete::{Container, judge};
    // Titles are stems: one stem per file.
    let mut cases: Vec<(&str, Vec<&str>, Container)> = vec![
        (
            "faststart.mp4",
            vec!["-movflags", "+faststart"],
            Container::Mp4,
        ),
        ("moov-last.mp4", vec![], Container::Mp4),
        ("clip-mov.mov", vec![], Container::Mp4),
        ("clip-m4v.m4v", vec![], Container::Mp4),
        ("clip-mkv.mkv", vec![], Container::Matroska),
        ("clip-avi.avi", vec![], Container::Avi),
        // MPEG-TS and M2TS (192-byte packets) under names the host takes:
        // it refuses .ts and .m2ts, as the real one does by default.
        ("clip-ts.mpg", vec!["-f", "mpegts"], Container::MpegTs),
        (
            "clip-m2ts.mpeg",
            vec!["-f", "mpegts", "-mpegts_m2ts_mode", "1"],
            Container::MpegTs,
        ),
        // MPEG-PS: a format vidsync makes no structural claim about.
        ("clip-ps.mpg", vec!["-r", "25"], Container::Unknown),
    ];
    if has_encoder("libvpx") {
        cases.push(("clip-webm.webm", vec![], Container::Matroska));
    } else {
        println!("skipped clip-webm.webm: this ffmpeg has no libvpx encoder");
    }
    let mut made = Vec::new();
    for (rel, extra, container) in &cases {
        let path = root.path().join(rel);
        let bytes = make(&path, extra);
        // Each really is the container it stands for.
        let mut f = std::fs::File::open(&path).unwrap();
        let got = judge(&mut f, bytes.len() as u64).unwrap();
        assert_eq!(got, Ok(*container), "{rel}");
        made.push((*rel, bytes));
    }
    let summary = common::scan(&cfg).await;
    assert!(
        summary.incomplete.is_empty(),
        "held back: {:?}",
        summary.incomplete
    );
    assert!(summary.failed.is_empty(), "failed: {:?}", summary.failed);
    for (rel, bytes) in &made {
        uploaded_once(&host, &cfg, rel, bytes).await;
    }
    assert_eq!(host.files().len(), made.len());
    assert_eq!(host.uploads_started(), made.len() as u64);
}

// --------------------------------------------------------------- writers

/// A writer that keeps the file open across a long stall, its bytes
/// looking complete, is seen in /proc (not by inotify: it wrote nothing)
/// and named; the file is uploaded once, promptly, when it closes (the
/// close-write event brings it; the rescan is an hour away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_held_open_across_a_stall_waits_for_its_writer_to_close_it() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, _) = config(&host, state.path(), root.path());
    let d = start(&cfg).await;

    let rel = "held.mp4";
    let path = root.path().join(rel);
    let ready = state.path().join("ready");
    // The writer opens the file for writing, says so, and stalls.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"exec 3>>"$1"; : > "$2"; exec sleep 2"#)
        .arg("sh")
        .arg(&path)
        .arg(&ready)
        .spawn()
        .unwrap();
    assert!(
        common::wait_for(Duration::from_secs(5), || ready.exists()).await,
        "the writer did not start"
    );
    // Bytes of no known format: nothing but the writer says "incomplete".
    let want = common::content("held", 300_000);
    std::fs::write(&path, &want).unwrap();
    let pid = child.id();
    let reason = held_now(&cfg, &path, rel, Duration::from_secs(3), |r| {
        r.contains(&format!("open for writing by sleep (pid {pid})"))
    })
    .await;
    println!("{rel}: {reason}");
    tokio::time::sleep(STALL).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the writer left too early for the test to show anything"
    );
    nothing_uploaded(&host, &cfg, "while a writer held the file open");

    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let closed = Instant::now();
    uploaded_once(&host, &cfg, rel, &want).await;
    println!("uploaded {:?} after the writer closed it", closed.elapsed());
    assert!(
        closed.elapsed() < Duration::from_secs(5),
        "not prompt: {:?}",
        closed.elapsed()
    );
    assert_eq!(host.uploads_started(), 1);
    stop(d).await;
}

/// `vidsync retry PATH` (the real binary, beside the running daemon)
/// uploads a file held back as incomplete anyway: the user's word beats
/// the evidence (a download that will never finish, kept as it is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_path_uploads_a_held_file_anyway() {
    let host = common::host().await;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (cfg, config_path) = config(&host, state.path(), root.path());
    let d = start(&cfg).await;

    // A download with no peers left: its last piece never comes.
    let rel = "stalled.mkv";
    let path = root.path().join(rel);
    let len = 4 * PIECE;
    let mut want = common::content("stalled", len);
    want[3 * PIECE..].fill(0);
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(len as u64).unwrap();
    f.write_all_at(&want[..3 * PIECE], 0).unwrap();
    drop(f);
    let reason = held_now(&cfg, &path, rel, Duration::from_secs(3), |r| {
        r.starts_with("incomplete: ")
    })
    .await;
    println!("{rel}: {reason}");
    tokio::time::sleep(STALL).await;
    nothing_uploaded(&host, &cfg, "before retry");

    let out = common::bin()
        .arg("--config")
        .arg(&config_path)
        .arg("retry")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("1 file held back as incomplete will be uploaded anyway"),
        "{text}"
    );
    uploaded_once(&host, &cfg, rel, &want).await;
    tokio::time::sleep(STALL).await;
    assert_eq!(host.uploads_started(), 1);
    stop(d).await;
}
