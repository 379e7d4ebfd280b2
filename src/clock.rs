//! The one wall clock of the daemon's records: unix time in milliseconds.
//!
//! At the bottom of the layers (it imports nothing from the crate), so that
//! the store, the engine and every task can read the same clock.

/// Unix time in milliseconds (0 if the system clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
