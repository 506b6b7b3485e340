//! The secret holds: nothing but the public routes answers without the bearer secret or a
//! session cookie signed with it; `GET /` hands out no credential; signing in sets a cookie that
//! expires and that every replica sharing the secret accepts. Tokens are also signed here by
//! hand, from the format `docs/api.md` documents, as an independent check.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use super::helpers::*;

const SECRET: &str = "s3cret-for-auth-tests";

/// A client that shows redirects instead of following them, and keeps no cookies.
fn plain_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A session token for `secret` expiring at `expiry`, made by the documented recipe.
fn hand_signed_token(secret: &str, expiry: u64) -> String {
    let mut derive = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    derive.update(b"movierec session v1");
    let key = derive.finalize().into_bytes();
    let payload = format!("v1.{expiry}.0123456789abcdef0123456789abcdef");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(payload.as_bytes());
    format!("{payload}.{}", hex::encode(mac.finalize().into_bytes()))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The `name=value` parts of every `Set-Cookie` of an answer.
fn cookies_of(res: &reqwest::blocking::Response) -> Vec<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect()
}

/// Signs in with `secret`; returns the status and the cookies set.
fn sign_in(base: &str, secret: &str) -> (u16, Vec<String>, Vec<String>) {
    let res = plain_client()
        .post(format!("{base}/sign-in"))
        .form(&[("secret", secret)])
        .send()
        .unwrap();
    let full: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (res.status().as_u16(), cookies_of(&res), full)
}

/// Every route behind the secret, as (method, path), with a body where it takes one.
fn guarded_routes() -> Vec<(&'static str, String)> {
    vec![
        ("POST", "/recommend?wait_ms=3000".into()),
        (
            "GET",
            "/recommend/7d5a3f0e-0000-4000-8000-000000000000".into(),
        ),
        ("GET", "/movies/search?q=toy".into()),
        ("GET", "/movies/1".into()),
        ("GET", "/models".into()),
        // Unknown routes and unknown methods say nothing either.
        ("GET", "/no-such-route".into()),
        ("DELETE", "/recommend".into()),
    ]
}

/// Sends `method path` with `headers`; returns (status, JSON body or null).
fn call(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut req = plain_client().request(method.parse().unwrap(), format!("{base}{path}"));
    if method == "POST" {
        req = req
            .header("content-type", "application/json")
            .body(json!({"sequence": [1, 2, 3], "k": 3}).to_string());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().unwrap();
    let status = res.status().as_u16();
    (
        status,
        serde_json::from_str(&res.text().unwrap()).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn without_good_credentials_only_the_public_routes_answer() {
    let env = Env::new();
    let server = env.serve(
        &["--embedded"],
        &[("RECSYS_SECRET", SECRET), ("RECSYS_SESSION_TTL_SECS", "2")],
    );
    let base = server.base();

    // `GET /` shows the sign-in form and sets no credential.
    let res = plain_client().get(format!("{base}/")).send().unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let from_page = cookies_of(&res);
    assert!(from_page.is_empty(), "GET / set {from_page:?}");
    let html = res.text().unwrap();
    assert!(html.contains(r#"action="/sign-in""#), "{html}");
    assert!(
        !html.contains("search-form"),
        "the app is not shown before sign-in"
    );
    assert!(!html.contains(SECRET));

    let forged_format = hand_signed_token("not-the-secret", now() + 3600);
    let expired = hand_signed_token(SECRET, now() - 1);
    let later = now() + 3600;
    let future = hand_signed_token(SECRET, later);
    let bad_credentials: Vec<(&str, String)> = vec![
        ("none", String::new()),
        ("wrong bearer", "Bearer wrong".into()),
        ("bare secret, no scheme", SECRET.into()),
        ("garbage cookie", "movierec_session=forged".into()),
        (
            "token signed with another secret",
            format!("movierec_session={forged_format}"),
        ),
        ("expired token", format!("movierec_session={expired}")),
        (
            "expiry changed after signing",
            format!(
                "movierec_session={}",
                future.replacen(&format!(".{later}."), ".99999999999.", 1)
            ),
        ),
        (
            "the secret as the cookie",
            format!("movierec_session={SECRET}"),
        ),
        ("the old page cookie", format!("movierec_ui={SECRET}")),
    ];
    for (method, path) in guarded_routes() {
        for (what, credential) in &bad_credentials {
            let headers: Vec<(&str, &str)> = match *what {
                "none" => vec![],
                w if w.contains("bearer") || w.contains("scheme") => {
                    vec![("authorization", credential.as_str())]
                }
                _ => vec![("cookie", credential.as_str())],
            };
            let (status, body) = call(&base, method, &path, &headers);
            assert_eq!(status, 401, "{method} {path} with {what}: {body}");
            assert_eq!(
                body["error_type"], "unauthorized",
                "{method} {path} with {what}"
            );
        }
    }

    // The public routes answer without credentials.
    for path in [
        "/health",
        "/health/live",
        "/openapi.json",
        "/metrics",
        "/static/app.js",
    ] {
        let res = plain_client().get(format!("{base}{path}")).send().unwrap();
        assert_eq!(res.status().as_u16(), 200, "{path}");
    }

    // The same recipe with a future expiry is accepted: the refusals above are the expiry's and
    // the key's doing, not a mismatch of format.
    let cookie = format!("movierec_session={future}");
    let (status, body) = call(&base, "GET", "/movies/1", &[("cookie", &cookie)]);
    assert_eq!(
        (status, body["movie_id"].as_i64()),
        (200, Some(1)),
        "{body}"
    );

    // A wrong secret is refused and sets nothing; the right one sets an HttpOnly, Strict cookie.
    let (status, cookies, _) = sign_in(&base, "wrong");
    assert_eq!((status, cookies.len()), (401, 0));
    let (status, cookies, full) = sign_in(&base, SECRET);
    assert_eq!(status, 303);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let attributes = full[0].to_ascii_lowercase();
    assert!(attributes.contains("httponly"), "{attributes}");
    assert!(attributes.contains("samesite=strict"), "{attributes}");
    assert!(!full[0].contains(SECRET));
    let session = cookies[0].clone();
    for (method, path) in &guarded_routes()[..4] {
        let (status, body) = call(&base, method, path, &[("cookie", &session)]);
        // Past the guard: a job answers (done, or still queued on a slow machine), an unknown
        // job is a 404 of its own, the movie routes answer.
        let want: &[u16] = match *method {
            "POST" => &[200, 202],
            _ if path.starts_with("/recommend/") => &[404],
            _ => &[200],
        };
        assert!(
            want.contains(&status),
            "{method} {path} signed in: {status} {body}"
        );
    }
    let res = plain_client()
        .get(format!("{base}/"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert!(
        res.text().unwrap().contains("search-form"),
        "signed in, the page shows the app"
    );
    // The bearer works as before.
    let auth = format!("Bearer {SECRET}");
    let (status, _) = call(&base, "GET", "/movies/1", &[("authorization", &auth)]);
    assert_eq!(status, 200);

    // Signing out clears the cookie.
    let res = plain_client()
        .post(format!("{base}/sign-out"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(cookies_of(&res), vec!["movierec_session=".to_owned()]);

    // The session lasts RECSYS_SESSION_TTL_SECS (2 s here), then is refused.
    std::thread::sleep(std::time::Duration::from_millis(3100));
    let (status, body) = call(&base, "GET", "/movies/1", &[("cookie", &session)]);
    assert_eq!(status, 401, "an expired session: {body}");

    // Nothing of the secret reaches the logs.
    drop(server);
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains(SECRET), "{}", path.display());
        }
    }
}

#[test]
fn replicas_sharing_the_secret_accept_each_others_sessions() {
    let env = Env::new();
    let a = env.serve(&["--embedded"], &[("RECSYS_SECRET", SECRET)]);
    let b = env.serve(&["--embedded"], &[("RECSYS_SECRET", SECRET)]);
    let other = env.serve(&["--embedded"], &[("RECSYS_SECRET", "another-secret")]);
    let (status, cookies, _) = sign_in(&a.base(), SECRET);
    assert_eq!(status, 303);
    let session = &cookies[0];
    for replica in [&a, &b] {
        let (status, body) = call(
            &replica.base(),
            "POST",
            "/recommend?wait_ms=5000",
            &[("cookie", session)],
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"]["items"].as_array().map(Vec::len), Some(3));
    }
    let (status, _) = call(&other.base(), "GET", "/movies/1", &[("cookie", session)]);
    assert_eq!(status, 401, "a server with another secret refuses it");
}
