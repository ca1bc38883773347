//! The Project 8 report workbook read back with calamine: every figure equals the values API's,
//! on both maps and both bases, suppression included.

mod common;

use std::collections::BTreeMap;
use std::io::Cursor;

use calamine::{Data, Reader};
use common::*;
use serde_json::{json, Value};

fn dialogue(id: &str, hamlet: &str, date: &str, total: u32, women: u32) -> Vec<u8> {
    format!(
        "<?xml version='1.0' encoding='UTF-8' ?><data id=\"policy_dialogue\" version=\"2025040301\"><start>2025-07-10T08:00:00.000+07:00</start><end>2025-07-10T09:00:00.000+07:00</end><start_location /><hamlet>{hamlet}</hamlet><activity_date>{date}</activity_date><level>commune</level><topic>gender_equality</topic><topic_other /><chair>Chủ tịch UBND xã</chair><participants_total>{total}</participants_total><participants_women>{women}</participants_women><participants_ethnic_minority>10</participants_ethnic_minority><participants_children>0</participants_children><issues_raised>Nước sạch</issues_raised><commitments /><location>21.0 103.5 600.0 5.0</location><attendance_photo /><attendance_photo_2 /><meta><instanceID>{id}</instanceID></meta></data>"
    )
    .into_bytes()
}

fn trusted_address(id: &str, hamlet: &str, date: &str, women: u32, men: u32) -> Vec<u8> {
    format!(
        "<?xml version='1.0' encoding='UTF-8' ?><data id=\"trusted_address_report\" version=\"2025040301\"><start_location /><hamlet>{hamlet}</hamlet><activity_date>{date}</activity_date><model_code>TA-1</model_code><model_active>yes</model_active><cases_received>1</cases_received><people_supported_women>{women}</people_supported_women><people_supported_men>{men}</people_supported_men><meta><instanceID>{id}</instanceID></meta></data>"
    )
    .into_bytes()
}

/// (indicator, measure, level, area code, area name) → the five figures as the workbook shows
/// them. A commune whose code outlived a boundary change is two areas with one code.
/// The values API lists such an area once per registry record, so a key may hold several rows.
type Figures = BTreeMap<(String, String, String, String, String), Vec<[Value; 5]>>;

fn level_of(name: &str) -> &'static str {
    match name {
        "Tỉnh" => "province",
        "Huyện" => "district",
        "Xã" => "commune",
        other => panic!("unknown level {other}"),
    }
}

fn cell(d: &Data) -> Value {
    match d {
        Data::Empty => Value::Null,
        Data::Float(f) => json!(f),
        Data::Int(i) => json!(*i as f64),
        Data::String(s) => json!(s),
        other => panic!("unexpected cell {other:?}"),
    }
}

/// The workbook's rows, by sheet, and its preamble lines.
fn read_workbook(bytes: Vec<u8>) -> (BTreeMap<String, Figures>, Vec<String>) {
    let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(bytes)).expect("xlsx");
    let mut sheets = BTreeMap::new();
    let mut preamble = Vec::new();
    for name in book.sheet_names() {
        let range = book.worksheet_range(&name).expect("sheet");
        let rows: Vec<Vec<Data>> = range.rows().map(|r| r.to_vec()).collect();
        if preamble.is_empty() {
            preamble = rows[..5].iter().map(|r| r[0].to_string()).collect();
        }
        assert_eq!(rows[6][1].to_string(), "Mã chỉ tiêu", "{name}");
        let mut figures = Figures::new();
        for r in &rows[7..] {
            let key = (
                r[1].to_string(),
                r[3].to_string(),
                level_of(&r[5].to_string()).to_string(),
                r[6].to_string(),
                r[7].to_string()
                    .trim_start_matches("Toàn tỉnh (")
                    .trim_end_matches(')')
                    .to_string(),
            );
            let values = [
                cell(&r[8]),
                cell(&r[9]),
                cell(&r[10]),
                cell(&r[11]),
                cell(&r[12]),
            ];
            figures.entry(key).or_default().push(values);
        }
        sheets.insert(name, figures);
    }
    (sheets, preamble)
}

fn api_figures(table: &Value) -> Figures {
    let mut out = Figures::new();
    for r in table["rows"].as_array().expect("rows") {
        {
            let value = if r["suppressed"] == true && r["value"].is_null() {
                json!("<5")
            } else {
                r["value"].clone()
            };
            let f = |v: &Value| match v.as_f64() {
                Some(x) => json!(x),
                None => v.clone(),
            };
            let key = (
                r["indicator"].as_str().expect("indicator").to_string(),
                r["measure"].as_str().expect("measure").to_string(),
                r["level"].as_str().expect("level").to_string(),
                r["area"].as_str().expect("area").to_string(),
                r["area_name"].as_str().expect("area name").to_string(),
            );
            out.entry(key).or_default().push([
                f(&value),
                f(&r["numerator"]),
                f(&r["denominator"]),
                f(&r["target"]),
                f(&r["achievement"]),
            ]);
        }
    }
    out
}

/// Adds `more` to `into`, keeping every row.
fn extend(into: &mut Figures, more: Figures) {
    for (k, mut v) in more {
        into.entry(k).or_default().append(&mut v);
    }
}

#[tokio::test]
async fn every_figure_of_the_report_workbook_equals_the_values_api() {
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
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = server.admin().await;
    admin
        .create_user("lan", "lan-password-1", "collector")
        .await;
    let phone = collector(&server);
    let mut approved = Vec::new();
    // Before and after the reform, in two districts; trusted-address reports small (suppressed)
    // and large.
    for (i, (hamlet, date)) in [
        ("DEMO-04012-1", "2025-03-10"),
        ("DEMO-04012-3", "2025-08-05"),
        ("DEMO-04231-1", "2025-07-10"),
        ("DEMO-04231-2", "2025-09-01"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = new_instance_id();
        let xml = dialogue(&id, hamlet, date, 20 + i as u32, 10 + i as u32);
        assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);
        if i % 2 == 0 {
            approved.push(id);
        }
        let id = new_instance_id();
        let (women, men) = if i == 2 { (9, 3) } else { (2, 1) };
        let xml = trusted_address(&id, hamlet, date, women, men);
        assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);
        if i != 1 {
            approved.push(id);
        }
    }
    for id in &approved {
        let res = admin
            .post(&format!("/api/v1/submissions/{id}/review"))
            .json(&json!({ "state": "approved" }))
            .send()
            .await
            .expect("review");
        assert_eq!(res.status(), 200);
    }
    let res = admin
        .post("/api/v1/indicators/targets")
        .json(&json!({ "targets": [{ "indicator": "P8-08", "measure": "dialogues", "area": "04231", "year": 2025, "target": 4 }] }))
        .send()
        .await
        .expect("targets");
    assert!(res.status().is_success(), "targets: {}", res.status());

    let mut saw_suppressed = false;
    for map in ["current", "as-recorded"] {
        for basis in ["confirmed", "provisional"] {
            let res = admin
                .get(&format!(
                    "/api/v1/reports/project8.xlsx?year=2025&map={map}&basis={basis}"
                ))
                .send()
                .await
                .expect("report");
            assert_eq!(res.status(), 200);
            assert_eq!(
                res.headers()["content-type"],
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            );
            let (sheets, preamble) = read_workbook(res.bytes().await.expect("body").to_vec());
            assert!(
                preamble[1].starts_with("Số liệu tính đến: "),
                "{preamble:?}"
            );
            assert!(preamble[2].contains(&format!("({basis})")), "{preamble:?}");
            assert!(preamble[3].contains(&format!("({map})")), "{preamble:?}");
            let names: Vec<&String> = sheets.keys().collect();
            assert_eq!(
                names,
                [
                    "Nội dung 1",
                    "Nội dung 2",
                    "Nội dung 3",
                    "Nội dung 4",
                    "Tổng hợp"
                ]
            );

            let values = |level: &str| {
                format!(
                    "/api/v1/indicators/values?period=2025&level={level}&map={map}&basis={basis}"
                )
            };
            let province = api_figures(&admin.json(&values("province")).await);
            let mut expected = province.clone();
            extend(
                &mut expected,
                api_figures(&admin.json(&values("commune")).await),
            );
            if map == "as-recorded" {
                extend(
                    &mut expected,
                    api_figures(&admin.json(&values("district")).await),
                );
            }
            assert_eq!(sheets["Tổng hợp"], province, "{map} {basis}: totals");
            let mut in_sheets = Figures::new();
            for (name, figures) in &sheets {
                if name != "Tổng hợp" {
                    extend(&mut in_sheets, figures.clone());
                }
            }
            assert_eq!(in_sheets, expected, "{map} {basis}");
            assert!(in_sheets
                .keys()
                .any(|(_, _, level, _, _)| level == "commune"));
            assert_eq!(
                in_sheets
                    .keys()
                    .any(|(_, _, level, _, _)| level == "district"),
                map == "as-recorded"
            );
            saw_suppressed |= in_sheets.values().flatten().any(|v| v[0] == json!("<5"));
            // The target and achievement of P8-08 in Sốp Cộp commune.
            if map == "current" {
                let sop_cop = in_sheets
                    .iter()
                    .find(|((i, m, l, a, _), _)| {
                        (i.as_str(), m.as_str(), l.as_str(), a.as_str())
                            == ("P8-08", "dialogues", "commune", "04231")
                    })
                    .map(|(_, v)| &v[0])
                    .expect("Sốp Cộp's dialogues");
                assert_eq!(sop_cop[3], json!(4.0));
                assert!(sop_cop[4].is_number(), "{sop_cop:?}");
            }
        }
    }
    assert!(saw_suppressed, "a small sensitive cell is suppressed");

    for (query, code) in [
        ("year=20x5", "bad_year"),
        ("year=2025&map=old", "bad_map"),
        ("year=2025&basis=final", "bad_basis"),
        ("year=2025&colour=red", "bad_query"),
    ] {
        let res = admin
            .get(&format!("/api/v1/reports/project8.xlsx?{query}"))
            .send()
            .await
            .expect("report");
        assert_eq!(res.status(), 400, "{query}");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["error"]["code"], code, "{query}");
    }
    let lan = Admin::login(&server, "lan", "lan-password-1").await;
    let res = lan
        .get("/api/v1/reports/project8.xlsx?year=2025")
        .send()
        .await
        .expect("report");
    assert_eq!(res.status(), 403);
}
