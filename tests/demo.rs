//! The demo page, driven in headless Chromium through the path a person takes: search, add to
//! the sequence and the avoided list, set K, submit, walk one recommendation, clear.
//!
//! Needs Debian's `chromium` and `chromedriver` (`.ci/run` installs them). It runs against the
//! real binary in embedded mode, over a catalogue dumped from ml-latest-small (found by `support/movielens.rs`) and a
//! tiny checkpoint trained in the test, with `RECSYS_SECRET` set: the person signs in once on the
//! page's form, and the page then works on its signed session cookie, the secret itself never
//! sent back to the browser.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator, elements::Element};
use hyper_util::client::legacy::connect::HttpConnector;
use movierec::config::MovieLensVersion;

#[path = "support/movielens.rs"]
mod movielens;

const SECRET: &str = "browser-test-secret-5b1f";

/// Kills the child process when dropped, so a failing test leaves nothing running.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn latest_small() -> PathBuf {
    movielens::movielens(MovieLensVersion::LatestSmall)
}

fn movierec(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_movierec"));
    cmd.current_dir(root)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("RAYON_NUM_THREADS", "2")
        .env("DATABASE_ROOT", root.join("db"))
        .env("DATASET_ROOT", root.join("datasets"))
        .env("CHECKPOINT_ROOT", root.join("checkpoints"))
        .env("MOVIELENS_VERSION", "ml-latest-small");
    cmd
}

fn run_ok(mut cmd: Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on {port} within 60 s");
}

async fn wait_for_count(client: &fantoccini::Client, css: &str, want: usize) -> Vec<Element> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = client.find_all(Locator::Css(css)).await.unwrap();
        if found.len() == want {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "expected {want} elements for `{css}`, found {}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks `button` on the search result titled `title`, if the list shows it now.
async fn click_result(
    client: &fantoccini::Client,
    title: &str,
    button: &str,
) -> Result<Option<i64>, fantoccini::error::CmdError> {
    for li in client.find_all(Locator::Css("#search-results li")).await? {
        let shown = li.find(Locator::Css(".title")).await?.text().await?;
        if shown == title {
            let id = li.attr("data-movie-id").await?.and_then(|v| v.parse().ok());
            li.find(Locator::Css(button)).await?.click().await?;
            return Ok(id);
        }
    }
    Ok(None)
}

/// Types `query` into the search box and clicks `button` on the result whose title is `title`.
/// The list is re-rendered as results arrive, so a stale element just means "look again".
async fn search_and_add(
    client: &fantoccini::Client,
    query: &str,
    title: &str,
    button: &str,
) -> i64 {
    let input = client.find(Locator::Id("search-q")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(query).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(id)) = click_result(client, title, button).await {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "no search result titled {title:?} for {query:?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Clicks the element `at` points to.
async fn click(client: &fantoccini::Client, at: Locator<'_>) {
    client.find(at).await.unwrap().click().await.unwrap();
}

async fn ids_of(client: &fantoccini::Client, css: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    for li in client.find_all(Locator::Css(css)).await.unwrap() {
        ids.push(
            li.attr("data-movie-id")
                .await
                .unwrap()
                .unwrap()
                .parse()
                .unwrap(),
        );
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_walks_through_the_demo_page() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    let mut dump = movierec(root);
    dump.args(["dump", "--source"]).arg(latest_small());
    run_ok(dump);
    let mut train = movierec(root);
    train.args([
        "train",
        "--epochs",
        "2",
        "--hidden",
        "16",
        "--layers",
        "1",
        "--heads",
        "1",
        "--max-len",
        "20",
        "--seed",
        "7",
    ]);
    run_ok(train);

    let port = free_port();
    let mut server = movierec(root);
    server
        .args(["serve", "--embedded"])
        .env("RECSYS_HOST", "127.0.0.1")
        .env("RECSYS_PORT", port.to_string())
        .env("RECSYS_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut server = Reaper(server.spawn().unwrap());
    wait_for_port(port, &mut server.0, "movierec serve");

    let driver_port = free_port();
    let mut driver = Reaper(
        Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (apt-get install chromium-driver)"),
    );
    wait_for_port(driver_port, &mut driver.0, "chromedriver");

    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1600"],
        }),
    );
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    client.goto(&format!("{base}/")).await.unwrap();
    // 0. The page asks for the secret once.
    assert!(
        client
            .find_all(Locator::Id("search-form"))
            .await
            .unwrap()
            .is_empty(),
        "the app is not shown before sign-in"
    );
    let secret = client.find(Locator::Id("secret")).await.unwrap();
    secret.send_keys("not-the-secret").await.unwrap();
    click(&client, Locator::Id("sign-in")).await;
    let refused = client
        .wait()
        .for_element(Locator::Id("sign-in-error"))
        .await
        .unwrap();
    assert!(refused.text().await.unwrap().contains("not the secret"));
    let secret = client
        .wait()
        .for_element(Locator::Id("secret"))
        .await
        .unwrap();
    secret.send_keys(SECRET).await.unwrap();
    click(&client, Locator::Id("sign-in")).await;
    client
        .wait()
        .for_element(Locator::Id("search-form"))
        .await
        .unwrap();
    assert!(client.source().await.unwrap().contains("movierec"));
    assert!(
        !client.source().await.unwrap().contains(SECRET),
        "the secret is never sent back to the browser"
    );

    // 1–2. Search "toy story" and add Toy Story (1995).
    let toy = search_and_add(&client, "toy story", "Toy Story (1995)", ".add-seq").await;
    assert_eq!(toy, 1);
    // 3. Two more.
    let matrix = search_and_add(&client, "matrix", "Matrix, The (1999)", ".add-seq").await;
    let shrek = search_and_add(&client, "shrek", "Shrek (2001)", ".add-seq").await;
    // 4. One avoided.
    let avoided = search_and_add(&client, "toy story 2", "Toy Story 2 (1999)", ".add-avoid").await;
    let sequence = ids_of(&client, "#sequence-chips li").await;
    assert_eq!(sequence, vec![toy, matrix, shrek]);
    assert_eq!(ids_of(&client, "#avoided-chips li").await, vec![avoided]);

    // 5. K = 5, submit.
    let k = client.find(Locator::Id("k")).await.unwrap();
    k.clear().await.unwrap();
    k.send_keys("5").await.unwrap();
    click(&client, Locator::Id("submit")).await;

    // 6. Five results, none in the sequence or avoided.
    let results = wait_for_count(&client, "#results li", 5).await;
    let got = ids_of(&client, "#results li").await;
    assert_eq!(got.len(), 5);
    for id in &got {
        assert!(
            !sequence.contains(id) && *id != avoided,
            "{id} must not be recommended"
        );
    }
    for li in &results {
        let title = li
            .find(Locator::Css(".title"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!title.is_empty(), "every result shows its title");
    }
    let error = client.find(Locator::Id("form-error")).await.unwrap();
    assert!(
        error.attr("hidden").await.unwrap().is_some(),
        "no error is shown"
    );
    // The answer names the model that gave it: the BERT4Rec `train` made above.
    let note = client
        .find(Locator::Id("res-note"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(note.contains("Answered by bert4rec."), "{note}");
    let shot = client.screenshot().await.unwrap();
    let shot_dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(shot_dir.join("demo-results.png"), &shot).unwrap();
    assert!(shot.starts_with(b"\x89PNG"));

    // 7. Walk: add the first recommendation to the sequence.
    results[0]
        .find(Locator::Css(".add-seq"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let walked = ids_of(&client, "#sequence-chips li").await;
    assert_eq!(walked, vec![toy, matrix, shrek, got[0]]);

    // 8. Clear resets everything.
    click(&client, Locator::Id("clear")).await;
    wait_for_count(&client, "#sequence-chips li", 0).await;
    wait_for_count(&client, "#avoided-chips li", 0).await;
    wait_for_count(&client, "#results li", 0).await;
    let k_value = client
        .find(Locator::Id("k"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(k_value.as_deref(), Some("10"));

    client.close().await.unwrap();
}

/// Starts `movierec demo` on a free port with its stdout in `log`, and waits until it listens.
/// Returns the process, the seconds it took to listen, and the port.
///
/// The other test of this file picks free ports at the same time, so a port can be taken
/// between the pick and the demo's bind: the demo must print its own URL, and still run once
/// the port answers (a demo that could not bind exits at once); otherwise it starts again on
/// another port.
fn start_demo(root: &Path, log: &Path) -> (Reaper, f64, u16) {
    let mut failures = Vec::new();
    for _ in 0..3 {
        let port = free_port();
        let mut demo = movierec(root);
        demo.args(["demo", "--train-secs", "10", "--source"])
            .arg(latest_small())
            .env("RECSYS_HOST", "127.0.0.1")
            .env("RECSYS_PORT", port.to_string())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(Stdio::inherit());
        let started = Instant::now();
        let mut child = Reaper(demo.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(300);
        let url = format!("open http://127.0.0.1:{port}/");
        let exited = loop {
            if let Ok(Some(status)) = child.0.try_wait() {
                break status;
            }
            let printed = std::fs::read_to_string(log).is_ok_and(|out| out.contains(&url));
            if printed && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let listened = started.elapsed().as_secs_f64();
                std::thread::sleep(Duration::from_millis(300));
                match child.0.try_wait() {
                    Ok(None) => return (child, listened, port),
                    Ok(Some(status)) => break status,
                    Err(e) => panic!("cannot wait for movierec demo: {e}"),
                }
            }
            assert!(Instant::now() < deadline, "movierec demo did not listen");
            std::thread::sleep(Duration::from_millis(100));
        };
        failures.push(format!(
            "port {port}: exited with {exited}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        ));
    }
    panic!("movierec demo did not start:\n{}", failures.join("\n"));
}

/// `movierec demo` on a fresh folder dumps, trains within its budget, prints the validation
/// score and the URL, then serves recommendations from the model it trained; a second run
/// reuses both and listens within seconds.
#[test]
fn the_demo_command_prepares_once_then_reuses() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let first_log = root.join("first.log");
    let (first, _, port) = start_demo(root, &first_log);
    let out = std::fs::read_to_string(&first_log).unwrap();
    assert!(out.contains("dumping ml-latest-small"), "{out}");
    assert!(out.contains("validation NDCG@10"), "{out}");
    assert!(
        out.contains(&format!("open http://127.0.0.1:{port}/")),
        "{out}"
    );
    let health = http
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    drop(first);
    let checkpoints: Vec<_> = std::fs::read_dir(root.join("checkpoints"))
        .unwrap()
        .collect();
    assert_eq!(checkpoints.len(), 1, "one checkpoint was trained");

    let second_log = root.join("second.log");
    let (_second, seconds, port) = start_demo(root, &second_log);
    let out = std::fs::read_to_string(&second_log).unwrap();
    assert!(out.contains("catalogue: reusing"), "{out}");
    assert!(out.contains("model: reusing"), "{out}");
    assert!(
        seconds < 30.0,
        "the second run listened after {seconds:.1} s"
    );
    let body = serde_json::json!({"sequence": [1, 2571, 4306], "avoided": [3114], "k": 5});
    let text = http
        .post(format!("http://127.0.0.1:{port}/recommend?wait_ms=10000"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap()
        .text()
        .unwrap();
    let done: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(done["status"], "done", "{done}");
    let result = &done["result"];
    assert_eq!(result["fallback"], false, "{done}");
    let trained = checkpoints[0].as_ref().unwrap().file_name();
    assert_eq!(
        result["model"]["checkpoint"].as_str(),
        trained.to_str(),
        "the trained model answered: {done}"
    );
    assert_eq!(
        result["model"]["architecture"], "sasrec",
        "the demo serves SASRec: {done}"
    );
    let items = result["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    for item in items {
        let id = item["movie_id"].as_i64().unwrap();
        assert!(
            ![1, 2571, 4306, 3114].contains(&id),
            "{id} must not come back"
        );
    }
    let count = std::fs::read_dir(root.join("checkpoints")).unwrap().count();
    assert_eq!(count, 1, "the second run trained nothing");
}
