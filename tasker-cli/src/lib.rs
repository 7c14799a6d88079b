//! `cargo tasker`: the command-line companion of tasker. The binary is a thin shim over [`run`].
//!
//! This first version applies migrations; generators and task operations follow.

use std::ffi::OsString;
use std::io::Write;

use clap::{Args, Parser, Subcommand};

/// `cargo tasker …` as cargo invokes it (`cargo-tasker tasker …`).
#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo")]
pub enum CargoCli {
    /// Durable workflow tooling for tasker.
    Tasker(TaskerArgs),
}

/// The `tasker` subcommand's arguments.
#[derive(Debug, Args)]
#[command(version, about)]
pub struct TaskerArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of `cargo tasker`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply tasker's embedded database migrations.
    Migrate {
        /// Database URL: a SQLite file path or `postgres://…`.
        #[arg(long, env = "TASKER_DATABASE_URL", default_value = "tasker.db")]
        database_url: String,
    },
}

/// Parses `args` (as the binary received them) and runs the command, writing to `out`.
pub fn run(args: impl IntoIterator<Item = OsString>, out: &mut impl Write) -> Result<(), String> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    // Accept both `cargo tasker migrate` (argv: cargo-tasker tasker migrate) and `cargo-tasker migrate`.
    if args.get(1).is_none_or(|a| a != "tasker") {
        args.insert(1.min(args.len()), "tasker".into());
    }
    let CargoCli::Tasker(cli) = match CargoCli::try_parse_from(args) {
        Ok(cli) => cli,
        // `--help` and `--version` are answers, not errors.
        Err(e) if !e.use_stderr() => return write!(out, "{e}").map_err(|e| e.to_string()),
        Err(e) => return Err(e.to_string()),
    };
    match cli.command {
        Command::Migrate { database_url } => {
            let store =
                tasker::Store::connect(&database_url, 2, std::time::Duration::from_secs(10))
                    .map_err(|e| e.to_string())?;
            let applied = store.migrate().map_err(|e| e.to_string())?;
            writeln!(out, "applied {applied} migration(s) to {database_url}")
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        CargoCli::command().debug_assert();
    }

    #[test]
    fn migrate_creates_the_tables_once() {
        let dir = std::env::temp_dir().join(format!("tasker-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| e.to_string())
            .expect("temp dir");
        let db = dir.join("cli.db").display().to_string();
        let mut out = Vec::new();
        run(
            ["cargo-tasker", "tasker", "migrate", "--database-url", &db].map(OsString::from),
            &mut out,
        )
        .expect("migrate");
        run(
            ["cargo-tasker", "migrate", "--database-url", &db].map(OsString::from),
            &mut out,
        )
        .expect("again");
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("applied 1 migration(s)") && text.contains("applied 0 migration(s)"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
