//! Accounts: sign-in rate limits and lock-out, single-use Digest nonces, token revocation, and
//! the security headers on every response.

mod common;

use common::collect::Collect;
use common::*;
use serde_json::{json, Value};

async fn login(server: &Server, username: &str, password: &str) -> (u16, Value, Option<String>) {
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth/token"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .expect("token request");
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, res.json().await.expect("json"), retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_is_locked_out_after_repeated_failures_even_with_the_right_password() {
    let server =
        Server::start_with(&["--login-max-failures", "3", "--login-lockout-secs", "120"]).await;
    let admin = server.admin().await;
    admin
        .create_user("lan", "lan-password-1", "collector")
        .await;
    admin
        .create_user("mai", "mai-password-1", "collector")
        .await;
    for _ in 0..3 {
        let (status, body, _) = login(&server, "lan", "wrong-password").await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], "bad_credentials");
    }
    let (status, body, retry) = login(&server, "lan", "lan-password-1").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "locked_out");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("this account"), "{message}");
    assert!(message.contains("2 more minute"), "{message}");
    let retry: i64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=120).contains(&retry));
    // The phone's side is locked too, with a message Collect shows.
    let collect = Collect::with_password(&server.base, "lan", "lan-password-1");
    let res = collect.get("/formList").await;
    assert_eq!(res.status(), 429);
    assert!(openrosa_message(&res.text().await.expect("body")).contains("too many failed sign-ins"));
    // Another account is not affected, and a success clears its failures.
    let (status, _, _) = login(&server, "mai", "wrong").await;
    assert_eq!(status, 401);
    let (status, _, _) = login(&server, "mai", "mai-password-1").await;
    assert_eq!(status, 200);
    for _ in 0..2 {
        assert_eq!(login(&server, "mai", "wrong").await.0, 401);
    }
    assert_eq!(
        login(&server, "mai", "mai-password-1").await.0,
        200,
        "counting restarted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_guessing_many_accounts_is_locked_out() {
    let server = Server::start_with(&["--login-max-failures-per-address", "5"]).await;
    let admin = server.admin().await;
    admin
        .create_user("lan", "lan-password-1", "collector")
        .await;
    for n in 0..5 {
        assert_eq!(login(&server, &format!("guess{n}"), "x").await.0, 401);
    }
    let (status, body, _) = login(&server, "lan", "lan-password-1").await;
    assert_eq!(status, 429);
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("your network address"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_digest_passwords_count_and_lock_the_phone_out() {
    let server = Server::start_with(&["--login-max-failures", "2"]).await;
    let admin = server.admin().await;
    admin
        .create_user("lan", "lan-password-1", "collector")
        .await;
    let wrong = Collect::with_password(&server.base, "lan", "not-the-password");
    for _ in 0..2 {
        assert_eq!(wrong.get("/formList").await.status(), 401);
    }
    let right = Collect::with_password(&server.base, "lan", "lan-password-1");
    let res = right.get("/formList").await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
}

/// Sends the exact same request twice; the second is a replay.
async fn replay(server: &Server, collect: &Collect, method: reqwest::Method, xml: Option<&[u8]>) {
    let url = collect.url("/submission");
    // Get a challenge, then sign one request and send it twice.
    let first = collect
        .send(method.clone(), &url, |r| r)
        .await
        .status()
        .as_u16();
    assert!(
        first == 204 || first == 400,
        "signed request works: {first}"
    );
    let nonce = {
        let res = reqwest::get(server.url("/formList"))
            .await
            .expect("challenge");
        let h = res.headers()["www-authenticate"]
            .to_str()
            .expect("header")
            .to_string();
        let start = h.find("nonce=\"").expect("nonce") + 7;
        h[start..start + h[start..].find('"').expect("end")].to_string()
    };
    let uri = reqwest::Url::parse(&url).expect("url");
    let uri = format!("{}?{}", uri.path(), uri.query().unwrap_or_default());
    let ha1 = md5_hex(b"lan:fieldtally:lan-password-1");
    let ha2 = md5_hex(format!("{}:{uri}", method.as_str()).as_bytes());
    let cnonce = format!("{:016x}", rand::random::<u64>());
    let response = md5_hex(format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}").as_bytes());
    let auth = format!("Digest username=\"lan\", realm=\"fieldtally\", nonce=\"{nonce}\", uri=\"{uri}\", qop=auth, nc=00000001, cnonce=\"{cnonce}\", response=\"{response}\", algorithm=MD5");
    let http = reqwest::Client::new();
    let build = || {
        let mut r = http
            .request(method.clone(), &url)
            .header("Authorization", &auth);
        if let Some(xml) = xml {
            r = r.multipart(reqwest::multipart::Form::new().part(
                "xml_submission_file",
                reqwest::multipart::Part::bytes(xml.to_vec()).file_name("x.xml"),
            ));
        }
        r
    };
    let once = build().send().await.expect("first");
    assert!(once.status().is_success(), "first use: {}", once.status());
    let again = build().send().await.expect("replay");
    assert_eq!(again.status(), 401, "replayed {method}");
    let challenge = again.headers()["www-authenticate"]
        .to_str()
        .expect("header");
    assert!(challenge.contains("stale=true"), "{challenge}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_request_cannot_be_replayed() {
    let (server, admin) = server_with_forms().await;
    let collect = collector(&server);
    replay(&server, &collect, reqwest::Method::HEAD, None).await;
    let id = new_instance_id();
    let xml = all_features_instance(&id, None, "Replay", 2, None);
    replay(&server, &collect, reqwest::Method::POST, Some(&xml)).await;
    assert_eq!(admin.all_submissions("").await.len(), 1);
    // A real client simply goes on (it answers stale=true with the new nonce).
    let id = new_instance_id();
    let res = collect
        .submit(
            &all_features_instance(&id, None, "After", 2, None),
            &[],
            false,
        )
        .await;
    assert_eq!(res.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tokens_stop_working_at_once() {
    let server = Server::start().await;
    let admin = server.admin().await;
    admin.create_user("boss", "boss-password", "admin").await;
    let boss = Admin::login(&server, "boss", "boss-password").await;
    let other_session = Admin::login(&server, "boss", "boss-password").await;
    assert_eq!(
        boss.get("/api/v1/forms")
            .send()
            .await
            .expect("get")
            .status(),
        200
    );

    // Signing out revokes every token of the user.
    let res = boss
        .post("/api/v1/auth/logout")
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), 200);
    for session in [&boss, &other_session] {
        let res = session.get("/api/v1/forms").send().await.expect("get");
        assert_eq!(res.status(), 401);
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["error"]["code"], "token_revoked");
    }
    // A new sign-in works again.
    let boss = Admin::login(&server, "boss", "boss-password").await;
    assert_eq!(
        boss.get("/api/v1/forms")
            .send()
            .await
            .expect("get")
            .status(),
        200
    );

    // An administrator revokes another user's tokens.
    let res = admin
        .post("/api/v1/users/boss/revoke-tokens")
        .send()
        .await
        .expect("revoke");
    assert_eq!(res.status(), 200);
    assert_eq!(
        boss.get("/api/v1/forms")
            .send()
            .await
            .expect("get")
            .status(),
        401
    );
    assert_eq!(
        admin
            .get("/api/v1/forms")
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let (server, admin) = server_with_forms().await;
    let collect = collector(&server);
    let responses = vec![
        ("api", admin.get("/api/v1/forms").send().await.expect("get")),
        (
            "api error",
            reqwest::get(server.url("/api/v1/forms"))
                .await
                .expect("get"),
        ),
        ("openrosa", collect.get("/formList").await),
        (
            "challenge",
            reqwest::get(server.url("/formList")).await.expect("get"),
        ),
        (
            "unknown path",
            reqwest::get(server.url("/nothing/here"))
                .await
                .expect("get"),
        ),
        (
            "health",
            reqwest::get(server.url("/healthz")).await.expect("get"),
        ),
    ];
    for (what, res) in responses {
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
        assert!(
            h["content-security-policy"]
                .to_str()
                .expect("csp")
                .contains("frame-ancestors 'none'"),
            "{what}"
        );
        assert!(h.contains_key("x-request-id"), "{what}");
        // Plain http: no HSTS (a browser would ignore it, and it must not pin http).
        assert!(!h.contains_key("strict-transport-security"), "{what}");
        if what.starts_with("api") {
            assert_eq!(h["cache-control"], "no-store", "{what}");
        }
    }
    // Behind a proxy that says the client used https, HSTS is sent.
    let res = reqwest::Client::new()
        .get(server.url("/healthz"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("get");
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000"
    );
}
