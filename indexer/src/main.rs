fn main() -> std::process::ExitCode {
    cairn_indexer::cli::main(std::env::args_os())
}
