//! Counts of the client's API calls, their errors by class and the
//! rate-limit pauses, kept where every call goes through (`Client::get` and
//! the upload POST) so that nothing above the api layer has to remember to
//! count. The metrics registry (in `context`) registers these families.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{ApiError, ErrorClass};

/// The label set of a call: the endpoint as the errors name it
/// ("account/info", "file/list", "upload").
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub call: String,
}

/// The label set of a failed call: the endpoint and the error's class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub call: String,
    pub class: &'static str,
}

/// Shared by every clone of a `Client` (the families are `Arc`s inside).
#[derive(Debug, Clone, Default)]
pub struct ApiStats {
    calls: Family<CallLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    rate_limit_pauses: Counter,
}

/// The label value of an error class: stable lowercase words, for queries
/// and dashboards (not the Debug spelling, which may change).
pub fn class_label(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::KeyRejected => "key_rejected",
        ErrorClass::AccountWide => "account_wide",
        ErrorClass::Transient => "transient",
        ErrorClass::Permanent => "permanent",
        ErrorClass::Protocol => "protocol",
    }
}

impl ApiStats {
    /// One call sent to `call`, and its error if it failed.
    pub(crate) fn record<T>(&self, call: &str, result: &Result<T, ApiError>) {
        self.calls
            .get_or_create(&CallLabels { call: call.into() })
            .inc();
        if let Err(e) = result {
            self.errors
                .get_or_create(&ErrorLabels {
                    call: call.into(),
                    class: class_label(e.class()),
                })
                .inc();
        }
    }

    /// The client began to hold calls back for the host's rate limit.
    pub(super) fn rate_limit_pause(&self) {
        self.rate_limit_pauses.inc();
    }

    /// Calls sent to `call` so far (tests, `status`).
    pub fn calls(&self, call: &str) -> u64 {
        self.calls
            .get(&CallLabels { call: call.into() })
            .map_or(0, |c| c.get())
    }

    /// Add the families to `registry` (prefix `vidsync_` given by the caller).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "api_calls",
            "API calls sent to the host, by call (the upload POST is \"upload\")",
            self.calls.clone(),
        );
        registry.register(
            "api_errors",
            "API calls that failed, by call and error class (key_rejected, account_wide, transient, permanent, protocol)",
            self.errors.clone(),
        );
        registry.register(
            "api_rate_limit_pauses",
            "Times the client began holding calls back because the host's per-minute or daily call limit was (nearly) used up",
            self.rate_limit_pauses.clone(),
        );
    }
}
