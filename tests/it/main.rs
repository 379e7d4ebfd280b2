//! The one integration-test binary: the client, the daemon in-process and
//! the real binary as a child, all against the loopback test host.

mod cli;
mod client;
mod common;
mod complete;
mod copy;
mod fixup;
mod hosts;
mod metrics;
mod notify;
mod raw;
mod realhost;
mod realsync;
mod reconcile;
mod scan;
mod service;
mod sync;
mod writers;
