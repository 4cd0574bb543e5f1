fn main() -> std::process::ExitCode {
    // Test builds only: named failpoints from `FAILPOINTS` (see `store::crash_point`).
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    cairn_storage_node::cli::main(std::env::args_os())
}
