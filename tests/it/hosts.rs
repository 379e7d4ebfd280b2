//! Several hosts per library (issue 10): one library mirrored to three test
//! hosts, each with its own faults, through the real binary; the per-host
//! config, commands and records.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use vidsync_testhost::{Fault, Scope, TestHost};

use crate::common::{self, bin, command, hosts_config_with, live, run_child};

/// `[[host]]` tables for these hosts (a, b, c, ...), then the usual
/// sections and syncs, each `(local, remote, hosts)`.
fn hosts_config(hosts: &[&TestHost], state: &Path, syncs: &[(&Path, &str, &str)]) -> String {
    hosts_config_with(hosts, &[], state, syncs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_one_down_one_rejecting_its_key_lost_replies_and_a_kill_each_file_once_per_host()
 {
    let (a, b, c) = (
        common::host().await,
        common::host().await,
        common::host().await,
    );
    let shows = tempfile::tempdir().unwrap();
    let films = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    // Names as downloads come: dots, brackets, groups, a long one.
    let show_files = [
        "Show.Name.S01E01.1080p.WEB.h264-GRP.mkv",
        "Show.Name.S01E02.1080p.WEB.h264-GRP.mkv",
        "Season 2/[SubGroup] Show Name - 13 [1080p][ABCD1234].mkv",
    ];
    let film_files = [
        "Big_Buck_Bunny.2008.1080p.BluRay.x264.mkv",
        "Movie Title (2019) {imdb-tt1234567} [2160p].mp4",
    ];
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (i, rel) in show_files.iter().enumerate() {
        let bytes = common::content(rel, 20_000 + i * 1000);
        common::write(shows.path(), rel, &bytes);
        expected.insert(format!("shows/{rel}"), bytes);
    }
    // One big file, slowed down on host a, so that the kill lands in the
    // middle of sending it.
    for (i, rel) in film_files.iter().enumerate() {
        let len = if i == 0 { 3 * 1024 * 1024 } else { 30_000 };
        let bytes = common::content(rel, len);
        common::write(films.path(), rel, &bytes);
        expected.insert(format!("films/{rel}"), bytes);
    }
    // Shows go to every host; films only to a and c. b and c copy from a
    // what a has, so the media server sends each file once.
    let text = hosts_config_with(
        &[&a, &b, &c],
        &["", "copy_from = \"a\"\n", "copy_from = \"a\"\n"],
        state.path(),
        &[
            (shows.path(), "Shows", ""),
            (films.path(), "Films", "hosts = [\"a\", \"c\"]"),
        ],
    );
    let config = state.path().join("config.toml");
    std::fs::write(&config, &text).unwrap();

    // a: two replies lost after the host stored the file, and slow reads.
    a.faults().times(Fault::LoseReply, Scope::Upload, 2);
    a.faults().always(
        Fault::SlowRead {
            bytes_per_sec: 1024 * 1024,
        },
        Scope::Upload,
    );
    // b: down (a gateway answering 502 to everything).
    b.faults().always(Fault::Http502, Scope::All);
    // c: the key is rejected.
    c.faults().always(
        Fault::JsonError {
            status: 403,
            msg: "Wrong auth".into(),
        },
        Scope::Api,
    );

    let mut child = run_child(&config);
    // Every upload to a has started once the fifth has (the two lost
    // replies are found on the host, not sent again); the big one takes
    // three seconds.
    let all_started = common::wait_for(Duration::from_secs(30), || a.uploads_started() >= 5).await;
    assert!(all_started, "uploads to a started: {}", a.uploads_started());
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().unwrap(); // SIGKILL, mid-body
    child.wait().unwrap();
    let big = &expected["films/Big_Buck_Bunny.2008.1080p.BluRay.x264.mkv"];
    assert!(
        !live(&a).iter().any(|f| f.1 == *big),
        "the kill came before the big file was stored"
    );
    assert!(
        b.files().is_empty() && c.files().is_empty(),
        "nothing reached the host that was down or rejected the key"
    );

    // b comes back, c accepts the key again; a is fast again.
    b.faults().clear();
    c.faults().clear();
    a.faults().clear();
    let mut child = run_child(&config);
    // n files, each with its own title (a copy is titled after the link
    // until the fix-ups set its title; file/edit stores it HTML-escaped).
    let title = |t: &str| vidsync::api::unescape(t);
    let titles = |n: usize, h: &TestHost| {
        let on_a: Vec<String> = live(&a).into_iter().map(|f| title(&f.0)).collect();
        let files = live(h);
        files.len() == n && files.iter().all(|f| on_a.contains(&title(&f.0)))
    };
    let done = common::wait_for(Duration::from_secs(60), || {
        titles(5, &a) && titles(3, &b) && titles(5, &c)
    })
    .await;
    // A duplicate, if any, gets the chance to appear before judging.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (ok, links) = command(&config, &["links", "--json"]);
    let (_, list) = command(&config, &["list", "--json"]);
    let (_, status) = command(&config, &["status", "--json"]);
    let (_, human) = command(&config, &["status"]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        done,
        "a {:?}\nb {:?}\nc {:?}\n{list}",
        live(&a).iter().map(|f| &f.0).collect::<Vec<_>>(),
        live(&b).iter().map(|f| &f.0).collect::<Vec<_>>(),
        live(&c).iter().map(|f| &f.0).collect::<Vec<_>>()
    );

    // With copy_from, b and c fetched every file from a: the media server
    // sent nothing to them, and each file's bytes once to a (the big one
    // again after the kill cut it).
    let size = |pick: &dyn Fn(&str) -> bool| -> u64 {
        expected
            .iter()
            .filter(|(rel, _)| pick(rel))
            .map(|(_, b)| b.len() as u64)
            .sum()
    };
    let (all, shows_only) = (size(&|_| true), size(&|r| r.starts_with("shows/")));
    assert_eq!(b.bytes_uploaded(), 0, "bytes sent to b");
    assert_eq!(c.bytes_uploaded(), 0, "bytes sent to c");
    assert_eq!(b.bytes_fetched(), shows_only, "bytes b fetched from a");
    assert_eq!(c.bytes_fetched(), all, "bytes c fetched from a");
    assert!(
        a.bytes_uploaded() >= all && a.bytes_uploaded() < all + big.len() as u64,
        "bytes sent to a: {} for {all}",
        a.bytes_uploaded()
    );
    // `status` reports what the copies saved: per host and in all.
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["copied"]["files"], 3 + 5, "{status}");
    assert_eq!(status["copied"]["bytes"], shows_only + all, "{status}");
    let copied_on = |name: &str| {
        status["hosts"]
            .as_array()
            .and_then(|h| h.iter().find(|h| h["name"] == name))
            .map(|h| h["copied"]["bytes"].clone())
    };
    assert_eq!(copied_on("a"), Some(serde_json::json!(0)));
    assert_eq!(copied_on("b"), Some(serde_json::json!(shows_only)));
    assert_eq!(copied_on("c"), Some(serde_json::json!(all)));
    assert!(
        human.contains(&format!(
            "copied host to host: 8 files, {} bytes",
            shows_only + all
        )),
        "{human}"
    );
    assert!(
        human.contains("  copied from another host: 5 files"),
        "{human}"
    );

    // Exactly once on each host it goes to, byte-identical.
    for (name, host, want) in [("a", &a, 5), ("b", &b, 3), ("c", &c, 5)] {
        let files = live(host);
        assert_eq!(files.len(), want, "host {name}: {files:?}");
        let mut contents: Vec<&Vec<u8>> = files.iter().map(|f| &f.1).collect();
        contents.sort();
        contents.dedup();
        assert_eq!(contents.len(), want, "host {name}: a file twice");
        for (_, bytes) in &files {
            assert!(
                expected.values().any(|e| e == bytes),
                "host {name}: bytes of no local file"
            );
        }
    }
    let on_b: Vec<Vec<u8>> = live(&b).into_iter().map(|f| f.1).collect();
    for (rel, bytes) in &expected {
        assert_eq!(
            on_b.contains(bytes),
            rel.starts_with("shows/"),
            "films go only to a and c: {rel}"
        );
    }

    // `list --json`: one entry per file and host, with its host.
    let list: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(list.len(), 5 + 3 + 5, "{list:?}");
    for e in &list {
        assert_eq!(e["state"], "uploaded", "{e}");
        assert!(["a", "b", "c"].contains(&e["host"].as_str().unwrap()));
    }

    // `links --json`: every local file, with its code and link on each of
    // its hosts, the link naming that host.
    assert!(ok);
    let links: Vec<serde_json::Value> = serde_json::from_str(&links).unwrap();
    assert_eq!(links.len(), 5, "{links:?}");
    for l in &links {
        let path = l["path"].as_str().unwrap();
        let hosts = l["hosts"].as_object().unwrap();
        let want: &[(&str, &TestHost)] = if path.starts_with(&*shows.path().to_string_lossy()) {
            &[("a", &a), ("b", &b), ("c", &c)]
        } else {
            &[("a", &a), ("c", &c)]
        };
        assert_eq!(hosts.len(), want.len(), "{l}");
        for (name, host) in want {
            let code = hosts[*name]["file_code"].as_str().unwrap();
            assert!(host.file(code).is_some(), "{name} has {code}");
            // The host's own link once an audit learnt it, else the
            // form every host serves.
            let link = hosts[*name]["link"].as_str().unwrap();
            assert!(
                link == format!("{}/{code}", host.url())
                    || link == format!("{}/{code}.html", host.url()),
                "{link}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_retry_and_check_speak_per_host() {
    let (a, b) = (common::host().await, common::host().await);
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(root.path(), "clip.mp4", &common::content("clip", 10_000));
    let text = hosts_config(&[&a, &b], state.path(), &[(root.path(), "Lib", "")]);
    let config = state.path().join("config.toml");
    std::fs::write(&config, &text).unwrap();
    // b refuses the file for good; a takes it.
    b.faults()
        .always(Fault::RejectFile("Not video file".into()), Scope::Upload);
    let env = |_: &str| None;
    let cfg = vidsync::config::Config::parse_str(&text, &config, &env).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        vidsync::daemon::scan_once(cfg.clone(), tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("scan ends")
    .expect("scan runs");
    assert_eq!(a.files().len(), 1);
    assert!(b.files().is_empty());
    assert_eq!(out.failed.len(), 1, "{:?}", out.failed);
    assert!(out.failed[0].1.starts_with("on b: "), "{:?}", out.failed);
    assert_eq!(out.hosts.len(), 2);

    let (_, status) = command(&config, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["counts"]["uploaded"], 1);
    assert_eq!(v["counts"]["failed"], 1);
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts[0]["name"], "a");
    assert_eq!(hosts[0]["counts"]["uploaded"], 1);
    assert_eq!(hosts[1]["name"], "b");
    assert_eq!(hosts[1]["counts"]["failed"], 1);
    assert!(
        hosts[1]["last_error"]
            .as_str()
            .unwrap()
            .contains("Not video file"),
        "{status}"
    );
    let (_, human) = command(&config, &["status"]);
    assert!(human.contains("host a: key works: true"), "{human}");
    assert!(human.contains("host b: "), "{human}");

    // retry --host: an unknown name is an error; a, which has nothing
    // failed, queues nothing; b queues its file again.
    let out = bin()
        .args(["--config"])
        .arg(&config)
        .args(["retry", "--host", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no host named \"nope\""));
    let (_, said) = command(&config, &["retry", "--host", "a"]);
    assert!(said.starts_with("0 files queued again"), "{said}");
    let (_, said) = command(&config, &["retry", "--host", "b"]);
    assert!(said.starts_with("1 file queued again"), "{said}");

    // check: every host; one rejecting the key gives exit code 3.
    let (ok, said) = command(&config, &["check"]);
    assert!(ok, "{said}");
    assert!(said.contains("host a (key from") && said.contains("host b (key from"));
    b.faults().always(
        Fault::JsonError {
            status: 403,
            msg: "Wrong auth".into(),
        },
        Scope::Api,
    );
    let out = bin()
        .args(["--config"])
        .arg(&config)
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("vidsync: b: "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_from_api_to_named_hosts_keeps_the_records_and_adds_the_new_host() {
    let (a, b) = (common::host().await, common::host().await);
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(
        root.path(),
        "Show.S01E01.mkv",
        &common::content("e1", 10_000),
    );
    // A one-host config first ([api]: the host `default`).
    let (cfg, _) = common::config(&a, state.path(), &[(root.path(), "Lib")], "");
    common::scan(&cfg).await;
    assert_eq!(a.uploads_started(), 1);
    // The same account under a name, and a second host.
    let text = hosts_config(&[&a, &b], state.path(), &[(root.path(), "Lib", "")]);
    let env = |_: &str| None;
    let path = state.path().join("config.toml");
    let cfg = vidsync::config::Config::parse_str(&text, &path, &env).unwrap();
    common::scan(&cfg).await;
    assert_eq!(a.uploads_started(), 1, "nothing sent to a again");
    assert_eq!(b.files().len(), 1, "the new host gets the file");
    let store = vidsync::store::Store::open(&cfg.state.database).unwrap();
    assert_eq!(store.for_host("a").list(None).unwrap().len(), 1);
    assert_eq!(store.for_host("b").list(None).unwrap().len(), 1);
    assert!(
        store.list(None).unwrap().is_empty(),
        "no records left under default"
    );
}

/// A reload that gives the second host a key it refuses is refused: the
/// running daemon keeps the old keys, and files still reach both hosts.
/// (Before, only the first host's key was checked before a reload.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_key_the_second_host_refuses_keeps_the_old_configuration() {
    let (a, b) = (common::host().await, common::host().await);
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(root.path(), "one.mp4", &common::content("one", 5_000));
    let text = hosts_config(&[&a, &b], state.path(), &[(root.path(), "Lib", "")]);
    let config = state.path().join("config.toml");
    std::fs::write(&config, &text).unwrap();
    let mut child = run_child(&config);
    let both = |n: usize| a.files().len() == n && b.files().len() == n;
    assert!(
        common::wait_for(Duration::from_secs(20), || both(1)).await,
        "first file on both hosts"
    );
    // b's key (in b's table: the hosts may share a key) replaced by one b
    // does not know.
    let at = text.find("name = \"b\"").unwrap();
    let wrong = format!(
        "{}{}",
        &text[..at],
        text[at..].replacen(&b.key(), "not-a-key-b-knows", 1)
    );
    assert_ne!(wrong, text);
    std::fs::write(&config, &wrong).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    common::write(root.path(), "two.mp4", &common::content("two", 5_000));
    let synced = common::wait_for(Duration::from_secs(20), || both(2)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        synced,
        "the old keys kept working: a {:?} b {:?}",
        a.files().len(),
        b.files().len()
    );
}

/// `links` shows the watch link each host reports in file/list (the test
/// host's, like many real ones, is `<url>/<code>.html`), learnt by the
/// audit (here the one `vidsync reconcile` runs); before that, the
/// `<url>/<code>` every host serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_come_from_the_hosts_file_list_once_the_audit_learnt_them() {
    let (a, b) = (common::host().await, common::host().await);
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    common::write(root.path(), "Sub/one.mp4", &common::content("one", 5_000));
    let text = hosts_config(&[&a, &b], state.path(), &[(root.path(), "Lib", "")]);
    let config = state.path().join("config.toml");
    std::fs::write(&config, &text).unwrap();
    let env = |_: &str| None;
    let cfg = vidsync::config::Config::parse_str(&text, &config, &env).unwrap();
    common::scan(&cfg).await;
    let links = |cfg_path: &Path| -> serde_json::Value {
        let (ok, out) = command(cfg_path, &["links", "--json"]);
        assert!(ok, "{out}");
        serde_json::from_str(&out).unwrap()
    };
    let code = |h: &TestHost| h.files()[0].code.clone();
    let after_scan = links(&config);
    for (name, h) in [("a", &a), ("b", &b)] {
        assert_eq!(
            after_scan[0]["hosts"][name]["link"],
            format!("{}/{}", h.url(), code(h))
        );
    }
    let reports = vidsync::daemon::reconcile_once(cfg, false).await.unwrap();
    assert_eq!(reports.len(), 2);
    let after = links(&config);
    for (name, h) in [("a", &a), ("b", &b)] {
        assert_eq!(
            after[0]["hosts"][name]["link"],
            format!("{}/{}.html", h.url(), code(h)),
            "{after}"
        );
    }
}
