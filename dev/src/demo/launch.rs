//! Running Cairn's services (local chain, storage nodes, indexer) as child
//! processes of one executable: `cairn-dev __serve <service> ARGS…` runs the
//! service's own command line (`cairn-localnet`, `cairn-node`,
//! `cairn-indexer`), so the demo and the end-to-end test start separate
//! processes without looking for other binaries on disk.
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};

/// The hidden first argument that turns an executable into a service.
pub const SERVE: &str = "__serve";

/// Runs `service` with `args` if `argv` asks for it (`<exe> __serve <service>
/// ARGS…`); `None` when `argv` is an ordinary command line.
pub fn serve_if_asked(argv: &[OsString]) -> Option<ExitCode> {
    if argv.get(1).map(|a| a.as_os_str()) != Some(SERVE.as_ref()) {
        return None;
    }
    let service = argv.get(2).and_then(|s| s.to_str()).unwrap_or_default();
    let args = argv.iter().skip(3).cloned();
    Some(match service {
        "localnet" => {
            cairn_localnet::cli::main(std::iter::once("cairn-localnet".into()).chain(args))
        }
        "node" => cairn_storage_node::cli::main(std::iter::once("cairn-node".into()).chain(args)),
        "indexer" => cairn_indexer::cli::main(std::iter::once("cairn-indexer".into()).chain(args)),
        other => {
            eprintln!("error: unknown service {other:?} (localnet, node, indexer)");
            ExitCode::from(2)
        }
    })
}

/// How to start a service: an executable that understands `__serve`.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub exe: PathBuf,
}

impl Launcher {
    /// This process's own executable (`cairn`, or a test binary that calls
    /// [`serve_if_asked`] first thing in `main`).
    pub fn this_exe() -> std::io::Result<Self> {
        Ok(Launcher {
            exe: std::env::current_exe()?,
        })
    }

    /// Starts `service` with `args`; its stdout and stderr go to `log`.
    pub fn spawn(&self, service: &str, args: &[String], log: &Path) -> std::io::Result<Service> {
        let out = File::create(log)?;
        let mut command = Command::new(&self.exe);
        command
            .arg(SERVE)
            .arg(service)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // The service dies with this process, however it ends (Ctrl-C, a
        // panic, SIGKILL): nothing is left running.
        // SAFETY: prctl is async-signal-safe and touches only the child.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        running().lock().expect("pid list").push(child.id());
        Ok(Service {
            name: service.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }
}

/// A running service process; killed when dropped.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Service {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            running()
                .lock()
                .expect("pid list")
                .retain(|p| *p != child.id());
        }
    }

    /// The last `lines` lines of the service's log (for error messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every service process started and not yet reaped.
fn running() -> &'static std::sync::Mutex<Vec<u32>> {
    static RUNNING: std::sync::OnceLock<std::sync::Mutex<Vec<u32>>> = std::sync::OnceLock::new();
    RUNNING.get_or_init(Default::default)
}

/// On Ctrl-C or SIGTERM: SIGKILL every service, remove `remove` (the demo's
/// temporary directory, if any) and exit with 130.
pub fn clean_up_on_interrupt(remove: Option<PathBuf>) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("\ninterrupted: stopping every service");
        for pid in running().lock().expect("pid list").drain(..) {
            // SAFETY: plain kill(2) of a child this process started.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        if let Some(dir) = remove {
            let _ = std::fs::remove_dir_all(&dir);
            eprintln!("removed {}", dir.display());
        }
        std::process::exit(130);
    });
}

/// The directory a demo or bench keeps everything in: `given`, or a new
/// temporary directory named `<prefix>…` (returned too: it is removed when
/// dropped). Either way Ctrl-C kills the services and removes a temporary one.
pub fn work_dir(
    given: Option<&Path>,
    prefix: &str,
) -> Result<(PathBuf, Option<tempfile::TempDir>), cairn_cli::error::CliError> {
    let (work, temp) = match given {
        Some(dir) => (dir.to_path_buf(), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .map_err(|e| cairn_cli::error::CliError::Io {
                    path: std::env::temp_dir(),
                    reason: e.to_string(),
                })?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    clean_up_on_interrupt(temp.is_some().then(|| work.clone()));
    Ok((work, temp))
}
