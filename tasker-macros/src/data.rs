//! `#[tasker::data]`: the derives a context or step output needs, through tasker's own
//! re-exports, so a crate depends on `tasker` alone.

use proc_macro2::TokenStream;
use quote::quote;

use crate::paths::Paths;

/// Expands `#[data] item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let krate = if args.is_empty() {
        None
    } else {
        match parse_crate(args) {
            Ok(path) => Some(path),
            Err(e) => {
                let error = e.to_compile_error();
                return quote!(#error #item);
            }
        }
    };
    let paths = Paths::new(krate.as_ref());
    let serde = paths.private("serde");
    let schemars = paths.private("schemars");
    let serde_path = path_string(&serde);
    let schemars_path = path_string(&schemars);
    quote! {
        #[derive(#serde::Serialize, #serde::Deserialize, #schemars::JsonSchema)]
        #[serde(crate = #serde_path)]
        #[schemars(crate = #schemars_path)]
        #item
    }
}

fn parse_crate(args: TokenStream) -> syn::Result<syn::Path> {
    let mut krate = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            krate = Some(meta.value()?.parse::<syn::Path>()?);
            Ok(())
        } else {
            Err(meta.error("unknown data option, expected `crate = path`"))
        }
    });
    syn::parse::Parser::parse2(parser, args)?;
    krate.ok_or_else(|| syn::Error::new(proc_macro2::Span::call_site(), "expected `crate = path`"))
}

/// `::tasker::__private::serde` as the string serde's `crate = "…"` wants.
fn path_string(tokens: &TokenStream) -> String {
    tokens.to_string().replace(' ', "")
}
