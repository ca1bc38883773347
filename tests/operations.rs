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

    let text = reqwest::get(server.url("/metrics"))
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
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
        // A different moment each round.
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
