//! The `vidsync` command line: parse arguments, set up logging, call the library, map exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use vidsync::config::{Config, ConfigError};
use vidsync::store::State;

#[derive(Parser, Debug)]
#[command(
    name = "vidsync",
    version,
    about = "Mirror local video folders to an XVideoSharing host, each file exactly once"
)]
struct Cli {
    /// Config file [default: $VIDSYNC_CONFIG, then /etc/vidsync/config.toml]
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon in the foreground
    Run,
    /// One full pass: scan, upload every complete file, then exit
    Scan,
    /// Counts per state, uploads in flight, last error, key state
    Status {
        #[arg(long)]
        json: bool,
    },
    /// One entry per tracked file
    List {
        #[arg(long)]
        json: bool,
        /// Only files in this state (waiting, queued, uploading, uploaded, failed, remote_deleted, dmca, local_deleted)
        #[arg(long)]
        state: Option<String>,
    },
    /// Put failed files (all, or those named) back in the queue
    Retry {
        /// Only on this host (a name of a [[host]] table)
        #[arg(long)]
        host: Option<String>,
        paths: Vec<PathBuf>,
    },
    /// Each file's code and watch link on each host
    Links {
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
        /// Only this host (a name of a [[host]] table)
        #[arg(long)]
        host: Option<String>,
    },
    /// Validate the config, check the key, print the account
    Check,
    /// One reconcile pass now (deleted, DMCA, audit, encodings); prints what changed
    Reconcile {
        /// Apply the pass even if it would mark more than max_delete_fraction of the files as gone
        #[arg(long)]
        force: bool,
    },
    /// Adopt files already on the host (a lost database, another tool) instead of uploading them again
    Adopt {
        /// Only list what would be adopted, what is ambiguous and what would be uploaded
        #[arg(long)]
        dry_run: bool,
        /// Only this host (a name of a [[host]] table); needed with PATH CODE when there are several
        #[arg(long)]
        host: Option<String>,
        /// Settle an ambiguous file: this local file's copy is CODE
        #[arg(requires = "code")]
        path: Option<PathBuf>,
        code: Option<String>,
    },
    /// Send a test message to every [[notify]] target; exit 1 if any failed
    NotifyTest,
    /// Run the built-in test host and sync a sample folder (no account needed)
    #[cfg_attr(
        not(feature = "demo"),
        command(about = "Not in this build: vidsync was built without the demo feature")
    )]
    Demo {
        /// Use this folder instead of a generated sample
        folder: Option<PathBuf>,
    },
    /// Print shell completions to stdout (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) to stdout
    Man,
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .or_else(|| std::env::var_os("VIDSYNC_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/etc/vidsync/config.toml"))
}

fn load(cli: &Cli) -> Result<Config, ExitCode> {
    Config::load(&config_path(cli)).map_err(|e: ConfigError| {
        eprintln!("vidsync: config error: {e}");
        ExitCode::from(e.exit_code() as u8)
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("vidsync: cannot start the async runtime: {e}");
            ExitCode::from(1)
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) | Err(code) => code,
    }
}

fn real_main(cli: Cli) -> Result<ExitCode, ExitCode> {
    match &cli.command {
        Command::Run => {
            let config = load(&cli)?;
            vidsync::service::init_logging(&config.log, false);
            let rt = runtime()?;
            Ok(rt.block_on(vidsync::service::run_service(config)))
        }
        Command::Scan => {
            let config = load(&cli)?;
            // On a terminal the progress bars tell the story; only warnings
            // and errors are logged over them (RUST_LOG still wins).
            vidsync::service::init_logging(
                &config.log,
                std::io::IsTerminal::is_terminal(&std::io::stdout()),
            );
            let rt = runtime()?;
            Ok(rt.block_on(vidsync::service::run_scan(config)))
        }
        Command::Check => {
            let config = load(&cli)?;
            vidsync::service::init_logging(&config.log, true);
            let rt = runtime()?;
            Ok(rt.block_on(vidsync::service::check(&config)))
        }
        Command::Reconcile { force } => {
            let config = load(&cli)?;
            vidsync::service::init_logging(&config.log, true);
            let rt = runtime()?;
            Ok(rt.block_on(vidsync::service::reconcile(config, *force)))
        }
        Command::Status { json } => {
            let config = load(&cli)?;
            Ok(vidsync::report::status(&config, *json))
        }
        Command::List { json, state } => {
            let config = load(&cli)?;
            let state = match state.as_deref().map(|s| (s, State::parse(s))) {
                None => None,
                Some((_, Some(s))) => Some(s),
                Some((s, None)) => {
                    let names: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
                    eprintln!(
                        "vidsync: unknown state {s:?}, expected one of {}",
                        names.join(", ")
                    );
                    return Err(ExitCode::from(2));
                }
            };
            Ok(vidsync::report::list(&config, *json, state))
        }
        Command::Retry { paths, host } => {
            let config = load(&cli)?;
            Ok(vidsync::report::retry(&config, paths, host.as_deref()))
        }
        Command::Links { json, csv, host } => {
            let config = load(&cli)?;
            let format = if *json {
                vidsync::report::LinkFormat::Json
            } else if *csv {
                vidsync::report::LinkFormat::Csv
            } else {
                vidsync::report::LinkFormat::Text
            };
            Ok(vidsync::report::links(&config, format, host.as_deref()))
        }
        Command::Adopt {
            dry_run,
            host,
            path,
            code,
        } => {
            let config = load(&cli)?;
            vidsync::service::init_logging(&config.log, true);
            let rt = runtime()?;
            let choice = path.clone().zip(code.clone());
            Ok(rt.block_on(vidsync::adopt::run(
                config,
                *dry_run,
                choice,
                host.as_deref(),
            )))
        }
        Command::NotifyTest => {
            let config = load(&cli)?;
            vidsync::service::init_logging(&config.log, true);
            let rt = runtime()?;
            Ok(rt.block_on(notify_test(&config)))
        }
        Command::Demo { folder } => demo(folder.clone()),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "vidsync", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let man = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            let mut out = std::io::stdout().lock();
            man.render(&mut out).map_err(|e| {
                eprintln!("vidsync: cannot write the man page: {e}");
                ExitCode::from(1)
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `vidsync notify-test`: one line per target, exit 1 if any failed (or
/// there is none to test).
async fn notify_test(config: &Config) -> ExitCode {
    if config.notify.is_empty() {
        eprintln!("vidsync: no [[notify]] target in the config; nothing to test");
        return ExitCode::from(1);
    }
    let mut failed = false;
    for (label, result) in vidsync::notify::test_targets(config).await {
        match result {
            Ok(()) => println!("{label}: ok"),
            Err(e) => {
                failed = true;
                println!("{label}: FAILED: {e}");
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(feature = "demo")]
fn demo(folder: Option<PathBuf>) -> Result<ExitCode, ExitCode> {
    vidsync::service::init_logging(
        &vidsync::config::LogConfig {
            level: "info".into(),
            format: vidsync::config::LogFormat::Text,
        },
        false,
    );
    let rt = runtime()?;
    Ok(rt.block_on(vidsync::demo::run(folder)))
}

/// The subcommand stays in the command line without the feature, so that
/// `vidsync demo` says why it cannot run instead of "unrecognized subcommand".
#[cfg(not(feature = "demo"))]
fn demo(_folder: Option<PathBuf>) -> Result<ExitCode, ExitCode> {
    eprintln!(
        "vidsync: this vidsync was built without the demo feature \
         (cargo install --no-default-features); the demo needs the built-in test host"
    );
    Err(ExitCode::from(2))
}
