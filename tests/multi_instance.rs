//! Two server instances on one database and one data folder (PostgreSQL in production; SQLite
//! works too): the same submissions sent to both at once are stored exactly once, and the
//! security state (lock-outs, revoked tokens, used nonces) is shared.

mod common;

use std::collections::HashSet;

use common::collect::{Attachment, Collect};
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_submissions_sent_to_two_instances_at_once_are_stored_exactly_once() {
    let (a, admin) = server_with_forms().await;
    let b = Server::start_sharing(&a, &[]).await;
    let mut tasks = Vec::new();
    let mut ids = Vec::new();
    for n in 0..60 {
        let id = new_instance_id();
        ids.push(id.clone());
        let xml = all_features_instance(&id, None, &format!("Twin {n}"), 2, Some("photo1.jpg"));
        let photo = random_bytes(3000 + n);
        for base in [a.base.clone(), b.base.clone()] {
            let (xml, photo) = (xml.clone(), photo.clone());
            tasks.push(tokio::spawn(async move {
                let collect = Collect::with_password(&base, "lan", "lan-password-1");
                let res = collect
                    .submit(&xml, &[Attachment::jpeg("photo1.jpg", photo)], false)
                    .await;
                res.status().as_u16()
            }));
        }
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 201);
    }
    let stored: Vec<String> = admin
        .all_submissions("")
        .await
        .iter()
        .map(|s| s["instance_id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(stored.len(), 60, "each exactly once");
    assert_eq!(
        stored.iter().cloned().collect::<HashSet<_>>(),
        ids.iter().cloned().collect::<HashSet<_>>()
    );
    // Edits of one submission sent to both instances: one wins, the other is told it is late;
    // no lost update, no fork.
    let id = &ids[0];
    let mut edits = Vec::new();
    for (n, base) in [a.base.clone(), b.base.clone()].into_iter().enumerate() {
        let id = id.clone();
        edits.push(tokio::spawn(async move {
            let collect = Collect::with_password(&base, "lan", "lan-password-1");
            let edit = new_instance_id();
            let xml = all_features_instance(&edit, Some(&id), &format!("Edit {n}"), 3, None);
            collect.submit(&xml, &[], false).await.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for e in edits {
        statuses.push(e.await.expect("edit"));
    }
    statuses.sort();
    assert_eq!(statuses, vec![201, 409]);
    let d = admin.json(&format!("/api/v1/submissions/{id}")).await;
    assert_eq!(d["versions"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        d["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .filter(|v| v["current"] == true)
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_outs_revocations_and_used_nonces_hold_on_every_instance() {
    let a = Server::start_with(&["--login-max-failures", "4"]).await;
    let b = Server::start_sharing(&a, &["--login-max-failures", "4"]).await;
    let admin = a.admin().await;
    admin
        .create_user("lan", "lan-password-1", "collector")
        .await;
    let xml = std::fs::read(fixture("forms/all_features.xml")).expect("fixture");
    assert_eq!(admin.upload_form(&xml, true).await.0, 201);

    // Failures spread over both instances (at once) add up.
    let mut tries = Vec::new();
    for n in 0..4 {
        let base = if n % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        tries.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}/api/v1/auth/token"))
                .json(&json!({"username": "lan", "password": "wrong"}))
                .send()
                .await
                .expect("post")
                .status()
                .as_u16()
        }));
    }
    for t in tries {
        assert_eq!(t.await.expect("try"), 401);
    }
    for server in [&a, &b] {
        let res = reqwest::Client::new()
            .post(server.url("/api/v1/auth/token"))
            .json(&json!({"username": "lan", "password": "lan-password-1"}))
            .send()
            .await
            .expect("post");
        assert_eq!(res.status(), 429, "locked on {}", server.base);
    }

    // A token revoked through one instance is refused by the other at once.
    let on_b = Admin::login(&b, "admin", ADMIN_PASSWORD).await;
    assert_eq!(
        on_b.get("/api/v1/forms")
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    let res = admin
        .post("/api/v1/auth/logout")
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), 200);
    assert_eq!(
        on_b.get("/api/v1/forms")
            .send()
            .await
            .expect("get")
            .status(),
        401
    );

    // A submission POST replayed to the other instance is refused.
    let admin = Admin::login(&a, "admin", ADMIN_PASSWORD).await;
    admin
        .create_user("mai", "mai-password-1", "collector")
        .await;
    let challenge = reqwest::get(a.url("/formList")).await.expect("get");
    let h = challenge.headers()["www-authenticate"]
        .to_str()
        .expect("h")
        .to_string();
    let start = h.find("nonce=\"").expect("nonce") + 7;
    let nonce = &h[start..start + h[start..].find('"').expect("end")];
    let uri = "/submission";
    let ha1 = md5_hex(b"mai:fieldtally:mai-password-1");
    let ha2 = md5_hex(format!("POST:{uri}").as_bytes());
    let response = md5_hex(format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}").as_bytes());
    let auth = format!("Digest username=\"mai\", realm=\"fieldtally\", nonce=\"{nonce}\", uri=\"{uri}\", qop=auth, nc=00000001, cnonce=\"c0ffee\", response=\"{response}\", algorithm=MD5");
    let id = new_instance_id();
    let xml = all_features_instance(&id, None, "Replay twin", 2, None);
    let post = |base: &str| {
        reqwest::Client::new()
            .post(format!("{base}{uri}"))
            .header("Authorization", &auth)
            .multipart(reqwest::multipart::Form::new().part(
                "xml_submission_file",
                reqwest::multipart::Part::bytes(xml.clone()).file_name("x.xml"),
            ))
            .send()
    };
    assert_eq!(post(&a.base).await.expect("post").status(), 201);
    let replayed = post(&b.base).await.expect("post");
    assert_eq!(replayed.status(), 401);
    assert!(replayed.headers()["www-authenticate"]
        .to_str()
        .expect("h")
        .contains("stale=true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn indicator_figures_stay_exact_with_submissions_and_reviews_through_two_instances() {
    let (a, admin_a) = server_with_hamlets().await;
    let b = Server::start_sharing(&a, &[]).await;
    let admin_b = Admin::login(&b, "admin", ADMIN_PASSWORD).await;

    // Forty dialogues, each sent to both instances at once.
    let totals: Vec<u32> = (0..40).map(|n| 10 + n).collect();
    let ids: Vec<String> = totals.iter().map(|_| new_instance_id()).collect();
    let mut tasks = Vec::new();
    for (id, total) in ids.iter().zip(&totals) {
        let xml = Dialogue {
            total: *total,
            ..Dialogue::new(id, "DEMO-04231-1")
        }
        .xml();
        for base in [a.base.clone(), b.base.clone()] {
            let xml = xml.clone();
            tasks.push(tokio::spawn(async move {
                Collect::with_password(&base, "lan", "lan-password-1")
                    .submit(&xml, &[], false)
                    .await
                    .status()
                    .as_u16()
            }));
        }
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 201);
    }

    // Reviews through both instances at once: each submission gets two different decisions,
    // one through each instance, racing.
    let mut reviews = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let decisions = match n % 3 {
            0 => ["approved", "rejected"],
            1 => ["rejected", "approved"],
            _ => ["approved", "has_issues"],
        };
        for (admin, state) in [&admin_a, &admin_b].into_iter().zip(decisions) {
            let req = admin
                .post(&format!("/api/v1/submissions/{id}/review"))
                .json(&json!({ "state": state, "comment": "checked" }));
            reviews.push(tokio::spawn(async move {
                req.send().await.expect("review").status().as_u16()
            }));
        }
    }
    for r in reviews {
        assert_eq!(r.await.expect("review"), 200);
    }

    // What the figures must be, from each submission's final state as the API reports it.
    let mut provisional = 0.0;
    let mut confirmed = 0.0;
    for (id, total) in ids.iter().zip(&totals) {
        let d = admin_a.json(&format!("/api/v1/submissions/{id}")).await;
        match d["review_state"].as_str().expect("state") {
            "rejected" => {}
            "approved" => {
                provisional += f64::from(*total);
                confirmed += f64::from(*total);
            }
            _ => provisional += f64::from(*total),
        }
    }
    assert!(provisional > 0.0, "some dialogues count");
    let path = "/api/v1/indicators/values?period=2025&area=04231&indicator=P8-08";
    for admin in [&admin_a, &admin_b] {
        assert_eq!(participants(&admin.json(path).await), provisional);
        assert_eq!(
            participants(&admin.json(&format!("{path}&basis=confirmed")).await),
            confirmed
        );
    }
    assert_figures_equal_recompute(&a);
}
