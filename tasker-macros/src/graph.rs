//! The step graph as the macros see it: typo suggestions and cycles.

/// The candidate closest to `wrong`, if it is close enough to be a typo.
pub(crate) fn suggest<'a>(
    wrong: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = 2.max(wrong.chars().count() / 3);
    candidates
        .map(|c| (edit_distance(wrong, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Like [`suggest`], comparing without case, for names whose case the user may not know.
pub(crate) fn suggest_ignoring_case<'a>(
    wrong: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let lowered: Vec<(String, &'a str)> = candidates.map(|c| (c.to_lowercase(), c)).collect();
    let close = suggest(
        &wrong.to_lowercase(),
        lowered.iter().map(|(lower, _)| lower.as_str()),
    )?;
    lowered
        .iter()
        .find(|(lower, _)| lower == close)
        .map(|(_, original)| *original)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// The first cycle found, as step indices in dependency order (`a` depends on `b` … depends on
/// `a`), where `parents[i]` lists what step `i` depends on. Self-loops are not reported.
pub(crate) fn find_cycle(parents: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; parents.len()];
    for start in 0..parents.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next parent index to visit).
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let Some(&parent) = parents[node].get(*next) else {
                marks[node] = Mark::Done;
                path.pop();
                continue;
            };
            *next += 1;
            if parent == node {
                continue;
            }
            match marks[parent] {
                Mark::New => {
                    marks[parent] = Mark::OnPath;
                    path.push((parent, 0));
                }
                Mark::OnPath => {
                    let from = path.iter().position(|&(n, _)| n == parent).unwrap_or(0);
                    return Some(path[from..].iter().map(|&(n, _)| n).collect());
                }
                Mark::Done => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cycle_in_dependency_order() {
        // 0 depends on 1, 1 on 2, 2 on 0; 3 on 0.
        let parents = vec![vec![1], vec![2], vec![0], vec![0]];
        assert_eq!(find_cycle(&parents), Some(vec![0, 1, 2]));
        assert_eq!(find_cycle(&[vec![], vec![0], vec![0, 1]]), None);
    }

    #[test]
    fn suggests_close_names_only() {
        let names = ["fetch_order", "charge"];
        assert_eq!(
            suggest("fetch_ordr", names.into_iter()),
            Some("fetch_order")
        );
        assert_eq!(suggest("ship", names.into_iter()), None);
        let zones = ["UTC", "Europe/Berlin"];
        assert_eq!(
            suggest_ignoring_case("europe/berln", zones.into_iter()),
            Some("Europe/Berlin")
        );
        assert_eq!(suggest_ignoring_case("utc", zones.into_iter()), Some("UTC"));
    }
}
