//! The rows every release format is parsed into, and the small field parsers they share.

use super::DumpError;

/// A movie as a release lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct MovieRow {
    pub movie_id: i64,
    /// Trimmed title as published.
    pub title: String,
    pub year: Option<i32>,
    pub genres: Vec<String>,
}

/// One rating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatingRow {
    pub user_id: i64,
    pub movie_id: i64,
    pub rating: f64,
    pub timestamp: i64,
}

/// One tag a user put on a movie.
#[derive(Debug, Clone, PartialEq)]
pub struct TagRow {
    pub user_id: i64,
    pub movie_id: i64,
    pub tag: String,
    pub timestamp: i64,
}

/// External ids of a movie.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRow {
    pub movie_id: i64,
    pub imdb_id: Option<String>,
    pub tmdb_id: Option<i64>,
}

/// Receives parsed rows with the 1-based line number they came from.
pub type Sink<'a, T> = dyn FnMut(u64, T) -> Result<(), DumpError> + 'a;

/// Genre markers that mean "no genre" rather than a genre.
const NO_GENRE: &[&str] = &["(no genres listed)", "unknown", ""];

/// Splits a `|`-separated genre list, leaving out the "no genre" markers.
pub fn split_genres(list: &str) -> Vec<String> {
    list.split('|')
        .map(str::trim)
        .filter(|g| !NO_GENRE.contains(g))
        .map(str::to_owned)
        .collect()
}

/// Whether a genre name is a real genre (not a "no genre" marker).
pub fn is_genre(name: &str) -> bool {
    !NO_GENRE.contains(&name.trim())
}

/// Trims a title and reads the year from its trailing `(YYYY)`, when there is one.
pub fn title_and_year(raw: &str) -> (String, Option<i32>) {
    let title = raw.trim();
    let year = title
        .strip_suffix(')')
        .and_then(|t| t.get(t.len().checked_sub(5)?..))
        .and_then(|t| t.strip_prefix('('))
        .filter(|y| y.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|y| y.parse().ok());
    (title.to_owned(), year)
}

/// Decodes ISO-8859-1 text (read as windows-1252, its web superset) into UTF-8.
pub fn latin1(bytes: &[u8]) -> String {
    let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
    text.into_owned()
}

/// Parses an integer field, naming the file, line and field on failure.
pub fn int(field: &[u8], what: &str, file: &str, line: u64) -> Result<i64, DumpError> {
    parse_int(field).ok_or_else(|| malformed(file, line, format!("{what} is not an integer")))
}

/// Parses a decimal field such as `3.5`, naming the file, line and field on failure.
pub fn float(field: &[u8], what: &str, file: &str, line: u64) -> Result<f64, DumpError> {
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite())
        .ok_or_else(|| malformed(file, line, format!("{what} is not a number")))
}

/// A plain decimal integer (optional sign, ASCII digits, surrounding spaces allowed).
fn parse_int(field: &[u8]) -> Option<i64> {
    let field = field.trim_ascii();
    let (negative, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, field),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut value: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(b - b'0');
    }
    Some(if negative { -value } else { value })
}

/// A UTF-8 field, naming the file and line when it is not valid UTF-8.
pub fn utf8<'a>(field: &'a [u8], what: &str, file: &str, line: u64) -> Result<&'a str, DumpError> {
    std::str::from_utf8(field)
        .map_err(|_| malformed(file, line, format!("{what} is not valid UTF-8")))
}

/// The error for a line that does not have the release's format.
pub fn malformed(file: &str, line: u64, reason: impl Into<String>) -> DumpError {
    DumpError::Malformed {
        file: file.to_owned(),
        line,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn year_comes_from_a_trailing_parenthesised_year() {
        assert_eq!(
            title_and_year("Matrix, The (1999)"),
            ("Matrix, The (1999)".to_owned(), Some(1999))
        );
        assert_eq!(
            title_and_year("Justice League: Doom (2012) "),
            ("Justice League: Doom (2012)".to_owned(), Some(2012))
        );
        assert_eq!(title_and_year("Babylon 5"), ("Babylon 5".to_owned(), None));
        assert_eq!(title_and_year("Fawlty Towers (1975-1979)").1, None);
        assert_eq!(title_and_year("Nineteen (19)").1, None);
        assert_eq!(title_and_year("(1999)").1, Some(1999));
        assert_eq!(title_and_year("é(1999)").1, Some(1999));
        assert_eq!(title_and_year("(é)").1, None);
        assert_eq!(title_and_year("").1, None);
    }

    #[test]
    fn genre_lists_drop_no_genre_markers() {
        assert_eq!(split_genres("Action|Sci-Fi"), vec!["Action", "Sci-Fi"]);
        assert!(split_genres("(no genres listed)").is_empty());
        assert!(!is_genre("unknown"));
    }

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_int(b"42"), Some(42));
        assert_eq!(parse_int(b" -7 "), Some(-7));
        assert_eq!(parse_int(b"4.0"), None);
        assert_eq!(parse_int(b""), None);
        assert_eq!(parse_int(b"9999999999999999999"), None);
        assert!(float(b"3.5", "rating", "f", 1).is_ok());
        assert!(float(b"NaN", "rating", "f", 1).is_err());
    }

    #[test]
    fn latin1_decodes_accents() {
        assert_eq!(latin1(b"Mis\xe9rables"), "Misérables");
    }
}
