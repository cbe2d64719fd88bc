//! Kafka's topic name rules, checked at compile time.
//!
//! The same rules as `topicbus::validate_topic_name`, which checks names built
//! at run time; this copy says in more detail what is wrong, since the user
//! sees it as a compile error on their string literal.

/// Kafka's limit on the length of a topic name.
const MAX_LEN: usize = 249;

/// Checks `name` against Kafka's rules: 1 to 249 characters from
/// `[A-Za-z0-9._-]`, and not `.` or `..`. The error names the rule broken.
pub(crate) fn validate(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("invalid topic name: a topic name cannot be empty".into());
    }
    if name == "." || name == ".." {
        return Err("invalid topic name: a topic name cannot be `.` or `..`".into());
    }
    let mut bad: Vec<char> = Vec::new();
    let allowed = |c: &char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    for c in name.chars().filter(|c| !allowed(c)) {
        if !bad.contains(&c) {
            bad.push(c);
        }
    }
    if !bad.is_empty() {
        let found: Vec<String> = bad.iter().map(|c| format!("{c:?}")).collect();
        return Err(format!(
            "invalid topic name: Kafka allows only ASCII letters, digits, `.`, `_` and `-`, found {}",
            found.join(", ")
        ));
    }
    if name.len() > MAX_LEN {
        return Err(format!(
            "invalid topic name: a topic name is at most {MAX_LEN} characters long, this one has {}",
            name.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_go_bus_are_valid() {
        for name in [
            "ml.embed.request",
            "ml.embed.request.response",
            "index.chunk.created",
            "search.request",
            "a_b-C.9",
            "...",
        ] {
            assert_eq!(validate(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn empty_name_is_rejected() {
        assert!(validate("").unwrap_err().contains("cannot be empty"));
    }

    #[test]
    fn dot_and_dot_dot_are_rejected() {
        assert!(validate(".").unwrap_err().contains("`.` or `..`"));
        assert!(validate("..").unwrap_err().contains("`.` or `..`"));
    }

    #[test]
    fn length_limit_is_249() {
        assert_eq!(validate(&"x".repeat(249)), Ok(()));
        let error = validate(&"x".repeat(250)).unwrap_err();
        assert!(error.contains("at most 249 characters"), "{error}");
        assert!(error.contains("this one has 250"), "{error}");
    }

    #[test]
    fn bad_characters_are_listed_once_each() {
        let error = validate("ml embed/request and/more").unwrap_err();
        assert!(error.ends_with("found ' ', '/'"), "{error}");
    }

    #[test]
    fn non_ascii_letters_are_rejected() {
        assert!(validate("café").unwrap_err().contains("found 'é'"));
    }
}
