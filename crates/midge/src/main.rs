//! The `midge` binary: the broker and its client tools behind one command line.

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
    /// Print the version of midge and of the MQTT protocols it speaks.
    Version,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Version) | None => {
            println!(
                "midge {} (MQTT 3.1, 3.1.1, 5.0 codec; the broker lands with issue 3)",
                env!("CARGO_PKG_VERSION")
            );
        }
    }
    Ok(())
}
