//! Incremental pulls: `GET /api/v1/submissions?updated_since=CURSOR` reports every change
//! (created, edited, review changed, deleted) once, in a stable order, to those who may see the
//! submission, also while phones keep sending; and the administrator's deletion behind it.
//! Runs on SQLite, or on PostgreSQL with FIELDTALLY_TEST_POSTGRES.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::collect::Attachment;
use common::*;
use diesel::connection::SimpleConnection;
use diesel::Connection;
use serde_json::{json, Value};

fn dialogue(id: &str, deprecated: Option<&str>, hamlet: &str, total: u32) -> Vec<u8> {
    let deprecated = deprecated
        .map(|d| format!("<deprecatedID>{d}</deprecatedID>"))
        .unwrap_or_default();
    format!(
        "<?xml version='1.0' encoding='UTF-8' ?><data id=\"policy_dialogue\" version=\"2025040301\" xmlns:orx=\"http://openrosa.org/xforms\"><start>2025-07-10T08:00:00.000+07:00</start><end>2025-07-10T09:00:00.000+07:00</end><start_location /><hamlet>{hamlet}</hamlet><activity_date>2025-07-10</activity_date><level>commune</level><topic>gender_equality</topic><topic_other /><chair>Chủ tịch UBND xã</chair><participants_total>{total}</participants_total><participants_women>10</participants_women><participants_ethnic_minority>10</participants_ethnic_minority><participants_children>0</participants_children><issues_raised>Nước sạch</issues_raised><commitments /><location>21.0 103.5 600.0 5.0</location><attendance_photo /><attendance_photo_2 /><meta><instanceID>{id}</instanceID>{deprecated}</meta></data>"
    )
    .into_bytes()
}

async fn server_with_hamlets() -> (Server, Admin) {
    let server = Server::start().await;
    let out = server.cli(
        &[
            "areas",
            "import",
            &repo_root()
                .join("data/sonla/demo-hamlets.csv")
                .display()
                .to_string(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = server.admin().await;
    for f in ["forms/all_features.xml", "forms/two_photos.xml"] {
        let xml = std::fs::read(fixture(f)).expect("fixture");
        assert_eq!(admin.upload_form(&xml, true).await.0, 201);
    }
    admin
        .create_user("lan", "lan-password-1", "collector")
        .await;
    (server, admin)
}

/// One page of the feed.
async fn page(client: &Admin, cursor: &str, limit: usize) -> Value {
    client
        .json(&format!(
            "/api/v1/submissions?updated_since={cursor}&limit={limit}"
        ))
        .await
}

/// Follows cursors until the feed has nothing more now; returns the changes as
/// (change, instance_id) and the cursor to come back with.
async fn drain(client: &Admin, cursor: &str, limit: usize) -> (Vec<(String, String)>, String) {
    let mut cursor = cursor.to_string();
    let mut seen = Vec::new();
    loop {
        let p = page(client, &cursor, limit).await;
        let changes = p["changes"].as_array().expect("changes");
        assert!(changes.len() <= limit);
        for c in changes {
            seen.push((
                c["change"].as_str().expect("change").to_string(),
                c["instance_id"].as_str().expect("instance_id").to_string(),
            ));
        }
        cursor = p["next_cursor"].as_str().expect("cursor").to_string();
        if p["more"] != true {
            return (seen, cursor);
        }
    }
}

/// Drains until at least `want` changes arrived. On PostgreSQL the feed holds changes back while
/// an older writing transaction anywhere on the database server is still open (other tests run
/// at the same time), so what is committed may show a moment later; the bound only stops a
/// broken feed from hanging the test.
async fn drain_until(
    client: &Admin,
    cursor: &str,
    limit: usize,
    want: usize,
) -> (Vec<(String, String)>, String) {
    let mut cursor = cursor.to_string();
    let mut seen = Vec::new();
    for _ in 0..1000 {
        let (more, next) = drain(client, &cursor, limit).await;
        seen.extend(more);
        cursor = next;
        if seen.len() >= want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    (seen, cursor)
}

fn indicator_value(t: &Value, measure: &str) -> f64 {
    t["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["measure"] == measure)
        .map(|r| r["value"].as_f64().unwrap_or(0.0))
        .unwrap_or(0.0)
}

#[tokio::test]
async fn the_feed_reports_creations_edits_reviews_and_deletions_once_to_those_who_may_see_them() {
    let (server, admin) = server_with_hamlets().await;
    for (name, area) in [("sup_a", "04078"), ("sup_b", "04231")] {
        admin
            .create_user(name, "supervisor-password", "supervisor")
            .await;
        let res = admin
            .put(&format!("/api/v1/users/{name}/areas"))
            .json(&json!({ "area_codes": [area] }))
            .send()
            .await
            .expect("areas");
        assert_eq!(res.status(), 200);
    }
    let start = page(&admin, "", 10).await;
    assert_eq!(start["changes"], json!([]));
    assert_eq!(start["more"], false);
    let c0 = start["next_cursor"].as_str().expect("cursor").to_string();

    let phone = collector(&server);
    let (a, a2, b, p) = (
        new_instance_id(),
        new_instance_id(),
        new_instance_id(),
        new_instance_id(),
    );
    for xml in [
        dialogue(&a, None, "DEMO-04012-1", 30),
        dialogue(&b, None, "DEMO-04231-1", 20),
    ] {
        assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);
    }
    let photo = random_bytes(3000);
    let res = phone
        .submit(
            &all_features_instance(&p, None, "Hoa", 4, Some("p.jpg")),
            &[Attachment::jpeg("p.jpg", photo)],
            false,
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(
        phone
            .submit(&dialogue(&a2, Some(&a), "DEMO-04012-1", 35), &[], false)
            .await
            .status(),
        201
    );
    let res = admin
        .post(&format!("/api/v1/submissions/{b}/review"))
        .json(&json!({ "state": "approved" }))
        .send()
        .await
        .expect("review");
    assert_eq!(res.status(), 200);

    // Deleting: administrators only, audited, out of the figures and the file store at once.
    let figures = "/api/v1/indicators/values?period=2025&area=04231&indicator=P8-08";
    admin
        .create_user("officer", "officer-password", "province_officer")
        .await;
    let officer = Admin::login(&server, "officer", "officer-password").await;
    let res = officer
        .delete(&format!("/api/v1/submissions/{b}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), 403);
    assert_eq!(
        indicator_value(&admin.json(figures).await, "dialogues"),
        1.0
    );
    let blobs_before = blob_count(&server);
    let res = admin
        .delete(&format!("/api/v1/submissions/{p}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["deleted"]["instance_id"], p.as_str());
    assert_eq!(blob_count(&server), blobs_before - 1, "the photo is gone");
    let res = admin
        .delete(&format!("/api/v1/submissions/{b}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), 200);
    assert_eq!(
        indicator_value(&admin.json(figures).await, "dialogues"),
        0.0
    );
    for gone in [&p, &b] {
        let res = admin
            .get(&format!("/api/v1/submissions/{gone}"))
            .send()
            .await
            .expect("detail");
        assert_eq!(res.status(), 404);
    }
    let res = admin
        .delete(&format!("/api/v1/submissions/{b}"))
        .send()
        .await
        .expect("delete again");
    assert_eq!(res.status(), 404);
    let audit = admin.json("/api/v1/audit?action=submission.deleted").await;
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(2));

    let change = |kind: &str, id: &String| (kind.to_string(), id.to_string());
    let everything = vec![
        change("created", &a),
        change("created", &b),
        change("created", &p),
        change("edited", &a),
        change("review_changed", &b),
        change("deleted", &p),
        change("deleted", &b),
    ];
    // Page sizes that split the feed anywhere give the same changes, once each.
    for limit in [1, 2, 3, 100] {
        let (seen, _) = drain_until(&admin, &c0, limit, everything.len()).await;
        assert_eq!(seen, everything, "limit {limit}");
    }
    let all = page(&admin, "", 100).await;
    let entries = all["changes"].as_array().expect("changes");
    let first = &entries[0]["submission"];
    assert_eq!(first["instance_id"], a.as_str());
    assert_eq!(
        first["review_state"], "edited",
        "entries show the current state"
    );
    assert_eq!(first["fields"]["participants_total"], 35);
    assert!(first["sensitive_fields"].is_array());
    assert_eq!(entries[2]["submission"], Value::Null, "deleted since");

    // Supervisors see the changes of their areas, deletions included; the collector their own.
    let sup_a = Admin::login(&server, "sup_a", "supervisor-password").await;
    let sup_b = Admin::login(&server, "sup_b", "supervisor-password").await;
    let lan = Admin::login(&server, "lan", "lan-password-1").await;
    assert_eq!(
        drain_until(&sup_a, "", 2, 2).await.0,
        vec![change("created", &a), change("edited", &a)]
    );
    assert_eq!(
        drain_until(&sup_b, "", 2, 3).await.0,
        vec![
            change("created", &b),
            change("review_changed", &b),
            change("deleted", &b)
        ]
    );
    let (mine, lan_cursor) = drain_until(&lan, "", 5, everything.len()).await;
    assert_eq!(mine, everything);

    // Coming back later: only what happened since.
    let (_, cursor) = drain_until(&admin, &c0, 4, everything.len()).await;
    let c = new_instance_id();
    assert_eq!(
        phone
            .submit(&dialogue(&c, None, "DEMO-04231-2", 12), &[], false)
            .await
            .status(),
        201
    );
    assert_eq!(
        drain_until(&admin, &cursor, 4, 1).await.0,
        vec![change("created", &c)]
    );
    assert_eq!(
        drain_until(&lan, &lan_cursor, 4, 1).await.0,
        vec![change("created", &c)]
    );
    assert_eq!(drain(&sup_a, &cursor, 4).await.0, vec![]);
    // The newest submission was deleted before `c` came: `c` never takes its place in the feed.
    let all = page(&admin, "", 100).await;
    for entry in all["changes"].as_array().expect("changes") {
        if entry["instance_id"] == p.as_str() || entry["instance_id"] == b.as_str() {
            assert_eq!(entry["submission"], Value::Null, "{entry}");
        }
        if let Some(s) = entry["submission"].as_object() {
            assert_eq!(s["instance_id"], entry["instance_id"], "{entry}");
        }
    }

    // Clear refusals.
    for (query, code) in [
        ("updated_since=nonsense", "bad_cursor"),
        ("updated_since=&form=all_features", "bad_query"),
        ("updated_since=&limit=0", "bad_limit"),
    ] {
        let res = admin
            .get(&format!("/api/v1/submissions?{query}"))
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 400, "{query}");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["error"]["code"], code, "{query}");
    }
}

#[tokio::test]
async fn a_client_paging_while_phones_submit_on_two_instances_sees_every_change_exactly_once() {
    let (server, admin) = server_with_forms().await;
    let second = Server::start_sharing(&server, &[]).await;
    const PHONES: usize = 4;
    const EACH: usize = 12;
    let mut phones = Vec::new();
    for n in 0..PHONES {
        let base = if n % 2 == 0 {
            server.base.clone()
        } else {
            second.base.clone()
        };
        phones.push(tokio::spawn(async move {
            let phone = collect::Collect::with_password(&base, "lan", "lan-password-1");
            let mut sent = Vec::new();
            for i in 0..EACH {
                let id = new_instance_id();
                let xml = all_features_instance(&id, None, &format!("P{n}-{i}"), 3, None);
                assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);
                sent.push(id);
            }
            sent
        }));
    }
    // The puller pages through while the phones send, with a small page so that it often
    // reaches the end of what is committed so far.
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut cursor = String::new();
    while !phones.iter().all(|p| p.is_finished()) {
        let (more, next) = drain(&admin, &cursor, 3).await;
        seen.extend(more);
        cursor = next;
    }
    let mut sent = BTreeSet::new();
    for p in phones {
        sent.extend(p.await.expect("phone"));
    }
    let (rest, _) = drain_until(&admin, &cursor, 3, PHONES * EACH - seen.len()).await;
    seen.extend(rest);

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (kind, id) in &seen {
        assert_eq!(kind, "created");
        *counts.entry(id.as_str()).or_default() += 1;
    }
    assert!(counts.values().all(|n| *n == 1), "a change was seen twice");
    let got: BTreeSet<String> = counts.keys().map(|s| s.to_string()).collect();
    assert_eq!(got, sent, "every change, none missed");
    assert_eq!(seen.len(), PHONES * EACH);
}

/// On PostgreSQL a transaction can take a lower sequence value and commit after one that took a
/// higher one. The feed must hold the later row back until the earlier transaction is done, or
/// a client would move its cursor past a change it never saw.
#[tokio::test]
async fn a_change_committing_late_with_an_earlier_sequence_value_is_not_skipped() {
    let (server, admin) = server_with_forms().await;
    let Some(url) = server.database_url().map(str::to_string) else {
        // One writer on SQLite: sequence values are given out in commit order.
        return;
    };
    let phone = collector(&server);
    let first = new_instance_id();
    let xml = all_features_instance(&first, None, "A", 3, None);
    assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);
    let (seen, cursor) = drain_until(&admin, "", 10, 1).await;
    assert_eq!(seen.len(), 1);

    // Another writer takes the next sequence value and stays open.
    let mut slow = diesel::PgConnection::establish(&url).expect("connect");
    slow.batch_execute(&format!(
        "BEGIN; INSERT INTO submission_changes (submission_id, instance_id, kind, at) \
         SELECT id, instance_id, 'review_changed', now() FROM submissions WHERE instance_id = '{first}'"
    ))
    .expect("slow writer");
    let later = new_instance_id();
    let xml = all_features_instance(&later, None, "B", 3, None);
    assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);
    let (held_back, cursor) = drain(&admin, &cursor, 10).await;
    assert_eq!(
        held_back,
        vec![],
        "nothing after the open transaction is shown yet"
    );
    slow.batch_execute("COMMIT").expect("commit");
    let (seen, _) = drain_until(&admin, &cursor, 10, 2).await;
    assert_eq!(
        seen,
        vec![
            ("review_changed".to_string(), first.clone()),
            ("created".to_string(), later.clone()),
        ]
    );
}
