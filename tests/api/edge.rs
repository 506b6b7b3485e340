//! Limits at the edge: a body that stalls is cut at the request timeout (408, connection
//! closed), an oversized `Content-Length` is refused before its body, 2,000 stalled uploads
//! from one client neither exhaust the server nor keep it from answering others, and a
//! connection over `RECSYS_MAX_CONNECTIONS` gets a clear 503 rather than no answer.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use super::helpers::*;

/// Stalled uploads the test holds open at once.
const STALLED: usize = 2_000;

/// The server's resident memory in KiB, from `/proc` (`None` off Linux).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A connection that sends a request head declaring `content_length` and then `body_part`.
fn open(port: u16, head: &str, body_part: &str) -> TcpStream {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body_part.as_bytes()).unwrap();
    s
}

/// Reads until the server closes the connection (or resets it); panics if it stays open
/// for `within`. Returns what was read.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> String {
    s.set_read_timeout(Some(within)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "the server kept a stalled connection open for {within:?}; read so far: {:?}",
                    String::from_utf8_lossy(&out)
                )
            }
            Err(e) => panic!("{e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn upload_head(path: &str, content_length: u64) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {content_length}\r\n\r\n"
    )
}

#[test]
fn an_oversized_length_is_refused_before_its_body_and_no_unread_body_holds_a_connection() {
    let env = Env::new();
    let server = env.serve(&["--embedded"], &[("RECSYS_SECRET", "edge-secret")]);
    for path in ["/recommend", "/health"] {
        let mut s = open(server.port, &upload_head(path, 1_000_000_000_000), "{");
        let answer = read_until_closed(&mut s, Duration::from_secs(15));
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(answer.contains("payload_too_large"), "{answer}");
    }
    // A chunked body that stalls, on routes that answer without reading it: the answer comes,
    // and the connection is closed rather than kept waiting for the rest.
    for (method, path, status) in [("POST", "/recommend", "401"), ("GET", "/health", "200")] {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let mut s = open(server.port, &head, "5\r\n{\"seq\r\n");
        let answer = read_until_closed(&mut s, Duration::from_secs(15));
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {answer}"
        );
    }
}

#[test]
fn stalled_uploads_are_cut_and_the_api_still_answers() {
    // The test process holds 2,000 sockets at once: make sure it may.
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        limit >= (STALLED + 500) as u64,
        "this test needs an open-file limit of {} (ulimit -n is {limit})",
        STALLED + 500
    );
    let env = Env::new();
    let server = env.serve(&["--embedded"], &[("RECSYS_REQUEST_TIMEOUT_MS", "3000")]);
    let base = server.base();
    let rss_start = rss_kib(server.pid());

    // Most declare their length; one in ten is chunked, which actix would otherwise drain.
    let head = upload_head("/recommend", 1000);
    let chunked_head = "POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut stalled: Vec<TcpStream> = (0..STALLED)
        .map(|i| match i % 10 {
            0 => open(server.port, chunked_head, "5\r\n{\"seq\r\n"),
            _ => open(server.port, &head, r#"{"sequence": [1, 2"#),
        })
        .collect();
    let rss_stalled = rss_kib(server.pid());

    // Others are still served while the 2,000 stall (the client's own timeout is 15 s).
    assert_eq!(get_json(&format!("{base}/health")).0, 200);
    let (status, _, body) =
        post_recommend(&base, "?wait_ms=5000", &json!({"sequence": [1], "k": 2}));
    assert_eq!(status, 200, "{body}");

    // Each stalled upload is answered 408 and closed by the server, none held for ever.
    for s in &mut stalled {
        let answer = read_until_closed(s, Duration::from_secs(30));
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
    }
    drop(stalled);
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = rss_kib(server.pid());
    // Figures, not assertions: memory is the allocator's business.
    eprintln!(
        "server RSS (KiB): start {rss_start:?}, {STALLED} stalled {rss_stalled:?}, after {rss_after:?}"
    );
    // And it still answers.
    assert_eq!(get_json(&format!("{base}/health")).0, 200);
}

/// An answer read off a raw connection: status, headers (names lower-cased) and body.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `GET path` on `s` (keep-alive) and reads one answer, whose body has a
/// `Content-Length`; panics when none comes within `within`.
fn get_on(s: &mut TcpStream, path: &str, within: Duration) -> Raw {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    s.write_all(request.as_bytes()).unwrap();
    s.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = |s: &mut TcpStream, got: &mut Vec<u8>, buf: &mut [u8]| match s.read(buf) {
        Ok(0) => panic!(
            "closed before a whole answer: {:?}",
            String::from_utf8_lossy(got)
        ),
        Ok(n) => got.extend_from_slice(&buf[..n]),
        Err(e) => panic!("no answer to GET {path} within {within:?} ({e})"),
    };
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read(s, &mut got, &mut buf);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    while got.len() < head_end + length {
        read(s, &mut got, &mut buf);
    }
    let body = String::from_utf8_lossy(&got[head_end..head_end + length]).into_owned();
    Raw {
        status,
        headers,
        body,
    }
}

fn connect(port: u16) -> TcpStream {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap()
}

/// The `movierec_http_open_connections` value in a `/metrics` text.
fn open_connections(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("movierec_http_open_connections "))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_connection_over_the_cap_gets_a_clear_503_and_is_served_once_others_close() {
    const CAP: usize = 8;
    // Generous for a loaded machine: an answer is expected in milliseconds.
    let within = Duration::from_secs(30);
    let env = Env::new();
    let server = env.serve(
        &["--embedded"],
        &[
            ("RECSYS_MAX_CONNECTIONS", "8"),
            // Held connections must not be closed by the server while the test runs.
            ("RECSYS_KEEP_ALIVE_SECS", "600"),
        ],
    );
    // Keep-alive connections, each served once, until one is refused. The helpers' shared
    // client may hold one more connection of its own (from waiting for the server), so the
    // refusal comes after CAP - 1 or CAP of ours.
    let mut held = Vec::new();
    let refused = loop {
        let mut s = connect(server.port);
        let answer = get_on(&mut s, "/movies/1", within);
        if answer.status != 200 {
            break answer;
        }
        held.push(s);
        assert!(
            held.len() <= CAP,
            "{} connections served with a cap of {CAP}",
            held.len()
        );
    };
    assert!(
        held.len() >= CAP - 1,
        "refused after only {} connections",
        held.len()
    );
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("connection"), Some("close"));
    let body: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(body["error_type"], "too_many_connections", "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("8 connections")),
        "{body}"
    );

    // The held connections are still served, and a probe is answered over the cap.
    assert_eq!(get_on(&mut held[0], "/movies/1", within).status, 200);
    let mut probe = connect(server.port);
    assert_eq!(get_on(&mut probe, "/health/live", within).status, 200);
    drop(probe);

    // Two close: a new connection is served once the server has seen them go.
    held.truncate(held.len() - 2);
    wait_until("a new connection to be served", within, || {
        let mut s = connect(server.port);
        (get_on(&mut s, "/movies/1", within).status == 200).then_some(())
    });
    // /metrics counts ours plus its own, and perhaps the helpers' client's (once the server
    // has seen the connections above close).
    let ours = held.len() as u64 + 1;
    wait_until("the open connections in /metrics", within, || {
        let mut s = connect(server.port);
        let answer = get_on(&mut s, "/metrics", within);
        let open = open_connections(&answer.body)?;
        (ours..=ours + 1).contains(&open).then_some(())
    });
}
