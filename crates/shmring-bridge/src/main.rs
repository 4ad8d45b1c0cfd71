//! The `shmring-bridge` binary: the same command as `shmring bridge` (see
//! [`shmring_bridge::cli::HELP`]), for hosts that install only the bridge.

fn main() -> std::process::ExitCode {
    shmring_bridge::cli::main(std::env::args_os().skip(1).collect())
}
