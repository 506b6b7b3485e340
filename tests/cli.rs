//! The operator's command line, on the real `movierec` binary: the program's own `--version`,
//! `--dataset` and its old name, log formats, errors said once with the command that fixes them,
//! `dump` recognising a release from its files, a malformed `.env`, `serve`'s worker-only
//! flags, an empty or blank secret, and the popularity fallback that makes a service not ready.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
/// Longest a spawned server may take to do what a test waits for.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A small release in ml-100k's layout (`u.genre`, `u.item`, `u.data`), made up in `dir`: 20
/// movies, 30 users with 8 ratings each. What these tests check needs the layout, not the data.
fn small_ml100k(dir: &Path) -> PathBuf {
    let folder = dir.join("ml-100k-shaped");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("u.genre"), "unknown|0\nAction|1\nComedy|2\n\n").unwrap();
    let movies: String = (1..=20)
        .map(|m| {
            format!(
                "{m}|Movie {m} (19{})|01-Jan-19{}||http://x|0|{}|{}\n",
                70 + m,
                70 + m,
                m % 2,
                1 - m % 2
            )
        })
        .collect();
    std::fs::write(folder.join("u.item"), movies).unwrap();
    let ratings: String = (1..=30)
        .flat_map(|u| (0..8).map(move |j| (u, (u * 3 + j) % 20 + 1, j)))
        .map(|(u, m, j)| format!("{u}\t{m}\t{}\t{}\n", 1 + (u + j) % 5, 880_000_000 + 60 * j))
        .collect();
    std::fs::write(folder.join("u.data"), ratings).unwrap();
    folder
}

/// `movierec <args>` in `cwd` with only the given environment (no `.env` above a temp dir).
fn movierec(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_movierec"));
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

fn run(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    movierec(cwd, args, env).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command that must fail; returns its stderr.
fn fails(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(cwd, args, env);
    assert!(
        !out.status.success(),
        "{args:?} succeeded:\n{}",
        stderr(&out)
    );
    stderr(&out)
}

/// The lines of `text` that start with `error:`.
fn error_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("error:")).collect()
}

/// Dumps [`small_ml100k`] into `root` (recognised from its files).
fn dump_ml100k(root: &Path) {
    let source = small_ml100k(root);
    let out = run(
        root,
        &[
            "dump",
            "--source",
            source.to_str().unwrap(),
            "--database-root",
            root.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_program_version_is_the_top_level_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["--version"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("movierec {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_missing_catalogue_names_the_dump_of_the_release_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let want = format!("movierec dump --dataset ml-1m --database-root {root}");
    // `train` used to say "run `movierec dump` first", which dumps ml-latest-small.
    let err = fails(
        dir.path(),
        &["train", "--dataset", "ml-1m", "--database-root", root],
        &[],
    );
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("ml-latest-small"), "{err}");
    // The old flag name still works, for one release, and says it is going.
    let err = fails(
        dir.path(),
        &[
            "search",
            "--version",
            "ml-1m",
            "--database-root",
            root,
            "--log-format",
            "plain",
            "matrix",
        ],
        &[],
    );
    assert!(err.contains(&want), "{err}");
    assert!(
        err.contains("`--version` for the release is now `--dataset`"),
        "{err}"
    );
    // The environment names the release too.
    let err = fails(
        dir.path(),
        &["search", "--database-root", root, "matrix"],
        &[("MOVIELENS_VERSION", "ml-100k")],
    );
    assert!(err.contains("movierec dump --dataset ml-100k"), "{err}");
}

#[test]
fn an_error_and_its_causes_are_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let recommend_from = |checkpoint: &Path| {
        let args = [
            "recommend",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--sequence",
            "1",
        ];
        fails(dir.path(), &args, &[])
    };
    let missing = dir.path().join("x");
    let err = recommend_from(&missing);
    assert_eq!(error_lines(&err).len(), 1, "{err}");
    assert!(!err.contains("Caused by"), "{err}");
    assert_eq!(err.matches(missing.to_str().unwrap()).count(), 1, "{err}");
    assert!(err.contains("`movierec train`"), "{err}");

    // A checkpoint whose config does not parse: the parser's message is part of two errors'
    // messages in the chain, and printed once.
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("config.json"), "{").unwrap();
    std::fs::write(broken.join("model.safetensors"), "").unwrap();
    let err = recommend_from(&broken);
    assert_eq!(error_lines(&err).len(), 1, "{err}");
    assert_eq!(err.matches("EOF while parsing").count(), 1, "{err}");
    assert!(err.contains("train it again, or pass another one"), "{err}");
}

#[test]
fn dump_recognises_the_release_from_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let source = small_ml100k(dir.path());
    // `.env`'s release gives way to what the files hold.
    let out = run(
        dir.path(),
        &[
            "dump",
            "--source",
            source.to_str().unwrap(),
            "--database-root",
            root,
        ],
        &[("MOVIELENS_VERSION", "ml-latest-small")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("release  ml-100k"), "{stdout}");
    assert!(dir.path().join("ml-100k.db").is_file());
    assert!(!dir.path().join("ml-latest-small.db").exists());
    // A release typed on the command line must match the files.
    let err = fails(
        dir.path(),
        &[
            "dump",
            "--dataset",
            "ml-latest-small",
            "--source",
            source.to_str().unwrap(),
            "--database-root",
            root,
        ],
        &[],
    );
    assert!(err.contains("holds ml-100k, not ml-latest-small"), "{err}");
    // A folder that holds no release says so.
    let empty = tempfile::tempdir().unwrap();
    let err = fails(
        dir.path(),
        &[
            "dump",
            "--source",
            empty.path().to_str().unwrap(),
            "--database-root",
            root,
        ],
        &[],
    );
    assert!(err.contains("holds no MovieLens release"), "{err}");
}

#[test]
fn a_malformed_env_file_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "# settings\nRUST_LOG=info\nDATABASE_ROOT resources/db\nMOVIELENS_VERSION=ml-100k\n",
    )
    .unwrap();
    let err = fails(dir.path(), &["search", "matrix"], &[]);
    assert_eq!(error_lines(&err).len(), 1, "{err}");
    assert!(err.contains(".env, line 3"), "{err}");
    assert!(err.contains("`DATABASE_ROOT resources/db`"), "{err}");
    // Fixed, the settings after that line apply again.
    std::fs::write(
        dir.path().join(".env"),
        "DATABASE_ROOT=db\nMOVIELENS_VERSION=ml-100k\n",
    )
    .unwrap();
    let err = fails(dir.path(), &["search", "matrix"], &[]);
    assert!(
        err.contains("movierec dump --dataset ml-100k --database-root db"),
        "{err}"
    );
}

#[test]
fn serve_refuses_embedded_worker_flags_without_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(
        dir.path(),
        &["serve", "--batch-size", "8", "--concurrency", "2"],
        &[],
    );
    assert!(err.contains("--concurrency, --batch-size"), "{err}");
    assert!(err.contains("add --embedded"), "{err}");
    // From the environment (as `.env_org` sets them) they are no error: this serve goes on to
    // fail on the missing catalogue instead.
    let err = fails(
        dir.path(),
        &["serve", "--database-root", dir.path().to_str().unwrap()],
        &[("RECSYS_BATCH_SIZE", "8")],
    );
    assert!(!err.contains("--embedded"), "{err}");
    assert!(err.contains("no catalogue"), "{err}");
    // `--help` groups them under their own heading.
    let out = run(dir.path(), &["serve", "--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    let heading = help
        .find("Embedded worker (only with --embedded)")
        .unwrap_or_else(|| panic!("{help}"));
    assert!(help[heading..].contains("--batch-size"), "{help}");
    assert!(!help[..heading].contains("--batch-size"), "{help}");
}

/// Runs `cmd` to its end, or kills it after 20 s (a server that should have refused to start).
fn output_within(mut cmd: Command) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: std::fs::read(out_path).unwrap(),
        stderr: std::fs::read(err_path).unwrap(),
    }
}

#[test]
fn an_empty_or_blank_secret_stops_every_command_that_takes_it() {
    // A catalogue exists, so a command that let the secret through would go on and serve.
    let dir = tempfile::tempdir().unwrap();
    dump_ml100k(dir.path());
    let root = dir.path().to_str().unwrap();
    let serve = [
        "serve",
        "--embedded",
        "--dataset",
        "ml-100k",
        "--database-root",
        root,
        "--port",
        "0",
    ];
    let demo = [
        "demo",
        "--dataset",
        "ml-100k",
        "--database-root",
        root,
        "--train-secs",
        "1",
        "--port",
        "0",
    ];
    for args in [&serve[..], &demo[..]] {
        for value in ["", "   ", "\t"] {
            let out = output_within(movierec(dir.path(), args, &[("RECSYS_SECRET", value)]));
            assert!(!out.status.success(), "{args:?} with {value:?} started");
            let err = stderr(&out);
            assert!(
                err.contains("empty or blank"),
                "{args:?} with {value:?}: {err}"
            );
            assert!(err.contains("unset it"), "the next step is named: {err}");
        }
    }
    let mut with_flag = serve.to_vec();
    with_flag.extend(["--secret", " "]);
    let err = stderr(&output_within(movierec(dir.path(), &with_flag, &[])));
    assert!(err.contains("empty or blank"), "{err}");
}

#[test]
fn logs_are_json_off_a_terminal_and_plain_without_colour_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    // The warning about the old flag name is a log line; stderr here is a pipe.
    let args = ["search", "--version", "ml-1m", "--database-root", root, "x"];
    let err = fails(dir.path(), &args, &[]);
    let line = err
        .lines()
        .find(|l| l.contains("now `--dataset`"))
        .unwrap_or_else(|| panic!("{err}"));
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(json["level"], "WARN", "{line}");
    assert!(
        json["message"].as_str().unwrap().contains("--dataset"),
        "{line}"
    );
    // The error itself stays one plain line.
    assert_eq!(error_lines(&err).len(), 1, "{err}");

    let mut plain = args.to_vec();
    plain.extend(["--log-format", "plain"]);
    let err = fails(dir.path(), &plain, &[]);
    assert!(!err.contains('\u{1b}'), "escape codes: {err:?}");
    assert!(!err.trim_start().starts_with('{'), "{err}");
    assert!(err.contains("WARN"), "{err}");
    // The environment picks the format too.
    let err = fails(dir.path(), &args, &[("RECSYS_LOG_FORMAT", "plain")]);
    assert!(!err.contains("{\""), "{err}");
}

/// A `movierec serve --embedded` child, killed on drop so that a failing test leaves nothing
/// running.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The JSON log lines in `log` so far.
fn log_lines(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Starts `serve --embedded` on ml-100k with no checkpoint, on port 0; once it listens, checks
/// that it answers `/health` and returns its JSON log lines.
fn serve_without_checkpoint(root: &Path, extra: &[&str], name: &str) -> Vec<serde_json::Value> {
    let log = root.join(format!("{name}.log"));
    let mut args = vec!["serve", "--embedded", "--dataset", "ml-100k", "--port", "0"];
    args.extend_from_slice(extra);
    let checkpoints = root.join("checkpoints");
    let env = [
        ("DATABASE_ROOT", root.to_str().unwrap()),
        ("CHECKPOINT_ROOT", checkpoints.to_str().unwrap()),
    ];
    let child = movierec(root, &args, &env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let start = Instant::now();
    let port = loop {
        let listening = log_lines(&log)
            .into_iter()
            .find(|l| l["message"] == "API listening");
        if let Some(port) = listening.and_then(|l| l["port"].as_u64()) {
            break u16::try_from(port).unwrap();
        }
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("the server exited ({status}):\n{:?}", log_lines(&log));
        }
        assert!(start.elapsed() < TIMEOUT, "{:?}", log_lines(&log));
        std::thread::sleep(Duration::from_millis(50));
    };
    // It answers: popularity serves either way.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    log_lines(&log)
}

#[test]
fn a_popularity_fallback_is_a_warning_and_not_ready_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    dump_ml100k(dir.path());
    let loaded = |logs: &[serde_json::Value]| {
        logs.iter()
            .find(|l| l["message"] == "model loaded")
            .cloned()
            .unwrap_or_else(|| panic!("{logs:?}"))
    };
    let logs = serve_without_checkpoint(dir.path(), &[], "fallback");
    assert!(
        logs.iter().any(|l| {
            let m = l["message"].as_str().unwrap_or_default();
            l["level"] == "WARN"
                && m.contains("no checkpoint of ml-100k")
                && m.contains("movierec train --dataset ml-100k")
        }),
        "{logs:?}"
    );
    assert_eq!(loaded(&logs)["architecture"], "popularity");
    assert_eq!(loaded(&logs)["ready"], false);

    let logs = serve_without_checkpoint(dir.path(), &["--allow-popularity-fallback"], "allowed");
    assert!(logs.iter().all(|l| l["level"] != "WARN"), "{logs:?}");
    assert_eq!(loaded(&logs)["ready"], true);
}
