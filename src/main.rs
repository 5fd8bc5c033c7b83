//! The `lvmsync` command line: parses arguments, runs one subcommand, maps errors to exit codes.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
