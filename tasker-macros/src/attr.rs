//! Attribute parsing shared by the macros: set-once options and their values.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Expr, Lit, LitStr, Token};

use crate::ctxt::Ctxt;
use crate::symbol;

/// An option that may be given at most once; the second occurrence is an error.
pub(crate) struct Attr<T> {
    name: &'static str,
    value: Option<(T, Span)>,
}

impl<T> Attr<T> {
    /// An unset option called `name`.
    pub(crate) fn none(name: &'static str) -> Self {
        Self { name, value: None }
    }

    /// Sets the value, or reports a duplicate at `span`.
    pub(crate) fn set(&mut self, cx: &mut Ctxt, span: Span, value: T) {
        if self.value.is_some() {
            cx.error_span(span, format!("duplicate option `{}`", self.name));
        } else {
            self.value = Some((value, span));
        }
    }

    /// The value, if set.
    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref().map(|(v, _)| v)
    }

    /// Where the option was written, if it was.
    pub(crate) fn span(&self) -> Option<Span> {
        self.value.as_ref().map(|(_, s)| *s)
    }

    /// The value, if set.
    pub(crate) fn into_inner(self) -> Option<T> {
        self.value.map(|(v, _)| v)
    }
}

/// The option's name as written, for messages.
pub(crate) fn option_name(meta: &ParseNestedMeta<'_>) -> String {
    meta.path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

/// Reports an unknown option, listing the valid ones, and skips its value.
pub(crate) fn unknown_option(
    cx: &mut Ctxt,
    meta: &ParseNestedMeta<'_>,
    attribute: &str,
    valid: &[&str],
) -> syn::Result<()> {
    let name = option_name(meta);
    cx.error_at(
        &meta.path,
        format!(
            "unknown {attribute} option `{name}`, expected one of {}",
            symbol::one_of(valid)
        ),
    );
    skip_value(meta)
}

/// Consumes `= value` or `(…)` after an option whose value is not wanted.
pub(crate) fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _content;
        syn::parenthesized!(_content in meta.input);
    }
    Ok(())
}

/// A string option: `name = "…"`.
pub(crate) fn string(meta: &ParseNestedMeta<'_>) -> syn::Result<LitStr> {
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s),
        other => Err(syn::Error::new(
            other.span(),
            format!(
                "`{}` takes a string literal, e.g. `{} = \"…\"`",
                option_name(meta),
                option_name(meta)
            ),
        )),
    }
}

/// An integer option: `name = 5`; anything else is refused with `hint` at the value.
pub(crate) fn integer(meta: &ParseNestedMeta<'_>, hint: &str) -> syn::Result<syn::LitInt> {
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(int), ..
        }) => Ok(int),
        other => Err(syn::Error::new(other.span(), hint)),
    }
}

/// A flag: `skippable` or `skippable = true|false`.
pub(crate) fn flag(meta: &ParseNestedMeta<'_>) -> syn::Result<bool> {
    if !meta.input.peek(Token![=]) {
        return Ok(true);
    }
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Bool(b), ..
        }) => Ok(b.value),
        other => Err(syn::Error::new(
            other.span(),
            format!("`{}` takes `true` or `false`", option_name(meta)),
        )),
    }
}

/// `crate = path` or `crate = "path"`: where tasker is, for re-exporters.
pub(crate) fn crate_path(meta: &ParseNestedMeta<'_>) -> syn::Result<syn::Path> {
    let value = meta.value()?;
    if value.peek(LitStr) {
        value.parse::<LitStr>()?.parse::<syn::Path>()
    } else {
        value.parse::<syn::Path>()
    }
}
