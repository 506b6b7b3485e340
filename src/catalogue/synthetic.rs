//! A seeded, deterministic generator of MovieLens-like releases in the ml-25m CSV layout, for
//! benchmarks: `movies.csv`, `ratings.csv`, `tags.csv` and `links.csv`.
//!
//! - Movie popularity follows a shifted Zipf law (`1 / (rank + 80)^1.3`): a few movies get a
//!   fraction of a percent of all ratings, the tail gets a handful.
//! - Users rate at least 20 movies (as in ml-25m), with log-normally distributed activity.
//! - Titles mix real-looking patterns: "Word, The (Year)", commas inside quoted titles,
//!   accents, sequels, titles without year or with a trailing space.
//! - `ratings.csv` is ordered by user, then movie id, as the real ml-25m is.
//!
//! The same spec and seed always give byte-identical files.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Size and seed of a generated release.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyntheticSpec {
    pub seed: u64,
    pub users: usize,
    pub movies: usize,
    pub ratings: u64,
    pub tags: usize,
}

impl SyntheticSpec {
    /// The size of ml-25m: 25,000,095 ratings by 162,541 users of 62,423 movies, 1,093,360 tags.
    pub fn ml25m() -> Self {
        Self {
            seed: 25,
            users: 162_541,
            movies: 62_423,
            ratings: 25_000_095,
            tags: 1_093_360,
        }
    }

    /// The ml-25m shape scaled down by `factor` (at least 20 ratings per user are kept).
    pub fn ml25m_scaled(factor: f64) -> Self {
        let full = Self::ml25m();
        let scale = |n: f64| (n * factor).round().max(1.0);
        let users = scale(full.users as f64) as usize;
        let movies = (scale(full.movies as f64) as usize).max(100);
        Self {
            seed: full.seed,
            users,
            movies,
            ratings: (scale(full.ratings as f64) as u64).max(20 * users as u64),
            tags: scale(full.tags as f64) as usize,
        }
    }
}

/// Rank offset and exponent of the popularity law.
const ZIPF_OFFSET: f64 = 80.0;
const ZIPF_EXPONENT: f64 = 1.3;
/// Every user rates at least this many movies.
const MIN_RATINGS_PER_USER: u64 = 20;
/// 1995-01-09 and 2019-11-21: the time span of ml-25m.
const FIRST_TIMESTAMP: i64 = 789_652_009;
const LAST_TIMESTAMP: i64 = 1_574_327_703;

const GENRES: &[&str] = &[
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

const ADJECTIVES: &[&str] = &[
    "Dark",
    "Silent",
    "Last",
    "Lost",
    "Broken",
    "Golden",
    "Hidden",
    "Wild",
    "Eternal",
    "Red",
    "Blue",
    "Black",
    "White",
    "Frozen",
    "Burning",
    "Secret",
    "Little",
    "Great",
    "Final",
    "First",
    "Crimson",
    "Hollow",
    "Iron",
    "Lonely",
    "Midnight",
    "Mad",
    "Sweet",
    "Bitter",
    "Savage",
    "Brave",
    "Quiet",
    "Fallen",
    "Rising",
    "Endless",
    "Deadly",
    "Wicked",
    "Strange",
    "Perfect",
    "Beautiful",
    "Dangerous",
    "Invisible",
    "Forgotten",
    "Sacred",
    "Electric",
    "Cold",
    "Hot",
    "Young",
    "Old",
    "Royal",
    "Magnificent",
];

const NOUNS: &[&str] = &[
    "Night",
    "River",
    "Kingdom",
    "Star",
    "Heart",
    "Road",
    "City",
    "Storm",
    "Dream",
    "Shadow",
    "Empire",
    "Garden",
    "Island",
    "Mountain",
    "Ocean",
    "Forest",
    "Machine",
    "Terminal",
    "Matrix",
    "Warrior",
    "Hunter",
    "Stranger",
    "Angel",
    "Ghost",
    "Dragon",
    "Knight",
    "Queen",
    "King",
    "Soldier",
    "Detective",
    "Doctor",
    "Family",
    "Wedding",
    "Funeral",
    "Party",
    "Game",
    "War",
    "Love",
    "Summer",
    "Winter",
    "Spring",
    "Autumn",
    "Train",
    "Bridge",
    "House",
    "Tower",
    "Castle",
    "Journey",
    "Escape",
    "Return",
    "Revenge",
    "Secret",
    "Mirror",
    "Window",
    "Door",
    "Sky",
    "Moon",
    "Sun",
    "Fire",
    "Water",
    "Thunder",
    "Wolf",
    "Lion",
    "Tiger",
    "Horse",
    "Bird",
    "Snake",
    "Spider",
    "Robot",
    "Planet",
    "Galaxy",
    "Code",
    "Letter",
    "Song",
    "Dance",
    "Café",
    "Misérables",
    "Noël",
    "Fiancée",
    "Señor",
    "Über",
];

const NAMES: &[&str] = &[
    "Amélie", "Jack", "Mary", "John", "Anna", "Peter", "Sophie", "Max", "Lucy", "Tom", "Hugo",
    "Zoë", "Chloé", "Oscar", "Frank", "Grace", "Harry", "Ivan", "Jules", "Kate",
];

const TAGS: &[&str] = &[
    "funny",
    "atmospheric",
    "classic",
    "twist ending",
    "dark comedy",
    "based on a book",
    "visually appealing",
    "thought-provoking",
    "sci-fi",
    "cult film",
    "Oscar (Best Picture)",
    "predictable",
    "overrated",
    "slow, but worth it",
    "\"so bad it's good\"",
    "café society",
    "great soundtrack",
    "quirky",
    "violent",
    "romance",
    "dystopia",
    "time travel",
    "Highly quotable",
    "nonlinear",
    "surreal",
    "tearjerker",
    "beautiful, haunting",
    "boring",
];

/// Writes a release for `spec` into `dir` (created if needed).
pub fn generate(spec: &SyntheticSpec, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let movie_ids = movie_ids(&mut rng, spec.movies);
    // popularity rank -> index into movie_ids
    let mut by_rank: Vec<usize> = (0..spec.movies).collect();
    by_rank.shuffle(&mut rng);
    let cdf = zipf_cdf(spec.movies);
    let quality: Vec<f64> = (0..spec.movies)
        .map(|_| 3.4 + 0.5 * normal(&mut rng))
        .collect();

    write_movies(&mut rng, dir, &movie_ids)?;
    write_links(&mut rng, dir, &movie_ids)?;
    write_ratings(&mut rng, spec, dir, &movie_ids, &by_rank, &cdf, &quality)?;
    write_tags(&mut rng, spec, dir, &movie_ids, &by_rank, &cdf)?;
    Ok(())
}

/// Increasing movie ids with small gaps, like MovieLens ids.
fn movie_ids(rng: &mut ChaCha8Rng, n: usize) -> Vec<i64> {
    let mut id = 0i64;
    (0..n)
        .map(|_| {
            id += rng.random_range(1..=6);
            id
        })
        .collect()
}

/// Cumulative popularity by rank.
fn zipf_cdf(n: usize) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (0..n)
        .map(|r| {
            acc += (r as f64 + 1.0 + ZIPF_OFFSET).powf(-ZIPF_EXPONENT);
            acc
        })
        .collect();
    for c in &mut cdf {
        *c /= acc;
    }
    cdf
}

/// A popularity rank drawn from `cdf`.
fn draw_rank(rng: &mut ChaCha8Rng, cdf: &[f64]) -> usize {
    let u: f64 = rng.random();
    cdf.partition_point(|&c| c <= u).min(cdf.len() - 1)
}

/// A standard normal sample (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn pick<'a>(rng: &mut ChaCha8Rng, words: &[&'a str]) -> &'a str {
    words[rng.random_range(0..words.len())]
}

/// A MovieLens-style title (without the year).
fn title(rng: &mut ChaCha8Rng) -> String {
    let adj = pick(rng, ADJECTIVES);
    let noun = pick(rng, NOUNS);
    let noun2 = pick(rng, NOUNS);
    match rng.random_range(0..100) {
        0..=19 => format!("{adj} {noun}"),
        20..=34 => format!("{adj} {noun}, The"),
        35..=44 => format!("{noun} of the {noun2}"),
        45..=52 => format!("{}'s {noun}", pick(rng, NAMES)),
        53..=60 => format!("{adj} {noun} {}", rng.random_range(2..=5)),
        61..=66 => format!("{noun}, {noun2} and {}", pick(rng, NOUNS)),
        67..=72 => format!("{noun}, The ({adj} {noun2}, Le)"),
        73..=78 => format!("{noun} {noun2}"),
        79..=84 => format!("{noun}: The {adj} {noun2}"),
        85..=89 => format!("{adj} {noun}, A"),
        _ => noun.to_owned(),
    }
}

fn write_movies(rng: &mut ChaCha8Rng, dir: &Path, ids: &[i64]) -> io::Result<()> {
    let mut w = csv::Writer::from_writer(BufWriter::new(File::create(dir.join("movies.csv"))?));
    w.write_record(["movieId", "title", "genres"])?;
    for id in ids {
        let mut t = title(rng);
        match rng.random_range(0..200) {
            // About 1% of titles have no year, 0.5% a trailing space.
            0..=1 => {}
            2 => t.push_str(&format!(" ({}) ", year(rng))),
            _ => t.push_str(&format!(" ({})", year(rng))),
        }
        let genres = if rng.random_range(0..100) == 0 {
            "(no genres listed)".to_owned()
        } else {
            let n = rng.random_range(1..=4);
            let mut g: Vec<&str> = (0..n).map(|_| pick(rng, GENRES)).collect();
            g.sort_unstable();
            g.dedup();
            g.join("|")
        };
        w.write_record([id.to_string().as_str(), &t, &genres])?;
    }
    w.flush()
}

/// A release year, skewed towards recent decades.
fn year(rng: &mut ChaCha8Rng) -> i32 {
    let u: f64 = rng.random();
    2019 - (u * u * 115.0) as i32
}

fn write_links(rng: &mut ChaCha8Rng, dir: &Path, ids: &[i64]) -> io::Result<()> {
    let mut w = BufWriter::new(File::create(dir.join("links.csv"))?);
    writeln!(w, "movieId,imdbId,tmdbId")?;
    for id in ids {
        let imdb = rng.random_range(1_000..9_999_999);
        if rng.random_range(0..500) == 0 {
            writeln!(w, "{id},{imdb:07},")?;
        } else {
            writeln!(w, "{id},{imdb:07},{}", rng.random_range(2..700_000))?;
        }
    }
    w.flush()
}

/// Ratings per user: at least 20, log-normal activity, exactly `spec.ratings` in total.
fn ratings_per_user(rng: &mut ChaCha8Rng, spec: &SyntheticSpec) -> Vec<u64> {
    let users = spec.users.max(1);
    let cap = (spec.movies as u64 / 4).max(MIN_RATINGS_PER_USER);
    let base = MIN_RATINGS_PER_USER.min(spec.ratings / users as u64);
    let extra = spec.ratings.saturating_sub(base * users as u64);
    let weights: Vec<f64> = (0..users).map(|_| (1.3 * normal(rng)).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut counts: Vec<u64> = weights
        .iter()
        .map(|w| (base + (extra as f64 * w / total) as u64).min(cap))
        .collect();
    let mut missing = spec.ratings.saturating_sub(counts.iter().sum());
    while missing > 0 {
        let before = missing;
        for c in counts.iter_mut() {
            if missing == 0 {
                break;
            }
            if *c < cap {
                *c += 1;
                missing -= 1;
            }
        }
        if missing == before {
            break; // every user is at the cap: fewer ratings than asked
        }
    }
    counts
}

#[allow(clippy::too_many_arguments)]
fn write_ratings(
    rng: &mut ChaCha8Rng,
    spec: &SyntheticSpec,
    dir: &Path,
    ids: &[i64],
    by_rank: &[usize],
    cdf: &[f64],
    quality: &[f64],
) -> io::Result<()> {
    const STARS: [&[u8]; 10] = [
        b"0.5", b"1.0", b"1.5", b"2.0", b"2.5", b"3.0", b"3.5", b"4.0", b"4.5", b"5.0",
    ];
    let counts = ratings_per_user(rng, spec);
    let mut w = BufWriter::with_capacity(1 << 20, File::create(dir.join("ratings.csv"))?);
    w.write_all(b"userId,movieId,rating,timestamp\n")?;
    // stamp[m] == user + 1 marks movie m as already rated by this user.
    let mut stamp = vec![0u32; ids.len()];
    let mut picked: Vec<(usize, u8, i64)> = Vec::new();
    let mut line = Vec::with_capacity(64);
    for (user, &n) in counts.iter().enumerate() {
        let mark = user as u32 + 1;
        let bias = 0.4 * normal(rng);
        let start = rng.random_range(FIRST_TIMESTAMP..LAST_TIMESTAMP);
        let span = ((LAST_TIMESTAMP - start) as f64 * rng.random::<f64>().powi(3)).max(3600.0);
        picked.clear();
        while (picked.len() as u64) < n {
            let m = by_rank[draw_rank(rng, cdf)];
            if stamp[m] == mark {
                continue;
            }
            stamp[m] = mark;
            let r = quality[m] + bias + 0.9 * normal(rng);
            let star = ((r * 2.0).round().clamp(1.0, 10.0) as u8) - 1;
            let ts = start + (span * rng.random::<f64>()) as i64;
            picked.push((m, star, ts));
        }
        picked.sort_unstable_by_key(|&(m, _, _)| m);
        for &(m, star, ts) in &picked {
            line.clear();
            push_int(&mut line, user as i64 + 1);
            line.push(b',');
            push_int(&mut line, ids[m]);
            line.push(b',');
            line.extend_from_slice(STARS[star as usize]);
            line.push(b',');
            push_int(&mut line, ts);
            line.push(b'\n');
            w.write_all(&line)?;
        }
    }
    w.flush()
}

fn write_tags(
    rng: &mut ChaCha8Rng,
    spec: &SyntheticSpec,
    dir: &Path,
    ids: &[i64],
    by_rank: &[usize],
    cdf: &[f64],
) -> io::Result<()> {
    // Few users tag, and they tag a lot: draw taggers from the first 10% of users.
    let taggers = (spec.users / 10).max(1);
    let mut tags: Vec<(usize, i64, &str, i64)> = (0..spec.tags)
        .map(|_| {
            (
                rng.random_range(0..taggers) + 1,
                ids[by_rank[draw_rank(rng, cdf)]],
                pick(rng, TAGS),
                rng.random_range(FIRST_TIMESTAMP..LAST_TIMESTAMP),
            )
        })
        .collect();
    tags.sort_unstable();
    let mut w = csv::Writer::from_writer(BufWriter::new(File::create(dir.join("tags.csv"))?));
    w.write_record(["userId", "movieId", "tag", "timestamp"])?;
    for (user, movie, tag, ts) in tags {
        w.write_record([
            user.to_string().as_str(),
            &movie.to_string(),
            tag,
            &ts.to_string(),
        ])?;
    }
    w.flush()
}

/// Appends the decimal digits of `n`.
fn push_int(out: &mut Vec<u8>, n: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// Search queries as people type them, drawn from `titles` (title, rating count), favouring
/// popular movies: a first word and part of the next, a bare prefix, a whole title, "the ..."
/// for "..., The" titles, accent-free spellings, and some text that matches nothing or looks
/// like FTS5 syntax. Deterministic for a seed.
pub fn search_queries(titles: &[(String, i64)], n: usize, seed: u64) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if titles.is_empty() {
        return Vec::new();
    }
    let total: f64 = titles.iter().map(|(_, c)| (*c as f64 + 1.0).sqrt()).sum();
    let cdf: Vec<f64> = titles
        .iter()
        .scan(0.0, |acc, (_, c)| {
            *acc += (*c as f64 + 1.0).sqrt() / total;
            Some(*acc)
        })
        .collect();
    (0..n)
        .map(|_| {
            let u: f64 = rng.random();
            let i = cdf.partition_point(|&c| c <= u).min(titles.len() - 1);
            query_for(&mut rng, &titles[i].0)
        })
        .collect()
}

fn query_for(rng: &mut ChaCha8Rng, title: &str) -> String {
    let base = title
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_digit() || c == '(' || c == ')' || c == ' ');
    let words: Vec<String> = base
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    if words.is_empty() {
        return "zzz".to_owned();
    }
    let prefix = |w: &str, n: usize| w.chars().take(n).collect::<String>();
    match rng.random_range(0..100) {
        0..=34 if words.len() > 1 => {
            let cut = rng.random_range(1..=4);
            format!("{} {}", words[0], prefix(&words[1], cut))
        }
        0..=54 => prefix(&words[0], rng.random_range(2..=5)),
        55..=69 => words.join(" "),
        70..=79 => match base.strip_suffix(", The") {
            Some(main) => format!("the {}", main.to_lowercase()),
            None => format!("the {}", words[0]),
        },
        80..=89 => words
            .iter()
            .map(|w| {
                w.replace(['é', 'ë'], "e")
                    .replace('ñ', "n")
                    .replace('ü', "u")
            })
            .collect::<Vec<_>>()
            .join(" "),
        90..=94 => ["xqzv", "NEAR(", "\"unterminated", "*", "-", "AND OR", "🎬"]
            [rng.random_range(0..7)]
        .to_owned(),
        _ => format!("{} {}", words[0], "qq"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SyntheticSpec {
        SyntheticSpec {
            seed: 7,
            users: 40,
            movies: 1_000,
            ratings: 4_000,
            tags: 200,
        }
    }

    #[test]
    fn generation_is_deterministic_and_has_the_asked_size() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        generate(&spec(), a.path()).unwrap();
        generate(&spec(), b.path()).unwrap();
        for f in ["movies.csv", "ratings.csv", "tags.csv", "links.csv"] {
            let x = std::fs::read(a.path().join(f)).unwrap();
            assert_eq!(x, std::fs::read(b.path().join(f)).unwrap(), "{f}");
        }
        let ratings = std::fs::read_to_string(a.path().join("ratings.csv")).unwrap();
        assert_eq!(ratings.lines().count(), 4_000 + 1);
        let mut users = std::collections::HashMap::<&str, usize>::new();
        let mut pairs = std::collections::HashSet::new();
        for line in ratings.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            *users.entry(f[0]).or_default() += 1;
            assert!(pairs.insert((f[0], f[1])), "user rates a movie once");
        }
        assert_eq!(users.len(), 40);
        assert!(users.values().all(|&n| n >= 20));
        let movies = std::fs::read_to_string(a.path().join("movies.csv")).unwrap();
        assert_eq!(movies.lines().count(), 1_000 + 1);
        assert!(movies.contains(", The ("), "titles with commas");
        assert!(movies.contains("\""), "quoted titles");
    }

    #[test]
    fn popularity_is_skewed() {
        let dir = tempfile::tempdir().unwrap();
        let s = SyntheticSpec {
            ratings: 20_000,
            users: 200,
            movies: 2_000,
            ..spec()
        };
        generate(&s, dir.path()).unwrap();
        let ratings = std::fs::read_to_string(dir.path().join("ratings.csv")).unwrap();
        let mut per_movie = std::collections::HashMap::<&str, usize>::new();
        for line in ratings.lines().skip(1) {
            *per_movie
                .entry(line.split(',').nth(1).unwrap())
                .or_default() += 1;
        }
        let mut counts: Vec<usize> = per_movie.into_values().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top: usize = counts.iter().take(20).sum();
        // The top 1% of movies gets far more than 1% of the ratings.
        assert!(
            top * 100 / 20_000 >= 5,
            "top 20 movies hold {top} of 20000 ratings"
        );
    }

    #[test]
    fn queries_are_deterministic_and_varied() {
        let titles = vec![
            ("Matrix, The (1999)".to_owned(), 300),
            ("Dark Night 2 (2001)".to_owned(), 10),
            ("Café (1990)".to_owned(), 1),
        ];
        let a = search_queries(&titles, 200, 1);
        assert_eq!(a, search_queries(&titles, 200, 1));
        assert!(a.iter().any(|q| q == "the matrix"));
        assert!(a.iter().any(|q| q.starts_with("dark")));
    }

    #[test]
    fn integers_format_like_display() {
        for n in [0i64, 7, 10, 1_574_327_703, -42] {
            let mut out = Vec::new();
            push_int(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }
}
