//! Review through the API and the page: states, reasons, comments, bulk review with a count
//! before confirming, the audit log; photos and their copies; the page's security.

mod common;

use common::collect::Attachment;
use common::photos::{has_exif, phone_jpeg, png_bomb};
use common::web::sign_in;
use common::*;
use diesel::{Connection, RunQueryDsl};
use serde_json::{json, Value};

async fn submit(server: &Server, respondent: &str, size: u32) -> String {
    let id = new_instance_id();
    let xml = all_features_instance(&id, None, respondent, size, None);
    let res = collector(server).submit(&xml, &[], false).await;
    assert_eq!(res.status(), 201);
    id
}

async fn post(admin: &Admin, path: &str, body: Value) -> (u16, Value) {
    let res = admin.post(path).json(&body).send().await.expect("post");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn review_states_comments_bulk_and_the_audit_log() {
    let (server, admin) = server_with_forms().await;
    admin
        .create_user("officer", "officer-password", "province_officer")
        .await;
    let officer = Admin::login(&server, "officer", "officer-password").await;
    let a = submit(&server, "A", 3).await;
    let b = submit(&server, "B", 4).await;
    let c = submit(&server, "C", 5).await;
    let d = admin.json(&format!("/api/v1/submissions/{a}")).await;
    assert_eq!(d["review_state"], "received");
    assert_eq!(d["review"], Value::Null);

    // A reason is required to reject or ask for a fix, and nothing changes without one.
    for state in ["rejected", "has_issues"] {
        let (status, body) = post(
            &officer,
            &format!("/api/v1/submissions/{a}/review"),
            json!({"state": state}),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "comment_required");
    }
    let (status, body) = post(
        &officer,
        &format!("/api/v1/submissions/{a}/review"),
        json!({"state": "edited"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_state"))
    );
    assert_eq!(
        admin.json(&format!("/api/v1/submissions/{a}")).await["review_state"],
        "received"
    );

    let (status, body) = post(
        &officer,
        &format!("/api/v1/submissions/{a}/review"),
        json!({"state": "rejected", "comment": "The photo shows another hamlet"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["review_state"], "rejected");
    assert_eq!(body["previous_state"], "received");
    let d = admin.json(&format!("/api/v1/submissions/{a}")).await;
    assert_eq!(d["review_state"], "rejected");
    assert_eq!(d["review"]["by"], "officer");
    assert_eq!(d["review"]["comment"], "The photo shows another hamlet");
    assert!(d["review"]["at"].is_string());
    let (status, _) = post(
        &officer,
        &format!("/api/v1/submissions/{a}/review"),
        json!({"state": "approved"}),
    )
    .await;
    assert_eq!(status, 200);
    let d = admin.json(&format!("/api/v1/submissions/{a}")).await;
    let states: Vec<&str> = d["reviews"]
        .as_array()
        .expect("reviews")
        .iter()
        .filter_map(|r| r["state"].as_str())
        .collect();
    assert_eq!(states, ["rejected", "approved"]);

    // Unknown submissions are 404, whatever the body.
    let (status, _) = post(
        &officer,
        "/api/v1/submissions/uuid:nope/review",
        json!({"state": "approved"}),
    )
    .await;
    assert_eq!(status, 404);

    // Comments thread.
    let (status, body) = post(
        &officer,
        &format!("/api/v1/submissions/{b}/comments"),
        json!({"body": "Số người trong hộ có đúng không?"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["author"], "officer");
    let lan = Admin::login(&server, "lan", "lan-password-1").await;
    let (status, _) = post(
        &lan,
        &format!("/api/v1/submissions/{b}/comments"),
        json!({"body": "Đúng, 4 người."}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = post(
        &lan,
        &format!("/api/v1/submissions/{b}/comments"),
        json!({"body": "   "}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("empty_comment"))
    );
    let thread = officer
        .json(&format!("/api/v1/submissions/{b}/comments"))
        .await;
    let thread: Vec<(&str, &str)> = thread["comments"]
        .as_array()
        .expect("comments")
        .iter()
        .map(|c| {
            (
                c["author"].as_str().unwrap_or(""),
                c["body"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        thread,
        [
            ("officer", "Số người trong hộ có đúng không?"),
            ("lan", "Đúng, 4 người.")
        ]
    );

    // Bulk: a dry run counts what would change (a is approved already), nothing changes.
    let filter = json!({"state": "approved", "filter": {"form": "all_features"}, "dry_run": true});
    let (status, body) = post(&officer, "/api/v1/submissions/review", filter).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"count": 2, "dry_run": true, "applied": false}));
    assert_eq!(
        admin.json(&format!("/api/v1/submissions/{b}")).await["review_state"],
        "received"
    );
    // Confirming with a count that no longer matches is refused, all or nothing.
    let (status, body) = post(
        &officer,
        "/api/v1/submissions/review",
        json!({"state": "approved", "filter": {"form": "all_features"}, "expected_count": 3}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("count_changed"))
    );
    assert_eq!(
        admin.json(&format!("/api/v1/submissions/{c}")).await["review_state"],
        "received"
    );
    let (status, body) = post(
        &officer,
        "/api/v1/submissions/review",
        json!({"state": "approved", "filter": {"form": "all_features"}, "expected_count": 2}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"count": 2, "dry_run": false, "applied": true}));
    for id in [&a, &b, &c] {
        assert_eq!(
            admin.json(&format!("/api/v1/submissions/{id}")).await["review_state"],
            "approved"
        );
    }
    // By ids: one unknown id and nothing changes.
    let (status, _) = post(
        &officer,
        "/api/v1/submissions/review",
        json!({"state": "has_issues", "comment": "recheck", "ids": [b, "uuid:unknown"]}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        admin.json(&format!("/api/v1/submissions/{b}")).await["review_state"],
        "approved"
    );
    let (status, body) = post(
        &officer,
        "/api/v1/submissions/review",
        json!({"state": "has_issues", "comment": "recheck", "ids": [b, c]}),
    )
    .await;
    assert_eq!((status, body["count"].as_i64()), (200, Some(2)));
    let listed = admin.all_submissions("&state=has_issues").await;
    assert_eq!(listed.len(), 2);
    let (status, body) = post(
        &officer,
        "/api/v1/submissions/review",
        json!({"state": "approved"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_selection"))
    );
    let (status, _) = post(
        &officer,
        "/api/v1/submissions/review",
        json!({"state": "approved", "ids": [], "filter": {}}),
    )
    .await;
    assert_eq!(status, 400);

    // An edit from the phone sets `edited` and shows in the history with what changed.
    let edit = new_instance_id();
    let xml = all_features_instance(&edit, Some(&b), "B", 6, None);
    assert_eq!(
        collector(&server).submit(&xml, &[], false).await.status(),
        201
    );
    let d = admin.json(&format!("/api/v1/submissions/{b}")).await;
    assert_eq!(d["review_state"], "edited");
    assert_eq!(
        d["reviews"]
            .as_array()
            .and_then(|r| r.last())
            .map(|r| r["by"].clone()),
        Some(json!("lan"))
    );
    let changes = &d["versions"][1]["changes"];
    assert_eq!(
        changes,
        &json!([{"path": "household/household_size", "before": "4", "after": "6"}])
    );
    let edits = admin
        .json("/api/v1/audit?action=submission.edited&limit=10")
        .await;
    let edits = edits["entries"].as_array().expect("entries");
    assert_eq!(edits.len(), 1, "the phone's edit is in the audit log");
    assert_eq!(edits[0]["actor"], "lan");
    assert_eq!(edits[0]["target"], edit.as_str());
    assert_eq!(edits[0]["details"]["deprecated"], b.as_str());

    // The audit log holds every change, in order, with who and no field values.
    let log = admin
        .json("/api/v1/audit?action=submission.review&limit=1000")
        .await;
    let entries = log["entries"].as_array().expect("entries");
    assert_eq!(
        entries.len(),
        2 + 2 + 2,
        "two single reviews, two bulk reviews of two each"
    );
    assert_eq!(entries[0]["actor"], "officer");
    assert_eq!(entries[0]["target"], a.as_str());
    assert_eq!(
        entries[0]["details"],
        json!({"from": "received", "to": "rejected", "bulk": false})
    );
    assert_eq!(entries[2]["details"]["bulk"], true);
    let all = admin.json("/api/v1/audit?limit=1000").await;
    let actions: Vec<&str> = all["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"user.create"));
    assert!(actions.contains(&"submission.comment"));
    assert!(
        !all.to_string().contains("Số người"),
        "comment texts stay out of the audit log"
    );
    let page = admin.json("/api/v1/audit?limit=2").await;
    let next = page["next_cursor"].as_i64().expect("cursor");
    let rest = admin
        .json(&format!("/api/v1/audit?limit=1000&cursor={next}"))
        .await;
    assert_eq!(
        rest["entries"].as_array().map(Vec::len),
        Some(all["entries"].as_array().map(Vec::len).unwrap_or(0) - 2)
    );

    // Append-only: the database itself refuses to change or remove an entry.
    let mut args = server.database_args().into_iter();
    let mut url = None;
    while let Some(a) = args.next() {
        if a == "--database-url" {
            url = args.next();
        }
    }
    let refused = match url {
        Some(url) => {
            let mut c = diesel::PgConnection::establish(&url).expect("pg");
            (
                diesel::sql_query("UPDATE audit_log SET actor = 'x'")
                    .execute(&mut c)
                    .is_err(),
                diesel::sql_query("DELETE FROM audit_log")
                    .execute(&mut c)
                    .is_err(),
            )
        }
        None => {
            let path = server.data_dir().join("fieldtally.sqlite3");
            let mut c =
                diesel::SqliteConnection::establish(&path.display().to_string()).expect("sqlite");
            diesel::sql_query("PRAGMA busy_timeout = 10000")
                .execute(&mut c)
                .expect("pragma");
            (
                diesel::sql_query("UPDATE audit_log SET actor = 'x'")
                    .execute(&mut c)
                    .is_err(),
                diesel::sql_query("DELETE FROM audit_log")
                    .execute(&mut c)
                    .is_err(),
            )
        }
    };
    assert_eq!(refused, (true, true));
}

#[tokio::test]
async fn photos_are_checked_on_arrival_and_served_upright_small_and_without_metadata() {
    let (server, admin) = server_with_forms().await;
    let photo = phone_jpeg();
    assert!(has_exif(&photo));
    let id = new_instance_id();
    let xml = all_features_instance(&id, None, "A", 3, Some("p.jpg"));
    let res = collector(&server)
        .submit(&xml, &[Attachment::jpeg("p.jpg", photo.clone())], false)
        .await;
    assert_eq!(res.status(), 201);

    let base = format!("/api/v1/submissions/{id}/attachments/p.jpg");
    let original = admin.get(&base).send().await.expect("original");
    assert_eq!(original.headers()["content-type"], "image/jpeg");
    assert!(original.headers()["content-disposition"]
        .to_str()
        .unwrap_or("")
        .starts_with("attachment"));
    assert_eq!(original.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        original.bytes().await.expect("bytes").as_ref(),
        photo.as_slice(),
        "the original is kept as sent"
    );

    for (size, long_side) in [("thumb", 320), ("review", 640)] {
        for round in 0..2 {
            let res = admin
                .get(&format!("{base}?size={size}"))
                .send()
                .await
                .expect("copy");
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["content-type"], "image/jpeg");
            let bytes = res.bytes().await.expect("bytes");
            assert!(
                !has_exif(&bytes),
                "no EXIF (GPS, orientation) in the {size} copy"
            );
            let img = image::load_from_memory(&bytes).expect("decodes").to_rgb8();
            // 640×480 turned upright: portrait.
            assert_eq!(img.height(), long_side, "{size} round {round}");
            assert_eq!(img.width(), long_side * 3 / 4);
            let top = img.get_pixel(img.width() / 2, img.height() / 8);
            assert!(
                top[0] > 150 && top[2] < 100,
                "red on top after rotation: {top:?}"
            );
        }
    }
    assert!(
        server.data_dir().join("blobs/derived").is_dir(),
        "copies are cached"
    );
    let res = admin
        .get(&format!("{base}?size=huge"))
        .send()
        .await
        .expect("bad size");
    assert_eq!(res.status(), 400);

    // A PNG is an image too.
    let png = common::photos::encode(&common::photos::landscape(50, 20), image::ImageFormat::Png);
    let id2 = new_instance_id();
    let xml = all_features_instance(&id2, None, "B", 3, Some("p.png"));
    let png_part = Attachment {
        name: "p.png".into(),
        bytes: png,
        content_type: "image/png".into(),
    };
    assert_eq!(
        collector(&server)
            .submit(&xml, &[png_part], false)
            .await
            .status(),
        201
    );
    let res = admin
        .get(&format!(
            "/api/v1/submissions/{id2}/attachments/p.png?size=thumb"
        ))
        .send()
        .await
        .expect("png");
    assert_eq!(res.status(), 200);
    let img = image::load_from_memory(&res.bytes().await.expect("bytes")).expect("decodes");
    assert_eq!((img.width(), img.height()), (50, 20));

    // A file that is not an image downloads as an opaque file, whatever it claims to be.
    let id3 = new_instance_id();
    let xml = all_features_instance(&id3, None, "C", 3, Some("x.jpg"));
    let html = Attachment {
        name: "x.jpg".into(),
        bytes: b"<html><script>alert(1)</script>".to_vec(),
        content_type: "text/html".into(),
    };
    assert_eq!(
        collector(&server)
            .submit(&xml, &[html], false)
            .await
            .status(),
        201
    );
    let res = admin
        .get(&format!("/api/v1/submissions/{id3}/attachments/x.jpg"))
        .send()
        .await
        .expect("file");
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let res = admin
        .get(&format!(
            "/api/v1/submissions/{id3}/attachments/x.jpg?size=thumb"
        ))
        .send()
        .await
        .expect("file");
    assert_eq!(res.status(), 422);

    // A decompression bomb and a truncated photo are refused on arrival and nothing is stored.
    let mut truncated = phone_jpeg();
    truncated.truncate(truncated.len() * 2 / 3);
    for (name, bytes) in [("bomb.png", png_bomb()), ("cut.jpg", truncated)] {
        let id = new_instance_id();
        let xml = all_features_instance(&id, None, "D", 3, Some(name));
        let part = Attachment {
            name: name.into(),
            bytes,
            content_type: "image/jpeg".into(),
        };
        let res = collector(&server).submit(&xml, &[part], false).await;
        assert_eq!(res.status(), 400, "{name}");
        let message = openrosa_message(&res.text().await.expect("body"));
        assert!(message.contains(name), "{message}");
        let res = admin
            .get(&format!("/api/v1/submissions/{id}"))
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 404, "{name} left nothing behind");
    }
    assert_eq!(admin.all_submissions("").await.len(), 3);
}

#[tokio::test]
async fn the_page_protects_its_session_and_its_forms() {
    let (server, admin) = server_with_forms().await;
    admin
        .create_user("officer", "officer-password", "province_officer")
        .await;
    let id = submit(&server, "A", 3).await;
    let (_, session) = sign_in(&server, "officer", "officer-password").await;
    let session = session.expect("signed in");
    let cookie = session
        .set_cookie
        .iter()
        .find(|c| c.starts_with("ft_session="))
        .expect("cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/ui"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http here: {cookie}");
    // Behind an https proxy (or with --tls-cert) the cookies are Secure.
    let res = common::web::client()
        .get(server.url("/ui/login"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("login page");
    let login_cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap_or("")
        .to_string();
    assert!(
        login_cookie.contains("Secure") && login_cookie.contains("HttpOnly"),
        "{login_cookie}"
    );

    let page = session.get("/ui/queue").await;
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap_or("")
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["referrer-policy"], "same-origin");
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.expect("html");
    assert!(html.contains("<html lang=\"vi\""), "Vietnamese by default");
    assert!(
        !html.contains("<script>") && !html.contains("style=\""),
        "no inline script or style"
    );

    // Without the CSRF token, with a wrong one, or from another site: refused, nothing changes.
    let ui = format!("/ui/s/{}", id.replace(':', "%3A"));
    let res = session
        .post_raw(&format!("{ui}/review"), &[("state", "approved")])
        .await;
    assert_eq!(res.status(), 403);
    let res = session
        .post_raw(
            &format!("{ui}/review"),
            &[("csrf", "forged"), ("state", "approved")],
        )
        .await;
    assert_eq!(res.status(), 403);
    let res = session
        .http
        .post(server.url(&format!("{ui}/review")))
        .header("cookie", &session.cookie)
        .header("origin", "https://evil.example")
        .form(&[("csrf", session.csrf.as_str()), ("state", "approved")])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 403);
    assert_eq!(
        admin.json(&format!("/api/v1/submissions/{id}")).await["review_state"],
        "received"
    );

    // Reject needs a reason on the page too; with one it works and lands in the thread.
    let res = session
        .post(&format!("{ui}/review"), &[("state", "rejected")])
        .await;
    assert_eq!(res.status(), 400);
    let res = session
        .post(
            &format!("{ui}/review"),
            &[("state", "rejected"), ("comment", "<b>sai</b> bản")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let res = session
        .post(
            &format!("{ui}/comments"),
            &[("body", "<script>alert(1)</script>")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let html = session.get(&ui).await.text().await.expect("html");
    assert!(
        html.contains("&lt;b&gt;sai&lt;/b&gt; bản"),
        "review comment escaped"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "comment escaped"
    );
    assert!(!html.contains("<script>alert"));

    // English on request, and the choice never redirects off the site.
    let res = session.get("/ui/lang/en?next=//evil.example/").await;
    assert_eq!(res.headers()["location"], "/ui/queue");
    let lang_cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    let page = session
        .http
        .get(server.url("/ui/queue"))
        .header("cookie", format!("{}; {lang_cookie}", session.cookie))
        .send()
        .await
        .expect("queue")
        .text()
        .await
        .expect("html");
    assert!(page.contains("<html lang=\"en\"") && page.contains("Review queue"));

    // Signing out ends the session on the server.
    let res = session.post("/ui/logout", &[]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(session.get("/ui/queue").await.status(), 303);
    // A sign-in form without its cookie is refused.
    let res = common::web::client()
        .post(server.url("/ui/login"))
        .form(&[
            ("login_token", "x"),
            ("username", "officer"),
            ("password", "officer-password"),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), 403);
    let (status, _) = sign_in(&server, "officer", "wrong-password").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_queue_shows_the_newest_first_and_pages_by_key() {
    let (server, admin) = server_with_forms().await;
    admin
        .create_user("officer", "officer-password", "province_officer")
        .await;
    let mut ids = Vec::new();
    for i in 0..53 {
        ids.push(submit(&server, &format!("R{i}"), 3).await);
    }
    let (_, session) = sign_in(&server, "officer", "officer-password").await;
    let session = session.expect("signed in");
    let rows_of = |html: &str| -> Vec<String> {
        html.split("name=\"ids\" value=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next().map(str::to_string))
            .collect()
    };
    let first = session.get("/ui/queue").await.text().await.expect("html");
    let page1 = rows_of(&first);
    assert_eq!(page1.len(), 50);
    assert_eq!(page1[0], ids[52], "newest first");
    let older = first
        .split("id=\"older\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a link to older submissions")
        .replace("&amp;", "&");
    let second = session.get(&older).await.text().await.expect("html");
    let page2 = rows_of(&second);
    assert_eq!(page2, [ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    assert!(!second.contains("id=\"older\""), "no page after the last");
    // Filters keep the paging: nothing approved yet.
    let filtered = session
        .get("/ui/queue?state=approved")
        .await
        .text()
        .await
        .expect("html");
    assert!(rows_of(&filtered).is_empty());
    let bad = session.get("/ui/queue?state=nonsense").await;
    assert_eq!(bad.status(), 400);
    let bad = session.get("/ui/queue?from=yesterday").await;
    assert_eq!(bad.status(), 400);
}
