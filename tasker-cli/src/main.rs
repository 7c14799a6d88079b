//! `cargo-tasker`: run as `cargo tasker …` once installed.

fn main() {
    if let Err(error) = tasker_cli::run(std::env::args_os(), &mut std::io::stdout()) {
        eprintln!("error: {error}");
        std::process::exit(error.code);
    }
}
