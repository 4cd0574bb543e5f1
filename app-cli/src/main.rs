use std::process::ExitCode;

use cairn_cli::cli::{run, Cli};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (json, quiet) = (cli.global.json, cli.global.quiet);
    match run(cli) {
        Ok(report) => {
            cairn_cli::output::print(report.as_ref(), json, quiet);
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                let error =
                    serde_json::json!({ "error": e.to_string(), "exit_code": e.exit_code() });
                println!("{error}");
            }
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
