//! From tokens to a typed model of the workflow.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, FnArg, Ident, ImplItem, ItemImpl, Lit, LitStr, Pat, ReturnType, Token, Type,
    Visibility,
};
use tasker_rules::{MAX_RETRY_LIMIT, TimeoutProblem, retry_limit_problem, timeout_problem};

use super::schedule;
use crate::attr::{self, Attr};
use crate::ctxt::Ctxt;
use crate::symbol;

/// A `#[task_handler]` impl block, parsed.
pub(crate) struct TaskHandler {
    /// The user's block with `#[step]` attributes removed.
    pub(crate) item: ItemImpl,
    pub(crate) self_ty: Type,
    /// The type's last path segment, for names and messages.
    pub(crate) type_name: String,
    pub(crate) options: TaskOptions,
    pub(crate) steps: Vec<Step>,
    /// The impl's hook methods, by the `TaskHandler` method each defines.
    pub(crate) hooks: Vec<Ident>,
}

/// Methods a task handler's impl may define, which the `TaskHandler` impl calls.
pub(crate) const HOOKS: [&str; 2] = [
    "establish_step_dependencies_and_defaults",
    "update_annotations",
];

/// The options of `#[task_handler(...)]`.
pub(crate) struct TaskOptions {
    pub(crate) name: Attr<LitStr>,
    pub(crate) namespace: Attr<LitStr>,
    pub(crate) version: Attr<LitStr>,
    pub(crate) context: Attr<Type>,
    pub(crate) description: Option<String>,
    pub(crate) concurrent: Attr<bool>,
    /// The task's deadline in seconds after it starts.
    pub(crate) timeout_seconds: Attr<f64>,
    pub(crate) template: Attr<LitStr>,
    pub(crate) krate: Attr<syn::Path>,
    /// The cron expression of the workflow's schedule.
    pub(crate) schedule: Attr<LitStr>,
    /// The IANA time zone the schedule is read in.
    pub(crate) time_zone: Attr<LitStr>,
    /// Missed slots the schedule runs after an outage.
    pub(crate) catch_up: Attr<u32>,
    /// The function that builds each scheduled run's context from its slot.
    pub(crate) schedule_context: Attr<syn::ExprPath>,
}

/// One `#[step]` method.
pub(crate) struct Step {
    pub(crate) method: Ident,
    pub(crate) vis: Visibility,
    /// The stored step name: `name = "…"` or the method's name.
    pub(crate) name: String,
    pub(crate) name_span: Span,
    pub(crate) depends_on: Vec<Ident>,
    /// The `depends_on` option, for errors about the list as a whole.
    pub(crate) depends_on_span: Option<Span>,
    pub(crate) retry_limit: Attr<u32>,
    pub(crate) retryable: Attr<bool>,
    pub(crate) timeout_seconds: Attr<f64>,
    pub(crate) skippable: Attr<bool>,
    pub(crate) description: Option<String>,
    /// The declared type of the context parameter.
    pub(crate) cx_ty: Option<Type>,
    /// The parameters after the context: one per parent.
    pub(crate) inputs: Vec<(Pat, Type)>,
    pub(crate) output: Option<Type>,
    /// The method's signature, for errors about it as a whole.
    pub(crate) sig_span: Span,
    /// Whether `#[step(...)]` failed to parse, so checks that depend on it are skipped.
    pub(crate) attr_failed: bool,
}

/// Parses the attribute and the block; `None` when the item is not an inherent `impl`.
pub(crate) fn parse(cx: &mut Ctxt, args: TokenStream, item: TokenStream) -> Option<TaskHandler> {
    let mut item: ItemImpl = match syn::parse2(item) {
        Ok(item) => item,
        Err(_) => {
            cx.error_span(
                Span::call_site(),
                "`#[task_handler]` goes on an `impl` block: \
                 `#[task_handler(name = \"…\")] impl MyWorkflow { … }`",
            );
            return None;
        }
    };
    let options = parse_options(cx, args, &item.attrs);
    if let Some((path, _)) = &item.trait_ {
        cx.error_at(
            path,
            "`#[task_handler]` goes on an inherent `impl` block, not on a trait implementation",
        );
    }
    if !item.generics.params.is_empty() {
        cx.error_at(
            &item.generics,
            "a task handler cannot be generic: the engine registers one concrete type per workflow",
        );
    }
    let self_ty = (*item.self_ty).clone();
    let type_name = match &self_ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default(),
        other => {
            cx.error_at(
                other,
                "a task handler must be a named type, e.g. `impl OrderProcess`",
            );
            String::new()
        }
    };

    let mut steps = Vec::new();
    let mut hooks = Vec::new();
    for impl_item in &mut item.items {
        let ImplItem::Fn(method) = impl_item else {
            continue;
        };
        let is_hook = HOOKS.iter().any(|h| method.sig.ident == h);
        if is_hook {
            hooks.push(method.sig.ident.clone());
        }
        let mut step_attrs = Vec::new();
        method.attrs.retain(|a| {
            if is_step_attr(a) {
                step_attrs.push(a.clone());
                false
            } else {
                true
            }
        });
        let Some((first, rest)) = step_attrs.split_first() else {
            continue;
        };
        if is_hook {
            cx.error_at(
                &method.sig.ident,
                format!(
                    "`{}` is a task handler hook, not a step: remove `#[step]` or rename the method",
                    method.sig.ident
                ),
            );
            continue;
        }
        for extra in rest {
            cx.error_at(extra, "duplicate `#[step]` attribute");
        }
        steps.push(parse_step(cx, first, method));
    }
    if steps.is_empty() && options.template.get().is_none() {
        cx.error_span(
            Span::call_site(),
            "a task handler needs at least one step: mark its methods with `#[step]`",
        );
    }
    Some(TaskHandler {
        item,
        self_ty,
        type_name,
        options,
        steps,
        hooks,
    })
}

fn is_step_attr(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "step")
}

fn parse_options(cx: &mut Ctxt, args: TokenStream, attrs: &[Attribute]) -> TaskOptions {
    let mut options = TaskOptions {
        name: Attr::none("name"),
        namespace: Attr::none("namespace"),
        version: Attr::none("version"),
        context: Attr::none("context"),
        description: None,
        concurrent: Attr::none("concurrent"),
        timeout_seconds: Attr::none("timeout"),
        template: Attr::none("template"),
        krate: Attr::none("crate"),
        schedule: Attr::none("schedule"),
        time_zone: Attr::none("time_zone"),
        catch_up: Attr::none("catch_up"),
        schedule_context: Attr::none("schedule_context"),
    };
    let mut description: Attr<String> = Attr::none("description");
    let parser = syn::meta::parser(|meta| {
        let span = meta.path.span();
        if meta.path.is_ident("name") {
            let value = attr::string(&meta)?;
            options.name.set(cx, span, value);
        } else if meta.path.is_ident("namespace") {
            let value = attr::string(&meta)?;
            options.namespace.set(cx, span, value);
        } else if meta.path.is_ident("version") {
            let value = attr::string(&meta)?;
            options.version.set(cx, span, value);
        } else if meta.path.is_ident("context") {
            let value: Type = meta.value()?.parse()?;
            options.context.set(cx, span, value);
        } else if meta.path.is_ident("description") {
            let value = attr::string(&meta)?;
            description.set(cx, span, value.value());
        } else if meta.path.is_ident("concurrent") {
            let value = attr::flag(&meta)?;
            options.concurrent.set(cx, span, value);
        } else if meta.path.is_ident("timeout") {
            let value = parse_timeout(&meta)?;
            options.timeout_seconds.set(cx, span, value);
        } else if meta.path.is_ident("template") {
            let value = attr::string(&meta)?;
            options.template.set(cx, span, value);
        } else if meta.path.is_ident("crate") {
            let path = attr::crate_path(&meta)?;
            options.krate.set(cx, span, path);
        } else if meta.path.is_ident("schedule") {
            let value = schedule::cron(cx, &meta)?;
            options.schedule.set(cx, span, value);
        } else if meta.path.is_ident("time_zone") {
            let value = schedule::time_zone(cx, &meta)?;
            options.time_zone.set(cx, span, value);
        } else if meta.path.is_ident("catch_up") {
            let value = schedule::catch_up(cx, &meta)?;
            options.catch_up.set(cx, span, value);
        } else if meta.path.is_ident("schedule_context") {
            let value = schedule::schedule_context(&meta)?;
            options.schedule_context.set(cx, span, value);
        } else {
            attr::unknown_option(cx, &meta, "task_handler", symbol::TASK_OPTIONS)?;
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(e);
    }
    options.description = description.into_inner().or_else(|| doc_comment(attrs));
    options
}

fn parse_step(cx: &mut Ctxt, attr: &Attribute, method: &syn::ImplItemFn) -> Step {
    let sig = &method.sig;
    let mut step = Step {
        method: sig.ident.clone(),
        vis: method.vis.clone(),
        name: sig.ident.unraw().to_string(),
        name_span: sig.ident.span(),
        depends_on: Vec::new(),
        depends_on_span: None,
        retry_limit: Attr::none("retry_limit"),
        retryable: Attr::none("retryable"),
        timeout_seconds: Attr::none("timeout"),
        skippable: Attr::none("skippable"),
        description: None,
        cx_ty: None,
        inputs: Vec::new(),
        output: None,
        sig_span: sig.ident.span(),
        attr_failed: false,
    };
    let mut name: Attr<LitStr> = Attr::none("name");
    let mut depends_on: Attr<Vec<Ident>> = Attr::none("depends_on");
    let mut description: Attr<String> = Attr::none("description");
    if let syn::Meta::List(_) = &attr.meta {
        let result = attr.parse_nested_meta(|meta| {
            let span = meta.path.span();
            if meta.path.is_ident("depends_on") {
                let value = parse_depends_on(&meta)?;
                depends_on.set(cx, span, value);
            } else if meta.path.is_ident("retry_limit") {
                let value = parse_retry_limit(&meta)?;
                step.retry_limit.set(cx, span, value);
            } else if meta.path.is_ident("retryable") {
                let value = attr::flag(&meta)?;
                step.retryable.set(cx, span, value);
            } else if meta.path.is_ident("timeout") {
                let value = parse_timeout(&meta)?;
                step.timeout_seconds.set(cx, span, value);
            } else if meta.path.is_ident("skippable") {
                let value = attr::flag(&meta)?;
                step.skippable.set(cx, span, value);
            } else if meta.path.is_ident("name") {
                let value = attr::string(&meta)?;
                name.set(cx, span, value);
            } else if meta.path.is_ident("description") {
                let value = attr::string(&meta)?;
                description.set(cx, span, value.value());
            } else {
                attr::unknown_option(cx, &meta, "step", symbol::STEP_OPTIONS)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.syn_error(e);
            step.attr_failed = true;
        }
    }
    if let Some(name) = name.into_inner() {
        step.name = name.value();
        step.name_span = name.span();
    }
    step.depends_on_span = depends_on.span();
    step.depends_on = depends_on.into_inner().unwrap_or_default();
    step.description = description
        .into_inner()
        .or_else(|| doc_comment(&method.attrs));

    if sig.asyncness.is_none() {
        cx.error_at(
            sig.fn_token,
            format!("step `{}` must be an `async fn`", sig.ident),
        );
    }
    if !sig.generics.params.is_empty() {
        cx.error_at(&sig.generics, "a step cannot be generic");
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if matches!(r.kind, syn::ReceiverKind::Reference(_, _, None)) => {}
        Some(other) => cx.error_at(
            other,
            "a step takes `&self` first: the engine shares one handler between concurrent steps",
        ),
        None => cx.error_at(
            &sig.ident,
            format!(
                "step `{}` must take `&self` and its context: \
                 `async fn {}(&self, cx: &StepContext<Ctx>)`",
                sig.ident, sig.ident
            ),
        ),
    }
    match inputs.next() {
        Some(FnArg::Typed(pat)) => step.cx_ty = Some((*pat.ty).clone()),
        Some(FnArg::Receiver(_)) => {}
        None => cx.error_at(
            &sig.ident,
            format!(
                "step `{}` takes its context after `&self`: `cx: &StepContext<Ctx>`",
                sig.ident
            ),
        ),
    }
    for input in inputs {
        if let FnArg::Typed(pat) = input {
            step.inputs.push(((*pat.pat).clone(), (*pat.ty).clone()));
        }
    }
    match &sig.output {
        ReturnType::Type(_, ty) => step.output = Some((**ty).clone()),
        ReturnType::Default => cx.error_at(
            &sig.ident,
            format!(
                "step `{}` must return `Result<T, StepError>`, where `T` is its output",
                sig.ident
            ),
        ),
    }
    step
}

fn parse_depends_on(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<Vec<Ident>> {
    let input = meta.value()?;
    if input.peek(syn::token::Bracket) {
        let content;
        syn::bracketed!(content in input);
        let names = content.parse_terminated(parse_step_ref, Token![,])?;
        return Ok(names.into_iter().collect());
    }
    Ok(vec![parse_step_ref(input)?])
}

fn parse_step_ref(input: syn::parse::ParseStream<'_>) -> syn::Result<Ident> {
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "`depends_on` names step methods, not strings: write `depends_on = {}`",
                lit.value()
            ),
        ));
    }
    input.parse::<Ident>().map_err(|e| {
        syn::Error::new(
            e.span(),
            "`depends_on` takes a step method's name or a list: `depends_on = a` or `depends_on = [a, b]`",
        )
    })
}

fn parse_retry_limit(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<u32> {
    let int = attr::integer(
        meta,
        "`retry_limit` takes a whole number of attempts, e.g. `retry_limit = 5`",
    )?;
    let out_of_range = || {
        syn::Error::new(
            int.span(),
            format!("`retry_limit` must be between 1 and {MAX_RETRY_LIMIT} attempts"),
        )
    };
    // The maximum is the runtime's rule; 0 is refused too (as the REST API refuses it), since
    // the engine would treat it as 1.
    let limit = int.base10_parse::<u64>().map_err(|_| out_of_range())?;
    if let Some(problem) = retry_limit_problem(limit) {
        return Err(syn::Error::new(int.span(), problem));
    }
    match u32::try_from(limit) {
        Ok(limit) if limit > 0 => Ok(limit),
        _ => Err(out_of_range()),
    }
}

/// `timeout = 30` (seconds) or `timeout = "500ms" | "30s" | "2m" | "1h"`.
fn parse_timeout(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<f64> {
    let expr: Expr = meta.value()?.parse()?;
    let hint = "`timeout` takes seconds or a duration: `timeout = 30` or `timeout = \"500ms\"` \
                (units `ms`, `s`, `m`, `h`)";
    let seconds = match &expr {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(int), ..
        }) => int.base10_parse::<u64>().ok().map(|s| s as f64),
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => parse_duration(&s.value()),
        _ => None,
    };
    match seconds.map(|s| (s, timeout_problem(s))) {
        Some((s, None)) => Ok(s),
        Some((_, Some(problem @ TimeoutProblem::TooLarge(_)))) => {
            Err(syn::Error::new(expr.span(), problem))
        }
        Some((_, Some(TimeoutProblem::NotPositive(_)))) | None => {
            Err(syn::Error::new(expr.span(), hint))
        }
    }
}

fn parse_duration(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Some(number * scale)
}

/// The item's `///` comment, trimmed, or `None`.
fn doc_comment(attrs: &[Attribute]) -> Option<String> {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value().trim().to_owned()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let text = lines.join("\n").trim().to_owned();
    (!text.is_empty()).then_some(text)
}
