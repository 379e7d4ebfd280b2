//! The Prometheus metrics: one registry (no global one) and the handles the
//! tasks update, below the tasks so that any of them can count. The API
//! client's own counters (`api::ApiStats`) are registered here too; what
//! the store already knows (files per state, the queue, storage left, the
//! last reconcile) is read at each scrape by `refresh`, so it can never
//! drift from what `status` shows. The HTTP side is `crate::exporter`.
//!
//! A library mirrored to several hosts has one `Metrics` per host in one
//! `Exposition`: each host's families carry a `host` label (a sub-registry
//! per host), and the exposition serves each family once. With one host
//! there is no `host` label, as before.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::api::ApiStats;
use crate::clock::now_ms;
use crate::store::{State, StorageLeft, Store, StoreError};

/// How one upload of a file ended, as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadResult {
    /// The host answered with a file code.
    Ok,
    /// The host refused it (or the call before the POST failed): the file
    /// is retried or failed per the retry policy.
    Failed,
    /// The reply was lost: the host may have stored it (searched for next).
    Unknown,
    /// A copy already on the host was taken for it instead of sending it.
    Adopted,
    /// The host fetched it from another host (`copy_from`): not sent.
    Copied,
}

impl UploadResult {
    fn as_str(self) -> &'static str {
        match self {
            UploadResult::Ok => "ok",
            UploadResult::Failed => "failed",
            UploadResult::Unknown => "unknown",
            UploadResult::Adopted => "adopted",
            UploadResult::Copied => "copied",
        }
    }
}

/// How a reconcile pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassResult {
    Ok,
    /// The mass-deletion guard held the pass back.
    Blocked,
    /// An error stopped it (retried with backoff).
    Failed,
}

impl PassResult {
    fn as_str(self) -> &'static str {
        match self {
            PassResult::Ok => "ok",
            PassResult::Blocked => "blocked",
            PassResult::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// Which text format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (what `promtool check metrics`
    /// reads, and any scraper that sends no Accept header).
    Prometheus,
    /// OpenMetrics 1.0 text (ends in `# EOF`), for a scraper that asks.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

type F64Gauge = Gauge<f64, AtomicU64>;

#[derive(Debug)]
pub struct Metrics {
    uploads: Family<ResultLabels, Counter>,
    upload_bytes: Family<ResultLabels, Counter>,
    upload_duration: Histogram,
    upload_speed: Histogram,
    last_upload: Gauge,
    files: Family<StateLabels, Gauge>,
    queue: Gauge,
    storage_left: F64Gauge,
    key_ok: Gauge,
    reconcile_passes: Family<ResultLabels, Counter>,
    reconcile_findings: Family<KindLabels, Counter>,
    last_reconcile: Gauge,
}

/// Upload durations: a few seconds for a clip to hours for a film on a
/// slow line.
const DURATION_BUCKETS: [f64; 12] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

/// The registry `/metrics` serves: the build info and every host's
/// metrics.
#[derive(Debug)]
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    /// The metrics of each host (`(name, its client's counters)`), in one
    /// registry under `vidsync_`; with several hosts each host's series
    /// are labelled `host`.
    pub fn new(hosts: &[(&str, &ApiStats)]) -> (Exposition, Vec<Metrics>) {
        let mut registry = Registry::with_prefix("vidsync");
        registry.register(
            "build",
            "The running vidsync's version",
            Info::new(VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let several = hosts.len() > 1;
        let mut metrics = Vec::with_capacity(hosts.len());
        for (name, api) in hosts {
            let r = if several {
                registry.sub_registry_with_label(("host".into(), name.to_string().into()))
            } else {
                &mut registry
            };
            metrics.push(Metrics::register(api, r));
        }
        (Exposition { registry }, metrics)
    }

    /// The registry in `format`, each family once.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would be a
        // metric it cannot spell, which the tests would show.
        let r = match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        merge_families(&out)
    }
}

/// One block per metric family. The encoder writes a sub-registry's
/// families after the parent's, each with its own HELP and TYPE lines, so
/// with several hosts a family would appear once per host, which the
/// formats forbid ("second HELP line for metric name"): the samples of a
/// family seen again join its first block, under its first header.
fn merge_families(text: &str) -> String {
    let mut order: Vec<&str> = Vec::new();
    let mut blocks: std::collections::HashMap<&str, (Vec<&str>, Vec<&str>)> =
        std::collections::HashMap::new();
    let mut current: Option<(&str, bool)> = None;
    let mut eof = false;
    for line in text.lines() {
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let name = rest.split(' ').nth(1).unwrap_or("");
            let first = match current {
                Some((n, first)) if n == name => first,
                _ => !blocks.contains_key(name),
            };
            current = Some((name, first));
            let block = blocks.entry(name).or_insert_with(|| {
                order.push(name);
                (Vec::new(), Vec::new())
            });
            if first {
                block.0.push(line);
            }
        } else if let Some((name, _)) = current
            && let Some(block) = blocks.get_mut(name)
        {
            block.1.push(line);
        }
    }
    let mut out = String::with_capacity(text.len());
    for name in order {
        if let Some((head, samples)) = blocks.get(name) {
            for l in head.iter().chain(samples) {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    if eof {
        out.push_str("# EOF\n");
    }
    out
}

impl Metrics {
    /// One library with one host: its metrics and the exposition (tests).
    pub fn single(api: &ApiStats) -> (Exposition, Metrics) {
        let (e, mut m) = Exposition::new(&[("default", api)]);
        let m = m
            .pop()
            .unwrap_or_else(|| Metrics::register(api, &mut Registry::default()));
        (e, m)
    }

    /// Every metric of one host, registered in `registry`, with the
    /// client's counters.
    fn register(api: &ApiStats, registry: &mut Registry) -> Metrics {
        let m = Metrics {
            uploads: Family::default(),
            upload_bytes: Family::default(),
            upload_duration: Histogram::new(DURATION_BUCKETS),
            // 64 KiB/s .. 512 MiB/s, doubling.
            upload_speed: Histogram::new(exponential_buckets(65536.0, 2.0, 14)),
            last_upload: Gauge::default(),
            files: Family::default(),
            queue: Gauge::default(),
            storage_left: F64Gauge::default(),
            key_ok: Gauge::default(),
            reconcile_passes: Family::default(),
            reconcile_findings: Family::default(),
            last_reconcile: Gauge::default(),
        };
        // The results appear from the start at 0, so that rate() and the
        // dashboard see a series before the first upload.
        for r in [
            UploadResult::Ok,
            UploadResult::Failed,
            UploadResult::Unknown,
            UploadResult::Adopted,
            UploadResult::Copied,
        ] {
            let l = ResultLabels { result: r.as_str() };
            m.uploads.get_or_create(&l).inc_by(0);
            m.upload_bytes.get_or_create(&l).inc_by(0);
        }
        for r in [PassResult::Ok, PassResult::Blocked, PassResult::Failed] {
            m.reconcile_passes
                .get_or_create(&ResultLabels { result: r.as_str() })
                .inc_by(0);
        }
        for kind in ["deleted", "dmca"] {
            m.reconcile_findings
                .get_or_create(&KindLabels { kind })
                .inc_by(0);
        }
        for state in State::ALL {
            m.files
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(0);
        }
        m.storage_left.set(f64::NAN);
        let r = registry;
        r.register(
            "files",
            "Files known to vidsync, by state (waiting, queued, uploading, uploaded, failed, local_deleted, remote_deleted, dmca)",
            m.files.clone(),
        );
        r.register(
            "queue_length",
            "Queued files whose upload is due now (not waiting for a retry)",
            m.queue.clone(),
        );
        r.register(
            "uploads",
            "Upload attempts by result: ok (a file code), failed (refused, retried or failed per policy), unknown (reply lost; searched for), adopted (a copy already on the host was taken instead), copied (fetched by the host from another host, copy_from)",
            m.uploads.clone(),
        );
        r.register_with_unit(
            "upload",
            "Bytes of files by upload result: sent by attempts that ended ok, failed or unknown, or covered by a copy adopted without sending",
            Unit::Bytes,
            m.upload_bytes.clone(),
        );
        r.register_with_unit(
            "upload_duration",
            "Time from the start of an upload (its upload/server call included) to the host's reply, for uploads that succeeded",
            Unit::Seconds,
            m.upload_duration.clone(),
        );
        r.register_with_unit(
            "upload_speed",
            "Average speed of each upload that succeeded",
            Unit::Other("bytes_per_second".into()),
            m.upload_speed.clone(),
        );
        r.register_with_unit(
            "last_upload_timestamp",
            "When the last upload succeeded (unix time; 0 before the first one since start)",
            Unit::Seconds,
            m.last_upload.clone(),
        );
        r.register_with_unit(
            "storage_left",
            "Storage the account has left as the host last reported it (+Inf: unlimited; negative: over quota; NaN: not known yet)",
            Unit::Bytes,
            m.storage_left.clone(),
        );
        r.register(
            "key_ok",
            "1 while the host accepts the API key, 0 while it rejects it",
            m.key_ok.clone(),
        );
        r.register(
            "reconcile_passes",
            "Reconcile passes by result: ok, blocked (the mass-deletion guard held it back), failed",
            m.reconcile_passes.clone(),
        );
        r.register(
            "reconcile_findings",
            "Files a reconcile pass found deleted on the host or taken down for DMCA, by kind (deleted, dmca)",
            m.reconcile_findings.clone(),
        );
        r.register_with_unit(
            "last_reconcile_timestamp",
            "When the deleted/DMCA lists were last applied (unix time; 0: never)",
            Unit::Seconds,
            m.last_reconcile.clone(),
        );
        api.register(r);
        m
    }

    /// One upload of a file ended with `result`; `bytes` as the HELP of
    /// `vidsync_upload_bytes_total` says.
    pub fn upload(&self, result: UploadResult, bytes: u64) {
        let l = ResultLabels {
            result: result.as_str(),
        };
        self.uploads.get_or_create(&l).inc();
        self.upload_bytes.get_or_create(&l).inc_by(bytes);
    }

    /// An upload of `bytes` succeeded after `took`.
    pub fn upload_ok(&self, bytes: u64, took: Duration) {
        self.upload(UploadResult::Ok, bytes);
        let secs = took.as_secs_f64();
        self.upload_duration.observe(secs);
        self.upload_speed.observe(bytes as f64 / secs.max(0.001));
        self.last_upload.set(now_ms() / 1000);
    }

    /// A reconcile pass ended; `deleted` and `dmca` files newly marked.
    pub fn reconcile_pass(&self, result: PassResult, deleted: usize, dmca: usize) {
        self.reconcile_passes
            .get_or_create(&ResultLabels {
                result: result.as_str(),
            })
            .inc();
        for (kind, n) in [("deleted", deleted), ("dmca", dmca)] {
            self.reconcile_findings
                .get_or_create(&KindLabels { kind })
                .inc_by(n as u64);
        }
    }

    /// Read what the store and the account know into the gauges (each
    /// scrape: a few indexed counts).
    pub fn refresh(&self, store: &Store, key_ok: bool) -> Result<(), StoreError> {
        for (state, n) in store.counts()? {
            self.files
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let due = store.queued_due(now_ms())?;
        self.queue.set(i64::try_from(due).unwrap_or(i64::MAX));
        self.storage_left.set(match store.storage_left()? {
            Some(StorageLeft::Bytes(b)) => b as f64,
            Some(StorageLeft::Unlimited) => f64::INFINITY,
            None => f64::NAN,
        });
        self.key_ok.set(i64::from(key_ok));
        let last = store.reconcile_last_poll()?.unwrap_or(0);
        self.last_reconcile.set(last / 1000);
        Ok(())
    }

    /// The uploads counted with `result` so far.
    pub fn uploads(&self, result: UploadResult) -> u64 {
        self.uploads
            .get(&ResultLabels {
                result: result.as_str(),
            })
            .map_or(0, |c| c.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One sample line of the text formats: `name{labels} value`, with a
    /// name of the exposition's alphabet and a value Prometheus reads.
    fn sample_ok(line: &str) -> bool {
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => return false,
        };
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        let labels_ok = name_end == series.len() || series.ends_with('}');
        let value_ok = value.parse::<f64>().is_ok() || matches!(value, "+Inf" | "-Inf" | "NaN");
        !name.is_empty()
            && name.starts_with("vidsync_")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && labels_ok
            && value_ok
    }

    fn metrics_after_some_work() -> (Exposition, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let api = ApiStats::default();
        let (e, m) = Metrics::single(&api);
        m.upload_ok(10_000_000, Duration::from_secs(4));
        m.upload(UploadResult::Unknown, 5);
        m.reconcile_pass(PassResult::Blocked, 0, 3);
        m.refresh(&store, true).unwrap();
        (e, dir)
    }

    #[test]
    fn with_several_hosts_each_family_is_served_once_with_a_host_label() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let (a, b) = (ApiStats::default(), ApiStats::default());
        let (e, m) = Exposition::new(&[("a", &a), ("b", &b)]);
        m[0].upload_ok(1000, Duration::from_secs(1));
        m[1].upload(UploadResult::Copied, 2000);
        m[0].refresh(&store, true).unwrap();
        m[1].refresh(&store.for_host("b"), false).unwrap();
        for format in [Format::Prometheus, Format::OpenMetrics] {
            let text = e.encode(format);
            let mut seen = std::collections::BTreeSet::new();
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("# HELP ") {
                    let name = rest.split(' ').next().unwrap_or("");
                    assert!(
                        seen.insert(name.to_string()),
                        "second HELP for {name}:\n{text}"
                    );
                } else if !line.starts_with('#') {
                    assert!(sample_ok(line), "not a sample: {line}");
                }
            }
            assert!(
                text.contains("vidsync_uploads_total{host=\"a\",result=\"ok\"} 1\n"),
                "{text}"
            );
            assert!(
                text.contains("vidsync_uploads_total{host=\"b\",result=\"copied\"} 1\n"),
                "{text}"
            );
            assert!(text.contains("vidsync_key_ok{host=\"a\"} 1\n"), "{text}");
            assert!(text.contains("vidsync_key_ok{host=\"b\"} 0\n"), "{text}");
            let build = text
                .lines()
                .filter(|l| l.starts_with("vidsync_build_info{"))
                .count();
            assert_eq!(build, 1, "{text}");
            assert_eq!(text.ends_with("# EOF\n"), format == Format::OpenMetrics);
        }
    }

    #[test]
    fn openmetrics_exposition_parses_and_ends_in_eof() {
        let (e, _dir) = metrics_after_some_work();
        let text = e.encode(Format::OpenMetrics);
        assert!(text.ends_with("# EOF\n"), "{text}");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                assert!(
                    ["HELP ", "TYPE ", "UNIT ", "EOF"]
                        .iter()
                        .any(|p| rest.starts_with(p)),
                    "{line}"
                );
            } else {
                assert!(sample_ok(line), "not a sample: {line}");
            }
        }
        assert!(
            text.contains("vidsync_uploads_total{result=\"ok\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("vidsync_upload_bytes_total{result=\"ok\"} 10000000\n"));
        assert!(text.contains("vidsync_reconcile_findings_total{kind=\"dmca\"} 3\n"));
        assert!(
            text.contains("vidsync_files{state=\"queued\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("vidsync_key_ok 1\n"));
        // 10 MB in 4 s: 2.5 MB/s falls in the 4 MiB/s bucket, not 2 MiB/s.
        assert!(
            text.contains("vidsync_upload_speed_bytes_per_second_bucket{le=\"4194304.0\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("vidsync_upload_speed_bytes_per_second_bucket{le=\"2097152.0\"} 0\n")
        );
    }

    #[test]
    fn prometheus_exposition_has_help_and_type_for_every_family() {
        let (e, _dir) = metrics_after_some_work();
        let text = e.encode(Format::Prometheus);
        assert!(!text.contains("# EOF"));
        let mut typed = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap_or("").to_string());
            } else if !line.starts_with('#') {
                assert!(sample_ok(line), "not a sample: {line}");
                let name = line.split(['{', ' ']).next().unwrap_or("");
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
                    .unwrap_or(name);
                assert!(typed.contains(family), "no TYPE for {name}");
            }
        }
        for name in [
            "vidsync_uploads_total",
            "vidsync_upload_duration_seconds",
            "vidsync_storage_left_bytes",
            "vidsync_last_upload_timestamp_seconds",
            "vidsync_queue_length",
        ] {
            assert!(typed.contains(name), "{name} missing:\n{text}");
        }
        // Not known yet: NaN, not a made-up zero.
        assert!(text.contains("vidsync_storage_left_bytes NaN\n"), "{text}");
    }
}

#[cfg(test)]
mod names {
    use super::*;
    use std::collections::BTreeSet;

    /// The metric families the registry serves, with every family in use
    /// (the API families have series only once a call was counted).
    fn served() -> BTreeSet<String> {
        let api = ApiStats::default();
        let err: Result<(), crate::api::ApiError> = Err(crate::api::ApiError::Timeout {
            endpoint: "file/list".into(),
        });
        api.record("file/list", &err);
        let (e, _m) = Metrics::single(&api);
        e.encode(Format::Prometheus)
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_string)
            .collect()
    }

    /// `vidsync_*` words in a text, with a histogram's series suffixes
    /// taken off.
    fn mentioned(text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut rest = text;
        while let Some(i) = rest.find("vidsync_") {
            let word: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + word.len()..];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .unwrap_or(&word);
            out.insert(family.to_string());
        }
        out
    }

    #[test]
    fn the_dashboard_and_the_docs_name_only_served_metrics() {
        let served = served();
        assert!(served.contains("vidsync_api_errors_total"), "{served:?}");
        let dashboard = include_str!("../../contrib/grafana-dashboard.json");
        let v: serde_json::Value = serde_json::from_str(dashboard).expect("dashboard is JSON");
        assert!(v["panels"].as_array().is_some_and(|p| !p.is_empty()));
        let in_dashboard = mentioned(dashboard);
        let unknown: Vec<_> = in_dashboard.difference(&served).collect();
        assert!(
            unknown.is_empty(),
            "dashboard uses {unknown:?}, served: {served:?}"
        );
        // docs/cli.md's table lists every family, and nothing else.
        let docs = include_str!("../../docs/cli.md");
        let section = docs
            .split("\n## ")
            .find(|s| s.starts_with("Metrics\n"))
            .expect("docs/cli.md has a Metrics section");
        let documented = mentioned(section);
        assert_eq!(documented, served, "docs/cli.md vs the registry");
    }
}
