//! Procedural macros for [tasker](https://docs.rs/tasker): `#[task_handler]`, `#[step]` and
//! `#[step_handler]`.
//!
//! Depend on `tasker`, which re-exports them; the code they generate names the runtime only
//! through `::tasker::__private`. Each entry point delegates to an `expand` function over
//! `proc_macro2` tokens, so expansion is unit-tested without a compiler.

mod attr;
mod ctxt;
mod data;
mod events;
mod graph;
mod main_fn;
mod paths;
mod step_handler;
mod symbol;
mod task_handler;
#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

/// Declares a workflow: the `impl` block's `#[step]` methods are its steps.
///
/// ```ignore
/// #[task_handler(name = "order_process", namespace = "ecommerce", version = "1.0.0",
///                context = OrderContext)]
/// impl OrderProcess {
///     /// Loads the order.
///     #[step]
///     async fn fetch_order(&self, cx: &StepContext<OrderContext>) -> Result<Order, StepError> {
///         Ok(Order::load(cx.context().order_id))
///     }
///
///     #[step(depends_on = fetch_order, retry_limit = 5)]
///     async fn charge(&self, cx: &StepContext<OrderContext>, order: Order)
///         -> Result<Payment, StepError> { /* … */ }
/// }
/// ```
///
/// Task options: `name` (required unless `template` names it), `namespace` (default
/// `default`), `version` (default `0.1.0`), `context` (the context type; default JSON),
/// `description` (default: the `impl`'s doc comment), `concurrent` (default `true`),
/// `timeout` (the task's deadline after it starts, as a step's `timeout` is written),
/// `template = "path.yaml"` (a YAML template, relative to the crate root, that must agree with
/// the code), `crate = path` (where `tasker` is, for re-exporters).
///
/// Schedule options: `schedule = "0 6 * * MON-FRI"` (a cron expression, 5 fields or 6 with
/// seconds first, that starts a task at each slot), `time_zone = "Europe/Berlin"` (IANA name;
/// default `UTC`), `catch_up = 3` (missed slots to run after an outage; default 0) and
/// `schedule_context = Self::method` (a `fn(DateTime<Utc>) -> Context` that builds each run's
/// context from its slot; default `{}`). All but `schedule` need it, except that
/// `schedule_context` may build the context of the one schedule a bound template declares.
///
/// Step options: `depends_on = step` or `depends_on = [a, b]` (the parents, by method name),
/// `retry_limit`, `retryable`, `timeout` (seconds, or `"500ms"`, `"30s"`, `"2m"`, `"1h"`),
/// `skippable`, `name` (the stored step name; default the method's) and `description`
/// (default: the method's doc comment).
///
/// After `&self` and the context, a step takes one parameter per parent, in `depends_on`
/// order, of the parent's output type. The compiler checks the graph (unknown, duplicate and
/// cyclic dependencies), the types, and the limits the runtime puts on a template (name and
/// version lengths and forms, steps per template, graph depth, retry limit, timeout, cron
/// expression, time zone, catch-up).
#[proc_macro_attribute]
pub fn task_handler(args: TokenStream, item: TokenStream) -> TokenStream {
    task_handler::expand(args.into(), item.into()).into()
}

/// Marks a method of a `#[task_handler]` `impl` block as a step; see [`macro@task_handler`].
///
/// On its own it is an error: the step graph is only known to the `impl` block's attribute.
#[proc_macro_attribute]
pub fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    task_handler::step_outside(args.into(), item.into()).into()
}

/// Registers a standalone step handler under a name YAML templates use in `handler`.
///
/// On an `async fn(cx: &StepContext) -> Result<T, E>` (or `&StepContext<Ctx>` for a typed
/// context), or on an `impl StepHandler for Type` block. `name` defaults to the function's name.
/// A type that is not `Default` is handed to the builder with `.handler(name, instance)`.
#[proc_macro_attribute]
pub fn step_handler(args: TokenStream, item: TokenStream) -> TokenStream {
    step_handler::expand(args.into(), item.into()).into()
}

/// Derives what a task context or step output needs (`Serialize`, `Deserialize`,
/// `JsonSchema`) through tasker's re-exports, so the crate needs no direct `serde` or
/// `schemars` dependency. `#[serde(...)]` and `#[schemars(...)]` attributes work as usual.
///
/// ```ignore
/// #[tasker::data]
/// pub struct OrderContext {
///     pub order_id: i64,
/// }
/// ```
#[proc_macro_attribute]
pub fn data(args: TokenStream, item: TokenStream) -> TokenStream {
    data::expand(args.into(), item.into()).into()
}

/// Runs `async fn main` on a multi-threaded tokio runtime, using the tokio tasker is built on.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    main_fn::expand(args.into(), item.into()).into()
}

/// Runs an `async fn` test on a multi-threaded tokio runtime (workers need more than one
/// thread), using the tokio tasker is built on.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    main_fn::expand_test(args.into(), item.into()).into()
}

/// Declares custom events, each a constant steps publish with `cx.publish(&NAME, payload)`.
/// The name must have a dot and must not use the engine's prefixes (`task`, `step`, `workflow`,
/// `observability`, `test`); the doc comment is its description in the catalog.
///
/// ```ignore
/// tasker::custom_event! {
///     /// The order left the warehouse.
///     pub ORDER_SHIPPED = "order.shipped";
/// }
/// ```
#[proc_macro]
pub fn custom_event(input: TokenStream) -> TokenStream {
    events::expand_custom_event(input.into()).into()
}

/// Registers a subscriber for the events listed (exact names, `family.*`, or `*`), on an
/// `async fn(event: &Event) -> Result<(), E>` or an `impl Subscriber for Type` block (whose
/// `events` it writes). A type that is not `Default` is handed to `.subscriber(instance)`.
#[proc_macro_attribute]
pub fn subscriber(args: TokenStream, item: TokenStream) -> TokenStream {
    events::expand_subscriber(args.into(), item.into()).into()
}
