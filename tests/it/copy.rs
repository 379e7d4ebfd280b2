//! `copy_from` end to end: two test hosts on loopback, a (the source) and b
//! (`copy_from = "a"`). b fetches (upload/url) from a's direct link what a
//! has, and falls back to a normal upload from the disk when it cannot:
//! no link, the link refused, the fetch failing, a source host out of use.
//! A copy cut by a crash or a lost reply is found again, never asked twice.
//! What each host really received is read from the test hosts' counters:
//! `bytes_uploaded` (sent from this machine), `bytes_fetched` (fetched from
//! a link), the request log, the URL queue.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vidsync::api::unescape;
use vidsync::config::Config;
use vidsync::daemon;
use vidsync::store::{FileRow, State, Store};
use vidsync_testhost::{DeletedBy, Fault, HostOptions, Scope, TestHost, UrlStatus};

use crate::common;

/// How long an upload/url job takes on a host of these tests, unless a
/// test says otherwise.
const FETCH_TIME: Duration = Duration::from_millis(200);

/// How long a test waits for the daemon to reach what it expects.
const PATIENCE: Duration = Duration::from_secs(15);

/// After the expected state is reached, how long a duplicate gets to show
/// before the test judges (a second upload or copy would be under way).
const GRACE: Duration = Duration::from_millis(1000);

/// A host with quick encodings and fetches, then `change`d.
async fn host_with(change: impl FnOnce(&mut HostOptions)) -> TestHost {
    let mut opts = HostOptions {
        encode_time: Duration::from_millis(200),
        url_fetch_time: FETCH_TIME,
        ..HostOptions::default()
    };
    change(&mut opts);
    TestHost::start_with(opts).await.expect("start test host")
}

/// A library of `files` (name, size) synced to a and b, b copying from a;
/// `sync_lines` go into the `[[sync]]` table, `more` at the end.
struct Setup {
    _lib: tempfile::TempDir,
    _state: tempfile::TempDir,
    config: PathBuf,
    cfg: Config,
    /// (relative path, bytes) of each local file.
    files: Vec<(String, Vec<u8>)>,
}

fn setup(
    a: &TestHost,
    b: &TestHost,
    files: &[(&str, usize)],
    sync_lines: &str,
    more: &str,
) -> Setup {
    let lib = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(rel, len)| {
            let bytes = common::content(rel, *len);
            common::write(lib.path(), rel, &bytes);
            (rel.to_string(), bytes)
        })
        .collect();
    let mut text = common::hosts_config_with(
        &[a, b],
        &["", "copy_from = \"a\"\n"],
        state.path(),
        &[(lib.path(), "Lib", sync_lines)],
    );
    text.push_str(more);
    let (cfg, config) = common::config_from_text(&text, state.path());
    Setup {
        _lib: lib,
        _state: state,
        config,
        cfg,
        files,
    }
}

impl Setup {
    /// The local files' total size.
    fn total(&self) -> u64 {
        self.files.iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// The records of host `name`.
    fn rows(&self, name: &str) -> Vec<FileRow> {
        Store::open(&self.cfg.state.database)
            .expect("open store")
            .for_host(name)
            .list(None)
            .expect("list rows")
    }

    /// `host` holds each local file exactly once (and nothing else), and
    /// the records of host `name` are every file uploaded, with the codes
    /// of those live files.
    fn holds_each_once(&self, host: &TestHost, name: &str) -> bool {
        let mut want: Vec<&Vec<u8>> = self.files.iter().map(|(_, b)| b).collect();
        want.sort();
        let files = common::live(host);
        let mut got: Vec<&Vec<u8>> = files.iter().map(|(_, b)| b).collect();
        got.sort();
        let live_codes: Vec<String> = host
            .files()
            .into_iter()
            .filter(|f| f.deleted.is_none())
            .map(|f| f.code)
            .collect();
        let rows = self.rows(name);
        got == want
            && rows.len() == self.files.len()
            && rows.iter().all(|r| {
                r.state == State::Uploaded
                    && r.file_code.as_ref().is_some_and(|c| live_codes.contains(c))
            })
    }

    /// What the test saw, for failure messages.
    fn report(&self, a: &TestHost, b: &TestHost) -> String {
        let show = |h: &TestHost| {
            h.files()
                .into_iter()
                .map(|f| (f.code, f.title, f.size, f.deleted.is_some()))
                .collect::<Vec<_>>()
        };
        let rows = |n: &str| {
            self.rows(n)
                .into_iter()
                .map(|r| (r.rel_path, r.state, r.file_code, r.last_error))
                .collect::<Vec<_>>()
        };
        format!(
            "a files {:?}\nb files {:?}\nb queue {:?}\nrows a {:?}\nrows b {:?}\n{}",
            show(a),
            show(b),
            b.url_uploads(),
            rows("a"),
            rows("b"),
            common::child_log(&self.config)
        )
    }
}

/// The titles of a host's live files, unescaped (file/edit stores a title
/// HTML-escaped), sorted.
fn titles(host: &TestHost) -> Vec<String> {
    let mut t: Vec<String> = common::live(host)
        .into_iter()
        .map(|(t, _)| unescape(&t))
        .collect();
    t.sort();
    t
}

/// The daemon in-process.
fn start(cfg: &Config) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let run = daemon::run(cfg.clone(), stop.clone());
    let h = tokio::spawn(async move { run.await.expect("daemon runs") });
    (stop, h)
}

async fn stop(token: CancellationToken, h: tokio::task::JoinHandle<()>) {
    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), h)
        .await
        .expect("daemon stops")
        .expect("daemon task");
}

/// Requests of `endpoint` that `host` answered with `status`.
fn answered(host: &TestHost, endpoint: &str, status: u16) -> usize {
    host.request_log()
        .iter()
        .filter(|r| r.endpoint == endpoint && r.status == status)
        .count()
}

/// Two files, each uploaded from the disk to a; a refuses direct links
/// (file/direct_link "This function not allowed in API"), so b asks for one,
/// is refused, and gets each file from the disk, once, under the title the
/// upload gives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_direct_link_on_the_source_host_sends_each_file_to_the_copying_host_from_the_disk_once()
{
    let a = host_with(|o| o.direct_link_disabled = true).await;
    let b = host_with(|_| {}).await;
    let s = setup(
        &a,
        &b,
        &[("Clip One.mp4", 20_000), ("Clip Two.mp4", 30_000)],
        "",
        "",
    );
    let (token, h) = start(&s.cfg);
    let done = common::wait_for(PATIENCE, || {
        s.holds_each_once(&a, "a") && s.holds_each_once(&b, "b")
    })
    .await;
    tokio::time::sleep(GRACE).await;
    stop(token, h).await;
    assert!(done, "{}", s.report(&a, &b));
    assert!(s.holds_each_once(&a, "a"), "{}", s.report(&a, &b));
    assert!(s.holds_each_once(&b, "b"), "{}", s.report(&a, &b));

    // b asked a for a link, and a refused it (the client then knows the
    // call is off on a: the second file is not asked for).
    assert!(
        answered(&a, "file/direct_link", 403) >= 1,
        "direct links asked: {:?}",
        a.request_log()
            .iter()
            .filter(|r| r.endpoint == "file/direct_link")
            .collect::<Vec<_>>()
    );
    // So b received each file from the disk, and fetched nothing.
    assert_eq!(b.bytes_uploaded(), s.total(), "bytes sent to b");
    assert_eq!(b.uploads_started(), 2, "uploads to b");
    assert_eq!(b.bytes_fetched(), 0, "bytes b fetched");
    assert_eq!(b.request_count("upload/url"), 0, "copies asked of b");
    assert_eq!(a.bytes_served(), 0, "bytes a served from links");
    assert_eq!(a.bytes_uploaded(), s.total(), "bytes sent to a");
    // Titled as the upload titles them, the same on both hosts.
    assert_eq!(titles(&b), ["Clip One", "Clip Two"]);
    assert_eq!(titles(&a), titles(&b));
}

/// Remember each job of b's URL queue seen in ERROR, with its error.
fn note_failed_jobs(b: &TestHost, failed: &mut Vec<(String, Option<String>)>) {
    for j in b.url_uploads() {
        if j.status == UrlStatus::Error && !failed.iter().any(|(c, _)| *c == j.code) {
            failed.push((j.code, j.error));
        }
    }
}

/// After a copy that failed with an error naming `status`: one job was
/// asked of b, it went ERROR, it was deleted and made no file; the file
/// went from the disk to b, once, titled as on a.
fn assert_fell_back_once(
    s: &Setup,
    a: &TestHost,
    b: &TestHost,
    failed: &[(String, Option<String>)],
    status: &str,
) {
    assert_eq!(b.request_count("upload/url"), 1, "copies asked of b");
    assert_eq!(failed.len(), 1, "jobs seen in ERROR: {failed:?}");
    let (job, error) = &failed[0];
    assert!(
        error.as_deref().is_some_and(|e| e.contains(status)),
        "{error:?}"
    );
    // The job was deleted: it is not in the queue, and never became a file.
    assert!(b.url_queue().is_empty(), "{:?}", b.url_uploads());
    assert!(b.file(job).is_none(), "the failed job made a file");
    assert!(s.holds_each_once(b, "b"), "{}", s.report(a, b));
    assert_eq!(b.bytes_uploaded(), s.total(), "bytes sent to b");
    assert_eq!(b.uploads_started(), 1, "uploads to b");
    assert_eq!(titles(b), titles(a));
}

/// a's direct links expire before b fetches them: b's fetch is refused
/// (403), its job goes ERROR, vidsync gives the copy up, deletes the job,
/// and sends the file from the disk, once.
///
/// The link is made to expire for sure, not by a race with the clock: b's
/// upload/url is held 500 ms (a `Delay` fault, before the job is queued)
/// and meanwhile a's clock jumps past the link's lifetime, as soon as the
/// test sees that a has given a link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_expired_before_the_fetch_fails_the_copy_its_job_is_deleted_and_the_file_sent_from_the_disk_once()
 {
    let a = host_with(|o| o.direct_link_ttl = Some(Duration::from_secs(1))).await;
    let b = host_with(|_| {}).await;
    b.faults().always(
        Fault::Delay(Duration::from_millis(500)),
        Scope::endpoint("upload/url"),
    );
    let s = setup(&a, &b, &[("Clip One.mp4", 40_000)], "", "");
    let (token, h) = start(&s.cfg);
    let mut links_seen = 0;
    let mut failed_jobs: Vec<(String, Option<String>)> = Vec::new();
    let done = common::wait_for(PATIENCE, || {
        let links = a.request_count("file/direct_link");
        if links > links_seen {
            links_seen = links;
            a.advance(Duration::from_secs(5));
        }
        note_failed_jobs(&b, &mut failed_jobs);
        s.holds_each_once(&b, "b") && b.url_queue().is_empty()
    })
    .await;
    tokio::time::sleep(GRACE).await;
    stop(token, h).await;
    assert!(done, "{}", s.report(&a, &b));

    // The copy was tried once, b's fetch was refused (the link is old),
    // its job deleted, the file sent from the disk.
    assert_fell_back_once(&s, &a, &b, &failed_jobs, "403");
    assert!(b.request_count("file/url_actions") >= 1, "no job deleted");
    assert_eq!(a.bytes_uploaded(), s.total(), "bytes sent to a");
    let row = &s.rows("b")[0];
    let store = Store::open(&s.cfg.state.database).unwrap();
    let history = store.for_host("b").history(row.id).unwrap();
    assert!(
        history.iter().any(|h| h.event == "copy_failed"),
        "{history:?}"
    );
}

/// b's fetches fail (as a remote 500 would): the same fallback, the job
/// deleted, the file sent from the disk once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_fetches_on_the_copying_host_fall_back_to_the_disk_once() {
    let a = host_with(|_| {}).await;
    let b = host_with(|o| o.url_fetch_fails = true).await;
    let s = setup(&a, &b, &[("Clip One.mp4", 40_000)], "", "");
    let (token, h) = start(&s.cfg);
    let mut failed_jobs: Vec<(String, Option<String>)> = Vec::new();
    let done = common::wait_for(PATIENCE, || {
        note_failed_jobs(&b, &mut failed_jobs);
        s.holds_each_once(&b, "b") && b.url_queue().is_empty()
    })
    .await;
    tokio::time::sleep(GRACE).await;
    stop(token, h).await;
    assert!(done, "{}", s.report(&a, &b));

    assert_fell_back_once(&s, &a, &b, &failed_jobs, "500");
    assert_eq!(b.bytes_fetched(), 0, "bytes b fetched");
}

/// `vidsync run` is SIGKILLed while b fetches the file (its job takes 20 s
/// on b). After the restart the job on record is followed to its end: one
/// upload/url job was ever made on b, and its file is the copy, once,
/// byte-identical, titled as on a (the fix-up renames it from the link's
/// `v`); nothing was sent to b from the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_cut_by_sigkill_is_followed_to_its_end_after_the_restart_one_job_no_upload() {
    let a = host_with(|_| {}).await;
    let b = host_with(|o| o.url_fetch_time = Duration::from_secs(20)).await;
    let s = setup(&a, &b, &[("Clip One.mp4", 300_000)], "", "");

    let mut child = common::run_child(&s.config);
    // The job is queued and the daemon follows it (so it has its code).
    let following = common::wait_for(PATIENCE, || {
        b.url_queue().len() == 1 && b.request_count("file/url_uploads") >= 1
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(following, "{}", s.report(&a, &b));
    let job = b.url_queue()[0].clone();
    // The fetch itself is b's: it goes on, and ends; the job waits its 20 s.
    b.wait_url_fetches().await;
    assert!(b.files().is_empty(), "{:?}", b.files());
    assert_eq!(b.url_queue(), std::slice::from_ref(&job));

    let mut child = common::run_child(&s.config);
    // The restarted daemon follows the job, then b finishes it early.
    let before = b.request_count("file/url_uploads");
    let followed =
        common::wait_for(PATIENCE, || b.request_count("file/url_uploads") > before).await;
    b.finish_url_uploads();
    let done = common::wait_for(PATIENCE, || {
        s.holds_each_once(&b, "b") && titles(&b) == titles(&a)
    })
    .await;
    tokio::time::sleep(GRACE).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(followed, "{}", s.report(&a, &b));
    assert!(done, "{}", s.report(&a, &b));

    assert_eq!(b.request_count("upload/url"), 1, "copies asked of b");
    let files = b.files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].code, job, "the file is the job's");
    assert_eq!(b.file_bytes(&job).unwrap(), s.files[0].1);
    assert_eq!(s.rows("b")[0].file_code.as_deref(), Some(job.as_str()));
    assert_eq!(titles(&b), ["Clip One"]);
    assert_eq!(b.bytes_uploaded(), 0, "bytes sent to b");
    assert_eq!(b.uploads_started(), 0, "uploads to b");
    assert_eq!(b.bytes_fetched(), s.total(), "bytes b fetched");
}

/// upload/url's reply to the client is cut short after b queued the job
/// (`StoredThenCut`). The next try finds the job by its URL in
/// file/url_uploads and follows it: one job, the file once, nothing sent
/// from the disk. The job takes 20 s on b, so only the queue can tell the
/// daemon of it (file/list has nothing yet); b finishes it once the daemon
/// follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_upload_url_reply_is_found_in_the_url_queue_and_followed_not_asked_again() {
    let a = host_with(|_| {}).await;
    let b = host_with(|o| o.url_fetch_time = Duration::from_secs(20)).await;
    b.faults()
        .times(Fault::StoredThenCut, Scope::endpoint("upload/url"), 1);
    let s = setup(&a, &b, &[("Clip One.mp4", 60_000)], "", "");
    let (token, h) = start(&s.cfg);
    // The reply was lost (the fault is used up), then the daemon lists the
    // queue (once) and follows the job it found there (again).
    let following = common::wait_for(PATIENCE, || {
        b.faults().rules().is_empty()
            && b.url_queue().len() == 1
            && b.request_count("file/url_uploads") >= 2
    })
    .await;
    let queue = b.url_queue();
    b.wait_url_fetches().await;
    b.finish_url_uploads();
    let done = common::wait_for(PATIENCE, || {
        s.holds_each_once(&b, "b") && titles(&b) == titles(&a)
    })
    .await;
    tokio::time::sleep(GRACE).await;
    stop(token, h).await;
    assert!(following, "{}", s.report(&a, &b));
    assert!(done, "{}", s.report(&a, &b));

    assert_eq!(b.request_count("upload/url"), 1, "copies asked of b");
    let files = b.files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(queue, [files[0].code.clone()], "the file is the job's");
    assert_eq!(b.file_bytes(&files[0].code).unwrap(), s.files[0].1);
    assert_eq!(b.bytes_uploaded(), 0, "bytes sent to b");
    assert_eq!(b.uploads_started(), 0, "uploads to b");
    assert_eq!(titles(&b), ["Clip One"]);
}

/// a rejects its key for the whole test: it will not have the file soon,
/// so b does not wait for it; b gets the file from the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_host_rejecting_its_key_does_not_hold_the_copying_host_back() {
    let a = host_with(|_| {}).await;
    let b = host_with(|_| {}).await;
    a.faults().always(
        Fault::JsonError {
            status: 403,
            msg: "Wrong auth".into(),
        },
        Scope::Api,
    );
    let s = setup(&a, &b, &[("Clip One.mp4", 40_000)], "", "");
    let (token, h) = start(&s.cfg);
    let done = common::wait_for(PATIENCE, || s.holds_each_once(&b, "b")).await;
    tokio::time::sleep(GRACE).await;
    stop(token, h).await;
    assert!(done, "{}", s.report(&a, &b));

    assert!(a.files().is_empty(), "{:?}", a.files());
    assert_eq!(a.uploads_started(), 0, "uploads to a");
    assert_ne!(s.rows("a")[0].state, State::Uploaded);
    assert_eq!(b.bytes_uploaded(), s.total(), "bytes sent to b");
    assert_eq!(b.uploads_started(), 1, "uploads to b");
    assert_eq!(b.bytes_fetched(), 0, "bytes b fetched");
    assert_eq!(b.request_count("upload/url"), 0, "copies asked of b");
    assert_eq!(titles(&b), ["Clip One"]);
}

/// `on_remote_delete = "reupload"`: the host deletes b's copy (as admin);
/// reconcile queues the file again, and it comes back by a second copy
/// from a, not from the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_the_host_deleted_comes_back_by_a_second_copy_not_from_the_disk() {
    let a = host_with(|_| {}).await;
    let b = host_with(|_| {}).await;
    let s = setup(
        &a,
        &b,
        &[("Clip One.mp4", 40_000)],
        "on_remote_delete = \"reupload\"",
        "[reconcile]\ninterval = \"300ms\"\naudit_interval = \"24h\"\n",
    );
    let (token, h) = start(&s.cfg);
    let copied = common::wait_for(PATIENCE, || {
        s.holds_each_once(&b, "b") && titles(&b) == titles(&a)
    })
    .await;
    assert!(copied, "{}", s.report(&a, &b));
    let first = b.files()[0].code.clone();
    assert!(b.delete_file(&first, DeletedBy::Admin));
    let again = common::wait_for(PATIENCE, || {
        s.holds_each_once(&b, "b")
            && titles(&b) == titles(&a)
            && s.rows("b")[0].file_code.as_deref() != Some(first.as_str())
    })
    .await;
    tokio::time::sleep(GRACE).await;
    stop(token, h).await;
    assert!(again, "{}", s.report(&a, &b));

    let live: Vec<_> = b
        .files()
        .into_iter()
        .filter(|f| f.deleted.is_none())
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_ne!(live[0].code, first);
    assert_eq!(b.file_bytes(&live[0].code).unwrap(), s.files[0].1);
    assert_eq!(b.request_count("upload/url"), 2, "copies asked of b");
    assert_eq!(b.bytes_uploaded(), 0, "bytes sent to b");
    assert_eq!(b.uploads_started(), 0, "uploads to b");
    assert_eq!(b.bytes_fetched(), 2 * s.total(), "bytes b fetched");
    assert_eq!(a.uploads_started(), 1, "uploads to a");
    assert_eq!(titles(&b), ["Clip One"]);
    let row = &s.rows("b")[0];
    let store = Store::open(&s.cfg.state.database).unwrap();
    let history = store.for_host("b").history(row.id).unwrap();
    assert!(
        history
            .iter()
            .any(|h| h.event == "remote_deleted" && h.file_code.as_deref() == Some(&first)),
        "{history:?}"
    );
}
