//! vidsync: mirror local media folders to an XVideoSharing host, each file exactly once.

pub mod api;
pub mod config;
pub mod engine;
pub mod store;
pub mod testhost;
