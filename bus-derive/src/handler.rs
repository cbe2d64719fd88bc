//! `#[handler]`: turns an `async fn` into a unit struct implementing
//! `topicbus::Handler`.
//!
//! Like the derive, it first reads the options and checks the signature,
//! recording every mistake, then generates code. With a signature it cannot
//! use, it gives the function back unchanged next to the errors, so the
//! errors are about the function and not about a missing item.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, ItemFn, LitStr, PathArguments, ReturnType, Type, TypePath,
};

use crate::duration;
use crate::errors::Errors;
use crate::options::{self, Known};

const OPTIONS: &[Known] = &[
    Known {
        name: "group",
        example: "group = \"indexer\"",
    },
    Known {
        name: "retries",
        example: "retries = 5",
    },
    Known {
        name: "concurrency",
        example: "concurrency = 4",
    },
    Known {
        name: "timeout",
        example: "timeout = \"2s\"",
    },
    Known {
        name: "backoff",
        example: "backoff = \"100ms\"",
    },
];

const USAGE: &str = "`#[handler]` goes on an `async fn` taking the payload and optionally a \
                     `topicbus::Context`, as in `async fn embed(req: EmbedRequest) -> \
                     Result<EmbedResponse, MyError>`";

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let options = HandlerOptions::parse(args, &mut errors);
    let function = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            errors.push(syn::Error::new(Span::call_site(), USAGE));
            let mut tokens = errors.to_compile_errors();
            tokens.extend(item);
            return tokens;
        }
    };
    let mut tokens = match HandlerFn::check(&function) {
        Ok(handler) => handler.expand(&options),
        Err(error) => {
            errors.push(error);
            quote!(#function)
        }
    };
    tokens.extend(errors.to_compile_errors());
    tokens
}

/// The options of `#[handler(...)]` that are valid; mistakes are recorded.
#[derive(Default)]
struct HandlerOptions {
    group: Option<LitStr>,
    retries: Option<u32>,
    concurrency: Option<usize>,
    timeout_ms: Option<u64>,
    backoff_ms: Option<u64>,
}

impl HandlerOptions {
    fn parse(args: TokenStream, errors: &mut Errors) -> Self {
        let mut parsed = HandlerOptions::default();
        options::parse_options(
            "#[handler]",
            OPTIONS,
            args,
            &mut Vec::new(),
            errors,
            |option, value| {
                let example = option.example;
                match option.name {
                    "group" => parsed.group = Some(group(value, example)?),
                    "retries" => parsed.retries = Some(retries(value, example)?),
                    "concurrency" => parsed.concurrency = Some(concurrency(value, example)?),
                    "timeout" => parsed.timeout_ms = Some(timeout(value, example)?),
                    "backoff" => parsed.backoff_ms = Some(duration_millis(value, example)?.1),
                    name => unreachable!("`{name}` is not in OPTIONS"),
                }
                Ok(())
            },
        );
        parsed
    }

    /// The builder calls that set these options on `HandlerOptions::new()`.
    fn setters(&self) -> Vec<TokenStream> {
        let duration = |ms: u64| {
            let ms = Literal::u64_unsuffixed(ms);
            quote!(::core::time::Duration::from_millis(#ms))
        };
        let mut setters = Vec::new();
        if let Some(group) = &self.group {
            setters.push(quote!(group(#group)));
        }
        if let Some(retries) = self.retries.map(Literal::u32_unsuffixed) {
            setters.push(quote!(retries(#retries)));
        }
        if let Some(concurrency) = self.concurrency.map(Literal::usize_unsuffixed) {
            setters.push(quote!(concurrency(#concurrency)));
        }
        if let Some(timeout) = self.timeout_ms.map(duration) {
            setters.push(quote!(timeout(#timeout)));
        }
        if let Some(backoff) = self.backoff_ms.map(duration) {
            setters.push(quote!(backoff(#backoff)));
        }
        setters
    }
}

fn group(value: ParseStream, example: &str) -> syn::Result<LitStr> {
    let group = options::string(value, example)?;
    if group.value().is_empty() {
        return Err(syn::Error::new_spanned(
            group,
            "a group name cannot be empty",
        ));
    }
    Ok(group)
}

fn retries(value: ParseStream, example: &str) -> syn::Result<u32> {
    let lit = options::integer(value, example)?;
    lit.base10_parse().map_err(|_| {
        syn::Error::new_spanned(&lit, format!("too many retries: at most {}", u32::MAX))
    })
}

fn concurrency(value: ParseStream, example: &str) -> syn::Result<usize> {
    let lit = options::integer(value, example)?;
    match lit.base10_parse::<usize>() {
        Ok(0) => Err(syn::Error::new_spanned(
            lit,
            "concurrency must be at least 1",
        )),
        Ok(n) => Ok(n),
        Err(_) => Err(syn::Error::new_spanned(
            lit,
            "concurrency does not fit in a `usize`",
        )),
    }
}

fn timeout(value: ParseStream, example: &str) -> syn::Result<u64> {
    match duration_millis(value, example)? {
        (lit, 0) => Err(syn::Error::new_spanned(
            lit,
            "a timeout of zero would fail every call",
        )),
        (_, millis) => Ok(millis),
    }
}

/// A duration literal and the milliseconds it stands for.
fn duration_millis(value: ParseStream, example: &str) -> syn::Result<(LitStr, u64)> {
    let lit = options::string(value, example)?;
    match duration::parse_millis(&lit.value()) {
        Ok(millis) => Ok((lit, millis)),
        Err(message) => Err(syn::Error::new_spanned(lit, message)),
    }
}

/// A checked handler function.
struct HandlerFn<'a> {
    function: &'a ItemFn,
    payload: &'a Type,
    /// The type of the second argument, which the bus passes a `Context` to.
    context: Option<&'a Type>,
    output: &'a Type,
}

impl<'a> HandlerFn<'a> {
    fn check(function: &'a ItemFn) -> syn::Result<Self> {
        let sig = &function.sig;
        let mut errors = Errors::default();
        if sig.asyncness.is_none() {
            errors.spanned(
                sig.fn_token,
                "a handler must be an `async fn`: add `async` before `fn`",
            );
        }
        if let Some(unsafety) = &sig.unsafety {
            errors.spanned(unsafety, "a handler cannot be `unsafe`");
        }
        if !sig.generics.params.is_empty() {
            errors.spanned(
                &sig.generics,
                "a handler cannot be generic: it handles one topic, named by its payload type",
            );
        }
        let mut typed = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(receiver) => errors.spanned(
                    receiver,
                    "a handler is a free `async fn`, it cannot take `self`",
                ),
                FnArg::Typed(arg) => typed.push(&*arg.ty),
            }
        }
        if sig.inputs.is_empty() {
            errors.push(syn::Error::new(
                sig.paren_token.span.join(),
                "a handler takes the message payload, and optionally a `topicbus::Context`, \
                 as in `async fn embed(req: EmbedRequest)`",
            ));
        }
        if sig.inputs.len() > 2 {
            let extra = sig.inputs.iter().skip(2);
            errors.spanned(
                quote!(#(#extra)*),
                "a handler takes at most two arguments: the payload and a `topicbus::Context`",
            );
        }
        if let Some(Type::Reference(reference)) = typed.first() {
            errors.spanned(
                reference,
                "a handler takes its payload by value, as in `req: EmbedRequest`",
            );
        }
        let output = match &sig.output {
            ReturnType::Type(_, output) => Some(&**output),
            ReturnType::Default => {
                errors.push(syn::Error::new(
                    sig.paren_token.span.close(),
                    "a handler returns a `Result`: add `-> Result<(), MyError>` to handle an \
                     event, or `-> Result<MyResponse, MyError>` to answer a request",
                ));
                None
            }
        };
        match (errors.finish(), typed.first(), output) {
            (Ok(()), Some(payload), Some(output)) => Ok(HandlerFn {
                function,
                payload,
                context: typed.get(1).copied(),
                output,
            }),
            (result, ..) => Err(result.expect_err("a missing payload or return type is reported")),
        }
    }

    fn expand(&self, options: &HandlerOptions) -> TokenStream {
        let ItemFn {
            attrs, vis, sig, ..
        } = self.function;
        let name = &sig.ident;
        let name_str = LitStr::new(&name.unraw().to_string(), name.span());
        let payload = self.payload;
        let output = self.output;
        let (docs, cfgs, others) = split_attrs(attrs);

        // `run` keeps the body; `async` is part of the handler contract, so
        // clippy's `unused_async` on a body without `.await` is noise.
        let mut run = self.function.clone();
        run.attrs = others;
        run.sig.ident = format_ident!("run");

        // Errors about the return type (not a `Result`, an error type that
        // is not `Display`, a future that is not `Send`) are reported on it,
        // not on `#[handler]`; located there, but resolved as our own tokens.
        let at_output = Span::call_site().located_at(output.span());
        let call = match self.context {
            Some(context) => {
                // A second argument that is not a `Context` is reported on its type.
                let ctx = Ident::new("ctx", Span::call_site().located_at(context.span()));
                quote_spanned! {at_output=>
                    fn call(
                        &self,
                        message: #payload,
                        context: impl ::core::ops::FnOnce() -> ::topicbus::Context,
                    ) -> impl ::core::future::Future<Output = Self::Result> + ::core::marker::Send {
                        let #ctx = context();
                        #name::run(message, #ctx)
                    }
                }
            }
            None => quote_spanned! {at_output=>
                fn call(
                    &self,
                    message: #payload,
                    _context: impl ::core::ops::FnOnce() -> ::topicbus::Context,
                ) -> impl ::core::future::Future<Output = Self::Result> + ::core::marker::Send {
                    #name::run(message)
                }
            },
        };
        let output_types = quote_spanned! {at_output=>
            type Result = #output;
        };
        let setters = options.setters();
        let options_fn = (!setters.is_empty()).then(|| {
            quote! {
                fn options(&self) -> ::topicbus::HandlerOptions {
                    ::topicbus::HandlerOptions::new() #(.#setters)*
                }
            }
        });
        // On the user's response type, so a mismatch is reported there.
        let response_check = response_type(output).map(|response| {
            let at_response = Span::call_site().located_at(response.span());
            quote_spanned! {at_response=>
                #(#cfgs)*
                const _: () = ::topicbus::__private::assert_response::<#payload, #response>();
            }
        });

        quote! {
            #(#docs)*
            #(#cfgs)*
            #[allow(non_camel_case_types)]
            #[derive(Clone, Copy, Debug, Default)]
            #vis struct #name;

            #(#cfgs)*
            impl #name {
                /// Runs the handler body directly (handy in unit tests).
                #[allow(clippy::unused_async)]
                #run
            }

            #(#cfgs)*
            #[automatically_derived]
            impl ::topicbus::Handler<::topicbus::__private::Macro> for #name {
                type Topic = #payload;
                #output_types

                #call

                #options_fn

                fn name(&self) -> &'static str {
                    ::core::concat!(::core::module_path!(), "::", #name_str)
                }
            }

            #response_check
        }
    }
}

/// Splits the function's attributes by where they go: doc comments onto the
/// struct, `#[cfg]` onto every generated item, the rest (lints,
/// `#[tracing::instrument]`, ...) onto `run`, which holds the body.
fn split_attrs(attrs: &[Attribute]) -> (Vec<&Attribute>, Vec<&Attribute>, Vec<Attribute>) {
    let mut docs = Vec::new();
    let mut cfgs = Vec::new();
    let mut others = Vec::new();
    for attr in attrs {
        if attr.path().is_ident("doc") {
            docs.push(attr);
        } else if attr.path().is_ident("cfg") {
            cfgs.push(attr);
        } else {
            others.push(attr.clone());
        }
    }
    (docs, cfgs, others)
}

/// `O` when the return type is written `Result<O, ..>` or `some::Result<O>`
/// and `O` is not `()`: a handler answering a request with `O`.
fn response_type(output: &Type) -> Option<&Type> {
    let Type::Path(TypePath { qself: None, path }) = ungroup(output) else {
        return None;
    };
    let last = path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let ok = args.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })?;
    match ungroup(ok) {
        Type::Tuple(unit) if unit.elems.is_empty() => None,
        _ => Some(ok),
    }
}

/// Looks through the invisible groups a `$t:ty` from `macro_rules!` makes.
fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => ungroup(&group.elem),
        Type::Paren(paren) => ungroup(&paren.elem),
        _ => ty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_of(output: &str) -> Option<String> {
        let output: Type = syn::parse_str(output).unwrap();
        response_type(&output).map(|ty| quote!(#ty).to_string())
    }

    #[test]
    fn response_is_the_ok_type_of_a_result() {
        assert_eq!(
            response_of("Result<EmbedResponse, MyError>").as_deref(),
            Some("EmbedResponse")
        );
        assert_eq!(
            response_of("std::result::Result<Vec<f32>, E>").as_deref(),
            Some("Vec < f32 >")
        );
        assert_eq!(
            response_of("anyhow::Result<EmbedResponse>").as_deref(),
            Some("EmbedResponse")
        );
    }

    #[test]
    fn event_handlers_have_no_response() {
        assert_eq!(response_of("Result<(), MyError>"), None);
        assert_eq!(response_of("anyhow::Result<()>"), None);
    }

    #[test]
    fn return_types_not_written_as_result_are_not_checked() {
        assert_eq!(response_of("MyResult"), None);
        assert_eq!(response_of("Option<EmbedResponse>"), None);
        assert_eq!(response_of("<T as Trait>::Result<X>"), None);
    }
}
