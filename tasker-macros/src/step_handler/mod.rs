//! `#[step_handler]`: a standalone step handler registered under a name templates use.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Item, ItemFn, ItemImpl, LitStr, PathArguments, Type};

use crate::attr::{self, Attr};
use crate::ctxt::Ctxt;
use crate::paths::Paths;
use crate::symbol;

/// Expands `#[step_handler(args)] item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let mut name: Attr<LitStr> = Attr::none("name");
    let mut krate: Attr<syn::Path> = Attr::none("crate");
    let parser = syn::meta::parser(|meta| {
        let span = meta.path.span();
        if meta.path.is_ident("name") {
            let value = attr::string(&meta)?;
            name.set(&mut cx, span, value);
        } else if meta.path.is_ident("crate") {
            let path = attr::crate_path(&meta)?;
            krate.set(&mut cx, span, path);
        } else {
            attr::unknown_option(&mut cx, &meta, "step_handler", symbol::STEP_HANDLER_OPTIONS)?;
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(e);
    }
    let paths = Paths::new(krate.get());
    let name = name.into_inner();
    if let Some(name) = &name
        && name.value().trim().is_empty()
    {
        cx.error_at(name, "a step handler's `name` must not be empty");
    }
    let generated = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(function)) => expand_fn(&mut cx, &paths, name, &function),
        Ok(Item::Impl(block)) if is_step_handler_impl(&block) => {
            expand_impl(&mut cx, &paths, name, &block)
        }
        _ => {
            cx.error_span(
                Span::call_site(),
                "`#[step_handler]` goes on an `async fn(cx: &StepContext) -> Result<T, E>` \
                 or on an `impl StepHandler for Type` block",
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

fn is_step_handler_impl(block: &ItemImpl) -> bool {
    block.trait_.as_ref().is_some_and(|(path, _)| {
        path.segments
            .last()
            .is_some_and(|s| s.ident == "StepHandler")
    })
}

fn expand_fn(cx: &mut Ctxt, paths: &Paths, name: Option<LitStr>, function: &ItemFn) -> TokenStream {
    let sig = &function.sig;
    let ident = &sig.ident;
    if sig.asyncness.is_none() {
        cx.error_at(
            sig.fn_token,
            format!("step handler `{ident}` must be an `async fn`"),
        );
    }
    if !sig.generics.params.is_empty() {
        cx.error_at(&sig.generics, "a step handler cannot be generic");
    }
    if matches!(sig.output, syn::ReturnType::Default) {
        cx.error_at(
            ident,
            format!("step handler `{ident}` must return `Result<T, StepError>`"),
        );
    }
    let mut inputs = sig.inputs.iter();
    let cx_ty = match (inputs.next(), inputs.next()) {
        (Some(FnArg::Typed(pat)), None) => Some((*pat.ty).clone()),
        _ => {
            cx.error_at(
                &sig.inputs,
                format!(
                    "step handler `{ident}` takes exactly one parameter, its context: \
                     `cx: &StepContext` or `cx: &StepContext<Ctx>`"
                ),
            );
            None
        }
    };
    let name = name.map_or_else(|| ident.to_string(), |n| n.value());
    let step_context = paths.private("StepContext");
    let step_handler = paths.private("StepHandler");
    let step_result_ty = paths.private("StepResult");
    let step_result = paths.private("step_result");
    let call = match cx_ty.as_ref().and_then(typed_context) {
        Some(context) => quote! {
            let cx = cx.typed::<#context>()?;
            #step_result(#ident(&cx).await)
        },
        None => {
            let arg = match &cx_ty {
                Some(ty) => quote_spanned!(ty.span()=> cx),
                None => quote!(cx),
            };
            quote!(#step_result(#ident(#arg).await))
        }
    };
    let instance = instance_fn(paths, quote!(__TaskerStepHandler), false);
    let registration = registration(paths, &name, &ident.to_string());
    quote! {
        #[allow(clippy::all)]
        const _: () = {
            struct __TaskerStepHandler;

            #[automatically_derived]
            impl #step_handler for __TaskerStepHandler {
                fn handle(
                    &self,
                    cx: &#step_context,
                ) -> impl ::core::future::Future<Output = #step_result_ty> + ::core::marker::Send {
                    async move { #call }
                }
            }

            #instance
            #registration
        };
    }
}

fn expand_impl(
    cx: &mut Ctxt,
    paths: &Paths,
    name: Option<LitStr>,
    block: &ItemImpl,
) -> TokenStream {
    let Some(name) = name else {
        cx.error_span(
            Span::call_site(),
            "name the step handler: `#[step_handler(name = \"ecommerce.fetch_order\")]`",
        );
        return TokenStream::new();
    };
    if !block.generics.params.is_empty() {
        cx.error_at(&block.generics, "a step handler cannot be generic");
    }
    let self_ty = &block.self_ty;
    let type_name = match &**self_ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let instance = instance_fn(paths, quote!(#self_ty), true);
    let registration = registration(paths, &name.value(), &type_name);
    quote! {
        #[allow(clippy::all)]
        const _: () = {
            #instance
            #registration
        };
    }
}

/// `__tasker_instance`: the handler when the engine can build it itself.
fn instance_fn(paths: &Paths, ty: TokenStream, probe: bool) -> TokenStream {
    let arc = paths.private("Arc");
    let dyn_handler = paths.private("DynStepHandler");
    let body = if probe {
        let probe = paths.private("Probe");
        let via_default = paths.private("ViaDefault");
        let via_nothing = paths.private("ViaNothing");
        quote! {
            #[allow(unused_imports)]
            use #via_default as _;
            #[allow(unused_imports)]
            use #via_nothing as _;
            (&&#probe::<#ty>::new())
                .instance()
                .map(|h| #arc::new(h) as #arc<dyn #dyn_handler>)
        }
    } else {
        quote!(::core::option::Option::Some(#arc::new(#ty) as #arc<dyn #dyn_handler>))
    };
    quote! {
        fn __tasker_instance() -> ::core::option::Option<#arc<dyn #dyn_handler>> {
            #body
        }
    }
}

fn registration(paths: &Paths, name: &str, item: &str) -> TokenStream {
    let inventory = paths.private("inventory");
    let registration = paths.private("StepHandlerRegistration");
    quote! {
        #inventory::submit! {
            #registration::new(
                #name,
                ::core::concat!(::core::module_path!(), "::", #item),
                __tasker_instance,
            )
        }
    }
}

/// `Ctx` in `&StepContext<Ctx>`, if the context is typed.
fn typed_context(ty: &Type) -> Option<Type> {
    let Type::Reference(reference) = ty else {
        return None;
    };
    let Type::Path(path) = &*reference.elem else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "StepContext" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(ty) => Some(ty.clone()),
        _ => None,
    }
}
