//! Real Python clients for tests (boto3, pyarrow, Playwright…): a venv per
//! purpose, made once under the target directory and reused by later runs.
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target directory of a binary built by cargo (`<target>/<profile>/bin`).
pub fn target_dir(bin: &str) -> PathBuf {
    Path::new(bin)
        .ancestors()
        .nth(2)
        .expect("the binary sits in <target>/<profile>/")
        .to_path_buf()
}

/// The python of the venv `<target>/<name>`, created (with `python3 -m venv`)
/// and given `packages` from PyPI unless `modules` already import in it.
pub fn venv(target: &Path, name: &str, packages: &[&str], modules: &str) -> PathBuf {
    let venv = target.join(name);
    let python = venv.join("bin/python");
    let has = || {
        python.exists()
            && Command::new(&python)
                .args(["-c", &format!("import {modules}")])
                .status()
                .is_ok_and(|s| s.success())
    };
    if !has() {
        let run = |cmd: &mut Command| {
            let status = cmd.status().expect("run");
            assert!(status.success(), "{cmd:?} failed");
        };
        run(Command::new("python3").args(["-m", "venv", venv.to_str().expect("utf-8 path")]));
        run(Command::new(&python)
            .args(["-m", "pip", "install", "-q"])
            .args(packages));
    }
    python
}

/// Installs `package` into the venv of `python` if `check` (a path inside
/// the venv) is missing; whether it is there now.
pub fn try_install(python: &Path, package: &str, check: &Path) -> bool {
    check.exists()
        || Command::new(python)
            .args(["-m", "pip", "install", "-q", package])
            .status()
            .is_ok_and(|s| s.success())
}

/// The Playwright venv for the explorer's browser tests (driving Debian's
/// Chromium, `/usr/bin/chromium`: Playwright's own browser download is not
/// used); its python.
pub fn playwright(target: &Path) -> PathBuf {
    venv(
        target,
        "playwright-venv",
        &["playwright==1.65.2"],
        "playwright",
    )
}

/// Runs the explorer's browser driver (`indexer/tests/explorer_pages.py`)
/// with `config` (written into `dir`) in the Playwright venv of `python`;
/// its report. Panics with the driver's output unless it succeeds.
pub fn explore(python: &Path, config: &serde_json::Value, dir: &Path) -> serde_json::Value {
    let file = dir.join("explorer-config.json");
    std::fs::write(&file, config.to_string()).expect("write the driver's config");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../indexer/tests/explorer_pages.py"
    );
    let out = Command::new(python)
        .arg(script)
        .arg(&file)
        .output()
        .expect("run explorer_pages.py");
    assert!(
        out.status.success(),
        "explorer_pages.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the driver prints JSON")
}
