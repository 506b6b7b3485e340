//! Downloading a release zip into the cache under `DATASET_ROOT`, verified against the published
//! `<name>.zip.md5` when the server has one.
//!
//! The cache holds `<name>.zip` and, once it verified, `<name>.zip.md5`. A cached zip whose md5
//! matches its cached checksum is used without any network access; a cached zip without a
//! cached checksum is used when it matches the published one.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};
use reqwest::blocking::Client;

use super::DumpError;
use super::source::md5_file;

/// A release zip in the cache.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The cached zip.
    pub path: PathBuf,
    /// Its md5, lowercase hex.
    pub md5: String,
    /// Whether it was downloaded now (false: the cache was used).
    pub downloaded: bool,
}

/// How strictly a download is checked against the server's `<name>.zip.md5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// Verify when the server publishes one; warn and accept the zip otherwise (mirrors).
    IfPublished,
    /// Refuse the zip unless the server publishes an md5 and it matches.
    Required,
}

/// Makes sure `DATASET_ROOT/<name>.zip` holds the verified release `name` from `base_url`.
pub fn fetch(name: &str, base_url: &str, dataset_root: &Path) -> Result<Fetched, DumpError> {
    fetch_checked(name, base_url, dataset_root, Checksum::IfPublished)
}

/// [`fetch`], with the checksum rule given.
pub fn fetch_checked(
    name: &str,
    base_url: &str,
    dataset_root: &Path,
    checksum: Checksum,
) -> Result<Fetched, DumpError> {
    std::fs::create_dir_all(dataset_root).map_err(|e| DumpError::io(dataset_root, e))?;
    let zip_path = dataset_root.join(format!("{name}.zip"));
    let sum_path = dataset_root.join(format!("{name}.zip.md5"));

    if zip_path.is_file()
        && let Ok(cached_sum) = std::fs::read_to_string(&sum_path)
        && let Some(expected) = parse_md5(&cached_sum)
        && md5_file(&zip_path)? == expected
    {
        tracing::info!(path = %zip_path.display(), "using the cached zip (md5 verified)");
        return Ok(Fetched {
            path: zip_path,
            md5: expected,
            downloaded: false,
        });
    }

    let client = Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .timeout(None::<Duration>)
        .build()
        .map_err(|source| DumpError::Unreachable {
            url: base_url.to_owned(),
            source,
        })?;
    let base = base_url.trim_end_matches('/');
    let zip_url = format!("{base}/{name}.zip");
    let published = published_md5(&client, &format!("{zip_url}.md5"))?;
    if published.is_none() && checksum == Checksum::Required {
        return Err(DumpError::NoPublishedChecksum {
            url: format!("{zip_url}.md5"),
        });
    }

    if let Some(expected) = &published
        && zip_path.is_file()
        && md5_file(&zip_path)? == *expected
    {
        write_sum(&sum_path, expected)?;
        tracing::info!(path = %zip_path.display(), "using the cached zip (matches the published md5)");
        return Ok(Fetched {
            path: zip_path,
            md5: expected.clone(),
            downloaded: false,
        });
    }

    let (part, actual) = download(&client, &zip_url, dataset_root, name)?;
    if let Some(expected) = &published
        && *expected != actual
    {
        // Dropping `part` deletes the partial download.
        return Err(DumpError::ChecksumMismatch {
            file: zip_url,
            expected: expected.clone(),
            actual,
        });
    }
    // Any stale checksum goes before the new zip takes its place.
    remove_if_present(&sum_path)?;
    part.persist(&zip_path).map_err(|e| DumpError::Persist {
        path: zip_path.clone(),
        source: e.error,
    })?;
    match &published {
        Some(expected) => write_sum(&sum_path, expected)?,
        None => {
            tracing::warn!(url = %zip_url, "the server publishes no md5: the zip is not verified")
        }
    }
    Ok(Fetched {
        path: zip_path,
        md5: actual,
        downloaded: true,
    })
}

/// Removes a cached zip and its checksum (after the zip turned out to be corrupt).
pub fn evict(fetched: &Fetched) {
    let sum = fetched.path.with_extension("zip.md5");
    for path in [&fetched.path, &sum] {
        if let Err(e) = remove_if_present(path) {
            tracing::warn!(error = %e, "cannot remove the corrupt cached zip");
        }
    }
}

/// The published md5 at `url`, `None` when the server has none (any non-success status).
fn published_md5(client: &Client, url: &str) -> Result<Option<String>, DumpError> {
    let resp = client
        .get(url)
        .send()
        .map_err(|source| DumpError::Unreachable {
            url: url.to_owned(),
            source,
        })?;
    if !resp.status().is_success() {
        tracing::info!(url, status = resp.status().as_u16(), "no published md5");
        return Ok(None);
    }
    let text = resp.text().map_err(|source| DumpError::Unreachable {
        url: url.to_owned(),
        source,
    })?;
    match parse_md5(&text) {
        Some(sum) => Ok(Some(sum)),
        None => {
            tracing::warn!(url, "the md5 file holds no checksum; ignoring it");
            Ok(None)
        }
    }
}

/// Streams `url` into a temporary file in `dir`, with a progress bar; returns it and its md5.
fn download(
    client: &Client,
    url: &str,
    dir: &Path,
    name: &str,
) -> Result<(tempfile::NamedTempFile, String), DumpError> {
    let mut resp = client
        .get(url)
        .send()
        .map_err(|source| DumpError::Unreachable {
            url: url.to_owned(),
            source,
        })?;
    if !resp.status().is_success() {
        return Err(DumpError::Http {
            url: url.to_owned(),
            status: resp.status().as_u16(),
        });
    }
    let mut part = tempfile::Builder::new()
        .prefix(&format!(".{name}.zip.part-"))
        .tempfile_in(dir)
        .map_err(|e| DumpError::io(dir, e))?;
    let bar = match resp.content_length() {
        Some(len) => ProgressBar::new(len),
        None => ProgressBar::no_length(),
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("{name}.zip"));
    tracing::info!(url, "downloading");

    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = resp.read(&mut buf).map_err(|source| DumpError::Read {
            file: url.to_owned(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        part.write_all(&buf[..n])
            .map_err(|e| DumpError::io(part.path(), e))?;
        bar.inc(n as u64);
    }
    part.as_file()
        .sync_all()
        .map_err(|e| DumpError::io(part.path(), e))?;
    bar.finish_and_clear();
    Ok((part, hex::encode(hasher.finalize())))
}

/// The md5 in a checksum file: GroupLens writes `MD5 (name.zip) = <hex>`, md5sum writes
/// `<hex>  name.zip`; a bare `<hex>` works too.
pub fn parse_md5(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || c == '=')
        .find(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
}

fn write_sum(path: &Path, sum: &str) -> Result<(), DumpError> {
    let mut f = File::create(path).map_err(|e| DumpError::io(path, e))?;
    writeln!(f, "{sum}").map_err(|e| DumpError::io(path, e))
}

fn remove_if_present(path: &Path) -> Result<(), DumpError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DumpError::io(path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_md5_file_styles_parse() {
        let hex = "a449a0fd8f4ab1b8b6a5d1b3e1a7e3c0";
        assert_eq!(
            parse_md5(&format!("MD5 (ml-latest-small.zip) = {hex}\n")).unwrap(),
            hex
        );
        assert_eq!(parse_md5(&format!("{hex}  ml-1m.zip\n")).unwrap(), hex);
        assert_eq!(parse_md5(&hex.to_uppercase()).unwrap(), hex);
        assert_eq!(parse_md5("<html>not found</html>"), None);
    }

    #[test]
    fn an_unreachable_server_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        // A port that was free a moment ago: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = fetch(
            "ml-latest-small",
            &format!("http://127.0.0.1:{port}"),
            dir.path(),
        )
        .unwrap_err();
        assert!(matches!(err, DumpError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("ml-latest-small.zip"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
