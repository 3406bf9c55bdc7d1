//! The `midge` binary: the broker and its client tools behind one command line.

mod bench;
mod check_config;
mod ctl;
mod heap;
mod mosquitto_conf;
mod passwd;
mod serve;
mod store;
mod tools;

use clap::{Parser, Subcommand};

/// jemalloc keeps the broker's memory compact under millions of small allocations per
/// second (docs/decisions/0004-allocator.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// midge: an MQTT broker (MQTT 3.1, 3.1.1 and 5.0) and its client tools.
#[derive(Debug, Parser)]
#[command(name = "midge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (the default command).
    Serve(serve::ServeArgs),
    /// Publish a message (mosquitto_pub's flags).
    Pub(tools::publish::PubArgs),
    /// Subscribe and print messages (mosquitto_sub's flags).
    Sub(tools::subscribe::SubArgs),
    /// MQTT 5 request/response: publish a request and print the answer (mosquitto_rr's flags).
    Rr(tools::rr::RrArgs),
    /// Manage a password file (mosquitto_passwd's flags; reads its hashes too).
    Passwd(passwd::PasswdArgs),
    /// Load generator: conn, fanin, fanout, p2p, shared, subs, custom.
    Bench(bench::BenchArgs),
    /// Inspect a data directory offline: `check`, `dump`.
    Store(store::StoreArgs),
    /// Operate a running broker through its admin API (`serve --listen-http`).
    Ctl(ctl::CtlArgs),
    /// Check a config file (midge TOML or mosquitto.conf) as `midge serve` would and print
    /// the equivalent midge TOML.
    CheckConfig(check_config::CheckConfigArgs),
    /// Print the version.
    Version,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Serve(args)) => serve::run(args),
        None => serve::run(serve::ServeArgs::default()),
        Some(Command::Pub(args)) => run_tool(tools::publish::run(args)),
        Some(Command::Sub(args)) => run_tool(tools::subscribe::run(args)),
        Some(Command::Rr(args)) => run_tool(tools::rr::run(args)),
        Some(Command::Bench(args)) => run_bench(args),
        Some(Command::Passwd(args)) => passwd::run(args),
        Some(Command::Store(args)) => {
            let code = store::run(args)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Some(Command::CheckConfig(args)) => check_config::run(args),
        Some(Command::Ctl(args)) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let code = runtime.block_on(ctl::run(args));
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Some(Command::Version) => {
            println!("midge {} (MQTT 3.1, 3.1.1, 5.0)", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}

/// Runs a client tool on a small runtime and exits with its exit code.
fn run_tool<F>(fut: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = Result<(), tools::ToolError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(fut) {
        Ok(()) => Ok(()),
        Err(e) => {
            eprintln!("{}", e.message);
            std::process::exit(e.code);
        }
    }
}

/// Runs the load generator on a multi-threaded runtime.
fn run_bench(args: bench::BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(bench::run(args)) {
        Ok(()) => Ok(()),
        Err(e) => {
            eprintln!("{}", e.message);
            std::process::exit(e.code);
        }
    }
}
