//! The MovieLens locator: `MOVIELENS_DATA` first and alone, then the folder beside the crate,
//! then a download from a local server (md5 required, unpacked once, safe under a race), and
//! one clear message when there is no data and no download.

use std::path::{Path, PathBuf};

use movierec::catalogue::dump::DumpError;
use movierec::catalogue::dump::locate::{LocateError, Locator};
use movierec::config::MovieLensVersion;

use crate::server::FileServer;
use crate::support::{md5_hex, names_in, zip_folder};

/// A made-up ml-100k folder (not MovieLens data): a few files with known bytes.
fn fake_release(dir: &Path) -> PathBuf {
    let folder = dir.join("made").join("ml-100k");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("u.data"),
        "1\t10\t4\t881250949\n2\t20\t3\t891717742\n",
    )
    .unwrap();
    std::fs::write(
        folder.join("u.item"),
        "10|Made Up (1999)|01-Jan-1999||x|0\n",
    )
    .unwrap();
    std::fs::write(folder.join("u.genre"), "unknown|0\n\n").unwrap();
    folder
}

/// A server that offers `zip` as ml-100k, with `md5` as its published checksum (or none).
fn serving(zip: &[u8], md5: Option<&str>) -> FileServer {
    let server = FileServer::start();
    server.put("/ml-100k.zip", Some(zip.to_vec()));
    server.put(
        "/ml-100k.zip.md5",
        md5.map(|m| format!("MD5 (ml-100k.zip) = {m}\n").into_bytes()),
    );
    server
}

fn downloading(cache: &Path, server: &FileServer) -> Locator {
    Locator {
        data: None,
        beside: Some(cache.join("no-such-folder")),
        cache: cache.to_path_buf(),
        base_url: Some(server.base_url.clone()),
    }
}

/// The files of a folder with their bytes, sorted by name.
fn contents(folder: &Path) -> Vec<(String, Vec<u8>)> {
    names_in(folder)
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(folder.join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

#[test]
fn a_release_is_downloaded_verified_and_unpacked_once() {
    let dir = tempfile::tempdir().unwrap();
    let made = fake_release(dir.path());
    let zip = zip_folder(&made, "ml-100k");
    let server = serving(&zip, Some(&md5_hex(&zip)));
    let cache = dir.path().join("cache");
    let locator = downloading(&cache, &server);

    let found = locator.release(MovieLensVersion::Ml100k).unwrap();
    assert_eq!(found, cache.join("ml-100k"));
    assert_eq!(contents(&found), contents(&made));
    // No staging folder or partial download is left beside the result.
    assert_eq!(
        names_in(&cache),
        vec!["ml-100k", "ml-100k.zip", "ml-100k.zip.md5"]
    );
    let hits = server.hits().len();
    assert_eq!(hits, 2, "{:?}", server.hits());

    // The unpacked folder is used from then on, without the network.
    assert_eq!(locator.release(MovieLensVersion::Ml100k).unwrap(), found);
    assert_eq!(server.hits().len(), hits);
}

#[test]
fn racing_locators_share_one_complete_folder() {
    let dir = tempfile::tempdir().unwrap();
    let made = fake_release(dir.path());
    let zip = zip_folder(&made, "ml-100k");
    let server = serving(&zip, Some(&md5_hex(&zip)));
    let cache = dir.path().join("cache");
    let locator = downloading(&cache, &server);

    let found: Vec<PathBuf> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| locator.release(MovieLensVersion::Ml100k).unwrap()))
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for path in &found {
        assert_eq!(path, &cache.join("ml-100k"));
    }
    assert_eq!(contents(&cache.join("ml-100k")), contents(&made));
    assert_eq!(
        names_in(&cache),
        vec!["ml-100k", "ml-100k.zip", "ml-100k.zip.md5"]
    );
}

/// The error of downloading a made-up ml-100k zip published with `md5` (none: no `.zip.md5`),
/// the cache folder it was to go into, and the server (its hits say what was fetched).
fn refused_download(dir: &Path, md5: Option<&str>) -> (LocateError, PathBuf, FileServer) {
    let zip = zip_folder(&fake_release(dir), "ml-100k");
    let server = serving(&zip, md5);
    let cache = dir.join("cache");
    let err = downloading(&cache, &server)
        .release(MovieLensVersion::Ml100k)
        .unwrap_err();
    (err, cache, server)
}

#[test]
fn a_zip_that_fails_its_md5_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = md5_hex(b"some other bytes");
    let (err, cache, _server) = refused_download(dir.path(), Some(&wrong));
    let LocateError::Download { source, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        matches!(&**source, DumpError::ChecksumMismatch { expected, .. } if *expected == wrong),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("does not match"), "{message}");
    assert!(message.contains("Set MOVIELENS_DATA"), "{message}");
    // Nothing usable, nothing half-written.
    assert_eq!(names_in(&cache), Vec::<String>::new());
}

#[test]
fn a_zip_without_a_published_md5_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (err, cache, server) = refused_download(dir.path(), None);
    let LocateError::Download { source, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        matches!(&**source, DumpError::NoPublishedChecksum { .. }),
        "{err:?}"
    );
    assert!(!cache.join("ml-100k").exists());
    assert!(!server.hits().contains(&"/ml-100k.zip".to_owned()));
}

#[test]
fn with_no_data_and_no_download_one_message_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let locator = Locator {
        data: None,
        beside: Some(dir.path().join("shared")),
        cache: dir.path().join("cache"),
        base_url: None,
    };
    let message = locator
        .release(MovieLensVersion::LatestSmall)
        .unwrap_err()
        .to_string();
    assert!(message.contains("ml-latest-small/"), "{message}");
    assert!(message.contains("set MOVIELENS_DATA"), "{message}");
    assert!(message.contains("unset MOVIELENS_OFFLINE"), "{message}");
    assert!(!dir.path().join("cache").exists());
}

#[test]
fn movielens_data_comes_first_and_alone() {
    let dir = tempfile::tempdir().unwrap();
    let made = fake_release(dir.path());
    let data = made.parent().unwrap().to_path_buf();
    let beside = dir.path().join("beside");
    std::fs::create_dir_all(beside.join("ml-latest-small")).unwrap();
    std::fs::create_dir_all(beside.join("ml-100k")).unwrap();
    // A server with nothing on it: any download attempt would fail.
    let server = FileServer::start();
    let locator = Locator {
        data: Some(data.clone()),
        beside: Some(beside.clone()),
        cache: dir.path().join("cache"),
        base_url: Some(server.base_url.clone()),
    };
    assert_eq!(locator.release(MovieLensVersion::Ml100k).unwrap(), made);

    // Set but lacking the release: an error naming it, not the folder beside.
    let err = locator.release(MovieLensVersion::LatestSmall).unwrap_err();
    assert!(matches!(err, LocateError::NotInData { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("MOVIELENS_DATA={}", data.display())),
        "{err}"
    );

    // Unset: the folder beside the crate, still without the network.
    let beside_only = Locator {
        data: None,
        ..locator
    };
    assert_eq!(
        beside_only.release(MovieLensVersion::LatestSmall).unwrap(),
        beside.join("ml-latest-small")
    );
    assert!(server.hits().is_empty(), "{:?}", server.hits());
}
