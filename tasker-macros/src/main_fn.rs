//! `#[tasker::main]` and `#[tasker::test]`: run an `async fn` on tasker's tokio runtime.

use proc_macro2::TokenStream;
use quote::quote;

use crate::paths::Paths;

/// Expands `#[main] async fn main() { … }`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_entry(args, item, "main")
}

/// Expands `#[test] async fn name() { … }` into a `#[test]` on a multi-threaded runtime.
pub(crate) fn expand_test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_entry(args, item, "test")
}

fn expand_entry(args: TokenStream, item: TokenStream, which: &str) -> TokenStream {
    let mut function: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let error = syn::Error::new(
                proc_macro2::Span::call_site(),
                format!("`#[tasker::{which}]` goes on an `async fn`"),
            )
            .to_compile_error();
            return quote!(#error #item);
        }
    };
    if !args.is_empty() {
        let error =
            syn::Error::new_spanned(&args, format!("`#[tasker::{which}]` takes no options"))
                .to_compile_error();
        return quote!(#error #item);
    }
    if function.sig.asyncness.take().is_none() {
        let error = syn::Error::new_spanned(
            function.sig.fn_token,
            format!("`#[tasker::{which}]` needs an `async fn`"),
        )
        .to_compile_error();
        return quote!(#error #item);
    }
    let tokio = Paths::new(None).private("tokio");
    let body = &function.block;
    let attrs = &function.attrs;
    let vis = &function.vis;
    let sig = &function.sig;
    let test = (which == "test").then(|| quote!(#[::core::prelude::v1::test]));
    quote! {
        #test
        #(#attrs)*
        #vis #sig {
            let body = async #body;
            #[allow(clippy::expect_used, reason = "without a runtime there is nothing to report to")]
            #tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("cannot start the tokio runtime")
                .block_on(body)
        }
    }
}
