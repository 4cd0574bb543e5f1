use std::process::ExitCode;

use cairn_cli::cli::{run, Cli};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (json, quiet) = (cli.global.json, cli.global.quiet);
    cairn_cli::output::finish(run(cli), json, quiet)
}
