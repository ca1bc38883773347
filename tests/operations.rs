//! Operations: health and readiness, metrics, request ids, graceful shutdown with an upload in
//! flight, backup and restore, fsck after crashes.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::collect::{Attachment, Collect};
use common::raw;
use common::*;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_request_ids() {
    let (server, _admin) = server_with_forms().await;
    let res = reqwest::get(server.url("/healthz")).await.expect("get");
    assert_eq!(res.status(), 200);
    let res = reqwest::get(server.url("/readyz")).await.expect("get");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["status"], "ready");

    let collect = collector(&server);
    let id = new_instance_id();
    let res = collect
        .submit(
            &all_features_instance(&id, None, "Metrics", 2, None),
            &[],
            false,
        )
        .await;
    assert_eq!(res.status(), 201);
    let res = collect.submit(b"<not xml", &[], false).await;
    assert_eq!(res.status(), 400);

    // A request id given by a proxy is kept; otherwise one is made.
    let res = reqwest::Client::new()
        .get(server.url("/healthz"))
        .header("x-request-id", "proxy-abc.123")
        .send()
        .await
        .expect("get");
    assert_eq!(res.headers()["x-request-id"], "proxy-abc.123");
    let res = reqwest::Client::new()
        .get(server.url("/healthz"))
        .header("x-request-id", "<script>")
        .send()
        .await
        .expect("get");
    assert_ne!(res.headers()["x-request-id"], "<script>");

    let text = metrics_text(&server).await;
    for want in [
        "fieldtally_submissions_total{outcome=\"created\"} 1",
        "fieldtally_submissions_total{outcome=\"rejected\"} 1",
        "fieldtally_http_requests_total{method=\"POST\",route=\"/submission\",status=\"201\"} 1",
        "fieldtally_http_request_duration_seconds_count{route=\"/submission\"}",
        "fieldtally_writer_queue_length 0",
        "fieldtally_writer_batch_size_count",
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
    // Route patterns only: no instance id, no key.
    assert!(!text.contains(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_token() {
    let server = Server::start_with(&["--metrics-token", "scrape-secret"]).await;
    let res = reqwest::get(server.url("/metrics")).await.expect("get");
    assert_eq!(res.status(), 401);
    let res = reqwest::Client::new()
        .get(server.url("/metrics"))
        .bearer_auth("scrape-secret")
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_upload_in_flight_finish_then_the_server_exits() {
    let (mut server, admin) = server_with_forms().await;
    let res = admin
        .post("/api/v1/users/lan/app-key")
        .send()
        .await
        .expect("key");
    let key: Value = res.json().await.expect("json");
    let path = format!("/key/{}/submission", key["key"].as_str().expect("key"));
    let id = new_instance_id();
    let xml = all_features_instance(&id, None, "Shutdown", 2, Some("photo1.jpg"));
    let photo = random_bytes(200_000);
    let boundary = "----shutdown";
    let parts: Vec<raw::RawPart> = vec![
        (b"xml_submission_file", Some(b"x.xml"), "text/xml", &xml),
        (b"photo1.jpg", Some(b"photo1.jpg"), "image/jpeg", &photo),
    ];
    let request = raw::post(&path, boundary, &raw::multipart(boundary, &parts));
    let mut stream = raw::connect(&server.base).await;
    let (first, rest) = request.split_at(request.len() / 2);
    stream.write_all(first).await.expect("first half");
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // New connections are no longer accepted once the server stops listening.
    stream.write_all(rest).await.expect("second half");
    let res = raw::read_response(&mut stream, Duration::from_secs(30)).await;
    assert_eq!(raw::status(&res), 201, "{res}");
    let (status, printed) = server.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(
        printed.iter().any(|l| l == "fieldtally stopped"),
        "{printed:?}"
    );

    server.restart();
    let admin = server.admin().await;
    let d = admin.json(&format!("/api/v1/submissions/{id}")).await;
    assert_eq!(d["attachments"][0]["sha256"], sha256_hex(&photo).as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_restores_to_a_working_server() {
    let (server, admin) = server_with_forms().await;
    let collect = collector(&server);
    let mut sent = HashMap::new();
    for n in 0..5 {
        let id = new_instance_id();
        let photo = random_bytes(10_000 + n);
        let xml = all_features_instance(&id, None, &format!("Backup {n}"), 2, Some("photo1.jpg"));
        let res = collect
            .submit(
                &xml,
                &[Attachment::jpeg("photo1.jpg", photo.clone())],
                false,
            )
            .await;
        assert_eq!(res.status(), 201);
        sent.insert(id, photo);
    }
    // Taken while the server runs and receives more.
    let backup = tempfile::tempdir().expect("dir");
    let dir = backup.path().display().to_string();
    let busy = {
        let base = server.base.clone();
        tokio::spawn(async move {
            let collect = Collect::with_password(&base, "lan", "lan-password-1");
            for n in 0..20 {
                let id = new_instance_id();
                let xml = all_features_instance(&id, None, &format!("During {n}"), 2, None);
                assert_eq!(collect.submit(&xml, &[], false).await.status(), 201);
            }
        })
    };
    let out = server.cli(&["backup", &dir], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    busy.await.expect("uploads");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(summary["blobs_copied"], 5, "{summary}");
    // Running it again copies only what is new.
    let again = server.cli(&["backup", &dir], None);
    let again: Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(again["blobs_copied"], 0);

    if server.database_url().is_some() {
        // PostgreSQL: the files are in the backup; the database goes through pg_dump.
        assert_eq!(summary["database"], false);
        return;
    }
    assert_eq!(summary["database"], true);
    let restored_dir = tempfile::tempdir().expect("dir");
    let restore = std::process::Command::new(env!("CARGO_BIN_EXE_fieldtally"))
        .args(["restore", &dir, "--data-dir"])
        .arg(restored_dir.path())
        .output()
        .expect("restore");
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    // Restoring over an existing database is refused.
    let twice = std::process::Command::new(env!("CARGO_BIN_EXE_fieldtally"))
        .args(["restore", &dir, "--data-dir"])
        .arg(restored_dir.path())
        .output()
        .expect("restore");
    assert!(!twice.status.success());
    assert!(String::from_utf8_lossy(&twice.stderr).contains("already exists"));

    let mut restored = std::process::Command::new(env!("CARGO_BIN_EXE_fieldtally"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(restored_dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    let base = {
        use std::io::BufRead;
        let out = restored.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(out).lines();
        let base = loop {
            let line = lines.next().expect("line").expect("line");
            if let Some(a) = line.strip_prefix("fieldtally listening on ") {
                break a.to_string();
            }
        };
        // Keep reading, so the server's log lines never meet a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        base
    };
    let token: Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/token"))
        .json(&serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let admin2 = Admin {
        http: reqwest::Client::new(),
        base: base.clone(),
        token: token["access_token"].as_str().expect("token").to_string(),
    };
    let all = admin2.all_submissions("").await;
    assert!(all.len() >= 5, "{}", all.len());
    for (id, photo) in &sent {
        let got = admin2
            .get(&format!("/api/v1/submissions/{id}/attachments/photo1.jpg"))
            .send()
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(got.as_ref(), photo.as_slice());
    }
    let _ = restored.kill();
    let _ = restored.wait();
    drop(admin);
}

/// Polls an export job until it is done or failed. Bounded only so that a job that never ends
/// fails the test instead of hanging it.
async fn finished_export(admin: &Admin, id: &str) -> Value {
    for _ in 0..3000 {
        let job = admin.json(&format!("/api/v1/exports/{id}")).await;
        if job["status"] == "done" || job["status"] == "failed" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("export {id} never ended");
}

/// Downloads a finished CSV export and counts the submissions in it (a whole zip, a whole CSV).
async fn export_rows(admin: &Admin, id: &str) -> usize {
    use std::io::Read;
    let res = admin
        .get(&format!("/api/v1/exports/{id}/download"))
        .send()
        .await
        .expect("download");
    assert_eq!(res.status(), 200);
    let bytes = res.bytes().await.expect("body");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a whole zip");
    let mut text = Vec::new();
    archive
        .by_name("policy_dialogue.csv")
        .expect("the submissions table")
        .read_to_end(&mut text)
        .expect("read");
    let mut rows = 0;
    for row in csv::Reader::from_reader(text.as_slice()).records() {
        row.expect("a whole CSV row");
        rows += 1;
    }
    rows
}

/// Waits until more than `before` uploads have been acknowledged (or every phone stopped: its
/// panic then fails the test).
async fn wait_for_more<T>(
    acked: &Mutex<Vec<T>>,
    before: usize,
    phones: &[tokio::task::JoinHandle<()>],
) {
    while acked.lock().expect("lock").len() <= before && !phones.iter().all(|p| p.is_finished()) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `fieldtally fsck` on the server's data; returns the exit code and the report.
fn fsck(server: &Server, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["fsck", "--grace-secs", "0"];
    args.extend_from_slice(extra);
    let out = server.cli(&args, None);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_sigkills_during_uploads_lose_nothing_acknowledged_and_fsck_cleans_up() {
    let (mut server, _admin) = server_with_forms().await;
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    for round in 0..4u64 {
        let before = acked.lock().expect("lock").len();
        let mut tasks = Vec::new();
        for phone in 0..6u64 {
            let (base, acked) = (server.base.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let collect = Collect::with_password(&base, "lan", "lan-password-1");
                for n in 0.. {
                    let id = new_instance_id();
                    let photo = random_bytes(5_000 + (round * 1000 + phone * 100 + n) as usize);
                    let xml = two_photos_instance(&id, &format!("round {round} {phone}-{n}"));
                    let files = [
                        Attachment::jpeg("a.jpg", photo.clone()),
                        Attachment::jpeg("b.jpg", photo.iter().rev().cloned().collect()),
                    ];
                    match collect.try_submit(&xml, &files, false).await {
                        Ok(res) if res.status() == 201 => {
                            acked.lock().expect("lock").push((id, sha256_hex(&photo)))
                        }
                        Ok(res) => panic!("unexpected status {}", res.status()),
                        Err(_) => return,
                    }
                }
            }));
        }
        // A different moment each round, once this round's uploads are under way (a loaded
        // machine may take longer than the wait to answer the first).
        wait_for_more(&acked, before, &tasks).await;
        let wait = 50 + rand::random::<u64>() % 400;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.kill_and_restart();
        for t in tasks {
            t.await.expect("task");
        }
        // No row points at a missing file, at any point.
        let (_, report) = fsck(&server, &[]);
        assert_eq!(
            report["missing"],
            serde_json::json!([]),
            "round {round}: {report}"
        );
    }
    let admin = server.admin().await;
    let acked = acked.lock().expect("lock").clone();
    assert!(!acked.is_empty());
    for (id, sha) in &acked {
        let s = admin.json(&format!("/api/v1/submissions/{id}")).await;
        assert_eq!(s["attachments"][0]["sha256"], sha.as_str(), "{id}");
        assert!(s["attachments"]
            .as_array()
            .expect("array")
            .iter()
            .all(|a| a["complete"] == true));
    }
    for s in admin.all_submissions("").await {
        let d = admin
            .json(&format!(
                "/api/v1/submissions/{}",
                s["instance_id"].as_str().expect("id")
            ))
            .await;
        assert!(d["attachments"]
            .as_array()
            .expect("array")
            .iter()
            .all(|a| a["complete"] == true));
    }
    // Whatever a kill left behind is found and removed, and nothing referenced is touched.
    let (code, report) = fsck(&server, &["--repair"]);
    assert_eq!(code, 0, "{report}");
    let (code, clean) = fsck(&server, &[]);
    assert_eq!(code, 0, "{clean}");
    assert_eq!(clean["unreferenced"], serde_json::json!([]));
    assert_eq!(clean["stale_temporaries"], 0);
    for (id, sha) in acked.iter().take(10) {
        let photo = admin
            .get(&format!("/api/v1/submissions/{id}/attachments/a.jpg"))
            .send()
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(&sha256_hex(&photo), sha);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_reports_a_row_whose_file_is_gone() {
    let (server, _admin) = server_with_forms().await;
    let collect = collector(&server);
    let id = new_instance_id();
    let photo = random_bytes(1000);
    let xml = all_features_instance(&id, None, "Gone", 2, Some("photo1.jpg"));
    collect
        .submit(
            &xml,
            &[Attachment::jpeg("photo1.jpg", photo.clone())],
            false,
        )
        .await;
    let sha = sha256_hex(&photo);
    std::fs::remove_file(server.data_dir().join("blobs").join(&sha[..2]).join(&sha)).expect("rm");
    let (code, report) = fsck(&server, &[]);
    assert_eq!(code, 2);
    assert_eq!(report["missing"][0]["table"], "attachments");
    assert_eq!(report["missing"][0]["sha256"], sha.as_str());
}

/// What the reviewer did to one submission: the state sent and whether the server answered.
#[derive(Clone)]
struct Reviewed {
    state: &'static str,
    acknowledged: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_sigkills_during_uploads_and_reviews_keep_every_acknowledgement_and_exact_figures() {
    // An export job whose server died is taken up again one second after its last heartbeat.
    let (mut server, _) = server_with_hamlets_and(&["--export-stale-secs", "1"]).await;
    let acked: Arc<Mutex<Vec<(String, u32)>>> = Arc::default();
    let reviewed: Arc<Mutex<HashMap<String, Reviewed>>> = Arc::default();
    let exports: Arc<Mutex<Vec<String>>> = Arc::default();
    for round in 0..4u32 {
        let before = acked.lock().expect("lock").len();
        let mut tasks = Vec::new();
        for phone in 0..4u32 {
            let (base, acked) = (server.base.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let collect = Collect::with_password(&base, "lan", "lan-password-1");
                for n in 0u32.. {
                    let id = new_instance_id();
                    let total = 1 + (round * 7 + phone * 3 + n) % 40;
                    let xml = Dialogue {
                        total,
                        women: total / 2,
                        photo: Some("p.jpg"),
                        ..Dialogue::new(&id, "DEMO-04231-1")
                    }
                    .xml();
                    let photo = random_bytes(4_000 + n as usize);
                    match collect
                        .try_submit(&xml, &[Attachment::jpeg("p.jpg", photo)], false)
                        .await
                    {
                        Ok(res) if res.status() == 201 => {
                            acked.lock().expect("lock").push((id, total))
                        }
                        Ok(res) => panic!("unexpected status {}", res.status()),
                        Err(_) => return,
                    }
                }
            }));
        }
        // The reviewer works through what came in, one by one and in small batches.
        let admin = server.admin().await;
        let reviewer = {
            let reviewed = reviewed.clone();
            tokio::spawn(async move {
                let states = ["approved", "rejected", "has_issues"];
                for n in 0usize.. {
                    let Ok(res) = admin
                        .get("/api/v1/submissions?state=received&limit=6")
                        .send()
                        .await
                    else {
                        return;
                    };
                    let Ok(page) = res.json::<Value>().await else {
                        return;
                    };
                    let ids: Vec<String> = page["submissions"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|s| s["instance_id"].as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    if ids.is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    let state = states[n % states.len()];
                    let mark = |acknowledged: bool| {
                        let mut r = reviewed.lock().expect("lock");
                        for id in &ids {
                            r.insert(
                                id.clone(),
                                Reviewed {
                                    state,
                                    acknowledged,
                                },
                            );
                        }
                    };
                    mark(false);
                    let req = if n % 2 == 0 {
                        admin
                            .post(&format!("/api/v1/submissions/{}/review", ids[0]))
                            .json(&serde_json::json!({ "state": state, "comment": "seen" }))
                    } else {
                        admin.post("/api/v1/submissions/review").json(
                            &serde_json::json!({ "state": state, "comment": "seen", "ids": ids }),
                        )
                    };
                    let single = n % 2 == 0;
                    match req.send().await {
                        Ok(res) if res.status() == 200 => {
                            let mut r = reviewed.lock().expect("lock");
                            let done: &[String] = if single { &ids[..1] } else { &ids };
                            for id in done {
                                r.insert(
                                    id.clone(),
                                    Reviewed {
                                        state,
                                        acknowledged: true,
                                    },
                                );
                            }
                            if single {
                                for id in &ids[1..] {
                                    r.remove(id);
                                }
                            }
                        }
                        Ok(res) => panic!("review answered {}", res.status()),
                        Err(_) => return,
                    }
                }
            })
        };
        wait_for_more(&acked, before, &tasks).await;
        // And an officer exports what came in so far, again and again.
        let exporter = {
            let (admin, exports) = (server.admin().await, exports.clone());
            tokio::spawn(async move {
                loop {
                    let Ok(res) = admin
                        .post("/api/v1/exports")
                        .json(&serde_json::json!({ "form": "policy_dialogue", "format": "csv" }))
                        .send()
                        .await
                    else {
                        return;
                    };
                    assert_eq!(res.status(), 202);
                    let Ok(job) = res.json::<Value>().await else {
                        return;
                    };
                    let id = job["id"].as_str().expect("job id").to_string();
                    exports.lock().expect("lock").push(id.clone());
                    loop {
                        let Ok(res) = admin.get(&format!("/api/v1/exports/{id}")).send().await
                        else {
                            return;
                        };
                        let Ok(job) = res.json::<Value>().await else {
                            return;
                        };
                        if job["status"] == "done" || job["status"] == "failed" {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        };
        let wait = 100 + rand::random::<u64>() % 500;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.kill_and_restart();
        for t in tasks {
            t.await.expect("phone");
        }
        reviewer.await.expect("reviewer");
        exporter.await.expect("exporter");

        // After every crash: the maintained figures equal a full recompute, and no row points
        // at a missing file.
        assert_figures_equal_recompute(&server);
        let (_, report) = fsck(&server, &[]);
        assert_eq!(report["missing"], serde_json::json!([]), "round {round}");
    }

    let admin = server.admin().await;
    let acked = acked.lock().expect("lock").clone();
    let reviewed = reviewed.lock().expect("lock").clone();
    assert!(!acked.is_empty());
    assert!(reviewed.values().any(|r| r.acknowledged));
    let (mut provisional, mut confirmed) = (0.0, 0.0);
    for (id, total) in &acked {
        let d = admin.json(&format!("/api/v1/submissions/{id}")).await;
        assert_eq!(d["attachments"][0]["complete"], true, "{id}");
        let state = d["review_state"].as_str().expect("state");
        match reviewed.get(id) {
            Some(r) if r.acknowledged => assert_eq!(state, r.state, "{id}: acknowledged review"),
            Some(r) => assert!(state == r.state || state == "received", "{id}: {state}"),
            None => assert_eq!(state, "received", "{id}"),
        }
        match state {
            "rejected" => {}
            "approved" => {
                provisional += f64::from(*total);
                confirmed += f64::from(*total);
            }
            _ => provisional += f64::from(*total),
        }
    }
    // Submissions stored but not acknowledged (cut off before the answer) count too.
    for s in admin.all_submissions("").await {
        let id = s["instance_id"].as_str().expect("id");
        if acked.iter().any(|(a, _)| a == id) {
            continue;
        }
        let d = admin.json(&format!("/api/v1/submissions/{id}")).await;
        let total = d["fields"]["participants_total"]
            .as_f64()
            .or_else(|| d["fields"]["participants_total"].as_str()?.parse().ok())
            .expect("participants_total");
        match d["review_state"].as_str().expect("state") {
            "rejected" => {}
            "approved" => {
                provisional += total;
                confirmed += total;
            }
            _ => provisional += total,
        }
    }
    let path = "/api/v1/indicators/values?period=2025&area=04231&indicator=P8-08";
    assert_eq!(participants(&admin.json(path).await), provisional);
    let stored = admin.all_submissions("&form=policy_dialogue").await.len();

    // Every export started before a crash ends: finished files are whole, and a job killed in
    // the middle is taken up again; a last export holds every stored submission.
    let exports = exports.lock().expect("lock").clone();
    assert!(!exports.is_empty());
    for id in &exports {
        let job = finished_export(&admin, id).await;
        if job["status"] == "done" {
            export_rows(&admin, id).await;
        } else {
            assert!(
                job["error"].as_str().unwrap_or("").contains("interrupted"),
                "{job}"
            );
        }
    }
    let res = admin
        .post("/api/v1/exports")
        .json(&serde_json::json!({ "form": "policy_dialogue", "format": "csv" }))
        .send()
        .await
        .expect("export");
    let id = res.json::<Value>().await.expect("job")["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(finished_export(&admin, &id).await["status"], "done");
    assert_eq!(export_rows(&admin, &id).await, stored);
    assert_eq!(
        participants(&admin.json(&format!("{path}&basis=confirmed")).await),
        confirmed
    );
}
