//! The operator's surface: liveness and readiness, request ids and the access log, and 405s.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::{Value, json};

use super::helpers::*;

/// The access lines `server` logged for `request_id`.
fn access_lines(server: &Proc, request_id: &str) -> Vec<Value> {
    server
        .log_lines()
        .into_iter()
        .filter(|l| l["message"] == "access" && l["request_id"] == request_id)
        .collect()
}

/// Waits until the access line of `request_id` is in the log, then checks it is the only one.
fn the_access_line(server: &Proc, request_id: &str) -> Value {
    wait_until("the access line", TIMEOUT, || {
        (!access_lines(server, request_id).is_empty()).then_some(())
    });
    let lines = access_lines(server, request_id);
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].clone()
}

#[test]
fn embedded_readiness_follows_the_model_it_serves() {
    let env = Env::new();

    // No checkpoint, no permission: popularity answers, but the service is not ready.
    let server = env.serve(&["--embedded"], &[]);
    let base = server.base();
    let live = get(&format!("{base}/health/live"));
    assert_eq!(
        (live.status, live.body["status"].as_str()),
        (200, Some("live"))
    );
    let ready = get(&format!("{base}/health/ready"));
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.header("retry-after"), Some("1"));
    assert_eq!(ready.body["status"], "not_ready");
    let reasons = ready.body["reasons"].to_string();
    assert!(reasons.contains("--allow-popularity-fallback"), "{reasons}");
    assert_eq!(ready.body["workers"][0]["source"], "popularity_fallback");
    assert_eq!(ready.body["workers"][0]["ready"], false);
    assert_eq!(ready.body["queue"]["ok"], true);
    assert_eq!(ready.body["catalogue"]["ok"], true);
    // The dependencies are fine, so /health stays 200, and jobs are served.
    assert_eq!(get(&format!("{base}/health")).status, 200);
    let (status, _, done) =
        post_recommend(&base, "?wait_ms=5000", &json!({"sequence": [1], "k": 2}));
    assert_eq!(status, 200, "{done}");
    drop(server);

    // Popularity on purpose is ready.
    let server = env.serve(&["--embedded", "--allow-popularity-fallback"], &[]);
    let ready = get(&format!("{}/health/ready", server.base()));
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.body["status"], "ready");
    assert_eq!(ready.body["reasons"], json!([]));
    assert_eq!(ready.body["workers"][0]["source"], "popularity_allowed");
    assert!(ready.header("retry-after").is_none());
    drop(server);

    // A checkpoint is ready.
    let checkpoint = tiny_checkpoint(env.dir.path());
    let server = env.serve(
        &["--embedded"],
        &[("RECSYS_CHECKPOINT", checkpoint.to_str().unwrap())],
    );
    let ready = get(&format!("{}/health/ready", server.base()));
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.body["workers"][0]["source"], "checkpoint");
    assert_eq!(ready.body["workers"][0]["architecture"], "sasrec");
    assert_eq!(ready.body["workers"][0]["checkpoint"], "tiny");
    // The registry shows the served checkpoint as the live model, with all its traffic.
    let models = get(&format!("{}/models", server.base()));
    assert_eq!(models.status, 200, "{}", models.body);
    let live: Vec<&serde_json::Value> = models.body["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["live"] == true)
        .collect();
    assert_eq!(live.len(), 1, "{}", models.body);
    assert_eq!(live[0]["name"], "tiny");
    assert_eq!(live[0]["architecture"], "sasrec");
    assert_eq!(live[0]["weight"], 1.0);
}

#[test]
fn each_request_has_an_id_and_one_access_line_and_bad_requests_log_no_error() {
    let env = Env::new();
    let server = env.serve(&["--embedded", "--allow-popularity-fallback"], &[]);
    let base = server.base();

    // A minted id comes back and is on exactly one access line.
    let answer = get(&format!("{base}/movies/1"));
    assert_eq!(answer.status, 200);
    let id = answer.header("x-request-id").unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let line = the_access_line(&server, &id);
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["path"], "/movies/1", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert!(line["latency_ms"].as_f64().unwrap() >= 0.0, "{line}");

    // A sane incoming id is kept; an insane one is replaced.
    let answer = send(
        client()
            .get(format!("{base}/health"))
            .header("x-request-id", "probe-42.a"),
    );
    assert_eq!(answer.header("x-request-id"), Some("probe-42.a"));
    assert_eq!(the_access_line(&server, "probe-42.a")["status"], 200);
    let long = "x".repeat(500);
    let answer = send(
        client()
            .get(format!("{base}/health"))
            .header("x-request-id", &long),
    );
    let given = answer.header("x-request-id").unwrap();
    assert!(uuid::Uuid::parse_str(given).is_ok(), "{given}");

    // Malformed requests: bad JSON, a bad field, an unknown route, a wrong method, bytes that
    // are not HTTP. Each is answered 4xx and logged at INFO; nothing at ERROR.
    let bad = send(
        client()
            .post(format!("{base}/recommend"))
            .header("content-type", "application/json")
            .body("{\"sequence\": [1,"),
    );
    assert_eq!(bad.status, 400);
    let line = the_access_line(&server, bad.header("x-request-id").unwrap());
    assert_eq!(
        (line["level"].as_str(), line["status"].as_u64()),
        (Some("INFO"), Some(400))
    );
    let (status, _, _) = post_recommend(&base, "", &json!({"sequence": [1], "k": 0}));
    assert_eq!(status, 422);
    assert_eq!(get(&format!("{base}/nope")).status, 404);
    assert_eq!(
        send(client().delete(format!("{base}/recommend"))).status,
        405
    );
    let mut raw = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    raw.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    // The server still serves, and has logged no error.
    assert_eq!(get(&format!("{base}/health")).status, 200);
    let errors: Vec<Value> = server
        .log_lines()
        .into_iter()
        .filter(|l| l["level"] == "ERROR")
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_known_route_asked_with_another_method_answers_405_with_allow() {
    let env = Env::new();
    let server = env.serve(&["--embedded"], &[]);
    let base = server.base();
    let c = client();
    for (answer, allow) in [
        (send(c.get(format!("{base}/recommend"))), "POST"),
        (send(c.put(format!("{base}/recommend"))), "POST"),
        (send(c.delete(format!("{base}/recommend/abc"))), "GET"),
        (send(c.post(format!("{base}/health"))), "GET"),
        (send(c.post(format!("{base}/health/ready"))), "GET"),
        (send(c.patch(format!("{base}/movies/1"))), "GET"),
        (send(c.post(format!("{base}/movies/search?q=x"))), "GET"),
        (send(c.delete(format!("{base}/"))), "GET"),
    ] {
        assert_eq!(answer.status, 405, "{}", answer.body);
        assert_eq!(answer.header("allow"), Some(allow));
        assert_eq!(answer.body["error_type"], "method_not_allowed");
    }
    // Unknown paths stay 404, whatever the method.
    assert_eq!(send(c.delete(format!("{base}/nope"))).status, 404);
}
