//! The one way the tests find MovieLens: the library's [`Locator`] (`MOVIELENS_DATA`, else
//! the shared data beside the checkout, else a verified download into the cache), asked once per release
//! per test binary. Without data every test that needs it fails with the locator's one message.

use std::path::PathBuf;
use std::sync::Mutex;

use movierec::catalogue::dump::locate::Locator;
use movierec::config::MovieLensVersion;

/// The extracted folder of `version`; panics with the locator's message when there is none.
pub fn movielens(version: MovieLensVersion) -> PathBuf {
    type Found = Vec<(MovieLensVersion, Result<PathBuf, String>)>;
    static FOUND: Mutex<Found> = Mutex::new(Vec::new());
    // Held across a download, so the tests of one binary fetch each release once.
    let mut found = FOUND
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let result = match found.iter().find(|(v, _)| *v == version) {
        Some((_, result)) => result.clone(),
        None => {
            let result = Locator::from_env()
                .release(version)
                .map_err(|e| e.to_string());
            found.push((version, result.clone()));
            result
        }
    };
    drop(found);
    result.unwrap_or_else(|message| panic!("{message}"))
}
