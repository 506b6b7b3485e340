//! Finding an extracted MovieLens release folder, for the tests and the benchmarks: the one
//! place that knows where the data is.
//!
//! In order: the folder named by `MOVIELENS_DATA` (one sub-folder per release, e.g.
//! `ml-latest-small/` and `ml-100k/`), and nothing else when it is set; else
//! `../shared/data/movielens` beside the crate when it has the release; else the download cache
//! (`MOVIELENS_CACHE`, else `$XDG_CACHE_HOME/movierec/movielens`, else
//! `~/.cache/movierec/movielens`), filled on first use from GroupLens (`MOVIELENS_BASE_URL`)
//! with the zip's published md5 required, unless `MOVIELENS_OFFLINE` is set.
//!
//! A downloaded zip is unpacked into a temporary folder beside its final place and renamed
//! there, so a folder that exists is complete, and two processes that race both end up with it.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::DumpError;
use super::download::{Checksum, fetch_checked};
use crate::config::MovieLensVersion;

/// Names a folder holding one extracted folder per release; when set, it is the only source.
pub const DATA_VAR: &str = "MOVIELENS_DATA";
/// Overrides the download cache folder.
pub const CACHE_VAR: &str = "MOVIELENS_CACHE";
/// When set (to anything but `0` or nothing), releases are never downloaded.
pub const OFFLINE_VAR: &str = "MOVIELENS_OFFLINE";
/// Base URL of the release zips (the variable `movierec dump` reads too).
pub const BASE_URL_VAR: &str = "MOVIELENS_BASE_URL";
/// Where GroupLens publishes the releases and their `.zip.md5` files.
pub const DEFAULT_BASE_URL: &str = "https://files.grouplens.org/datasets/movielens";

/// The shared folder that sits beside this crate's checkout on the development machines; it
/// may not exist.
fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// Its data folder (`movielens/` releases, `splits/` reference splits).
fn shared_data() -> PathBuf {
    shared().join("data")
}

/// Its folder of PyTorch peers (`bench_infer.py`, `sasrec.py`), which `bench model
/// --compare-torch` runs; it may not exist.
pub fn torch_peers() -> PathBuf {
    shared().join("peer")
}

/// The folder of reference leave-one-out splits (`<release>.jsonl`) beside the checkout, when
/// it exists; tests compare with it line by line, and with the committed digest always.
pub fn reference_splits() -> Option<PathBuf> {
    Some(shared_data().join("splits")).filter(|dir| dir.is_dir())
}

/// Where releases are looked for, in order.
#[derive(Debug, Clone)]
pub struct Locator {
    /// A folder of release folders that, when given, is the only place looked at.
    pub data: Option<PathBuf>,
    /// A folder of release folders used when it has the release (the shared data beside a
    /// checkout).
    pub beside: Option<PathBuf>,
    /// Where downloaded zips are kept and unpacked.
    pub cache: PathBuf,
    /// Base URL of the release zips; `None` never downloads.
    pub base_url: Option<String>,
}

/// Why no folder of a release could be found. Each message says how to provide the data.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// `MOVIELENS_DATA` is set and lacks the release.
    #[error(
        "MOVIELENS_DATA={} holds no {folder}/ folder: point MOVIELENS_DATA at a folder holding the \
         extracted releases (ml-latest-small/, ml-100k/), or unset it to use \
         ../shared/data/movielens or a download",
        data.display()
    )]
    NotInData { data: PathBuf, folder: String },
    /// Nothing local has the release and downloads are off.
    #[error(
        "no MovieLens {folder}/ found (MOVIELENS_DATA is unset, {} has none, and the cache {} has \
         none) and downloads are off (MOVIELENS_OFFLINE is set): set MOVIELENS_DATA to a folder holding \
         ml-latest-small/ and ml-100k/, or unset MOVIELENS_OFFLINE to download from GroupLens",
        beside.display(),
        cache.display()
    )]
    Offline {
        folder: String,
        beside: PathBuf,
        cache: PathBuf,
    },
    /// Nothing local has the release and the download failed.
    #[error(
        "no MovieLens {folder}/ found (MOVIELENS_DATA is unset, {} has none) and downloading it \
         into {} failed: {source}. Set MOVIELENS_DATA to a folder holding ml-latest-small/ and \
         ml-100k/, or let this machine reach {base_url} (MOVIELENS_BASE_URL picks another server)",
        beside.display(),
        cache.display()
    )]
    Download {
        folder: String,
        beside: PathBuf,
        cache: PathBuf,
        base_url: String,
        #[source]
        source: Box<DumpError>,
    },
}

impl Locator {
    /// The locator the environment describes (see the module documentation); `beside` is
    /// the shared data folder next to this crate's sources.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let offline = var(OFFLINE_VAR).is_some_and(|v| v != "0");
        Self {
            data: var(DATA_VAR).map(PathBuf::from),
            beside: Some(shared_data().join("movielens")),
            cache: var(CACHE_VAR)
                .map(PathBuf::from)
                .unwrap_or_else(|| default_cache(var("XDG_CACHE_HOME"), var("HOME"))),
            base_url: (!offline).then(|| {
                var(BASE_URL_VAR)
                    .and_then(|v| v.into_string().ok())
                    .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned())
            }),
        }
    }

    /// The extracted folder of `version`, downloading and unpacking it when no local folder has
    /// it (see the module documentation for the order).
    pub fn release(&self, version: MovieLensVersion) -> Result<PathBuf, LocateError> {
        let folder = super::layout(version).1;
        if let Some(data) = &self.data {
            let path = data.join(folder);
            return if path.is_dir() {
                Ok(path)
            } else {
                Err(LocateError::NotInData {
                    data: data.clone(),
                    folder: folder.to_owned(),
                })
            };
        }
        if let Some(beside) = &self.beside {
            let path = beside.join(folder);
            if path.is_dir() {
                return Ok(path);
            }
        }
        let cached = self.cache.join(folder);
        if cached.is_dir() {
            return Ok(cached);
        }
        let beside = self.beside.clone().unwrap_or_default();
        let Some(base_url) = &self.base_url else {
            return Err(LocateError::Offline {
                folder: folder.to_owned(),
                beside,
                cache: self.cache.clone(),
            });
        };
        self.download(version, folder, base_url)
            .map_err(|source| LocateError::Download {
                folder: folder.to_owned(),
                beside,
                cache: self.cache.clone(),
                base_url: base_url.clone(),
                source: Box::new(source),
            })
    }

    /// Fetches the zip (md5 required) into the cache and unpacks its `folder`.
    fn download(
        &self,
        version: MovieLensVersion,
        folder: &str,
        base_url: &str,
    ) -> Result<PathBuf, DumpError> {
        tracing::info!(release = version.name(), cache = %self.cache.display(), "no local MovieLens folder; downloading");
        let fetched = fetch_checked(version.name(), base_url, &self.cache, Checksum::Required)?;
        unpack(&fetched.path, folder, &self.cache)
    }
}

/// `$XDG_CACHE_HOME/movierec/movielens`, else `$HOME/.cache/movierec/movielens`, else the
/// system's temporary folder.
fn default_cache(xdg_cache_home: Option<OsString>, home: Option<OsString>) -> PathBuf {
    let root = match (xdg_cache_home, home) {
        (Some(xdg), _) => PathBuf::from(xdg),
        (None, Some(home)) => PathBuf::from(home).join(".cache"),
        (None, None) => std::env::temp_dir(),
    };
    root.join("movierec").join("movielens")
}

/// Unpacks `zip` into a temporary folder in `cache`, then renames its `folder` to
/// `cache/<folder>`. When another process got there first, its folder is used and ours dropped.
fn unpack(zip: &Path, folder: &str, cache: &Path) -> Result<PathBuf, DumpError> {
    let target = cache.join(folder);
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{folder}.unpack-"))
        .tempdir_in(cache)
        .map_err(|e| DumpError::io(cache, e))?;
    let file = File::open(zip).map_err(|e| DumpError::io(zip, e))?;
    let zip_error = |source| DumpError::Zip {
        path: zip.to_path_buf(),
        source,
    };
    zip::ZipArchive::new(file)
        .and_then(|mut archive| archive.extract(staging.path()))
        .map_err(zip_error)?;
    let unpacked = staging.path().join(folder);
    if !unpacked.is_dir() {
        return Err(DumpError::MissingFile {
            name: format!("{folder}/"),
            origin: zip.display().to_string(),
            version: folder.to_owned(),
        });
    }
    match std::fs::rename(&unpacked, &target) {
        Ok(()) => {
            tracing::info!(path = %target.display(), "unpacked");
            Ok(target)
        }
        Err(_) if target.is_dir() => Ok(target),
        Err(e) => Err(DumpError::io(&target, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_follows_xdg_then_home() {
        assert_eq!(
            default_cache(Some("/x".into()), Some("/home/u".into())),
            Path::new("/x/movierec/movielens")
        );
        assert_eq!(
            default_cache(None, Some("/home/u".into())),
            Path::new("/home/u/.cache/movierec/movielens")
        );
        assert!(default_cache(None, None).ends_with("movierec/movielens"));
    }
}
