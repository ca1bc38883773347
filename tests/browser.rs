//! The review page in a real browser: headless Chromium driven over WebDriver (chromedriver,
//! started here on a free port). Screenshots of the queue and the detail view at phone and
//! laptop widths are written to `target/screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Outside CI the
//! test skips loudly when they are missing; in CI (`CI=true`) it never skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::collect::Attachment;
use common::photos::phone_jpeg;
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(30);

/// chromedriver, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(res) = http.get(format!("{}/status", driver.url)).send().await {
            if res.status().is_success() {
                return driver;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let caps = json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1366,900",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!("an object")
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("WebDriver session")
}

/// Whether the browser tools are here; in CI they must be.
fn tools_present() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run the browser test: install chromium and chromium-driver"
        );
        eprintln!(
            "SKIPPED browser test: {CHROMIUM} or {CHROMEDRIVER} missing (apt-get install chromium chromium-driver)"
        );
    }
    present
}

fn screenshot_dir() -> PathBuf {
    let dir = repo_root().join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// Screenshots of the whole page at a width: the window is made as tall as the page.
async fn shoot(client: &Client, name: &str, width: u32, height: u32) {
    client.set_window_size(width, height).await.expect("size");
    // The window is taller than the page's viewport by the browser's own frame: grow it until
    // the viewport holds the whole page.
    let mut window = height;
    for _ in 0..3 {
        let missing = client
            .execute(
                "return document.documentElement.scrollHeight - window.innerHeight;",
                vec![],
            )
            .await
            .expect("height")
            .as_i64()
            .unwrap_or(0);
        if missing <= 0 {
            break;
        }
        window = (window + missing as u32).min(6000);
        client.set_window_size(width, window).await.expect("size");
    }
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("write screenshot");
    client.set_window_size(1366, 900).await.expect("size");
}

async fn sign_in(client: &Client, base: &str, user: &str, password: &str) {
    client
        .goto(&format!("{base}/ui/login"))
        .await
        .expect("login page");
    client
        .find(Locator::Css("#username"))
        .await
        .expect("user")
        .send_keys(user)
        .await
        .expect("type");
    client
        .find(Locator::Css("#password"))
        .await
        .expect("pw")
        .send_keys(password)
        .await
        .expect("type");
    client
        .find(Locator::Css("form button[type=submit]"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    if client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("header .who"))
        .await
        .is_err()
    {
        panic!(
            "not signed in: {}",
            client.source().await.unwrap_or_default()
        );
    }
}

async fn sign_out(client: &Client) {
    client
        .find(Locator::Css("header form button"))
        .await
        .expect("sign out")
        .click()
        .await
        .expect("click");
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#username"))
        .await
        .expect("signed out");
}

async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn a_reviewer_works_through_the_queue_in_a_real_browser() {
    if !tools_present() {
        return;
    }
    let (server, admin) = server_with_forms().await;
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
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The reviewer covers Sốp Cộp (04231), where the three household visits were made; the
    // other supervisor covers Mường Và (04243).
    for (name, area) in [("supervisor", "04231"), ("elsewhere", "04243")] {
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
    let mut ids = Vec::new();
    for (name, size) in [("Lò Thị Mai", 5), ("Cầm Thị Hoa", 4), ("Quàng Thị Ban", 6)] {
        let id = new_instance_id();
        let xml = String::from_utf8(all_features_instance(&id, None, name, size, Some("p.jpg")))
            .expect("utf8")
            .replace("<intro />", "<intro /><hamlet>DEMO-04231-1</hamlet>");
        let res = collector(&server)
            .submit(
                xml.as_bytes(),
                &[Attachment::jpeg("p.jpg", phone_jpeg())],
                false,
            )
            .await;
        assert_eq!(res.status(), 201);
        ids.push(id);
    }
    let other = new_instance_id();
    let res = collector(&server)
        .submit(&two_photos_instance(&other, "ghi chú"), &[], false)
        .await;
    assert_eq!(res.status(), 201);

    let driver = start_driver().await;
    let profile = tempfile::tempdir().expect("profile");
    let client = browser(&driver, profile.path()).await;
    let base = server.base.clone();

    // A supervisor of another commune sees none of these submissions, in the queue or by URL.
    sign_in(&client, &base, "elsewhere", "supervisor-password").await;
    assert!(
        client.find(Locator::Css("p.empty")).await.is_ok(),
        "empty queue"
    );
    assert!(client
        .find_all(Locator::Css("tr.row"))
        .await
        .expect("rows")
        .is_empty());
    client
        .goto(&format!("{base}/ui/s/{}", ids[0].replace(':', "%3A")))
        .await
        .expect("goto");
    assert!(text(&client, "p.error")
        .await
        .contains("no such submission"));
    client
        .goto(&format!("{base}/ui/queue"))
        .await
        .expect("queue");
    sign_out(&client).await;

    // The reviewer: the supervisor of Sốp Cộp sees the three visits made there, and not the
    // submission without a hamlet.
    sign_in(&client, &base, "supervisor", "supervisor-password").await;
    assert_eq!(text(&client, "h1").await, "Hàng chờ duyệt");
    assert_eq!(
        client
            .find_all(Locator::Css("tr.row"))
            .await
            .expect("rows")
            .len(),
        3
    );

    // Filter the queue to the three household forms still to review.
    client
        .find(Locator::Css("select[name=form]"))
        .await
        .expect("form filter")
        .select_by_value("all_features")
        .await
        .expect("select");
    client
        .find(Locator::Css("select[name=state]"))
        .await
        .expect("state filter")
        .select_by_value("received")
        .await
        .expect("select");
    client
        .find(Locator::Css("#filters button[type=submit]"))
        .await
        .expect("filter")
        .click()
        .await
        .expect("click");
    // After the reload the chosen option carries the `selected` attribute.
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(
            "select[name=state] option[value=received][selected]",
        ))
        .await
        .expect("filtered");
    let url = client.current_url().await.expect("url");
    assert!(
        url.query().is_some_and(|q| q.contains("form=all_features")),
        "{url}"
    );
    assert_eq!(
        client
            .find_all(Locator::Css("tr.row"))
            .await
            .expect("rows")
            .len(),
        3
    );
    shoot(&client, "queue-laptop", 1366, 900).await;
    shoot(&client, "queue-phone", 390, 844).await;

    // Open the oldest of them (the queue shows the newest first).
    let links = client
        .find_all(Locator::Css("a.open"))
        .await
        .expect("links");
    links.last().expect("a link").click().await.expect("open");
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#review"))
        .await
        .expect("detail");
    let url = client.current_url().await.expect("url");
    assert!(url.path().ends_with(&ids[0].replace(':', "%3A")), "{url}");
    assert_eq!(text(&client, "h1").await, "All features / Đủ loại câu hỏi");
    // Fields under the form's labels, the repeat as a table.
    let answers = text(&client, "#fields").await;
    assert!(answers.contains("Số người trong hộ"), "{answers}");
    assert!(
        answers.contains("TP. Hồ Chí Minh"),
        "choice label: {answers}"
    );
    assert!(!answers.contains("household/household_size"));
    assert_eq!(
        client
            .find_all(Locator::Css("table.repeat tbody tr"))
            .await
            .expect("repeat rows")
            .len(),
        2
    );

    // The thumbnail is there and loaded (upright: 240×320), linking to the larger copy.
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#photos a.photo img"))
        .await
        .expect("photo");
    let natural = client
        .execute_async(
            "const done = arguments[0]; const i = document.querySelector('#photos a.photo img'); \
             const report = () => done([i.naturalWidth, i.naturalHeight]); \
             if (i.complete && i.naturalWidth) { report(); } else { i.onload = report; i.onerror = () => done(null); }",
            vec![],
        )
        .await
        .expect("img size");
    assert_eq!(natural, json!([240, 320]));
    let href = client
        .find(Locator::Css("#photos a.photo"))
        .await
        .expect("link")
        .attr("href")
        .await
        .expect("href")
        .unwrap_or_default();
    assert!(href.ends_with("size=review"), "{href}");

    // The geotag on the district map (Sơn La city, inside the drawing).
    let point = client
        .find(Locator::Css("svg.map #point"))
        .await
        .expect("map point");
    let cx: f64 = point
        .attr("cx")
        .await
        .expect("cx")
        .unwrap_or_default()
        .parse()
        .expect("number");
    let cy: f64 = point
        .attr("cy")
        .await
        .expect("cy")
        .unwrap_or_default()
        .parse()
        .expect("number");
    assert!(cx > 0.0 && cx < 1000.0 && cy > 0.0, "({cx}, {cy})");
    let map_loaded = client
        .execute_async(
            "const done = arguments[0]; const img = new Image(); img.onload = () => done(img.naturalWidth); img.onerror = () => done(0); img.src = document.querySelector('svg.map image').getAttribute('href');",
            vec![],
        )
        .await
        .expect("map image");
    assert!(
        map_loaded.as_u64().unwrap_or(0) > 0,
        "the district map loads from the server"
    );
    shoot(&client, "detail-laptop", 1366, 900).await;
    shoot(&client, "detail-phone", 390, 844).await;

    // Reject: first without a reason (the page asks for one), then with one.
    client
        .find(Locator::Css("button.reject"))
        .await
        .expect("reject")
        .click()
        .await
        .expect("click");
    let needed = client
        .find(Locator::Css("#comment-needed"))
        .await
        .expect("hint");
    assert!(needed.is_displayed().await.expect("displayed"));
    client
        .find(Locator::Css("#review-comment"))
        .await
        .expect("comment")
        .send_keys("Ảnh chụp ở bản khác")
        .await
        .expect("type");
    client
        .find(Locator::Css("button.reject"))
        .await
        .expect("reject")
        .click()
        .await
        .expect("click");
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#state .badge.rejected"))
        .await
        .expect("rejected");
    assert!(text(&client, "#review")
        .await
        .contains("Ảnh chụp ở bản khác"));
    assert_eq!(
        admin.json(&format!("/api/v1/submissions/{}", ids[0])).await["review_state"],
        "rejected"
    );

    // Bulk-approve the two others still waiting: select all rows of the filtered queue.
    client
        .goto(&format!("{base}/ui/queue?form=all_features&state=received"))
        .await
        .expect("queue");
    assert_eq!(
        client
            .find_all(Locator::Css("tr.row"))
            .await
            .expect("rows")
            .len(),
        2
    );
    client
        .find(Locator::Css("#select-all"))
        .await
        .expect("select all")
        .click()
        .await
        .expect("click");
    assert_eq!(text(&client, "#picked").await, "2");
    client
        .find(Locator::Css("#bulk select[name=state]"))
        .await
        .expect("decision")
        .select_by_value("approved")
        .await
        .expect("select");
    client
        .find(Locator::Css("#bulk-selected"))
        .await
        .expect("apply")
        .click()
        .await
        .expect("click");
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#confirm"))
        .await
        .expect("confirm page");
    assert_eq!(
        text(&client, "#count").await,
        "2",
        "the count is shown before confirming"
    );
    assert_eq!(
        admin.json(&format!("/api/v1/submissions/{}", ids[1])).await["review_state"],
        "received"
    );
    client
        .find(Locator::Css("#confirm-button"))
        .await
        .expect("confirm")
        .click()
        .await
        .expect("click");
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("p.notice"))
        .await
        .expect("done");
    for id in &ids[1..] {
        assert_eq!(
            admin.json(&format!("/api/v1/submissions/{id}")).await["review_state"],
            "approved"
        );
    }
    assert_eq!(
        admin.json(&format!("/api/v1/submissions/{other}")).await["review_state"],
        "received"
    );

    // English is one click away.
    client
        .find(Locator::Css("a.lang"))
        .await
        .expect("lang")
        .click()
        .await
        .expect("click");
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("html[lang=en]"))
        .await
        .expect("english");
    assert_eq!(text(&client, "h1").await, "Review queue");

    client.close().await.expect("close browser");
}
