//! `schedule`, `time_zone`, `catch_up` and `schedule_context`: a recurring run of the workflow,
//! held at compile time to the rules the runtime applies when it registers the schedule.

use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Expr, ExprPath, LitStr};
use tasker_rules::{MAX_SCHEDULE_CATCH_UP, parse_cron};

use super::parse::TaskOptions;
use crate::attr;
use crate::ctxt::Ctxt;
use crate::graph;

/// `schedule = "0 */5 * * *"`; a refused expression is reported at the literal.
pub(crate) fn cron(cx: &mut Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<LitStr> {
    let lit = attr::string(meta)?;
    if let Err(problem) = parse_cron(&lit.value()) {
        cx.error_at(&lit, problem);
    }
    Ok(lit)
}

/// `time_zone = "Europe/Berlin"`; an unknown name is reported at the literal.
pub(crate) fn time_zone(cx: &mut Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<LitStr> {
    let lit = attr::string(meta)?;
    if let Some(problem) = time_zone_problem(&lit.value()) {
        cx.error_at(&lit, problem);
    }
    Ok(lit)
}

/// Why `name` is not a time zone the runtime accepts, with the closest one that is.
pub(crate) fn time_zone_problem(name: &str) -> Option<String> {
    // The runtime parses the name the same way, case and all.
    if name.parse::<chrono_tz::Tz>().is_ok() {
        return None;
    }
    let mut message =
        format!("`{name}` is not an IANA time zone name (such as `UTC` or `Europe/Berlin`)");
    let names = || chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name());
    // A city alone (`Berlin`) is too far from its full name for an edit distance.
    let city = || {
        let suffix = format!("/{}", name.to_lowercase());
        let mut matches = names().filter(move |n| n.to_lowercase().ends_with(&suffix));
        matches.next().filter(|_| matches.next().is_none())
    };
    if let Some(close) = graph::suggest_ignoring_case(name, names()).or_else(city) {
        message.push_str(&format!(" (did you mean `{close}`?)"));
    }
    Some(message)
}

/// `catch_up = 3`: missed slots to run after an outage.
pub(crate) fn catch_up(cx: &mut Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<u32> {
    let int = attr::integer(
        meta,
        "`catch_up` takes a whole number of missed slots to run after an outage, \
         e.g. `catch_up = 3`",
    )?;
    match int.base10_parse::<u32>() {
        Ok(slots) if slots <= MAX_SCHEDULE_CATCH_UP => Ok(slots),
        _ => {
            cx.error_at(
                &int,
                format!(
                    "`catch_up` is {}, over the maximum of {MAX_SCHEDULE_CATCH_UP} missed slots",
                    int.base10_digits()
                ),
            );
            Ok(MAX_SCHEDULE_CATCH_UP)
        }
    }
}

/// `schedule_context = Self::nightly`: a path to `fn(DateTime<Utc>) -> Context`.
pub(crate) fn schedule_context(meta: &ParseNestedMeta<'_>) -> syn::Result<ExprPath> {
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Path(path) => Ok(path),
        other => Err(syn::Error::new(
            other.span(),
            "`schedule_context` takes the path of a function \
             `fn(DateTime<Utc>) -> Context`, e.g. `schedule_context = Self::nightly`",
        )),
    }
}

/// The options that describe the attribute's schedule need one; `schedule_context` may instead
/// build the context of the one schedule of a bound template (checked against the file).
pub(crate) fn check(cx: &mut Ctxt, options: &TaskOptions) {
    if options.schedule.get().is_some() {
        return;
    }
    let bound = options.template.get().is_some();
    let needs = |option: &str| format!("`{option}` needs `schedule = \"…\"`");
    if let Some(span) = options.time_zone.span() {
        let mut message = needs("time_zone");
        if bound {
            message.push_str("; a schedule of the template sets its own `time_zone:`");
        }
        cx.error_span(span, message);
    }
    if let Some(span) = options.catch_up.span() {
        let mut message = needs("catch_up");
        if bound {
            message.push_str("; a schedule of the template sets its own `catch_up:`");
        }
        cx.error_span(span, message);
    }
    if let Some(span) = options.schedule_context.span()
        && !bound
    {
        cx.error_span(span, needs("schedule_context"));
    }
}
