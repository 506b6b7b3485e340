//! The ml-100k release: its own layout, ISO-8859-1 text, no header, no links, no tags.
//!
//! - `u.genre`: `name|index` (19 genres, index 0 to 18)
//! - `u.item`: `id|title|release date|video release date|IMDb URL|` then one 0/1 flag per genre
//!   in `u.genre` order. The IMDb URL is a title search, not an id, so no links are kept.
//! - `u.data`: tab-separated `user id, item id, rating, timestamp`

use std::io::Read;

use super::DumpError;
use super::dat_format::each_line;
use super::records::{
    MovieRow, RatingRow, Sink, float, int, is_genre, latin1, malformed, title_and_year,
};

/// Reads `u.genre`: the genre names, by their index.
pub fn read_genres(input: &mut dyn Read, file: &str) -> Result<Vec<String>, DumpError> {
    let mut names: Vec<Option<String>> = Vec::new();
    each_line(input, file, |line, text| {
        let text = latin1(text);
        let (name, index) = text
            .rsplit_once('|')
            .ok_or_else(|| malformed(file, line, "expected `name|index`"))?;
        let index = usize::try_from(int(index.as_bytes(), "genre index", file, line)?)
            .ok()
            .filter(|&i| i < 64)
            .ok_or_else(|| malformed(file, line, "genre index out of range"))?;
        if names.len() <= index {
            names.resize(index + 1, None);
        }
        names[index] = Some(name.trim().to_owned());
        Ok(())
    })?;
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| n.ok_or_else(|| malformed(file, 0, format!("genre index {i} is missing"))))
        .collect()
}

/// Reads `u.item` with the genre names of `u.genre`.
pub fn read_movies(
    input: &mut dyn Read,
    file: &str,
    genres: &[String],
    sink: &mut Sink<MovieRow>,
) -> Result<(), DumpError> {
    let expected = 5 + genres.len();
    each_line(input, file, |line, text| {
        let fields: Vec<&[u8]> = text.split(|&b| b == b'|').collect();
        if fields.len() != expected {
            return Err(malformed(
                file,
                line,
                format!(
                    "{} `|`-separated fields where {expected} were expected",
                    fields.len()
                ),
            ));
        }
        let mut movie_genres = Vec::new();
        for (flag, name) in fields[5..].iter().zip(genres) {
            match flag.trim_ascii() {
                b"1" if is_genre(name) => movie_genres.push(name.clone()),
                b"0" | b"1" => {}
                _ => return Err(malformed(file, line, "genre flags must be 0 or 1")),
            }
        }
        let (title, year) = title_and_year(&latin1(fields[1]));
        sink(
            line,
            MovieRow {
                movie_id: int(fields[0], "movie id", file, line)?,
                title,
                year,
                genres: movie_genres,
            },
        )
    })
}

/// Reads `u.data`.
pub fn read_ratings(
    input: &mut dyn Read,
    file: &str,
    sink: &mut Sink<RatingRow>,
) -> Result<(), DumpError> {
    each_line(input, file, |line, text| {
        let mut fields = text.split(|&b| b == b'\t');
        let (Some(user), Some(movie), Some(rating), Some(ts), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(malformed(file, line, "expected 4 tab-separated fields"));
        };
        sink(
            line,
            RatingRow {
                user_id: int(user, "user id", file, line)?,
                movie_id: int(movie, "item id", file, line)?,
                rating: float(rating, "rating", file, line)?,
                timestamp: int(ts, "timestamp", file, line)?,
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genres() -> Vec<String> {
        let mut input: &[u8] = b"unknown|0\nAction|1\nChildren's|2\n\n";
        read_genres(&mut input, "u.genre").unwrap()
    }

    #[test]
    fn genres_are_read_by_index() {
        assert_eq!(genres(), vec!["unknown", "Action", "Children's"]);
        let mut gap: &[u8] = b"unknown|0\nAction|2\n";
        assert!(read_genres(&mut gap, "u.genre").is_err());
    }

    #[test]
    fn items_decode_iso_8859_1_and_map_flags_to_genres() {
        let mut input: &[u8] = b"1|Toy Story (1995)|01-Jan-1995||http://x|0|1|1\n\
            543|Mis\xe9rables, Les (1995)|01-Jan-1995||http://y|0|0|1\n\
            267|unknown||||1|0|0\n";
        let mut got = Vec::new();
        read_movies(&mut input, "u.item", &genres(), &mut |_, m| {
            got.push(m);
            Ok(())
        })
        .unwrap();
        assert_eq!(got[0].genres, vec!["Action", "Children's"]);
        assert_eq!(got[1].title, "Misérables, Les (1995)");
        assert_eq!(got[1].year, Some(1995));
        assert_eq!(got[2].title, "unknown");
        assert_eq!(got[2].year, None);
        assert!(got[2].genres.is_empty(), "the `unknown` genre is no genre");
    }

    #[test]
    fn a_short_item_line_names_the_line() {
        let mut input: &[u8] = b"1|Toy Story (1995)|01-Jan-1995||http://x|0|1|1\n2|Short|x\n";
        let err = read_movies(&mut input, "u.item", &genres(), &mut |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("u.item line 2"), "{err}");
    }

    #[test]
    fn data_is_tab_separated() {
        let mut input: &[u8] = b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n";
        let mut got = Vec::new();
        read_ratings(&mut input, "u.data", &mut |_, r| {
            got.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].user_id, got[0].movie_id, got[0].rating),
            (196, 242, 3.0)
        );
        let mut bad: &[u8] = b"196 242 3 881250949\n";
        assert!(read_ratings(&mut bad, "u.data", &mut |_, _| Ok(())).is_err());
    }
}
