//! Integration tests of `movierec dump` and `movierec search`, on the real binary and the
//! MovieLens folders found by `support/movielens.rs`; and of that locator itself.

#[path = "catalogue/locate.rs"]
mod locate;
#[path = "support/movielens.rs"]
mod movielens;
#[path = "catalogue/server.rs"]
mod server;
#[path = "catalogue/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use movielens::movielens;
use movierec::catalogue::Movie;
use movierec::config::MovieLensVersion;
use server::FileServer;
use support::*;

/// The ml-latest-small catalogue, dumped once from the located folder for all search tests.
fn small_catalogue() -> &'static PathBuf {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    DB.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("catalogue-small-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let out = dump_source(
            &root,
            "ml-latest-small",
            &movielens(MovieLensVersion::LatestSmall),
            &root,
        );
        assert!(out.contains("ratings  100836"), "{out}");
        root
    })
}

fn search(text: &str, limit: usize) -> Vec<Movie> {
    let root = small_catalogue();
    let out = movierec_ok(
        root,
        &[
            "search",
            text,
            "--limit",
            &limit.to_string(),
            "--json",
            "--database-root",
            root.to_str().unwrap(),
        ],
    );
    serde_json::from_str(&out).unwrap()
}

fn titles(movies: &[Movie]) -> Vec<&str> {
    movies.iter().map(|m| m.title.as_str()).collect()
}

#[test]
fn latest_small_folder_dump_has_the_release_counts() {
    let db = small_catalogue().join("ml-latest-small.db");
    assert_eq!(scalar(&db, "SELECT count(*) FROM movies"), 9742);
    assert_eq!(scalar(&db, "SELECT count(*) FROM ratings"), 100836);
    assert_eq!(scalar(&db, "SELECT count(*) FROM tags"), 3683);
    assert_eq!(scalar(&db, "SELECT count(*) FROM links"), 9742);
    assert_eq!(
        scalar(&db, "SELECT count(DISTINCT user_id) FROM ratings"),
        610
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT movies + ratings + tags + links + users FROM dataset"
        ),
        9742 + 100836 + 3683 + 9742 + 610
    );
    // Popularity is the number of ratings: Forrest Gump (356) is the most rated movie.
    assert_eq!(
        scalar(&db, "SELECT rating_count FROM movies WHERE movie_id = 356"),
        329
    );
    assert_eq!(scalar(&db, "SELECT sum(rating_count) FROM movies"), 100836);
    // Titles keep their quoted commas; years come from the trailing "(YYYY)".
    assert_eq!(
        scalar(
            &db,
            "SELECT year FROM movies WHERE title = 'Matrix, The (1999)'"
        ),
        1999
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM movies WHERE year IS NULL"),
        13
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM movies WHERE title LIKE '% '"),
        0,
        "titles are trimmed"
    );
    // No build file is left next to the catalogue.
    let names = names_in(small_catalogue());
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

#[test]
fn search_finds_prefixes_ignoring_case_and_accents() {
    let termin = search("termin", 20);
    let found = titles(&termin);
    for t in [
        "Terminator, The (1984)",
        "Terminator 2: Judgment Day (1991)",
        "Terminator 3: Rise of the Machines (2003)",
        "Terminator Salvation (2009)",
    ] {
        assert!(found.contains(&t), "{t} not in {found:?}");
    }
    assert_eq!(
        titles(&search("TERMINATOR SALV", 5)),
        vec!["Terminator Salvation (2009)"]
    );

    let mis = search("miserables", 10);
    assert!(
        titles(&mis).contains(&"Misérables, Les (1995)"),
        "{:?}",
        titles(&mis)
    );
    assert!(mis.iter().all(|m| m.title.starts_with("Misérables")));
    // Ties in relevance go to the more rated movie.
    assert!(
        mis.windows(2)
            .all(|w| w[0].rating_count >= w[1].rating_count)
    );
}

#[test]
fn the_matrix_and_matrix_both_rank_the_matrix_first() {
    for text in ["the matrix", "matrix", "Matrix", "THE MATRIX"] {
        let found = search(text, 5);
        assert_eq!(found[0].title, "Matrix, The (1999)", "query {text:?}");
        assert_eq!(found[0].movie_id, 2571);
        assert_eq!(found[0].year, Some(1999));
        assert_eq!(found[0].imdb_id.as_deref(), Some("0133093"));
        assert_eq!(found[0].tmdb_id, Some(603));
        assert_eq!(found[0].genres, vec!["Action", "Sci-Fi", "Thriller"]);
        assert_eq!(found[0].rating_count, 278);
    }
}

#[test]
fn any_user_text_is_safe() {
    let long = "a".repeat(10 * 1024);
    for text in [
        "\"",
        "\"matrix",
        "*",
        "-",
        "-matrix",
        "AND",
        "matrix AND",
        "NEAR(",
        "NEAR(matrix",
        "(",
        ")",
        "()",
        "🎬🍿",
        "matrix 🎬",
        "OR",
        "NOT",
        "^",
        ":",
        "'",
        long.as_str(),
    ] {
        let root = small_catalogue();
        let out = run_cli(
            root,
            // `--` lets text that starts with `-` through the shell-level parser.
            &[
                "search",
                "--json",
                "--database-root",
                root.to_str().unwrap(),
                "--",
                text,
            ],
        );
        assert!(
            out.status.success(),
            "{text:.40?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _: Vec<Movie> = serde_json::from_slice(&out.stdout).unwrap();
    }
    assert!(search("🎬🍿", 10).is_empty());
    assert_eq!(search("(matrix", 1)[0].movie_id, 2571);
    // The table output works too.
    let root = small_catalogue();
    let table = movierec_ok(
        root,
        &[
            "search",
            "toy story",
            "--database-root",
            root.to_str().unwrap(),
        ],
    );
    assert!(table.contains("Toy Story (1995)"), "{table}");
}

#[test]
fn ml_100k_dump_has_the_release_counts_and_decodes_accents() {
    let dir = tempfile::tempdir().unwrap();
    let out = dump_source(
        dir.path(),
        "ml-100k",
        &movielens(MovieLensVersion::Ml100k),
        dir.path(),
    );
    assert!(out.contains("movies   1682"), "{out}");
    let db = dir.path().join("ml-100k.db");
    assert_eq!(scalar(&db, "SELECT count(*) FROM movies"), 1682);
    assert_eq!(scalar(&db, "SELECT count(*) FROM ratings"), 100000);
    assert_eq!(
        scalar(&db, "SELECT count(DISTINCT user_id) FROM ratings"),
        943
    );
    assert_eq!(scalar(&db, "SELECT users FROM dataset"), 943);
    assert_eq!(scalar(&db, "SELECT count(*) FROM links"), 0);
    assert_eq!(scalar(&db, "SELECT count(*) FROM tags"), 0);
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM genres"),
        18,
        "19 flags, `unknown` is none"
    );

    let cat = movierec::catalogue::Catalogue::open_read_only(&db).unwrap();
    let m = cat.movie(543).unwrap().unwrap();
    assert_eq!(m.title, "Misérables, Les (1995)");
    assert_eq!(m.genres, vec!["Drama", "Musical"]);
    let m = cat.movie(1104).unwrap().unwrap();
    assert_eq!(m.title, "C'est arrivé près de chez vous (1992)");
    assert_eq!(
        cat.movie(1).unwrap().unwrap().genres,
        vec!["Animation", "Children's", "Comedy"]
    );
    let unknown = cat.movie(267).unwrap().unwrap();
    assert_eq!((unknown.title.as_str(), unknown.year), ("unknown", None));
    let found = cat.search("c'est arrive pres", 5).unwrap();
    assert_eq!(found[0].movie_id, 1104);
}

#[test]
fn dumping_twice_gives_the_same_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ml-latest-small.db");
    dump_source(
        dir.path(),
        "ml-latest-small",
        &movielens(MovieLensVersion::LatestSmall),
        dir.path(),
    );
    let first = content_digest(&db);
    dump_source(
        dir.path(),
        "ml-latest-small",
        &movielens(MovieLensVersion::LatestSmall),
        dir.path(),
    );
    assert_eq!(content_digest(&db), first);
    assert_eq!(names_in(dir.path()), vec!["ml-latest-small.db"]);
    // The digest does see changes.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE ratings SET rating = 0.5 WHERE user_id = 1 AND movie_id = 1",
        [],
    )
    .unwrap();
    drop(conn);
    assert_ne!(content_digest(&db), first);
}

/// `movierec dump` of ml-latest-small from `server`, into `db` with the zip cache `cache`.
fn download(cwd: &Path, server: &FileServer, db: &Path, cache: &Path) -> std::process::Output {
    run_cli(
        cwd,
        &[
            "dump",
            "--version",
            "ml-latest-small",
            "--movielens-base-url",
            &server.base_url,
            "--database-root",
            db.to_str().unwrap(),
            "--dataset-root",
            cache.to_str().unwrap(),
        ],
    )
}

fn assert_failed_cleanly(
    out: &std::process::Output,
    db: &Path,
    cache: &Path,
    digest: &str,
    says: &str,
) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the dump should fail");
    assert!(stderr.contains(says), "stderr lacks {says:?}:\n{stderr}");
    assert_eq!(
        content_digest(&db.join("ml-latest-small.db")),
        digest,
        "old catalogue changed"
    );
    assert_eq!(
        names_in(db),
        vec!["ml-latest-small.db"],
        "temporary files left"
    );
    assert!(
        names_in(cache)
            .iter()
            .all(|n| !n.contains(".part") && !n.ends_with(".zip")),
        "{:?}",
        names_in(cache)
    );
}

#[test]
fn download_verifies_md5_uses_the_cache_and_keeps_the_old_catalogue_on_failure() {
    let server = FileServer::start();
    let zip = zip_folder(&movielens(MovieLensVersion::LatestSmall), "ml-latest-small");
    let good_md5 = md5_hex(&zip);
    server.put("/ml-latest-small.zip", Some(zip.clone()));
    server.put(
        "/ml-latest-small.zip.md5",
        Some(format!("MD5 (ml-latest-small.zip) = {good_md5}\n").into_bytes()),
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let cache = dir.path().join("datasets");

    // A good download.
    let out = download(dir.path(), &server, &db, &cache);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let catalogue = db.join("ml-latest-small.db");
    assert_eq!(scalar(&catalogue, "SELECT count(*) FROM ratings"), 100836);
    assert_eq!(scalar(&catalogue, "SELECT count(*) FROM tags"), 3683);
    let conn = rusqlite::Connection::open(&catalogue).unwrap();
    let md5: String = conn
        .query_row("SELECT source_md5 FROM dataset", [], |r| r.get(0))
        .unwrap();
    drop(conn);
    assert_eq!(md5, good_md5);
    assert_eq!(
        names_in(&cache),
        vec!["ml-latest-small.zip", "ml-latest-small.zip.md5"]
    );
    let digest = content_digest(&catalogue);

    // The verified cache is used again without any request.
    let before = server.hits().len();
    let out = download(dir.path(), &server, &db, &cache);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        server.hits().len(),
        before,
        "the cached zip was downloaded again"
    );
    assert_eq!(content_digest(&catalogue), digest);

    // A wrong published md5: error, nothing cached, old catalogue intact.
    std::fs::remove_dir_all(&cache).unwrap();
    server.put(
        "/ml-latest-small.zip.md5",
        Some(format!("{}  ml-latest-small.zip\n", "0".repeat(32)).into_bytes()),
    );
    let out = download(dir.path(), &server, &db, &cache);
    assert_failed_cleanly(&out, &db, &cache, &digest, "does not match the published");

    // A corrupt zip (damaged deflate data) whose md5 matches: the CRC check fails.
    let mut corrupt = zip.clone();
    let middle = corrupt.len() / 2;
    for b in &mut corrupt[middle..middle + 64] {
        *b ^= 0x5a;
    }
    server.put("/ml-latest-small.zip", Some(corrupt.clone()));
    server.put(
        "/ml-latest-small.zip.md5",
        Some(md5_hex(&corrupt).into_bytes()),
    );
    let out = download(dir.path(), &server, &db, &cache);
    assert_failed_cleanly(&out, &db, &cache, &digest, "ml-latest-small.zip");

    // A truncated zip and no published md5.
    server.put("/ml-latest-small.zip", Some(zip[..zip.len() / 3].to_vec()));
    server.put("/ml-latest-small.zip.md5", None);
    let out = download(dir.path(), &server, &db, &cache);
    assert_failed_cleanly(&out, &db, &cache, &digest, "not a readable zip");

    // An unreachable server.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = run_cli(
        dir.path(),
        &[
            "dump",
            "--movielens-base-url",
            &format!("http://127.0.0.1:{port}"),
            "--database-root",
            db.to_str().unwrap(),
            "--dataset-root",
            cache.to_str().unwrap(),
        ],
    );
    assert_failed_cleanly(&out, &db, &cache, &digest, "cannot download");
}

#[test]
fn bad_sources_fail_with_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let db_arg = db.to_str().unwrap();

    // A folder without ratings.
    let partial = dir.path().join("partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::copy(
        movielens(MovieLensVersion::LatestSmall).join("movies.csv"),
        partial.join("movies.csv"),
    )
    .unwrap();
    let err = movierec_err(
        dir.path(),
        &[
            "dump",
            "--source",
            partial.to_str().unwrap(),
            "--database-root",
            db_arg,
        ],
    );
    assert!(err.contains("ratings.csv"), "{err}");
    assert!(
        names_in(&db).iter().all(|n| !n.contains(".tmp-")),
        "{:?}",
        names_in(&db)
    );

    // A malformed rating line: the error names the file and the line.
    let broken = dir.path().join("broken");
    copy_folder(&movielens(MovieLensVersion::LatestSmall), &broken);
    let ratings = std::fs::read_to_string(broken.join("ratings.csv")).unwrap();
    let mut lines: Vec<&str> = ratings.lines().collect();
    lines[500] = "7,1,four,964982703";
    std::fs::write(broken.join("ratings.csv"), lines.join("\n")).unwrap();
    let err = movierec_err(
        dir.path(),
        &[
            "dump",
            "--source",
            broken.to_str().unwrap(),
            "--database-root",
            db_arg,
        ],
    );
    assert!(err.contains("ratings.csv line 501"), "{err}");
    assert!(err.contains("rating is not a number"), "{err}");
    assert_eq!(names_in(&db), Vec::<String>::new(), "no build file left");

    // A rating of a movie the release does not list.
    lines[500] = "7,999999999,4.0,964982703";
    std::fs::write(broken.join("ratings.csv"), lines.join("\n")).unwrap();
    let err = movierec_err(
        dir.path(),
        &[
            "dump",
            "--source",
            broken.to_str().unwrap(),
            "--database-root",
            db_arg,
        ],
    );
    assert!(err.contains("ratings.csv line 501"), "{err}");

    // The wrong release for the folder.
    let err = movierec_err(
        dir.path(),
        &[
            "dump",
            "--version",
            "ml-1m",
            "--source",
            movielens(MovieLensVersion::LatestSmall).to_str().unwrap(),
            "--database-root",
            db_arg,
        ],
    );
    assert!(err.contains("movies.dat"), "{err}");

    // An unknown version name.
    let err = movierec_err(
        dir.path(),
        &["dump", "--version", "ml-99m", "--database-root", db_arg],
    );
    assert!(
        err.contains("ml-99m") && err.contains("ml-latest-small"),
        "{err}"
    );

    // A source that does not exist.
    let err = movierec_err(
        dir.path(),
        &[
            "dump",
            "--source",
            "/nonexistent/ml.zip",
            "--database-root",
            db_arg,
        ],
    );
    assert!(err.contains("/nonexistent/ml.zip"), "{err}");

    // Searching before any dump says what to do.
    let err = movierec_err(dir.path(), &["search", "matrix", "--database-root", db_arg]);
    assert!(err.contains("movierec dump"), "{err}");
}
