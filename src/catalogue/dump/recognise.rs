//! Which release a zip or folder holds, read from its files: the file format first (`u.data`,
//! `ratings.dat` or `ratings.csv`), then, among the releases of one format, the folder names and
//! the first lines of the README that GroupLens ships ("This dataset (ml-latest-small) ...").

use std::io::Read;
use std::path::Path;

use super::source::{Entry, Source};
use super::{DumpError, Format, layout};
use crate::config::MovieLensVersion;

/// Bytes of a README read when looking for the release's name.
const README_HEAD: u64 = 4096;

/// What the files of a source say about their release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recognised {
    /// Exactly this release.
    Release(MovieLensVersion),
    /// One of these releases, which share a file format; nothing names which.
    OneOf(Vec<MovieLensVersion>),
}

impl Recognised {
    /// Whether `release` fits what the files say.
    pub fn admits(&self, release: MovieLensVersion) -> bool {
        match self {
            Self::Release(found) => *found == release,
            Self::OneOf(candidates) => candidates.contains(&release),
        }
    }
}

/// Reads enough of `source` (a zip or folder) to tell its release.
pub fn recognise(source: &Path) -> Result<Recognised, DumpError> {
    let mut source = Source::open(source)?;
    let has = |name: &str| source.find(name);
    let (format, ratings) = if let Some(entry) = has("u.data") {
        (Format::Ml100k, entry)
    } else if let Some(entry) = has("ratings.dat") {
        (Format::Dat, entry)
    } else if let Some(entry) = has("ratings.csv") {
        (Format::Csv, entry)
    } else {
        return Err(DumpError::NotARelease {
            origin: source.describe(),
        });
    };
    let candidates: Vec<MovieLensVersion> = MovieLensVersion::ALL
        .into_iter()
        .filter(|&v| layout(v).0 == format)
        .collect();
    if let [only] = candidates[..] {
        return Ok(Recognised::Release(only));
    }
    // ml-1m ships `users.dat`; ml-10m ships `tags.dat` and no users.
    if format == Format::Dat {
        if has("users.dat").is_some() {
            return Ok(Recognised::Release(MovieLensVersion::Ml1m));
        }
        if has("tags.dat").is_some() {
            return Ok(Recognised::Release(MovieLensVersion::Ml10m));
        }
    }
    let mut names: Vec<String> = source.own_name().into_iter().collect();
    names.extend(ratings.folder_name().map(str::to_owned));
    if let Some(readme) = has("README.txt") {
        names.extend(readme_release(&mut source, &readme));
    }
    let named: Vec<MovieLensVersion> = candidates
        .iter()
        .copied()
        .filter(|&v| {
            names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(v.name()) || n.eq_ignore_ascii_case(layout(v).1))
        })
        .collect();
    Ok(match named[..] {
        [only] => Recognised::Release(only),
        _ => Recognised::OneOf(candidates),
    })
}

/// The release a README names in its opening ("This dataset (ml-25m) describes ..."), if any.
fn readme_release(source: &mut Source, readme: &Entry) -> Option<String> {
    let head = source
        .read(readme, |r| {
            let mut text = String::new();
            // A README that does not read as text names nothing; that is not an error.
            let _ = r.take(README_HEAD).read_to_string(&mut text);
            Ok(text)
        })
        .ok()?;
    let start = head.find("This dataset (")? + "This dataset (".len();
    let len = head[start..].find(')')?;
    Some(head[start..start + len].trim().to_owned())
}

/// The release to dump from `source` when the command line named none: what the files say,
/// or `configured` (the environment's or the default release) where the files fit it too.
pub fn release_of_source(
    source: &Path,
    configured: MovieLensVersion,
) -> Result<MovieLensVersion, DumpError> {
    match recognise(source)? {
        Recognised::Release(found) => Ok(found),
        Recognised::OneOf(candidates) if candidates.contains(&configured) => Ok(configured),
        Recognised::OneOf(candidates) => Err(DumpError::Ambiguous {
            origin: source.display().to_string(),
            candidates,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MovieLensVersion as V;

    fn folder(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        dir
    }

    #[test]
    fn the_format_alone_names_ml_100k_ml_1m_and_ml_10m() {
        let d = folder(&["u.data", "u.item", "u.genre"]);
        assert_eq!(recognise(d.path()).unwrap(), Recognised::Release(V::Ml100k));
        let d = folder(&["x/movies.dat", "x/ratings.dat", "x/users.dat"]);
        assert_eq!(recognise(d.path()).unwrap(), Recognised::Release(V::Ml1m));
        let d = folder(&["x/movies.dat", "x/ratings.dat", "x/tags.dat"]);
        assert_eq!(recognise(d.path()).unwrap(), Recognised::Release(V::Ml10m));
    }

    #[test]
    fn csv_releases_are_told_apart_by_folder_name_or_readme() {
        let d = folder(&["ml-25m/ratings.csv", "ml-25m/movies.csv"]);
        assert_eq!(recognise(d.path()).unwrap(), Recognised::Release(V::Ml25m));
        let d = folder(&["ratings.csv", "movies.csv"]);
        std::fs::write(
            d.path().join("README.txt"),
            "Summary\n=======\n\nThis dataset (ml-latest) describes 5-star rating",
        )
        .unwrap();
        assert_eq!(recognise(d.path()).unwrap(), Recognised::Release(V::Latest));
        let d = folder(&["ratings.csv", "movies.csv"]);
        let Recognised::OneOf(candidates) = recognise(d.path()).unwrap() else {
            panic!("an unnamed CSV release was named");
        };
        assert!(candidates.contains(&V::LatestSmall) && !candidates.contains(&V::Ml1m));
        assert_eq!(
            release_of_source(d.path(), V::Ml20m).unwrap(),
            V::Ml20m,
            "the configured release fits"
        );
        let err = release_of_source(d.path(), V::Ml100k).unwrap_err();
        assert!(err.to_string().contains("--dataset"), "{err}");
    }

    #[test]
    fn a_folder_without_release_files_says_so() {
        let d = folder(&["notes.txt"]);
        let err = recognise(d.path()).unwrap_err();
        assert!(matches!(err, DumpError::NotARelease { .. }), "{err}");
    }
}
