//! `im-server`: the reference chat server.
//!
//! ```text
//! im-server [--config FILE]                 serve (default)
//! im-server [--config FILE] check-config    validate the configuration and exit
//! im-server [--config FILE] migrate         create or upgrade the database schema and exit
//! ```

use anyhow::Context;
use clap::{Parser, Subcommand};
use im_server::{Server, ServerConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "im-server", version, about = "Reference server of the im chat engine")]
struct Cli {
    /// TOML configuration file; IM__SECTION__KEY environment variables override it.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default).
    Run,
    /// Load and validate the configuration, print it, and exit.
    CheckConfig,
    /// Create or upgrade the database schema, then exit.
    Migrate,
}

/// Caps glibc's malloc arenas. By default glibc gives threads up to 8 arenas
/// per core; with the store's blocking threads that spreads the many small,
/// long-lived allocations of idle connections over ~16 arenas and roughly
/// quadruples their resident memory (measured: 3.9 KiB vs 1.0 KiB per idle
/// connection). Two arenas cost no measurable throughput here.
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before
    // any other thread exists, and M_ARENA_MAX takes a plain integer.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let config = ServerConfig::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            println!("configuration is valid: {config:#?}");
            Ok(())
        }
        Command::Migrate => {
            init_logging(&config);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let store = im_server::open_store(&config).await?;
                store.close().await?;
                println!("database schema is up to date");
                anyhow::Ok(())
            })
        }
        Command::Run => {
            init_logging(&config);
            // Every connection is a file: use all the process may have.
            let mut config = config;
            match rlimit::increase_nofile_limit(u64::MAX) {
                Ok(limit) => {
                    // Keep files for the store, logs and refusing excess connections politely.
                    let usable = usize::try_from(limit)
                        .unwrap_or(usize::MAX)
                        .saturating_sub(64)
                        .max(1);
                    if config.server.max_connections > usable {
                        tracing::warn!(
                            configured = config.server.max_connections,
                            usable,
                            "server.max_connections lowered to fit the open file limit"
                        );
                        config.server.max_connections = usable;
                    }
                    tracing::info!(
                        limit,
                        max_connections = config.server.max_connections,
                        "open file limit"
                    );
                }
                Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
            }
            // Blocking work is store calls (bounded by the pool) and password
            // hashing: a few dozen threads suffice, and hundreds would only
            // add context switches and stack memory.
            let blocking_threads = (config.store.pool_size as usize * 2).clamp(8, 64);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .max_blocking_threads(blocking_threads)
                .build()
                .context("starting the runtime")?;
            let timeout = Duration::from_secs(config.server.shutdown_timeout_secs + 5);
            let result = runtime.block_on(async {
                let server = Server::bind(config).await?;
                server.run(shutdown_signal()).await
            });
            // Hard limit for anything still running.
            runtime.shutdown_timeout(timeout);
            Ok(result?)
        }
    }
}

fn init_logging(config: &ServerConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
