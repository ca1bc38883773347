//! Many phones at once, and a server killed in the middle of uploads.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use common::collect::{Attachment, Collect};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_submission_posted_twenty_times_at_once_is_stored_once() {
    let (server, admin) = server_with_forms().await;
    let id = new_instance_id();
    let xml = all_features_instance(&id, None, "Concurrent", 3, Some("photo1.jpg"));
    let photo = random_bytes(30_000);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (base, xml, photo) = (server.base.clone(), xml.clone(), photo.clone());
        tasks.push(tokio::spawn(async move {
            let collect = Collect::with_password(&base, "lan", "lan-password-1");
            collect
                .submit(&xml, &[Attachment::jpeg("photo1.jpg", photo)], false)
                .await
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 201);
    }
    let all = admin.all_submissions("").await;
    assert_eq!(all.len(), 1);
    let s = admin.json(&format!("/api/v1/submissions/{id}")).await;
    assert_eq!(s["versions"].as_array().map(Vec::len), Some(1));
    assert_eq!(s["attachments"][0]["sha256"], sha256_hex(&photo).as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_submissions_from_fifty_phones_are_each_stored_exactly_once() {
    let (server, admin) = server_with_forms().await;
    let mut tasks = Vec::new();
    for phone in 0..50 {
        let base = server.base.clone();
        tasks.push(tokio::spawn(async move {
            let collect = Collect::with_password(&base, "lan", "lan-password-1");
            let mut ids = Vec::new();
            for n in 0..20 {
                let id = new_instance_id();
                let xml = all_features_instance(&id, None, &format!("P{phone}-{n}"), 2, None);
                let res = collect.submit(&xml, &[], false).await;
                assert_eq!(res.status(), 201);
                // Phones retry on flaky networks: every fifth one is sent twice.
                if n % 5 == 0 {
                    assert_eq!(collect.submit(&xml, &[], false).await.status(), 201);
                }
                ids.push(id);
            }
            ids
        }));
    }
    let mut sent = HashSet::new();
    for t in tasks {
        sent.extend(t.await.expect("task"));
    }
    assert_eq!(sent.len(), 1000);
    let stored: Vec<String> = admin
        .all_submissions("")
        .await
        .iter()
        .map(|s| s["instance_id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(stored.len(), 1000, "no duplicates, nothing lost");
    assert_eq!(stored.iter().cloned().collect::<HashSet<_>>(), sent);
}

/// What a phone was told was stored: the instance and, for a submission with photos, the
/// hash of its first photo.
type Acked = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Sixteen phones upload (half of the submissions with two photos, half without) until the
/// server stops answering.
/// The `Connection` header of a response, if any.
fn connection(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get("connection")
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_server_closes_connections_after_answering_so_that_waiting_phones_take_turns() {
    // Two workers, one connection each.
    let server = Server::start_with(&["--max-connections", "2"]).await;
    let first = reqwest::Client::new();
    let second = reqwest::Client::new();
    let res = first
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("first");
    assert_eq!(res.status(), 200);
    assert_eq!(
        connection(&res),
        None,
        "room for more: the connection stays open"
    );
    let res = second
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("second");
    assert_eq!(res.status(), 200);
    assert_eq!(
        connection(&res).as_deref(),
        Some("close"),
        "the server is full"
    );
    // Collect sends its POST on the connection of its HEAD: a HEAD never closes it.
    let res = first
        .head(server.url("/submission"))
        .send()
        .await
        .expect("head");
    assert_eq!(res.status(), 401);
    assert_eq!(connection(&res), None);
    let res = first
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("first");
    assert_eq!(
        connection(&res).as_deref(),
        Some("close"),
        "busy a moment ago"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let res = first
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("later");
    assert_eq!(connection(&res), None, "quiet again: connections stay open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn phones_beyond_the_connection_limit_wait_their_turn_and_every_submission_is_stored() {
    let (server, admin) = server_with_forms_and(&["--max-connections", "2"]).await;
    let mut tasks = Vec::new();
    for phone in 0..12 {
        let base = server.base.clone();
        tasks.push(tokio::spawn(async move {
            let collect = Collect::with_password(&base, "lan", "lan-password-1");
            let mut ids = Vec::new();
            for n in 0..5 {
                let id = new_instance_id();
                let xml = all_features_instance(
                    &id,
                    None,
                    &format!("P{phone}-{n}"),
                    1,
                    Some("photo1.jpg"),
                );
                let photo = Attachment::jpeg("photo1.jpg", random_bytes(20_000));
                let res = collect.submit(&xml, &[photo], false).await;
                assert_eq!(res.status(), 201);
                ids.push(id);
            }
            ids
        }));
    }
    let mut sent = HashSet::new();
    for t in tasks {
        sent.extend(t.await.expect("phone"));
    }
    let stored: HashSet<String> = admin
        .all_submissions("")
        .await
        .iter()
        .filter_map(|s| s["instance_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(sent.len(), 60);
    assert_eq!(stored, sent);
}

fn upload_until_killed(
    server: &Server,
    round: usize,
    acked: &Acked,
    sent: &Arc<Mutex<HashSet<String>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for phone in 0..16usize {
        let (base, acked, sent) = (server.base.clone(), acked.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let collect = Collect::with_password(&base, "lan", "lan-password-1");
            for n in 0usize.. {
                let id = new_instance_id();
                sent.lock().expect("lock").insert(id.clone());
                let with_photos = (phone + n) % 2 == 0;
                let (xml, files, sha) = if with_photos {
                    let photo = random_bytes(20_000 + phone * 100 + n);
                    let files = vec![
                        Attachment::jpeg("a.jpg", photo.clone()),
                        Attachment::jpeg("b.jpg", photo.iter().rev().cloned().collect()),
                    ];
                    let note = format!("crash {round}-{phone}-{n}");
                    (
                        two_photos_instance(&id, &note),
                        files,
                        Some(sha256_hex(&photo)),
                    )
                } else {
                    let name = format!("R{round}-P{phone}-{n}");
                    (
                        all_features_instance(&id, None, &name, 2, None),
                        Vec::new(),
                        None,
                    )
                };
                match collect.try_submit(&xml, &files, false).await {
                    Ok(res) if res.status() == 201 => acked.lock().expect("lock").push((id, sha)),
                    Ok(res) => panic!("unexpected status {}", res.status()),
                    Err(_) => return,
                }
            }
        }));
    }
    tasks
}

/// SIGKILL (as a power cut) at random moments of a concurrent load, three times over: after
/// each restart every submission a phone was answered 201 for is there and complete, and
/// nothing half-stored is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_random_moments_under_load_loses_no_acknowledged_submission_and_shows_no_half() {
    let (mut server, _admin) = server_with_forms().await;
    let acked: Acked = Arc::default();
    let sent: Arc<Mutex<HashSet<String>>> = Arc::default();
    for round in 0..3 {
        let before = acked.lock().expect("lock").len();
        let tasks = upload_until_killed(&server, round, &acked, &sent);
        // Let uploads get going, then cut the power at a random moment while others are in
        // flight (batches being written, committed, or answered).
        while acked.lock().expect("lock").len() < before + 20 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let wait = rand::random::<u64>() % 400;
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        server.kill_and_restart();
        for t in tasks {
            t.await.expect("task");
        }
    }

    let admin = server.admin().await;
    let acked = acked.lock().expect("lock").clone();
    let sent = sent.lock().expect("lock").clone();
    for (id, sha) in &acked {
        let s = admin.json(&format!("/api/v1/submissions/{id}")).await;
        assert_eq!(s["instance_id"], id.as_str());
        assert!(s["attachments"]
            .as_array()
            .expect("array")
            .iter()
            .all(|a| a["complete"] == true));
        let Some(sha) = sha else { continue };
        assert_eq!(s["attachments"][0]["sha256"], sha.as_str(), "{id}");
        let photo = admin
            .get(&format!("/api/v1/submissions/{id}/attachments/a.jpg"))
            .send()
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(&sha256_hex(&photo), sha, "the stored file is whole");
    }
    // Whatever else is visible was really sent and is complete: no half-stored submission.
    let visible = admin.all_submissions("").await;
    assert!(visible.len() >= acked.len());
    for s in &visible {
        let id = s["instance_id"].as_str().expect("id");
        assert!(sent.contains(id));
        let d = admin.json(&format!("/api/v1/submissions/{id}")).await;
        assert!(d["attachments"]
            .as_array()
            .expect("array")
            .iter()
            .all(|a| a["complete"] == true));
    }
    // And the restarted server goes on accepting.
    let collect = collector(&server);
    let id = new_instance_id();
    let res = collect
        .submit(&two_photos_instance(&id, "after"), &[], false)
        .await;
    assert_eq!(res.status(), 201);
}
