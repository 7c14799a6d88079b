//! The crate being scaffolded: its name, its `src/lib.rs`, its dependencies, `rustfmt`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::CliError;

/// The cargo that runs us (`CARGO` is set for subcommands), or the one on `PATH`.
fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// The crate's library name: what its tests `use`.
pub(crate) fn crate_name(root: &Path) -> Result<String, CliError> {
    let package = package(root)?;
    let lib = package["targets"].as_array().and_then(|targets| {
        targets.iter().find(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "lib" || k == "rlib"))
        })
    });
    let name = match lib {
        Some(target) => target["name"].as_str().unwrap_or_default().to_owned(),
        None => package["name"]
            .as_str()
            .unwrap_or_default()
            .replace('-', "_"),
    };
    if name.is_empty() {
        return Err(CliError::failure("`cargo metadata` names no package"));
    }
    Ok(name)
}

/// Whether the crate depends on tasker already (in any table).
pub(crate) fn depends_on_tasker(root: &Path) -> Result<bool, CliError> {
    let package = package(root)?;
    Ok(package["dependencies"].as_array().is_some_and(|deps| {
        deps.iter()
            .any(|d| d["name"] == PACKAGE || d["rename"] == "tasker")
    }))
}

/// The crate's package as `cargo metadata` describes it.
fn package(root: &Path) -> Result<serde_json::Value, CliError> {
    let manifest = root.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(CliError::usage(format!(
            "no `Cargo.toml` in `{}`: run `cargo tasker` in a crate (or pass `--crate-dir`)",
            root.display()
        )));
    }
    let output = Command::new(cargo())
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .map_err(|e| CliError::failure(format!("cannot run `cargo metadata`: {e}")))?;
    if !output.status.success() {
        return Err(CliError::failure(format!(
            "`cargo metadata` failed on `{}`:\n{}",
            manifest.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| CliError::failure(format!("unreadable `cargo metadata` output: {e}")))?;
    let manifest_path = std::fs::canonicalize(&manifest).unwrap_or(manifest);
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    packages
        .iter()
        .find(|p| {
            p["manifest_path"]
                .as_str()
                .is_some_and(|m| Path::new(m) == manifest_path)
        })
        .or(packages.first())
        .cloned()
        .ok_or_else(|| {
            CliError::usage(format!(
                "`{}` is a workspace manifest; run `cargo tasker` in one of its crates",
                manifest_path.display()
            ))
        })
}

/// `lib_rs` with `pub mod name;` added among its module declarations, kept sorted as rustfmt
/// keeps them; unchanged if it is already declared.
pub(crate) fn with_module(lib_rs: &str, name: &str) -> String {
    let line = format!("pub mod {name};");
    let is_mod = |l: &str| {
        let l = l.trim();
        (l.starts_with("pub mod ") || l.starts_with("mod ")) && l.ends_with(';')
    };
    let declared = |l: &str| {
        let l = l
            .trim()
            .trim_start_matches("pub ")
            .trim_start_matches("mod ");
        l.trim_end_matches(';').trim().to_owned()
    };
    let mut lines: Vec<String> = lib_rs.lines().map(str::to_owned).collect();
    if lines.iter().any(|l| is_mod(l) && declared(l) == name) {
        return lib_rs.to_owned();
    }
    match lines.iter().position(|l| is_mod(l)) {
        Some(start) => {
            let end = lines[start..]
                .iter()
                .position(|l| !is_mod(l))
                .map_or(lines.len(), |n| start + n);
            let at = (start..end)
                .find(|&i| declared(&lines[i]).as_str() > name)
                .unwrap_or(end);
            lines.insert(at, line);
        }
        None => {
            while lines.last().is_some_and(|l| l.trim().is_empty()) {
                lines.pop();
            }
            if !lines.is_empty() {
                lines.push(String::new());
            }
            lines.push(line);
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The package tasker is published as; its library keeps the import name `tasker`.
pub(crate) const PACKAGE: &str = "tasker-engine";

/// Adds tasker to the crate's dependencies with `cargo add`.
pub(crate) fn add_dependency(root: &Path, tasker_path: Option<&Path>) -> Result<(), CliError> {
    let mut command = Command::new(cargo());
    command.arg("add").current_dir(root).arg(PACKAGE);
    if let Some(path) = tasker_path {
        command.arg("--path").arg(tasker_crate(path)?);
    }
    let output = command
        .output()
        .map_err(|e| CliError::failure(format!("cannot run `cargo add`: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(CliError::failure(format!(
            "`cargo add {PACKAGE}` failed; nothing else was written:\n{}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// The tasker crate at `path`: the crate itself, or the one inside a checkout of the whole
/// repository (whose root manifest is a workspace, not a package).
pub(crate) fn tasker_crate(path: &Path) -> Result<PathBuf, CliError> {
    let is_tasker = |dir: &Path| {
        std::fs::read_to_string(dir.join("Cargo.toml"))
            .is_ok_and(|manifest| manifest.contains(&format!("name = \"{PACKAGE}\"")))
    };
    if is_tasker(path) {
        return Ok(path.to_owned());
    }
    let inner = path.join("tasker");
    if is_tasker(&inner) {
        return Ok(inner);
    }
    Err(CliError::usage(format!(
        "`--tasker-path {}` is not tasker's crate: pass a checkout of tasker (or its `tasker/` \
         directory, the crate inside it)",
        path.display()
    )))
}

/// Turns on `features` of the crate's tasker dependency (with `dev`, of its tasker
/// dev-dependency, for its tests) with `cargo add`, which keeps the dependency's source and its
/// other features; a crate without one gets it, from the same source as the other.
pub(crate) fn add_features(root: &Path, features: &[&str], dev: bool) -> Result<(), CliError> {
    if features.is_empty() {
        return Ok(());
    }
    let mut command = Command::new(cargo());
    command.current_dir(root).arg("add");
    if dev {
        command.arg("--dev");
    }
    let output = command
        .args([PACKAGE, "--features"])
        .arg(features.join(","))
        .output()
        .map_err(|e| CliError::failure(format!("cannot run `cargo add`: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(CliError::failure(format!(
            "`cargo add {PACKAGE} --features {}` failed; nothing was written:\n{}",
            features.join(","),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Formats generated Rust files in place when `rustfmt` is installed; without it they are
/// left as generated, which compiles the same.
pub(crate) fn rustfmt(files: &[PathBuf]) {
    if files.is_empty() {
        return;
    }
    let rustfmt =
        std::env::var_os("RUSTFMT").map_or_else(|| PathBuf::from("rustfmt"), PathBuf::from);
    let _ = Command::new(rustfmt)
        .args(["--edition", "2024"])
        .args(files)
        .output();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_added_in_order_once() {
        let lib = "//! Docs.\n\npub mod alpha;\npub mod gamma;\n\nfn helper() {}\n";
        let updated = with_module(lib, "beta");
        assert_eq!(
            updated,
            "//! Docs.\n\npub mod alpha;\npub mod beta;\npub mod gamma;\n\nfn helper() {}\n"
        );
        assert_eq!(with_module(&updated, "beta"), updated);
        assert_eq!(with_module("//! Docs.\n", "x"), "//! Docs.\n\npub mod x;\n");
    }

    #[test]
    fn tasker_path_takes_the_checkout_or_the_crate_and_names_a_wrong_one() {
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("checkout");
        let inner = checkout.join("tasker");
        assert_eq!(tasker_crate(checkout).expect("checkout root"), inner);
        assert_eq!(tasker_crate(&inner).expect("crate"), inner);
        let error = tasker_crate(&checkout.join("tasker-cli")).expect_err("not tasker");
        assert!(
            error.to_string().contains("is not tasker's crate"),
            "{error}"
        );
    }
}
