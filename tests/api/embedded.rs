//! `serve --embedded`: the whole HTTP contract with the in-process queue, no Redis.

use serde_json::json;

use super::helpers::*;

#[test]
fn embedded_end_to_end_poll_wait_movies_health_metrics_openapi_and_sigterm() {
    let env = Env::new();
    let mut server = env.serve(&["--embedded"], &[]);
    let base = server.base();

    // POST, then job id, then GET until done.
    let seq = [50i64, 100, 181];
    let avoided = [258i64, 174];
    let body = json!({"sequence": seq, "avoided": avoided, "k": 7});
    let (status, _, accepted) = post_recommend(&base, "", &body);
    assert_eq!(status, 202, "{accepted}");
    let job_id = accepted["job_id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["status_url"], format!("/recommend/{job_id}"));
    let done = poll_until_finished(&base, &job_id);
    assert_good_result(&done, &seq, &avoided, 7);
    // Popularity on ml-100k: Star Wars (50) has the most ratings, then Contact (258), Fargo
    // (100), Return of the Jedi (181), Liar Liar (294); with 50/100/181/258 excluded, Liar Liar
    // comes first.
    assert_eq!(done["result"]["items"][0]["movie_id"], 294);
    assert_eq!(done["result"]["items"][0]["title"], "Liar Liar (1997)");
    assert_eq!(done["result"]["fallback"], false);

    // The same in wait_ms mode: 200 with the result.
    let (status, _, waited) = post_recommend(&base, "?wait_ms=5000", &body);
    assert_eq!(status, 200, "{waited}");
    assert_good_result(&waited, &seq, &avoided, 7);

    // Unknown ids are reported, not fatal; an all-unknown sequence falls back to popularity.
    let (status, _, cold) = post_recommend(
        &base,
        "?wait_ms=5000",
        &json!({"sequence": [999999], "k": 3}),
    );
    assert_eq!(status, 200, "{cold}");
    assert_eq!(cold["result"]["unknown_ids"], json!([999999]));
    assert_eq!(cold["result"]["fallback"], true);
    assert_eq!(cold["result"]["items"][0]["movie_id"], 50);

    // Unknown job ids.
    let (status, err) = get_json(&format!("{base}/recommend/{}", uuid::Uuid::new_v4()));
    assert_eq!(status, 404);
    assert_eq!(err["error_type"], "not_found");
    assert_eq!(get_json(&format!("{base}/recommend/not-a-job")).0, 404);

    // Movies from the catalogue.
    let (status, found) = get_json(&format!("{base}/movies/search?q=star%20wars&limit=5"));
    assert_eq!(status, 200);
    assert_eq!(found["movies"][0]["movie_id"], 50);
    assert_eq!(found["movies"][0]["year"], 1977);
    let (status, movie) = get_json(&format!("{base}/movies/1"));
    assert_eq!(status, 200);
    assert_eq!(movie["title"], "Toy Story (1995)");
    assert_eq!(
        movie["genres"],
        json!(["Animation", "Children's", "Comedy"])
    );
    assert_eq!(get_json(&format!("{base}/movies/999999")).0, 404);
    let (status, bad) = get_json(&format!("{base}/movies/search?q=x&limit=100000"));
    assert_eq!((status, bad["field"].as_str()), (422, Some("limit")));

    // Health per dependency.
    let (status, health) = get_json(&format!("{base}/health"));
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["queue"]["backend"], "in-process");
    assert_eq!(health["catalogue"]["movies"], 1682);

    // Metrics: requests by route, batch sizes and job latency from the in-process worker.
    let metrics = get_text(&format!("{base}/metrics"));
    assert!(
        metrics.contains(
            r#"movierec_http_requests_total{method="POST",route="/recommend",status="202"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"route="/recommend/{job_id}""#));
    assert!(metrics.contains("movierec_batch_size_count"));
    assert!(metrics.contains("movierec_job_latency_seconds_bucket"));
    assert!(metrics.contains("movierec_queue_depth 0"));
    assert!(
        metrics.contains(r#"movierec_jobs_total{model="popularity",outcome="done"} 3"#),
        "{metrics}"
    );

    // OpenAPI lists every endpoint.
    let (status, doc) = get_json(&format!("{base}/openapi.json"));
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/recommend",
        "/recommend/{job_id}",
        "/movies/search",
        "/movies/{movie_id}",
        "/health",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(doc["paths"]["/recommend"]["post"]["responses"]["429"].is_object());

    // SIGTERM: graceful stop, exit 0.
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn validation_errors_name_the_field_and_never_answer_200() {
    const MAX_SEQUENCE: usize = 50;
    const MAX_K: u64 = 40;
    let env = Env::new()
        .with("RECSYS_MAX_SEQUENCE", &MAX_SEQUENCE.to_string())
        .with("RECSYS_MAX_K", &MAX_K.to_string());
    let server = env.serve(&["--embedded"], &[]);
    let base = server.base();
    let post_raw = |body: String| {
        let res = client()
            .post(format!("{base}/recommend"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        let status = res.status().as_u16();
        (
            status,
            serde_json::from_str::<serde_json::Value>(&res.text().unwrap()).unwrap(),
        )
    };

    let (status, err) = post_raw("{\"sequence\": [1, 2".into());
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error_type"], "malformed_json");

    let max_avoided = movierec::http::MIN_MAX_AVOIDED.max(MAX_SEQUENCE);
    let cases = [
        (json!({"sequence": [1], "k": 0}), "k"),
        (json!({"sequence": [1], "k": MAX_K + 1}), "k"),
        (json!({"sequence": [1], "k": 1_000_000}), "k"),
        (json!({"sequence": [1], "k": -3}), "k"),
        (json!({"sequence": [1], "k": 2.5}), "k"),
        (json!({"sequence": 1, "k": 2}), "sequence"),
        (
            json!({"sequence": [1], "avoided": [1, "x"], "k": 2}),
            "avoided",
        ),
        (
            json!({"sequence": [1], "avoided": vec![7; max_avoided + 1], "k": 2}),
            "avoided",
        ),
        (json!({"sequence": [1], "k": 2, "limit": 5}), "limit"),
        (json!({"sequence": [1], "k": "10"}), "k"),
        (json!({"sequence": [1, -5], "k": 10}), "sequence"),
        (json!({"sequence": ["1", "2"], "k": 10}), "sequence"),
        (json!({"sequence": [1], "avoided": [0], "k": 10}), "avoided"),
        (json!({"k": 10}), "sequence"),
        (json!({"sequence": [1]}), "k"),
        (
            json!({"sequence": (1..=MAX_SEQUENCE as i64 + 1).collect::<Vec<i64>>(), "k": 10}),
            "sequence",
        ),
    ];
    for (body, field) in cases {
        let (status, err) = post_raw(body.to_string());
        assert_eq!(status, 422, "{body} -> {err}");
        assert_eq!(err["field"], field, "{body} -> {err}");
        assert_eq!(err["error_type"], "validation");
        assert!(!err["error"].as_str().unwrap().is_empty());
    }

    // Each limit is inclusive.
    let at_the_limits = json!({
        "sequence": (1..=MAX_SEQUENCE as i64).collect::<Vec<i64>>(),
        "avoided": vec![7; max_avoided],
        "k": MAX_K,
    });
    let (status, _, ok) = post_recommend(&base, "", &at_the_limits);
    assert_eq!(status, 202, "{ok}");

    // A key given twice is refused, naming it; so is a body that is not an object.
    for (body, field) in [
        (r#"{"sequence": [1], "k": 2, "k": 3}"#, "k"),
        (r#"{"sequence": [1], "sequence": [2], "k": 3}"#, "sequence"),
    ] {
        let (status, err) = post_raw(body.into());
        assert_eq!(status, 422, "{body} -> {err}");
        assert_eq!(err["field"], field, "{body} -> {err}");
        assert!(err["error"].as_str().unwrap().contains(field), "{err}");
    }
    let (status, err) = post_raw("[[1], [], 3]".into());
    assert_eq!(status, 422, "{err}");
    assert!(err.get("field").is_none(), "{err}");

    // The document states the limits this server enforces.
    let (status, doc) = get_json(&format!("{base}/openapi.json"));
    assert_eq!(status, 200);
    let schema = &doc["components"]["schemas"]["RecommendBody"];
    assert_eq!(schema["properties"]["k"]["minimum"], 1, "{schema}");
    assert_eq!(schema["properties"]["k"]["maximum"], MAX_K, "{schema}");
    assert_eq!(
        schema["properties"]["sequence"]["maxItems"], MAX_SEQUENCE,
        "{schema}"
    );
    assert_eq!(
        schema["properties"]["sequence"]["items"]["minimum"], 1,
        "{schema}"
    );
    assert_eq!(
        schema["properties"]["avoided"]["maxItems"], max_avoided,
        "{schema}"
    );
    assert_eq!(
        schema["properties"]["avoided"]["items"]["minimum"], 1,
        "{schema}"
    );
    assert_eq!(schema["additionalProperties"], false, "{schema}");

    let (status, _, err) =
        post_recommend(&base, "?wait_ms=20000", &json!({"sequence": [1], "k": 3}));
    assert_eq!((status, err["field"].as_str()), (422, Some("wait_ms")));

    // A 1 MB body.
    let big = format!(
        "{{\"sequence\": [{}], \"k\": 3}}",
        vec!["1"; 500_000].join(",")
    );
    let (status, err) = post_raw(big);
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["error_type"], "payload_too_large");

    // Unknown routes are JSON 404s too.
    let (status, err) = get_json(&format!("{base}/nope"));
    assert_eq!(
        (status, err["error_type"].as_str()),
        (404, Some("not_found"))
    );
}

#[test]
fn the_secret_guards_the_json_api() {
    let env = Env::new();
    let server = env.serve(&["--embedded"], &[("RECSYS_SECRET", "s3cret-token")]);
    let base = server.base();
    let body = json!({"sequence": [1], "k": 2}).to_string();
    let send = |auth: Option<&str>| {
        let mut req = client()
            .post(format!("{base}/recommend?wait_ms=5000"))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = req.send().unwrap();
        let status = res.status().as_u16();
        (
            status,
            serde_json::from_str::<serde_json::Value>(&res.text().unwrap()).unwrap(),
        )
    };
    let (status, err) = send(None);
    assert_eq!(
        (status, err["error_type"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(send(Some("Bearer wrong")).0, 401);
    assert_eq!(send(Some("s3cret-token")).0, 401);
    let (status, ok) = send(Some("Bearer s3cret-token"));
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["result"]["items"].as_array().unwrap().len(), 2);
    // Movie lookups need it too; health does not.
    assert_eq!(get_json(&format!("{base}/movies/1")).0, 401);
    assert_eq!(get_json(&format!("{base}/health")).0, 200);
    // The secret never reaches the logs.
    drop(server);
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("s3cret-token"), "{}", path.display());
        }
    }
}
