fn main() -> std::process::ExitCode {
    cairn_localnet::cli::main(std::env::args_os())
}
