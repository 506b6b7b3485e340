//! The `.env` file: settings for every command, under the environment and the flags. dotenvy
//! stops at the first line it cannot parse and drops every setting after it; here that line is
//! an error that names the file and the line.

use std::path::{Path, PathBuf};

/// Why the `.env` file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    /// A line that is not a setting.
    #[error(
        "{}, line {line}: `{text}` is not a setting: write it as KEY=value (quote a value with \
         spaces, start a comment with #)",
        .path.display()
    )]
    Malformed {
        path: PathBuf,
        line: usize,
        text: String,
    },
    /// The file could not be read.
    #[error("cannot read {}: fix its permissions or remove it", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: dotenvy::Error,
    },
}

/// Loads the `.env` of the working directory, or of the nearest parent that has one, into the
/// environment; a variable already set keeps its value. Returns the file loaded, if any.
pub fn load_env_file() -> Result<Option<PathBuf>, EnvFileError> {
    let Ok(cwd) = std::env::current_dir() else {
        return Ok(None);
    };
    let Some(path) = cwd
        .ancestors()
        .map(|dir| dir.join(".env"))
        .find(|p| p.is_file())
    else {
        return Ok(None);
    };
    load_from(&path)?;
    Ok(Some(path))
}

/// Loads the settings file `path`; a malformed line is an error that names it.
pub fn load_from(path: &Path) -> Result<(), EnvFileError> {
    match dotenvy::from_path(path) {
        Ok(()) => Ok(()),
        Err(dotenvy::Error::LineParse(text, _)) => {
            let content = std::fs::read_to_string(path).unwrap_or_default();
            let first = text.lines().next().unwrap_or_default().to_owned();
            Err(EnvFileError::Malformed {
                path: path.to_path_buf(),
                line: line_number(&content, &first),
                text: first,
            })
        }
        Err(source) => Err(EnvFileError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The 1-based number of the first line of `content` that starts with `line` (0 if none does).
fn line_number(content: &str, line: &str) -> usize {
    content
        .lines()
        .position(|l| l.trim_start_matches('\u{feff}').starts_with(line))
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `content` as a `.env` file that must be malformed; returns the error.
    fn malformed(content: &str) -> (usize, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, content).unwrap();
        let err = load_from(&path).unwrap_err();
        let message = err.to_string();
        match err {
            EnvFileError::Malformed { line, text, .. } => (line, text, message),
            other => panic!("unexpected error: {other}"),
        }
    }

    #[test]
    fn a_malformed_line_is_named_by_number_and_text() {
        let (line, text, message) = malformed(
            "# comment\nMOVIEREC_ENV_FILE_TEST_A=1\n\nMOVIEREC ENV FILE TEST\nMOVIEREC_ENV_FILE_TEST_B=2\n",
        );
        assert_eq!((line, text.as_str()), (4, "MOVIEREC ENV FILE TEST"));
        assert!(message.contains("line 4"), "{message}");
    }

    #[test]
    fn an_unterminated_quote_is_named_where_it_starts() {
        let (line, _, _) = malformed(
            "MOVIEREC_ENV_FILE_TEST_C=1\nMOVIEREC_ENV_FILE_TEST_D=\"open\nMOVIEREC_ENV_FILE_TEST_E=3\n",
        );
        assert_eq!(line, 2);
    }
}
