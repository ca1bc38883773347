//! Export benchmark: stores N submissions (default 200,000) of a form with a repeat group and a
//! geopoint straight through the domain functions the server uses, then starts the real server
//! binary on that data and runs a CSV, an XLSX and a GeoJSON export job, each in a fresh server
//! process, recording rows per second and the server's peak memory (VmHWM from /proc). A table
//! longer than the 1,048,576 rows an XLSX sheet holds goes on in further sheets.
//!
//! ```sh
//! cargo bench --bench exports -- --submissions 200000
//! ```
//!
//! Not a test: nothing here asserts a time. Linux only (reads /proc).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Duration as Days, NaiveDate, Utc};
use fieldtally::db::{self, Conn, DbConn};
use fieldtally::error::AppError;
use fieldtally::submissions::{self, Derived, Incoming};
use fieldtally::users::{self, NewUser, Role};
use serde_json::{json, Value};

const BATCH: usize = 1000;
const PASSWORD: &str = "bench-admin-password";

const FORM: &str = r#"<?xml version="1.0"?><h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:jr="http://openrosa.org/javarosa"><h:head><h:title>Household visit</h:title><model><itext><translation lang="Vietnamese (vi)" default="true()"><text id="/data/hamlet:label"><value>Thôn/bản</value></text><text id="/data/household_size:label"><value>Số người trong hộ</value></text></translation><translation lang="English (en)"><text id="/data/hamlet:label"><value>Hamlet</value></text><text id="/data/household_size:label"><value>Household size</value></text></translation></itext><instance><data id="household_visit" version="1"><hamlet/><activity_date/><household_size/><income/><location/><note/><members jr:template=""><member_name/><member_age/></members><meta><instanceID/></meta></data></instance><bind nodeset="/data/activity_date" type="date"/><bind nodeset="/data/household_size" type="int"/><bind nodeset="/data/income" type="decimal"/><bind nodeset="/data/location" type="geopoint"/><bind nodeset="/data/members/member_age" type="int"/></model></h:head><h:body><input ref="/data/hamlet"><label ref="jr:itext('/data/hamlet:label')"/></input><input ref="/data/household_size"><label ref="jr:itext('/data/household_size:label')"/></input><group ref="/data/members"><repeat nodeset="/data/members"><input ref="/data/members/member_name"><label>Name</label></input></repeat></group></h:body></h:html>"#;

fn submissions_wanted() -> usize {
    let mut it = std::env::args().skip(1);
    let mut n = 200_000;
    while let Some(x) = it.next() {
        if x == "--submissions" {
            n = it.next().and_then(|v| v.parse().ok()).unwrap_or(n);
        }
    }
    n
}

fn tx<T>(conn: &mut DbConn, f: impl FnOnce(&mut Conn<'_>) -> Result<T, AppError>) -> T {
    conn.conn().write_transaction(f).expect("transaction")
}

fn incoming(i: usize, collector: i64, start: NaiveDate) -> Incoming {
    let id = format!("uuid:bench-{i}");
    let date = start + Days::days((i % 365) as i64);
    let members: Vec<Value> = (0..(i % 4))
        .map(|m| json!({ "member_name": format!("Thành viên {m}"), "member_age": 5 + m * 11 }))
        .collect();
    let fields = json!({
        "hamlet": format!("H-{:04}", i % 3000),
        "activity_date": date.to_string(),
        "household_size": 1 + i % 9,
        "income": (i % 500) as f64 / 10.0,
        "location": format!("21.{:04} 103.{:04} 600 5", i % 10_000, (i * 7) % 10_000),
        "note": "Gia đình được tư vấn về sinh đẻ an toàn",
        "members": members,
        "meta/instanceID": id,
    });
    let xml = format!("<data id=\"household_visit\" version=\"1\">{fields}</data>").into_bytes();
    Incoming {
        identity: fieldtally_forms::Identity {
            form_id: "household_visit".into(),
            version: "1".into(),
            instance_id: id,
            deprecated_id: None,
            instance_name: None,
            encrypted: false,
        },
        fields_json: fields.to_string(),
        derived: Derived {
            hamlet_code: None,
            activity_date: Some(date),
            beneficiary_key: None,
            sensitive: None,
            flags: Vec::new(),
        },
        geopoint: None,
        expected: Vec::new(),
        xml_sha256: {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&xml))
        },
        xml,
        collector_id: collector,
        device_id: None,
        files: Vec::new(),
        received_at: Utc::now().naive_utc(),
        consent: None,
    }
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data_dir: &std::path::Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fieldtally"))
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--workers", "2"])
            .env("FIELDTALLY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fieldtally");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the server stopped before listening")
                .expect("stdout");
            if let Some(addr) = line.strip_prefix("fieldtally listening on ") {
                break addr.trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Server { child, base }
    }

    /// A figure from /proc/PID/status, in MiB.
    fn memory(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn export(server: &Server, body: Value) -> (Duration, Value) {
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{}/api/v1/auth/token", server.base))
        .json(&json!({ "username": "admin", "password": PASSWORD }))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    let token = token["access_token"].as_str().expect("token").to_string();
    let t = Instant::now();
    let job: Value = http
        .post(format!("{}/api/v1/exports", server.base))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .expect("create export")
        .json()
        .await
        .expect("job");
    let id = job["id"].as_str().expect("job id").to_string();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let job: Value = http
            .get(format!("{}/api/v1/exports/{id}", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("progress")
            .json()
            .await
            .expect("job");
        if job["status"] == "done" || job["status"] == "failed" {
            return (t.elapsed(), job);
        }
    }
}

#[tokio::main]
async fn main() {
    let n = submissions_wanted();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "sqlite://{}",
        dir.path().join("fieldtally.sqlite3").display()
    );
    println!("export benchmark: {n} submissions on SQLite");
    let t = Instant::now();
    {
        let (_, mut conn) = db::connect(&url).expect("database");
        let admin = NewUser::prepare("admin", PASSWORD, Role::Admin).expect("admin");
        let collector = NewUser::prepare("bench", "bench-password", Role::Collector).expect("user");
        let collector = tx(&mut conn, |c| {
            fieldtally::areas::shipped::load(c)?;
            for (_, xml) in fieldtally_forms::shipped::FORMS {
                fieldtally::forms::add_version(c, xml, true)?;
            }
            fieldtally::forms::add_version(c, FORM.as_bytes(), true)?;
            users::create(c, &admin)?;
            Ok(users::create(c, &collector)?.id)
        });
        let start = NaiveDate::from_ymd_opt(2025, 1, 1).expect("date");
        let mut done = 0;
        while done < n {
            let batch: Vec<Incoming> = (done..(done + BATCH).min(n))
                .map(|i| incoming(i, collector, start))
                .collect();
            // As the server's writer stores the submissions of one batch.
            tx(&mut conn, |c| {
                let incs: Vec<&Incoming> = batch.iter().collect();
                submissions::store_all(c, &incs).map(|_| ())
            });
            done += batch.len();
        }
    }
    println!(
        "stored {n} submissions in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let repeat_rows: usize = (0..n).map(|i| i % 4).sum();
    for (format, body) in [
        (
            "CSV zip",
            json!({ "form": "household_visit", "format": "csv", "lang": "vi" }),
        ),
        (
            "XLSX",
            json!({ "form": "household_visit", "format": "xlsx", "lang": "vi" }),
        ),
        (
            "GeoJSON",
            json!({ "form": "household_visit", "format": "geojson" }),
        ),
    ] {
        let server = Server::start(dir.path());
        let idle = server.memory("VmRSS:");
        let (elapsed, job) = export(&server, body).await;
        let peak = server.memory("VmHWM:");
        assert_eq!(job["status"], "done", "{job}");
        let size = job["file_size"].as_f64().unwrap_or(0.0) / 1024.0 / 1024.0;
        // CSV and XLSX write a row per submission and one per repeat member; GeoJSON a feature
        // per submission.
        let rows = if format == "GeoJSON" {
            n
        } else {
            n + repeat_rows
        };
        println!(
            "{format}: {n} submissions ({rows} rows) in {:.1} s = {:.0} submissions/s, {:.0} rows/s; file {size:.1} MiB; server RSS idle {idle:.0} MiB, peak {peak:.0} MiB",
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64(),
            rows as f64 / elapsed.as_secs_f64(),
        );
    }
}
