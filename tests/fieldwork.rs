//! The area registry before and after Sơn La's July 2025 reform, collectors' hamlets and their
//! per-collector hamlet list, the QR code that configures Collect, and what ingest derives from
//! a submission: hamlet, activity date, beneficiary key, sensitive values set apart, geotag
//! flags. Runs on SQLite, or on PostgreSQL with FIELDTALLY_TEST_POSTGRES.

mod common;

use std::collections::BTreeSet;
use std::io::Read;

use base64::Engine;
use common::collect::Collect;
use common::tools::Tools;
use common::*;
use serde_json::{json, Value};

/// A server with the demo hamlets imported through the command line, and a collector `lan`.
async fn server_with_hamlets() -> (Server, Admin) {
    let server = Server::start().await;
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
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("26 areas added"));
    let admin = server.admin().await;
    admin
        .create_user("lan", "lan-password-1", "collector")
        .await;
    (server, admin)
}

fn codes(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|a| a["code"].as_str().expect("code").to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn count_level(node: &Value, level: &str) -> usize {
    let here = usize::from(node["level"] == level);
    here + node["children"]
        .as_array()
        .map(|c| c.iter().map(|n| count_level(n, level)).sum())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_registry_knows_the_map_before_and_after_the_reform() {
    let (server, admin) = server_with_hamlets().await;

    let before = admin.json("/api/v1/areas?on=2025-03-01").await;
    assert_eq!(before["on"], "2025-03-01");
    let roots = before["areas"].as_array().expect("roots");
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0]["code"], "14");
    assert_eq!(count_level(&roots[0], "district"), 12);
    assert_eq!(count_level(&roots[0], "commune"), 200);
    assert_eq!(count_level(&roots[0], "hamlet"), 13);
    let after = admin.json("/api/v1/areas?on=2025-07-01").await;
    let root = &after["areas"][0];
    assert_eq!(count_level(root, "district"), 0);
    assert_eq!(count_level(root, "commune"), 75);
    assert_eq!(count_level(root, "hamlet"), 13);

    // The same code names different communes before and after 1 July 2025.
    let old = admin.json("/api/v1/areas/03646?on=2025-06-30").await;
    assert_eq!(old["name"], "Phường Chiềng Lề");
    assert_eq!(codes(&old["parents"]), set(&["116", "14"]));
    assert_eq!(old["parents"][0]["code"], "116", "nearest parent first");
    assert_eq!(codes(&old["successors"]), set(&["03646"]));
    let new = admin.json("/api/v1/areas/03646?on=2025-07-01").await;
    assert_eq!(new["name"], "Phường Tô Hiệu");
    assert_eq!(codes(&new["parents"]), set(&["14"]));
    assert_eq!(
        codes(&new["predecessors"]),
        set(&["03646", "03649", "03652", "03655"])
    );
    assert_eq!(new["versions"].as_array().map(Vec::len), Some(2));

    // The two communes that were split.
    let chieng_hac = admin.json("/api/v1/areas/04012?on=2025-03-01").await;
    assert_eq!(chieng_hac["name"], "Xã Chiềng Hắc");
    assert_eq!(codes(&chieng_hac["parents"]), set(&["123", "14"]));
    assert_eq!(codes(&chieng_hac["successors"]), set(&["04078", "03980"]));
    assert_eq!(
        codes(&chieng_hac["children"]),
        set(&["DEMO-04012-1", "DEMO-04012-2", "DEMO-04012-3"])
    );
    // Without a date, an abolished commune is shown in its last version.
    let latest = admin.json("/api/v1/areas/04012").await;
    assert_eq!(latest["valid_to"], "2025-06-30");
    let muong_bang = admin.json("/api/v1/areas/04111?on=2025-03-01").await;
    assert_eq!(codes(&muong_bang["parents"]), set(&["125", "14"]));
    assert_eq!(codes(&muong_bang["successors"]), set(&["03943", "04123"]));
    let moc_chau = admin.json("/api/v1/areas/03980?on=2025-07-01").await;
    assert_eq!(moc_chau["name"], "Phường Mộc Châu");
    assert!(codes(&moc_chau["predecessors"]).contains("04012"));
    assert_eq!(codes(&moc_chau["children"]), set(&["DEMO-04012-3"]));
    let chieng_mung = admin.json("/api/v1/areas/04123?on=2025-07-01").await;
    assert!(codes(&chieng_mung["predecessors"]).contains("04111"));
    assert_eq!(codes(&chieng_mung["children"]), set(&["DEMO-04111-3"]));

    // A hamlet of a split commune: old commune and district, then exactly one new commune.
    let hamlet_before = admin.json("/api/v1/areas/DEMO-04012-3?on=2025-06-30").await;
    assert_eq!(hamlet_before["demo"], true);
    let parents: Vec<&str> = hamlet_before["parents"]
        .as_array()
        .expect("parents")
        .iter()
        .filter_map(|p| p["code"].as_str())
        .collect();
    assert_eq!(parents, ["04012", "123", "14"]);
    assert_eq!(codes(&hamlet_before["successors"]), set(&["DEMO-04012-3"]));
    let hamlet_after = admin.json("/api/v1/areas/DEMO-04012-3?on=2025-07-01").await;
    let parents: Vec<&str> = hamlet_after["parents"]
        .as_array()
        .expect("parents")
        .iter()
        .filter_map(|p| p["code"].as_str())
        .collect();
    assert_eq!(parents, ["03980", "14"]);
    assert_eq!(codes(&hamlet_after["predecessors"]), set(&["DEMO-04012-3"]));
    let sibling = admin.json("/api/v1/areas/DEMO-04012-1?on=2025-07-01").await;
    assert_eq!(sibling["parents"][0]["code"], "04078");

    // District boundaries, on request.
    let district = admin.json("/api/v1/areas/123?geometry=true").await;
    assert_eq!(district["geometry"]["type"], "MultiPolygon");
    assert!(district["centroid"]["lat"].is_f64());
    assert!(admin
        .json("/api/v1/areas/123")
        .await
        .get("geometry")
        .is_none());

    // Errors.
    let res = admin.get("/api/v1/areas/99999").send().await.expect("GET");
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unknown_area");
    let res = admin
        .get("/api/v1/areas/04012?on=2025-08-01")
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 404);
    let res = admin
        .get("/api/v1/areas?on=1/7/2025")
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "bad_date");
    let res = reqwest::get(server.url("/api/v1/areas"))
        .await
        .expect("GET");
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn area_imports_are_all_or_nothing_and_say_what_is_wrong() {
    let (server, admin) = server_with_hamlets().await;
    let dir = tempfile::tempdir().expect("temp");
    let bad = dir.path().join("hamlets.csv");
    // The first row is fine, the second names a commune that no longer exists on its date.
    std::fs::write(
        &bad,
        "level,code,name,parent_code,valid_from\nhamlet,NEW-1,Bản Mới,03646,2025-07-01\nhamlet,NEW-2,Bản Hai,04012,2025-07-01\n",
    )
    .expect("write");
    let out = server.cli(&["areas", "import", &bad.display().to_string()], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("row 3") && stderr.contains("04012"),
        "{stderr}"
    );
    let res = admin.get("/api/v1/areas/NEW-1").send().await.expect("GET");
    assert_eq!(res.status(), 404, "nothing of a failed import is stored");

    // Overlapping versions of one code are refused.
    std::fs::write(
        &bad,
        "level,code,name,parent_code,valid_from\nhamlet,DEMO-04231-1,Bản Khác,04231,2025-08-01\n",
    )
    .expect("write");
    let out = server.cli(&["areas", "import", &bad.display().to_string()], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must not overlap"));

    // Hamlets as GeoJSON points, and a re-import that updates rather than duplicates.
    let points = dir.path().join("points.geojson");
    std::fs::write(
        &points,
        json!({"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [103.9, 21.33]},
             "properties": {"level": "hamlet", "code": "GJ-1", "name": "Bản Điểm", "parent_code": "03646", "valid_from": "2025-07-01", "especially_difficult": "yes"}},
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [103.56, 20.79]},
             "properties": {"code": "DEMO-04231-1", "valid_from": "2025-07-01"}}
        ]})
        .to_string(),
    )
    .expect("write");
    for _ in 0..2 {
        let out = server.cli(&["areas", "import", &points.display().to_string()], None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let gj = admin.json("/api/v1/areas/GJ-1").await;
    assert_eq!(gj["centroid"], json!({"lat": 21.33, "lon": 103.9}));
    assert_eq!(gj["especially_difficult"], true);
    assert_eq!(gj["versions"].as_array().map(Vec::len), Some(1));
    let moved = admin.json("/api/v1/areas/DEMO-04231-1?on=2025-07-01").await;
    assert_eq!(moved["centroid"], json!({"lat": 20.79, "lon": 103.56}));
    let unmoved = admin.json("/api/v1/areas/DEMO-04231-1?on=2025-03-01").await;
    assert_eq!(
        unmoved["centroid"],
        json!({"lat": 20.78747, "lon": 103.5607})
    );
}

fn manifest_entries(xml: &str) -> Vec<(String, String, String)> {
    let doc = roxmltree::Document::parse(xml).expect("manifest xml");
    doc.descendants()
        .filter(|n| n.has_tag_name("mediaFile"))
        .map(|m| {
            let get = |name: &str| {
                m.children()
                    .find(|c| c.has_tag_name(name))
                    .and_then(|c| c.text())
                    .unwrap_or_default()
                    .to_string()
            };
            (get("filename"), get("hash"), get("downloadUrl"))
        })
        .collect()
}

/// The form list entry of `form_id`: (downloadUrl, manifestUrl).
async fn listed(collect: &Collect, form_id: &str) -> (String, Option<String>) {
    let list = collect.get("/formList").await.text().await.expect("list");
    let doc = roxmltree::Document::parse(&list).expect("xml");
    let form = doc
        .descendants()
        .find(|n| n.has_tag_name("xform") && n.children().any(|c| c.text() == Some(form_id)))
        .unwrap_or_else(|| panic!("{form_id} is listed"));
    let child = |name: &str| {
        form.children()
            .find(|c| c.has_tag_name(name))
            .and_then(|c| c.text())
            .map(str::to_string)
    };
    (
        child("downloadUrl").expect("downloadUrl"),
        child("manifestUrl"),
    )
}

/// The collector's `hamlets.csv` for a form, checked against its manifest entry.
async fn hamlet_list(collect: &Collect, form_id: &str) -> String {
    let (_, manifest_url) = listed(collect, form_id).await;
    let manifest_url = manifest_url.expect("a form with hamlets.csv has a manifest");
    let res = collect.get(&manifest_url).await;
    assert_eq!(res.status(), 200);
    let entries = manifest_entries(&res.text().await.expect("manifest"));
    let (name, hash, url) = entries
        .iter()
        .find(|(name, _, _)| name == "hamlets.csv")
        .cloned()
        .expect("hamlets.csv in the manifest");
    assert_eq!(name, "hamlets.csv");
    let res = collect.get(&url).await;
    assert_eq!(res.status(), 200);
    assert!(res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv")));
    let bytes = res.bytes().await.expect("csv");
    assert_eq!(
        hash,
        format!("md5:{}", md5_hex(&bytes)),
        "md5 of the served bytes"
    );
    String::from_utf8(bytes.to_vec()).expect("utf8")
}

#[tokio::test]
async fn each_collector_gets_a_list_of_their_own_hamlets() {
    let (server, admin) = server_with_hamlets().await;
    admin
        .create_user("hoa", "hoa-password-1", "collector")
        .await;
    let res = admin
        .put("/api/v1/users/lan/hamlets")
        .json(&json!({"hamlet_codes": ["DEMO-04012-1", "DEMO-04012-3", "DEMO-04012-1"]}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(
        body["hamlet_codes"],
        json!(["DEMO-04012-1", "DEMO-04012-3"])
    );
    assert_eq!(body["all_hamlets"], false);
    let res = admin
        .put("/api/v1/users/hoa/hamlets")
        .json(&json!({"hamlet_codes": ["DEMO-04231-2"]}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(res.status(), 200);
    let res = admin
        .put("/api/v1/users/hoa/hamlets")
        .json(&json!({"hamlet_codes": ["DEMO-04231-2", "04012"]}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(res.status(), 404, "a commune is not a hamlet");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unknown_hamlet");
    assert_eq!(
        admin.json("/api/v1/users/hoa/hamlets").await["hamlet_codes"],
        json!(["DEMO-04231-2"]),
        "a refused assignment changes nothing"
    );

    let lan = collector(&server);
    let lan_list = hamlet_list(&lan, "policy_dialogue").await;
    assert_eq!(
        lan_list,
        "name,label\nDEMO-04012-3,Bản demo 3 (Phường Mộc Châu)\nDEMO-04012-1,Bản demo 1 (Xã Chiềng Hặc)\n"
    );
    // Every shipped form picks the hamlet from the same per-collector list.
    assert_eq!(hamlet_list(&lan, "safe_birth_outreach").await, lan_list);
    let hoa = Collect::with_password(&server.base, "hoa", "hoa-password-1");
    assert_eq!(
        hamlet_list(&hoa, "policy_dialogue").await,
        "name,label\nDEMO-04231-2,Bản demo 2 (Xã Sốp Cộp)\n"
    );

    // Without an assignment: every hamlet of the registry valid today.
    admin
        .create_user("mai", "mai-password-1", "collector")
        .await;
    let mai = Collect::with_password(&server.base, "mai", "mai-password-1");
    let all = hamlet_list(&mai, "club_meeting").await;
    assert_eq!(all.lines().count(), 14, "{all}");
    assert_eq!(
        admin.json("/api/v1/users/mai/hamlets").await["all_hamlets"],
        true
    );

    // A new assignment changes the list and its md5, so Collect fetches it again.
    let res = admin
        .put("/api/v1/users/lan/hamlets")
        .json(&json!({"hamlet_codes": ["DEMO-03646-1"]}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(res.status(), 200);
    assert_eq!(
        hamlet_list(&lan, "policy_dialogue").await,
        "name,label\nDEMO-03646-1,Bản demo 1 (Phường Tô Hiệu)\n"
    );
}

fn decode_qr(png: &[u8]) -> String {
    let image = image::load_from_memory(png).expect("png").to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    let (_, content) = grids[0].decode().expect("QR decodes");
    content
}

#[tokio::test]
async fn the_qr_code_configures_collect_and_revoking_its_key_locks_the_phone_out() {
    let (server, admin) = server_with_hamlets().await;
    let res = admin
        .put("/api/v1/users/lan/hamlets")
        .json(&json!({"hamlet_codes": ["DEMO-04012-1", "DEMO-04012-2"]}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(res.status(), 200);

    let res = admin
        .get("/api/v1/users/lan/collect-settings.json")
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 200);
    let json_bytes = res.bytes().await.expect("json").to_vec();
    let res = admin
        .get("/api/v1/users/lan/collect-settings.png")
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    let png = res.bytes().await.expect("png");

    // Collect's decoding: base64, then zlib (RFC 1950), then JSON.
    let payload = decode_qr(&png);
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .expect("standard base64");
    let mut inflated = Vec::new();
    flate2::read::ZlibDecoder::new(compressed.as_slice())
        .read_to_end(&mut inflated)
        .expect("zlib with header");
    assert_eq!(
        inflated, json_bytes,
        "the QR code holds exactly the settings JSON"
    );

    let settings: Value = serde_json::from_slice(&json_bytes).expect("settings json");
    assert_eq!(settings["general"]["form_update_mode"], "match_exactly");
    assert_eq!(settings["general"]["autosend"], "wifi_and_cellular");
    assert!(settings["admin"].is_object());
    assert_eq!(settings["project"]["name"], "Dự án 8 – Xã Chiềng Hặc");
    let server_url = settings["general"]["server_url"]
        .as_str()
        .expect("server_url")
        .to_string();
    assert!(
        server_url.starts_with(&format!("{}/key/", server.base)),
        "{server_url}"
    );

    // The phone works with what it scanned, and sees its own hamlets.
    let phone = Collect::with_key(&server_url);
    assert_eq!(phone.get("/formList").await.status(), 200);
    let list = hamlet_list(&phone, "policy_dialogue").await;
    assert!(list.contains("DEMO-04012-2"), "{list}");
    // Showing the QR code again gives the same key.
    let again = admin
        .get("/api/v1/users/lan/collect-settings.json")
        .send()
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("json");
    assert_eq!(again.to_vec(), json_bytes);

    // Revoking the key locks the phone out at once.
    let res = admin
        .delete("/api/v1/users/lan/app-key")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(res.status(), 200);
    assert_eq!(phone.get("/formList").await.status(), 403);
    assert_eq!(phone.head_submission().await.status(), 403);
    // A new QR code carries a new key that works.
    let fresh: Value = admin.json("/api/v1/users/lan/collect-settings.json").await;
    let fresh_url = fresh["general"]["server_url"].as_str().expect("url");
    assert_ne!(fresh_url, server_url);
    assert_eq!(
        Collect::with_key(fresh_url).get("/formList").await.status(),
        200
    );
    assert_eq!(phone.get("/formList").await.status(), 403);

    let res = admin
        .get("/api/v1/users/nobody/collect-settings.png")
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 404);
}

/// A `safe_birth_outreach` instance shaped like Collect's, with the answers the checks read.
fn outreach(
    instance_id: &str,
    hamlet: &str,
    activity_date: &str,
    name: &str,
    household: &str,
    location: &str,
) -> Vec<u8> {
    format!(
        "<?xml version='1.0' encoding='UTF-8' ?><data id=\"safe_birth_outreach\" version=\"2025040302\" xmlns:orx=\"http://openrosa.org/xforms\"><start>2025-03-15T08:00:00.000+07:00</start><end>2025-03-15T08:20:00.000+07:00</end><start_location /><hamlet>{hamlet}</hamlet><activity_date>{activity_date}</activity_date><consent>yes</consent><woman_name>{name}</woman_name><birth_year>1998</birth_year><household_code>{household}</household_code><ethnicity>03</ethnicity><pregnancy_status>pregnant</pregnancy_status><topics>antenatal facility_delivery</topics><referred>no</referred><policy_package>none</policy_package><location>{location}</location><photo /><meta><instanceID>{instance_id}</instanceID><instanceName>Tư vấn sinh đẻ an toàn - {activity_date} - {hamlet}</instanceName></meta></data>"
    )
    .into_bytes()
}

#[tokio::test]
async fn ingest_records_the_hamlet_and_key_sets_the_name_apart_and_flags_geotags() {
    let (server, admin) = server_with_hamlets().await;
    let res = admin
        .put("/api/v1/users/lan/hamlets")
        .json(&json!({"hamlet_codes": ["DEMO-04231-1", "DEMO-04012-1"]}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(res.status(), 200);
    let collect = collector(&server);
    // In Mộc Châu district, at the centre of a Mộc Châu hamlet.
    let moc_chau = "20.85508 104.6782 700.0 6.0";

    // Filed for a hamlet in Sốp Cộp, geotagged in Mộc Châu, before the reform.
    let first = new_instance_id();
    let xml = outreach(
        &first,
        "DEMO-04231-1",
        "2025-03-15",
        "Lò Thị Mai",
        "HH-07",
        moc_chau,
    );
    assert_eq!(collect.submit(&xml, &[], false).await.status(), 201);
    let s = admin.json(&format!("/api/v1/submissions/{first}")).await;
    assert_eq!(s["hamlet_code"], "DEMO-04231-1");
    assert_eq!(s["activity_date"], "2025-03-15");
    assert_eq!(s["flags"], json!(["outside_district", "far_from_hamlet"]));
    let key = s["beneficiary_key"]
        .as_str()
        .expect("beneficiary key")
        .to_string();
    assert_eq!(key.len(), 64);
    // The name is set apart: not among the answers, only named as withheld.
    assert!(s["fields"].get("woman_name").is_none());
    assert_eq!(s["fields"]["household_code"], "HH-07");
    assert_eq!(s["sensitive_fields"], json!(["woman_name"]));
    assert!(!s.to_string().contains("Mai"), "{s}");
    // The change feed withholds it the same way. (On PostgreSQL the feed shows a change once
    // older writing transactions, of the other tests too, have ended: wait for it.)
    let mut feed = Value::Null;
    for _ in 0..500 {
        feed = admin
            .json("/api/v1/submissions?updated_since=&limit=1000")
            .await;
        if feed.to_string().contains(&first) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let entry = feed["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|c| c["instance_id"] == first.as_str())
        .expect("in the feed");
    assert_eq!(
        entry["submission"]["sensitive_fields"],
        json!(["woman_name"])
    );
    assert_eq!(entry["submission"]["fields"]["household_code"], "HH-07");
    assert!(entry["submission"]["fields"].get("woman_name").is_none());
    assert!(!feed.to_string().contains("Mai"), "{feed}");

    // The same woman, written differently, on another visit: the same key.
    let second = new_instance_id();
    let xml = outreach(
        &second,
        "DEMO-04231-1",
        "2025-04-02",
        "  LÒ thi   mai ",
        "hh-07",
        "20.78747 103.5607 400.0 5.0",
    );
    assert_eq!(collect.submit(&xml, &[], false).await.status(), 201);
    let s = admin.json(&format!("/api/v1/submissions/{second}")).await;
    assert_eq!(s["beneficiary_key"], key.as_str());
    assert_eq!(s["flags"], json!([]), "in its hamlet: nothing to flag");

    // Another woman of the same household: another key.
    let third = new_instance_id();
    let xml = outreach(
        &third,
        "DEMO-04231-1",
        "2025-04-02",
        "Lò Thị Hoa",
        "HH-07",
        "20.78747 103.5607 400.0 5.0",
    );
    assert_eq!(collect.submit(&xml, &[], false).await.status(), 201);
    let s = admin.json(&format!("/api/v1/submissions/{third}")).await;
    assert_ne!(s["beneficiary_key"], key.as_str());

    // After the reform there are no districts: a Mộc Châu geotag for a Sốp Cộp hamlet is
    // only far from its hamlet.
    let fourth = new_instance_id();
    let xml = outreach(
        &fourth,
        "DEMO-04231-1",
        "2025-07-15",
        "Cầm Thị Lan",
        "HH-09",
        moc_chau,
    );
    assert_eq!(collect.submit(&xml, &[], false).await.status(), 201);
    let s = admin.json(&format!("/api/v1/submissions/{fourth}")).await;
    assert_eq!(s["flags"], json!(["far_from_hamlet"]));

    // Outside the province, inaccurate, a hamlet not assigned, an activity in the future:
    // flagged, and accepted all the same.
    let fifth = new_instance_id();
    let xml = outreach(
        &fifth,
        "DEMO-03646-1",
        "2099-01-01",
        "Cầm Thị Lan",
        "HH-09",
        "10.77 106.70 5.0 250.0",
    );
    let res = collect.submit(&xml, &[], false).await;
    assert_eq!(res.status(), 201);
    let s = admin.json(&format!("/api/v1/submissions/{fifth}")).await;
    assert_eq!(
        s["flags"],
        json!([
            "low_accuracy",
            "outside_province",
            "far_from_hamlet",
            "hamlet_not_assigned",
            "activity_in_future"
        ])
    );

    // Consent refused: no identity, no key; no location question and no fix from the phone.
    let sixth = new_instance_id();
    let refused = format!(
        "<?xml version='1.0' encoding='UTF-8' ?><data id=\"safe_birth_outreach\" version=\"2025040302\"><start_location /><hamlet>DEMO-04012-1</hamlet><activity_date>2025-03-16</activity_date><consent>no</consent><meta><instanceID>{sixth}</instanceID></meta></data>"
    );
    assert_eq!(
        collect
            .submit(refused.as_bytes(), &[], false)
            .await
            .status(),
        201
    );
    let s = admin.json(&format!("/api/v1/submissions/{sixth}")).await;
    assert_eq!(s["beneficiary_key"], Value::Null);
    assert_eq!(s["flags"], json!(["no_location"]));
    assert_eq!(s["sensitive_fields"], json!([]));

    // The list shows hamlet, activity date and flags, never the name.
    let list = admin.all_submissions("&form=safe_birth_outreach").await;
    assert_eq!(list.len(), 6);
    let row = list
        .iter()
        .find(|r| r["instance_id"] == first.as_str())
        .expect("first in the list");
    assert_eq!(row["hamlet_code"], "DEMO-04231-1");
    assert_eq!(row["activity_date"], "2025-03-15");
    assert_eq!(row["flags"], json!(["outside_district", "far_from_hamlet"]));
    let text = serde_json::to_string(&list).expect("json");
    assert!(
        !text.contains("Lò Thị") && !text.contains("Cầm Thị"),
        "{text}"
    );

    // An encrypted submission's answers are out of reach: nothing is derived or flagged.
    let sealed = new_instance_id();
    let encrypted = format!(
        "<data id=\"safe_birth_outreach\" version=\"2025040302\" encrypted=\"yes\" xmlns=\"http://www.opendatakit.org/xforms/encrypted\"><base64EncryptedKey>AbCd==</base64EncryptedKey><meta xmlns=\"http://openrosa.org/xforms\"><instanceID>{sealed}</instanceID></meta><encryptedXmlFile>submission.xml.enc</encryptedXmlFile></data>"
    );
    let file = common::collect::Attachment {
        name: "submission.xml.enc".into(),
        bytes: random_bytes(256),
        content_type: "application/octet-stream".into(),
    };
    assert_eq!(
        collect
            .submit(encrypted.as_bytes(), &[file], false)
            .await
            .status(),
        201
    );
    let s = admin.json(&format!("/api/v1/submissions/{sealed}")).await;
    assert_eq!(s["flags"], json!([]));
    assert_eq!(s["hamlet_code"], Value::Null);

    // An edit is a new version with its own checks: moved to the hamlet's place.
    let edit_id = new_instance_id();
    let edited = String::from_utf8(outreach(
        &edit_id,
        "DEMO-04231-1",
        "2025-03-15",
        "Lò Thị Mai",
        "HH-07",
        "20.78747 103.5607 400.0 5.0",
    ))
    .expect("utf8")
    .replace(
        "</instanceID>",
        &format!("</instanceID><deprecatedID>{first}</deprecatedID>"),
    );
    assert_eq!(
        collect.submit(edited.as_bytes(), &[], false).await.status(),
        201
    );
    let s = admin.json(&format!("/api/v1/submissions/{first}")).await;
    assert_eq!(s["current_instance_id"], edit_id.as_str());
    assert_eq!(s["flags"], json!([]));
    assert_eq!(s["beneficiary_key"], key.as_str());
}

#[tokio::test]
async fn geotag_limits_are_configurable() {
    let server = Server::start_with(&[
        "--low-accuracy-metres",
        "5",
        "--far-from-hamlet-metres",
        "1",
    ])
    .await;
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
    assert!(out.status.success());
    let admin = server.admin().await;
    admin
        .create_user("lan", "lan-password-1", "collector")
        .await;
    let collect = collector(&server);
    let id = new_instance_id();
    // 6 m accuracy, about 15 m from the hamlet's centre.
    let xml = outreach(
        &id,
        "DEMO-04231-1",
        "2025-04-02",
        "Lò Thị Mai",
        "HH-07",
        "20.78760 103.5607 400.0 6.0",
    );
    assert_eq!(collect.submit(&xml, &[], false).await.status(), 201);
    let s = admin.json(&format!("/api/v1/submissions/{id}")).await;
    assert_eq!(s["flags"], json!(["low_accuracy", "far_from_hamlet"]));
}

#[tokio::test]
async fn a_shipped_form_filled_by_javarosa_is_stored_with_its_hamlet_and_key() {
    let Some(tools) =
        Tools::find("a_shipped_form_filled_by_javarosa_is_stored_with_its_hamlet_and_key")
    else {
        return;
    };
    let (_server, admin) = server_with_hamlets().await;
    let res = admin
        .put("/api/v1/users/lan/hamlets")
        .json(&json!({"hamlet_codes": ["DEMO-04012-1", "DEMO-04012-3"]}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(res.status(), 200);
    // The phone is set up from the QR code's settings and downloads form and hamlet list.
    let settings: Value = admin.json("/api/v1/users/lan/collect-settings.json").await;
    let phone = Collect::with_key(settings["general"]["server_url"].as_str().expect("url"));
    let (download_url, _) = listed(&phone, "safe_birth_outreach").await;
    let form = phone
        .get(&download_url)
        .await
        .bytes()
        .await
        .expect("form")
        .to_vec();
    let hamlets = hamlet_list(&phone, "safe_birth_outreach").await;

    let answers = "\
/data/hamlet=DEMO-04012-3
/data/activity_date=2025-03-15
/data/consent=yes
/data/woman_name=Lò Thị Mai
/data/birth_year=1998
/data/household_code=HH-07
/data/ethnicity=03
/data/pregnancy_status=pregnant
/data/topics=antenatal danger_signs
/data/referred=yes
/data/referral_place=commune_health_station
/data/policy_package=antenatal_care
/data/anc_visits_supported=2
/data/location=20.93546 104.57068 700.0 5.0
";
    let instance =
        tools.fill_with_media(&form, &[("hamlets.csv", hamlets.as_bytes())], answers, None);
    let text = String::from_utf8(instance.clone()).expect("utf8");
    assert!(text.contains("<hamlet>DEMO-04012-3</hamlet>"), "{text}");
    let doc = roxmltree::Document::parse(&text).expect("instance");
    let id = doc
        .descendants()
        .find(|n| n.has_tag_name("instanceID"))
        .and_then(|n| n.text())
        .expect("instanceID")
        .to_string();

    assert_eq!(phone.head_submission().await.status(), 204);
    assert_eq!(phone.submit(&instance, &[], false).await.status(), 201);
    let s = admin.json(&format!("/api/v1/submissions/{id}")).await;
    assert_eq!(s["form_version"], "2025040302");
    assert_eq!(s["hamlet_code"], "DEMO-04012-3");
    assert_eq!(s["activity_date"], "2025-03-15");
    assert_eq!(s["flags"], json!([]));
    assert!(s["fields"].get("woman_name").is_none());
    assert_eq!(s["fields"]["birth_year"], 1998);
    assert_eq!(s["sensitive_fields"], json!(["woman_name"]));

    // The same woman entered by hand elsewhere gets the key JavaRosa's submission got.
    let other = new_instance_id();
    let xml = outreach(
        &other,
        "DEMO-04012-3",
        "2025-05-01",
        "LO THI MAI",
        "hh-07",
        "20.93546 104.57068 700.0 5.0",
    );
    assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);
    let again = admin.json(&format!("/api/v1/submissions/{other}")).await;
    assert!(s["beneficiary_key"].is_string());
    assert_eq!(again["beneficiary_key"], s["beneficiary_key"]);
}
