//! Everything that can stop a dump. Each error names the file (and the line) where it has one.

use std::path::PathBuf;

use super::recognise::Recognised;
use crate::catalogue::CatalogueError;
use crate::config::MovieLensVersion;

/// Why a dump failed. A failed dump leaves any previous catalogue untouched.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// A local file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The source path does not exist.
    #[error("source {0} does not exist")]
    MissingSource(PathBuf),
    /// The zip's directory cannot be read: truncated or not a zip at all.
    #[error("{path} is not a readable zip (truncated or corrupt?): {source}")]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    /// A file of the release could not be read to its end (a corrupt zip entry fails its CRC).
    #[error("reading {file} failed (corrupt or truncated?): {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The source has none of the rating files of any release.
    #[error(
        "{origin} holds no MovieLens release: it has none of `u.data` (ml-100k), `ratings.dat` \
         (ml-1m, ml-10m) or `ratings.csv` (the others); pass the release's zip or folder"
    )]
    NotARelease { origin: String },
    /// The files fit several releases and nothing names one of them.
    #[error(
        "{origin} holds one of {}, and nothing in it says which: name it with --dataset",
        names(.candidates)
    )]
    Ambiguous {
        origin: String,
        candidates: Vec<MovieLensVersion>,
    },
    /// The files are not the release that was asked for.
    #[error(
        "{origin} holds {}, not {given} (whose files are {}): drop --dataset to load what it \
         holds, or pass the {given} files",
        describe(.found),
        files_of(.given)
    )]
    OtherRelease {
        origin: String,
        given: MovieLensVersion,
        found: Recognised,
    },
    /// A file the release must have is absent.
    #[error(
        "{origin} has no `{name}`, which {version} needs: pass the whole release, its zip or folder"
    )]
    MissingFile {
        name: String,
        origin: String,
        version: String,
    },
    /// A line that does not have the release's format.
    #[error("{file} line {line}: {reason}")]
    Malformed {
        file: String,
        line: u64,
        reason: String,
    },
    /// The download server could not be reached or the transfer broke off.
    #[error("cannot download {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The download server answered with an error status.
    #[error("downloading {url} failed: HTTP {status}")]
    Http { url: String, status: u16 },
    /// The published md5 does not match the downloaded zip.
    #[error("{file}: md5 {actual} does not match the published {expected}")]
    ChecksumMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    /// The zip must be verified and the server publishes no md5 for it.
    #[error("{url} is missing or holds no md5: the zip cannot be verified, so it is not used")]
    NoPublishedChecksum { url: String },
    /// Writing the catalogue failed.
    #[error("writing the catalogue failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Creating the catalogue's schema failed.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    /// Moving the finished catalogue into place failed.
    #[error("cannot move the new catalogue to {path}: {source}")]
    Persist {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DumpError {
    /// Whether the error is about the content of the source (an unreadable zip or entry, a
    /// missing file, a malformed line): a cached zip that fails so is removed, and the next dump
    /// downloads it again. Damaged deflate data often surfaces as garbage lines before the
    /// entry's CRC check, so malformed lines count too.
    pub fn is_about_content(&self) -> bool {
        matches!(
            self,
            Self::Zip { .. }
                | Self::Read { .. }
                | Self::Malformed { .. }
                | Self::MissingFile { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

fn names(releases: &[MovieLensVersion]) -> String {
    let names: Vec<&str> = releases.iter().map(|v| v.name()).collect();
    names.join(", ")
}

fn describe(found: &Recognised) -> String {
    match found {
        Recognised::Release(v) => v.name().to_owned(),
        Recognised::OneOf(candidates) => format!("one of {}", names(candidates)),
    }
}

/// The rating and movie files a release is read from, for messages.
fn files_of(release: &MovieLensVersion) -> &'static str {
    match super::layout(*release).0 {
        super::Format::Csv => "`movies.csv`, `ratings.csv`",
        super::Format::Dat => "`movies.dat`, `ratings.dat`",
        super::Format::Ml100k => "`u.item`, `u.data`",
    }
}
