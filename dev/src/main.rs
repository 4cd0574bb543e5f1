use std::process::ExitCode;

use cairn_dev::demo::{self, bench::BenchArgs, launch, DemoArgs};
use clap::{Parser, Subcommand};

/// The whole Cairn network on one machine: a local validator running the
/// program, storage nodes and the indexer, each its own process.
#[derive(Parser, Debug)]
#[command(name = "cairn-dev", version)]
struct Cli {
    /// Print the result as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Print nothing but errors.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The whole network under failure: local chain, 6 storage nodes and the
    /// indexer; upload, proofs, node failures, download, repair on the first
    /// failed epoch, settlement of the failed deals.
    Demo(DemoArgs),
    /// Upload and download a generated dataset (1 GiB) through 6 local nodes,
    /// next to the bound of the slowest stage measured in the same run.
    Bench(BenchArgs),
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The demo runs the local chain, nodes and indexer as `cairn-dev __serve …`.
    if let Some(code) = launch::serve_if_asked(&argv) {
        return code;
    }
    let cli = Cli::parse_from(argv);
    let (json, quiet) = (cli.json, cli.quiet);
    let say = |line: &str| {
        if !(quiet || json) {
            println!("{line}");
        }
    };
    let result = launch::Launcher::this_exe()
        .map_err(|e| cairn_cli::error::CliError::Io {
            path: "the cairn-dev executable".into(),
            reason: e.to_string(),
        })
        .and_then(
            |launcher| -> Result<Box<dyn cairn_cli::output::Report>, _> {
                Ok(match cli.command {
                    Command::Demo(a) => Box::new(demo::run(a, launcher, &say)?),
                    Command::Bench(a) => Box::new(demo::bench::run(a, launcher, &say)?),
                })
            },
        );
    cairn_cli::output::finish(result, json, quiet)
}
