//! Where the files of a release are read from: a zip (read entry by entry, never extracted) or
//! an already extracted folder.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};
use zip::ZipArchive;

use super::DumpError;

/// An opened release.
pub enum Source {
    /// A release zip.
    Zip {
        path: PathBuf,
        archive: ZipArchive<BufReader<File>>,
        names: Vec<String>,
    },
    /// An extracted release folder (or a folder holding it).
    Folder { root: PathBuf },
}

/// A located file of a release: how to open it and how to name it in messages.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The zip entry name, or the file's path.
    key: String,
    /// `<zip>:<entry>` or the file's path, for messages.
    pub label: String,
}

impl Source {
    /// Opens `path`: a folder as is, anything else as a zip (whose directory must read).
    pub fn open(path: &Path) -> Result<Self, DumpError> {
        let meta =
            std::fs::metadata(path).map_err(|_| DumpError::MissingSource(path.to_path_buf()))?;
        if meta.is_dir() {
            return Ok(Self::Folder {
                root: path.to_path_buf(),
            });
        }
        let file = File::open(path).map_err(|e| DumpError::io(path, e))?;
        let archive =
            ZipArchive::new(BufReader::with_capacity(1 << 16, file)).map_err(|source| {
                DumpError::Zip {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        // Names that do not decode are skipped: no release file has such a name.
        let names = archive
            .file_names()
            .filter_map(Result::ok)
            .map(|n| n.into_owned())
            .collect();
        Ok(Self::Zip {
            path: path.to_path_buf(),
            archive,
            names,
        })
    }

    /// How the source is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Zip { path, .. } => path.display().to_string(),
            Self::Folder { root } => root.display().to_string(),
        }
    }

    /// Finds the release file `name`. In a zip: the entry `<folder>/<name>`, else the shallowest
    /// entry whose last component is `name`. In a folder: `<root>/<name>`, else
    /// `<root>/<folder>/<name>`.
    pub fn locate(&self, folder: &str, name: &str) -> Option<Entry> {
        match self {
            Self::Zip { path, names, .. } => {
                let wanted = format!("{folder}/{name}");
                let key = names.iter().find(|n| **n == wanted).or_else(|| {
                    names
                        .iter()
                        .filter(|n| n.rsplit('/').next() == Some(name))
                        .min_by_key(|n| {
                            let n: &String = n;
                            (n.matches('/').count(), n.clone())
                        })
                })?;
                Some(Entry {
                    key: key.clone(),
                    label: format!("{}:{key}", path.display()),
                })
            }
            Self::Folder { root } => [root.join(name), root.join(folder).join(name)]
                .into_iter()
                .find(|p| p.is_file())
                .map(|p| Entry {
                    key: p.display().to_string(),
                    label: p.display().to_string(),
                }),
        }
    }

    /// Finds a file called `name` wherever the release keeps it: in a zip the shallowest entry
    /// of that name; in a folder `<root>/<name>`, else `<root>/<sub>/<name>` for the first
    /// subfolder (by name) that has it. Used to recognise a release before its layout is known.
    pub fn find(&self, name: &str) -> Option<Entry> {
        match self {
            Self::Zip { .. } => self.locate("", name),
            Self::Folder { root } => {
                let mut subfolders: Vec<PathBuf> = std::fs::read_dir(root)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_dir())
                    .collect();
                subfolders.sort();
                std::iter::once(root.clone())
                    .chain(subfolders)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
                    .map(|p| Entry {
                        key: p.display().to_string(),
                        label: p.display().to_string(),
                    })
            }
        }
    }

    /// The name of the zip file (without `.zip`) or of the folder.
    pub fn own_name(&self) -> Option<String> {
        let path = match self {
            Self::Zip { path, .. } => path,
            Self::Folder { root } => root,
        };
        let name = path.file_name()?.to_string_lossy();
        Some(name.strip_suffix(".zip").unwrap_or(&name).to_owned())
    }

    /// Like [`locate`](Self::locate), but a missing file is an error.
    pub fn require(&self, folder: &str, name: &str, version: &str) -> Result<Entry, DumpError> {
        self.locate(folder, name)
            .ok_or_else(|| DumpError::MissingFile {
                name: name.to_owned(),
                origin: self.describe(),
                version: version.to_owned(),
            })
    }

    /// Runs `read` over the content of `entry`.
    pub fn read<T>(
        &mut self,
        entry: &Entry,
        read: impl FnOnce(&mut dyn Read) -> Result<T, DumpError>,
    ) -> Result<T, DumpError> {
        match self {
            Self::Zip { path, archive, .. } => {
                let file = archive
                    .by_name(&entry.key)
                    .map_err(|source| DumpError::Zip {
                        path: path.clone(),
                        source,
                    })?;
                let size = file.size();
                read(&mut Progress::new(file, size, &entry.key))
            }
            Self::Folder { .. } => {
                let file = File::open(&entry.key).map_err(|source| DumpError::Read {
                    file: entry.label.clone(),
                    source,
                })?;
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                read(&mut Progress::new(file, size, &entry.label))
            }
        }
    }
}

/// A reader that advances a progress bar (hidden when stderr is not a terminal).
struct Progress<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Progress<R> {
    fn new(inner: R, size: u64, label: &str) -> Self {
        let bar = ProgressBar::new(size);
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} eta {eta}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        let name = label.rsplit(['/', ':']).next().unwrap_or(label);
        bar.set_message(name.to_owned());
        Self { inner, bar }
    }
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

impl<R> Drop for Progress<R> {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// md5 of a file, as lowercase hex.
pub fn md5_file(path: &Path) -> Result<String, DumpError> {
    let mut file = File::open(path).map_err(|e| DumpError::io(path, e))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| DumpError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// md5 over the files of a folder source, in the given order: each file's name, a NUL, its bytes.
pub fn md5_files(paths: &[PathBuf]) -> Result<String, DumpError> {
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        hasher.update(name.as_bytes());
        hasher.update([0u8]);
        let mut file = File::open(path).map_err(|e| DumpError::io(path, e))?;
        loop {
            let n = file.read(&mut buf).map_err(|e| DumpError::io(path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

impl Entry {
    /// The name of the folder that holds the file, if it is in one (`ml-100k` for
    /// `ml-100k/u.data`).
    pub fn folder_name(&self) -> Option<&str> {
        let mut parts = self.key.rsplit(['/', std::path::MAIN_SEPARATOR]);
        parts.next()?;
        parts.next().filter(|p| !p.is_empty())
    }

    /// The file's path when the source is a folder.
    pub fn folder_path(&self, source: &Source) -> Option<PathBuf> {
        matches!(source, Source::Folder { .. }).then(|| PathBuf::from(&self.key))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_with(entries: &[(&str, &[u8])]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.zip");
        let mut w = zip::ZipWriter::new(File::create(&path).unwrap());
        for (name, data) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
        (dir, path)
    }

    #[test]
    fn zip_entries_are_found_in_the_release_folder_first() {
        let (_dir, path) = zip_with(&[
            ("other/deep/u.data", b"x"),
            ("ml-100k/u.data", b"1\t2\t3\t4\n"),
        ]);
        let mut src = Source::open(&path).unwrap();
        let entry = src.locate("ml-100k", "u.data").unwrap();
        assert!(entry.label.ends_with("r.zip:ml-100k/u.data"));
        let text = src
            .read(&entry, |r| {
                let mut s = String::new();
                r.read_to_string(&mut s).unwrap();
                Ok(s)
            })
            .unwrap();
        assert_eq!(text, "1\t2\t3\t4\n");
        assert!(src.locate("ml-100k", "u.item").is_none());
        let other = src.locate("ml-10M100K", "u.data").unwrap();
        assert!(other.label.ends_with("ml-100k/u.data"), "shallowest wins");
    }

    #[test]
    fn a_truncated_zip_is_a_zip_error() {
        let (_dir, path) = zip_with(&[("a/movies.csv", b"movieId,title,genres\n")]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(Source::open(&path), Err(DumpError::Zip { .. })));
        assert!(matches!(
            Source::open(&path.with_extension("nope")),
            Err(DumpError::MissingSource(_))
        ));
    }

    #[test]
    fn folders_may_hold_the_release_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ml-10M100K")).unwrap();
        std::fs::write(dir.path().join("ml-10M100K/movies.dat"), b"").unwrap();
        let src = Source::open(dir.path()).unwrap();
        assert!(src.locate("ml-10M100K", "movies.dat").is_some());
        let err = src
            .require("ml-10M100K", "ratings.dat", "ml-10m")
            .unwrap_err();
        assert!(err.to_string().contains("ratings.dat"), "{err}");
    }
}
