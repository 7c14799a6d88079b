//! The step graph: dependency order and depth.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

use crate::MAX_GRAPH_DEPTH;

/// Step indices in dependency order (parents first), where `parents[i]` lists the indices of
/// the steps step `i` depends on.
///
/// Kahn's algorithm; among ready steps the lowest index goes first, so the order is
/// deterministic. Steps on a cycle, and the steps after them, are left out; so are parent
/// indices out of range.
pub fn topological_order(parents: &[Vec<usize>]) -> Vec<usize> {
    let mut children = vec![Vec::new(); parents.len()];
    let mut waiting = vec![0usize; parents.len()];
    for (child, ps) in parents.iter().enumerate() {
        for &parent in ps {
            if let Some(siblings) = children.get_mut(parent) {
                siblings.push(child);
                waiting[child] += 1;
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = waiting
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n == 0)
        .map(|(i, _)| Reverse(i))
        .collect();
    let mut order = Vec::with_capacity(parents.len());
    while let Some(Reverse(step)) = ready.pop() {
        order.push(step);
        for &child in &children[step] {
            waiting[child] -= 1;
            if waiting[child] == 0 {
                ready.push(Reverse(child));
            }
        }
    }
    order
}

/// A dependency chain longer than [`MAX_GRAPH_DEPTH`] steps; `Display` is the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphTooDeep<'a> {
    /// The index of the chain's last step.
    pub end: usize,
    /// The name of the chain's last step.
    pub end_name: &'a str,
    /// How many steps the chain has.
    pub depth: usize,
}

impl fmt::Display for GraphTooDeep<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dependency chain ending at step `{}` is {} steps long, over the maximum of \
             {MAX_GRAPH_DEPTH}",
            self.end_name, self.depth
        )
    }
}

/// The deepest dependency chain, if it has more than [`MAX_GRAPH_DEPTH`] steps; `names[i]`
/// names step `i` and `parents[i]` lists the indices of its parents, as for
/// [`topological_order`].
///
/// Of several chains equally deep, the one whose last step comes first in
/// [`topological_order`] is reported. Steps on a cycle are not counted.
pub fn graph_depth_problem<'a>(
    names: &[&'a str],
    parents: &[Vec<usize>],
) -> Option<GraphTooDeep<'a>> {
    let mut depth = vec![0usize; parents.len()];
    let mut deepest: Option<(usize, usize)> = None;
    for i in topological_order(parents) {
        // Every parent of `i` precedes it in the order, so its depth is already final.
        let parent_depth = parents[i]
            .iter()
            .filter_map(|&p| depth.get(p))
            .max()
            .copied()
            .unwrap_or(0);
        depth[i] = 1 + parent_depth;
        if deepest.is_none_or(|(d, _)| depth[i] > d) {
            deepest = Some((depth[i], i));
        }
    }
    let (depth, end) = deepest.filter(|&(depth, _)| depth > MAX_GRAPH_DEPTH)?;
    Some(GraphTooDeep {
        end,
        end_name: names.get(end).copied().unwrap_or_default(),
        depth,
    })
}
