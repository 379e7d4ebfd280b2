//! `vidsync demo`: the built-in test host on loopback and a sample folder,
//! synced by the real daemon, so a new user sees it work without an account.

use std::process::ExitCode;

pub async fn run(_folder: Option<std::path::PathBuf>) -> ExitCode {
    eprintln!("vidsync: demo is not built yet");
    ExitCode::from(1)
}
