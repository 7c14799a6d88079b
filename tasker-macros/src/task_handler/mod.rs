//! `#[task_handler]` on an `impl` block, and `#[step]` on its methods.

mod expand;
mod parse;
mod schedule;
mod validate;
mod yaml;

use proc_macro2::TokenStream;
use quote::quote;

use crate::ctxt::Ctxt;

/// Expands `#[task_handler(args)] item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let Some(mut model) = parse::parse(&mut cx, args, item.clone()) else {
        // Not an impl block at all: report and give the item back untouched.
        let error = cx.finish().map(|e| e.to_compile_error());
        return quote!(#error #item);
    };
    let yaml = validate::check(&mut cx, &mut model);
    match cx.finish() {
        None => expand::expand(&model, yaml.as_ref()),
        Some(error) => {
            // The user's methods still exist, so one mistake does not cascade into
            // "no method named …" errors elsewhere.
            let error = error.to_compile_error();
            let item = &model.item;
            let placeholder = expand::placeholder(&model);
            quote!(#error #item #placeholder)
        }
    }
}

/// `#[step]` outside a `#[task_handler]` block.
pub(crate) fn step_outside(_args: TokenStream, item: TokenStream) -> TokenStream {
    let error = syn::Error::new(
        proc_macro2::Span::call_site(),
        "`#[step]` only works on a method inside an `impl` block marked \
         `#[task_handler(...)]`, which sees the whole step graph",
    )
    .to_compile_error();
    quote!(#error #item)
}
