//! `midge serve`: loads the configuration, starts the server, stops it on SIGINT/SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use midge_server::{FileConfig, Server, ServerConfig};
use tracing_subscriber::EnvFilter;

/// Options of `midge serve`.
#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on for MQTT over TCP (repeatable; replaces the default
    /// 127.0.0.1:1883 and the config file's listeners). Port 0 picks a free port.
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<String>,
    /// TOML configuration file (see README for the keys).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Worker threads (default: one per CPU core; overrides `server.worker_threads`).
    #[arg(long = "workers", value_name = "N")]
    pub workers: Option<usize>,
    /// More logging (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Runs the broker until a signal stops it.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.verbose);
    let (file, origin) = match &args.config {
        Some(path) => (FileConfig::load(path)?, path.display().to_string()),
        None => (FileConfig::default(), "command line".to_owned()),
    };
    let mut file = file;
    if let Some(n) = args.workers {
        file.server.worker_threads = n;
    }
    let config = ServerConfig::from_file(file, &args.listen, &origin)?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    let runtime = builder
        .enable_all()
        .thread_name("midge-worker")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(config).await?;
        let running = server.start();
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "midge started");
        wait_for_signal().await?;
        tracing::info!("shutting down");
        running.shutdown(Duration::from_secs(10)).await;
        tracing::info!("stopped");
        Ok(())
    })
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::select! {
            // Cancel-safe: signal futures can be dropped and recreated.
            r = tokio::signal::ctrl_c() => r.context("cannot listen for SIGINT")?,
            // Cancel-safe: as above.
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    Ok(())
}
