//! The load generator: phones uploading, refreshing their form lists, officers reading the
//! indicator table and pulling submissions, against a fieldtally server it starts itself on a
//! temporary database (SQLite, or PostgreSQL with --database-url) or one already running
//! (--target). Prints submissions/s, p50/p99 latency, errors, and the server's peak RSS and CPU.
//!
//! ```sh
//! cargo build --release -p fieldtally -p fieldtally-bench
//! target/release/loadgen --devices 1,8,64,500 --duration 20
//! target/release/loadgen --database-url postgres://postgres@127.0.0.1:5432 --scenarios submit
//! target/release/loadgen --smoke        # a few seconds, as CI runs it
//! ```

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use fieldtally_bench::phone::{Attachment, Phone};
use fieldtally_bench::{jpeg_of_size, large_form_xml, large_template, shipped_templates, Template};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    about = "Load generator for fieldtally: phones, form-list storms, indicator queries, pulls"
)]
struct Args {
    /// The server binary to start (default: the release build beside this binary).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// PostgreSQL server URL (postgres://user@host:port); a fresh database is created on it.
    /// Without it the started server uses SQLite in a temporary folder.
    #[arg(long)]
    database_url: Option<String>,
    /// Test a running server at this URL instead of starting one.
    #[arg(long)]
    target: Option<String>,
    /// Admin password of the --target server.
    #[arg(
        long,
        env = "FIELDTALLY_ADMIN_PASSWORD",
        default_value = "bench-admin-password"
    )]
    admin_password: String,
    /// The server's pid, to sample its memory and CPU when using --target.
    #[arg(long)]
    pid: Option<u32>,
    /// Concurrent devices, one run per number.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,500")]
    devices: Vec<usize>,
    /// Seconds each run lasts.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Which runs: submit, photo, large, large-photo, formlist, indicators, mixed (phones
    /// submitting while four officers read indicator tables), pull.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "submit,photo,large,large-photo,formlist,indicators,mixed,pull"
    )]
    scenarios: Vec<String>,
    /// Repeat each submission run this many times, to see whether the rate holds as the
    /// database grows.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Size of the photo in bytes.
    #[arg(long, default_value_t = 150_000)]
    photo_bytes: usize,
    /// HTTP worker threads of the started server.
    #[arg(long)]
    workers: Option<usize>,
    /// A run of a few seconds with few devices, checking that every request succeeds (for CI).
    #[arg(long)]
    smoke: bool,
}

const COLLECTORS: usize = 16;
const COLLECTOR_PASSWORD: &str = "bench-collector-password";

/// A server this program started; killed when dropped.
struct Started {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn default_server_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("fieldtally")))
        .unwrap_or_else(|| PathBuf::from("target/release/fieldtally"))
}

fn fresh_postgres(base: &str) -> anyhow::Result<String> {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let name = format!("fieldtally_bench_{}", std::process::id());
    let base = base.trim_end_matches('/');
    let mut conn = PgConnection::establish(&format!("{base}/postgres"))
        .context("cannot connect to PostgreSQL")?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}")).execute(&mut conn)?;
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn)?;
    Ok(format!("{base}/{name}"))
}

/// The shipped registry stops at communes; the submissions name the demo hamlets, which must be
/// known for them to count in the indicators, as a province's own hamlets would.
fn import_demo_hamlets(
    bin: &std::path::Path,
    data_dir: &std::path::Path,
    database_url: Option<&str>,
) -> anyhow::Result<()> {
    let hamlets =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sonla/demo-hamlets.csv");
    let mut cmd = Command::new(bin);
    cmd.args(["areas", "import"])
        .arg(&hamlets)
        .arg("--data-dir")
        .arg(data_dir)
        .env("FIELDTALLY_LOG", "warn");
    if let Some(url) = database_url {
        cmd.arg("--database-url").arg(url);
    }
    let out = cmd.output().context("cannot run fieldtally areas import")?;
    if !out.status.success() {
        bail!(
            "importing the demo hamlets failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn start_server(args: &Args) -> anyhow::Result<(Started, String, u32, Duration)> {
    let dir = tempfile::tempdir()?;
    let bin = args.server_bin.clone().unwrap_or_else(default_server_bin);
    let database_url = args
        .database_url
        .as_deref()
        .map(fresh_postgres)
        .transpose()?;
    import_demo_hamlets(&bin, dir.path(), database_url.as_deref())?;
    let mut cmd = Command::new(&bin);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .env("FIELDTALLY_ADMIN_PASSWORD", &args.admin_password)
        .env("FIELDTALLY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(w) = args.workers {
        cmd.args(["--workers", &w.to_string()]);
    }
    if let Some(url) = &database_url {
        cmd.arg("--database-url").arg(url);
    }
    let started_at = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let pid = child.id();
    let stdout = child.stdout.take().context("server stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(addr) = line.strip_prefix("fieldtally listening on ") {
                    break addr.trim().to_string();
                }
            }
            _ => bail!("the server exited before listening"),
        }
    };
    let startup = started_at.elapsed();
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Ok((Started { child, _dir: dir }, base, pid, startup))
}

/// Peak RSS and CPU of the server process, sampled from /proc while a run goes on.
struct Sampler {
    peak_rss_kb: AtomicU64,
    stop: AtomicBool,
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// What one run measured.
#[derive(Default)]
struct Tally {
    latencies_us: Mutex<Vec<u64>>,
    ok: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn record(&self, started: Instant) {
        self.ok.fetch_add(1, Ordering::Relaxed);
        let us = started.elapsed().as_micros() as u64;
        if let Ok(mut l) = self.latencies_us.lock() {
            l.push(us);
        }
    }

    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.first_error.lock() {
            e.get_or_insert(what);
        }
    }
}

struct Report {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_mb: f64,
    cpu_percent: f64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Runs `devices` copies of `work` until `duration` is over, sampling the server meanwhile.
async fn measure<F, Fut>(pid: Option<u32>, devices: usize, duration: Duration, work: F) -> Report
where
    F: Fn(usize, Instant, Arc<Tally>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tally = Arc::new(Tally::default());
    let sampler = Arc::new(Sampler {
        peak_rss_kb: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let cpu_start = pid.and_then(cpu_ticks);
    let sampling = pid.map(|pid| {
        let s = sampler.clone();
        tokio::spawn(async move {
            while !s.stop.load(Ordering::Relaxed) {
                if let Some(kb) = rss_kb(pid) {
                    s.peak_rss_kb.fetch_max(kb, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..devices)
        .map(|d| tokio::spawn(work(d, deadline, tally.clone())))
        .collect();
    for t in tasks {
        if let Err(e) = t.await {
            tally.error(format!("device task failed: {e}"));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    sampler.stop.store(true, Ordering::Relaxed);
    if let Some(s) = sampling {
        let _ = s.await;
    }
    let cpu = match (pid.and_then(cpu_ticks), cpu_start) {
        (Some(end), Some(start)) => (end - start) as f64 / clock_ticks() as f64 / elapsed * 100.0,
        _ => 0.0,
    };
    let mut lat = tally
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    lat.sort_unstable();
    let ok = tally.ok.load(Ordering::Relaxed);
    Report {
        ok,
        errors: tally.errors.load(Ordering::Relaxed),
        first_error: tally.first_error.lock().ok().and_then(|e| e.clone()),
        rate: ok as f64 / elapsed,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        peak_rss_mb: sampler.peak_rss_kb.load(Ordering::Relaxed) as f64 / 1024.0,
        cpu_percent: cpu,
    }
}

fn print_header() {
    println!(
        "{:<14} {:>7} {:>9} {:>10} {:>9} {:>9} {:>7} {:>9} {:>7}  loadavg",
        "scenario", "devices", "ok", "per s", "p50 ms", "p99 ms", "errors", "RSS MB", "CPU %"
    );
}

fn print_report(name: &str, devices: usize, r: &Report) {
    println!(
        "{:<14} {:>7} {:>9} {:>10.0} {:>9.1} {:>9.1} {:>7} {:>9.1} {:>7.0}  {}",
        name,
        devices,
        r.ok,
        r.rate,
        r.p50_ms,
        r.p99_ms,
        r.errors,
        r.peak_rss_mb,
        r.cpu_percent,
        loadavg()
    );
    if let Some(e) = &r.first_error {
        println!("    first error: {e}");
    }
}

struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    async fn login(base: &str, password: &str) -> anyhow::Result<Admin> {
        let http = reqwest::Client::new();
        let res = http
            .post(format!("{base}/api/v1/auth/token"))
            .json(&json!({ "username": "admin", "password": password }))
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("admin login failed: {}", res.status());
        }
        let body: Value = res.json().await?;
        let token = body["access_token"]
            .as_str()
            .context("no access token")?
            .to_string();
        Ok(Admin {
            http,
            base: base.to_string(),
            token,
        })
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }
}

/// Collectors and the 250-question form; both may already exist on a --target server.
async fn prepare(admin: &Admin) -> anyhow::Result<()> {
    for i in 0..COLLECTORS {
        let res = admin
            .post("/api/v1/users")
            .json(&json!({ "username": format!("bench{i:02}"), "password": COLLECTOR_PASSWORD, "role": "collector" }))
            .send()
            .await?;
        if !(res.status().is_success() || res.status() == 409) {
            bail!(
                "cannot create collector: {} {}",
                res.status(),
                res.text().await?
            );
        }
    }
    let res = admin
        .post("/api/v1/forms?publish=true")
        .header("content-type", "text/xml")
        .body(large_form_xml())
        .send()
        .await?;
    if !(res.status().is_success() || res.status() == 409) {
        bail!(
            "cannot upload the 250-question form: {} {}",
            res.status(),
            res.text().await?
        );
    }
    Ok(())
}

fn phone_for(base: &str, device: usize) -> anyhow::Result<Phone> {
    Phone::new(
        base,
        &format!("bench{:02}", device % COLLECTORS),
        COLLECTOR_PASSWORD,
        device,
    )
}

/// Phones submitting filled forms in a loop: HEAD every 20 submissions, as Collect does once per
/// upload session, then a POST per instance.
async fn submit_run(
    base: &str,
    pid: Option<u32>,
    devices: usize,
    duration: Duration,
    templates: Arc<Vec<Template>>,
    photo: Option<Arc<Vec<u8>>>,
) -> Report {
    let counter = Arc::new(AtomicU64::new(0));
    measure(pid, devices, duration, |device, deadline, tally| {
        let (base, templates, photo, counter) = (
            base.to_string(),
            templates.clone(),
            photo.clone(),
            counter.clone(),
        );
        async move {
            let mut phone = match phone_for(&base, device) {
                Ok(p) => p,
                Err(e) => return tally.error(format!("client: {e}")),
            };
            let mut sent = 0u64;
            while Instant::now() < deadline {
                if sent.is_multiple_of(20) {
                    match phone.head_submission().await {
                        Ok(r) if r.status() == 204 => {}
                        Ok(r) => tally.error(format!("HEAD: {}", r.status())),
                        Err(e) => tally.error(format!("HEAD: {e}")),
                    }
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = &templates[(n as usize) % templates.len()];
                let filled = t.fill(n, photo.is_some());
                let files: Vec<Attachment> = match (&filled.photo_name, &photo) {
                    (Some(name), Some(bytes)) => vec![Attachment {
                        name: name.clone(),
                        bytes: bytes.to_vec(),
                    }],
                    _ => Vec::new(),
                };
                let started = Instant::now();
                match phone.submit(&filled.xml, &files).await {
                    Ok(r) if r.status() == 201 => tally.record(started),
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        tally.error(format!(
                            "POST: {status} {}",
                            body.chars().take(300).collect::<String>()
                        ))
                    }
                    Err(e) => tally.error(format!("POST: {e}")),
                }
                sent += 1;
            }
        }
    })
    .await
}

fn manifest_urls(form_list: &str) -> Vec<String> {
    form_list
        .split("<manifestUrl>")
        .skip(1)
        .filter_map(|s| {
            s.split_once("</manifestUrl>")
                .map(|(u, _)| u.replace("&amp;", "&"))
        })
        .collect()
}

/// Every phone refreshing its form list and each form's manifest, as after "Get blank forms".
async fn formlist_run(
    base: &str,
    pid: Option<u32>,
    devices: usize,
    duration: Duration,
) -> (Report, Report) {
    let manifests = Arc::new(Tally::default());
    let m = manifests.clone();
    let list = measure(pid, devices, duration, move |device, deadline, tally| {
        let (base, manifests) = (base.to_string(), m.clone());
        async move {
            let mut phone = match phone_for(&base, device) {
                Ok(p) => p,
                Err(e) => return tally.error(format!("client: {e}")),
            };
            while Instant::now() < deadline {
                let started = Instant::now();
                let text = match phone.get("/formList").await {
                    Ok(r) if r.status() == 200 => {
                        let text = r.text().await.unwrap_or_default();
                        tally.record(started);
                        text
                    }
                    Ok(r) => {
                        tally.error(format!("formList: {}", r.status()));
                        continue;
                    }
                    Err(e) => {
                        tally.error(format!("formList: {e}"));
                        continue;
                    }
                };
                for url in manifest_urls(&text) {
                    let started = Instant::now();
                    match phone.get(&url).await {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                            manifests.record(started)
                        }
                        Ok(r) => manifests.error(format!("manifest: {}", r.status())),
                        Err(e) => manifests.error(format!("manifest: {e}")),
                    }
                }
            }
        }
    })
    .await;
    let mut lat = manifests
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    lat.sort_unstable();
    let ok = manifests.ok.load(Ordering::Relaxed);
    let manifest = Report {
        ok,
        errors: manifests.errors.load(Ordering::Relaxed),
        first_error: manifests.first_error.lock().ok().and_then(|e| e.clone()),
        rate: ok as f64 / duration.as_secs_f64(),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        peak_rss_mb: list.peak_rss_mb,
        cpu_percent: list.cpu_percent,
    };
    (list, manifest)
}

/// Officers reading the province's indicator table (by commune, by ethnicity) at once.
async fn indicators_run(
    admin: Arc<Admin>,
    pid: Option<u32>,
    clients: usize,
    duration: Duration,
) -> Report {
    const QUERIES: [&str; 3] = [
        "/api/v1/indicators/values?period=2025&level=commune",
        "/api/v1/indicators/values?period=2025&level=commune&indicator=P8-08&by=dialogue_level",
        "/api/v1/indicators/values?period=2025&area=04231",
    ];
    measure(pid, clients, duration, move |client, deadline, tally| {
        let admin = admin.clone();
        async move {
            let mut i = client;
            while Instant::now() < deadline {
                let started = Instant::now();
                match admin.get(QUERIES[i % QUERIES.len()]).send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        tally.record(started)
                    }
                    Ok(r) => {
                        let status = r.status();
                        tally.error(format!("{status} {}", r.text().await.unwrap_or_default()))
                    }
                    Err(e) => tally.error(e.to_string()),
                }
                i += 1;
            }
        }
    })
    .await
}

/// A full pull of every submission, page by page through the cursor, then incremental pulls of
/// what arrived since, as a reporting tool polls. Rates are rows per second.
async fn pull_run(admin: Arc<Admin>, pid: Option<u32>, duration: Duration) -> (Report, Report) {
    let a = admin.clone();
    let full = measure(pid, 1, Duration::ZERO, move |_, _, tally| {
        let admin = a.clone();
        async move {
            let mut cursor: Option<String> = None;
            loop {
                let mut path = "/api/v1/submissions?limit=1000".to_string();
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={c}"));
                }
                let started = Instant::now();
                let page: Value = match admin.get(&path).send().await {
                    Ok(r) if r.status() == 200 => match r.json().await {
                        Ok(v) => v,
                        Err(e) => return tally.error(e.to_string()),
                    },
                    Ok(r) => return tally.error(format!("{}", r.status())),
                    Err(e) => return tally.error(e.to_string()),
                };
                let rows = page["submissions"].as_array().map_or(0, Vec::len);
                for _ in 0..rows {
                    tally.record(started);
                }
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => return,
                }
            }
        }
    })
    .await;
    let incremental = measure(pid, 1, duration, move |_, deadline, tally| {
        let admin = admin.clone();
        async move {
            let mut since = chrono_now_rfc3339();
            while Instant::now() < deadline {
                let started = Instant::now();
                let next = chrono_now_rfc3339();
                match admin
                    .get(&format!("/api/v1/submissions?limit=1000&since={since}"))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        tally.record(started);
                        since = next;
                    }
                    Ok(r) => tally.error(format!("{}", r.status())),
                    Err(e) => tally.error(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
    .await;
    (full, incremental)
}

fn chrono_now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.devices = vec![1, 8];
        args.duration = 1;
        args.rounds = 1;
    }
    let (server, base, pid, startup) = match &args.target {
        Some(t) => (None, t.trim_end_matches('/').to_string(), args.pid, None),
        None => {
            let (s, base, pid, startup) = start_server(&args)?;
            (Some(s), base, Some(pid), Some(startup))
        }
    };
    println!(
        "fieldtally load generator: server {base} ({}), {} cores, loadavg {}",
        if args.database_url.is_some() {
            "PostgreSQL"
        } else if args.target.is_some() {
            "running"
        } else {
            "SQLite"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    if let Some(s) = startup {
        println!(
            "start-up (spawn to listening, fresh database): {:.0} ms",
            s.as_secs_f64() * 1000.0
        );
    }
    let admin = Arc::new(Admin::login(&base, &args.admin_password).await?);
    prepare(&admin).await?;
    let shipped = Arc::new(shipped_templates()?);
    let with_photo: Arc<Vec<Template>> = Arc::new(
        shipped
            .iter()
            .filter(|t| t.photo_field.is_some())
            .cloned()
            .collect(),
    );
    let large = Arc::new(vec![large_template()?]);
    let photo = Arc::new(jpeg_of_size(args.photo_bytes)?);
    println!(
        "photo: {} bytes JPEG; shipped forms with a photo question: {}",
        photo.len(),
        with_photo.len()
    );
    let duration = Duration::from_secs(args.duration);
    print_header();
    let mut failures = 0u64;
    for scenario in args.scenarios.clone() {
        for &devices in &args.devices {
            let rounds = if matches!(
                scenario.as_str(),
                "submit" | "photo" | "large" | "large-photo"
            ) {
                args.rounds
            } else {
                1
            };
            for _ in 0..rounds {
                match scenario.as_str() {
                    "submit" | "photo" | "large" | "large-photo" => {
                        let (templates, photo) = match scenario.as_str() {
                            "submit" => (shipped.clone(), None),
                            "photo" => (with_photo.clone(), Some(photo.clone())),
                            "large" => (large.clone(), None),
                            _ => (large.clone(), Some(photo.clone())),
                        };
                        let r = submit_run(&base, pid, devices, duration, templates, photo).await;
                        failures += r.errors + u64::from(r.ok == 0);
                        print_report(&scenario, devices, &r);
                    }
                    "formlist" => {
                        let (list, manifest) = formlist_run(&base, pid, devices, duration).await;
                        failures += list.errors + manifest.errors + u64::from(list.ok == 0);
                        print_report("formList", devices, &list);
                        print_report("manifest", devices, &manifest);
                    }
                    "indicators" => {
                        let r = indicators_run(admin.clone(), pid, devices.min(64), duration).await;
                        failures += r.errors + u64::from(r.ok == 0);
                        print_report("indicators", devices.min(64), &r);
                    }
                    "mixed" => {
                        let (phones, tables) = tokio::join!(
                            submit_run(&base, pid, devices, duration, shipped.clone(), None),
                            indicators_run(admin.clone(), None, 4, duration),
                        );
                        failures += phones.errors
                            + tables.errors
                            + u64::from(phones.ok == 0 || tables.ok == 0);
                        print_report("mixed submit", devices, &phones);
                        print_report("mixed tables", 4, &tables);
                    }
                    "pull" => {
                        let (full, incremental) = pull_run(admin.clone(), pid, duration).await;
                        failures += full.errors + incremental.errors;
                        print_report("pull rows", 1, &full);
                        print_report("pull since", 1, &incremental);
                    }
                    other => bail!("unknown scenario {other}"),
                }
            }
            if scenario == "pull" {
                break;
            }
        }
    }
    if let Some(pid) = pid {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(hwm) = status.lines().find(|l| l.starts_with("VmHWM:")) {
                println!(
                    "server peak RSS over the whole session: {}",
                    hwm.trim_start_matches("VmHWM:").trim()
                );
            }
        }
    }
    drop(server);
    if args.smoke && failures > 0 {
        bail!("the smoke run saw {failures} failures");
    }
    Ok(())
}
