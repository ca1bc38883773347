//! Pushing upstream, against the real binary and a receiver started inside the test: webhooks
//! on submission events through failures, timeouts and a server restart (each event booked once
//! by its idempotency key, every request signed), giving up and retrying by hand, DHIS2 pushes
//! on close and on schedule checked against the values API, and bad configuration. Runs on
//! SQLite, or on PostgreSQL with FIELDTALLY_TEST_POSTGRES.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

/// Short timings so that retries, timeouts and giving up happen within seconds.
const FAST: [&str; 8] = [
    "--push-poll-secs",
    "0.1",
    "--push-timeout-secs",
    "1",
    "--push-retry-base-secs",
    "0.2",
    "--push-retry-max-secs",
    "1",
];
const SECRET: &str = "a-signing-secret-for-the-test-receiver";

/// What the receiver does with a request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Fail,
    /// Answers only after the server's client has given up.
    Sleep,
    Accept,
}

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

#[derive(Default)]
struct Log {
    script: VecDeque<Behaviour>,
    /// What to do once the script is used up.
    then: Option<Behaviour>,
    received: Vec<Received>,
    /// The idempotency keys of requests held past the client's timeout, in order.
    held: Vec<String>,
}

type Shared = Arc<Mutex<Log>>;

struct Receiver {
    base: String,
    log: Shared,
    handle: actix_web::dev::ServerHandle,
}

const DHIS2_OK: &str = r#"{"httpStatus":"OK","httpStatusCode":200,"status":"OK","message":"Import was successful.","response":{"responseType":"ImportSummary","status":"SUCCESS","importCount":{"imported":1,"updated":0,"ignored":0,"deleted":0},"conflicts":[]}}"#;
const DHIS2_CONFLICT: &str = r#"{"httpStatus":"Conflict","httpStatusCode":409,"status":"WARNING","message":"One more conflicts encountered, please check import summary.","response":{"responseType":"ImportSummary","status":"WARNING","importCount":{"imported":0,"updated":0,"ignored":2,"deleted":0},"conflicts":[{"object":"deParticipants","objects":{"dataElement":"deParticipants"},"value":"Data element not found or not accessible","errorCode":"E7610","property":"dataElement"}]}}"#;

async fn receive(req: HttpRequest, body: web::Bytes, log: web::Data<Shared>) -> HttpResponse {
    let behaviour = {
        let mut l = log.lock().expect("log");
        let b = l.script.pop_front().or(l.then).unwrap_or(Behaviour::Accept);
        l.received.push(Received {
            path: req.path().to_string(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: body.to_vec(),
        });
        if b == Behaviour::Sleep {
            let key = req
                .headers()
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            l.held.push(key);
        }
        b
    };
    let dhis2 = req.path().ends_with("/api/dataValueSets");
    match behaviour {
        Behaviour::Fail => HttpResponse::InternalServerError().body("receiver is down"),
        Behaviour::Sleep => {
            actix_web::rt::time::sleep(Duration::from_secs(3)).await;
            HttpResponse::Ok().finish()
        }
        Behaviour::Accept if dhis2 && req.path().starts_with("/conflict") => {
            HttpResponse::Conflict()
                .content_type("application/json")
                .body(DHIS2_CONFLICT)
        }
        Behaviour::Accept if dhis2 => HttpResponse::Ok()
            .content_type("application/json")
            .body(DHIS2_OK),
        Behaviour::Accept => HttpResponse::Ok().finish(),
    }
}

impl Receiver {
    fn start(script: &[Behaviour], then: Option<Behaviour>) -> Receiver {
        let log: Shared = Arc::new(Mutex::new(Log {
            script: script.iter().copied().collect(),
            then,
            received: Vec::new(),
            held: Vec::new(),
        }));
        let shared = log.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(web::Data::new(shared.clone()))
                        .default_service(web::to(receive))
                })
                .workers(2)
                .bind("127.0.0.1:0")
                .expect("bind receiver");
                let addr = server.addrs()[0];
                let running = server.run();
                tx.send((addr, running.handle())).expect("send address");
                let _ = running.await;
            })
        });
        let (addr, handle) = rx.recv().expect("receiver started");
        Receiver {
            base: format!("http://{addr}"),
            log,
            handle,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.log.lock().expect("log").received.clone()
    }

    fn set_then(&self, b: Behaviour) {
        self.log.lock().expect("log").then = Some(b);
    }

    fn push_script(&self, script: &[Behaviour]) {
        self.log.lock().expect("log").script.extend(script);
    }

    fn held(&self) -> Vec<String> {
        self.log.lock().expect("log").held.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(handle.stop(false));
        });
    }
}

fn verify_signature(r: &Received, secret: &str) {
    let header = r.header("x-fieldtally-signature");
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("signature header '{header}'"));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    mac.verify_slice(&hex::decode(v1).expect("hex"))
        .expect("the signature is HMAC-SHA256 over timestamp.body");
    let sent: i64 = t.parse().expect("unix time");
    assert!((chrono::Utc::now().timestamp() - sent).abs() < 3600);
}

async fn start(extra: &[&str]) -> (Server, Admin) {
    let mut args: Vec<&str> = FAST.to_vec();
    if !extra.contains(&"--push-give-up-secs") {
        args.extend_from_slice(&["--push-give-up-secs", "600"]);
    }
    args.extend_from_slice(extra);
    server_with_hamlets_and(&args).await
}

fn dialogue(
    id: &str,
    deprecated: Option<&str>,
    hamlet: &str,
    date: &str,
    level: &str,
    total: u32,
    women: u32,
) -> Vec<u8> {
    Dialogue {
        id,
        deprecated,
        hamlet,
        date,
        level,
        total,
        women,
        photo: None,
    }
    .xml()
}

async fn review(admin: &Admin, instance_id: &str, state: &str) {
    let res = admin
        .post(&format!("/api/v1/submissions/{instance_id}/review"))
        .json(&json!({ "state": state, "comment": "checked" }))
        .send()
        .await
        .expect("review");
    assert_eq!(res.status(), 200, "review {instance_id}");
}

async fn deliveries(admin: &Admin, query: &str) -> Vec<Value> {
    admin
        .json(&format!("/api/v1/deliveries?limit=1000{query}"))
        .await["deliveries"]
        .as_array()
        .expect("deliveries")
        .clone()
}

/// Polls the delivery list until `done` holds (at most two minutes).
async fn wait_for(admin: &Admin, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..1200 {
        let list = deliveries(admin, "").await;
        if done(&list) {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: {:#?}", deliveries(admin, "").await);
}

fn all_delivered(n: usize) -> impl Fn(&[Value]) -> bool {
    move |list| list.len() == n && list.iter().all(|d| d["status"] == "delivered")
}

async fn create_target(admin: &Admin, body: Value) -> Value {
    let res = admin
        .post("/api/v1/push-targets")
        .json(&body)
        .send()
        .await
        .expect("create target");
    let status = res.status();
    let body: Value = res.json().await.expect("json");
    assert_eq!(status, 201, "{body}");
    body
}

#[tokio::test]
async fn webhooks_arrive_once_each_signed_through_failures_timeouts_and_a_restart() {
    use Behaviour::*;
    // Fails, times out, then fails whatever comes until the restart.
    let receiver = Receiver::start(&[Fail, Sleep, Fail], Some(Fail));
    let (mut server, admin) = start(&[]).await;
    let target = create_target(
        &admin,
        json!({
            "name": "province hook",
            "kind": "webhook",
            "url": format!("{}/hooks/fieldtally", receiver.base),
            "secret": SECRET,
            "events": ["submission.created", "submission.edited", "submission.review_changed"],
        }),
    )
    .await;
    // The secret goes in and never comes out.
    assert!(!target.to_string().contains(SECRET));
    assert_eq!(target["secret_set"], true);
    let listed = admin.json("/api/v1/push-targets").await;
    assert!(!listed.to_string().contains(SECRET));

    let phone = collector(&server);
    let (a, b, a2) = (new_instance_id(), new_instance_id(), new_instance_id());
    for xml in [
        dialogue(&a, None, "DEMO-04231-1", "2025-07-10", "commune", 30, 18),
        dialogue(&b, None, "DEMO-04231-2", "2025-08-10", "commune", 20, 12),
        dialogue(
            &a2,
            Some(&a),
            "DEMO-04231-1",
            "2025-07-10",
            "commune",
            31,
            18,
        ),
    ] {
        assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);
    }
    // A duplicate POST is not an event.
    let dup = dialogue(&b, None, "DEMO-04231-2", "2025-08-10", "commune", 20, 12);
    assert_eq!(phone.submit(&dup, &[], false).await.status(), 201);
    review(&admin, &b, "approved").await;

    // Killed while deliveries are failing and waiting, and while one is in flight (the
    // receiver holds it past the client's timeout): nothing committed is lost.
    let before = deliveries(&admin, "").await;
    assert_eq!(before.len(), 4);
    assert!(before.iter().all(|d| d["status"] == "pending"));
    let held_before = receiver.held().len();
    receiver.push_script(&[Sleep]);
    let mut in_flight = None;
    for _ in 0..3000 {
        if let Some(k) = receiver.held().get(held_before) {
            in_flight = Some(k.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let in_flight = in_flight.expect("a retry reached the receiver");
    server.kill_and_restart();
    // After the restart: one more failure and one more timeout, then the receiver recovers.
    receiver.push_script(&[Fail, Sleep]);
    receiver.set_then(Accept);
    let admin = server.admin().await;
    let phone = collector(&server);
    let c = new_instance_id();
    let xml = dialogue(&c, None, "DEMO-04231-1", "2025-09-01", "commune", 10, 5);
    assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);

    let list = wait_for(&admin, "every delivery delivered", all_delivered(5)).await;
    // The request in flight at the kill was sent again (once its lease ran out), same key.
    let resent = receiver
        .received()
        .iter()
        .filter(|r| r.header("idempotency-key") == in_flight)
        .count();
    assert!(resent >= 2, "{in_flight} sent {resent} times");
    assert!(list.iter().any(|d| d["attempts"].as_i64() > Some(1)));
    for d in &list {
        assert_eq!(d["target"], "province hook");
        assert_eq!(d["kind"], "webhook");
        assert_eq!(d["last_error"], Value::Null);
        assert_eq!(d["next_attempt_at"], Value::Null);
    }

    // Every request signed; each delivery's attempts carry one key and one body.
    let received = receiver.received();
    assert!(
        received.len() >= 5 + 5,
        "the script was played: {}",
        received.len()
    );
    // Every timeout of the script was played, one of them cut short by the kill.
    assert_eq!(receiver.held().len(), 3);
    let mut by_key: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for r in &received {
        assert_eq!(r.path, "/hooks/fieldtally");
        assert_eq!(r.header("content-type"), "application/json");
        verify_signature(r, SECRET);
        by_key
            .entry(r.header("idempotency-key").to_string())
            .or_default()
            .push(r);
    }
    assert_eq!(by_key.len(), 5);
    let listed_keys: BTreeSet<String> = list
        .iter()
        .map(|d| d["idempotency_key"].as_str().expect("key").to_string())
        .collect();
    assert_eq!(by_key.keys().cloned().collect::<BTreeSet<_>>(), listed_keys);
    // What the receiver books, once per key: each event exactly once.
    let mut booked: Vec<(String, String)> = Vec::new();
    for attempts in by_key.values() {
        assert!(attempts.iter().all(|r| r.body == attempts[0].body));
        let body = attempts[0].json();
        assert_eq!(attempts[0].header("x-fieldtally-event"), body["event"]);
        let sub = &body["submission"];
        assert_eq!(sub["form_id"], "policy_dialogue");
        // Names, answers and comments never travel.
        for k in sub.as_object().expect("object").keys() {
            assert!(
                [
                    "instance_id",
                    "form_id",
                    "form_version",
                    "review_state",
                    "previous_review_state",
                    "created_at",
                    "updated_at"
                ]
                .contains(&k.as_str()),
                "{k}"
            );
        }
        assert!(!attempts[0].body.windows(6).any(|w| w == b"checked"));
        booked.push((
            body["event"].as_str().expect("event").to_string(),
            sub["instance_id"].as_str().expect("id").to_string(),
        ));
    }
    booked.sort();
    let mut expected = vec![
        ("submission.created".to_string(), a.clone()),
        ("submission.created".to_string(), b.clone()),
        ("submission.created".to_string(), c.clone()),
        // The submission keeps its first instanceID.
        ("submission.edited".to_string(), a.clone()),
        ("submission.review_changed".to_string(), b.clone()),
    ];
    expected.sort();
    assert_eq!(booked, expected);
    let review_body = by_key
        .values()
        .map(|v| v[0].json())
        .find(|b| b["event"] == "submission.review_changed")
        .expect("review event");
    assert_eq!(review_body["submission"]["review_state"], "approved");
    assert_eq!(
        review_body["submission"]["previous_review_state"],
        "received"
    );

    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains("fieldtally_push_queue_length 0"),
        "{metrics}"
    );
    assert!(metrics.contains("fieldtally_push_failed_deliveries 0"));
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_is_given_up_then_retried_by_hand() {
    let receiver = Receiver::start(&[], Some(Behaviour::Fail));
    let (server, admin) = start(&["--push-give-up-secs", "3"]).await;
    let created = create_target(
        &admin,
        json!({
            "name": "flaky",
            "kind": "webhook",
            "url": format!("{}/hook", receiver.base),
            "events": ["submission.created"],
        }),
    )
    .await;
    // A generated secret is shown once, on creation.
    let secret = created["secret"]
        .as_str()
        .expect("generated secret")
        .to_string();
    assert_eq!(secret.len(), 64);
    let shown = admin
        .json(&format!("/api/v1/push-targets/{}", created["id"]))
        .await;
    assert!(!shown.to_string().contains(&secret));

    let phone = collector(&server);
    let id = new_instance_id();
    let xml = dialogue(&id, None, "DEMO-04231-1", "2025-07-10", "commune", 30, 18);
    assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);
    let list = wait_for(&admin, "given up", |l| {
        l.len() == 1 && l[0]["status"] == "failed"
    })
    .await;
    let d = &list[0];
    assert!(d["attempts"].as_i64() >= Some(2), "{d}");
    assert!(
        d["last_error"]
            .as_str()
            .expect("error")
            .starts_with("HTTP 500"),
        "{d}"
    );
    assert_eq!(d["next_attempt_at"], Value::Null);
    assert_eq!(deliveries(&admin, "&status=failed").await.len(), 1);
    assert_eq!(deliveries(&admin, "&status=delivered").await.len(), 0);
    let metrics = metrics_text(&server).await;
    assert!(metrics.contains("fieldtally_push_failed_deliveries 1"));
    assert!(!metrics.contains("fieldtally_push_attempts_total{outcome=\"failed\"} 0"));
    let attempts_before = receiver.received().len();

    // Only administrators see or retry deliveries.
    admin
        .create_user("officer", "officer-password-1", "province_officer")
        .await;
    let officer = Admin::login(&server, "officer", "officer-password-1").await;
    let res = officer.get("/api/v1/deliveries").send().await.expect("GET");
    assert_eq!(res.status(), 403);

    receiver.set_then(Behaviour::Accept);
    let path = format!("/api/v1/deliveries/{}/retry", d["id"]);
    let res = admin.post(&path).send().await.expect("retry");
    assert_eq!(res.status(), 200);
    wait_for(&admin, "delivered after the retry", all_delivered(1)).await;
    let received = receiver.received();
    assert!(received.len() > attempts_before);
    for r in &received {
        assert_eq!(r.header("idempotency-key"), d["idempotency_key"]);
        verify_signature(r, &secret);
    }
    let res = admin.post(&path).send().await.expect("retry");
    assert_eq!(res.status(), 409);
    let res = admin
        .get("/api/v1/deliveries?status=lost")
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn bad_push_configuration_is_refused_with_json_errors() {
    let (_server, admin) = start(&[]).await;
    let hook = |extra: Value| {
        let mut body = json!({
            "name": "hook",
            "kind": "webhook",
            "url": "https://example.org/hook",
            "events": ["submission.created"],
        });
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let dhis2 = |extra: Value| {
        let mut body = json!({
            "name": "dhis2",
            "kind": "dhis2",
            "url": "https://dhis2.example.org",
            "username": "fieldtally",
            "password": "district-password",
            "data_elements": [{"indicator": "P8-08", "measure": "dialogues", "data_element": "deA"}],
            "org_units": [{"area": "04231", "org_unit": "ouA"}],
        });
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (hook(json!({"kind": "carrier_pigeon"})), "bad_kind"),
        (hook(json!({"url": "not a url"})), "bad_url"),
        (hook(json!({"url": "file:///etc/passwd"})), "bad_url"),
        (hook(json!({"url": "https://me:pw@example.org"})), "bad_url"),
        (hook(json!({"events": []})), "bad_events"),
        (
            hook(json!({"events": ["submission.deleted_by_aliens"]})),
            "bad_events",
        ),
        (hook(json!({"secret": "short"})), "bad_secret"),
        (hook(json!({"name": ""})), "bad_name"),
        (hook(json!({"colour": "blue"})), "bad_json"),
        (dhis2(json!({"password": null})), "bad_credentials"),
        (dhis2(json!({"period_type": "weekly"})), "bad_period_type"),
        (dhis2(json!({"basis": "hopeful"})), "bad_basis"),
        (dhis2(json!({"schedule_secs": 5})), "bad_schedule"),
        (dhis2(json!({"org_units": []})), "bad_mapping"),
        (
            dhis2(json!({"data_elements": [{"indicator": "P9-99", "data_element": "deA"}]})),
            "bad_mapping",
        ),
        (
            dhis2(json!({"data_elements": [{"indicator": "P8-08", "data_element": "deA"}]})),
            "bad_mapping",
        ),
        (
            dhis2(
                json!({"data_elements": [{"indicator": "P8-08", "measure": "dialogues", "disaggregation": {"shoe_size": "42"}, "data_element": "deA"}]}),
            ),
            "bad_mapping",
        ),
        (
            dhis2(json!({"org_units": [{"area": "99999", "org_unit": "ouA"}]})),
            "bad_mapping",
        ),
        (
            dhis2(json!({"events": ["submission.created"]})),
            "bad_push_target",
        ),
    ];
    for (body, code) in cases {
        let res = admin
            .post("/api/v1/push-targets")
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert_eq!(res.status(), 400, "{body}");
        let answer: Value = res.json().await.expect("json");
        assert_eq!(answer["error"]["code"], code, "{body} → {answer}");
        assert!(answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let res = admin
        .post("/api/v1/push-targets")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.expect("json")["error"]["code"],
        "bad_json"
    );
    // Nothing was stored.
    let listed = admin.json("/api/v1/push-targets").await;
    assert_eq!(listed["push_targets"], json!([]));

    let t = create_target(&admin, dhis2(json!({}))).await;
    assert!(!t.to_string().contains("district-password"));
    assert_eq!(
        t["auth"],
        json!({"type": "basic", "username": "fieldtally"})
    );
    let res = admin
        .post("/api/v1/push-targets")
        .json(&dhis2(json!({})))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 409);
    // A CSV mapping with a malformed disaggregation, and one that is fine.
    let path = format!("/api/v1/push-targets/{}/data-elements", t["id"]);
    let res = admin
        .put(&path)
        .header("content-type", "text/csv")
        .body("indicator,measure,disaggregation,data_element\nP8-08,dialogues,dialogue_level,deA\n")
        .send()
        .await
        .expect("PUT");
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.expect("json")["error"]["code"],
        "bad_import_row"
    );
    let res = admin
        .put(&path)
        .header("content-type", "text/csv")
        .body("indicator,measure,disaggregation,data_element,category_option_combo\nP8-08,dialogues,dialogue_level=commune,deA,cocCommune\nP8-08,participants,,deB,\n")
        .send()
        .await
        .expect("PUT");
    assert_eq!(res.status(), 200);
    let t: Value = res.json().await.expect("json");
    assert_eq!(
        t["data_elements"][0]["disaggregation"],
        json!({"dialogue_level": "commune"})
    );
    assert_eq!(t["data_elements"][1]["category_option_combo"], Value::Null);
    // Replacing without credentials keeps them; the kind cannot change.
    let res = admin
        .put(&format!("/api/v1/push-targets/{}", t["id"]))
        .json(&json!({"name": "dhis2", "kind": "dhis2", "url": "https://dhis2.example.org/", "lookback": 2}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(res.status(), 200);
    let kept: Value = res.json().await.expect("json");
    assert_eq!(kept["auth"]["username"], "fieldtally");
    assert_eq!(kept["data_elements"].as_array().map(Vec::len), Some(2));
    let res = admin
        .put(&format!("/api/v1/push-targets/{}", t["id"]))
        .json(&hook(json!({"name": "dhis2"})))
        .send()
        .await
        .expect("PUT");
    assert_eq!(res.status(), 400);
    let res = admin
        .get("/api/v1/push-targets/4242")
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 404);
    let res = admin
        .get("/api/v1/push-targets/x")
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 400);
    let res = admin
        .delete(&format!("/api/v1/push-targets/{}", t["id"]))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(res.status(), 204);
}

/// The values API's row for one mapped data value.
async fn api_value(
    admin: &Admin,
    period: &str,
    area: &str,
    measure: &str,
    dims: &[(&str, &str)],
    snapshot: Option<&str>,
) -> Option<String> {
    let by: Vec<&str> = dims.iter().map(|(k, _)| *k).collect();
    let mut path = format!(
        "/api/v1/indicators/values?period={period}&area={area}&indicator=P8-08&basis=confirmed&map=current&by={}",
        by.join(",")
    );
    if let Some(s) = snapshot {
        path.push_str(&format!("&snapshot={s}"));
    }
    let table = admin.json(&path).await;
    let row = table["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["measure"] == measure && dims.iter().all(|(k, v)| r[*k] == *v))?;
    let v = row["value"].as_f64()?;
    Some(if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    })
}

fn dhis2_period(p: &str) -> String {
    p.replace("-Q", "Q").replace('-', "")
}

#[tokio::test]
async fn dhis2_gets_the_values_api_figures_on_close_and_on_schedule() {
    let receiver = Receiver::start(&[], None);
    let (server, admin) = start(&[]).await;
    let phone = collector(&server);
    let (d1, d2, d3) = (new_instance_id(), new_instance_id(), new_instance_id());
    for xml in [
        dialogue(&d1, None, "DEMO-04231-1", "2025-07-10", "commune", 30, 18),
        dialogue(
            &d2,
            None,
            "DEMO-04231-2",
            "2025-08-10",
            "village_cluster",
            20,
            12,
        ),
        dialogue(&d3, None, "DEMO-04231-1", "2025-09-12", "commune", 40, 25),
    ] {
        assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);
    }
    // Confirmed figures: the approved two only.
    review(&admin, &d1, "approved").await;
    review(&admin, &d2, "approved").await;

    let elements = json!([
        {"indicator": "P8-08", "measure": "dialogues", "data_element": "deDialogues",
         "category_option_combo": "cocDefault", "attribute_option_combo": "aocP8"},
        {"indicator": "P8-08", "measure": "participants", "data_element": "deParticipants"},
        {"indicator": "P8-08", "measure": "women_participants", "data_element": "deWomen"},
        {"indicator": "P8-08", "measure": "dialogues", "disaggregation": {"dialogue_level": "commune"},
         "data_element": "deDialogues", "category_option_combo": "cocCommune"},
    ]);
    let units = json!([
        {"area": "04231", "org_unit": "OuSopCop"},
        {"area": "14", "org_unit": "OuSonLa"},
    ]);
    let quarterly = create_target(
        &admin,
        json!({
            "name": "dhis2 quarterly", "kind": "dhis2", "url": format!("{}/q", receiver.base),
            "username": "pusher", "password": "pusher-password",
            "period_type": "quarterly", "data_elements": elements, "org_units": units,
        }),
    )
    .await;
    let this_year = chrono::Datelike::year(&chrono::Utc::now());
    let lookback = u32::try_from(this_year - 2025 + 1).expect("lookback");
    let yearly = create_target(
        &admin,
        json!({
            "name": "dhis2 yearly", "kind": "dhis2", "url": format!("{}/y", receiver.base),
            "token": "d2pat_example_token", "period_type": "yearly", "schedule_secs": 3600,
            "lookback": lookback, "data_elements": elements, "org_units": units,
        }),
    )
    .await;
    let refused = create_target(
        &admin,
        json!({
            "name": "dhis2 refusing", "kind": "dhis2", "url": format!("{}/conflict", receiver.base),
            "token": "d2pat_other", "period_type": "quarterly",
            "data_elements": elements, "org_units": units,
        }),
    )
    .await;

    // The schedule pushes the yearly target at once (nothing is due on the quarterly ones).
    wait_for(&admin, "the scheduled push", |l| {
        l.iter()
            .filter(|d| d["target_id"] == yearly["id"] && d["status"] == "delivered")
            .count()
            >= 1
    })
    .await;

    let res = admin
        .post("/api/v1/indicators/periods/2025-Q3/close")
        .json(&json!({"note": "Q3 report"}))
        .send()
        .await
        .expect("close");
    assert_eq!(res.status(), 201);
    // After the close, the live figures move on; the pushed ones are those reported.
    review(&admin, &d3, "approved").await;

    // A close that is refused (already closed) rolls back, and queues nothing.
    let count = deliveries(&admin, "").await.len();
    let res = admin
        .post("/api/v1/indicators/periods/2025-Q3/close")
        .send()
        .await
        .expect("close again");
    assert_eq!(res.status(), 409);
    assert_eq!(deliveries(&admin, "").await.len(), count);

    let list = wait_for(&admin, "the close pushed", |l| {
        l.iter().any(|d| {
            d["target_id"] == quarterly["id"]
                && d["event"] == "dhis2.period_closed"
                && d["status"] == "delivered"
        }) && l
            .iter()
            .any(|d| d["target_id"] == refused["id"] && d["status"] == "failed")
    })
    .await;
    // DHIS2 refused values: reported as a failure at once, with the conflicts.
    let failed = list
        .iter()
        .find(|d| d["target_id"] == refused["id"])
        .expect("refused delivery");
    assert_eq!(failed["attempts"], 1);
    let error = failed["last_error"].as_str().expect("error");
    assert!(
        error.contains("HTTP 409") && error.contains("2 ignored"),
        "{error}"
    );
    assert!(
        error.contains("deParticipants Data element not found"),
        "{error}"
    );

    let by_key: BTreeMap<String, &Value> = list
        .iter()
        .map(|d| (d["idempotency_key"].as_str().expect("key").to_string(), d))
        .collect();
    let mut checked = 0;
    let mut seen_q3 = false;
    for r in receiver.received() {
        assert!(r.path.ends_with("/api/dataValueSets"), "{}", r.path);
        let d = by_key
            .get(r.header("idempotency-key"))
            .unwrap_or_else(|| panic!("unknown key {}", r.header("idempotency-key")));
        let expected_auth = if r.path.starts_with("/q/") {
            use base64::Engine;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("pusher:pusher-password")
            )
        } else if r.path.starts_with("/y/") {
            "ApiToken d2pat_example_token".to_string()
        } else {
            "ApiToken d2pat_other".to_string()
        };
        assert_eq!(r.header("authorization"), expected_auth);
        let snapshot = (d["event"] == "dhis2.period_closed").then_some("2025-Q3");
        let values = r.json()["dataValues"]
            .as_array()
            .expect("dataValues")
            .clone();
        assert!(!values.is_empty());
        for v in &values {
            let period = v["period"].as_str().expect("period");
            let api_period = if period.len() == 6 && !period.contains('Q') {
                format!("{}-{}", &period[..4], &period[4..])
            } else {
                period.replace('Q', "-Q")
            };
            assert_eq!(dhis2_period(&api_period), period);
            let area = match v["orgUnit"].as_str() {
                Some("OuSopCop") => "04231",
                Some("OuSonLa") => "14",
                other => panic!("org unit {other:?}"),
            };
            let (measure, dims): (&str, Vec<(&str, &str)>) =
                match (v["dataElement"].as_str(), v["categoryOptionCombo"].as_str()) {
                    (Some("deDialogues"), Some("cocDefault")) => {
                        assert_eq!(v["attributeOptionCombo"], "aocP8");
                        ("dialogues", vec![])
                    }
                    (Some("deDialogues"), Some("cocCommune")) => {
                        ("dialogues", vec![("dialogue_level", "commune")])
                    }
                    (Some("deParticipants"), None) => ("participants", vec![]),
                    (Some("deWomen"), None) => ("women_participants", vec![]),
                    other => panic!("data element {other:?}"),
                };
            let field_names: BTreeSet<&str> = v
                .as_object()
                .expect("object")
                .keys()
                .map(String::as_str)
                .collect();
            assert!(field_names.is_subset(&BTreeSet::from([
                "dataElement",
                "period",
                "orgUnit",
                "categoryOptionCombo",
                "attributeOptionCombo",
                "value"
            ])));
            let want = api_value(&admin, &api_period, area, measure, &dims, snapshot).await;
            if snapshot.is_none() && d["event"] == "dhis2.scheduled" {
                // Pushed before the close and d3's approval: the figures of that moment.
                if api_period == "2025" {
                    let expected = match (measure, dims.is_empty()) {
                        ("dialogues", true) => "2",
                        ("dialogues", false) => "1",
                        ("participants", _) => "50",
                        _ => "30",
                    };
                    assert_eq!(v["value"], expected, "{v}");
                    checked += 1;
                    continue;
                }
            }
            assert_eq!(v["value"].as_str(), want.as_deref(), "{v}");
            if d["event"] == "dhis2.period_closed" && r.path.starts_with("/q/") {
                assert_eq!(period, "2025Q3");
                seen_q3 = true;
            }
            checked += 1;
        }
    }
    assert!(seen_q3);
    assert!(checked >= 8 * 2, "{checked} values checked");
    // The hand-counted Q3 figures as reported: d1 and d2 approved, d3 not yet.
    assert_eq!(
        api_value(
            &admin,
            "2025-Q3",
            "04231",
            "participants",
            &[],
            Some("2025-Q3")
        )
        .await
        .as_deref(),
        Some("50")
    );
    assert_eq!(
        api_value(&admin, "2025-Q3", "04231", "participants", &[], None)
            .await
            .as_deref(),
        Some("90")
    );
}

#[tokio::test]
async fn two_servers_on_one_database_never_send_the_same_delivery_twice() {
    let receiver = Receiver::start(&[], None);
    let (a, admin) = start(&[]).await;
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend_from_slice(&["--push-give-up-secs", "600"]);
    let b = Server::start_sharing(&a, &args).await;
    create_target(
        &admin,
        json!({
            "name": "hook", "kind": "webhook", "url": format!("{}/hook", receiver.base),
            "secret": SECRET, "events": ["submission.created", "submission.review_changed"],
        }),
    )
    .await;
    // Events arrive through both servers; both workers poll the one outbox.
    let mut ids = Vec::new();
    for (i, server) in [&a, &b, &a, &b, &a, &b, &a, &b].into_iter().enumerate() {
        let id = new_instance_id();
        let day = format!("2025-07-{:02}", i + 1);
        let xml = dialogue(&id, None, "DEMO-04231-1", &day, "commune", 10, 5);
        assert_eq!(
            collector(server).submit(&xml, &[], false).await.status(),
            201
        );
        ids.push(id);
    }
    let admin_b = b.admin().await;
    for id in &ids[..4] {
        review(&admin_b, id, "approved").await;
    }
    wait_for(&admin, "all delivered", all_delivered(12)).await;
    // Pages of five, newest first, following the cursor: every delivery once.
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = admin
            .json(&format!("/api/v1/deliveries?limit=5{cursor}"))
            .await;
        let ids: Vec<i64> = page["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .map(|d| d["id"].as_i64().expect("id"))
            .collect();
        pages.extend(ids);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages.len(), 12);
    assert!(pages.windows(2).all(|w| w[0] > w[1]));
    assert_eq!(
        deliveries(&admin, "&event=submission.review_changed")
            .await
            .len(),
        4
    );
    // The receiver always accepts, so a delivery sent by both servers would arrive twice.
    let received = receiver.received();
    let keys: BTreeSet<&str> = received
        .iter()
        .map(|r| r.header("idempotency-key"))
        .collect();
    assert_eq!(received.len(), 12);
    assert_eq!(keys.len(), 12);
    for r in &received {
        verify_signature(r, SECRET);
    }
}

/// A safe-birth outreach visit (a sensitive form with a beneficiary key), as Collect sends it.
fn visit(id: &str, name: &str) -> Vec<u8> {
    format!(
        "<?xml version='1.0' encoding='UTF-8' ?><data id=\"safe_birth_outreach\" version=\"2025040302\" xmlns:orx=\"http://openrosa.org/xforms\"><start>2025-08-10T08:00:00.000+07:00</start><end>2025-08-10T08:20:00.000+07:00</end><start_location /><hamlet>DEMO-04231-1</hamlet><activity_date>2025-08-10</activity_date><consent>yes</consent><woman_name>{name}</woman_name><birth_year>1998</birth_year><household_code>HH-07</household_code><ethnicity>03</ethnicity><pregnancy_status>pregnant</pregnancy_status><topics>antenatal facility_delivery</topics><referred>no</referred><policy_package>none</policy_package><location>21.0 103.5 600.0 5.0</location><photo /><meta><instanceID>{id}</instanceID></meta></data>"
    )
    .into_bytes()
}

#[tokio::test]
async fn erasures_and_deletions_are_announced_without_personal_data() {
    let receiver = Receiver::start(&[], None);
    let (server, admin) = start(&[]).await;
    create_target(
        &admin,
        json!({
            "name": "copies", "kind": "webhook", "url": format!("{}/hook", receiver.base),
            "secret": SECRET, "events": ["submission.deleted"],
        }),
    )
    .await;
    let phone = collector(&server);
    let (id, other) = (new_instance_id(), new_instance_id());
    let xml = visit(&id, "Lò Thị Mai");
    assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);
    let xml = dialogue(
        &other,
        None,
        "DEMO-04231-1",
        "2025-07-10",
        "commune",
        30,
        18,
    );
    assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);
    // Only the events a target asked for: no delivery for the submissions themselves.
    assert!(deliveries(&admin, "").await.is_empty());

    // An administrator's deletion.
    let res = admin
        .delete(&format!("/api/v1/submissions/{other}"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(res.status(), 200);
    wait_for(&admin, "the deletion announced", all_delivered(1)).await;
    let body = receiver.received()[0].json();
    assert_eq!(
        (
            body["event"].as_str(),
            body["submission"]["instance_id"].as_str()
        ),
        (Some("submission.deleted"), Some(other.as_str()))
    );

    // A data subject's erasure, from the command line.
    let key = admin.json(&format!("/api/v1/submissions/{id}")).await["beneficiary_key"]
        .as_str()
        .expect("key")
        .to_string();
    let out = server.cli(
        &[
            "subject",
            "erase",
            "--key",
            &key,
            "--by",
            "admin",
            "--reason",
            "DS-2025-014",
            "--yes",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    wait_for(&admin, "the erasure announced", all_delivered(2)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    let body = received[1].json();
    assert_eq!(body["event"], "submission.deleted");
    assert_eq!(body["submission"]["instance_id"], id.as_str());
    assert_eq!(body["submission"]["form_id"], "safe_birth_outreach");
    for r in &received {
        verify_signature(r, SECRET);
        let text = String::from_utf8_lossy(&r.body);
        for personal in ["Lò Thị Mai", "HH-07", "1998", &key, "DS-2025-014"] {
            assert!(!text.contains(personal), "{personal} in {text}");
        }
    }
}

#[tokio::test]
async fn push_secrets_are_sealed_at_rest_and_follow_a_key_rotation() {
    use std::os::unix::fs::PermissionsExt;
    let receiver = Receiver::start(&[], None);
    let (mut server, admin) = start(&[]).await;
    create_target(
        &admin,
        json!({
            "name": "hook", "kind": "webhook", "url": format!("{}/hook", receiver.base),
            "secret": SECRET, "events": ["submission.created"],
        }),
    )
    .await;
    create_target(
        &admin,
        json!({
            "name": "dhis2", "kind": "dhis2", "url": "https://dhis2.example.org",
            "username": "pusher", "password": "a-dhis2-password",
            "data_elements": [{"indicator": "P8-08", "measure": "dialogues", "data_element": "deA"}],
            "org_units": [{"area": "14", "org_unit": "ouA"}],
        }),
    )
    .await;
    // What a copy of the database shows: sealed bytes, no secret.
    let stored = raw_bytes(&server, "SELECT secret AS b FROM push_targets");
    assert_eq!(stored.len(), 2);
    for s in &stored {
        let text = String::from_utf8_lossy(s);
        assert!(!text.contains(SECRET) && !text.contains("a-dhis2-password"));
    }

    // A new key, the rotation, the old key removed: the targets still sign and authenticate.
    let keys = server.data_dir().join("data.keys");
    let old = std::fs::read_to_string(&keys).expect("keys");
    let new = format!("k2 {}", hex::encode(rand::random::<[u8; 32]>()));
    std::fs::write(&keys, format!("{}\n{new}\n", old.trim())).expect("write keys");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = server.cli(&["keys", "rotate"], None);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("secrets of 2 push targets"), "{said}");
    std::fs::write(&keys, format!("{new}\n")).expect("write keys");
    server.restart();
    let admin = server.admin().await;
    let shown = admin.json("/api/v1/push-targets").await;
    assert_eq!(shown["push_targets"][1]["auth"]["username"], "pusher");
    let id = new_instance_id();
    let xml = dialogue(&id, None, "DEMO-04231-1", "2025-07-10", "commune", 30, 18);
    assert_eq!(
        collector(&server).submit(&xml, &[], false).await.status(),
        201
    );
    wait_for(&admin, "delivered after the rotation", all_delivered(1)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    verify_signature(&received[0], SECRET);
}
