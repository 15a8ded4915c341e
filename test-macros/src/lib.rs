//! `#[both_stores]`: runs an integration test once on each store.
//!
//! ```ignore
//! #[both_stores]
//! #[tokio::test]
//! async fn upserts_are_read_back() {
//!     let app = spawn_app().await; // on the store of the variant
//!     ...
//! }
//! ```
//!
//! becomes a module `upserts_are_read_back` holding two tests, `sled` and
//! `postgres`, each running the body with `common::StoreKind` set for
//! `spawn_app` (through `common::on_store`, which also skips the PostgreSQL
//! variant, saying so, where PostgreSQL is not installed).

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, ItemFn};

#[proc_macro_attribute]
pub fn both_stores(args: TokenStream, item: TokenStream) -> TokenStream {
    if !args.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[both_stores] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let function = parse_macro_input!(item as ItemFn);
    let returns = !matches!(function.sig.output, syn::ReturnType::Default);
    if function.sig.asyncness.is_none() || !function.sig.inputs.is_empty() || returns {
        return syn::Error::new_spanned(
            &function.sig,
            "#[both_stores] goes on an `async fn` without parameters or a return type",
        )
        .to_compile_error()
        .into();
    }
    let name = &function.sig.ident;
    let attributes = &function.attrs;
    let body = &function.block;
    let variant = |variant: &str, kind: &str| {
        let variant = syn::Ident::new(variant, name.span());
        let kind = syn::Ident::new(kind, name.span());
        quote! {
            #(#attributes)*
            async fn #variant() {
                crate::common::on_store(crate::common::StoreKind::#kind, async move #body).await;
            }
        }
    };
    let sled = variant("sled", "Sled");
    let postgres = variant("postgres", "Postgres");
    quote! {
        mod #name {
            #[allow(unused_imports)]
            use super::*;
            #sled
            #postgres
        }
    }
    .into()
}
