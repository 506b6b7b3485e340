//! Turning free user text into a safe FTS5 `MATCH` expression.
//!
//! The text is split into words (runs of letters, digits and combining marks, as FTS5's
//! `unicode61` tokenizer sees them). Each word becomes a quoted FTS5 string, so no user text can
//! be read as FTS5 syntax (`AND`, `NEAR(`, `*`, `-`, quotes, parentheses). The last word matches
//! as a prefix. A leading article ("the matrix") is dropped when more words follow, because
//! MovieLens writes such titles as "Matrix, The (1999)" and the article carries no information.

/// At most this many bytes of user text are read; the rest is ignored.
pub const MAX_QUERY_BYTES: usize = 256;
/// At most this many words take part in a query.
pub const MAX_QUERY_WORDS: usize = 12;

/// Articles that MovieLens moves to the end of a title ("Matrix, The", "Misérables, Les").
const LEADING_ARTICLES: &[&str] = &[
    "the", "a", "an", "le", "la", "les", "l", "el", "los", "las", "il", "der", "die", "das",
];

/// The FTS5 expression for `text`, or `None` when the text has no word at all (then nothing
/// matches).
pub fn fts_expression(text: &str) -> Option<String> {
    let words = words(truncate(text, MAX_QUERY_BYTES));
    let mut words: Vec<&str> = words.into_iter().take(MAX_QUERY_WORDS).collect();
    if words.len() > 1 && is_article(words[0]) {
        words.remove(0);
    }
    let last = words.len().checked_sub(1)?;
    let mut expr = String::with_capacity(text.len().min(MAX_QUERY_BYTES) + 4 * words.len());
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            expr.push(' ');
        }
        expr.push('"');
        expr.push_str(word);
        expr.push('"');
        if i == last {
            expr.push('*');
        }
    }
    Some(expr)
}

/// The words of `text`: maximal runs of alphanumeric characters and combining marks.
fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| !is_word_char(c))
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .collect()
}

fn is_word_char(c: char) -> bool {
    // U+0300..U+036F: combining diacritical marks of decomposed input ("e\u{301}").
    c.is_alphanumeric() || ('\u{300}'..='\u{36f}').contains(&c)
}

fn is_article(word: &str) -> bool {
    LEADING_ARTICLES
        .iter()
        .any(|a| a.eq_ignore_ascii_case(word))
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_and_the_last_is_a_prefix() {
        assert_eq!(fts_expression("termin").unwrap(), r#""termin"*"#);
        assert_eq!(fts_expression("  Star   wa ").unwrap(), r#""Star" "wa"*"#);
    }

    #[test]
    fn a_leading_article_is_dropped_only_when_more_words_follow() {
        assert_eq!(fts_expression("the matrix").unwrap(), r#""matrix"*"#);
        assert_eq!(fts_expression("The").unwrap(), r#""The"*"#);
        assert_eq!(
            fts_expression("lord of the rings").unwrap(),
            r#""lord" "of" "the" "rings"*"#
        );
    }

    #[test]
    fn fts_syntax_in_user_text_is_only_words() {
        assert_eq!(
            fts_expression(r#"NEAR(a b) AND "x" -y* (z)"#).unwrap(),
            r#""NEAR" "a" "b" "AND" "x" "y" "z"*"#
        );
        assert_eq!(fts_expression("spider-man").unwrap(), r#""spider" "man"*"#);
    }

    #[test]
    fn text_without_words_gives_no_expression() {
        assert_eq!(fts_expression(""), None);
        assert_eq!(fts_expression("\"*-()🎬🍿"), None);
    }

    #[test]
    fn accents_and_combining_marks_stay_inside_a_word() {
        assert_eq!(fts_expression("Misérables").unwrap(), "\"Misérables\"*");
        assert_eq!(
            fts_expression("Mise\u{301}rables").unwrap(),
            "\"Mise\u{301}rables\"*"
        );
    }

    #[test]
    fn long_text_is_capped_on_a_char_boundary() {
        let text = "é".repeat(10_000);
        let expr = fts_expression(&text).unwrap();
        assert!(expr.len() <= MAX_QUERY_BYTES + 3);
        let many = "word ".repeat(2_000);
        assert_eq!(
            fts_expression(&many).unwrap().matches('"').count(),
            2 * MAX_QUERY_WORDS
        );
    }
}
