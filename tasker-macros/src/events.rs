//! `custom_event!` (a custom event whose name is checked at compile time) and `#[subscriber]`.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, Ident, Item, LitStr, Token, Visibility};

use crate::attr::{self, Attr};
use crate::ctxt::Ctxt;
use crate::paths::Paths;

struct Declaration {
    attrs: Vec<Attribute>,
    vis: Visibility,
    ident: Ident,
    name: LitStr,
}

struct Declarations(Vec<Declaration>);

impl Parse for Declarations {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut all = Vec::new();
        while !input.is_empty() {
            let attrs = input.call(Attribute::parse_outer)?;
            let vis: Visibility = input.parse()?;
            let ident: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let name: LitStr = input.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "expected the event's name: `ORDER_SHIPPED = \"order.shipped\";`",
                )
            })?;
            input.parse::<Token![;]>()?;
            all.push(Declaration {
                attrs,
                vis,
                ident,
                name,
            });
        }
        Ok(Self(all))
    }
}

/// Expands `custom_event! { /// doc \n pub NAME = "family.event"; … }`.
pub(crate) fn expand_custom_event(input: TokenStream) -> TokenStream {
    let declarations = match syn::parse2::<Declarations>(input) {
        Ok(d) => d.0,
        Err(e) => return e.to_compile_error(),
    };
    let paths = Paths::new(None);
    let custom_event = paths.private("CustomEvent");
    let registration = paths.private("CustomEventRegistration");
    let inventory = paths.private("inventory");
    let mut cx = Ctxt::default();
    let mut items = Vec::new();
    for d in &declarations {
        if let Some(problem) = tasker_rules::declared_event_problem(&d.name.value()) {
            cx.error_at(&d.name, problem);
        }
        let description = doc(&d.attrs);
        let (attrs, vis, ident, name) = (&d.attrs, &d.vis, &d.ident, &d.name);
        items.push(quote! {
            #(#attrs)*
            #vis const #ident: #custom_event = #custom_event::__new(#name, #description);
            const _: () = {
                #inventory::submit! { #registration(&#ident) }
            };
        });
    }
    let error = cx.finish().map(|e| e.to_compile_error());
    quote!(#error #(#items)*)
}

fn doc(attrs: &[Attribute]) -> String {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value().trim().to_owned()),
                _ => None,
            },
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Expands `#[subscriber(events = [...])]` on an `async fn(&Event)` or an `impl Subscriber`.
pub(crate) fn expand_subscriber(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let mut events: Attr<Vec<LitStr>> = Attr::none("events");
    let parser = syn::meta::parser(|meta| {
        let span = meta.path.span();
        if meta.path.is_ident("events") {
            let input = meta.value()?;
            let content;
            syn::bracketed!(content in input);
            let list = content.parse_terminated(<LitStr as Parse>::parse, Token![,])?;
            events.set(&mut cx, span, list.into_iter().collect());
        } else {
            attr::unknown_option(&mut cx, &meta, "subscriber", &["events"])?;
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(e);
    }
    let events = events.into_inner();
    match &events {
        None => cx.error_span(
            Span::call_site(),
            "name the events: `#[subscriber(events = [\"step.failed\", \"task.*\"])]`",
        ),
        Some(list) if list.is_empty() => cx.error_span(
            Span::call_site(),
            "`events` is empty; name at least one event, or `\"*\"` for all",
        ),
        Some(list) => {
            for pattern in list {
                let value = pattern.value();
                let valid = value == "*"
                    || (value.contains('.')
                        && !value.split('.').any(str::is_empty)
                        && !value.trim_end_matches('*').contains('*'));
                if !valid {
                    cx.error_at(
                        pattern,
                        format!(
                            "`{value}` is not an event name or pattern: write `step.failed`, `task.*` or `*`"
                        ),
                    );
                }
            }
        }
    }
    let events = events.unwrap_or_default();
    let paths = Paths::new(None);
    let generated = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(function)) => subscriber_fn(&mut cx, &paths, &events, &function),
        Ok(Item::Impl(block))
            if block
                .trait_
                .as_ref()
                .and_then(|(path, _)| path.segments.last())
                .is_some_and(|s| s.ident == "Subscriber") =>
        {
            return subscriber_impl(cx, &paths, &events, block);
        }
        _ => {
            cx.error_span(
                Span::call_site(),
                "`#[subscriber]` goes on an `async fn(event: &Event) -> Result<(), E>` or an \
                 `impl Subscriber for Type` block",
            );
            TokenStream::new()
        }
    };
    match cx.finish() {
        None => quote!(#item #generated),
        Some(error) => {
            let error = error.to_compile_error();
            quote!(#error #item)
        }
    }
}

fn registration(paths: &Paths, name: &str, instance: TokenStream) -> TokenStream {
    let arc = paths.private("Arc");
    let dyn_subscriber = paths.private("DynSubscriber");
    let inventory = paths.private("inventory");
    let registration = paths.private("SubscriberRegistration");
    quote! {
        fn __tasker_instance() -> ::core::option::Option<#arc<dyn #dyn_subscriber>> {
            #instance
        }
        #inventory::submit! {
            #registration::new(
                ::core::concat!(::core::module_path!(), "::", #name),
                __tasker_instance,
            )
        }
    }
}

fn subscriber_fn(
    cx: &mut Ctxt,
    paths: &Paths,
    events: &[LitStr],
    function: &syn::ItemFn,
) -> TokenStream {
    let ident = &function.sig.ident;
    if function.sig.asyncness.is_none() {
        cx.error_at(
            function.sig.fn_token,
            format!("subscriber `{ident}` must be an `async fn`"),
        );
    }
    if function.sig.inputs.len() != 1 {
        cx.error_at(
            &function.sig.inputs,
            format!("subscriber `{ident}` takes one parameter: `event: &Event`"),
        );
    }
    let subscriber = paths.private("Subscriber");
    let event = paths.private("Event");
    let error = paths.private("SubscriberError");
    let arc = paths.private("Arc");
    let dyn_subscriber = paths.private("DynSubscriber");
    let registration = registration(
        paths,
        &ident.to_string(),
        quote!(::core::option::Option::Some(#arc::new(__TaskerSubscriber) as #arc<dyn #dyn_subscriber>)),
    );
    quote! {
        #[allow(clippy::all)]
        const _: () = {
            struct __TaskerSubscriber;

            #[automatically_derived]
            impl #subscriber for __TaskerSubscriber {
                fn events(&self) -> &[&str] {
                    &[#(#events),*]
                }

                fn handle(
                    &self,
                    event: &#event,
                ) -> impl ::core::future::Future<Output = ::core::result::Result<(), #error>> + ::core::marker::Send {
                    async move { #ident(event).await.map_err(::core::convert::Into::into) }
                }
            }

            #registration
        };
    }
}

fn subscriber_impl(
    mut cx: Ctxt,
    paths: &Paths,
    events: &[LitStr],
    mut block: syn::ItemImpl,
) -> TokenStream {
    let has_events = block
        .items
        .iter()
        .any(|i| matches!(i, syn::ImplItem::Fn(f) if f.sig.ident == "events"));
    if has_events {
        cx.error_span(
            Span::call_site(),
            "this `impl` defines `events` itself; list them in `#[subscriber(events = [...])]` \
             or in `fn events`, not both",
        );
    } else {
        block.items.insert(
            0,
            syn::parse_quote! {
                fn events(&self) -> &[&str] {
                    &[#(#events),*]
                }
            },
        );
    }
    let self_ty = &block.self_ty;
    let type_name = match &**self_ty {
        syn::Type::Path(p) => p
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let arc = paths.private("Arc");
    let dyn_subscriber = paths.private("DynSubscriber");
    let probe = paths.private("Probe");
    let via_default = paths.private("ViaDefault");
    let via_nothing = paths.private("ViaNothing");
    let registration = registration(
        paths,
        &type_name,
        quote! {
            #[allow(unused_imports)]
            use #via_default as _;
            #[allow(unused_imports)]
            use #via_nothing as _;
            (&&#probe::<#self_ty>::new())
                .instance()
                .map(|s| #arc::new(s) as #arc<dyn #dyn_subscriber>)
        },
    );
    match cx.finish() {
        None => quote! {
            #block
            #[allow(clippy::all)]
            const _: () = { #registration };
        },
        Some(error) => {
            let error = error.to_compile_error();
            quote!(#error #block)
        }
    }
}
