//! What a generated name may be: a snake_case Rust identifier that is safe as a file name.

use tasker_rules::MAX_NAME_LEN;

/// Rust's keywords (strict, reserved and edition 2024), which cannot name a module or method.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Names that would shadow what generated code refers to.
const TAKEN: &[&str] = &["tasker", "main", "lib", "std", "core"];

/// Checks that `name` can be a module, method and file name; `what` names it in the error.
pub(crate) fn check(what: &str, name: &str) -> Result<(), String> {
    let hint = |why: String| {
        let suggestion = suggest(name);
        if suggestion.is_empty() || suggestion == name {
            format!("{what} `{name}` {why}")
        } else {
            format!("{what} `{name}` {why} (try `{suggestion}`)")
        }
    };
    if name.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    // Every generated name is held to the runtime's limit on task names, the shortest.
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{what} is {} bytes long, over the maximum of {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(hint("must start with a lowercase letter".to_owned()));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(hint(format!(
            "contains {bad:?}; use snake_case: lowercase letters, digits and `_`"
        )));
    }
    if KEYWORDS.contains(&name) {
        return Err(format!(
            "{what} `{name}` is a Rust keyword; choose another name"
        ));
    }
    if TAKEN.contains(&name) {
        return Err(format!(
            "{what} `{name}` would shadow a name generated code uses; choose another name"
        ));
    }
    Ok(())
}

/// `name` in snake_case, as far as it can be guessed (`Order-Process` → `order_process`).
fn suggest(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_matches('_').to_owned()
}

/// `order_process` → `OrderProcess`.
pub(crate) fn camel_case(name: &str) -> String {
    name.split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_snake_case_and_refuses_the_rest() {
        assert!(check("name", "order_process").is_ok());
        assert!(check("name", "step2").is_ok());
        let error = check("name", "Order-Process").expect_err("not snake case");
        assert!(error.contains("try `order_process`"), "{error}");
        assert!(check("name", "../etc/passwd").is_err());
        assert!(check("name", "a/b").is_err());
        assert!(check("name", "").is_err());
        assert!(
            check("name", "fn")
                .expect_err("keyword")
                .contains("keyword")
        );
        assert!(check("name", "tasker").is_err());
        assert!(check("name", &"a".repeat(65)).is_err());
    }

    #[test]
    fn camel_cases() {
        assert_eq!(camel_case("order_process"), "OrderProcess");
        assert_eq!(camel_case("a1_b"), "A1B");
    }
}
