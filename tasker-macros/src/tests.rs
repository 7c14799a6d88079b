//! Expansion snapshots: each macro and option, expanded and pretty-printed.
//!
//! `INSTA_UPDATE=always cargo test -p tasker-macros` rewrites them after a deliberate change;
//! review the diff.

use proc_macro2::TokenStream;
use quote::quote;

fn pretty(tokens: TokenStream) -> String {
    let text = match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(_) => tokens.to_string(),
    };
    match std::env::var("CARGO_MANIFEST_DIR") {
        Ok(root) => text.replace(&root, "$CARGO_MANIFEST_DIR"),
        Err(_) => text,
    }
}

#[test]
fn task_handler_with_every_step_option() {
    let args = quote!(
        name = "order_process",
        namespace = "ecommerce",
        version = "1.0.0",
        context = OrderContext,
        concurrent = false,
        timeout = "2h"
    );
    let item = quote! {
        /// Processes orders.
        impl OrderProcess {
            /// Loads the order.
            #[step]
            async fn fetch_order(&self, cx: &StepContext<OrderContext>) -> Result<Order, StepError> {
                todo!()
            }

            #[step(depends_on = fetch_order, retry_limit = 5, retryable = false, timeout = "2m",
                   skippable, name = "charge-card", description = "Charges the card.")]
            pub async fn charge(&self, cx: &StepContext<OrderContext>, order: Order)
                -> Result<Payment, StepError> {
                todo!()
            }

            fn helper(&self) {}
        }
    };
    insta::assert_snapshot!(pretty(crate::task_handler::expand(args, item)));
}

#[test]
fn task_handler_with_defaults_and_crate_path() {
    let args = quote!(name = "minimal", crate = ::my_tasker);
    let item = quote! {
        impl Minimal {
            #[step]
            async fn only(&self, cx: &StepContext) -> Result<(), StepError> {
                Ok(())
            }
        }
    };
    insta::assert_snapshot!(pretty(crate::task_handler::expand(args, item)));
}

#[test]
fn task_handler_bound_to_a_yaml_template() {
    let args = quote!(template = "tests/fixtures/bound.yaml");
    let item = quote! {
        impl Bound {
            #[step]
            async fn fetch(&self, cx: &StepContext) -> Result<i64, StepError> {
                Ok(1)
            }

            #[step(depends_on = fetch)]
            async fn ship(&self, cx: &StepContext, fetched: i64) -> Result<i64, StepError> {
                Ok(fetched)
            }
        }
    };
    insta::assert_snapshot!(pretty(crate::task_handler::expand(args, item)));
}

#[test]
fn task_handler_with_a_schedule() {
    let args = quote!(
        name = "nightly_report",
        context = ReportContext,
        schedule = "0 */5 * * *",
        time_zone = "Europe/Berlin",
        catch_up = 3,
        schedule_context = Self::for_slot
    );
    let item = quote! {
        impl NightlyReport {
            fn for_slot(slot: DateTime<Utc>) -> ReportContext {
                ReportContext { day: slot.date_naive() }
            }

            #[step]
            async fn render(&self, cx: &StepContext<ReportContext>) -> Result<(), StepError> {
                Ok(())
            }
        }
    };
    insta::assert_snapshot!(pretty(crate::task_handler::expand(args, item)));
}

#[test]
fn task_handler_building_the_context_of_its_yaml_schedule() {
    let args = quote!(
        template = "tests/fixtures/scheduled.yaml",
        schedule_context = report_context
    );
    let item = quote! {
        impl NightlyReport {
            #[step]
            async fn render(&self, cx: &StepContext) -> Result<(), StepError> {
                Ok(())
            }
        }
    };
    insta::assert_snapshot!(pretty(crate::task_handler::expand(args, item)));
}

#[test]
fn schedule_options_are_checked() {
    let errors = |args: TokenStream| {
        let item = quote! {
            impl Flow {
                #[step]
                async fn fetch(&self, cx: &StepContext) -> Result<(), StepError> {
                    Ok(())
                }
            }
        };
        crate::task_handler::expand(args, item).to_string()
    };
    let cases = [
        (
            quote!(name = "flow", time_zone = "UTC", schedule_context = Self::f),
            vec![
                r#"`time_zone` needs `schedule = \"…\"`"#,
                r#"`schedule_context` needs `schedule = \"…\"`"#,
            ],
        ),
        (
            quote!(name = "flow", schedule = "0 6 * * *", time_zone = "berlin"),
            vec!["(did you mean `Europe/Berlin`?)"],
        ),
        (
            quote!(name = "flow", schedule = "0 6 * * *", time_zone = "utc"),
            vec!["(did you mean `UTC`?)"],
        ),
        (
            quote!(name = "flow", schedule = "0 6 * * *", catch_up = "3"),
            vec!["`catch_up` takes a whole number"],
        ),
        (
            quote!(template = "tests/fixtures/bound.yaml", schedule_context = f),
            vec!["`schedule_context` needs a schedule"],
        ),
    ];
    for (args, messages) in cases {
        let output = errors(args);
        for message in messages {
            assert!(output.contains(message), "{message} not in {output}");
        }
    }
}

#[test]
fn task_handler_errors_keep_the_item_without_step_attributes() {
    let args = quote!(name = "broken");
    let item = quote! {
        impl Broken {
            #[step(depends_on = nowhere)]
            async fn only(&self, cx: &StepContext, x: i64) -> Result<(), StepError> {
                Ok(())
            }
        }
    };
    insta::assert_snapshot!(pretty(crate::task_handler::expand(args, item)));
}

#[test]
fn step_handler_on_functions() {
    let untyped = crate::step_handler::expand(
        quote!(),
        quote! {
            async fn greet(cx: &StepContext) -> Result<String, StepError> {
                Ok(String::new())
            }
        },
    );
    let typed = crate::step_handler::expand(
        quote!(name = "shop.greet"),
        quote! {
            async fn greet_typed(cx: &StepContext<Greeting>) -> Result<String, StepError> {
                Ok(String::new())
            }
        },
    );
    insta::assert_snapshot!(format!("{}\n{}", pretty(untyped), pretty(typed)));
}

#[test]
fn step_handler_on_an_impl() {
    let expanded = crate::step_handler::expand(
        quote!(name = "shop.shout"),
        quote! {
            impl StepHandler for Shout {
                async fn handle(&self, cx: &StepContext) -> StepResult {
                    Ok(Value::Null)
                }
            }
        },
    );
    insta::assert_snapshot!(pretty(expanded));
}

#[test]
fn data_and_main() {
    let data = crate::data::expand(
        quote!(),
        quote!(
            pub struct Order {
                pub id: i64,
            }
        ),
    );
    let main = crate::main_fn::expand(
        quote!(),
        quote!(
            async fn main() {
                run().await
            }
        ),
    );
    insta::assert_snapshot!(format!("{}\n{}", pretty(data), pretty(main)));
}

#[test]
fn custom_event_and_subscribers() {
    let custom = crate::events::expand_custom_event(quote! {
        /// The parcel left.
        pub PARCEL_SHIPPED = "parcel.shipped";
    });
    let on_fn = crate::events::expand_subscriber(
        quote!(events = ["step.failed", "task.*"]),
        quote! {
            async fn alerts(event: &Event) -> Result<(), SubscriberError> {
                Ok(())
            }
        },
    );
    let on_impl = crate::events::expand_subscriber(
        quote!(events = ["*"]),
        quote! {
            impl Subscriber for Audit {
                async fn handle(&self, event: &Event) -> Result<(), SubscriberError> {
                    Ok(())
                }
            }
        },
    );
    insta::assert_snapshot!(format!(
        "{}\n{}\n{}",
        pretty(custom),
        pretty(on_fn),
        pretty(on_impl)
    ));
}
