//! `cargo-tasker`: run as `cargo tasker …` once installed.

fn main() {
    if let Err(message) = tasker_cli::run(std::env::args_os(), &mut std::io::stdout()) {
        eprintln!("{message}");
        std::process::exit(2);
    }
}
