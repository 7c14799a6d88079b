//! Compile-fail cases of the macros, each with its reviewed `.stderr` (the pass cases are the
//! `pass` test binary). Without a pass case trybuild only checks, never builds, the dependencies.
//!
//! `TRYBUILD=overwrite cargo test -p tasker-ui-tests` rewrites the `.stderr` files after a
//! deliberate change to a message; review the diff before committing it.

use std::path::Path;

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("step_handler/fail/*.rs");
    cases.compile_fail("events/fail/*.rs");
    for entry in std::fs::read_dir("task_handler/fail").expect("ui cases") {
        let path = entry.expect("ui case").path();
        if path.extension().is_some_and(|e| e == "rs") {
            if binds_workspace_yaml(&path) && !trybuild_root_is_default() {
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

/// Whether the case binds a template under `tests/ui/templates/` by a path relative to
/// trybuild's crate root.
fn binds_workspace_yaml(case: &Path) -> bool {
    std::fs::read_to_string(case)
        .is_ok_and(|source| source.contains("\"../../../../tests/ui/templates/"))
}

/// Whether trybuild's crate root is `<workspace>/target/tests/trybuild/tasker-ui-tests`, four
/// levels below the workspace, as the YAML cases' relative template paths assume.
fn trybuild_root_is_default() -> bool {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent);
    match (target, workspace) {
        (Some(target), Some(workspace)) => target == workspace.join("target"),
        _ => false,
    }
}
