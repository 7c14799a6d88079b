//! Every runtime path generated code names, in one place.

use proc_macro2::TokenStream;
use quote::quote;

/// Paths into the runtime's private module, rooted at `krate` (`::tasker` unless `crate = …`).
pub(crate) struct Paths {
    private: TokenStream,
}

impl Paths {
    /// Paths under `krate`, or `::tasker`.
    pub(crate) fn new(krate: Option<&syn::Path>) -> Self {
        let root = match krate {
            Some(path) => quote!(#path),
            None => quote!(::tasker),
        };
        Self {
            private: quote!(#root::__private),
        }
    }

    /// `::tasker::__private::<name>`.
    pub(crate) fn private(&self, name: &str) -> TokenStream {
        let ident = syn::Ident::new(name, proc_macro2::Span::call_site());
        let private = &self.private;
        quote!(#private::#ident)
    }
}
