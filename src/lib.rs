//! vidsync: mirror local media folders to an XVideoSharing host, each file exactly once.

pub mod adopt;
pub mod api;
pub mod clock;
pub mod config;
pub mod context;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod engine;
pub mod exporter;
pub mod fixup;
pub mod host;
pub mod layers;
pub mod lock;
pub mod notify;
pub mod progress;
pub mod reconcile;
pub mod relpath;
pub mod report;
pub mod scan;
pub mod sdnotify;
pub mod service;
pub mod store;
pub mod upload;
pub mod watch;
