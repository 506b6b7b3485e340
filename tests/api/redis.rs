//! `serve` + `worker` processes sharing a real `redis-server`.

use std::collections::HashSet;
use std::time::Duration;

use redis::Commands;
use serde_json::json;

use super::helpers::*;

const QUEUE: &str = "movierec:test";

fn env_for(redis: &Redis) -> Env {
    Env::new()
        .with("REDIS_URL", &redis.url())
        .with("RECSYS_QUEUE", QUEUE)
}

#[test]
fn redis_end_to_end_poll_wait_and_unknown_job() {
    let redis = Redis::start();
    let env = env_for(&redis);
    let server = env.serve(&[], &[]);
    let _worker = env.worker("w1", &[]);
    let base = server.base();

    let seq = [1i64, 50];
    let body = json!({"sequence": seq, "k": 5});
    let (status, _, accepted) = post_recommend(&base, "", &body);
    assert_eq!(status, 202, "{accepted}");
    let job_id = accepted["job_id"].as_str().unwrap();
    let done = poll_until_finished(&base, job_id);
    assert_good_result(&done, &seq, &[], 5);
    assert_eq!(done["result"]["items"][0]["movie_id"], 258);

    let avoided = [258i64, 100];
    let (status, _, waited) = post_recommend(
        &base,
        "?wait_ms=5000",
        &json!({"sequence": seq, "avoided": avoided, "k": 4}),
    );
    assert_eq!(status, 200, "{waited}");
    assert_good_result(&waited, &seq, &avoided, 4);
    assert_eq!(waited["result"]["items"][0]["movie_id"], 181);

    let (status, err) = get_json(&format!("{base}/recommend/{}", uuid::Uuid::new_v4()));
    assert_eq!(
        (status, err["error_type"].as_str()),
        (404, Some("not_found"))
    );

    let (status, health) = get_json(&format!("{base}/health"));
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["queue"]["backend"], "redis");
    assert_eq!(health["queue"]["ok"], true);

    // The result lives in Redis under the explicit queue name, with its expiry scheduled.
    let mut conn = redis.conn();
    let state: String = conn
        .hget(format!("{QUEUE}:meta:{job_id}"), "status")
        .unwrap();
    assert_eq!(state, "Done");
    let expiry: Option<f64> = conn
        .zscore(format!("{QUEUE}:movierec:expiry"), job_id)
        .unwrap();
    assert!(expiry.is_some());
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let redis = Redis::start();
    let env = env_for(&redis).with("RECSYS_QUEUE_CAP", "3");
    let server = env.serve(&[], &[]);
    let base = server.base();
    let body = json!({"sequence": [1], "k": 3});
    for _ in 0..3 {
        assert_eq!(post_recommend(&base, "", &body).0, 202);
    }
    let (status, retry, err) = post_recommend(&base, "", &body);
    assert_eq!(status, 429, "{err}");
    assert_eq!(err["error_type"], "queue_full");
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    // Nothing consumed them: the depth shows on /metrics.
    let metrics = get_text(&format!("{base}/metrics"));
    assert!(metrics.contains("movierec_queue_depth 3"), "{metrics}");
}

#[test]
fn redis_outage_gives_503_then_everything_recovers() {
    let mut redis = Redis::start();
    let env = env_for(&redis);
    let server = env.serve(&[], &[]);
    let _worker = env.worker("w1", &[]);
    let base = server.base();
    let body = json!({"sequence": [1], "k": 3});
    assert_eq!(post_recommend(&base, "?wait_ms=5000", &body).0, 200);

    redis.kill();
    let refused = send(
        client()
            .post(format!("{base}/recommend"))
            .header("content-type", "application/json")
            .body(body.to_string()),
    );
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.body["error_type"], "unavailable");
    assert!(refused.header("retry-after").is_some());
    // A fixed message; the cause is on the request's access line, at ERROR, and only there.
    assert_eq!(
        refused.body["error"],
        "the job queue is unavailable; retry shortly"
    );
    let id = refused.header("x-request-id").unwrap().to_owned();
    let access = wait_until("the failed request's access line", TIMEOUT, || {
        server
            .log_lines()
            .into_iter()
            .find(|l| l["message"] == "access" && l["request_id"] == id.as_str())
    });
    assert_eq!(access["level"], "ERROR", "{access}");
    assert_eq!(access["status"], 503, "{access}");
    let cause = access["cause"].as_str().unwrap_or_default().to_owned();
    assert!(!cause.is_empty(), "{access}");
    assert!(
        !refused.body.to_string().contains(&cause),
        "{}",
        refused.body
    );

    let health = get(&format!("{base}/health"));
    assert_eq!(health.status, 503, "{}", health.body);
    assert_eq!(health.header("retry-after"), Some("1"));
    assert_eq!(health.body["queue"]["ok"], false);
    assert_eq!(health.body["catalogue"]["ok"], true);
    let said = health.body["queue"]["error"].as_str().unwrap();
    assert!(
        ["not answering", "timed out"].contains(&said),
        "{}",
        health.body
    );
    let ready = get(&format!("{base}/health/ready"));
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.header("retry-after"), Some("1"));

    redis.restart();
    wait_until("the API to see Redis again", TIMEOUT, || {
        (get_json(&format!("{base}/health")).0 == 200).then_some(())
    });
    // The worker reconnects on its own and serves new jobs.
    let done = wait_until("a job to complete after the outage", TIMEOUT, || {
        let (status, _, res) = post_recommend(&base, "?wait_ms=2000", &body);
        (status == 200).then_some(res)
    });
    assert_good_result(&done, &[1], &[], 3);
}

#[test]
fn redis_readiness_needs_a_worker_that_serves_what_it_should() {
    let redis = Redis::start();
    let env = env_for(&redis);
    let server = env.serve(&[], &[]);
    let ready_url = format!("{}/health/ready", server.base());

    // No worker yet: the queue answers, but nothing serves.
    let ready = get(&ready_url);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.header("retry-after"), Some("1"));
    assert_eq!(ready.body["workers"], json!([]));
    assert!(
        ready.body["reasons"].to_string().contains("no worker"),
        "{}",
        ready.body
    );
    assert_eq!(get(&format!("{}/health", server.base())).status, 200);
    assert_eq!(get(&format!("{}/health/live", server.base())).status, 200);

    // A worker on the popularity fallback (no checkpoint, not allowed) is seen, and not ready.
    let _fallback = env.worker("fb", &[]);
    let ready = wait_until("the fallback worker's announcement", TIMEOUT, || {
        let ready = get(&ready_url);
        (ready.body["workers"]
            .as_array()
            .is_some_and(|w| !w.is_empty()))
        .then_some(ready)
    });
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.body["workers"][0]["name"], "fb");
    assert_eq!(ready.body["workers"][0]["source"], "popularity_fallback");
    assert_eq!(ready.body["workers"][0]["ready"], false);
    assert!(
        ready.body["reasons"].to_string().contains("popularity"),
        "{}",
        ready.body
    );

    // A worker allowed to serve popularity makes the service ready.
    let mut allowed = env.worker("ok", &[("RECSYS_ALLOW_POPULARITY_FALLBACK", "true")]);
    let ready = wait_until("the service to be ready", TIMEOUT, || {
        let ready = get(&ready_url);
        (ready.status == 200).then_some(ready)
    });
    assert_eq!(ready.body["status"], "ready");
    let names: Vec<&str> = ready.body["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert_eq!(names, ["fb", "ok"]);

    // Once it stops, it withdraws, and the service is not ready again.
    assert!(allowed.terminate().success());
    wait_until("the service to be not ready again", TIMEOUT, || {
        (get(&ready_url).status == 503).then_some(())
    });
}

#[test]
fn three_workers_share_one_queue_and_a_thousand_jobs_complete_exactly_once() {
    const JOBS: usize = 1000;
    const WORKERS: [&str; 3] = ["wa", "wb", "wc"];
    let redis = Redis::start();
    let env = env_for(&redis)
        // Two jobs in flight per worker and batches that wait 20 ms to fill: no single worker
        // can drain the queue alone, so all three must take jobs.
        .with("RECSYS_BATCH_SIZE", "4")
        .with("RECSYS_WORKER_CONCURRENCY", "2")
        .with("RECSYS_BATCH_WAIT_US", "20000");
    let server = env.serve(&[], &[]);
    let workers: Vec<Proc> = WORKERS
        .iter()
        .map(|name| env.worker_with_metrics(name, &[]))
        .collect();
    let base = server.base();
    // Post only once every worker has registered, or the first one up may take every job.
    let mut conn = redis.conn();
    wait_until("every worker registered", Duration::from_secs(30), || {
        let names: Vec<String> = conn
            .zrange(format!("{QUEUE}:workers"), 0, -1)
            .unwrap_or_default();
        let up = |w: &str| names.iter().any(|n| n.split('-').next() == Some(w));
        WORKERS.iter().all(|w| up(w)).then_some(())
    });
    let sequence = |i: usize| [(i % 300 + 1) as i64, (i % 7 + 400) as i64];
    let ids: Vec<String> = (0..JOBS)
        .map(|i| {
            let (status, _, acc) =
                post_recommend(&base, "", &json!({"sequence": sequence(i), "k": 2}));
            assert_eq!(status, 202, "{acc}");
            acc["job_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        JOBS,
        "job ids are unique"
    );
    wait_until("every job done", Duration::from_secs(120), || {
        let done: usize = conn.scard(format!("{QUEUE}:done")).unwrap();
        (done == JOBS).then_some(())
    });

    let mut taken_by = HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        let (status, done) = get_json(&format!("{base}/recommend/{id}"));
        assert_eq!(status, 200, "{done}");
        assert_good_result(&done, &sequence(i), &[], 2);
        let meta = format!("{QUEUE}:meta:{id}");
        let by: String = conn.hget(&meta, "locked_by").unwrap();
        let attempts: u32 = conn.hget(&meta, "attempts").unwrap();
        assert_eq!(attempts, 1, "job {id} ran more than once");
        taken_by.insert(by.split('-').next().unwrap().to_owned());
    }
    assert_eq!(
        taken_by,
        WORKERS
            .iter()
            .map(|w| w.to_string())
            .collect::<HashSet<_>>(),
        "every worker takes jobs"
    );

    // Each worker counts the jobs it finished: together exactly one per job.
    let mut handled = 0;
    for worker in &workers {
        let metrics = get_text(&format!("{}/metrics", worker.base()));
        let line = metrics
            .lines()
            .find(|l| l.starts_with(r#"movierec_jobs_total{model="popularity",outcome="done"}"#))
            .unwrap_or_else(|| panic!("{metrics}"));
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n > 0, "{line}");
        assert!(metrics.contains("movierec_batch_size_bucket"));
        handled += n;
    }
    assert_eq!(handled, JOBS as u64, "every job was handled exactly once");
}

#[test]
fn a_worker_killed_mid_job_loses_nothing_and_another_completes_it() {
    let redis = Redis::start();
    let env = env_for(&redis);
    let server = env.serve(&[], &[]);
    // This worker sits a minute on every batch: it is holding the job when it dies.
    let mut doomed = env.worker("doomed", &[("RECSYS_BATCH_DELAY_MS", "60000")]);
    let base = server.base();
    let seq = [1i64, 50];
    let (status, _, acc) = post_recommend(&base, "", &json!({"sequence": seq, "k": 3}));
    assert_eq!(status, 202, "{acc}");
    let id = acc["job_id"].as_str().unwrap().to_owned();
    let url = format!("{base}/recommend/{id}");
    wait_until("the doomed worker to hold the job", TIMEOUT, || {
        (get_json(&url).1["status"] == "running").then_some(())
    });
    let mut conn = redis.conn();
    let meta = format!("{QUEUE}:meta:{id}");
    let holder: String = conn.hget(&meta, "locked_by").unwrap();
    assert!(holder.starts_with("doomed"), "{holder}");

    doomed.kill();
    // The job survives its worker: still readable, not failed.
    let (status, body) = get_json(&url);
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["status"], "failed", "{body}");

    // A new worker notices the missed heartbeats, re-queues the orphan and completes it.
    let _rescuer = env.worker("rescuer", &[]);
    let done = poll_until_finished(&base, &id);
    assert_good_result(&done, &seq, &[], 3);
    let by: String = conn.hget(&meta, "locked_by").unwrap();
    assert!(by.starts_with("rescuer"), "{by}");
    let finished: usize = conn.scard(format!("{QUEUE}:done")).unwrap();
    assert_eq!(finished, 1);
}

#[test]
fn sigterm_lets_the_worker_finish_its_job_and_exit_0() {
    let redis = Redis::start();
    let env = env_for(&redis).with("RECSYS_BATCH_DELAY_MS", "1500");
    let server = env.serve(&[], &[]);
    let mut worker = env.worker("slow", &[]);
    let base = server.base();
    let (status, _, acc) = post_recommend(&base, "", &json!({"sequence": [1], "k": 3}));
    assert_eq!(status, 202);
    let id = acc["job_id"].as_str().unwrap().to_owned();
    let url = format!("{base}/recommend/{id}");
    wait_until("the worker to hold the job", TIMEOUT, || {
        (get_json(&url).1["status"] == "running").then_some(())
    });
    let exit = worker.terminate();
    assert!(exit.success(), "{exit:?}");
    let (status, body) = get_json(&url);
    assert_eq!(status, 200);
    assert_good_result(&body, &[1], &[], 3);
}
