//! Pacing and the host's rate limits: a burst then spread calls, a used-up minute waited
//! out, a daily limit held until the host's next day.

use std::time::Duration;

use vidsync::api::{Client, ErrorClass};
use vidsync_testhost::TestHost;

use super::client;
use crate::common;

#[tokio::test]
async fn pacing_spreads_calls_beyond_the_burst() {
    let host = common::host().await;
    let mut cfg = common::api_config(&host);
    // Burst of 12, then 1.8 calls per second.
    cfg.requests_per_minute = 120;
    let c = Client::new(&cfg).expect("client");
    let started = std::time::Instant::now();
    for _ in 0..12 {
        c.account_info().await.expect("burst");
    }
    let burst = started.elapsed();
    c.account_info().await.expect("13th");
    let total = started.elapsed();
    assert!(
        burst < Duration::from_millis(400),
        "burst passes at once: {burst:?}"
    );
    assert!(
        total >= Duration::from_millis(450),
        "13th call waits: {total:?}"
    );
}

/// Move the host clock forward to the next 12:00:58 (two seconds before a
/// minute ends, far from midnight), so rate-limit periods are predictable.
fn to_noon_minus_2s(host: &TestHost) {
    let secs = host.now() % 86_400;
    let target = 12 * 3600 + 58;
    host.advance(Duration::from_secs((target + 86_400 - secs) % 86_400));
}

#[tokio::test]
async fn a_used_up_minute_is_waited_out_not_refused() {
    let host = common::host().await;
    host.configure(|o| o.rate_limit_per_min = Some(3));
    to_noon_minus_2s(&host);
    let c = client(&host);
    // Every reply says how many calls are left this host minute; at zero
    // the client waits for the next minute instead of being refused.
    for i in 0..5 {
        c.account_info()
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
    }
    let refused = host
        .request_log()
        .iter()
        .filter(|r| r.status == 403)
        .count();
    assert_eq!(refused, 0, "{:?}", host.request_log());
}

#[tokio::test]
async fn a_refused_call_is_account_wide_and_a_daily_limit_holds_until_the_next_day() {
    let host = common::host().await;
    host.configure(|o| o.rate_limit_per_day = Some(2));
    to_noon_minus_2s(&host);
    let c = client(&host);
    c.account_info().await.expect("call 1");
    c.account_info().await.expect("call 2");
    // The day is used up: the host refuses (403), which is the account's
    // condition, never a key problem.
    let err = c.account_info().await.expect_err("3rd call of the day");
    assert!(err.is_daily_limit(), "{err:?}");
    assert_eq!(err.class(), ErrorClass::AccountWide);
    let sent = host.request_log().len();
    // Until the host's next day no call is sent (the day counter counts
    // refused calls too); the error says when calls resume.
    let err = c.account_info().await.expect_err("held");
    assert_eq!(err.class(), ErrorClass::AccountWide);
    assert!(err.to_string().contains("daily"), "{err}");
    assert!(err.to_string().contains("resume in"), "{err}");
    assert_eq!(host.request_log().len(), sent, "nothing sent while held");
    let (left, _) = c.held().expect("held");
    assert!(left > Duration::from_secs(11 * 3600), "{left:?}");
}
