//! Where a release's catalogue file lives: the one place the rule `<root>/<release>.db` is
//! written, and its inverse, so that an error about a file can name the command that builds it.

use std::path::{Path, PathBuf};

use crate::config::MovieLensVersion;

/// The folder of the catalogues when nothing else is configured (`DATABASE_ROOT`).
pub const DEFAULT_DATABASE_ROOT: &str = "resources/db";

/// The catalogue file of `release` under `root`: `<root>/<release>.db`.
pub fn catalogue_path(root: &Path, release: MovieLensVersion) -> PathBuf {
    root.join(format!("{}.db", release.name()))
}

/// The release whose catalogue `path` is, read back from the file name (`None` for a file
/// named otherwise).
pub fn release_of(path: &Path) -> Option<MovieLensVersion> {
    let name = path.file_name()?.to_str()?.strip_suffix(".db")?;
    name.parse().ok()
}

/// The `movierec dump` command that (re)builds the catalogue at `path`: with the release read
/// from the file name, and with the folder when it is not the default one.
pub fn dump_command(path: &Path) -> String {
    let mut command = String::from("movierec dump");
    if let Some(release) = release_of(path) {
        command.push_str(&format!(" --dataset {release}"));
    }
    match path.parent() {
        Some(root) if root != Path::new(DEFAULT_DATABASE_ROOT) && root != Path::new("") => {
            command.push_str(&format!(" --database-root {}", root.display()));
        }
        _ => {}
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_rule_and_its_inverse_agree_for_every_release() {
        for release in MovieLensVersion::ALL {
            let path = catalogue_path(Path::new("/srv/db"), release);
            assert_eq!(path, Path::new("/srv/db").join(format!("{release}.db")));
            assert_eq!(release_of(&path), Some(release));
        }
        assert_eq!(release_of(Path::new("/srv/db/other.db")), None);
        assert_eq!(release_of(Path::new("/srv/db/ml-1m.sqlite")), None);
    }

    #[test]
    fn the_dump_command_names_the_release_and_a_non_default_folder() {
        let default = catalogue_path(Path::new(DEFAULT_DATABASE_ROOT), MovieLensVersion::Ml1m);
        assert_eq!(dump_command(&default), "movierec dump --dataset ml-1m");
        let elsewhere = catalogue_path(Path::new("/tmp/x"), MovieLensVersion::Ml100k);
        assert_eq!(
            dump_command(&elsewhere),
            "movierec dump --dataset ml-100k --database-root /tmp/x"
        );
        assert_eq!(dump_command(Path::new("t.db")), "movierec dump");
    }
}
