//! Expansion of a checked task: its companion type, which implements `Task` (the type of its data, its ledger
//! name, and its definition: an operation definition whose handler reads the run's data from its context, and
//! the function computing the run's keys from that data).

use proc_macro2::{Ident, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::expand::{common_meta_fields, hooks_tokens, scope};
use super::lit::{duration_tokens, line_tokens, opt};
use super::model::{SigSpans, TaskModel};
use super::task_attr::KeyAttr;

/// A `TaskKeys` field: the key computed from `args`, a fixed one, or none.
fn key_tokens(key: Option<&KeyAttr>) -> TokenStream {
    match key {
        None => quote!(::core::option::Option::None),
        Some(KeyAttr::Fixed(s)) => quote!(::core::option::Option::Some(
            ::std::string::String::from(#s)
        )),
        Some(KeyAttr::Fn(p)) => {
            quote_spanned!(p.span()=> ::core::option::Option::Some(::std::string::ToString::to_string(&#p(&args))))
        }
    }
}

/// The companion type of one task and its `Task` impl.
pub fn task_impl(m: &TaskModel, krate: &TokenStream) -> TokenStream {
    let t = &m.attr;
    let a = &t.base;
    let (ident, vis, name) = (&m.ident, &m.vis, &m.name);
    let fn_name = ident.to_string();
    let checksum = m.checksum;
    let common = common_meta_fields(a);
    // The key is the run's (`TaskKeys::unique`); the metadata says the task has one, and for how long it holds.
    let unique = t.unique.as_ref().map(|_| {
        let hold = opt(a.unique_for.map(duration_tokens));
        quote!(unique: ::core::option::Option::Some(Unique { key: #name, hold_for: #hold }),)
    });
    let args_ty = &m.args_ty;
    let ty_span = args_ty.span();
    let SigSpans {
        ctx: ctx_span,
        output,
    } = m.sig;
    let ctx_arg = quote_spanned!(ctx_span=> ctx);
    let called = Ident::new(&ident.to_string(), output);
    let call = quote_spanned!(output=> #krate::__private::handler_future(#called(#ctx_arg, args)));
    let hooks = hooks_tokens(a, krate);
    let (hook_fns, hook_fields) = (&hooks.items, &hooks.fields);
    let scope = scope(krate);
    let unique_key = key_tokens(t.unique.as_ref());
    let overlap_key = key_tokens(t.overlap.as_ref());
    let rate_key = key_tokens(t.rate_key.clone().map(KeyAttr::Fn).as_ref());
    let run_tags = match &t.tags_fn {
        Some(p) => quote_spanned!(p.span()=> #krate::__private::task_tags(#p(&args))),
        None => quote!(::std::vec::Vec::new()),
    };
    // The data travels through the ledger: `Task::Args` requires `TaskArgs` (`Serialize + DeserializeOwned`),
    // checked on the user's type, whose error names it.
    let args_decl = quote_spanned!(ty_span=> type Args = #args_ty;);
    let line = line_tokens(ident.span());
    let doc = format!(
        "Companion type of task `{name}`: dispatch it with `seq.dispatch::<{ident}>(args)`."
    );
    quote! {
        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis struct #ident {}

        impl #krate::__private::Task for #ident {
            #args_decl
            const NAME: &'static str = #name;
            const DEF: #krate::__private::TaskDef = {
                #scope
                fn __handler<'a>(ctx: &'a #krate::__private::Ctx) -> #krate::__private::BoxFuture<'a, #krate::__private::Result<()>> {
                    match #krate::__private::task_args::<#ident>(ctx) {
                        ::core::result::Result::Ok(args) => #call,
                        ::core::result::Result::Err(e) => #krate::__private::failed_future(e),
                    }
                }
                #[allow(unused_variables)]
                fn __keys(json: &str) -> #krate::__private::Result<#krate::__private::TaskKeys> {
                    let args = #krate::__private::decode_args::<#ident>(json)?;
                    ::core::result::Result::Ok(#krate::__private::TaskKeys {
                        unique: #unique_key,
                        overlap: #overlap_key,
                        rate: #rate_key,
                        tags: #run_tags,
                    })
                }
                #hook_fns
                #krate::__private::TaskDef {
                    op: OperationDef {
                        #hook_fields
                        ..OperationDef::new(
                            OperationMeta {
                                asynchronous: true,
                                #unique
                                #common
                                ..__meta(#name, 19_700_101_000_000, #fn_name, #line, #checksum)
                            },
                            __handler,
                        )
                    },
                    keys: __keys,
                }
            };
        }
    }
}
