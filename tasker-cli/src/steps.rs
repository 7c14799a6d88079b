//! `--steps a,b:a,c:a,d:b+c`: the steps of a generated workflow and their parents.

use std::collections::HashMap;

use crate::names;

/// One step of a `--steps` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepSpec {
    /// Its name (a method name).
    pub(crate) name: String,
    /// The steps it depends on, in the order given.
    pub(crate) parents: Vec<String>,
}

/// The default when `--steps` is not given: the seed generator's fetch, process, complete.
pub(crate) const DEFAULT_STEPS: &str = "fetch,process:fetch,complete:process";

/// Parses and checks a `--steps` list: every problem is reported, none is written.
pub(crate) fn parse(spec: &str) -> Result<Vec<StepSpec>, String> {
    let mut steps: Vec<StepSpec> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for (i, entry) in spec.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            problems.push(format!("entry {} of `--steps` is empty", i + 1));
            continue;
        }
        let (name, parents) = match entry.split_once(':') {
            Some((name, parents)) => (name.trim(), parents.trim()),
            None => (entry, ""),
        };
        if let Err(e) = names::check("step name", name) {
            problems.push(e);
            continue;
        }
        let mut list: Vec<String> = Vec::new();
        if entry.contains(':') && parents.is_empty() {
            problems.push(format!(
                "step `{name}` has `:` but no parents; write `{name}:parent` or `{name}:a+b`"
            ));
        }
        for parent in parents.split('+').map(str::trim).filter(|p| !p.is_empty()) {
            if parent == name {
                problems.push(format!("step `{name}` depends on itself"));
            } else if list.iter().any(|p| p == parent) {
                problems.push(format!("step `{name}` lists `{parent}` twice"));
            } else {
                list.push(parent.to_owned());
            }
        }
        if steps.iter().any(|s| s.name == name) {
            problems.push(format!("step `{name}` is declared twice"));
            continue;
        }
        steps.push(StepSpec {
            name: name.to_owned(),
            parents: list,
        });
    }
    let known: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    for step in &steps {
        for parent in &step.parents {
            if !known.contains(&parent.as_str()) {
                let mut message = format!(
                    "step `{}` depends on `{parent}`, which is not a step",
                    step.name
                );
                if let Some(close) = closest(parent, &known) {
                    message.push_str(&format!("; did you mean `{close}`?"));
                }
                problems.push(message);
            }
        }
    }
    if problems.is_empty()
        && let Some(cycle) = find_cycle(&steps)
    {
        problems.push(format!(
            "the steps depend on each other in a cycle: `{}`",
            cycle.join(" -> ")
        ));
    }
    if steps.is_empty() && problems.is_empty() {
        problems.push("`--steps` names no steps".to_owned());
    }
    if problems.is_empty() {
        Ok(steps)
    } else {
        Err(problems.join("\n"))
    }
}

/// A cycle as names in dependency order, closed (`a -> b -> a`).
fn find_cycle(steps: &[StepSpec]) -> Option<Vec<String>> {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    // 0 = unvisited, 1 = on the path, 2 = done.
    let mut mark = vec![0u8; steps.len()];
    fn visit(
        i: usize,
        steps: &[StepSpec],
        index: &HashMap<&str, usize>,
        mark: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        mark[i] = 1;
        path.push(i);
        for parent in &steps[i].parents {
            let Some(&p) = index.get(parent.as_str()) else {
                continue;
            };
            if mark[p] == 1 {
                let from = path.iter().position(|&n| n == p).unwrap_or(0);
                let mut cycle: Vec<String> = path[from..]
                    .iter()
                    .map(|&n| steps[n].name.clone())
                    .collect();
                cycle.push(steps[p].name.clone());
                return Some(cycle);
            }
            if mark[p] == 0
                && let Some(cycle) = visit(p, steps, index, mark, path)
            {
                return Some(cycle);
            }
        }
        path.pop();
        mark[i] = 2;
        None
    }
    for i in 0..steps.len() {
        if mark[i] == 0
            && let Some(cycle) = visit(i, steps, &index, &mut mark, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

fn closest<'a>(wrong: &str, names: &[&'a str]) -> Option<&'a str> {
    let distance = |a: &str, b: &str| -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1; b.len() + 1];
            for (j, &cb) in b.iter().enumerate() {
                cur[j + 1] = (prev[j] + usize::from(ca != cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1);
            }
            prev = cur;
        }
        prev[b.len()]
    };
    let limit = 2.max(wrong.len() / 3);
    names
        .iter()
        .map(|n| (distance(wrong, n), *n))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// The steps grouped by depth: `fetch → validate → {pay, ship} → notify`.
pub(crate) fn summary(steps: &[StepSpec]) -> String {
    let mut depth: HashMap<&str, usize> = HashMap::new();
    // The graph is acyclic here; settle depths by repeated passes (small inputs).
    for _ in 0..steps.len() {
        for step in steps {
            let d = step
                .parents
                .iter()
                .map(|p| depth.get(p.as_str()).copied().unwrap_or(0) + 1)
                .max()
                .unwrap_or(0);
            depth.insert(&step.name, d);
        }
    }
    let levels = depth.values().copied().max().unwrap_or(0);
    (0..=levels)
        .map(|level| {
            let names: Vec<&str> = steps
                .iter()
                .filter(|s| depth.get(s.name.as_str()) == Some(&level))
                .map(|s| s.name.as_str())
                .collect();
            if names.len() == 1 {
                names[0].to_owned()
            } else {
                format!("{{{}}}", names.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_issue_example() {
        let steps = parse("fetch,validate:fetch,pay:validate,ship:validate,notify:pay+ship")
            .expect("steps");
        assert_eq!(steps.len(), 5);
        assert_eq!(steps[4].parents, ["pay", "ship"]);
        assert_eq!(summary(&steps), "fetch → validate → {pay, ship} → notify");
    }

    #[test]
    fn reports_every_problem() {
        let error = parse("fetch,pay:fetc").expect_err("unknown");
        assert!(
            error.contains("`fetc`, which is not a step; did you mean `fetch`?"),
            "{error}"
        );
        let error = parse("a:c,b:a,c:b").expect_err("cycle");
        assert!(error.contains("cycle: `a -> c -> b -> a`"), "{error}");
        let error = parse("a,a").expect_err("duplicate");
        assert!(error.contains("declared twice"), "{error}");
        let error = parse("a:a").expect_err("self");
        assert!(error.contains("depends on itself"), "{error}");
        let error = parse("Fetch,,b:").expect_err("several");
        assert_eq!(error.lines().count(), 3, "{error}");
    }
}
