//! Exports of a form's submissions across its versions: a zip of CSV files joined by keys,
//! XLSX, GeoJSON; filters, scope, redaction and the access log; jobs with progress that
//! survive a restart.

mod common;

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use calamine::Reader;
use common::collect::Attachment;
use common::*;
use diesel::{Connection, RunQueryDsl};
use serde_json::{json, Value};

fn form(version: &str, v2: bool) -> Vec<u8> {
    let (income, income_bind, income_body, sex, sex_body) = if v2 {
        (
            "<income/>",
            r#"<bind nodeset="/data/income" type="decimal"/>"#,
            r#"<input ref="/data/income"><label ref="jr:itext('/data/income:label')"/></input>"#,
            "<member_sex/>",
            r#"<input ref="/data/members/member_sex"><label>Sex</label></input>"#,
        )
    } else {
        ("", "", "", "", "")
    };
    format!(
        r#"<?xml version="1.0"?><h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:jr="http://openrosa.org/javarosa" xmlns:fieldtally="urn:fieldtally"><h:head><h:title>Household visit</h:title><model>
<itext>
<translation lang="Vietnamese (vi)" default="true()">
<text id="/data/hamlet:label"><value>Thôn/bản</value></text>
<text id="/data/household_size:label"><value>Số người trong hộ</value></text>
<text id="/data/income:label"><value>Thu nhập</value></text>
<text id="/data/members/member_name:label"><value>Tên thành viên</value></text>
</translation>
<translation lang="English (en)">
<text id="/data/hamlet:label"><value>Hamlet</value></text>
<text id="/data/household_size:label"><value>Household size</value></text>
<text id="/data/income:label"><value>Income</value></text>
<text id="/data/members/member_name:label"><value>Member name</value></text>
</translation>
</itext>
<instance><data id="household_visit" version="{version}"><hamlet/><activity_date/><woman_name/><household_size/>{income}<location/><photo/><members jr:template=""><member_name/><member_age/>{sex}</members><meta><instanceID/></meta></data></instance>
<bind nodeset="/data/hamlet" type="string"/><bind nodeset="/data/activity_date" type="date"/><bind nodeset="/data/woman_name" type="string" fieldtally:sensitive="yes"/><bind nodeset="/data/household_size" type="int"/>{income_bind}<bind nodeset="/data/location" type="geopoint"/><bind nodeset="/data/photo" type="binary"/><bind nodeset="/data/members/member_age" type="int"/><bind nodeset="/data/meta/instanceID" type="string" readonly="true()"/>
</model></h:head><h:body>
<input ref="/data/hamlet"><label ref="jr:itext('/data/hamlet:label')"/></input>
<input ref="/data/household_size"><label ref="jr:itext('/data/household_size:label')"/></input>
{income_body}
<group ref="/data/members"><label>Members</label><repeat nodeset="/data/members"><input ref="/data/members/member_name"><label ref="jr:itext('/data/members/member_name:label')"/></input>{sex_body}</repeat></group>
</h:body></h:html>"#
    )
    .into_bytes()
}

struct Visit<'a> {
    id: String,
    version: &'a str,
    hamlet: &'a str,
    date: &'a str,
    woman: &'a str,
    size: u32,
    location: &'a str,
    photo: Option<&'a str>,
    members: &'a [(&'a str, u32)],
}

fn instance(v: &Visit<'_>) -> Vec<u8> {
    let v2 = v.version == "2";
    let members: String = v
        .members
        .iter()
        .map(|(name, age)| {
            let sex = if v2 { "<member_sex>f</member_sex>" } else { "" };
            format!("<members><member_name>{name}</member_name><member_age>{age}</member_age>{sex}</members>")
        })
        .collect();
    let income = if v2 { "<income>12.5</income>" } else { "" };
    let photo = match v.photo {
        Some(p) => format!("<photo>{p}</photo>"),
        None => "<photo/>".into(),
    };
    format!(
        "<?xml version='1.0' encoding='UTF-8' ?><data id=\"household_visit\" version=\"{}\"><hamlet>{}</hamlet><activity_date>{}</activity_date><woman_name>{}</woman_name><household_size>{}</household_size>{income}<location>{}</location>{photo}{members}<meta><instanceID>{}</instanceID></meta></data>",
        v.version, v.hamlet, v.date, v.woman, v.size, v.location, v.id
    )
    .into_bytes()
}

/// A server with the Sơn La demo hamlets, both versions of the form, a collector, and three
/// visits: two on version 1 (Chiềng Hắc in March, Sốp Cộp in August), one on version 2.
async fn setup(extra: &[&str]) -> (Server, Admin, Vec<String>, Vec<u8>) {
    let server = Server::start_with(extra).await;
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
    let admin = server.admin().await;
    for (version, v2) in [("1", false), ("2", true)] {
        let (status, body) = admin.upload_form(&form(version, v2), true).await;
        assert_eq!(status, 201, "{body}");
    }
    admin
        .create_user("lan", "lan-password-1", "collector")
        .await;
    let collect = collector(&server);
    let photo = random_bytes(5_000);
    let visits = [
        Visit {
            id: new_instance_id(),
            version: "1",
            hamlet: "DEMO-04012-1",
            date: "2025-03-10",
            woman: "Lò Thị Mai",
            size: 5,
            location: "21.3256 103.9188 650.0 8.5",
            photo: Some("door.jpg"),
            members: &[("Ánh", 30), ("Bình", 4)],
        },
        Visit {
            id: new_instance_id(),
            version: "1",
            hamlet: "DEMO-04231-1",
            date: "2025-08-05",
            woman: "Cầm Thị Hoa",
            size: 3,
            location: "",
            photo: None,
            members: &[],
        },
        Visit {
            id: new_instance_id(),
            version: "2",
            hamlet: "DEMO-04012-1",
            date: "2025-06-20",
            woman: "Quàng Thị Lan",
            size: 7,
            location: "21.1 103.8",
            photo: None,
            members: &[("Chi", 12)],
        },
    ];
    for v in &visits {
        let files = match v.photo {
            Some(p) => vec![Attachment::jpeg(p, photo.clone())],
            None => vec![],
        };
        let res = collect.submit(&instance(v), &files, false).await;
        assert_eq!(res.status(), 201);
    }
    let ids = visits.iter().map(|v| v.id.clone()).collect();
    (server, admin, ids, photo)
}

/// A CSV file as a list of records keyed by header.
fn csv_rows(bytes: &[u8]) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut r = csv::Reader::from_reader(bytes);
    let headers: Vec<String> = r
        .headers()
        .expect("headers")
        .iter()
        .map(str::to_string)
        .collect();
    let rows = r
        .records()
        .map(|rec| {
            let rec = rec.expect("record");
            headers
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_string))
                .collect()
        })
        .collect();
    (headers, rows)
}

fn unzip(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("zip");
    let mut out = BTreeMap::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).expect("entry");
        let mut data = Vec::new();
        f.read_to_end(&mut data).expect("read entry");
        out.insert(f.name().expect("entry name").to_string(), data);
    }
    out
}

async fn get_bytes(client: &Admin, path: &str) -> (u16, Vec<u8>) {
    let res = client.get(path).send().await.expect("GET");
    let status = res.status().as_u16();
    (status, res.bytes().await.expect("body").to_vec())
}

async fn error_code(client: &Admin, path: &str) -> (u16, String) {
    let res = client.get(path).send().await.expect("GET");
    let status = res.status().as_u16();
    let body: Value = res.json().await.expect("JSON error");
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn csv_zip_joins_repeats_by_key_across_versions_with_labels_and_attachments() {
    let (server, admin, ids, photo) = setup(&[]).await;
    let (status, zip) = get_bytes(
        &admin,
        "/api/v1/forms/household_visit/export?format=csv&lang=vi&attachments=true",
    )
    .await;
    assert_eq!(status, 200);
    let files = unzip(&zip);
    let (headers, rows) = csv_rows(&files["household_visit.csv"]);
    // The union of both versions in form order, headed by the Vietnamese labels.
    let fields: Vec<&str> = headers[8..].iter().map(String::as_str).collect();
    assert_eq!(
        fields,
        [
            "Thôn/bản",
            "activity_date",
            "woman_name",
            "Số người trong hộ",
            "Thu nhập",
            "location",
            "photo",
            "meta/instanceID"
        ]
    );
    assert_eq!(headers[0], "KEY");
    assert_eq!(rows.len(), 3);
    let by_key: BTreeMap<&str, &BTreeMap<String, String>> =
        rows.iter().map(|r| (r["KEY"].as_str(), r)).collect();
    assert_eq!(by_key[ids[0].as_str()]["Số người trong hộ"], "5");
    assert_eq!(by_key[ids[0].as_str()]["Thu nhập"], "");
    assert_eq!(by_key[ids[2].as_str()]["Thu nhập"], "12.5");
    assert_eq!(by_key[ids[2].as_str()]["Phiên bản biểu mẫu"], "2");
    // Without a purpose the sensitive answer is withheld, and says so.
    assert!(rows.iter().all(|r| r["woman_name"] == "[withheld]"));
    assert!(!String::from_utf8_lossy(&zip).contains("Lò Thị Mai"));

    let (mheaders, members) = csv_rows(&files["household_visit-members.csv"]);
    assert_eq!(mheaders[..2], ["PARENT_KEY", "KEY"]);
    assert!(mheaders.contains(&"Tên thành viên".to_string()));
    // A plain label (no translations) heads its column in every language.
    assert!(mheaders.contains(&"Sex".to_string()));
    assert_eq!(members.len(), 3);
    let of_first: Vec<&str> = members
        .iter()
        .filter(|m| m["PARENT_KEY"] == ids[0])
        .map(|m| m["Tên thành viên"].as_str())
        .collect();
    assert_eq!(of_first, ["Ánh", "Bình"]);
    assert_eq!(members[1]["KEY"], format!("{}/members[2]", ids[0]));
    // Every repeat row joins to a submission row.
    assert!(members
        .iter()
        .all(|m| by_key.contains_key(m["PARENT_KEY"].as_str())));
    let media = format!("media/{}/door.jpg", ids[0].trim_start_matches("uuid:"));
    assert_eq!(files.get(&media), Some(&photo), "{:?}", files.keys());

    // English headers; without attachments no media folder.
    let (_, zip) = get_bytes(&admin, "/api/v1/forms/household_visit/export?lang=en").await;
    let files = unzip(&zip);
    let (headers, _) = csv_rows(&files["household_visit.csv"]);
    assert!(headers.contains(&"Hamlet".to_string()));
    assert!(headers.contains(&"Submission date".to_string()));
    assert!(files.keys().all(|k| !k.starts_with("media/")));
    drop(server);
}

#[tokio::test]
async fn xlsx_and_geojson_hold_the_same_submissions() {
    let (server, admin, ids, _) = setup(&[]).await;
    let (status, bytes) = get_bytes(
        &admin,
        "/api/v1/forms/household_visit/export?format=xlsx&lang=en",
    )
    .await;
    assert_eq!(status, 200);
    let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(bytes)).expect("xlsx");
    assert_eq!(
        book.sheet_names(),
        ["household_visit", "household_visit-members"]
    );
    let sheet = book.worksheet_range("household_visit").expect("sheet");
    let rows: Vec<Vec<calamine::Data>> = sheet.rows().map(|r| r.to_vec()).collect();
    let header: Vec<String> = rows[0].iter().map(|c| c.to_string()).collect();
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    assert_eq!(rows.len(), 4);
    let first = rows
        .iter()
        .find(|r| r[0].to_string() == ids[0])
        .expect("first visit");
    assert_eq!(first[col("Household size")], calamine::Data::Float(5.0));
    assert_eq!(first[col("woman_name")].to_string(), "[withheld]");
    let members = book
        .worksheet_range("household_visit-members")
        .expect("sheet");
    assert_eq!(members.rows().count(), 4);

    let (status, bytes) = get_bytes(
        &admin,
        "/api/v1/forms/household_visit/export?format=geojson",
    )
    .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(bytes).expect("utf-8");
    let geo: geojson::FeatureCollection = text
        .parse::<geojson::GeoJson>()
        .expect("GeoJSON")
        .try_into()
        .expect("collection");
    // The visit without a location is not on the map.
    assert_eq!(geo.features.len(), 2);
    let f = geo
        .features
        .iter()
        .find(|f| f.property("KEY") == Some(&json!(ids[0])))
        .expect("first visit");
    assert_eq!(
        serde_json::to_value(f.geometry.as_ref().expect("geometry")).expect("json"),
        // The form is sensitive: geotags are kept to 2 decimals (about 1 km).
        json!({ "type": "Point", "coordinates": [103.92, 21.33, 650.0] })
    );
    assert_eq!(f.property("household_size"), Some(&json!(5)));
    drop(server);
}

/// A job queued on an instance starts there at once, not at the instance's next look for work:
/// with an hour between looks, both jobs still finish.
#[tokio::test]
async fn a_job_starts_at_once_on_the_instance_that_took_it() {
    let (server, admin, ids, _) = setup(&["--export-poll-secs", "3600"]).await;
    for format in ["csv", "geojson"] {
        let done = run_job(
            &admin,
            json!({ "form": "household_visit", "format": format }),
        )
        .await;
        assert_eq!(done["status"], "done", "{format}: {done}");
        assert_eq!(done["done"], ids.len(), "{format}");
    }
    drop(server);
}

/// An export longer than a page (500 submissions) is read a page ahead while the previous one
/// is written: every submission must land in the file once, with its repeat rows.
#[tokio::test]
async fn an_export_of_many_pages_holds_every_submission_once() {
    let (server, admin, mut ids, _) = setup(&[]).await;
    let mut phones = tokio::task::JoinSet::new();
    for phone in 0..8 {
        let collect = collector(&server);
        phones.spawn(async move {
            let mut sent = Vec::new();
            for n in 0..140 {
                let id = new_instance_id();
                let members = [("Ánh", 30), ("Bình", 4)];
                let visit = Visit {
                    id: id.clone(),
                    version: "2",
                    hamlet: "DEMO-04012-1",
                    date: "2025-06-20",
                    woman: "Quàng Thị Lan",
                    size: 1 + (phone * 140 + n) % 9,
                    location: if n % 2 == 0 { "21.1 103.8" } else { "" },
                    photo: None,
                    members: &members[..(n % 3) as usize],
                };
                let res = collect.submit(&instance(&visit), &[], false).await;
                assert_eq!(res.status(), 201);
                sent.push(id);
            }
            sent
        });
    }
    while let Some(sent) = phones.join_next().await {
        ids.extend(sent.expect("phone"));
    }
    assert_eq!(ids.len(), 1123);

    let done = run_job(
        &admin,
        json!({ "form": "household_visit", "format": "csv" }),
    )
    .await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(
        (done["done"].clone(), done["progress"].clone()),
        (json!(1123), json!(1.0))
    );
    let (_, zip) = get_bytes(&admin, done["download"].as_str().expect("download")).await;
    let files = unzip(&zip);
    let (_, rows) = csv_rows(&files["household_visit.csv"]);
    let mut keys: Vec<String> = rows.iter().map(|r| r["KEY"].clone()).collect();
    keys.sort();
    ids.sort();
    assert_eq!(keys, ids);
    let (_, members) = csv_rows(&files["household_visit-members.csv"]);
    // Two and one members in the first three visits, then 0, 1, 2 in turn per phone.
    assert_eq!(members.len(), 3 + 8 * (47 + 2 * 46));

    let done = run_job(
        &admin,
        json!({ "form": "household_visit", "format": "geojson" }),
    )
    .await;
    let (_, bytes) = get_bytes(&admin, done["download"].as_str().expect("download")).await;
    let geo: geojson::FeatureCollection = String::from_utf8(bytes)
        .expect("utf-8")
        .parse::<geojson::GeoJson>()
        .expect("GeoJSON")
        .try_into()
        .expect("collection");
    let mut mapped: Vec<String> = geo
        .features
        .iter()
        .map(|f| {
            f.property("KEY")
                .and_then(Value::as_str)
                .expect("KEY")
                .to_string()
        })
        .collect();
    let total = mapped.len();
    mapped.sort();
    mapped.dedup();
    // Two of the first three visits and every other one of the rest have a location.
    assert_eq!((total, mapped.len()), (2 + 8 * 70, 2 + 8 * 70));
    drop(server);
}

#[tokio::test]
async fn filters_scope_and_bad_parameters() {
    let (server, admin, ids, _) = setup(&[]).await;
    let keys = |bytes: &[u8]| -> Vec<String> {
        let files = unzip(bytes);
        let mut k: Vec<String> = csv_rows(&files["household_visit.csv"])
            .1
            .iter()
            .map(|r| r["KEY"].clone())
            .collect();
        k.sort();
        k
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let base = "/api/v1/forms/household_visit/export";
    // Area (the commune Chiềng Hắc as of the activity date), period, review state.
    let (_, z) = get_bytes(&admin, &format!("{base}?area=04012")).await;
    assert_eq!(keys(&z), sorted(vec![ids[0].clone(), ids[2].clone()]));
    let (_, z) = get_bytes(&admin, &format!("{base}?from=2025-06-01&to=2025-12-31")).await;
    assert_eq!(keys(&z), sorted(vec![ids[1].clone(), ids[2].clone()]));
    let res = admin
        .post(&format!("/api/v1/submissions/{}/review", ids[1]))
        .json(&json!({ "state": "approved" }))
        .send()
        .await
        .expect("review");
    assert_eq!(res.status(), 200);
    let (_, z) = get_bytes(&admin, &format!("{base}?state=approved")).await;
    assert_eq!(keys(&z), vec![ids[1].clone()]);

    // A supervisor of Sốp Cộp exports only Sốp Cộp; a collector may not export.
    admin
        .create_user("sup", "supervisor-password", "supervisor")
        .await;
    let res = admin
        .put("/api/v1/users/sup/areas")
        .json(&json!({ "area_codes": ["04231"] }))
        .send()
        .await
        .expect("areas");
    assert_eq!(res.status(), 200);
    let sup = Admin::login(&server, "sup", "supervisor-password").await;
    let (status, z) = get_bytes(&sup, base).await;
    assert_eq!(status, 200);
    assert_eq!(keys(&z), vec![ids[1].clone()]);
    let lan = Admin::login(&server, "lan", "lan-password-1").await;
    assert_eq!(error_code(&lan, base).await, (403, "forbidden".into()));

    for (query, code) in [
        ("format=pdf", "bad_format"),
        ("lang=fr", "bad_lang"),
        ("from=10/03/2025", "bad_date"),
        ("from=2025-05-01&to=2025-04-01", "bad_period"),
        ("state=maybe", "bad_state"),
        ("format=xlsx&attachments=true", "bad_attachments"),
        ("format=geojson&field=hamlet", "bad_field"),
        ("field=location", "bad_field"),
        ("colour=red", "bad_query"),
    ] {
        assert_eq!(
            error_code(&admin, &format!("{base}?{query}")).await,
            (400, code.to_string()),
            "{query}"
        );
    }
    assert_eq!(
        error_code(&admin, "/api/v1/forms/nope/export").await,
        (404, "unknown_form".into())
    );
    let res = admin
        .post("/api/v1/exports")
        .json(&json!({ "form": "household_visit", "format": "doc" }))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 400);
    assert_eq!(error_code(&admin, "/api/v1/exports/unknown").await.0, 404);
}

#[tokio::test]
async fn sensitive_values_need_the_right_and_a_purpose_and_are_logged() {
    let (server, admin, ids, _) = setup(&[]).await;
    let base = "/api/v1/forms/household_visit/export";
    admin
        .create_user("machine", "machine-password-1", "api_client")
        .await;
    let machine = Admin::login(&server, "machine", "machine-password-1").await;
    // A service account may export, but not sensitive values.
    assert_eq!(get_bytes(&machine, base).await.0, 200);
    assert_eq!(
        error_code(&machine, &format!("{base}?purpose=audit")).await,
        (403, "forbidden".into())
    );
    let log = admin.json("/api/v1/access-log").await;
    assert_eq!(log["entries"].as_array().map(Vec::len), Some(0));

    let res = admin
        .get(&format!("{base}?format=xlsx"))
        .header("X-Purpose", "case follow-up for the commune")
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 200);
    let bytes = res.bytes().await.expect("body");
    let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(bytes.to_vec())).expect("xlsx");
    let sheet = book.worksheet_range("household_visit").expect("sheet");
    let rows: Vec<Vec<String>> = sheet
        .rows()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
    let col = rows[0]
        .iter()
        .position(|h| h == "woman_name")
        .expect("column");
    let row = rows.iter().find(|r| r[0] == ids[0]).expect("row");
    assert_eq!(row[col], "Lò Thị Mai");
    let log = admin.json("/api/v1/access-log").await;
    let entries = log["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["action"], "export");
    assert_eq!(entries[0]["purpose"], "case follow-up for the commune");
    assert_eq!(entries[0]["username"], "admin");
    // An empty purpose is refused, not taken as none.
    assert_eq!(
        error_code(&admin, &format!("{base}?purpose=%20")).await,
        (400, "purpose_required".into())
    );
}

fn execute_sql(server: &Server, sql: &str) {
    match server.database_url() {
        Some(url) => {
            let mut c = diesel::PgConnection::establish(url).expect("connect");
            diesel::sql_query(sql).execute(&mut c).expect("sql");
        }
        None => {
            let path = server.data_dir().join("fieldtally.sqlite3");
            let mut c =
                diesel::SqliteConnection::establish(&path.display().to_string()).expect("open");
            diesel::sql_query(sql).execute(&mut c).expect("sql");
        }
    }
}

/// Starts an export job and waits for it to end.
async fn run_job(client: &Admin, body: Value) -> Value {
    let res = client
        .post("/api/v1/exports")
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.expect("job");
    wait_done(client, job["id"].as_str().expect("id")).await
}

async fn wait_done(client: &Admin, id: &str) -> Value {
    for _ in 0..300 {
        let job = client.json(&format!("/api/v1/exports/{id}")).await;
        if job["status"] == "done" || job["status"] == "failed" {
            return job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("export {id} did not finish");
}

#[tokio::test]
async fn large_exports_run_as_jobs_that_survive_a_restart() {
    let (mut server, admin, ids, _) =
        setup(&["--export-direct-max", "2", "--export-stale-secs", "1"]).await;
    let (status, code) = error_code(&admin, "/api/v1/forms/household_visit/export").await;
    assert_eq!((status, code.as_str()), (413, "export_too_large"));

    let res = admin
        .post("/api/v1/exports")
        .json(&json!({ "form": "household_visit", "format": "csv", "lang": "vi" }))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.expect("job");
    let id = job["id"].as_str().expect("id").to_string();
    assert_eq!(job["total"], 3);
    let done = wait_done(&admin, &id).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["done"], 3);
    assert_eq!(done["progress"], 1.0);
    let (status, zip) = get_bytes(&admin, done["download"].as_str().expect("download")).await;
    assert_eq!(status, 200);
    let (_, rows) = csv_rows(&unzip(&zip)["household_visit.csv"]);
    assert_eq!(rows.len(), 3);
    let mine = admin.json("/api/v1/exports").await;
    assert_eq!(mine["exports"][0]["id"], id.as_str());
    // Another user does not see the job.
    admin
        .create_user("other", "other-password-1", "province_officer")
        .await;
    let other = Admin::login(&server, "other", "other-password-1").await;
    assert_eq!(
        error_code(&other, &format!("/api/v1/exports/{id}")).await.0,
        404
    );

    // A job caught by a crash in the middle of writing (running, its heartbeat gone) is taken
    // up again after the restart and finishes; one interrupted too often fails clearly.
    let res = admin
        .post("/api/v1/exports")
        .json(&json!({ "form": "household_visit", "format": "xlsx", "area": "04012" }))
        .send()
        .await
        .expect("POST");
    let second: Value = res.json().await.expect("job");
    let second = second["id"].as_str().expect("id").to_string();
    let res = admin
        .post("/api/v1/exports")
        .json(&json!({ "form": "household_visit", "format": "geojson" }))
        .send()
        .await
        .expect("POST");
    let third: Value = res.json().await.expect("job");
    let third = third["id"].as_str().expect("id").to_string();
    server.kill();
    execute_sql(
        &server,
        &format!("UPDATE export_jobs SET status = 'running', owner = 'crashed', heartbeat_at = '2025-01-01 00:00:00', attempts = 1, done = 1, file_size = NULL, finished_at = NULL WHERE id = '{second}'"),
    );
    execute_sql(
        &server,
        &format!("UPDATE export_jobs SET status = 'running', owner = 'crashed', heartbeat_at = '2025-01-01 00:00:00', attempts = 3, file_size = NULL, finished_at = NULL WHERE id = '{third}'"),
    );
    server.kill_and_restart();
    let admin = server.admin().await;
    let resumed = wait_done(&admin, &second).await;
    assert_eq!(resumed["status"], "done", "{resumed}");
    assert_eq!(resumed["attempts"], 2);
    assert_eq!(resumed["done"], 2);
    let (status, bytes) = get_bytes(&admin, &format!("/api/v1/exports/{second}/download")).await;
    assert_eq!(status, 200);
    let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(bytes)).expect("xlsx");
    let sheet = book.worksheet_range("household_visit").expect("sheet");
    let keys: Vec<String> = sheet.rows().skip(1).map(|r| r[0].to_string()).collect();
    assert_eq!(keys, [ids[0].clone(), ids[2].clone()]);
    let failed = wait_done(&admin, &third).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or("")
            .contains("interrupted 3 times"),
        "{failed}"
    );
    let (status, code) = error_code(&admin, &format!("/api/v1/exports/{third}/download")).await;
    assert_eq!((status, code.as_str()), (409, "export_failed"));
    // The first job's file is still there after the restart.
    assert_eq!(
        get_bytes(&admin, &format!("/api/v1/exports/{id}/download"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn finished_export_files_are_deleted_after_the_retention_time() {
    let (server, admin, _, _) = setup(&["--export-keep-secs", "1"]).await;
    let res = admin
        .post("/api/v1/exports")
        .json(&json!({ "form": "household_visit" }))
        .send()
        .await
        .expect("POST");
    let job: Value = res.json().await.expect("job");
    let id = job["id"].as_str().expect("id").to_string();
    let mut status = String::new();
    for _ in 0..100 {
        status = admin.json(&format!("/api/v1/exports/{id}")).await["status"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if status == "expired" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "expired");
    let (status, code) = error_code(&admin, &format!("/api/v1/exports/{id}/download")).await;
    assert_eq!((status, code.as_str()), (410, "export_expired"));
    let files: Vec<_> = std::fs::read_dir(server.data_dir().join("exports"))
        .expect("exports folder")
        .collect();
    assert!(files.is_empty());
}
