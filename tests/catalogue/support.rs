//! Helpers of the catalogue tests: run the real binary, read catalogues, build zips.

use std::io::Write;
use std::path::Path;
use std::process::Output;

use md5::{Digest, Md5};
use rusqlite::{Connection, OpenFlags};

/// Runs `movierec <args>` in `cwd` (so no developer `.env` is read), with the settings'
/// environment variables removed.
pub fn run_cli(cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_movierec"));
    cmd.current_dir(cwd).args(args).env("RUST_LOG", "warn");
    for var in [
        "MOVIELENS_VERSION",
        "DATASET_ROOT",
        "DATABASE_ROOT",
        "MOVIELENS_BASE_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.output().expect("the movierec binary runs")
}

/// Like [`run_cli`], but the command must succeed; returns its stdout.
pub fn movierec_ok(cwd: &Path, args: &[&str]) -> String {
    let out = run_cli(cwd, args);
    assert!(
        out.status.success(),
        "movierec {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Like [`run_cli`], but the command must fail; returns its stderr.
pub fn movierec_err(cwd: &Path, args: &[&str]) -> String {
    let out = run_cli(cwd, args);
    assert!(
        !out.status.success(),
        "movierec {args:?} should fail; stdout:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// `movierec dump --version <version> --source <source> --database-root <db>`.
pub fn dump_source(cwd: &Path, version: &str, source: &Path, db: &Path) -> String {
    movierec_ok(
        cwd,
        &[
            "dump",
            "--version",
            version,
            "--source",
            source.to_str().unwrap(),
            "--database-root",
            db.to_str().unwrap(),
            "--dataset-root",
            db.join("datasets").to_str().unwrap(),
        ],
    )
}

/// One integer from a query on a catalogue file.
pub fn scalar(db: &Path, sql: &str) -> i64 {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// md5 over the whole content of a catalogue (every table, in key order), the `dataset` row's
/// creation time left out.
pub fn content_digest(db: &Path) -> String {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut hasher = Md5::new();
    for sql in [
        "SELECT version, source_md5, movies, ratings, tags, links, users FROM dataset",
        "SELECT movie_id, title, year, rating_count FROM movies ORDER BY movie_id",
        "SELECT genre_id, name FROM genres ORDER BY genre_id",
        "SELECT movie_id, genre_id FROM movie_genres ORDER BY movie_id, genre_id",
        "SELECT movie_id, imdb_id, tmdb_id FROM links ORDER BY movie_id",
        "SELECT user_id, timestamp, movie_id, rating FROM ratings ORDER BY user_id, timestamp, movie_id",
        "SELECT rowid, user_id, movie_id, tag, timestamp FROM tags ORDER BY rowid",
    ] {
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..n {
                let v: rusqlite::types::Value = row.get(i).unwrap();
                hasher.update(format!("{v:?}\u{1f}").as_bytes());
            }
            hasher.update(b"\n");
        }
    }
    hex::encode(hasher.finalize())
}

/// A deflated zip of the files of `folder` under `<prefix>/`.
pub fn zip_folder(folder: &Path, prefix: &str) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.add_directory(format!("{prefix}/"), opts).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        for name in names {
            w.start_file(format!("{prefix}/{name}"), opts).unwrap();
            w.write_all(&std::fs::read(folder.join(&name)).unwrap())
                .unwrap();
        }
        w.finish().unwrap();
    }
    out.into_inner()
}

/// md5 of bytes, lowercase hex.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// Names in a folder, sorted (empty when it does not exist).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Copies the files of a folder (not recursive).
pub fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
