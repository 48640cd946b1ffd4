//! The `sluice` command: serve, deploy, invoke, build, up.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
