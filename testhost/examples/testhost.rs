//! Run the built-in test host alone on loopback, for trying vidsync by hand:
//! `cargo run -p vidsync-testhost --example testhost` prints a config header to paste.

use std::time::Duration;

use vidsync_testhost::{HostOptions, TestHost};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let host = TestHost::start_with(HostOptions {
        encode_time: Duration::from_secs(5),
        ..HostOptions::default()
    })
    .await?;
    println!(
        "[api]\nurl = \"{}\"\nkey = \"{}\"\n",
        host.url(),
        host.key()
    );
    eprintln!("test host running; Ctrl-C stops it");
    tokio::signal::ctrl_c().await?;
    host.shutdown().await;
    Ok(())
}
