//! The sync engine in-process against the test host.
