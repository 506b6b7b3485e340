//! Shared helpers: a throwaway `redis-server`, a real ml-100k catalogue in a temp dir, and the
//! real `movierec` binary spawned as `serve`, `serve --embedded` or `worker`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest any helper waits for a process or a condition.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A free loopback port (bound, then released: another process may take it before its user
/// binds it, so only [`Redis`] uses it, and it retries on another port when that happens).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_target(dir: &Path, name: &str) -> Stdio {
    if std::env::var_os("TEST_LOG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::from(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
    }
}

/// A `redis-server` of our own on a free loopback port; without persistence unless started with
/// [`Redis::start_persistent`].
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    /// The AOF's folder, for a persistent one.
    dir: Option<tempfile::TempDir>,
}

impl Redis {
    pub fn start() -> Self {
        Self::start_in(None)
    }

    /// With the append-only file on (fsync on every write), so that what it accepted survives a
    /// SIGKILL and a restart on the same port and folder.
    pub fn start_persistent() -> Self {
        Self::start_in(Some(tempfile::tempdir().unwrap()))
    }

    /// A port found free may be taken before redis binds it: then try another.
    fn start_in(dir: Option<tempfile::TempDir>) -> Self {
        let mut r = Self {
            port: 0,
            child: None,
            dir,
        };
        for _ in 0..10 {
            r.port = free_port();
            if r.try_start() {
                return r;
            }
        }
        panic!("redis-server could not bind a free port in 10 tries");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it (again) on the same port (and, when persistent, the same folder) and waits
    /// for it to answer.
    pub fn restart(&mut self) {
        assert!(
            self.try_start(),
            "redis-server did not start again on its port"
        );
    }

    /// Spawns redis-server on `self.port`; true once this very process answers (a redis of
    /// another test that holds the port does not count), false when it exited (port taken).
    fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "redis is already running");
        let port = self.port.to_string();
        let mut args = vec!["--port", &port, "--bind", "127.0.0.1", "--save", ""];
        let dir = self
            .dir
            .as_ref()
            .map(|d| d.path().to_str().unwrap().to_owned());
        match &dir {
            Some(dir) => args.extend([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                dir,
            ]),
            None => args.extend(["--appendonly", "no"]),
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        let pid = child.id();
        self.child = Some(child);
        let port = self.port;
        let started = wait_until("redis to answer or exit", TIMEOUT, || {
            if let Ok(Some(_)) = self.child.as_mut().unwrap().try_wait() {
                return Some(false);
            }
            (server_pid(port)? == pid).then_some(true)
        });
        if !started {
            self.child = None;
        }
        started
    }

    /// Kills it (SIGKILL) and waits for it to go.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A synchronous connection for assertions.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

/// The process id of the redis answering on `port`, if one answers.
fn server_pid(port: u16) -> Option<u32> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(b"INFO server\r\n").ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = 0;
    loop {
        let n = s.read(&mut buf[got..]).ok()?;
        if n == 0 {
            break;
        }
        got += n;
        let text = String::from_utf8_lossy(&buf[..got]);
        if let Some(at) = text.find("process_id:") {
            let rest = &text[at + "process_id:".len()..];
            if let Some(end) = rest.find("\r\n") {
                return rest[..end].trim().parse().ok();
            }
        }
        if got == buf.len() {
            break;
        }
    }
    None
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The extracted ml-100k folder (see `tests/support/movielens.rs`).
pub fn ml100k_dir() -> PathBuf {
    crate::movielens::movielens(movierec::config::MovieLensVersion::Ml100k)
}

/// Builds `<dir>/ml-100k.db` from the real ml-100k files with the library's own dump.
pub fn build_catalogue(dir: &Path) -> PathBuf {
    let report = movierec::catalogue::dump::dump(&movierec::catalogue::dump::DumpOptions {
        version: movierec::config::MovieLensVersion::Ml100k,
        source: Some(ml100k_dir()),
        database_root: dir.to_path_buf(),
        dataset_root: dir.join("datasets"),
        base_url: "http://127.0.0.1:9/unused".into(),
    })
    .unwrap();
    report.path
}

/// A spawned `movierec` process.
pub struct Proc {
    child: Option<Child>,
    pub port: u16,
    /// Its JSON log (stderr), for servers.
    log: Option<PathBuf>,
}

impl Proc {
    /// Waits until the process logs `message` with the `port` it bound (it was started on port
    /// 0), and returns that port; panics with its log if `who` exits first.
    fn logged_port(&mut self, who: &str, message: &str) -> u16 {
        wait_until(&format!("{who} to log its port"), TIMEOUT, || {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{who} exited ({status}): {:?}", self.log_lines());
            }
            self.log_lines()
                .iter()
                .find(|l| l["message"] == message)
                .and_then(|l| l["port"].as_u64())
                .map(|p| u16::try_from(p).unwrap())
        })
    }

    /// The JSON lines it has logged so far.
    pub fn log_lines(&self) -> Vec<Value> {
        let Some(log) = &self.log else {
            return Vec::new();
        };
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_exit()
    }

    /// Kills it with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if start.elapsed() > TIMEOUT {
                let _ = child.kill();
                panic!("process did not exit in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::env::var_os("TEST_LOG").is_some()
            && let Some(log) = &self.log
        {
            eprintln!("{}", std::fs::read_to_string(log).unwrap_or_default());
        }
    }
}

/// A test environment: a temp dir holding the catalogue, and the settings every process gets.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub vars: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        build_catalogue(dir.path());
        let vars = vec![
            ("DATABASE_ROOT", dir.path().to_str().unwrap()),
            ("MOVIELENS_VERSION", "ml-100k"),
            ("RECSYS_HOST", "127.0.0.1"),
            ("RECSYS_HEARTBEAT_SECS", "1"),
            ("RECSYS_REDIS_TIMEOUT_MS", "500"),
            ("RECSYS_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Self { dir, vars }
    }

    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.vars.push((key.to_owned(), value.to_owned()));
        self
    }

    fn command(&self, args: &[&str], extra: &[(&str, &str)], log: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_movierec"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_target(self.dir.path(), log))
            .stderr(log_target(self.dir.path(), &format!("{log}.err")));
        cmd
    }

    /// `movierec serve [extra args]` on port 0; reads the port it bound from its JSON log and
    /// returns once it answers `/health`.
    pub fn serve(&self, args: &[&str], extra: &[(&str, &str)]) -> Proc {
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        let name = format!("serve-{}", SERIAL.fetch_add(1, Ordering::Relaxed));
        let log = self.dir.path().join(format!("{name}.err.log"));
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let mut env: Vec<(&str, &str)> = vec![("RECSYS_PORT", "0")];
        env.extend_from_slice(extra);
        let child = self
            .command(&all, &env, &name)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut proc = Proc {
            child: Some(child),
            port: 0,
            log: Some(log),
        };
        proc.port = proc.logged_port("the server", "API listening");
        let url = format!("{}/health", proc.base());
        wait_until("the server to answer /health", TIMEOUT, || {
            client().get(&url).send().ok().map(|_| ())
        });
        proc
    }

    /// `movierec worker` with its metrics server on port 0; returns once it has logged the
    /// port it bound (in `Proc::port`).
    pub fn worker_with_metrics(&self, name: &str, extra: &[(&str, &str)]) -> Proc {
        let log = self.dir.path().join(format!("worker-{name}.err.log"));
        let mut env: Vec<(&str, &str)> = vec![
            ("RECSYS_WORKER_NAME", name),
            ("RECSYS_WORKER_METRICS_PORT", "0"),
        ];
        env.extend_from_slice(extra);
        let child = self
            .command(&["worker"], &env, &format!("worker-{name}"))
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut proc = Proc {
            child: Some(child),
            port: 0,
            log: Some(log),
        };
        proc.port = proc.logged_port("the worker", "worker metrics at /metrics");
        proc
    }

    /// Runs `movierec <args>` to completion (a command that ends by itself); returns its
    /// output.
    pub fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_movierec"))
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `movierec worker`.
    pub fn worker(&self, name: &str, extra: &[(&str, &str)]) -> Proc {
        let mut env: Vec<(&str, &str)> = vec![("RECSYS_WORKER_NAME", name)];
        env.extend_from_slice(extra);
        let child = self
            .command(&["worker"], &env, &format!("worker-{name}"))
            .spawn()
            .unwrap();
        Proc {
            child: Some(child),
            port: 0,
            log: None,
        }
    }
}

/// A blocking HTTP client with a bounded timeout, shared so its connections are reused.
pub fn client() -> reqwest::blocking::Client {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap()
        })
        .clone()
}

/// POSTs a JSON body to `/recommend{query}`; returns (status, headers' Retry-After, body).
pub fn post_recommend(base: &str, query: &str, body: &Value) -> (u16, Option<String>, Value) {
    let res = client()
        .post(format!("{base}/recommend{query}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let json = serde_json::from_str(&res.text().unwrap()).unwrap_or(Value::Null);
    (status, retry, json)
}

/// GETs a text document (such as `/metrics`) that must answer 200.
pub fn get_text(url: &str) -> String {
    let res = client().get(url).send().unwrap();
    assert_eq!(res.status().as_u16(), 200, "{url}");
    res.text().unwrap()
}

/// An answer: status, headers and JSON body (`null` when the body is not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// A header's value, if it is there.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `req` and reads the whole answer.
pub fn send(req: reqwest::blocking::RequestBuilder) -> Answer {
    let res = req.send().unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = serde_json::from_str(&res.text().unwrap()).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// GETs `url`; returns the whole answer.
pub fn get(url: &str) -> Answer {
    send(client().get(url))
}

/// Builds a tiny, untrained SASRec checkpoint over ml-100k's movies 1 to 20 in `<root>/tiny`:
/// enough for a server to load a real checkpoint.
pub fn tiny_checkpoint(root: &Path) -> PathBuf {
    named_tiny_checkpoint(root, "tiny", 7)
}

/// [`tiny_checkpoint`] in `<root>/<name>`, its weights drawn with `seed`.
pub fn named_tiny_checkpoint(root: &Path, name: &str, seed: u64) -> PathBuf {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use movierec::config::MovieLensVersion;
    use movierec::model::checkpoint::{self, CheckpointConfig, DataSettings};
    use movierec::model::{Architecture, ItemVocab, ModelConfig, SeqModel, reinitialise};
    let items = 20;
    let cfg = ModelConfig {
        architecture: Architecture::SasRec,
        items,
        hidden: 8,
        layers: 1,
        heads: 2,
        max_len: 8,
        dropout: 0.1,
    };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    SeqModel::load(vb, &cfg).unwrap();
    reinitialise(&varmap, seed).unwrap();
    let dir = root.join(name);
    let config = CheckpointConfig {
        format: checkpoint::FORMAT,
        dataset: MovieLensVersion::Ml100k,
        model: cfg,
        vocab: ItemVocab::new((1..=items as i64).collect()),
        popularity: (0..items as u32).collect(),
        data: DataSettings::default(),
        training: Value::Null,
        best_epoch: 1,
        metrics: Value::Null,
        created_at: 1,
        commit: None,
    };
    checkpoint::save(&dir, &varmap, &config).unwrap();
    dir
}

/// GETs a JSON document; returns (status, body).
pub fn get_json(url: &str) -> (u16, Value) {
    let res = client().get(url).send().unwrap();
    let status = res.status().as_u16();
    (
        status,
        serde_json::from_str(&res.text().unwrap()).unwrap_or(Value::Null),
    )
}

/// Polls a job until it is done or failed.
pub fn poll_until_finished(base: &str, job_id: &str) -> Value {
    let url = format!("{base}/recommend/{job_id}");
    wait_until("the job to finish", TIMEOUT, || {
        let (status, body) = get_json(&url);
        assert_eq!(status, 200, "{body}");
        matches!(body["status"].as_str(), Some("done" | "failed")).then_some(body)
    })
}

/// Checks a finished job's result against its request: k items, none from the sequence or
/// the avoided list, each with a catalogue title, scores not increasing.
pub fn assert_good_result(body: &Value, sequence: &[i64], avoided: &[i64], k: usize) {
    assert_eq!(body["status"], "done", "{body}");
    let items = body["result"]["items"].as_array().unwrap();
    assert_eq!(items.len(), k, "{body}");
    let mut last = f64::INFINITY;
    for item in items {
        let id = item["movie_id"].as_i64().unwrap();
        assert!(
            !sequence.contains(&id) && !avoided.contains(&id),
            "{id} was excluded"
        );
        assert!(!item["title"].as_str().unwrap().is_empty());
        assert!(item["genres"].is_array());
        let score = item["score"].as_f64().unwrap();
        assert!(score <= last);
        last = score;
    }
    assert_eq!(body["result"]["model"]["architecture"], "popularity");
    assert_eq!(body["result"]["model"]["dataset"], "ml-100k");
}
