//! Every command's result is a [`Report`]: printed as text, or as JSON with
//! `--json`.
use std::fmt::Display;

use serde::Serialize;

/// A command result: `Display` for people, `Serialize` for `--json`.
pub trait Report: Display {
    fn to_json(&self) -> serde_json::Value;
}

impl<T: Serialize + Display> Report for T {
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("command results serialize")
    }
}

/// Prints a result the way the global flags ask for.
pub fn print(report: &dyn Report, json: bool, quiet: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).expect("JSON value prints")
        );
    } else if !quiet {
        print!("{report}");
    }
}

/// Prints a command's outcome the way the global flags ask for (an error as one
/// `error: …` line on stderr, and as JSON on stdout with `--json`) and gives the
/// process's exit code. The `cairn` and `cairn-dev` binaries end with it.
pub fn finish(
    outcome: Result<Box<dyn Report>, crate::error::CliError>,
    json: bool,
    quiet: bool,
) -> std::process::ExitCode {
    match outcome {
        Ok(report) => {
            print(report.as_ref(), json, quiet);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                let error =
                    serde_json::json!({ "error": e.to_string(), "exit_code": e.exit_code() });
                println!("{error}");
            }
            eprintln!("error: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

/// Serializes a `Pubkey` as its base58 string.
pub mod pubkey {
    use anchor_lang::prelude::Pubkey;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(key: &Pubkey, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(key)
    }
}

/// Progress on stderr: one bar per transfer and notes, all silent with `-q`,
/// `--no-progress`, `--json` or when stderr is not a terminal.
pub struct Progress {
    bars: Option<indicatif::MultiProgress>,
    notes: bool,
}

impl Progress {
    /// `bars`: draw progress bars; `notes`: print notes (what is happening,
    /// replaced providers) on stderr, when it is a terminal or `verbose`
    /// asks for them anyway (so scripts see only results and errors).
    pub fn new(bars: bool, notes: bool, verbose: bool) -> Self {
        use std::io::IsTerminal;
        let terminal = std::io::stderr().is_terminal();
        Progress {
            bars: (bars && terminal).then(indicatif::MultiProgress::new),
            notes: notes && (terminal || verbose),
        }
    }

    /// Nothing at all (tests, library use).
    pub fn hidden() -> Self {
        Progress {
            bars: None,
            notes: false,
        }
    }

    pub fn note(&self, message: &str) {
        if !self.notes {
            return;
        }
        match &self.bars {
            Some(m) => {
                let _ = m.println(message);
            }
            None => eprintln!("{message}"),
        }
    }

    /// A byte-count bar named `name` of `total` bytes.
    pub fn bar(&self, name: &str, total: u64) -> Bar {
        Bar(self.bars.as_ref().map(|m| {
            let bar = m.add(indicatif::ProgressBar::new(total));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(name.to_string());
            bar
        }))
    }
}

/// One transfer's bar (no-op when hidden).
pub struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    pub fn set(&self, bytes: u64) {
        if let Some(b) = &self.0 {
            b.set_position(bytes);
        }
    }

    /// The text after the counts (e.g. "group 3 of 9 placed").
    pub fn message(&self, text: String) {
        if let Some(b) = &self.0 {
            b.set_message(text);
        }
    }

    pub fn inc(&self, bytes: u64) {
        if let Some(b) = &self.0 {
            b.inc(bytes);
        }
    }

    pub fn finish(&self, ok: bool) {
        if let Some(b) = &self.0 {
            b.finish_with_message(if ok { "done" } else { "failed" });
        }
    }
}
