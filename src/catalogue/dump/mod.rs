//! `movierec dump`: get a MovieLens release (download, local zip or folder), parse its own
//! format, and load it atomically into its catalogue file ([`catalogue_path`]).
//!
//! One module per job: [`download`] (cache and md5), [`source`] (zip or folder), [`recognise`]
//! (which release a zip or folder holds), one parser per release format ([`csv_format`],
//! [`dat_format`], [`ml100k`]), [`load`] (the SQLite build file and its rename into place), and
//! [`locate`] (where the tests and benchmarks find an extracted release).

pub mod csv_format;
pub mod dat_format;
pub mod download;
mod error;
pub mod load;
pub mod locate;
pub mod ml100k;
mod recognise;
pub mod records;
pub mod source;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use error::DumpError;
use load::{Build, Counts};
pub use recognise::{Recognised, recognise, release_of_source};
use records::{RatingRow, Sink};
use source::{Entry, Source, md5_file, md5_files};

use crate::catalogue::catalogue_path;
use crate::config::MovieLensVersion;

/// What to dump and where.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// The release; it decides the file format and the catalogue's name.
    pub version: MovieLensVersion,
    /// A local zip or extracted folder to read instead of downloading.
    pub source: Option<PathBuf>,
    /// Folder of the catalogues: the result is [`catalogue_path`]`(database_root, version)`.
    pub database_root: PathBuf,
    /// Folder where downloaded zips are cached.
    pub dataset_root: PathBuf,
    /// Base URL of the releases: `<base_url>/<version>.zip` (and `.zip.md5`).
    pub base_url: String,
}

/// What a finished dump wrote.
#[derive(Debug, Clone)]
pub struct DumpReport {
    /// The release.
    pub version: MovieLensVersion,
    /// The catalogue file.
    pub path: PathBuf,
    /// The zip or folder that was read.
    pub source: PathBuf,
    /// Whether the zip was downloaded by this dump (false: a local source or the cache).
    pub downloaded: bool,
    /// md5 of the zip, or of the folder's data files.
    pub md5: String,
    /// Row counts.
    pub counts: Counts,
    /// Wall-clock seconds of the whole dump, download included.
    pub seconds: f64,
}

/// How a release lays out its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `movies.csv`, `ratings.csv`, `tags.csv`, `links.csv`.
    Csv,
    /// `movies.dat`, `ratings.dat`, and `tags.dat` in ml-10m.
    Dat,
    /// `u.genre`, `u.item`, `u.data`.
    Ml100k,
}

/// The format of a release and the folder its zip holds the files in.
fn layout(version: MovieLensVersion) -> (Format, &'static str) {
    use MovieLensVersion as V;
    match version {
        V::LatestSmall => (Format::Csv, "ml-latest-small"),
        V::Latest => (Format::Csv, "ml-latest"),
        V::Ml20m => (Format::Csv, "ml-20m"),
        V::Ml25m => (Format::Csv, "ml-25m"),
        V::Ml32m => (Format::Csv, "ml-32m"),
        V::Ml1m => (Format::Dat, "ml-1m"),
        V::Ml10m => (Format::Dat, "ml-10M100K"),
        V::Ml100k => (Format::Ml100k, "ml-100k"),
    }
}

/// Runs a dump. On any error the previous catalogue (if any) is left as it was and the build
/// file is removed.
pub fn dump(opts: &DumpOptions) -> Result<DumpReport, DumpError> {
    let started = Instant::now();
    let name = opts.version.name();
    let (source_path, fetched) = match &opts.source {
        Some(path) => {
            let found = recognise(path)?;
            if !found.admits(opts.version) {
                return Err(DumpError::OtherRelease {
                    origin: path.display().to_string(),
                    given: opts.version,
                    found,
                });
            }
            (path.clone(), None)
        }
        None => {
            let fetched = download::fetch(name, &opts.base_url, &opts.dataset_root)?;
            (fetched.path.clone(), Some(fetched))
        }
    };
    let path = catalogue_path(&opts.database_root, opts.version);
    let result = load_release(
        opts.version,
        &source_path,
        fetched.as_ref().map(|f| f.md5.clone()),
        &path,
    );
    let (counts, md5) = match result {
        Ok(done) => done,
        Err(err) => {
            if let Some(fetched) = &fetched
                && err.is_about_content()
            {
                tracing::warn!(path = %fetched.path.display(), "removing the cached zip that failed to load");
                download::evict(fetched);
            }
            return Err(err);
        }
    };
    Ok(DumpReport {
        version: opts.version,
        path,
        source: source_path,
        downloaded: fetched.is_some_and(|f| f.downloaded),
        md5,
        counts,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Reads the release at `source_path` into a build file and renames it to `path`.
fn load_release(
    version: MovieLensVersion,
    source_path: &Path,
    known_md5: Option<String>,
    path: &Path,
) -> Result<(Counts, String), DumpError> {
    let (format, folder) = layout(version);
    let name = version.name();
    let mut source = Source::open(source_path)?;
    tracing::info!(source = %source.describe(), version = name, "reading the release");

    let files = Files::locate(&source, format, folder, name)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut build = Build::create(dir, name)?;

    // The source checksum is computed beside the load when it is not known yet.
    let to_hash: Option<Vec<PathBuf>> = match (&known_md5, &source) {
        (Some(_), _) => None,
        (None, Source::Zip { .. }) => Some(vec![source_path.to_path_buf()]),
        (None, Source::Folder { .. }) => Some(
            files
                .all()
                .iter()
                .filter_map(|e| e.folder_path(&source))
                .collect(),
        ),
    };
    let zip_source = matches!(source, Source::Zip { .. });
    let (loaded, md5) = std::thread::scope(|scope| {
        let hasher = to_hash.map(|paths| {
            scope.spawn(move || {
                if zip_source {
                    md5_file(&paths[0])
                } else {
                    md5_files(&paths)
                }
            })
        });
        let loaded = load_files(&mut build, &mut source, format, &files);
        let md5 = match hasher {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => Ok(known_md5.unwrap_or_default()),
        };
        (loaded, md5)
    });
    loaded?;
    let md5 = md5?;
    let counts = build.finish(name, &md5, path)?;
    tracing::info!(
        path = %path.display(),
        movies = counts.movies,
        ratings = counts.ratings,
        users = counts.users,
        "catalogue written"
    );
    Ok((counts, md5))
}

/// The located files of a release.
struct Files {
    genres: Option<Entry>,
    movies: Entry,
    ratings: Entry,
    tags: Option<Entry>,
    links: Option<Entry>,
}

impl Files {
    fn locate(
        source: &Source,
        format: Format,
        folder: &str,
        version: &str,
    ) -> Result<Self, DumpError> {
        let (movies, ratings, tags, links, genres) = match format {
            Format::Csv => (
                "movies.csv",
                "ratings.csv",
                Some("tags.csv"),
                Some("links.csv"),
                None,
            ),
            Format::Dat => ("movies.dat", "ratings.dat", Some("tags.dat"), None, None),
            Format::Ml100k => ("u.item", "u.data", None, None, Some("u.genre")),
        };
        let optional = |name: Option<&str>| {
            let entry = name.and_then(|n| source.locate(folder, n));
            if let (Some(n), None) = (name, &entry) {
                tracing::info!(file = n, "the release has no such file; skipping it");
            }
            entry
        };
        Ok(Self {
            genres: genres
                .map(|g| source.require(folder, g, version))
                .transpose()?,
            movies: source.require(folder, movies, version)?,
            ratings: source.require(folder, ratings, version)?,
            tags: optional(tags),
            links: optional(links),
        })
    }

    /// Every located file, in a fixed order (the order the folder checksum reads them in).
    fn all(&self) -> Vec<&Entry> {
        [
            self.genres.as_ref(),
            Some(&self.movies),
            Some(&self.ratings),
            self.tags.as_ref(),
            self.links.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Parses every file of the release into the build, movies first.
fn load_files(
    build: &mut Build,
    source: &mut Source,
    format: Format,
    files: &Files,
) -> Result<(), DumpError> {
    // Movies (and genres).
    let label = files.movies.label.clone();
    match format {
        Format::Csv => source.read(&files.movies, |r| {
            csv_format::read_movies(r, &label, &mut |line, m| build.movie(&label, line, m))
        })?,
        Format::Dat => source.read(&files.movies, |r| {
            dat_format::read_movies(r, &label, &mut |line, m| build.movie(&label, line, m))
        })?,
        Format::Ml100k => {
            let genres_entry = files
                .genres
                .as_ref()
                .ok_or_else(|| DumpError::MissingFile {
                    name: "u.genre".into(),
                    origin: source.describe(),
                    version: "ml-100k".into(),
                })?;
            let genre_label = genres_entry.label.clone();
            let genres = source.read(genres_entry, |r| ml100k::read_genres(r, &genre_label))?;
            build.preset_genres(&genres)?;
            source.read(&files.movies, |r| {
                ml100k::read_movies(r, &label, &genres, &mut |line, m| {
                    build.movie(&label, line, m)
                })
            })?;
        }
    }
    build.movies_done();

    if let Some(entry) = &files.links {
        let label = entry.label.clone();
        source.read(entry, |r| {
            csv_format::read_links(r, &label, &mut |line, l| build.link(&label, line, l))
        })?;
    }
    if let Some(entry) = &files.tags {
        let label = entry.label.clone();
        source.read(entry, |r| match format {
            Format::Csv => csv_format::read_tags(r, &label, &mut |_, t| build.tag(t)),
            _ => dat_format::read_tags(r, &label, &mut |_, t| build.tag(t)),
        })?;
    }

    let label = files.ratings.label.clone();
    type Reader = fn(&mut dyn std::io::Read, &str, &mut Sink<RatingRow>) -> Result<(), DumpError>;
    let reader: Reader = match format {
        Format::Csv => csv_format::read_ratings,
        Format::Dat => dat_format::read_ratings,
        Format::Ml100k => ml100k::read_ratings,
    };
    let entry = &files.ratings;
    build.ratings(&label, |sink| {
        source.read(entry, |r| reader(r, &label, sink))
    })
}
