//! `#[derive(Topic)]`: binds a struct or enum to a topic.
//!
//! In three steps, as serde_derive does: read every `#[topic(...)]` attribute
//! into [`Attrs`] as written, check them against the type into a [`TopicDef`],
//! then generate the impls. Each step records its errors and goes on, so the
//! user sees one error per mistake, all at once, each on their own tokens.
//! Parts that are wrong are left out of the generated impl rather than failing
//! the whole derive, which keeps the rest of the crate free of follow-on
//! "is not a topic" errors.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{quote, quote_spanned};
use syn::{Data, DeriveInput, Fields, LitInt, LitStr, Member, Meta, Type};

use crate::errors::Errors;
use crate::options::{self, Known};
use crate::topic_name;

const OPTIONS: &[Known] = &[
    Known {
        name: "name",
        example: "name = \"ml.embed.request\"",
    },
    Known {
        name: "response",
        example: "response = EmbedResponse",
    },
    Known {
        name: "codec",
        example: "codec = \"json\"",
    },
    Known {
        name: "key",
        example: "key = chunk_id",
    },
    Known {
        name: "partitions",
        example: "partitions = 12",
    },
];

/// The built-in codecs, by the name used in `codec = "..."`, and their types
/// in `topicbus::codec`.
const CODECS: &[(&str, &str)] = &[
    ("json", "Json"),
    ("bincode", "Bincode"),
    ("postcard", "Postcard"),
];

pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let attrs = Attrs::parse(input, &mut errors);
    let def = TopicDef::check(input, attrs, &mut errors);
    let mut tokens = def.map(|def| def.expand()).unwrap_or_default();
    tokens.extend(errors.to_compile_errors());
    tokens
}

/// The `#[topic(...)]` options as written, not yet checked.
#[derive(Default)]
struct Attrs {
    name: Option<LitStr>,
    response: Option<Type>,
    codec: Option<CodecArg>,
    key: Option<Member>,
    partitions: Option<LitInt>,
    /// Options present, including those whose value did not parse.
    seen: Vec<Ident>,
    /// A `#[topic]` attribute that is not a list; already reported.
    malformed: bool,
}

enum CodecArg {
    Builtin(LitStr),
    Custom(syn::Path),
}

impl Attrs {
    fn parse(input: &DeriveInput, errors: &mut Errors) -> Self {
        let mut attrs = Attrs::default();
        for attr in input
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("topic"))
        {
            let Meta::List(list) = &attr.meta else {
                errors.spanned(attr, "expected `#[topic(name = \"...\")]`");
                attrs.malformed = true;
                continue;
            };
            let mut seen = std::mem::take(&mut attrs.seen);
            options::parse_options(
                "#[topic]",
                OPTIONS,
                list.tokens.clone(),
                &mut seen,
                errors,
                |option, value| {
                    match option.name {
                        "name" => attrs.name = Some(options::string(value, option.example)?),
                        "response" => {
                            attrs.response = Some(value.parse().map_err(|error| {
                                syn::Error::new(
                                    error.span(),
                                    "expected a type, as in `response = EmbedResponse`",
                                )
                            })?);
                        }
                        "codec" => {
                            attrs.codec = Some(if value.peek(LitStr) {
                                CodecArg::Builtin(value.parse()?)
                            } else {
                                CodecArg::Custom(value.parse()?)
                            });
                        }
                        "key" => {
                            attrs.key = Some(value.parse().map_err(|error| {
                                syn::Error::new(
                                    error.span(),
                                    "expected a field name, as in `key = chunk_id`",
                                )
                            })?);
                        }
                        "partitions" => {
                            attrs.partitions = Some(options::integer(value, option.example)?);
                        }
                        name => unreachable!("`{name}` is not in OPTIONS"),
                    }
                    Ok(())
                },
            );
            attrs.seen = seen;
        }
        attrs
    }
}

/// A checked topic, ready to generate code for.
struct TopicDef<'a> {
    ident: &'a Ident,
    name: LitStr,
    response: Option<Type>,
    codec: TokenStream,
    key: Option<Ident>,
    partitions: Option<u32>,
}

impl<'a> TopicDef<'a> {
    /// Checks `attrs` against the type. `None` when no impl can be generated.
    fn check(input: &'a DeriveInput, attrs: Attrs, errors: &mut Errors) -> Option<Self> {
        let ident = &input.ident;
        let mut can_implement = true;
        if !input.generics.params.is_empty() {
            errors.spanned(
                &input.generics,
                "`#[derive(Topic)]` does not support generic parameters: a topic binds one \
                 concrete type to one topic name; derive it on a concrete type instead",
            );
            can_implement = false;
        }
        if let Data::Union(data) = &input.data {
            errors.spanned(
                data.union_token,
                "`#[derive(Topic)]` supports structs and enums, not unions",
            );
            can_implement = false;
        }

        let name = match attrs.name {
            Some(name) => {
                if let Err(message) = topic_name::validate(&name.value()) {
                    errors.spanned(&name, message);
                }
                name
            }
            None => {
                let has_name = attrs.seen.iter().any(|key| key == "name");
                if !has_name && !attrs.malformed {
                    missing_name(input, errors);
                }
                LitStr::new("", ident.span())
            }
        };
        let codec = match attrs.codec {
            None => quote!(::topicbus::codec::Json),
            Some(CodecArg::Custom(path)) => match builtin_written_as_path(&path) {
                Some(lit) => {
                    errors.spanned(
                        &path,
                        format!(
                            "write a built-in codec as a string: `codec = {}`",
                            quote!(#lit)
                        ),
                    );
                    builtin_codec(&lit, errors)
                }
                None => quote!(#path),
            },
            Some(CodecArg::Builtin(lit)) => builtin_codec(&lit, errors),
        };
        let key = attrs.key.and_then(|key| check_key(input, key, errors));
        let partitions = attrs
            .partitions
            .and_then(|lit| check_partitions(&lit, errors));

        can_implement.then_some(TopicDef {
            ident,
            name,
            response: attrs.response,
            codec,
            key,
            partitions,
        })
    }

    fn expand(&self) -> TokenStream {
        let TopicDef {
            ident, name, codec, ..
        } = self;
        let partitions = self.partitions.map(|n| {
            let n = Literal::u32_unsuffixed(n);
            quote! {
                const PARTITIONS: ::core::option::Option<u32> = ::core::option::Option::Some(#n);
            }
        });
        let key = self.key.as_ref().map(|field| {
            // Spanned on the user's field name, so a field type that cannot be
            // a key is reported there.
            let key_bytes = quote_spanned! {field.span()=>
                ::topicbus::TopicKey::key_bytes(&self.#field)
            };
            quote! {
                fn key(&self) -> ::core::option::Option<::std::borrow::Cow<'_, [u8]>> {
                    #key_bytes
                }
            }
        });
        let request = self.response.as_ref().map(|response| {
            quote! {
                #[automatically_derived]
                impl ::topicbus::Request for #ident {
                    type Response = #response;
                }
            }
        });
        quote! {
            #[automatically_derived]
            impl ::topicbus::Topic for #ident {
                const NAME: &'static str = #name;
                #partitions
                type Codec = #codec;
                #key
                fn __try_clone(&self) -> ::core::option::Option<Self> {
                    #[allow(unused_imports)]
                    use ::topicbus::__private::{ViaClone as _, ViaNothing as _};
                    (&&::topicbus::__private::CloneProbe(self)).probe_clone()
                }
            }
            #request
        }
    }
}

fn missing_name(input: &DeriveInput, errors: &mut Errors) {
    match input
        .attrs
        .iter()
        .find(|attr| attr.path().is_ident("topic"))
    {
        Some(attr) => errors.spanned(
            attr,
            "missing topic name: add `name = \"...\"` to `#[topic(...)]`",
        ),
        None => errors.spanned(
            &input.ident,
            format!(
                "missing `#[topic(name = \"...\")]` on `{}`: every topic needs a name",
                input.ident
            ),
        ),
    }
}

/// The path to a built-in codec; spanned on the user's string so a codec
/// whose cargo feature is off is reported there.
fn builtin_codec(lit: &LitStr, errors: &mut Errors) -> TokenStream {
    let requested = lit.value();
    let ty = match CODECS.iter().find(|(name, _)| *name == requested) {
        Some((_, ty)) => ty,
        None => {
            let names: Vec<String> = CODECS
                .iter()
                .map(|(name, _)| format!("\"{name}\""))
                .collect();
            errors.spanned(
                lit,
                format!(
                    "unknown codec \"{requested}\"; the built-in codecs are {}, or name a type \
                     implementing `topicbus::codec::Codec`, as in `codec = my::Codec`",
                    names.join(", ")
                ),
            );
            "Json"
        }
    };
    let ty = Ident::new(ty, lit.span());
    quote_spanned!(lit.span()=> ::topicbus::codec::#ty)
}

/// `codec = json` meant as `codec = "json"`, as a string.
fn builtin_written_as_path(path: &syn::Path) -> Option<LitStr> {
    let ident = path.get_ident()?;
    CODECS
        .iter()
        .any(|(name, _)| ident == name)
        .then(|| LitStr::new(&ident.to_string(), ident.span()))
}

fn check_key(input: &DeriveInput, key: Member, errors: &mut Errors) -> Option<Ident> {
    let kind = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(fields) => {
                let Member::Named(key) = key else {
                    errors.spanned(key, "expected a field name, as in `key = chunk_id`");
                    return None;
                };
                if fields.named.iter().any(|f| f.ident.as_ref() == Some(&key)) {
                    return Some(key);
                }
                let names: Vec<String> = fields
                    .named
                    .iter()
                    .filter_map(|f| f.ident.as_ref().map(Ident::to_string))
                    .collect();
                errors.spanned(
                    &key,
                    format!(
                        "no field `{key}` in `{}`; the key must name one of its fields: {}",
                        input.ident,
                        names.join(", ")
                    ),
                );
                return None;
            }
            Fields::Unnamed(_) => "a tuple struct",
            Fields::Unit => "a unit struct",
        },
        Data::Enum(_) => "an enum",
        Data::Union(_) => return None,
    };
    errors.spanned(
        key,
        format!(
            "`key` names a field of a struct with named fields, and `{}` is {kind}",
            input.ident
        ),
    );
    None
}

fn check_partitions(lit: &LitInt, errors: &mut Errors) -> Option<u32> {
    match lit.base10_parse::<u32>() {
        Ok(0) => errors.spanned(lit, "a topic needs at least 1 partition"),
        Ok(n) => return Some(n),
        Err(_) => errors.spanned(
            lit,
            format!("too many partitions: at most {} fit in a `u32`", u32::MAX),
        ),
    }
    None
}
