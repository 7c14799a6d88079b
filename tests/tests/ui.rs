//! Compile-fail and compile-pass cases of the macros, each failure with its reviewed `.stderr`.
//!
//! `TRYBUILD=overwrite cargo test -p tasker-tests --test ui` rewrites the `.stderr` files after a
//! deliberate change to a message; review the diff before committing it.

use std::path::Path;

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/task_handler/pass/*.rs");
    cases.pass("ui/step_handler/pass/*.rs");
    cases.compile_fail("ui/step_handler/fail/*.rs");
    cases.compile_fail("ui/events/fail/*.rs");
    for entry in std::fs::read_dir("ui/task_handler/fail").expect("ui cases") {
        let path = entry.expect("ui case").path();
        if path.extension().is_some_and(|e| e == "rs") {
            if path.ends_with("yaml_disagrees.rs") && !trybuild_root_is_default() {
                eprintln!(
                    "skipped {}: a custom target directory moves its YAML",
                    path.display()
                );
                continue;
            }
            cases.compile_fail(path);
        }
    }
}

/// Whether trybuild's crate root is `<workspace>/target/tests/trybuild/tasker-tests`, four
/// levels below the workspace, as `yaml_disagrees.rs`'s relative template path assumes.
fn trybuild_root_is_default() -> bool {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent();
    match (target, workspace) {
        (Some(target), Some(workspace)) => target == workspace.join("target"),
        _ => false,
    }
}
