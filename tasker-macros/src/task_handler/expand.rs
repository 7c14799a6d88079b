//! From a checked model to the generated code.

use proc_macro2::TokenStream;
use proc_macro2::{Group, Span, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use tasker_rules::{DEFAULT_NAMESPACE, DEFAULT_VERSION};

use super::parse::{Step, TaskHandler};
use super::yaml::BoundTemplate;
use crate::paths::Paths;

/// The user's block, the `TaskHandler` impl, the step references and the registration.
pub(crate) fn expand(model: &TaskHandler, bound: Option<&BoundTemplate>) -> TokenStream {
    let paths = Paths::new(model.options.krate.get());
    let private = |name: &str| paths.private(name);
    let (arc, string, vec) = (private("Arc"), private("String"), private("Vec"));
    let result = private("Result");
    let item = &model.item;
    let self_ty = &model.self_ty;
    let type_name = &model.type_name;
    let context = match model.options.context.get() {
        Some(ty) => quote!(#ty),
        None => {
            let json = private("serde_json");
            quote!(#json::Value)
        }
    };
    let (name, namespace, version) = match bound {
        Some(b) => (b.name.clone(), b.namespace.clone(), b.version.clone()),
        None => (
            model
                .options
                .name
                .get()
                .map(|n| n.value())
                .unwrap_or_default(),
            model
                .options
                .namespace
                .get()
                .map_or_else(|| DEFAULT_NAMESPACE.to_owned(), |n| n.value()),
            model
                .options
                .version
                .get()
                .map_or_else(|| DEFAULT_VERSION.to_owned(), |v| v.value()),
        ),
    };
    let type_path = quote!(::core::concat!(::core::module_path!(), "::", #type_name));
    let handler_name = |step: &Step| {
        let method = step.method.to_string();
        quote!(::core::concat!(::core::module_path!(), "::", #type_name, "::", #method))
    };

    let template_body = match bound {
        None => code_template(model, &paths, &handler_name),
        Some(bound) => yaml_template(model, &paths, bound, &handler_name),
    };

    let handlers = model.steps.iter().map(|step| {
        let handler = handler_name(step);
        let run = run_step(model, step, &paths);
        let method_step = private("method_step");
        quote! {
            (#string::from(#handler), #method_step(&self, #run))
        }
    });
    let step_refs = step_refs(model, &paths);
    let schedule_context = schedule_context(model, &paths);
    let hooks = hooks(model, &paths);
    // Uses inside an `#[automatically_derived]` impl do not count for `dead_code`.
    let hook_uses = model
        .hooks
        .iter()
        .map(|method| quote!(let _ = <#self_ty>::#method;));
    let hook_uses = match model.hooks.is_empty() {
        true => quote!(),
        false => quote!(const _: () = { #(#hook_uses)* };),
    };

    let task_handler = private("TaskHandler");
    let template_ty = private("TaskTemplate");
    let dyn_handler = private("DynStepHandler");
    let probe = private("Probe");
    let default_probe = private("DefaultProbe");
    let via_default = private("ViaDefault");
    let via_nothing = private("ViaNothing");
    let registration = private("TaskHandlerRegistration");
    let inventory = private("inventory");
    quote! {
        #item

        #step_refs

        #[allow(clippy::all, non_local_definitions)]
        const _: () = {
            #[automatically_derived]
            impl #task_handler for #self_ty {
                type Context = #context;
                const NAMESPACE: &'static str = #namespace;
                const NAME: &'static str = #name;
                const VERSION: &'static str = #version;

                fn template(
                    environment: ::core::option::Option<&str>,
                ) -> #result<#template_ty> {
                    #template_body
                }

                fn step_handlers(
                    self: #arc<Self>,
                ) -> #vec<(#string, #arc<dyn #dyn_handler>)> {
                    #vec::from([#(#handlers),*])
                }

                #schedule_context

                #hooks
            }

            #hook_uses

            #[automatically_derived]
            impl #default_probe for #self_ty {
                fn probe() -> ::core::option::Option<Self> {
                    #[allow(unused_imports)]
                    use #via_default as _;
                    #[allow(unused_imports)]
                    use #via_nothing as _;
                    (&&#probe::<Self>::new()).instance()
                }
            }

            #inventory::submit! {
                #registration::new::<#self_ty>(#type_path)
            }
        };
    }
}

/// The `TaskHandler` methods that call the hooks the impl defines (an inherent method wins
/// over the trait's in a path), each through a function pointer of the expected signature,
/// spanned at the user's method, so a wrong signature is reported there with both signatures.
fn hooks(model: &TaskHandler, paths: &Paths) -> TokenStream {
    let self_ty = &model.self_ty;
    let result = quote!(::core::result::Result);
    model
        .hooks
        .iter()
        .map(|method| {
            let span = method.span();
            if method == "establish_step_dependencies_and_defaults" {
                let (plan, error) = (paths.private("StepPlan"), paths.private("PlanError"));
                let hook = quote_spanned!(span=> <#self_ty>::#method);
                quote! {
                    const ESTABLISHES_STEPS: bool = true;
                    fn establish_step_dependencies_and_defaults(
                        &self,
                        context: &Self::Context,
                        steps: &mut #plan,
                    ) -> #result<(), #error> {
                        let hook: fn(&Self, &Self::Context, &mut #plan) -> #result<(), #error> =
                            #hook;
                        hook(self, context, steps)
                    }
                }
            } else {
                let (task, annotation) =
                    (paths.private("FinishedTask"), paths.private("Annotation"));
                let vec = paths.private("Vec");
                let hook = quote_spanned!(span=> <#self_ty>::#method);
                quote! {
                    const UPDATES_ANNOTATIONS: bool = true;
                    fn update_annotations(
                        &self,
                        task: &#task<Self::Context>,
                    ) -> #vec<#annotation> {
                        let hook: fn(&Self, &#task<Self::Context>) -> #vec<#annotation> = #hook;
                        hook(self, task)
                    }
                }
            }
        })
        .collect()
}

/// The template built in code from the attributes.
fn code_template(
    model: &TaskHandler,
    paths: &Paths,
    handler_name: &dyn Fn(&Step) -> TokenStream,
) -> TokenStream {
    let template_ty = paths.private("TaskTemplate");
    let step_ty = paths.private("StepTemplate");
    let string = paths.private("String");
    let context_schema = paths.private("context_schema");
    let type_name = &model.type_name;
    let steps = model.steps.iter().map(|step| {
        let name = &step.name;
        let handler = handler_name(step);
        let parents: Vec<&str> = step
            .depends_on
            .iter()
            .filter_map(|d| {
                model
                    .steps
                    .iter()
                    .find(|s| s.method == *d)
                    .map(|s| s.name.as_str())
            })
            .collect();
        let mut setters = Vec::new();
        if !parents.is_empty() {
            setters.push(quote!(.depends_on([#(#parents),*])));
        }
        if let Some(limit) = step.retry_limit.get() {
            setters.push(quote!(.retry_limit(#limit)));
        }
        if let Some(retryable) = step.retryable.get() {
            setters.push(quote!(.retryable(#retryable)));
        }
        if let Some(skippable) = step.skippable.get() {
            setters.push(quote!(.skippable(#skippable)));
        }
        if let Some(seconds) = step.timeout_seconds.get() {
            setters.push(quote!(.timeout(::core::time::Duration::from_secs_f64(#seconds))));
        }
        let description = match &step.description {
            Some(d) => quote!(step.description = ::core::option::Option::Some(#string::from(#d));),
            None => quote!(),
        };
        let output_schema = output_schema(step, paths);
        quote! {{
            let mut step = #step_ty::new(#name, #handler) #(#setters)*;
            #description
            step.output_schema = #output_schema;
            step
        }}
    });
    let concurrent = model.options.concurrent.get().copied().unwrap_or(true);
    let description = match &model.options.description {
        Some(d) => quote!(template.description = ::core::option::Option::Some(#string::from(#d));),
        None => quote!(),
    };
    let schedule = push_schedule(model, paths);
    let timeout = match model.options.timeout_seconds.get() {
        Some(seconds) => quote!(template.timeout_seconds = ::core::option::Option::Some(#seconds);),
        None => quote!(),
    };
    quote! {
        let _ = environment;
        let mut template = #template_ty::new(Self::NAMESPACE, Self::NAME, Self::VERSION)
            .schema(#context_schema::<Self>())
            .concurrent(#concurrent);
        #description
        #timeout
        template.task_handler_class = ::core::option::Option::Some(#string::from(
            ::core::concat!(::core::module_path!(), "::", #type_name),
        ));
        #(template = template.step(#steps);)*
        #schedule
        ::core::result::Result::Ok(template)
    }
}

/// `template.schedules.push(…)` of the attribute's schedule, if it declares one.
fn push_schedule(model: &TaskHandler, paths: &Paths) -> TokenStream {
    let options = &model.options;
    let Some(cron) = options.schedule.get() else {
        return quote!();
    };
    let schedule_ty = paths.private("ScheduleTemplate");
    let string = paths.private("String");
    let mut setters = Vec::new();
    if let Some(zone) = options.time_zone.get() {
        setters.push(quote!(schedule.time_zone = #string::from(#zone);));
    }
    if let Some(slots) = options.catch_up.get() {
        setters.push(quote!(schedule.catch_up = #slots;));
    }
    if options.schedule_context.get().is_some() {
        setters.push(quote!(schedule.built_in_code = true;));
    }
    quote! {
        template.schedules.push({
            let mut schedule = #schedule_ty::new(#cron);
            #(#setters)*
            schedule
        });
    }
}

/// `TaskHandler::schedule_context` calling the user's function, when `schedule_context` names
/// one.
fn schedule_context(model: &TaskHandler, paths: &Paths) -> TokenStream {
    let Some(function) = model.options.schedule_context.get() else {
        return quote!();
    };
    let chrono = paths.private("chrono");
    // The fn pointer type is spanned at the option and the path keeps its own spans, so a
    // function that does not fit is reported at the path, against the signature it must have.
    let option = model
        .options
        .schedule_context
        .span()
        .unwrap_or_else(Span::call_site);
    let ty = respan(
        quote!(fn(#chrono::DateTime<#chrono::Utc>) -> Self::Context),
        option,
    );
    quote! {
        fn schedule_context(
            _schedule: &str,
            slot: #chrono::DateTime<#chrono::Utc>,
        ) -> ::core::option::Option<Self::Context> {
            let build: #ty = #function;
            ::core::option::Option::Some(build(slot))
        }
    }
}

/// The template read from the bound YAML file, with the generated handler names.
fn yaml_template(
    model: &TaskHandler,
    paths: &Paths,
    bound: &BoundTemplate,
    handler_name: &dyn Fn(&Step) -> TokenStream,
) -> TokenStream {
    let parse_template = paths.private("parse_template");
    let string = paths.private("String");
    let context_schema = paths.private("context_schema");
    let type_name = &model.type_name;
    let (absolute, written) = (&bound.absolute, &bound.written);
    let schedule = match (
        model.options.schedule.get(),
        model.options.schedule_context.get(),
    ) {
        (Some(_), _) => push_schedule(model, paths),
        // The file declares exactly one schedule (checked); an environment may replace it, and
        // the function builds the context of whichever the workflow runs.
        (None, Some(_)) => quote! {
            for schedule in &mut template.schedules {
                schedule.built_in_code = true;
            }
        },
        (None, None) => quote!(),
    };
    let arms = model.steps.iter().map(|step| {
        let name = &step.name;
        let handler = handler_name(step);
        let output_schema = output_schema(step, paths);
        quote! {
            #name => {
                if step.output_schema.is_none() {
                    step.output_schema = #output_schema;
                }
                #string::from(#handler)
            }
        }
    });
    quote! {
        let mut template = #parse_template(
            ::core::include_str!(#absolute),
            #written,
            environment,
        )?;
        for step in &mut template.step_templates {
            step.handler = match step.name.as_str() {
                #(#arms),*
                _ => ::core::mem::take(&mut step.handler),
            };
        }
        if template.schema.is_none() {
            template.schema = ::core::option::Option::Some(#context_schema::<Self>());
        }
        template.task_handler_class = ::core::option::Option::Some(#string::from(
            ::core::concat!(::core::module_path!(), "::", #type_name),
        ));
        #schedule
        ::core::result::Result::Ok(template)
    }
}

/// The function that runs one step: typed context, parents' outputs, the method, its output.
fn run_step(model: &TaskHandler, step: &Step, paths: &Paths) -> TokenStream {
    let arc = paths.private("Arc");
    let boxed = paths.private("Box");
    let step_context = paths.private("StepContext");
    let box_future = paths.private("BoxFuture");
    let step_result_ty = paths.private("StepResult");
    let step_return = paths.private("StepReturn");
    let step_result = paths.private("step_result");
    let method = &step.method;
    let step_input = paths.private("StepInput");
    // The bound lives in the user's crate, so the compiler's "required by a bound" note points
    // at the `#[task_handler]` rather than into tasker's source.
    let mut lets = vec![quote!(
        #[allow(dead_code)]
        fn __tasker_step_input<P: #step_input<T>, T>() {}
    )];
    let mut args = Vec::new();
    for (i, dep) in step.depends_on.iter().enumerate() {
        let Some(parent) = model.steps.iter().find(|s| s.method == *dep) else {
            continue;
        };
        let (Some(output), Some((_, declared))) = (&parent.output, step.inputs.get(i)) else {
            continue;
        };
        let var = format_ident!("__tasker_input_{}", i);
        let parent_name = &parent.name;
        // Spanned at the parameter's type, so a mismatch is reported there.
        let check = respan(
            quote!(let _: fn() = __tasker_step_input::<#declared, <#output as #step_return>::Output>;),
            declared.span(),
        );
        let parent_input = paths.private("parent_input");
        let read = respan(quote!(#parent_input::<_, #declared>), declared.span());
        lets.push(quote! {
            #check
            let #var: #declared = #read(&cx, #parent_name)?;
        });
        args.push(quote!(#var));
    }
    let cx_arg = match &step.cx_ty {
        Some(ty) => respan(quote!(&cx), ty.span()),
        None => quote!(&cx),
    };
    let pin = quote!(#boxed::pin);
    let typed_context = paths.private("typed_context");
    // A fn pointer spanned at the return type: an output type that cannot be stored is
    // reported there, once, and not at the attribute.
    let store = match &step.output {
        Some(output) => respan(
            quote!(let store: fn(#output) -> #step_result_ty = #step_result::<#output>;),
            output.span(),
        ),
        None => quote!(let store = #step_result;),
    };
    let body = quote! {
        #store
        let cx = #typed_context::<Self>(&cx)?;
        #(#lets)*
        store(this.#method(#cx_arg, #(#args),*).await)
    };
    // The async block is spanned at the method's name (its contents keep their own spans), so
    // a step whose future is not `Send` is reported at the step.
    let mut block = Group::new(proc_macro2::Delimiter::Brace, body);
    block.set_span(step.method.span());
    let span = step.method.span();
    let call = |callee: TokenStream, argument: TokenStream| {
        let mut arguments = Group::new(proc_macro2::Delimiter::Parenthesis, argument);
        arguments.set_span(span);
        let callee = respan(callee, span);
        quote!(#callee #arguments)
    };
    let async_move = respan(quote!(async move), span);
    let future = call(paths.private("require_send"), quote!(#async_move #block));
    let boxed_future = call(pin, future);
    let mut closure_body = Group::new(proc_macro2::Delimiter::Brace, boxed_future);
    closure_body.set_span(span);
    quote! {
        |this: #arc<Self>, cx: #step_context| -> #box_future<'static, #step_result_ty> #closure_body
    }
}

/// `tokens` with every span set to `span`, so rustc reports errors in them at the user's token.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|token| match token {
            TokenTree::Group(group) => {
                let mut new = Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                TokenTree::Group(new)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}

/// `impl Handler { const STEP: StepRef<Output> = …; }`, one constant per step.
fn step_refs(model: &TaskHandler, paths: &Paths) -> TokenStream {
    let step_return = paths.private("StepReturn");
    let step_ref = paths.private("StepRef");
    let consts = model.steps.iter().filter_map(|step| {
        let output = step.output.as_ref()?;
        let vis = &step.vis;
        // `r#type` names the constant `TYPE`.
        let constant = format_ident!("{}", step.method.unraw().to_string().to_uppercase());
        let name = &step.name;
        let doc = format!("The output of step `{name}`, for `StepContext::output`.");
        Some(quote! {
            #[doc = #doc]
            #[allow(dead_code)]
            #vis const #constant: #step_ref<<#output as #step_return>::Output> =
                #step_ref::new(#name);
        })
    });
    let self_ty = &model.self_ty;
    quote! {
        #[allow(clippy::all)]
        impl #self_ty {
            #(#consts)*
        }
    }
}

/// After an error: the user's block, its step constants and a `TaskHandler` impl that does
/// nothing, so the rest of the crate type-checks and only the real mistake is reported.
pub(crate) fn placeholder(model: &TaskHandler) -> TokenStream {
    if model.type_name.is_empty() || !model.item.generics.params.is_empty() {
        return TokenStream::new();
    }
    let paths = Paths::new(model.options.krate.get());
    let private = |name: &str| paths.private(name);
    let (task_handler, template_ty, result, uncompiled) = (
        private("TaskHandler"),
        private("TaskTemplate"),
        private("Result"),
        private("uncompiled_template"),
    );
    let (arc, string, vec, dyn_handler) = (
        private("Arc"),
        private("String"),
        private("Vec"),
        private("DynStepHandler"),
    );
    let context = match model.options.context.get() {
        Some(ty) => quote!(#ty),
        None => {
            let json = private("serde_json");
            quote!(#json::Value)
        }
    };
    let self_ty = &model.self_ty;
    let step_refs = step_refs(model, &paths);
    quote! {
        #step_refs

        #[allow(clippy::all)]
        const _: () = {
            impl #task_handler for #self_ty {
                type Context = #context;
                const NAMESPACE: &'static str = "";
                const NAME: &'static str = "";
                const VERSION: &'static str = "";

                fn template(
                    _: ::core::option::Option<&str>,
                ) -> #result<#template_ty> {
                    #uncompiled(::core::any::type_name::<Self>())
                }

                fn step_handlers(self: #arc<Self>) -> #vec<(#string, #arc<dyn #dyn_handler>)> {
                    #vec::new()
                }
            }
        };
    }
}

/// The JSON Schema of the step's output, when its type has one.
fn output_schema(step: &Step, paths: &Paths) -> TokenStream {
    let Some(output) = &step.output else {
        return quote!(::core::option::Option::None);
    };
    let probe = paths.private("SchemaProbe");
    let step_return = paths.private("StepReturn");
    let via_schema = paths.private("ViaJsonSchema");
    let via_none = paths.private("ViaNoSchema");
    quote! {{
        #[allow(unused_imports)]
        use #via_schema as _;
        #[allow(unused_imports)]
        use #via_none as _;
        (&&#probe::<<#output as #step_return>::Output>::new()).schema()
    }}
}
