//! Shared end-to-end test support: start the real `fieldtally` binary on a free port (SQLite in a
//! temporary folder, or a fresh PostgreSQL database when `FIELDTALLY_TEST_POSTGRES` is set) and
//! talk to it over HTTP as ODK Collect and the admin API's users do.
#![allow(dead_code)]

pub mod collect;
pub mod photos;
pub mod raw;
pub mod tools;
pub mod web;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::{json, Value};

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(path: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(path)
}

/// Where the server under test keeps its data.
pub enum Backend {
    Sqlite,
    Postgres { url: String },
}

static DB_COUNTER: AtomicU32 = AtomicU32::new(0);

fn fresh_postgres_database(base: &str) -> String {
    let name = format!(
        "fieldtally_test_{}_{}",
        std::process::id(),
        DB_COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let admin_url = format!("{}/postgres", base.trim_end_matches('/'));
    let mut conn = PgConnection::establish(&admin_url)
        .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at {admin_url}: {e}"));
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut conn)
        .expect("drop test database");
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .expect("create test database");
    format!("{}/{name}", base.trim_end_matches('/'))
}

impl Backend {
    pub fn from_env() -> Backend {
        match std::env::var("FIELDTALLY_TEST_POSTGRES") {
            Ok(base) if !base.is_empty() => Backend::Postgres {
                url: fresh_postgres_database(&base),
            },
            _ => Backend::Sqlite,
        }
    }
}

/// A running server; killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub dir: tempfile::TempDir,
    /// Where the data lives: `dir`, or the first server's folder for a second instance.
    data_dir: PathBuf,
    database_url: Option<String>,
    extra_args: Vec<String>,
    pub stdout: Vec<String>,
    /// Whether dropping this server drops its PostgreSQL database (the first instance only).
    owns_database: bool,
    stdout_rx: Option<mpsc::Receiver<String>>,
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(&[]).await
    }

    /// Starts the server with extra `serve` arguments.
    pub async fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = match Backend::from_env() {
            Backend::Sqlite => None,
            Backend::Postgres { url } => Some(url),
        };
        let data_dir = dir.path().to_path_buf();
        let mut server = Server {
            child: None,
            base: String::new(),
            dir,
            data_dir,
            database_url,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            stdout: Vec::new(),
            owns_database: true,
            stdout_rx: None,
        };
        server.spawn();
        server
    }

    /// A second server instance on the same database and data folder as `first`, as two
    /// machines behind one load balancer would run.
    pub async fn start_sharing(first: &Server, extra: &[&str]) -> Server {
        let mut server = Server {
            child: None,
            base: String::new(),
            dir: tempfile::tempdir().expect("temp dir"),
            data_dir: first.data_dir.clone(),
            database_url: first.database_url.clone(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            stdout: Vec::new(),
            owns_database: false,
            stdout_rx: None,
        };
        server.spawn();
        server
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    pub fn database_args(&self) -> Vec<String> {
        let mut args = vec![
            "--data-dir".to_string(),
            self.data_dir.display().to_string(),
        ];
        if let Some(url) = &self.database_url {
            args.push("--database-url".into());
            args.push(url.clone());
        }
        args
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fieldtally"));
        cmd.arg("serve")
            .args(self.database_args())
            .args(["--listen", "127.0.0.1:0", "--workers", "2"])
            .args(&self.extra_args)
            .env("FIELDTALLY_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("FIELDTALLY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start fieldtally");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(120))
                .expect("the server did not say where it listens");
            self.stdout.push(line.clone());
            if let Some(addr) = line.strip_prefix("fieldtally listening on ") {
                self.base = addr.trim().to_string();
                break;
            }
        }
        self.child = Some(child);
        self.stdout_rx = Some(rx);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM, as a service manager stopping the server does.
    pub fn terminate(&self) {
        // SAFETY: kill(2) with a child's pid and a valid signal number has no memory effects.
        let rc = unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill -TERM");
    }

    /// Waits for the server to exit by itself; returns its exit status and what it printed.
    pub fn wait_exit(&mut self) -> (std::process::ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("running");
        let status = child.wait().expect("wait");
        let lines = self
            .stdout_rx
            .take()
            .map(|rx| rx.try_iter().collect())
            .unwrap_or_default();
        (status, lines)
    }

    /// Starts the server again on the same data after it stopped.
    pub fn restart(&mut self) {
        self.kill();
        self.stdout.clear();
        self.spawn();
    }

    /// Kills the server with SIGKILL, as a power cut would, and starts it again on the same data.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.stdout.clear();
        self.spawn();
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Runs a `fieldtally` subcommand against this server's database.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fieldtally"));
        cmd.args(args)
            .args(self.database_args())
            .env("FIELDTALLY_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run fieldtally");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        } else {
            drop(child.stdin.take());
        }
        child.wait_with_output().expect("fieldtally output")
    }

    pub async fn admin(&self) -> Admin {
        Admin::login(self, "admin", ADMIN_PASSWORD).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if !self.owns_database {
            return;
        }
        if let (Some(url), Ok(base)) = (
            &self.database_url,
            std::env::var("FIELDTALLY_TEST_POSTGRES"),
        ) {
            let name = url.rsplit('/').next().unwrap_or_default().to_string();
            let admin_url = format!("{}/postgres", base.trim_end_matches('/'));
            if let Ok(mut conn) = PgConnection::establish(&admin_url) {
                let _ =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}")).execute(&mut conn);
            }
        }
    }
}

/// A REST API client with an access token.
pub struct Admin {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Admin {
    pub async fn login(server: &Server, username: &str, password: &str) -> Admin {
        let http = reqwest::Client::new();
        let res = http
            .post(server.url("/api/v1/auth/token"))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .expect("token request");
        assert_eq!(res.status(), 200, "login as {username}");
        let body: Value = res.json().await.expect("token json");
        assert_eq!(body["token_type"], "Bearer");
        Admin {
            http,
            base: server.base.clone(),
            token: body["access_token"].as_str().expect("token").to_string(),
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .delete(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub async fn json(&self, path: &str) -> Value {
        let res = self.get(path).send().await.expect("GET");
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.expect("json")
    }

    /// Uploads an XForm; returns the status and body.
    pub async fn upload_form(&self, xml: &[u8], publish: bool) -> (u16, Value) {
        let res = self
            .post(&format!("/api/v1/forms?publish={publish}"))
            .header("content-type", "text/xml")
            .body(xml.to_vec())
            .send()
            .await
            .expect("upload form");
        let status = res.status().as_u16();
        (status, res.json().await.expect("json"))
    }

    pub async fn create_user(&self, username: &str, password: &str, role: &str) {
        let res = self
            .post("/api/v1/users")
            .json(&json!({ "username": username, "password": password, "role": role }))
            .send()
            .await
            .expect("create user");
        assert_eq!(res.status(), 201, "create user {username}");
    }

    /// Every submission, following cursors.
    pub async fn all_submissions(&self, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/submissions?limit=1000{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.json(&path).await;
            out.extend(
                page["submissions"]
                    .as_array()
                    .expect("array")
                    .iter()
                    .cloned(),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }
}

/// Runs a query on the server's database directly, as an attacker with a copy of the database
/// (or an operator with a shell) would.
fn raw_rows<T>(server: &Server, sql: &str) -> Vec<T>
where
    T: diesel::QueryableByName<diesel::pg::Pg> + diesel::QueryableByName<diesel::sqlite::Sqlite>,
    T: 'static,
{
    match server.database_url() {
        Some(url) => {
            let mut c = PgConnection::establish(url).expect("connect");
            diesel::sql_query(sql).load(&mut c).expect("query")
        }
        None => {
            let path = server.data_dir().join("fieldtally.sqlite3");
            let mut c =
                diesel::SqliteConnection::establish(&path.display().to_string()).expect("open");
            diesel::sql_query(sql).load(&mut c).expect("query")
        }
    }
}

/// Runs a query returning one BLOB/BYTEA column `b` on the server's database directly.
pub fn raw_bytes(server: &Server, sql: &str) -> Vec<Vec<u8>> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Binary)]
        b: Vec<u8>,
    }
    raw_rows::<Row>(server, sql)
        .into_iter()
        .map(|r| r.b)
        .collect()
}

/// The server's `/metrics` text, fetched without a token.
pub async fn metrics_text(server: &Server) -> String {
    reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// Runs a query returning one count `n` on the server's database directly.
pub fn raw_count(server: &Server, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    raw_rows::<Row>(server, sql).first().map_or(0, |r| r.n)
}

/// Files in the server's blob store.
pub fn blob_count(server: &Server) -> usize {
    let root = server.data_dir().join("blobs");
    std::fs::read_dir(&root)
        .map(|dirs| {
            dirs.filter_map(Result::ok)
                .map(|d| std::fs::read_dir(d.path()).map(|f| f.count()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// Files in the server's upload temporaries folder.
pub fn temp_count(server: &Server) -> usize {
    std::fs::read_dir(server.data_dir().join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(bytes))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The text of the first `<message>` in an OpenRosaResponse.
pub fn openrosa_message(body: &str) -> String {
    let doc = roxmltree::Document::parse(body).expect("OpenRosaResponse XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "OpenRosaResponse");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://openrosa.org/http/response")
    );
    root.children()
        .find(|n| n.has_tag_name("message"))
        .and_then(|n| n.text())
        .unwrap_or_default()
        .to_string()
}

pub fn new_instance_id() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "uuid:{}-{}-4{}-8{}-{}",
        hex::encode(&b[0..4]),
        hex::encode(&b[4..6]),
        &hex::encode(&b[6..8])[1..],
        &hex::encode(&b[8..10])[1..],
        hex::encode(&b[10..16])
    )
}

/// An `all_features` instance shaped exactly like JavaRosa's serialization of it.
pub fn all_features_instance(
    instance_id: &str,
    deprecated_id: Option<&str>,
    respondent: &str,
    household_size: u32,
    photo: Option<&str>,
) -> Vec<u8> {
    let photo = match photo {
        Some(p) => format!("<photo>{p}</photo>"),
        None => "<photo />".to_string(),
    };
    let deprecated = deprecated_id
        .map(|d| format!("<deprecatedID>{d}</deprecatedID>"))
        .unwrap_or_default();
    format!(
        "<?xml version='1.0' encoding='UTF-8' ?><data id=\"all_features\" version=\"2025040301\" xmlns:orx=\"http://openrosa.org/xforms\" xmlns:jr=\"http://openrosa.org/javarosa\"><start>2025-04-03T08:00:00.000+07:00</start><end>2025-04-03T08:10:00.000+07:00</end><start_geopoint /><intro /><household><respondent_name>{respondent}</respondent_name><province>hcm</province><water_sources>tap rain</water_sources><household_size>{household_size}</household_size><monthly_income>12.5</monthly_income><visit_date>2025-04-03</visit_date></household><members><member_name>A</member_name><member_age>42</member_age></members><members><member_name>B</member_name><member_age>39</member_age></members><location>21.3256 103.9188 650.0 8.5</location><route>21.3 103.9 0.0 5.0; 21.31 103.91 0.0 5.0</route><plot>21.3 103.9 0.0 5.0; 21.31 103.91 0.0 5.0; 21.32 103.9 0.0 5.0; 21.3 103.9 0.0 5.0</plot>{photo}<meta><instanceID>{instance_id}</instanceID><instanceName>{respondent} - 2025-04-03</instanceName>{deprecated}</meta></data>"
    )
    .into_bytes()
}

/// A `two_photos` instance (a form with two image questions, for split uploads).
pub fn two_photos_instance(instance_id: &str, note: &str) -> Vec<u8> {
    format!(
        "<?xml version='1.0' encoding='UTF-8' ?><data id=\"two_photos\" version=\"2025040301\" xmlns:orx=\"http://openrosa.org/xforms\"><note_text>{note}</note_text><photo_a>a.jpg</photo_a><photo_b>b.jpg</photo_b><location>21.1 103.8 0.0 12.0</location><meta><instanceID>{instance_id}</instanceID></meta></data>"
    )
    .into_bytes()
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

/// A server with the `all_features` and `two_photos` test forms published and a collector.
pub async fn server_with_forms() -> (Server, Admin) {
    server_with_forms_and(&[]).await
}

/// [`server_with_forms`], the server started with `extra` arguments.
pub async fn server_with_forms_and(extra: &[&str]) -> (Server, Admin) {
    let server = Server::start_with(extra).await;
    let admin = server.admin().await;
    for f in ["forms/all_features.xml", "forms/two_photos.xml"] {
        let xml = std::fs::read(fixture(f)).expect("fixture");
        let (status, _) = admin.upload_form(&xml, true).await;
        assert_eq!(status, 201);
    }
    admin
        .create_user("lan", "lan-password-1", "collector")
        .await;
    (server, admin)
}

pub fn collector(server: &Server) -> collect::Collect {
    collect::Collect::with_password(&server.base, "lan", "lan-password-1")
}

/// A shipped `policy_dialogue` submission (counted by indicator P8-08) as Collect sends it.
pub struct Dialogue<'a> {
    pub id: &'a str,
    pub deprecated: Option<&'a str>,
    pub hamlet: &'a str,
    pub date: &'a str,
    pub level: &'a str,
    pub total: u32,
    pub women: u32,
    pub photo: Option<&'a str>,
}

impl<'a> Dialogue<'a> {
    /// A commune-level dialogue on 10 August 2025 with 20 participants, 10 of them women.
    pub fn new(id: &'a str, hamlet: &'a str) -> Dialogue<'a> {
        Dialogue {
            id,
            deprecated: None,
            hamlet,
            date: "2025-08-10",
            level: "commune",
            total: 20,
            women: 10,
            photo: None,
        }
    }

    pub fn xml(&self) -> Vec<u8> {
        let deprecated = self
            .deprecated
            .map(|d| format!("<deprecatedID>{d}</deprecatedID>"))
            .unwrap_or_default();
        let photo = match self.photo {
            Some(p) => format!("<attendance_photo>{p}</attendance_photo>"),
            None => "<attendance_photo />".to_string(),
        };
        let Dialogue {
            id,
            hamlet,
            date,
            level,
            total,
            women,
            ..
        } = self;
        format!(
            "<?xml version='1.0' encoding='UTF-8' ?><data id=\"policy_dialogue\" version=\"2025040301\" xmlns:orx=\"http://openrosa.org/xforms\"><start>2025-07-10T08:00:00.000+07:00</start><end>2025-07-10T09:00:00.000+07:00</end><start_location /><hamlet>{hamlet}</hamlet><activity_date>{date}</activity_date><level>{level}</level><topic>gender_equality</topic><topic_other /><chair>Chủ tịch UBND xã</chair><participants_total>{total}</participants_total><participants_women>{women}</participants_women><participants_ethnic_minority>10</participants_ethnic_minority><participants_children>0</participants_children><issues_raised>Nước sạch</issues_raised><commitments /><location>21.0 103.5 600.0 5.0</location>{photo}<attendance_photo_2 /><meta><instanceID>{id}</instanceID>{deprecated}</meta></data>"
        )
        .into_bytes()
    }
}

/// A server with the shipped forms, the demo hamlets (`data/sonla/demo-hamlets.csv`) and the
/// collector `lan`.
pub async fn server_with_hamlets() -> (Server, Admin) {
    server_with_hamlets_and(&[]).await
}

/// [`server_with_hamlets`] with extra server arguments.
pub async fn server_with_hamlets_and(extra: &[&str]) -> (Server, Admin) {
    let server = Server::start_with(extra).await;
    let hamlets = repo_root().join("data/sonla/demo-hamlets.csv");
    let out = server.cli(&["areas", "import", &hamlets.display().to_string()], None);
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = server.admin().await;
    admin
        .create_user("lan", "lan-password-1", "collector")
        .await;
    (server, admin)
}

/// The `participants` figure of a values answer (0 when the table has no such row).
pub fn participants(table: &Value) -> f64 {
    table["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["measure"] == "participants")
        .and_then(|r| r["value"].as_f64())
        .unwrap_or(0.0)
}

/// Runs `fieldtally indicators verify`: the maintained figures must equal a full recompute.
pub fn assert_figures_equal_recompute(server: &Server) {
    let out = server.cli(&["indicators", "verify"], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("equal a full recompute"), "{stdout}");
}
