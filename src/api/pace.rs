//! Request pacing: one token bucket shared by every task that calls the host.
//!
//! Hosts count requests per minute (some 5, some 600). The bucket holds at
//! most a tenth of a minute's allowance and refills a little slower than the
//! limit, so that no 60-second window, sliding or fixed, ever sees more than
//! `requests_per_minute` calls. It uses tokio's clock, so tests with paused
//! time see the waits without sleeping.

use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub struct Pacer {
    state: Mutex<Bucket>,
    capacity: f64,
    /// Tokens per second.
    rate: f64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Pacer {
    pub fn new(requests_per_minute: u32) -> Pacer {
        let rpm = f64::from(requests_per_minute.max(1));
        let capacity = (rpm / 10.0).floor().max(1.0);
        // burst + rate * 60 s <= rpm
        let rate = ((rpm - capacity).max(rpm * 0.5)) / 60.0;
        Pacer {
            state: Mutex::new(Bucket {
                tokens: capacity,
                last: Instant::now(),
            }),
            capacity,
            rate,
        }
    }

    /// Wait until a request may be sent, then take its token.
    pub async fn acquire(&self) {
        // The lock is held while sleeping: callers queue in order (tokio's
        // Mutex is fair), and nobody busy-loops.
        let mut b = self.state.lock().await;
        let now = Instant::now();
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.capacity);
        b.last = now;
        if b.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - b.tokens) / self.rate);
            tokio::time::sleep(wait).await;
            b.tokens = 1.0;
            b.last = Instant::now();
        }
        b.tokens -= 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_in_a_minute() {
        let p = Pacer::new(60);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..200 {
            p.acquire().await;
            times.push(start.elapsed());
        }
        // Every window of 60 s holds at most 60 requests.
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(60))
                .count();
            assert!(in_window <= 60, "{in_window} requests within 60s of {t:?}");
        }
        // And it is not needlessly slow: 200 requests in under 4 minutes.
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_at_once() {
        let p = Pacer::new(600);
        let start = Instant::now();
        for _ in 0..60 {
            p.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
