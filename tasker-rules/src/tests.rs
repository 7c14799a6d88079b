//! Each rule at its boundaries: exactly at a limit passes, one over fails.

use super::*;

fn message(problem: Option<impl std::fmt::Display>) -> String {
    problem.map(|p| p.to_string()).unwrap_or_default()
}

#[test]
fn identifier_lengths_are_bounded_per_kind() {
    for (kind, max) in [
        (Identifier::Namespace, MAX_NAMESPACE_LEN),
        (Identifier::TaskName, MAX_NAME_LEN),
        (Identifier::StepName, MAX_STEP_NAME_LEN),
    ] {
        assert_eq!(kind.max_len(), max);
        assert_eq!(identifier_problem(kind, &"n".repeat(max)), None);
        let long = "n".repeat(max + 1);
        assert_eq!(
            identifier_problem(kind, &long),
            Some(IdentifierProblem::TooLong { kind, value: &long })
        );
    }
    assert_eq!(
        message(identifier_problem(Identifier::TaskName, &"n".repeat(65))),
        format!(
            "task name `{}…` is 65 bytes long, over the maximum of 64",
            "n".repeat(32)
        )
    );
}

#[test]
fn identifier_forms() {
    for good in ["a", "order_process", "shop-floor", "v1.2", "A_b-C.9"] {
        assert_eq!(
            identifier_problem(Identifier::Namespace, good),
            None,
            "{good}"
        );
    }
    assert_eq!(
        message(identifier_problem(Identifier::Namespace, "")),
        "namespace is empty"
    );
    assert_eq!(
        message(identifier_problem(Identifier::StepName, "bad name")),
        "step name `bad name` contains ' '; use ASCII letters, digits, `_`, `-` and `.`"
    );
    for bad in ["a/b", "é", "a:b", "a\0"] {
        assert!(
            matches!(
                identifier_problem(Identifier::TaskName, bad),
                Some(IdentifierProblem::BadChar { .. })
            ),
            "{bad}"
        );
    }
    // A multi-byte character counts in bytes, as the database column does.
    let wide = "é".repeat(MAX_NAME_LEN / 2 + 1);
    assert!(matches!(
        identifier_problem(Identifier::TaskName, &wide),
        Some(IdentifierProblem::TooLong { .. })
    ));
}

#[test]
fn versions_are_bounded_semantic_versions() {
    let at_limit = "1.0.0-abcdefghij";
    assert_eq!(at_limit.len(), MAX_VERSION_LEN);
    assert_eq!(version_problem(at_limit), None);
    let over = "1.0.0-abcdefghijk";
    assert_eq!(version_problem(over), Some(VersionProblem::TooLong(over)));
    assert_eq!(
        message(version_problem(over)),
        "version `1.0.0-abcdefghijk` is 17 bytes long, over the maximum of 16"
    );
    for good in [
        "0.1.0",
        "10.20.30",
        "1.2.3-rc.1",
        "1.0.0+b.5",
        "1.2.3-0.a-b+x-1",
    ] {
        assert_eq!(version_problem(good), None, "{good}");
    }
    for (bad, why) in [
        ("", SemverProblem::NotThreeNumbers),
        ("1.0", SemverProblem::NotThreeNumbers),
        ("1.0.0.0", SemverProblem::NotThreeNumbers),
        ("v1.2.3", SemverProblem::NotNumbers),
        ("1.2.x", SemverProblem::NotNumbers),
        ("01.2.3", SemverProblem::LeadingZero),
        ("1.2.3-01", SemverProblem::PreReleaseLeadingZero),
        ("1.2.3-", SemverProblem::EmptyIdentifier),
        ("1.2.3+", SemverProblem::EmptyIdentifier),
        ("1.2.3-a..b", SemverProblem::EmptyIdentifier),
        ("1.2.3-a_b", SemverProblem::IdentifierChar),
        ("1.2.3+a_b", SemverProblem::IdentifierChar),
    ] {
        assert_eq!(
            version_problem(bad),
            Some(VersionProblem::NotSemver { version: bad, why }),
            "{bad}"
        );
    }
    assert_eq!(
        message(version_problem("1.0")),
        "version `1.0` is not a semantic version `MAJOR.MINOR.PATCH` (optionally `-pre` and \
         `+build`): expected three numbers separated by dots"
    );
}

#[test]
fn template_custom_events_are_dotted_and_unreserved() {
    assert_eq!(custom_event_problem("order.fulfilled"), None);
    for bad in ["fulfilled", "order.", ".order", "order..x"] {
        assert_eq!(
            custom_event_problem(bad),
            Some(EventNameProblem::NotDotted(bad)),
            "{bad}"
        );
    }
    for prefix in RESERVED_EVENT_PREFIXES {
        let name = format!("{prefix}mine");
        assert_eq!(
            custom_event_problem(&name),
            Some(EventNameProblem::ReservedPrefix {
                name: &name,
                prefix
            })
        );
    }
    assert_eq!(
        message(custom_event_problem("step.completed")),
        "custom event `step.completed` uses the reserved prefix `step.`; the engine's own \
         events are `task.*`, `step.*`, `workflow.*`, `observability.*` and `test.*`"
    );
    // A family name that merely starts the same way is not reserved.
    assert_eq!(custom_event_problem("tasks.done"), None);
    // Templates compare case-sensitively, as subscribers' patterns do.
    assert_eq!(custom_event_problem("Step.completed"), None);
}

#[test]
fn declared_custom_events_are_stricter() {
    let at_limit = format!("order.{}", "x".repeat(MAX_CUSTOM_EVENT_NAME_LEN - 6));
    assert_eq!(declared_event_problem(&at_limit), None);
    let over = format!("{at_limit}x");
    assert_eq!(
        declared_event_problem(&over),
        Some(EventNameProblem::TooLong(&over))
    );
    assert_eq!(declared_event_problem("order.shipped"), None);
    assert_eq!(
        declared_event_problem("shipped"),
        Some(EventNameProblem::NotDotted("shipped"))
    );
    assert_eq!(
        declared_event_problem("order..x"),
        Some(EventNameProblem::NotDotted("order..x"))
    );
    assert_eq!(
        declared_event_problem("order.ship ped"),
        Some(EventNameProblem::BadChar {
            name: "order.ship ped",
            bad: ' '
        })
    );
    assert_eq!(
        declared_event_problem("step.mine"),
        Some(EventNameProblem::ReservedPrefix {
            name: "step.mine",
            prefix: "step."
        })
    );
    assert_eq!(
        declared_event_problem("Test.Event"),
        Some(EventNameProblem::ReservedPrefix {
            name: "Test.Event",
            prefix: "Test."
        })
    );
    // Whatever a template refuses, code refuses too.
    for name in ["fulfilled", "order.", "step.completed", "workflow.x"] {
        assert!(custom_event_problem(name).is_some());
        assert!(declared_event_problem(name).is_some(), "{name}");
    }
}

#[test]
fn reserved_families_and_prefixes_agree() {
    assert_eq!(RESERVED_EVENT_FAMILIES.len(), RESERVED_EVENT_PREFIXES.len());
    for (family, prefix) in RESERVED_EVENT_FAMILIES.iter().zip(RESERVED_EVENT_PREFIXES) {
        assert_eq!(format!("{family}."), *prefix);
    }
}

#[test]
fn step_counts_are_bounded() {
    assert_eq!(step_count_problem(0), Some(StepCountProblem::Empty));
    assert_eq!(step_count_problem(1), None);
    assert_eq!(step_count_problem(MAX_STEPS_PER_TEMPLATE), None);
    assert_eq!(
        message(step_count_problem(MAX_STEPS_PER_TEMPLATE + 1)),
        "template has 1001 steps, over the maximum of 1000"
    );
}

#[test]
fn retry_limits_are_bounded() {
    assert_eq!(retry_limit_problem(0), None);
    assert_eq!(retry_limit_problem(u64::from(MAX_RETRY_LIMIT)), None);
    assert_eq!(
        message(retry_limit_problem(u64::from(MAX_RETRY_LIMIT) + 1)),
        "retry limit 1001 is over the maximum of 1000"
    );
    assert!(retry_limit_problem(u64::MAX).is_some());
}

#[test]
fn timeouts_are_positive_and_fit_a_duration() {
    assert_eq!(timeout_problem(0.001), None);
    assert_eq!(timeout_problem(86_400.0), None);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(timeout_problem(bad), Some(TimeoutProblem::NotPositive(_))),
            "{bad}"
        );
    }
    // The largest whole number of seconds a `Duration` holds, then the next `f64` above it.
    let largest = 18_446_744_073_709_549_568.0;
    assert_eq!(timeout_problem(largest), None);
    assert_eq!(
        message(timeout_problem(1e300)),
        "timeout of 1e300 seconds is too large"
    );
    assert!(matches!(
        timeout_problem(18_446_744_073_709_551_616.0),
        Some(TimeoutProblem::TooLarge(_))
    ));
}

/// `parents` of a chain of `n` steps, each depending on the one before.
fn chain(n: usize) -> Vec<Vec<usize>> {
    (0..n)
        .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
        .collect()
}

#[test]
fn graph_depth_is_bounded() {
    let names: Vec<String> = (0..=MAX_GRAPH_DEPTH).map(|i| format!("s{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        graph_depth_problem(&names[..MAX_GRAPH_DEPTH], &chain(MAX_GRAPH_DEPTH)),
        None
    );
    let problem = graph_depth_problem(&names, &chain(MAX_GRAPH_DEPTH + 1));
    assert_eq!(
        problem,
        Some(GraphTooDeep {
            end: MAX_GRAPH_DEPTH,
            end_name: "s100",
            depth: MAX_GRAPH_DEPTH + 1
        })
    );
    assert_eq!(
        message(problem),
        "dependency chain ending at step `s100` is 101 steps long, over the maximum of 100"
    );
    // Wide is not deep: a thousand steps on one parent are two levels.
    let mut fan = vec![vec![0]; MAX_STEPS_PER_TEMPLATE];
    fan[0].clear();
    assert_eq!(graph_depth_problem(&[], &fan), None);
}

#[test]
fn topological_order_is_deterministic_and_skips_cycles() {
    // 0 → {1, 2} → 3, declared out of order.
    let diamond = vec![vec![1, 2], vec![3], vec![3], vec![]];
    assert_eq!(topological_order(&diamond), [3, 1, 2, 0]);
    // 0 ⇄ 1 is a cycle; 2 stands alone; 3 is an out-of-range parent, ignored.
    assert_eq!(topological_order(&[vec![1], vec![0], vec![3]]), [2]);
}
