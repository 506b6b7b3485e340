//! The CSV releases (ml-latest, ml-latest-small, ml-20m, ml-25m, ml-32m): UTF-8, a header row,
//! and titles or tags that may be quoted because they contain commas.
//!
//! - `movies.csv`: `movieId,title,genres` (genres `|`-separated)
//! - `ratings.csv`: `userId,movieId,rating,timestamp`
//! - `tags.csv`: `userId,movieId,tag,timestamp`
//! - `links.csv`: `movieId,imdbId,tmdbId` (either id may be empty)

use std::io::Read;

use csv::{ByteRecord, ReaderBuilder};

use super::DumpError;
use super::records::{
    LinkRow, MovieRow, RatingRow, Sink, TagRow, float, int, malformed, split_genres,
    title_and_year, utf8,
};

/// Reads `movies.csv`.
pub fn read_movies(
    input: &mut dyn Read,
    file: &str,
    sink: &mut Sink<MovieRow>,
) -> Result<(), DumpError> {
    each_record(input, file, &["movieId", "title", "genres"], |line, rec| {
        let (title, year) = title_and_year(utf8(&rec[1], "title", file, line)?);
        sink(
            line,
            MovieRow {
                movie_id: int(&rec[0], "movieId", file, line)?,
                title,
                year,
                genres: split_genres(utf8(&rec[2], "genres", file, line)?),
            },
        )
    })
}

/// Reads `ratings.csv`.
pub fn read_ratings(
    input: &mut dyn Read,
    file: &str,
    sink: &mut Sink<RatingRow>,
) -> Result<(), DumpError> {
    each_record(
        input,
        file,
        &["userId", "movieId", "rating", "timestamp"],
        |line, rec| {
            sink(
                line,
                RatingRow {
                    user_id: int(&rec[0], "userId", file, line)?,
                    movie_id: int(&rec[1], "movieId", file, line)?,
                    rating: float(&rec[2], "rating", file, line)?,
                    timestamp: int(&rec[3], "timestamp", file, line)?,
                },
            )
        },
    )
}

/// Reads `tags.csv`.
pub fn read_tags(
    input: &mut dyn Read,
    file: &str,
    sink: &mut Sink<TagRow>,
) -> Result<(), DumpError> {
    each_record(
        input,
        file,
        &["userId", "movieId", "tag", "timestamp"],
        |line, rec| {
            sink(
                line,
                TagRow {
                    user_id: int(&rec[0], "userId", file, line)?,
                    movie_id: int(&rec[1], "movieId", file, line)?,
                    tag: utf8(&rec[2], "tag", file, line)?.to_owned(),
                    timestamp: int(&rec[3], "timestamp", file, line)?,
                },
            )
        },
    )
}

/// Reads `links.csv`.
pub fn read_links(
    input: &mut dyn Read,
    file: &str,
    sink: &mut Sink<LinkRow>,
) -> Result<(), DumpError> {
    each_record(
        input,
        file,
        &["movieId", "imdbId", "tmdbId"],
        |line, rec| {
            let imdb = utf8(&rec[1], "imdbId", file, line)?.trim();
            let tmdb = rec[2].trim_ascii();
            sink(
                line,
                LinkRow {
                    movie_id: int(&rec[0], "movieId", file, line)?,
                    imdb_id: (!imdb.is_empty()).then(|| imdb.to_owned()),
                    tmdb_id: if tmdb.is_empty() {
                        None
                    } else {
                        Some(int(tmdb, "tmdbId", file, line)?)
                    },
                },
            )
        },
    )
}

/// Checks the header, then calls `row` with each record and its 1-based line number.
fn each_record(
    input: &mut dyn Read,
    file: &str,
    header: &[&str],
    mut row: impl FnMut(u64, &ByteRecord) -> Result<(), DumpError>,
) -> Result<(), DumpError> {
    let mut reader = ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .buffer_capacity(1 << 20)
        .from_reader(input);
    let found = reader.byte_headers().map_err(|e| csv_error(file, e))?;
    let found: Vec<&[u8]> = found.iter().map(<[u8]>::trim_ascii).collect();
    let expected: Vec<&[u8]> = header.iter().map(|h| h.as_bytes()).collect();
    // Some files start with a UTF-8 byte order mark.
    let first_ok = |f: &[u8], e: &[u8]| f == e || f.strip_prefix(b"\xef\xbb\xbf") == Some(e);
    if found.len() != expected.len()
        || !found
            .iter()
            .zip(&expected)
            .enumerate()
            .all(|(i, (f, e))| if i == 0 { first_ok(f, e) } else { f == e })
    {
        return Err(malformed(
            file,
            1,
            format!("expected the header `{}`", header.join(",")),
        ));
    }
    let mut rec = ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut rec) {
            Ok(true) => {
                let line = rec.position().map_or(0, csv::Position::line);
                row(line, &rec)?;
            }
            Ok(false) => return Ok(()),
            Err(e) => return Err(csv_error(file, e)),
        }
    }
}

/// Maps a CSV reader error to a read error (I/O, e.g. a corrupt zip entry) or a malformed line.
fn csv_error(file: &str, err: csv::Error) -> DumpError {
    let line = err.position().map_or(0, csv::Position::line);
    match err.into_kind() {
        csv::ErrorKind::Io(source) => DumpError::Read {
            file: file.to_owned(),
            source,
        },
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => malformed(
            file,
            line,
            format!("{len} fields where {expected_len} were expected"),
        ),
        other => malformed(file, line, format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movies(text: &str) -> Result<Vec<(u64, MovieRow)>, DumpError> {
        let mut out = Vec::new();
        read_movies(&mut text.as_bytes(), "movies.csv", &mut |l, m| {
            out.push((l, m));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn quoted_commas_years_and_genres() {
        let got = movies(
            "movieId,title,genres\n\
             1,Toy Story (1995),Adventure|Animation\n\
             2571,\"Matrix, The (1999)\",Action|Sci-Fi\n\
             40697,Babylon 5,Sci-Fi\n\
             3,\"Good, the Bad and the Ugly, The (1966) \",(no genres listed)\n",
        )
        .unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0, 2);
        assert_eq!(got[1].1.title, "Matrix, The (1999)");
        assert_eq!(got[1].1.year, Some(1999));
        assert_eq!(got[1].1.genres, vec!["Action", "Sci-Fi"]);
        assert_eq!(got[2].1.year, None);
        assert_eq!(got[3].1.title, "Good, the Bad and the Ugly, The (1966)");
        assert_eq!(got[3].1.year, Some(1966));
        assert!(got[3].1.genres.is_empty());
    }

    #[test]
    fn a_wrong_field_count_names_the_line() {
        let err =
            movies("movieId,title,genres\n1,A (1995),Drama\n2,B, (1996),Drama\n").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DumpError::Malformed { line: 3, .. }), "{msg}");
        assert!(
            msg.contains("movies.csv") && msg.contains("line 3"),
            "{msg}"
        );
    }

    #[test]
    fn a_wrong_header_is_rejected() {
        let err = movies("id,name\n1,A\n").unwrap_err();
        assert!(matches!(err, DumpError::Malformed { line: 1, .. }));
    }

    #[test]
    fn ratings_tags_and_links() {
        let mut ratings = Vec::new();
        read_ratings(
            &mut "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,3.5,964981247\n"
                .as_bytes(),
            "ratings.csv",
            &mut |_, r| {
                ratings.push(r);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(
            ratings[1],
            RatingRow {
                user_id: 1,
                movie_id: 3,
                rating: 3.5,
                timestamp: 964981247
            }
        );
        let err = read_ratings(
            &mut "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,x,3.5,1\n".as_bytes(),
            "ratings.csv",
            &mut |_, _| Ok(()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(err.to_string().contains("movieId"), "{err}");

        let mut tags = Vec::new();
        read_tags(
            &mut "userId,movieId,tag,timestamp\n2,60756,\"funny, really\",1445714994\n".as_bytes(),
            "tags.csv",
            &mut |_, t| {
                tags.push(t);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(tags[0].tag, "funny, really");

        let mut links = Vec::new();
        read_links(
            &mut "movieId,imdbId,tmdbId\n1,0114709,862\n791,0113610,\n".as_bytes(),
            "links.csv",
            &mut |_, l| {
                links.push(l);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(links[0].imdb_id.as_deref(), Some("0114709"));
        assert_eq!(links[0].tmdb_id, Some(862));
        assert_eq!(links[1].tmdb_id, None);
    }
}
