//! The `midge` binary: the broker and its client tools behind one command line.

mod serve;

use clap::{Parser, Subcommand};

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
    /// Print the version.
    Version,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Serve(args)) => serve::run(args),
        None => serve::run(serve::ServeArgs::default()),
        Some(Command::Version) => {
            println!("midge {} (MQTT 3.1, 3.1.1, 5.0)", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}
