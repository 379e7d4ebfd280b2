//! The one way the daemon takes a `std::sync::Mutex`: at the bottom of the
//! layers (it imports nothing from the crate), so every layer can use it.

use std::sync::{Mutex, MutexGuard};

/// The guard, poisoned or not: a poisoned lock still holds usable data (a
/// panic elsewhere must not stop the daemon).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
