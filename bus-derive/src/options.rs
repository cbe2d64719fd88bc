//! `key = value` option lists, shared by `#[topic(...)]` and `#[handler(...)]`.
//!
//! Parsing does not stop at the first mistake: an unknown or repeated option,
//! or a value of the wrong shape, is recorded and parsing goes on with the
//! next option, so every mistake is reported in one build.

use proc_macro2::{Ident, TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::{Expr, ExprLit, Lit, LitInt, LitStr, Token};

use crate::errors::Errors;

/// An option an attribute accepts.
pub(crate) struct Known {
    pub(crate) name: &'static str,
    /// How it is written, for error messages: `name = "ml.embed.request"`.
    pub(crate) example: &'static str,
}

/// Parses `tokens`, the inside of the parentheses of `attribute`.
///
/// `value` is called for each known option with a stream positioned after its
/// `=`; an error it returns is recorded and the rest of that option skipped.
/// Options seen (valid or not) are added to `seen`, which also spans several
/// attributes on one item.
pub(crate) fn parse_options(
    attribute: &str,
    known: &[Known],
    tokens: TokenStream,
    seen: &mut Vec<Ident>,
    errors: &mut Errors,
    mut value: impl FnMut(&Known, ParseStream) -> syn::Result<()>,
) {
    let parser = syn::meta::parser(|meta| {
        let Some(key) = meta.path.get_ident() else {
            errors.spanned(&meta.path, unknown_option(attribute, &meta.path, known));
            return skip_value(meta.input);
        };
        let Some(option) = known.iter().find(|option| key == option.name) else {
            errors.spanned(key, unknown_option(attribute, key, known));
            return skip_value(meta.input);
        };
        if seen.contains(key) {
            errors.spanned(key, format!("duplicate option `{key}`"));
            return skip_value(meta.input);
        }
        seen.push(key.clone());
        if !meta.input.peek(Token![=]) {
            errors.spanned(
                key,
                format!("`{key}` needs a value, as in `{}`", option.example),
            );
            return skip_value(meta.input);
        }
        meta.input.parse::<Token![=]>()?;
        let parsed = value(option, meta.input).and_then(|()| {
            if meta.input.is_empty() || meta.input.peek(Token![,]) {
                Ok(())
            } else {
                Err(meta.input.error(format!(
                    "expected `,` after the value of `{key}`, as in `{}`",
                    option.example
                )))
            }
        });
        if let Err(error) = parsed {
            errors.push(error);
            skip_value(meta.input)?;
        }
        Ok(())
    });
    if let Err(error) = parser.parse2(tokens) {
        errors.push(error);
    }
}

/// A string literal, such as `"ml.embed.request"`.
pub(crate) fn string(input: ParseStream, example: &str) -> syn::Result<LitStr> {
    match expr(input, example)? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit),
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected a string, as in `{example}`"),
        )),
    }
}

/// An integer literal, such as `12`.
pub(crate) fn integer(input: ParseStream, example: &str) -> syn::Result<LitInt> {
    match expr(input, example)? {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => Ok(lit),
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected a whole number, as in `{example}`"),
        )),
    }
}

fn expr(input: ParseStream, example: &str) -> syn::Result<Expr> {
    input.parse().map_err(|error| {
        syn::Error::new(error.span(), format!("expected a value, as in `{example}`"))
    })
}

/// Skips the rest of an option, up to the `,` that ends it.
fn skip_value(input: ParseStream) -> syn::Result<()> {
    input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tree, next)) = rest.token_tree() {
            if matches!(&tree, TokenTree::Punct(punct) if punct.as_char() == ',') {
                break;
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

fn unknown_option(attribute: &str, key: impl quote::ToTokens, known: &[Known]) -> String {
    let key = key.to_token_stream().to_string().replace(' ', "");
    let names: Vec<&str> = known.iter().map(|option| option.name).collect();
    let hint = match closest(&key, &names) {
        Some(name) => format!(" (did you mean `{name}`?)"),
        None => String::new(),
    };
    format!(
        "unknown `{attribute}` option `{key}`{hint}; the options are: {}",
        names.join(", ")
    )
}

/// The known name a typo most likely meant, if any is close.
fn closest<'a>(key: &str, names: &[&'a str]) -> Option<&'a str> {
    names
        .iter()
        .map(|name| (edit_distance(key, name), *name))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &[&str] = &["name", "response", "codec", "key", "partitions"];

    #[test]
    fn typos_suggest_the_closest_option() {
        assert_eq!(closest("partition", TOPIC), Some("partitions"));
        assert_eq!(closest("respones", TOPIC), Some("response"));
        assert_eq!(closest("nmae", TOPIC), Some("name"));
    }

    #[test]
    fn unrelated_words_suggest_nothing() {
        assert_eq!(closest("serializer", TOPIC), None);
        assert_eq!(closest("retries", TOPIC), None);
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("key", "key"), 0);
        assert_eq!(edit_distance("ky", "key"), 1);
        assert_eq!(edit_distance("codex", "codec"), 1);
        assert_eq!(edit_distance("abc", ""), 3);
    }
}
