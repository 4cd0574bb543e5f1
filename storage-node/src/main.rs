fn main() -> std::process::ExitCode {
    cairn_storage_node::cli::main(std::env::args_os())
}
