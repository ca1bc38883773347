//! The phone's view of forms: challenge, form list, download, manifest and media, app keys.

mod common;

use common::collect::Collect;
use common::*;

#[tokio::test]
async fn form_list_needs_a_digest_challenge_and_lists_open_forms_with_true_hashes() {
    let (server, admin) = server_with_forms().await;

    // Without credentials: 401 with a Digest challenge (and no Basic over plain http).
    let res = reqwest::get(server.url("/formList")).await.expect("get");
    assert_eq!(res.status(), 401);
    let challenges: Vec<String> = res
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect();
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    assert!(challenges[0].starts_with("Digest "));
    assert!(challenges[0].contains("qop=\"auth\""));

    // Basic over http is refused even with the right password.
    let res = reqwest::Client::new()
        .get(server.url("/formList"))
        .basic_auth("lan", Some("lan-password-1"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 401);

    // A wrong password gets the challenge again.
    let wrong = Collect::with_password(&server.base, "lan", "not-the-password");
    assert_eq!(wrong.get("/formList").await.status(), 401);

    let collect = collector(&server);
    let res = collect.get("/formList").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-openrosa-version"], "1.0");
    assert_eq!(
        res.headers()["content-type"],
        "text/xml; charset=utf-8",
        "Collect rejects anything but text/xml"
    );
    assert!(res.headers().contains_key("date"));
    assert!(res
        .headers()
        .contains_key("x-openrosa-accept-content-length"));
    let body = res.text().await.expect("body");
    let doc = roxmltree::Document::parse(&body).expect("xml");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "xforms");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://openrosa.org/xforms/xformsList")
    );
    let forms: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("xform"))
        .collect();
    let ids: Vec<&str> = forms
        .iter()
        .filter_map(|f| f.children().find(|c| c.has_tag_name("formID"))?.text())
        .collect();
    assert!(
        ids.contains(&"all_features") && ids.contains(&"two_photos"),
        "{ids:?}"
    );

    for form in forms {
        let get = |name: &str| {
            form.children()
                .find(|c| c.has_tag_name(name))
                .and_then(|c| c.text())
                .unwrap_or_default()
                .to_string()
        };
        assert!(!get("name").is_empty());
        assert_eq!(get("version").len(), 10);
        let hash = get("hash");
        let url = get("downloadUrl");
        assert!(url.starts_with(&server.base), "absolute URL: {url}");
        let res = collect.get(&url).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/xml; charset=utf-8");
        let bytes = res.bytes().await.expect("form bytes");
        assert_eq!(
            hash,
            format!("md5:{}", md5_hex(&bytes)),
            "hash of the served bytes"
        );
        if get("formID") == "all_features" {
            let original = std::fs::read(fixture("forms/all_features.xml")).expect("fixture");
            assert_eq!(bytes.as_ref(), original.as_slice(), "served byte for byte");
        }
    }

    // formID filters the list.
    let body = collect
        .get("/formList?formID=two_photos")
        .await
        .text()
        .await
        .expect("body");
    assert!(body.contains("<formID>two_photos</formID>"));
    assert!(!body.contains("all_features"));
    drop(admin);
}

#[tokio::test]
async fn media_files_appear_in_the_manifest_with_their_md5() {
    let (server, admin) = server_with_forms().await;
    let csv = "name,label\nban_a,Bản A\nban_b,Bản B\n".as_bytes().to_vec();
    let res = admin
        .put("/api/v1/forms/all_features/versions/2025040301/media/hamlets.csv")
        .header("content-type", "text/csv")
        .body(csv.clone())
        .send()
        .await
        .expect("put media");
    assert_eq!(res.status(), 201);

    // Path traversal in a media name is refused.
    let res = admin
        .put("/api/v1/forms/all_features/versions/2025040301/media/..%2Fescape.csv")
        .body("x")
        .send()
        .await
        .expect("put media");
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "bad_filename");

    let collect = collector(&server);
    let list = collect.get("/formList").await.text().await.expect("list");
    let doc = roxmltree::Document::parse(&list).expect("xml");
    let form = doc
        .descendants()
        .find(|n| n.has_tag_name("xform") && n.children().any(|c| c.text() == Some("all_features")))
        .expect("all_features listed");
    let manifest_url = form
        .children()
        .find(|c| c.has_tag_name("manifestUrl"))
        .and_then(|c| c.text())
        .expect("manifestUrl when the form has media")
        .to_string();
    let other = doc
        .descendants()
        .find(|n| n.has_tag_name("xform") && n.children().any(|c| c.text() == Some("two_photos")))
        .expect("two_photos listed");
    assert!(!other.children().any(|c| c.has_tag_name("manifestUrl")));

    let res = collect.get(&manifest_url).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/xml; charset=utf-8");
    assert_eq!(res.headers()["x-openrosa-version"], "1.0");
    let manifest = res.text().await.expect("manifest");
    let doc = roxmltree::Document::parse(&manifest).expect("xml");
    assert_eq!(
        doc.root_element().tag_name().namespace(),
        Some("http://openrosa.org/xforms/xformsManifest")
    );
    let media: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("mediaFile"))
        .collect();
    assert_eq!(media.len(), 1);
    let text = |name: &str| {
        media[0]
            .children()
            .find(|c| c.has_tag_name(name))
            .and_then(|c| c.text())
            .expect(name)
            .to_string()
    };
    assert_eq!(text("filename"), "hamlets.csv");
    assert_eq!(text("hash"), format!("md5:{}", md5_hex(&csv)));
    let res = collect.get(&text("downloadUrl")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.expect("bytes").as_ref(), csv.as_slice());
}

#[tokio::test]
async fn app_keys_work_in_the_url_and_revocation_gives_403_at_once() {
    let (server, admin) = server_with_forms().await;
    let res = admin
        .post("/api/v1/users/lan/app-key")
        .send()
        .await
        .expect("key");
    assert_eq!(res.status(), 201);
    let body: serde_json::Value = res.json().await.expect("json");
    let server_url = body["server_url"].as_str().expect("server_url").to_string();
    assert!(server_url.starts_with(&server.base) && server_url.contains("/key/"));

    let phone = Collect::with_key(&server_url);
    let res = phone.get("/formList").await;
    assert_eq!(res.status(), 200);
    let list = res.text().await.expect("list");
    // Links keep the key so that the phone can follow them.
    assert!(
        list.contains(&format!("<downloadUrl>{server_url}/forms/")),
        "{list}"
    );
    assert_eq!(phone.head_submission().await.status(), 204);

    let bad = Collect::with_key(&format!("{}/key/not-a-real-key", server.base));
    let res = bad.get("/formList").await;
    assert_eq!(
        res.status(),
        403,
        "a bad key must not trigger a password prompt"
    );
    assert!(openrosa_message(&res.text().await.expect("body")).contains("key"));

    let res = admin
        .delete("/api/v1/users/lan/app-key")
        .send()
        .await
        .expect("revoke");
    assert_eq!(res.status(), 200);
    assert_eq!(phone.get("/formList").await.status(), 403);
}

#[tokio::test]
async fn a_collector_sees_only_assigned_forms_and_new_versions_replace_old_ones_in_the_list() {
    let (server, admin) = server_with_forms().await;
    let res = admin
        .put("/api/v1/users/lan/forms")
        .json(&serde_json::json!({ "form_ids": ["two_photos"] }))
        .send()
        .await
        .expect("assign");
    assert_eq!(res.status(), 200);
    let collect = collector(&server);
    let list = collect.get("/formList").await.text().await.expect("list");
    assert!(list.contains("two_photos") && !list.contains("all_features"));
    // Unassigned forms cannot be downloaded either.
    let res = collect.get("/forms/all_features/2025040301/form.xml").await;
    assert_eq!(res.status(), 404);

    // A new version: listed instead of the old one, which still exists.
    let v1 = std::fs::read(fixture("forms/two_photos.xml")).expect("fixture");
    let v2 = String::from_utf8(v1.clone())
        .expect("utf8")
        .replace("version=\"2025040301\"", "version=\"2025040302\"");
    let (status, body) = admin.upload_form(v2.as_bytes(), true).await;
    assert_eq!(status, 201, "{body}");
    let list = collect.get("/formList").await.text().await.expect("list");
    assert!(list.contains("<version>2025040302</version>"));
    assert!(!list.contains("<version>2025040301</version>"));
    let versions = admin.json("/api/v1/forms/two_photos/versions").await;
    let states: Vec<(&str, &str)> = versions
        .as_array()
        .expect("array")
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap_or(""),
                v["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(states, vec![("2025040301", "open"), ("2025040302", "open")]);

    // Same id and version with other bytes: refused; the same bytes again: fine.
    let changed = v2.replace("Hai ảnh", "Ba ảnh");
    let (status, body) = admin.upload_form(changed.as_bytes(), true).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "version_exists");
    let (status, _) = admin.upload_form(v2.as_bytes(), true).await;
    assert_eq!(status, 200);

    // Closing a version removes it from the list.
    let res = admin
        .post("/api/v1/forms/two_photos/versions/2025040302/close")
        .send()
        .await
        .expect("close");
    assert_eq!(res.status(), 200);
    let list = collect.get("/formList").await.text().await.expect("list");
    assert!(list.contains("<version>2025040301</version>"), "{list}");
}

#[tokio::test]
async fn shipped_forms_are_loaded_on_an_empty_database() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let forms = admin.json("/api/v1/forms").await;
    let ids: Vec<&str> = forms
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|f| f["form_id"].as_str())
        .collect();
    for expected in ["policy_dialogue", "safe_birth_outreach", "training_session"] {
        assert!(ids.contains(&expected), "{ids:?}");
    }
    assert_eq!(
        forms[0]["versions"][0]["state"], "open",
        "shipped forms are published"
    );
}

#[tokio::test]
async fn rest_api_errors_are_json_and_need_a_token() {
    let server = Server::start().await;
    let res = reqwest::get(server.url("/api/v1/forms"))
        .await
        .expect("get");
    assert_eq!(res.status(), 401);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");

    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth/token"))
        .json(&serde_json::json!({"username": "admin", "password": "wrong"}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 401);

    let admin = server.admin().await;
    let (status, body) = admin.upload_form(b"<not-xml", false).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap_or("").len() > 5);
    let res = admin
        .get("/api/v1/forms/nope/versions")
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 404);
    let res = admin
        .post("/api/v1/users")
        .json(&serde_json::json!({"username": "Bad Name", "password": "long-enough", "role": "collector"}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 400);
    let res = admin
        .post("/api/v1/users")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "bad_json");

    // A collector's token cannot administer.
    admin
        .create_user("lan", "lan-password-1", "collector")
        .await;
    let lan = Admin::login(&server, "lan", "lan-password-1").await;
    let res = lan.get("/api/v1/forms").send().await.expect("get");
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn behind_a_reverse_proxy_links_follow_the_forwarded_scheme_and_host() {
    let (server, _admin) = server_with_forms().await;
    let res = reqwest::Client::new()
        .get(server.url("/formList"))
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "collect.sonla.example")
        .basic_auth("lan", Some("lan-password-1"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        res.status(),
        200,
        "Basic is accepted when the proxy says https"
    );
    let list = res.text().await.expect("list");
    assert!(
        list.contains("<downloadUrl>https://collect.sonla.example/forms/"),
        "{list}"
    );
}
