//! The indicators over HTTP, against the real binary: definitions, the values table following
//! submissions, edits and review changes at once, the submissions behind a number, targets and
//! baselines (JSON and CSV, API and command line), closing a period and its revisions,
//! suppression, errors and access. Runs on SQLite, or on PostgreSQL with
//! FIELDTALLY_TEST_POSTGRES.

mod common;

use common::collect::Collect;
use common::*;
use serde_json::{json, Value};

/// A phone's correction of the commune-level dialogue of 10 July in DEMO-04231-1.
fn correction(id: &str, of: &str, total: u32, women: u32) -> Vec<u8> {
    Dialogue {
        deprecated: Some(of),
        date: "2025-07-10",
        total,
        women,
        ..Dialogue::new(id, "DEMO-04231-1")
    }
    .xml()
}

fn trusted_address(id: &str, hamlet: &str, date: &str, women: u32, men: u32) -> Vec<u8> {
    format!(
        "<?xml version='1.0' encoding='UTF-8' ?><data id=\"trusted_address_report\" version=\"2025040301\"><start_location /><hamlet>{hamlet}</hamlet><activity_date>{date}</activity_date><model_code>TA-1</model_code><model_active>yes</model_active><cases_received>1</cases_received><people_supported_women>{women}</people_supported_women><people_supported_men>{men}</people_supported_men><meta><instanceID>{id}</instanceID></meta></data>"
    )
    .into_bytes()
}

/// A review through the REST API, as a supervisor's page or the province's system sends it.
async fn review(admin: &Admin, instance_id: &str, state: &str) {
    let res = admin
        .post(&format!("/api/v1/submissions/{instance_id}/review"))
        .json(&json!({ "state": state, "comment": format!("marked {state} by the test") }))
        .send()
        .await
        .expect("review");
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
}

/// The row of one measure in a values answer.
fn row<'a>(table: &'a Value, measure: &str) -> &'a Value {
    table["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["measure"] == measure)
        .unwrap_or_else(|| panic!("no {measure} in {table}"))
}

async fn error_code(res: reqwest::Response, status: u16) -> String {
    assert_eq!(res.status(), status);
    let body: Value = res.json().await.expect("json");
    body["error"]["code"].as_str().expect("code").to_string()
}

#[tokio::test]
async fn the_values_follow_submissions_edits_and_reviews_at_once() {
    let (server, admin) = server_with_hamlets().await;
    let phone = collector(&server);

    let list = admin.json("/api/v1/indicators").await;
    let codes: Vec<&str> = list["indicators"]
        .as_array()
        .expect("indicators")
        .iter()
        .map(|i| i["code"].as_str().expect("code"))
        .collect();
    assert_eq!(codes.len(), 11);
    assert_eq!(list["indicators"][0]["code"], "P8-01");
    assert_eq!(list["indicators"][0]["status"], "working");
    assert_eq!(list["indicators"][0]["measures"][0]["target"], 80.0);
    assert!(list["indicators"][0]["wording"]["vi"]
        .as_str()
        .expect("vi")
        .contains("sinh"));

    let (d1, d2) = (new_instance_id(), new_instance_id());
    for xml in [
        Dialogue {
            id: &d1,
            date: "2025-07-10",
            level: "commune",
            total: 30,
            women: 18,
            ..Dialogue::new(&d1, "DEMO-04231-1")
        }
        .xml(),
        Dialogue {
            id: &d2,
            date: "2025-08-10",
            level: "village_cluster",
            total: 20,
            women: 12,
            ..Dialogue::new(&d2, "DEMO-04231-2")
        }
        .xml(),
    ] {
        assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);
    }
    let path = "/api/v1/indicators/values?period=2025&area=04231&indicator=P8-08";
    let t = admin.json(path).await;
    assert_eq!(
        (t["basis"].as_str(), t["map"].as_str(), t["level"].as_str()),
        (Some("provisional"), Some("current"), Some("commune"))
    );
    let dialogues = row(&t, "dialogues");
    assert_eq!(dialogues["indicator"], "P8-08");
    assert_eq!(dialogues["area"], "04231");
    assert_eq!(dialogues["period"], "2025");
    assert_eq!(dialogues["value"], 2.0);
    assert_eq!(dialogues["numerator"], 2);
    assert_eq!(dialogues["denominator"], Value::Null);
    assert_eq!(row(&t, "participants")["value"], 50.0);
    assert_eq!(row(&t, "women_participants")["value"], 30.0);

    // Broken down.
    let by = admin
        .json("/api/v1/indicators/values?period=2025&area=04231&indicator=P8-08&by=dialogue_level,month")
        .await;
    let july: Vec<&Value> = by["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["measure"] == "dialogues" && r["period"] == "2025-07")
        .collect();
    assert_eq!(july.len(), 1);
    assert_eq!(july[0]["dialogue_level"], "commune");
    assert_eq!(july[0]["value"], 1.0);

    // An edit from the phone changes the answer at once.
    let d1b = new_instance_id();
    let xml = correction(&d1b, &d1, 40, 20);
    assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);
    assert_eq!(row(&admin.json(path).await, "participants")["value"], 60.0);

    // The submissions behind the number.
    let b = admin
        .json("/api/v1/indicators/P8-08/values/04231/2025/submissions?measure=participants")
        .await;
    assert_eq!(b["value"], 60);
    let parts: Vec<(String, i64)> = b["submissions"]
        .as_array()
        .expect("submissions")
        .iter()
        .map(|s| {
            (
                s["instance_id"].as_str().expect("id").to_string(),
                s["contribution"].as_i64().expect("n"),
            )
        })
        .collect();
    assert_eq!(parts, vec![(d1.clone(), 40), (d2.clone(), 20)]);

    // Review changes through the API change both figures at once.
    let confirmed_path = format!("{path}&basis=confirmed");
    review(&admin, &d2, "approved").await;
    let confirmed = admin.json(&confirmed_path).await;
    assert_eq!(row(&confirmed, "participants")["value"], 20.0);
    assert_eq!(row(&confirmed, "dialogues")["value"], 1.0);
    assert_eq!(row(&admin.json(path).await, "participants")["value"], 60.0);
    review(&admin, &d2, "has_issues").await;
    assert_eq!(
        row(&admin.json(&confirmed_path).await, "participants")["value"],
        0.0
    );
    assert_eq!(row(&admin.json(path).await, "participants")["value"], 60.0);
    review(&admin, &d2, "rejected").await;
    assert_eq!(row(&admin.json(path).await, "participants")["value"], 40.0);
    assert_eq!(row(&admin.json(path).await, "dialogues")["value"], 1.0);
    assert_eq!(
        row(&admin.json(&confirmed_path).await, "participants")["value"],
        0.0
    );

    // Bulk review: approving both (the rejected one back in) counts them confirmed together.
    let res = admin
        .post("/api/v1/submissions/review")
        .json(&json!({ "state": "approved", "ids": [d1b, d2] }))
        .send()
        .await
        .expect("bulk review");
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let confirmed = admin.json(&confirmed_path).await;
    assert_eq!(row(&confirmed, "participants")["value"], 60.0);
    assert_eq!(row(&confirmed, "dialogues")["value"], 2.0);

    // An edit of an approved submission arrives from the phone: only the current version counts
    // and, being new content, it waits for review again (provisional only).
    let d1c = new_instance_id();
    let xml = correction(&d1c, &d1b, 45, 20);
    assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);
    assert_eq!(row(&admin.json(path).await, "participants")["value"], 65.0);
    assert_eq!(
        row(&admin.json(&confirmed_path).await, "participants")["value"],
        20.0
    );
    review(&admin, &d1c, "rejected").await;
    assert_eq!(row(&admin.json(path).await, "participants")["value"], 20.0);

    // The province's table by commune: a row per commune of today's map and measure; the
    // commune-level dialogue was rejected, the village-cluster one counts.
    let province = admin
        .json(
            "/api/v1/indicators/values?period=2025&level=commune&indicator=P8-08&by=dialogue_level",
        )
        .await;
    let rows = province["rows"].as_array().expect("rows");
    assert_eq!(
        rows.iter().filter(|r| r["measure"] == "dialogues").count(),
        75
    );
    let ours: Vec<&Value> = rows
        .iter()
        .filter(|r| r["measure"] == "dialogues" && r["area"] == "04231")
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(
        (
            ours[0]["dialogue_level"].as_str(),
            ours[0]["value"].as_f64()
        ),
        (Some("village_cluster"), Some(1.0))
    );

    // The command line agrees that the maintained figures equal a recompute.
    assert_figures_equal_recompute(&server);
}

/// Uploads are acknowledged before their figures are brought up to date; a power cut in between
/// loses none of them: after the restart every acknowledged submission is counted, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submissions_acknowledged_before_a_power_cut_are_all_counted_after_it() {
    let (mut server, _admin) = server_with_hamlets().await;
    let mut phones = Vec::new();
    for phone in 0..8u32 {
        let base = server.base.clone();
        phones.push(tokio::spawn(async move {
            let collect = Collect::with_password(&base, "lan", "lan-password-1");
            for n in 0..5u32 {
                let id = new_instance_id();
                let xml = Dialogue {
                    id: &id,
                    date: "2025-07-10",
                    total: 10 + phone,
                    women: n,
                    ..Dialogue::new(&id, "DEMO-04231-1")
                }
                .xml();
                assert_eq!(collect.submit(&xml, &[], false).await.status(), 201);
            }
        }));
    }
    for p in phones {
        p.await.expect("phone");
    }
    server.kill();
    let waiting = raw_count(&server, "SELECT COUNT(*) AS n FROM indicator_backlog");
    let stored = raw_count(&server, "SELECT COUNT(*) AS n FROM submissions");
    assert_eq!(stored, 40);
    eprintln!("{waiting} of the 40 acknowledged submissions waited for their figures at the cut");
    server.restart();
    let admin = server.admin().await;
    let t = admin
        .json("/api/v1/indicators/values?period=2025&area=04231&indicator=P8-08")
        .await;
    assert_eq!(row(&t, "dialogues")["value"], 40.0);
    // 5 dialogues from each phone p, of 10 + p participants, 0 + 1 + 2 + 3 + 4 of them women.
    assert_eq!(row(&t, "participants")["value"], 5.0 * (8.0 * 10.0 + 28.0));
    assert_eq!(row(&t, "women_participants")["value"], 8.0 * 10.0);
    assert_eq!(
        raw_count(&server, "SELECT COUNT(*) AS n FROM indicator_backlog"),
        0,
        "nothing waits once the figures have been read"
    );
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains("\nfieldtally_indicator_backlog 0\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn targets_baselines_and_closed_periods() {
    let (server, admin) = server_with_hamlets().await;
    let phone = collector(&server);

    let res = admin
        .post("/api/v1/indicators/targets")
        .json(&json!({"targets": [{"indicator": "P8-08", "area": "14", "year": 2025, "target": 100}]}))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 200);
    let res = admin
        .post("/api/v1/indicators/targets")
        .header("content-type", "text/csv")
        .body("indicator,measure,area,year,target\nP8-08,participants,04231,2025,200\n")
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["imported"], 1);
    // All or nothing, and the row is named.
    let res = admin
        .post("/api/v1/indicators/targets")
        .json(&json!([
            {"indicator": "P8-08", "area": "14", "year": 2025, "target": 5},
            {"indicator": "P9-99", "area": "14", "year": 2025, "target": 1}
        ]))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "bad_import_row");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("item 2"));
    let res = admin
        .post("/api/v1/indicators/baselines")
        .header("content-type", "text/csv")
        .body("baseline,area,year,value\nno_such_baseline,04231,2025,50\n")
        .send()
        .await
        .expect("POST");
    assert!(error_code(res, 400).await == "bad_import_row");
    let res = admin
        .post("/api/v1/indicators/baselines")
        .header("content-type", "text/csv")
        .body("baseline,area,year,value\nwomen_15_49_high_home_birth_groups,04231,2025,50\n")
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 200);
    let targets = admin.json("/api/v1/indicators/targets?year=2025").await;
    let listed: Vec<(String, String, f64)> = targets["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| {
            (
                t["measure"].as_str().unwrap_or("").to_string(),
                t["area"].as_str().unwrap_or("").to_string(),
                t["target"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("dialogues".to_string(), "14".to_string(), 100.0),
            ("participants".to_string(), "04231".to_string(), 200.0)
        ]
    );
    let baselines = admin.json("/api/v1/indicators/baselines").await;
    assert_eq!(baselines["baselines"][0]["area_name"], "Xã Sốp Cộp");

    // A CSV through the command line, with an error that names the row.
    let dir = tempfile::tempdir().expect("temp");
    let file = dir.path().join("targets.csv");
    std::fs::write(
        &file,
        "indicator,area,year,target\nP8-04,14,2025,500\nP8-04,99999,2025,1\n",
    )
    .expect("write");
    let out = server.cli(
        &["indicators", "import-targets", &file.display().to_string()],
        None,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("row 3") && stderr.contains("99999"),
        "{stderr}"
    );
    std::fs::write(&file, "indicator,area,year,target\nP8-04,14,2025,500\n").expect("write");
    let out = server.cli(
        &["indicators", "import-targets", &file.display().to_string()],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let d1 = new_instance_id();
    assert_eq!(
        phone
            .submit(
                &Dialogue {
                    id: &d1,
                    date: "2025-07-10",
                    level: "commune",
                    total: 30,
                    women: 18,
                    ..Dialogue::new(&d1, "DEMO-04231-1")
                }
                .xml(),
                &[],
                false
            )
            .await
            .status(),
        201
    );
    let t = admin
        .json("/api/v1/indicators/values?period=2025&indicator=P8-08,P8-04")
        .await;
    let dialogues = row(&t, "dialogues");
    assert_eq!(
        (
            dialogues["target"].as_f64(),
            dialogues["achievement"].as_f64()
        ),
        (Some(100.0), Some(0.01))
    );
    assert_eq!(row(&t, "sessions")["target"], 500.0);
    // The commune's participants target; the province's is the sum of its communes'.
    let c = admin
        .json("/api/v1/indicators/values?period=2025&area=04231&indicator=P8-08")
        .await;
    assert_eq!(
        (
            row(&c, "participants")["target"].as_f64(),
            row(&c, "participants")["achievement"].as_f64()
        ),
        (Some(200.0), Some(0.15))
    );
    assert_eq!(row(&t, "participants")["target"], 200.0);
    // P8-01 on the commune with a baseline: nobody counselled yet, 0 of 50.
    let p801 = admin
        .json("/api/v1/indicators/values?period=2025&area=04231&indicator=P8-01")
        .await;
    let share = row(&p801, "women_counselled");
    assert_eq!(
        (
            share["value"].as_f64(),
            share["denominator"].as_f64(),
            share["target"].as_f64()
        ),
        (Some(0.0), Some(50.0), Some(80.0))
    );

    // Close the third quarter.
    let res = admin
        .post("/api/v1/indicators/periods/2025-Q3/close")
        .json(&json!({"note": "Báo cáo quý III"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 201);
    let closed: Value = res.json().await.expect("json");
    assert_eq!(closed["period"], "2025-Q3");
    assert_eq!(closed["closed_by"], "admin");
    let res = admin
        .post("/api/v1/indicators/periods/2025-Q3/close")
        .send()
        .await
        .expect("POST");
    assert_eq!(error_code(res, 409).await, "period_closed");

    // Then the dialogue is corrected from the phone.
    let d1b = new_instance_id();
    assert_eq!(
        phone
            .submit(&correction(&d1b, &d1, 35, 18), &[], false)
            .await
            .status(),
        201
    );
    let live = admin
        .json("/api/v1/indicators/values?period=2025-Q3&indicator=P8-08")
        .await;
    assert_eq!(row(&live, "participants")["value"], 35.0);
    let frozen = admin
        .json("/api/v1/indicators/values?period=2025-Q3&indicator=P8-08&snapshot=2025-Q3")
        .await;
    assert_eq!(row(&frozen, "participants")["value"], 30.0);
    assert_eq!(frozen["snapshot"], "2025-Q3");
    assert_eq!(
        row(&frozen, "dialogues")["target"],
        100.0,
        "targets as they were at closing"
    );
    let detail = admin.json("/api/v1/indicators/periods/2025-Q3").await;
    assert_eq!(detail["note"], "Báo cáo quý III");
    assert_eq!(detail["revision_count"], 1);
    let revision = &detail["revisions"][0];
    assert_eq!(revision["submission"], d1);
    assert_eq!(revision["by"], "lan");
    assert_eq!(revision["reason"], "submission edited");
    assert!(revision["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .any(|c| c["measure"] == "participants"
            && c["period"] == "2025-Q3"
            && c["change"] == 5
            && c["area"] == "14"));
    let periods = admin.json("/api/v1/indicators/periods").await;
    assert_eq!(periods["closed_periods"][0]["revision_count"], 1);
    let res = admin
        .get("/api/v1/indicators/values?period=2025-10&snapshot=2025-Q3")
        .send()
        .await
        .expect("GET");
    assert_eq!(error_code(res, 400).await, "period_outside_snapshot");
}

#[tokio::test]
async fn small_cells_of_sensitive_indicators_are_suppressed() {
    let (server, admin) = server_with_hamlets().await;
    let phone = collector(&server);
    let id = new_instance_id();
    assert_eq!(
        phone
            .submit(
                &trusted_address(&id, "DEMO-03646-1", "2025-07-31", 2, 1),
                &[],
                false
            )
            .await
            .status(),
        201
    );
    let t = admin
        .json("/api/v1/indicators/values?period=2025&area=03646&indicator=P8-05")
        .await;
    let people = row(&t, "people_supported");
    assert_eq!(people["suppressed"], true);
    assert_eq!(people["value"], Value::Null);
    assert_eq!(people["numerator"], Value::Null);
    let models = row(&t, "models_operating");
    assert_eq!(
        (models["value"].as_f64(), models["suppressed"].as_bool()),
        (Some(1.0), Some(false))
    );
    let id2 = new_instance_id();
    assert_eq!(
        phone
            .submit(
                &trusted_address(&id2, "DEMO-03646-2", "2025-08-31", 2, 1),
                &[],
                false
            )
            .await
            .status(),
        201
    );
    let t = admin
        .json("/api/v1/indicators/values?period=2025&area=03646&indicator=P8-05")
        .await;
    assert_eq!(row(&t, "people_supported")["value"], 6.0);
}

#[tokio::test]
async fn bad_requests_and_access() {
    let (server, admin) = server_with_hamlets().await;
    for (query, code) in [
        ("period=2025-13", "bad_period"),
        ("period=2025&by=colour", "unknown_dimension"),
        ("period=2025&map=old", "bad_map"),
        ("period=2025&basis=final", "bad_basis"),
        ("period=2025&level=village", "bad_level"),
        ("period=2025&indicator=P9-99", "unknown_indicator"),
        ("period=2025&colour=red", "bad_query"),
    ] {
        let res = admin
            .get(&format!("/api/v1/indicators/values?{query}"))
            .send()
            .await
            .expect("GET");
        assert_eq!(error_code(res, 400).await, code, "{query}");
    }
    let res = admin
        .get("/api/v1/indicators/values?period=2025&area=99999")
        .send()
        .await
        .expect("GET");
    assert_eq!(error_code(res, 404).await, "unknown_area");
    let res = admin
        .get("/api/v1/indicators/P8-08/values/14/2025/submissions?measure=nothing")
        .send()
        .await
        .expect("GET");
    assert_eq!(error_code(res, 404).await, "unknown_measure");
    let res = admin
        .get("/api/v1/indicators/periods/2025")
        .send()
        .await
        .expect("GET");
    assert_eq!(error_code(res, 404).await, "period_not_closed");
    let res = reqwest::get(server.url("/api/v1/indicators/values?period=2025"))
        .await
        .expect("GET");
    assert_eq!(res.status(), 401);
    let lan = Admin::login(&server, "lan", "lan-password-1").await;
    let res = lan
        .get("/api/v1/indicators/values?period=2025")
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 403);
    let res = lan
        .post("/api/v1/indicators/periods/2025/close")
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 403);
    assert_eq!(
        admin.json("/api/v1/indicators/periods").await["closed_periods"],
        json!([])
    );
}
