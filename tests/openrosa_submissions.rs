//! Submissions as Collect sends them: HEAD then multipart POST, retries, split uploads, edits,
//! and every kind of bad request.

mod common;

use common::collect::{Attachment, Collect, DEVICE_ID};
use common::*;
use serde_json::Value;

#[tokio::test]
async fn head_answers_204_with_the_accepted_length() {
    let (server, _admin) = server_with_forms().await;
    let collect = collector(&server);
    let res = collect.head_submission().await;
    assert_eq!(
        res.status(),
        204,
        "Collect treats any other 2xx as an error"
    );
    assert_eq!(res.headers()["x-openrosa-version"], "1.0");
    assert_eq!(
        res.headers()["x-openrosa-accept-content-length"],
        "52428800"
    );
}

#[tokio::test]
async fn a_submission_with_a_photo_is_stored_with_its_metadata_and_bytes() {
    let (server, admin) = server_with_forms().await;
    let collect = collector(&server);
    assert_eq!(collect.head_submission().await.status(), 204);
    let id = new_instance_id();
    let xml = all_features_instance(&id, None, "Lò Thị Mai", 5, Some("photo1.jpg"));
    let photo = random_bytes(150_000);
    let res = collect
        .submit(
            &xml,
            &[Attachment::jpeg("photo1.jpg", photo.clone())],
            false,
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["content-type"], "text/xml; charset=utf-8");
    assert_eq!(res.headers()["x-openrosa-version"], "1.0");
    let message = openrosa_message(&res.text().await.expect("body"));
    assert!(message.contains("received"), "{message}");

    let s = admin.json(&format!("/api/v1/submissions/{id}")).await;
    assert_eq!(s["instance_id"], id.as_str());
    assert_eq!(s["form_id"], "all_features");
    assert_eq!(s["form_version"], "2025040301");
    assert_eq!(s["collector"], "lan");
    assert_eq!(s["device_id"], DEVICE_ID);
    assert_eq!(s["review_state"], "received");
    assert_eq!(s["instance_name"], "Lò Thị Mai - 2025-04-03");
    assert_eq!(s["fields"]["household/respondent_name"], "Lò Thị Mai");
    assert_eq!(s["fields"]["household/household_size"], 5);
    assert_eq!(
        s["fields"]["household/water_sources"],
        serde_json::json!(["tap", "rain"])
    );
    assert_eq!(s["fields"]["members"].as_array().map(Vec::len), Some(2));
    assert_eq!(s["fields"]["members"][1]["member_age"], 39);
    assert_eq!(s["geopoint"]["lat"], 21.3256);
    assert_eq!(s["geopoint"]["lon"], 103.9188);
    assert_eq!(s["geopoint"]["alt"], 650.0);
    assert_eq!(s["geopoint"]["accuracy"], 8.5);
    let att = &s["attachments"][0];
    assert_eq!(att["name"], "photo1.jpg");
    assert_eq!(att["size"], 150_000);
    assert_eq!(att["sha256"], sha256_hex(&photo).as_str());
    assert_eq!(att["content_type"], "image/jpeg");
    assert_eq!(att["complete"], true);
    assert_eq!(s["versions"].as_array().map(Vec::len), Some(1));

    let res = admin
        .get(&format!("/api/v1/submissions/{id}/attachments/photo1.jpg"))
        .send()
        .await
        .expect("attachment");
    assert_eq!(res.status(), 200);
    // The phone called it image/jpeg, but random bytes are not served as an image.
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    assert!(res.headers()["content-disposition"]
        .to_str()
        .unwrap_or("")
        .starts_with("attachment"));
    assert_eq!(res.bytes().await.expect("bytes").as_ref(), photo.as_slice());

    let res = admin
        .get(&format!("/api/v1/submissions/{id}/xml"))
        .send()
        .await
        .expect("xml");
    assert_eq!(
        res.bytes().await.expect("bytes").as_ref(),
        xml.as_slice(),
        "raw XML unchanged"
    );

    let list = admin.all_submissions("&form=all_features").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["instance_id"], id.as_str());
}

#[tokio::test]
async fn identical_reposts_are_accepted_once_and_different_xml_is_a_conflict() {
    let (server, admin) = server_with_forms().await;
    let collect = collector(&server);
    let id = new_instance_id();
    let xml = all_features_instance(&id, None, "Mai", 3, Some("photo1.jpg"));
    let photo = Attachment::jpeg("photo1.jpg", random_bytes(1000));
    for _ in 0..3 {
        let res = collect
            .submit(&xml, std::slice::from_ref(&photo), false)
            .await;
        assert_eq!(res.status(), 201);
    }
    let other = all_features_instance(&id, None, "Mai", 4, Some("photo1.jpg"));
    let res = collect.submit(&other, &[], false).await;
    assert_eq!(res.status(), 409);
    assert_eq!(res.headers()["content-type"], "text/xml; charset=utf-8");
    assert!(openrosa_message(&res.text().await.expect("body")).contains("different"));

    assert_eq!(admin.all_submissions("").await.len(), 1);
    let s = admin.json(&format!("/api/v1/submissions/{id}")).await;
    assert_eq!(
        s["fields"]["household/household_size"], 3,
        "the first copy stands"
    );
}

#[tokio::test]
async fn split_uploads_are_merged_and_missing_files_complete_later() {
    let (server, admin) = server_with_forms().await;
    let collect = collector(&server);
    let id = new_instance_id();
    let xml = two_photos_instance(&id, "split");
    let a = random_bytes(40_000);
    let b = random_bytes(50_000);

    // Collect's split: every POST repeats the full XML; all but the last say *isIncomplete*.
    let res = collect
        .submit(&xml, &[Attachment::jpeg("a.jpg", a.clone())], true)
        .await;
    assert_eq!(res.status(), 201);
    let s = admin.json(&format!("/api/v1/submissions/{id}")).await;
    let complete: Vec<(String, bool)> = s["attachments"]
        .as_array()
        .expect("array")
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or("").to_string(),
                a["complete"] == true,
            )
        })
        .collect();
    assert_eq!(
        complete,
        vec![("a.jpg".to_string(), true), ("b.jpg".to_string(), false)]
    );
    let res = admin
        .get(&format!("/api/v1/submissions/{id}/attachments/b.jpg"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 404);

    let res = collect
        .submit(&xml, &[Attachment::jpeg("b.jpg", b.clone())], false)
        .await;
    assert_eq!(res.status(), 201);
    let s = admin.json(&format!("/api/v1/submissions/{id}")).await;
    assert!(s["attachments"]
        .as_array()
        .expect("array")
        .iter()
        .all(|a| a["complete"] == true));
    for (name, bytes) in [("a.jpg", &a), ("b.jpg", &b)] {
        let got = admin
            .get(&format!("/api/v1/submissions/{id}/attachments/{name}"))
            .send()
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(got.as_ref(), bytes.as_slice());
    }
    assert_eq!(admin.all_submissions("").await.len(), 1);

    // Parts the instance does not name are ignored, not stored.
    let id2 = new_instance_id();
    let xml2 = two_photos_instance(&id2, "extra");
    let res = collect
        .submit(
            &xml2,
            &[
                Attachment::jpeg("a.jpg", random_bytes(10)),
                Attachment::jpeg("unexpected.jpg", random_bytes(10)),
            ],
            false,
        )
        .await;
    assert_eq!(res.status(), 201);
    let s = admin.json(&format!("/api/v1/submissions/{id2}")).await;
    let names: Vec<&str> = s["attachments"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, vec!["a.jpg", "b.jpg"]);
}

#[tokio::test]
async fn an_edit_becomes_the_current_version_and_keeps_the_attachments() {
    let (server, admin) = server_with_forms().await;
    let collect = collector(&server);
    let original = new_instance_id();
    let photo = random_bytes(2000);
    let res = collect
        .submit(
            &all_features_instance(&original, None, "Mai", 3, Some("photo1.jpg")),
            &[Attachment::jpeg("photo1.jpg", photo.clone())],
            false,
        )
        .await;
    assert_eq!(res.status(), 201);

    // The edit names the original in deprecatedID and does not resend the unchanged photo.
    let edit = new_instance_id();
    let edit_xml = all_features_instance(&edit, Some(&original), "Mai", 4, Some("photo1.jpg"));
    let res = collect.submit(&edit_xml, &[], false).await;
    assert_eq!(res.status(), 201);

    for lookup in [&original, &edit] {
        let s = admin.json(&format!("/api/v1/submissions/{lookup}")).await;
        assert_eq!(s["instance_id"], original.as_str());
        assert_eq!(s["current_instance_id"], edit.as_str());
        assert_eq!(s["review_state"], "edited");
        assert_eq!(s["fields"]["household/household_size"], 4);
        assert_eq!(s["attachments"][0]["complete"], true);
        assert_eq!(s["attachments"][0]["sha256"], sha256_hex(&photo).as_str());
        let versions: Vec<(&str, bool)> = s["versions"]
            .as_array()
            .expect("array")
            .iter()
            .map(|v| {
                (
                    v["instance_id"].as_str().unwrap_or(""),
                    v["current"] == true,
                )
            })
            .collect();
        assert_eq!(
            versions,
            vec![(original.as_str(), false), (edit.as_str(), true)]
        );
    }
    assert_eq!(admin.all_submissions("").await.len(), 1);
    let old = admin
        .get(&format!(
            "/api/v1/submissions/{original}/xml?version={original}"
        ))
        .send()
        .await
        .expect("xml")
        .text()
        .await
        .expect("text");
    assert!(
        old.contains("<household_size>3</household_size>"),
        "every version is kept"
    );

    // Editing the replaced copy again is refused: that phone's copy is out of date.
    let stale = all_features_instance(&new_instance_id(), Some(&original), "Mai", 9, None);
    let res = collect.submit(&stale, &[], false).await;
    assert_eq!(res.status(), 409);
    assert!(openrosa_message(&res.text().await.expect("body")).contains("newer"));
}

#[tokio::test]
async fn an_edit_that_arrives_before_its_original_ends_up_the_same() {
    let (server, admin) = server_with_forms().await;
    let collect = collector(&server);
    let original = new_instance_id();
    let edit = new_instance_id();
    let res = collect
        .submit(
            &all_features_instance(&edit, Some(&original), "Mai", 4, None),
            &[],
            false,
        )
        .await;
    assert_eq!(res.status(), 201);
    let res = collect
        .submit(
            &all_features_instance(&original, None, "Mai", 3, None),
            &[],
            false,
        )
        .await;
    assert_eq!(res.status(), 201);

    let all = admin.all_submissions("").await;
    assert_eq!(all.len(), 1, "one submission with two versions");
    let s = admin.json(&format!("/api/v1/submissions/{original}")).await;
    assert_eq!(s["instance_id"], original.as_str());
    assert_eq!(s["current_instance_id"], edit.as_str());
    assert_eq!(s["fields"]["household/household_size"], 4);
    assert_eq!(s["versions"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn older_form_versions_keep_accepting_and_closed_ones_refuse() {
    let (server, admin) = server_with_forms().await;
    let v2 = String::from_utf8(std::fs::read(fixture("forms/all_features.xml")).expect("fixture"))
        .expect("utf8")
        .replace("version=\"2025040301\"", "version=\"2025040302\"");
    assert_eq!(admin.upload_form(v2.as_bytes(), true).await.0, 201);
    let collect = collector(&server);
    let id = new_instance_id();
    let res = collect
        .submit(
            &all_features_instance(&id, None, "Old phone", 2, None),
            &[],
            false,
        )
        .await;
    assert_eq!(res.status(), 201, "a phone still on the old version");
    let s = admin.json(&format!("/api/v1/submissions/{id}")).await;
    assert_eq!(s["form_version"], "2025040301");

    let res = admin
        .post("/api/v1/forms/all_features/versions/2025040301/close")
        .send()
        .await
        .expect("close");
    assert_eq!(res.status(), 200);
    let res = collect
        .submit(
            &all_features_instance(&new_instance_id(), None, "Late", 2, None),
            &[],
            false,
        )
        .await;
    assert_eq!(res.status(), 409);
    assert!(openrosa_message(&res.text().await.expect("body")).contains("closed"));
    // A retry of something already stored is still acknowledged after the close.
    let res = collect
        .submit(
            &all_features_instance(&id, None, "Old phone", 2, None),
            &[],
            false,
        )
        .await;
    assert_eq!(res.status(), 201);
}

async fn post_raw(
    collect: &Collect,
    build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> (u16, String) {
    let url = collect.url("/submission");
    let res = collect.send(reqwest::Method::POST, &url, build).await;
    let status = res.status().as_u16();
    let ct = res.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(
        ct, "text/xml; charset=utf-8",
        "errors are OpenRosaResponse XML"
    );
    let body = res.text().await.expect("body");
    (status, openrosa_message(&body))
}

fn xml_part(xml: Vec<u8>) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().part(
        "xml_submission_file",
        reqwest::multipart::Part::bytes(xml)
            .file_name("x.xml")
            .mime_str("text/xml")
            .expect("mime"),
    )
}

#[tokio::test]
async fn bad_submissions_get_clear_errors_and_store_nothing() {
    let (server, admin) = server_with_forms().await;
    let collect = collector(&server);
    assert_eq!(collect.head_submission().await.status(), 204);
    let id = new_instance_id();
    let good = all_features_instance(&id, None, "Mai", 3, None);

    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("truncated", good[..good.len() / 2].to_vec(), 400),
        ("not xml", b"hello, world".to_vec(), 400),
        (
            "no instanceID",
            String::from_utf8(good.clone()).expect("utf8").replace(&format!("<instanceID>{id}</instanceID>"), "").into_bytes(),
            400,
        ),
        (
            "no form id",
            String::from_utf8(good.clone()).expect("utf8").replace("id=\"all_features\" ", "").into_bytes(),
            400,
        ),
        (
            "unknown form",
            String::from_utf8(good.clone()).expect("utf8").replace("all_features", "no_such_form").into_bytes(),
            404,
        ),
        (
            "unknown version",
            String::from_utf8(good.clone()).expect("utf8").replace("2025040301", "1999").into_bytes(),
            404,
        ),
        (
            "entity expansion",
            format!("<?xml version=\"1.0\"?><!DOCTYPE d [<!ENTITY a \"aaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]><data id=\"all_features\" version=\"2025040301\"><x>&b;</x><meta><instanceID>{id}</instanceID></meta></data>").into_bytes(),
            400,
        ),
    ];
    for (what, xml, expected) in cases {
        let (status, message) = post_raw(&collect, |r| r.multipart(xml_part(xml.clone()))).await;
        assert_eq!(status, expected, "{what}: {message}");
        assert!(
            message.len() > 10,
            "{what}: a message a collector can read: {message}"
        );
    }

    let (status, message) = post_raw(&collect, |r| {
        r.multipart(reqwest::multipart::Form::new().part(
            "photo1.jpg",
            reqwest::multipart::Part::bytes(vec![1, 2, 3]).file_name("photo1.jpg"),
        ))
    })
    .await;
    assert_eq!(status, 400);
    assert!(message.contains("xml_submission_file"), "{message}");

    let (status, _) = post_raw(&collect, |r| {
        r.header("content-type", "text/xml").body(good.clone())
    })
    .await;
    assert_eq!(status, 400, "not multipart");

    assert!(admin.all_submissions("").await.is_empty(), "nothing stored");
    // The instance is still accepted when sent properly.
    assert_eq!(collect.submit(&good, &[], false).await.status(), 201);
}

#[tokio::test]
async fn uploads_over_the_limit_get_413_and_the_limit_is_advertised() {
    let server = Server::start_with(&["--max-submission-bytes", "100000"]).await;
    let admin = server.admin().await;
    let xml = std::fs::read(fixture("forms/all_features.xml")).expect("fixture");
    assert_eq!(admin.upload_form(&xml, true).await.0, 201);
    admin
        .create_user("lan", "lan-password-1", "collector")
        .await;
    let collect = collector(&server);
    let res = collect.head_submission().await;
    assert_eq!(res.headers()["x-openrosa-accept-content-length"], "100000");
    let id = new_instance_id();
    let res = collect
        .submit(
            &all_features_instance(&id, None, "Big", 3, Some("photo1.jpg")),
            &[Attachment::jpeg("photo1.jpg", random_bytes(200_000))],
            false,
        )
        .await;
    assert_eq!(res.status(), 413);
    assert!(openrosa_message(&res.text().await.expect("body")).contains("100000"));
    let res = admin
        .get(&format!("/api/v1/submissions/{id}"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unknown_submission");
}

#[tokio::test]
async fn the_list_filters_and_pages_with_a_stable_cursor() {
    let (server, admin) = server_with_forms().await;
    admin
        .create_user("hoa", "hoa-password-1", "collector")
        .await;
    let lan = collector(&server);
    let hoa = Collect::with_password(&server.base, "hoa", "hoa-password-1");
    let mut lan_ids = Vec::new();
    for n in 0..5 {
        let id = new_instance_id();
        let xml = all_features_instance(&id, None, &format!("L{n}"), 2, None);
        assert_eq!(lan.submit(&xml, &[], false).await.status(), 201);
        lan_ids.push(id);
    }
    let before_hoa = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let hoa_id = new_instance_id();
    assert_eq!(
        hoa.submit(&two_photos_instance(&hoa_id, "h"), &[], false)
            .await
            .status(),
        201
    );

    // Pages of two, in order of arrival, each cursor continuing where the last page ended.
    let mut seen = Vec::new();
    let mut path = "/api/v1/submissions?limit=2&collector=lan".to_string();
    loop {
        let page = admin.json(&path).await;
        let rows = page["submissions"].as_array().expect("array");
        assert!(rows.len() <= 2);
        seen.extend(
            rows.iter()
                .map(|r| r["instance_id"].as_str().unwrap_or("").to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/submissions?limit=2&collector=lan&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, lan_ids);

    let by_form = admin.all_submissions("&form=two_photos").await;
    assert_eq!(by_form.len(), 1);
    assert_eq!(by_form[0]["collector"], "hoa");
    assert_eq!(admin.all_submissions("&version=2025040301").await.len(), 6);
    assert_eq!(admin.all_submissions("&version=1999").await.len(), 0);
    let since = admin
        .all_submissions(&format!("&since={}", before_hoa.replace('+', "%2B")))
        .await;
    assert_eq!(since.len(), 1);
    assert_eq!(since[0]["instance_id"], hoa_id.as_str());

    for bad in ["cursor=bogus", "since=yesterday", "limit=0", "limit=5000"] {
        let res = admin
            .get(&format!("/api/v1/submissions?{bad}"))
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 400, "{bad}");
        let body: Value = res.json().await.expect("json");
        assert!(body["error"]["code"].as_str().is_some());
    }
}
