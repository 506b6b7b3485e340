//! The `::`-separated releases (ml-1m, ml-10m): ISO-8859-1 text, no header.
//!
//! - `movies.dat`: `MovieID::Title::Genres` (genres `|`-separated)
//! - `ratings.dat`: `UserID::MovieID::Rating::Timestamp`
//! - `tags.dat` (ml-10m only): `UserID::MovieID::Tag::Timestamp`
//!
//! ml-1m has neither links nor tags; ml-10m has tags but no links.

use std::io::{BufRead, BufReader, Read};

use super::DumpError;
use super::records::{
    MovieRow, RatingRow, Sink, TagRow, float, int, latin1, malformed, split_genres, title_and_year,
};

const SEP: &[u8] = b"::";

/// Reads `movies.dat`. The title sits between the first and the last separator, so a title that
/// itself contains `::` still reads whole.
pub fn read_movies(
    input: &mut dyn Read,
    file: &str,
    sink: &mut Sink<MovieRow>,
) -> Result<(), DumpError> {
    each_line(input, file, |line, text| {
        let (id, rest) = split_first(text).ok_or_else(|| fields_error(file, line, 3))?;
        let (title, genres) = split_last(rest).ok_or_else(|| fields_error(file, line, 3))?;
        let (title, year) = title_and_year(&latin1(title));
        sink(
            line,
            MovieRow {
                movie_id: int(id, "MovieID", file, line)?,
                title,
                year,
                genres: split_genres(&latin1(genres)),
            },
        )
    })
}

/// Reads `ratings.dat`.
pub fn read_ratings(
    input: &mut dyn Read,
    file: &str,
    sink: &mut Sink<RatingRow>,
) -> Result<(), DumpError> {
    each_line(input, file, |line, text| {
        let mut fields = Fields { rest: Some(text) };
        let (Some(user), Some(movie), Some(rating), Some(ts), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(fields_error(file, line, 4));
        };
        sink(
            line,
            RatingRow {
                user_id: int(user, "UserID", file, line)?,
                movie_id: int(movie, "MovieID", file, line)?,
                rating: float(rating, "Rating", file, line)?,
                timestamp: int(ts, "Timestamp", file, line)?,
            },
        )
    })
}

/// Reads `tags.dat`. The tag sits between the second and the last separator.
pub fn read_tags(
    input: &mut dyn Read,
    file: &str,
    sink: &mut Sink<TagRow>,
) -> Result<(), DumpError> {
    each_line(input, file, |line, text| {
        let (user, rest) = split_first(text).ok_or_else(|| fields_error(file, line, 4))?;
        let (movie, rest) = split_first(rest).ok_or_else(|| fields_error(file, line, 4))?;
        let (tag, ts) = split_last(rest).ok_or_else(|| fields_error(file, line, 4))?;
        sink(
            line,
            TagRow {
                user_id: int(user, "UserID", file, line)?,
                movie_id: int(movie, "MovieID", file, line)?,
                tag: latin1(tag),
                timestamp: int(ts, "Timestamp", file, line)?,
            },
        )
    })
}

/// Calls `row` with each non-empty line (without its line ending) and its 1-based number.
pub(super) fn each_line(
    input: &mut dyn Read,
    file: &str,
    mut row: impl FnMut(u64, &[u8]) -> Result<(), DumpError>,
) -> Result<(), DumpError> {
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut buf = Vec::with_capacity(256);
    let mut line = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| DumpError::Read {
                file: file.to_owned(),
                source,
            })?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if !text.trim_ascii().is_empty() {
            row(line, text)?;
        }
    }
}

fn fields_error(file: &str, line: u64, expected: usize) -> DumpError {
    malformed(
        file,
        line,
        format!("expected {expected} `::`-separated fields"),
    )
}

fn find(text: &[u8]) -> Option<usize> {
    text.windows(SEP.len()).position(|w| w == SEP)
}

fn rfind(text: &[u8]) -> Option<usize> {
    text.windows(SEP.len()).rposition(|w| w == SEP)
}

fn split_first(text: &[u8]) -> Option<(&[u8], &[u8])> {
    find(text).map(|i| (&text[..i], &text[i + SEP.len()..]))
}

fn split_last(text: &[u8]) -> Option<(&[u8], &[u8])> {
    rfind(text).map(|i| (&text[..i], &text[i + SEP.len()..]))
}

/// The `::`-separated fields of a line, left to right.
struct Fields<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match split_first(rest) {
            Some((field, tail)) => {
                self.rest = Some(tail);
                Some(field)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn movies_decode_iso_8859_1_and_keep_titles_without_year() {
        let mut input: &[u8] = b"1::Toy Story (1995)::Animation|Children's|Comedy\r\n\
            543::Mis\xe9rables, Les (1995)::Drama|Musical\n\
            7::Untitled::Drama\n\n";
        let mut got = Vec::new();
        read_movies(&mut input, "movies.dat", &mut |l, m| {
            got.push((l, m));
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1.genres, vec!["Animation", "Children's", "Comedy"]);
        assert_eq!(got[1].0, 2);
        assert_eq!(got[1].1.title, "Misérables, Les (1995)");
        assert_eq!(got[1].1.year, Some(1995));
        assert_eq!(got[2].1.title, "Untitled");
        assert_eq!(got[2].1.year, None);
    }

    #[test]
    fn ratings_need_exactly_four_fields() {
        let mut input: &[u8] = b"1::1193::5::978300760\n10::2::3.5::1111\n";
        let mut got = Vec::new();
        read_ratings(&mut input, "ratings.dat", &mut |_, r| {
            got.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(got[0].rating, 5.0);
        assert_eq!(got[1].rating, 3.5);
        assert_eq!(got[1].timestamp, 1111);

        for bad in [&b"1::2::3\n"[..], b"1::2::3::4::5\n", b"1::2::x::4\n"] {
            let mut input = bad;
            let err = read_ratings(&mut input, "ratings.dat", &mut |_, _| Ok(())).unwrap_err();
            assert!(err.to_string().contains("ratings.dat line 1"), "{err}");
        }
    }

    #[test]
    fn tags_may_contain_separators_and_accents() {
        let mut input: &[u8] = b"15::4973::excellent!::1215184630\n20::1::caf\xe9::a::b::5\n";
        let mut got = Vec::new();
        read_tags(&mut input, "tags.dat", &mut |_, t| {
            got.push(t);
            Ok(())
        })
        .unwrap();
        assert_eq!(got[0].tag, "excellent!");
        assert_eq!(got[1].tag, "café::a::b");
        assert_eq!(got[1].timestamp, 5);
    }
}
