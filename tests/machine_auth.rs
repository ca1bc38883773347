//! Auth for machines: API keys of service accounts with scopes (used directly as bearer keys or
//! exchanged for access tokens), revocation that holds at once on every instance, and rotation
//! of the token signing key without logging anyone out. Runs on SQLite, or on PostgreSQL with
//! FIELDTALLY_TEST_POSTGRES.

mod common;

use base64::Engine;
use common::*;
use serde_json::{json, Value};

/// A client with a bearer credential (API key or access token).
fn client(server: &Server, bearer: &str) -> Admin {
    Admin {
        http: reqwest::Client::new(),
        base: server.base.clone(),
        token: bearer.to_string(),
    }
}

async fn create_key(admin: &Admin, username: &str, scopes: &[&str]) -> (i64, String) {
    let res = admin
        .post("/api/v1/api-keys")
        .json(&json!({ "username": username, "name": format!("{username} {scopes:?}"), "scopes": scopes }))
        .send()
        .await
        .expect("create key");
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.expect("json");
    (
        body["api_key"]["id"].as_i64().expect("id"),
        body["key"].as_str().expect("key").to_string(),
    )
}

async fn exchange(server: &Server, key: &str) -> String {
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth/token"))
        .json(&json!({ "api_key": key }))
        .send()
        .await
        .expect("exchange");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    body["access_token"].as_str().expect("token").to_string()
}

/// Status and error code of a GET.
async fn get(c: &Admin, path: &str) -> (u16, String) {
    let res = c.get(path).send().await.expect("get");
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn kid(token: &str) -> String {
    let header = token.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64");
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    v["kid"].as_str().expect("kid").to_string()
}

#[tokio::test]
async fn a_key_may_do_only_what_both_its_role_and_its_scopes_allow() {
    let (server, admin) = server_with_forms().await;
    let id = new_instance_id();
    let xml = all_features_instance(&id, None, "Hoa", 3, None);
    assert_eq!(
        collector(&server).submit(&xml, &[], false).await.status(),
        201
    );
    admin
        .create_user("pipeline", "pipeline-password", "province_officer")
        .await;
    admin
        .create_user("dhis2", "dhis2-password-1", "api_client")
        .await;

    let routes = [
        ("read_indicators", "/api/v1/indicators".to_string()),
        ("read_submissions", "/api/v1/submissions".to_string()),
        (
            "read_sensitive",
            format!("/api/v1/submissions/{id}/sensitive?purpose=monthly%20data%20quality%20check"),
        ),
        ("administer", "/api/v1/users".to_string()),
    ];
    // A province officer's keys, one scope each: every route needs its own scope (opening
    // sensitive values also needs to read the submission). The officer's role never
    // administers, whatever the key says.
    for (scope, _) in &routes {
        let mut scopes = vec![*scope];
        if *scope == "read_sensitive" {
            scopes.push("read_submissions");
        }
        let (_, key) = create_key(&admin, "pipeline", &scopes).await;
        let token = exchange(&server, &key).await;
        for bearer in [&key, &token] {
            let c = client(&server, bearer);
            for (needs, path) in &routes {
                let (status, code) = get(&c, path).await;
                let expected = match (*needs, *scope) {
                    ("administer", _) => (403, "forbidden"),
                    (n, s) if n == s => (200, ""),
                    ("read_submissions", "read_sensitive") => (200, ""),
                    _ => (403, "insufficient_scope"),
                };
                assert_eq!(
                    (status, code.as_str()),
                    expected,
                    "key with {scopes:?} on {path}"
                );
            }
        }
    }
    // The service account's role bounds its keys too: no sensitive data, no administration.
    let (_, key) = create_key(
        &admin,
        "dhis2",
        &[
            "read_sensitive",
            "read_submissions",
            "administer",
            "read_indicators",
        ],
    )
    .await;
    let c = client(&server, &key);
    assert_eq!(get(&c, &routes[0].1).await.0, 200);
    assert_eq!(get(&c, &routes[1].1).await.0, 200);
    assert_eq!(get(&c, &routes[2].1).await, (403, "forbidden".to_string()));
    assert_eq!(get(&c, &routes[3].1).await, (403, "forbidden".to_string()));
    // An administrator's key with only `administer` manages keys but reads no submissions.
    let (_, key) = create_key(&admin, "admin", &["administer"]).await;
    let c = client(&server, &key);
    assert_eq!(get(&c, "/api/v1/api-keys").await.0, 200);
    assert_eq!(
        get(&c, "/api/v1/submissions").await,
        (403, "insufficient_scope".to_string())
    );

    // Keys are shown once: the list never holds them.
    let list = admin.json("/api/v1/api-keys").await;
    let keys = list["api_keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 6);
    assert!(!list.to_string().contains(&key[4..]));
    assert!(key.starts_with(keys[5]["prefix"].as_str().expect("prefix")));
    let audit = admin.json("/api/v1/audit?action=api_key.created").await;
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(6));

    // Bad requests are refused clearly, and only administrators make keys.
    for (body, code) in [
        (
            json!({"username": "dhis2", "name": "x", "scopes": ["read_everything"]}),
            "bad_scope",
        ),
        (
            json!({"username": "dhis2", "name": "x", "scopes": []}),
            "bad_scope",
        ),
        (
            json!({"username": "dhis2", "name": "", "scopes": ["export"]}),
            "bad_name",
        ),
        (
            json!({"username": "dhis2", "name": "x", "scopes": ["export"], "expires_at": "2001-01-01T00:00:00Z"}),
            "bad_expiry",
        ),
    ] {
        let res = admin
            .post("/api/v1/api-keys")
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(res.status(), 400, "{body}");
        let b: Value = res.json().await.expect("json");
        assert_eq!(b["error"]["code"], code, "{body}");
    }
    let officer = Admin::login(&server, "pipeline", "pipeline-password").await;
    let res = officer
        .post("/api/v1/api-keys")
        .json(&json!({"username": "dhis2", "name": "x", "scopes": ["export"]}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 403);
    let nobody = client(
        &server,
        "ftk_0000000000000000000000000000000000000000000000000000000000000000",
    );
    assert_eq!(
        get(&nobody, "/api/v1/indicators").await,
        (401, "invalid_api_key".to_string())
    );
}

#[tokio::test]
async fn revoking_a_key_stops_it_and_its_tokens_at_once_on_every_instance() {
    let server = Server::start().await;
    let second = Server::start_sharing(&server, &[]).await;
    let admin = server.admin().await;
    admin
        .create_user("dhis2", "dhis2-password-1", "api_client")
        .await;
    let (id, key) = create_key(&admin, "dhis2", &["read_indicators"]).await;
    let (_, other_key) = create_key(&admin, "dhis2", &["read_indicators"]).await;
    let token = exchange(&second, &key).await;
    for s in [&server, &second] {
        for bearer in [&key, &token, &other_key] {
            assert_eq!(get(&client(s, bearer), "/api/v1/indicators").await.0, 200);
        }
    }
    let res = admin
        .delete(&format!("/api/v1/api-keys/{id}"))
        .send()
        .await
        .expect("revoke");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert!(body["api_key"]["revoked_at"].is_string());
    for s in [&server, &second] {
        assert_eq!(
            get(&client(s, &key), "/api/v1/indicators").await,
            (401, "invalid_api_key".to_string())
        );
        assert_eq!(
            get(&client(s, &token), "/api/v1/indicators").await,
            (401, "token_revoked".to_string())
        );
        // The account's other key is untouched.
        assert_eq!(
            get(&client(s, &other_key), "/api/v1/indicators").await.0,
            200
        );
    }
    let res = reqwest::Client::new()
        .post(second.url("/api/v1/auth/token"))
        .json(&json!({ "api_key": key }))
        .send()
        .await
        .expect("exchange");
    assert_eq!(res.status(), 401);
    let res = admin
        .delete("/api/v1/api-keys/999999")
        .send()
        .await
        .expect("revoke unknown");
    assert_eq!(res.status(), 404);
    let audit = admin.json("/api/v1/audit?action=api_key.revoked").await;
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn rotating_the_signing_key_keeps_earlier_tokens_valid_on_every_instance() {
    let server = Server::start().await;
    let second = Server::start_sharing(&server, &[]).await;
    let admin = server.admin().await;
    let before = admin.token.clone();
    let res = admin
        .post("/api/v1/auth/signing-keys/rotate")
        .send()
        .await
        .expect("rotate");
    assert_eq!(res.status(), 200);
    let rotated: Value = res.json().await.expect("json");
    let new_kid = rotated["kid"].as_str().expect("kid").to_string();
    assert_ne!(kid(&before), new_kid);

    // A token from the other instance is signed with the new key, and both instances accept
    // both tokens.
    let after = Admin::login(&second, "admin", ADMIN_PASSWORD).await.token;
    assert_eq!(kid(&after), new_kid);
    for s in [&server, &second] {
        for t in [&before, &after] {
            assert_eq!(get(&client(s, t), "/api/v1/users").await.0, 200);
        }
    }

    // From the command line as well.
    let out = server.cli(&["tokens", "rotate-signing-key"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let third = Admin::login(&server, "admin", ADMIN_PASSWORD).await.token;
    assert!(![kid(&before), new_kid.clone()].contains(&kid(&third)));
    for s in [&server, &second] {
        for t in [&before, &after, &third] {
            assert_eq!(get(&client(s, t), "/api/v1/users").await.0, 200);
        }
    }
    let keys = admin.json("/api/v1/auth/signing-keys").await;
    let keys = keys["signing_keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 3);
    assert_eq!(keys.iter().filter(|k| k["retired_at"].is_null()).count(), 1);
    assert!(!keys.iter().any(|k| k.get("secret").is_some()));

    // A token naming a key the server never had is refused, as is a rotation by a non-admin.
    let mut parts: Vec<String> = third.split('.').map(str::to_string).collect();
    parts[0] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(r#"{"typ":"JWT","alg":"HS256","kid":"made-up"}"#);
    let forged = parts.join(".");
    assert_eq!(
        get(&client(&server, &forged), "/api/v1/users").await,
        (401, "invalid_token".to_string())
    );
    admin
        .create_user("officer", "officer-password", "province_officer")
        .await;
    let officer = Admin::login(&server, "officer", "officer-password").await;
    let res = officer
        .post("/api/v1/auth/signing-keys/rotate")
        .send()
        .await
        .expect("rotate");
    assert_eq!(res.status(), 403);
}
