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

/// Upload bandwidth limit shared by every upload in flight: each chunk
/// reserves its share of time on one virtual wire, so the total rate stays
/// under the limit however many uploads run at once.
#[derive(Debug)]
pub struct ByteLimiter {
    bytes_per_sec: u64,
    next_free: std::sync::Mutex<Instant>,
}

impl ByteLimiter {
    pub fn new(bytes_per_sec: u64) -> ByteLimiter {
        ByteLimiter {
            bytes_per_sec: bytes_per_sec.max(1),
            next_free: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// Wait until `n` more bytes may be sent: the chunk's slot on the
    /// virtual wire ends then. Idle time is not saved up, so there is no
    /// burst after a pause.
    pub async fn acquire(&self, n: u64) {
        let cost = Duration::from_secs_f64(n as f64 / self.bytes_per_sec as f64);
        let end = {
            let mut next = self.next_free.lock().unwrap_or_else(|e| e.into_inner());
            let start = (*next).max(Instant::now());
            *next = start + cost;
            *next
        };
        tokio::time::sleep_until(end).await;
    }
}

#[cfg(test)]
mod byte_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn two_uploads_share_one_limit() {
        let l = std::sync::Arc::new(ByteLimiter::new(1_000_000));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let l = l.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    l.acquire(100_000).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 2 MB at 1 MB/s, shared: 2 s of virtual wire, not 1.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(2000), "{took:?}");
        assert!(took < Duration::from_millis(2100), "{took:?}");
    }
}
