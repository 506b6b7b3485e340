//! The Redis queue's guarantees, through the real binaries: the cap holds under concurrent
//! clients, finished jobs are bounded in time and in count, accepted jobs survive a Redis restart,
//! and the paths around waiting, replicas, batching and checkpoints.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use redis::Commands;
use serde_json::{Value, json};

use super::helpers::*;

/// Posts `n` small jobs (each accepted with 202) and returns their ids.
fn post_jobs(base: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let (status, _, acc) = post_recommend(base, "", &json!({"sequence": [i + 1], "k": 2}));
            assert_eq!(status, 202, "{acc}");
            acc["job_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

const QUEUE: &str = "movierec:queue-test";

fn env_for(redis: &Redis) -> Env {
    Env::new()
        .with("REDIS_URL", &redis.url())
        .with("RECSYS_QUEUE", QUEUE)
}

/// Jobs waiting in Redis, counted as the API counts them: the active list and the scheduled set.
fn depth(conn: &mut redis::Connection) -> u64 {
    let active: u64 = conn.llen(format!("{QUEUE}:active")).unwrap();
    let scheduled: u64 = conn.zcard(format!("{QUEUE}:scheduled")).unwrap();
    active + scheduled
}

#[test]
fn concurrent_clients_cannot_push_the_queue_past_its_cap() {
    const CAP: u64 = 5;
    const CLIENTS: usize = 64;
    const EACH: usize = 4;
    let redis = Redis::start();
    // No worker: nothing leaves the queue, so exactly CAP jobs can be accepted.
    let env = env_for(&redis).with("RECSYS_QUEUE_CAP", &CAP.to_string());
    let server = env.serve(&[], &[]);
    let base = server.base();

    // A sampler watches the depth in Redis while the clients push.
    let done = Arc::new(AtomicBool::new(false));
    let deepest = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, deepest) = (Arc::clone(&done), Arc::clone(&deepest));
        let mut conn = redis.conn();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                deepest.fetch_max(depth(&mut conn), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let start = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (base, start) = (base.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                (0..EACH)
                    .map(|i| {
                        let body = json!({"sequence": [c + 1, i + 1], "k": 3});
                        let (status, retry, _) = post_recommend(&base, "", &body);
                        if status == 429 {
                            assert!(retry.is_some(), "a 429 names Retry-After");
                        }
                        status
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();

    let accepted = statuses.iter().filter(|&&s| s == 202).count() as u64;
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(
        accepted as usize + refused,
        CLIENTS * EACH,
        "only 202 and 429: {statuses:?}"
    );
    assert_eq!(accepted, CAP, "accepted jobs");
    assert!(deepest.load(Ordering::Relaxed) <= CAP, "{deepest:?}");
    assert_eq!(depth(&mut redis.conn()), CAP);
    let stored: u64 = redis.conn().hlen(format!("{QUEUE}:data")).unwrap();
    assert_eq!(stored, CAP, "a refused job leaves nothing behind");
}

#[test]
fn requests_over_the_pending_bound_are_refused_before_the_queue() {
    let redis = Redis::start();
    // No worker: the two waiting requests stay in progress for their whole wait_ms.
    let env = env_for(&redis).with("RECSYS_MAX_PENDING", "2");
    let server = env.serve(&[], &[]);
    let base = server.base();
    let waiting: Vec<_> = (0..2)
        .map(|i| {
            let base = base.clone();
            std::thread::spawn(move || {
                post_recommend(
                    &base,
                    "?wait_ms=4000",
                    &json!({"sequence": [i + 1], "k": 2}),
                )
                .0
            })
        })
        .collect();
    let mut conn = redis.conn();
    wait_until("both waiting jobs queued", Duration::from_secs(10), || {
        (depth(&mut conn) == 2).then_some(())
    });
    let (status, retry, body) = post_recommend(&base, "", &json!({"sequence": [3], "k": 2}));
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(body["error_type"], "busy", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("RECSYS_MAX_PENDING"),
        "{body}"
    );
    assert_eq!(depth(&mut conn), 2, "a refused request queues nothing");
    // Their waits end with 202 (no worker); the places are free again.
    for w in waiting {
        assert_eq!(w.join().unwrap(), 202);
    }
    let (status, _, body) = post_recommend(&base, "", &json!({"sequence": [4], "k": 2}));
    assert_eq!(status, 202, "{body}");
    assert_eq!(depth(&mut conn), 3);
}

#[test]
fn results_expire_after_their_ttl_in_redis() {
    let redis = Redis::start();
    let env = env_for(&redis).with("RECSYS_RESULT_TTL_SECS", "1");
    let server = env.serve(&[], &[]);
    let _worker = env.worker("w1", &[]);
    let base = server.base();
    let (status, _, done) =
        post_recommend(&base, "?wait_ms=10000", &json!({"sequence": [1], "k": 3}));
    assert_eq!(status, 200, "{done}");
    let id = done["job_id"].as_str().unwrap().to_owned();
    let mut conn = redis.conn();
    let meta = format!("{QUEUE}:meta:{id}");
    let result = format!("{QUEUE}:movierec:result:{id}");
    assert!(conn.exists::<_, bool>(&meta).unwrap());
    let ttl_ms: i64 = conn.pttl(&result).unwrap();
    assert!(
        ttl_ms > 0 && ttl_ms <= 1000,
        "the result expires by itself: {ttl_ms}"
    );

    // Redis drops the result, the worker's purge everything else the job kept; the API forgets
    // it.
    wait_until("the result to be purged", Duration::from_secs(60), || {
        let gone = !conn.exists::<_, bool>(&meta).unwrap()
            && !conn.exists::<_, bool>(&result).unwrap()
            && !conn
                .hexists::<_, _, bool>(format!("{QUEUE}:data"), &id)
                .unwrap()
            && !conn
                .sismember::<_, _, bool>(format!("{QUEUE}:done"), &id)
                .unwrap()
            && conn
                .zscore::<_, _, Option<f64>>(format!("{QUEUE}:movierec:expiry"), &id)
                .unwrap()
                .is_none();
        gone.then_some(())
    });
    let (status, body) = get_json(&format!("{base}/recommend/{id}"));
    assert_eq!(status, 404, "{body}");
}

#[test]
fn only_the_newest_finished_results_are_kept_in_redis() {
    const MAX: usize = 3;
    const JOBS: usize = 8;
    let redis = Redis::start();
    let env = env_for(&redis).with("RECSYS_RESULT_MAX", &MAX.to_string());
    let server = env.serve(&[], &[]);
    let _worker = env.worker("w1", &[]);
    let base = server.base();
    let ids: Vec<String> = (0..JOBS)
        .map(|i| {
            let body = json!({"sequence": [i + 1], "k": 2});
            let (status, _, done) = post_recommend(&base, "?wait_ms=10000", &body);
            assert_eq!(status, 200, "{done}");
            done["job_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let found: Vec<u16> = ids
        .iter()
        .map(|id| get_json(&format!("{base}/recommend/{id}")).0)
        .collect();
    let mut expected = vec![404; JOBS - MAX];
    expected.extend([200; MAX]);
    assert_eq!(found, expected, "the oldest results went first");
    let mut conn = redis.conn();
    let kept: usize = conn.zcard(format!("{QUEUE}:movierec:expiry")).unwrap();
    let done: usize = conn.scard(format!("{QUEUE}:done")).unwrap();
    let data: usize = conn.hlen(format!("{QUEUE}:data")).unwrap();
    let metas: Vec<String> = conn.keys(format!("{QUEUE}:meta:*")).unwrap();
    let results: Vec<String> = conn.keys(format!("{QUEUE}:movierec:result:*")).unwrap();
    // A finished job keeps its payload (an orphaned job apalis puts back must still read it)
    // until it is forgotten with the rest of its keys.
    assert_eq!(
        (kept, done, data, metas.len(), results.len()),
        (MAX, MAX, MAX, MAX, MAX)
    );
}

#[test]
fn a_slow_worker_turns_wait_ms_into_202_with_a_location_that_later_answers() {
    let redis = Redis::start();
    let env = env_for(&redis);
    let server = env.serve(&[], &[]);
    let _worker = env.worker("slow", &[("RECSYS_BATCH_DELAY_MS", "2000")]);
    let base = server.base();
    let answer = send(
        client()
            .post(format!("{base}/recommend?wait_ms=200"))
            .header("content-type", "application/json")
            .body(json!({"sequence": [1, 50], "k": 3}).to_string()),
    );
    assert_eq!(answer.status, 202, "{}", answer.body);
    let id = answer.body["job_id"].as_str().unwrap().to_owned();
    let location = answer.header("location").unwrap().to_owned();
    assert_eq!(location, format!("/recommend/{id}"));
    assert_eq!(answer.body["status_url"], location.as_str());
    let done = wait_until("the job behind Location to finish", TIMEOUT, || {
        let (status, body) = get_json(&format!("{base}{location}"));
        assert_eq!(status, 200, "{body}");
        (body["status"] == "done").then_some(body)
    });
    assert_good_result(&done, &[1, 50], &[], 3);
}

#[test]
fn two_api_replicas_on_one_redis_read_each_others_jobs() {
    let redis = Redis::start();
    let env = env_for(&redis);
    let a = env.serve(&[], &[]);
    let b = env.serve(&[], &[]);
    assert_ne!(a.port, b.port);
    let _worker = env.worker("w1", &[]);

    let (status, _, accepted) = post_recommend(&a.base(), "", &json!({"sequence": [1], "k": 3}));
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["job_id"].as_str().unwrap();
    let done = poll_until_finished(&b.base(), id);
    assert_good_result(&done, &[1], &[], 3);

    let (status, _, waited) = post_recommend(
        &b.base(),
        "?wait_ms=10000",
        &json!({"sequence": [2], "k": 4}),
    );
    assert_eq!(status, 200, "{waited}");
    let (status, seen) = get_json(&format!(
        "{}/recommend/{}",
        a.base(),
        waited["job_id"].as_str().unwrap()
    ));
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["result"], waited["result"]);
}

#[test]
fn accepted_jobs_survive_a_redis_kill_and_restart_and_all_finish() {
    const JOBS: usize = 20;
    let mut redis = Redis::start_persistent();
    let env = env_for(&redis);
    let server = env.serve(&[], &[]);
    let base = server.base();
    let ids = post_jobs(&base, JOBS);

    redis.kill();
    redis.restart();
    wait_until("the API to see Redis again", TIMEOUT, || {
        (get_json(&format!("{base}/health")).0 == 200).then_some(())
    });
    let _worker = env.worker("after", &[]);
    for (i, id) in ids.iter().enumerate() {
        let done = poll_until_finished(&base, id);
        assert_good_result(&done, &[i as i64 + 1], &[], 2);
    }
}

/// A number from a Prometheus text line `name value`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_worker_scores_concurrent_jobs_in_batches_larger_than_one() {
    const JOBS: usize = 24;
    let redis = Redis::start();
    let env = env_for(&redis);
    let server = env.serve(&[], &[]);
    // Each forward pass is slow, so jobs pile up in the batcher while one is scored.
    let worker = env.worker_with_metrics(
        "batcher",
        &[
            ("RECSYS_BATCH_DELAY_MS", "300"),
            ("RECSYS_BATCH_SIZE", "16"),
        ],
    );
    let base = server.base();
    let ids = post_jobs(&base, JOBS);
    for id in &ids {
        assert_eq!(poll_until_finished(&base, id)["status"], "done");
    }
    let text = get_text(&format!("{}/metrics", worker.base()));
    let scored = metric(&text, r#"movierec_batch_size_sum{model="popularity"}"#);
    let passes = metric(&text, r#"movierec_batch_size_count{model="popularity"}"#);
    assert_eq!(scored, JOBS as f64, "{text}");
    assert!(
        passes < scored,
        "{passes} forward passes for {scored} jobs: no batch formed"
    );
}

#[test]
fn the_redis_worker_serves_a_checkpoint_not_popularity() {
    let redis = Redis::start();
    let env = env_for(&redis);
    let checkpoint = tiny_checkpoint(env.dir.path());
    let server = env.serve(&[], &[]);
    let _worker = env.worker(
        "model",
        &[("RECSYS_CHECKPOINT", checkpoint.to_str().unwrap())],
    );
    let base = server.base();
    let seq = [1i64, 2, 3];
    let (status, _, done) =
        post_recommend(&base, "?wait_ms=10000", &json!({"sequence": seq, "k": 5}));
    assert_eq!(status, 200, "{done}");
    let result: &Value = &done["result"];
    assert_eq!(result["model"]["architecture"], "sasrec", "{done}");
    // The default precision is bf16 exactly where the CPU says it has AVX-512 BF16.
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let bf16 = cpu.split_whitespace().any(|flag| flag == "avx512_bf16");
    let precision = if bf16 { "bf16" } else { "f32" };
    assert_eq!(result["model"]["precision"], precision, "{done}");
    assert_eq!(result["fallback"], false, "{done}");
    let items = result["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    for item in items {
        // The tiny model knows movies 1 to 20 only; ml-100k's most popular (50, 258, 100, ...)
        // cannot appear.
        let id = item["movie_id"].as_i64().unwrap();
        assert!(
            (4..=20).contains(&id),
            "{id} is not from the checkpoint: {done}"
        );
        assert!(!item["title"].as_str().unwrap().is_empty(), "{done}");
    }
    let ready = get(&format!("{base}/health/ready"));
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.body["workers"][0]["source"], "checkpoint");
}

/// A result stored by a worker, as `RedisQueue::finish` takes it.
fn finished_output(movie_id: i64) -> movierec::queue::JobOutput {
    use movierec::recommend::{ModelInfo, Recommendation, ScoredMovie};
    movierec::queue::JobOutput {
        recommendation: Recommendation {
            items: vec![ScoredMovie {
                movie_id,
                score: 1.5,
            }],
            unknown_ids: vec![],
            fallback: false,
        },
        model: ModelInfo {
            architecture: "popularity".into(),
            dataset: "ml-100k".into(),
            checkpoint: String::new(),
            items: 3,
            max_len: 0,
            precision: movierec::model::Precision::F32,
        },
        chosen_by: movierec::worker::ChosenBy::Split,
    }
}

#[test]
fn a_job_finishing_between_the_status_read_and_the_sleep_still_wakes_its_waiter() {
    use movierec::queue::{JobQueue, JobState, RedisQueue, RedisQueueConfig};
    use movierec::recommend::RecommendRequest;

    let redis = Redis::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let cfg = RedisQueueConfig {
            url: redis.url(),
            queue: QUEUE.into(),
            cap: 10,
            result_ttl: Duration::from_secs(60),
            result_max: 100,
            timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(5),
        };
        let finisher = RedisQueue::connect(cfg.clone()).unwrap();
        let mut waiter = RedisQueue::connect(cfg).unwrap();
        let request = RecommendRequest {
            sequence: vec![1, 2],
            avoided: vec![],
            k: 1,
        };
        let id = waiter
            .enqueue(request, movierec::queue::Route::default())
            .await
            .unwrap();
        // The hook runs after the waiter has read "queued" and before it sleeps: the worst
        // moment for the job to finish. Only the first time.
        let fired = Arc::new(AtomicBool::new(false));
        waiter.set_wait_hook(Arc::new(move |id: &movierec::queue::JobId| {
            let (finisher, fired, id) = (finisher.clone(), Arc::clone(&fired), id.to_string());
            Box::pin(async move {
                if !fired.swap(true, Ordering::SeqCst) {
                    finisher
                        .finish(&id, &Ok(finished_output(42)))
                        .await
                        .unwrap();
                }
            })
        }));
        let status = waiter
            .wait(&id, Duration::from_secs(120))
            .await
            .unwrap()
            .expect("the job is known");
        assert_eq!(status.state, JobState::Done);
        assert_eq!(status.result.unwrap().recommendation.items[0].movie_id, 42);
        let counts = waiter.wait_counts();
        // Woken by the notification, never by the safety net's re-read.
        assert_eq!(counts.safety_net.load(Ordering::SeqCst), 0);
        assert!(counts.notified.load(Ordering::SeqCst) >= 1);
    });
}
