//! Mermaid flowcharts of a template's graph, or of a live task coloured by step state.

use std::fmt::Write as _;

use crate::{StepInfo, StepState, TaskTemplate};

/// One node of a flowchart.
struct Node<'a> {
    name: &'a str,
    label: String,
    class: Option<&'static str>,
}

/// The colour of each state, as a Mermaid `classDef` style.
fn style(state: StepState) -> &'static str {
    match state {
        StepState::Pending => "fill:#eeeeee,stroke:#999999,color:#333333",
        StepState::InProgress => "fill:#cfe8ff,stroke:#1f6feb,color:#0b3d91",
        StepState::Complete => "fill:#d3f5d3,stroke:#2da44e,color:#14532d",
        StepState::Error => "fill:#ffd7d5,stroke:#cf222e,color:#82071e",
        StepState::Cancelled => "fill:#f0e6ff,stroke:#8250df,color:#3e1f79",
        StepState::ResolvedManually => "fill:#fff2c6,stroke:#bf8700,color:#633c01",
    }
}

/// A Mermaid flowchart of a template's steps and dependencies.
pub fn template(template: &TaskTemplate) -> String {
    let nodes: Vec<Node<'_>> = template
        .step_templates
        .iter()
        .map(|s| Node {
            name: &s.name,
            label: s.name.clone(),
            class: None,
        })
        .collect();
    let edges = template.step_edges();
    render(
        &format!("{} ({})", template.full_name(), "template"),
        &nodes,
        &edges,
    )
}

/// A Mermaid flowchart of a task's steps, labelled and coloured by state, with `edges` as `(parent, child)` step ids.
pub fn task(title: &str, steps: &[StepInfo], edges: &[(i64, i64)]) -> String {
    let nodes: Vec<Node<'_>> = steps
        .iter()
        .map(|s| Node {
            name: &s.name,
            label: format!(
                "{}<br/>{} · {}/{} attempts",
                s.name, s.state, s.attempts, s.retry_limit
            ),
            class: Some(s.state.as_str()),
        })
        .collect();
    let index = |id: i64| steps.iter().position(|s| s.step_id == id);
    let edges: Vec<(usize, usize)> = edges
        .iter()
        .filter_map(|&(from, to)| Some((index(from)?, index(to)?)))
        .collect();
    render(title, &nodes, &edges)
}

fn render(title: &str, nodes: &[Node<'_>], edges: &[(usize, usize)]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "---\ntitle: {}\n---", escape(title));
    out.push_str("flowchart TD\n");
    for (i, node) in nodes.iter().enumerate() {
        let _ = writeln!(out, "    s{i}[\"{}\"]", escape(&node.label));
        let _ = node.name;
    }
    for (from, to) in edges {
        let _ = writeln!(out, "    s{from} --> s{to}");
    }
    if nodes.iter().any(|n| n.class.is_some()) {
        for state in StepState::ALL {
            let _ = writeln!(out, "    classDef {state} {}", style(state));
        }
        for (i, node) in nodes.iter().enumerate() {
            if let Some(class) = node.class {
                let _ = writeln!(out, "    class s{i} {class}");
            }
        }
    }
    out
}

/// Mermaid labels are quoted; quotes and markup characters become entities.
fn escape(text: &str) -> String {
    text.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
        .replace("#lt;br/#gt;", "<br/>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diamond_template() {
        let template = TaskTemplate::new("shop", "order", "1.0.0")
            .step(crate::StepTemplate::new("fetch", "h"))
            .step(crate::StepTemplate::new("pay", "h").depends_on(["fetch"]))
            .step(crate::StepTemplate::new("ship", "h").depends_on(["fetch"]))
            .step(crate::StepTemplate::new("notify", "h").depends_on(["pay", "ship"]));
        assert_eq!(
            template_diagram(&template),
            "---\ntitle: shop/order@1.0.0 (template)\n---\nflowchart TD\n    s0[\"fetch\"]\n    s1[\"pay\"]\n    s2[\"ship\"]\n    s3[\"notify\"]\n    s0 --> s1\n    s0 --> s2\n    s1 --> s3\n    s2 --> s3\n"
        );
    }

    fn template_diagram(t: &TaskTemplate) -> String {
        template(t)
    }
}
