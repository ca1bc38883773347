//! Hostile and broken input on the phone's and the administrator's endpoints: each gets a clear
//! 4xx with a machine-readable body, and nothing is stored (no row, no file).

mod common;

use std::time::Duration;

use common::collect::{Attachment, Collect};
use common::raw;
use common::*;
use tokio::io::AsyncWriteExt;

/// The collector's app-key URL path prefix (`/key/…`), so raw requests need no Digest.
async fn key_prefix(admin: &Admin) -> String {
    let res = admin
        .post("/api/v1/users/lan/app-key")
        .send()
        .await
        .expect("app key");
    assert_eq!(res.status(), 201);
    let body: serde_json::Value = res.json().await.expect("json");
    format!("/key/{}", body["key"].as_str().expect("key"))
}

/// Asserts nothing at all was stored: no submission, no blob, no temporary file left.
async fn assert_nothing_stored(server: &Server, admin: &Admin) {
    assert!(admin.all_submissions("").await.is_empty(), "no submission");
    assert_eq!(blob_count(server), 0, "no stored file");
    // Temporaries are removed when the request ends; give the server a moment to drop them.
    for _ in 0..50 {
        if temp_count(server) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(temp_count(server), 0, "no temporary file left");
}

fn openrosa_error(response: &str) -> String {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    openrosa_message(body)
}

async fn submit_status(collect: &Collect, xml: &[u8], files: &[Attachment]) -> (u16, String) {
    let res = collect.submit(xml, files, false).await;
    let status = res.status().as_u16();
    let body = res.text().await.expect("body");
    (status, openrosa_message(&body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_xml_is_refused_and_nothing_is_stored() {
    let (server, admin) = server_with_forms().await;
    let collect = collector(&server);
    let id = new_instance_id();
    let good =
        String::from_utf8(all_features_instance(&id, None, "Lò Thị A", 3, None)).expect("utf8");
    let billion_laughs = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE data [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\"><!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>{}",
        good.trim_start_matches("<?xml version='1.0' encoding='UTF-8' ?>")
            .replace("Lò Thị A", "&lol3;")
    );
    let external = good.replacen(
        "<data ",
        "<!DOCTYPE data [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><data ",
        1,
    );
    let deep = good.replace(
        "<intro />",
        &format!(
            "<intro>{}{}</intro>",
            "<a>".repeat(5000),
            "</a>".repeat(5000)
        ),
    );
    let with_nul = good.replace("Lò Thị A", "Lò\u{0}Thị");
    let mut bad_utf8 = good.clone().into_bytes();
    let at = bad_utf8
        .windows(2)
        .position(|w| w == b"L\xc3")
        .expect("name");
    bad_utf8[at + 1] = 0xff;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("billion laughs", billion_laughs.into_bytes(), "DOCTYPE"),
        ("external entity", external.into_bytes(), "DOCTYPE"),
        ("deep nesting", deep.into_bytes(), "nests elements deeper"),
        ("NUL character", with_nul.into_bytes(), "not well-formed"),
        ("invalid UTF-8", bad_utf8, "UTF-8"),
        (
            "truncated",
            good.as_bytes()[..good.len() / 2].to_vec(),
            "not well-formed",
        ),
        (
            "malformed geopoint",
            good.replace("21.3256 103.9188 650.0 8.5", "91.5 103.9 0 0")
                .into_bytes(),
            "'location'",
        ),
        (
            "date out of range",
            good.replace("<visit_date>2025-04-03", "<visit_date>1066-10-14")
                .into_bytes(),
            "outside 1900..2100",
        ),
        (
            "impossible date",
            good.replace("<visit_date>2025-04-03", "<visit_date>2025-02-30")
                .into_bytes(),
            "visit_date",
        ),
        (
            "path in an attachment name",
            good.replace("<photo />", "<photo>../../etc/passwd</photo>")
                .into_bytes(),
            "plain name",
        ),
    ];
    for (what, xml, want) in cases {
        let (status, message) = submit_status(&collect, &xml, &[]).await;
        assert_eq!(status, 400, "{what}: {message}");
        assert!(message.contains(want), "{what}: {message}");
    }
    assert_nothing_stored(&server, &admin).await;

    // A form definition with a DOCTYPE is refused the same way.
    let (status, body) = admin
        .upload_form(
            b"<!DOCTYPE h:html [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><h:html/>",
            true,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_xml");

    // And the server still takes good data.
    let (status, _) = submit_status(&collect, good.as_bytes(), &[]).await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_multipart_is_refused_and_nothing_is_stored() {
    let (server, admin) = server_with_forms().await;
    let prefix = key_prefix(&admin).await;
    let path = format!("{prefix}/submission");
    let id = new_instance_id();
    let xml = all_features_instance(&id, None, "Multipart", 2, Some("photo1.jpg"));
    let boundary = "----fieldtallyTestBoundary";

    // A thousand and one parts, each with a file.
    let mut parts: Vec<raw::RawPart> =
        vec![(b"xml_submission_file", Some(b"x.xml"), "text/xml", &xml)];
    for _ in 0..1001 {
        parts.push((b"photo1.jpg", Some(b"photo1.jpg"), "image/jpeg", b"jpeg"));
    }
    let res = raw::send(
        &server.base,
        &raw::post(&path, boundary, &raw::multipart(boundary, &parts)),
    )
    .await;
    assert_eq!(raw::status(&res), 400, "{res}");
    assert!(openrosa_error(&res).contains("at most 1000 parts"), "{res}");

    // File names with a path, NUL, or bytes that are not UTF-8.
    for name in [
        &b"../../../etc/passwd"[..],
        b"photo\0.jpg",
        b"ph\xffoto.jpg",
    ] {
        let parts: Vec<raw::RawPart> = vec![
            (b"xml_submission_file", Some(b"x.xml"), "text/xml", &xml),
            (b"photo1.jpg", Some(name), "image/jpeg", b"jpeg"),
        ];
        let res = raw::send(
            &server.base,
            &raw::post(&path, boundary, &raw::multipart(boundary, &parts)),
        )
        .await;
        assert_eq!(raw::status(&res), 400, "{name:?}: {res}");
    }

    // Two instance parts.
    let parts: Vec<raw::RawPart> = vec![
        (b"xml_submission_file", Some(b"x.xml"), "text/xml", &xml),
        (b"xml_submission_file", Some(b"y.xml"), "text/xml", &xml),
    ];
    let res = raw::send(
        &server.base,
        &raw::post(&path, boundary, &raw::multipart(boundary, &parts)),
    )
    .await;
    assert_eq!(raw::status(&res), 400, "{res}");

    // An instance beyond the XML size limit (but within the request limit).
    let big = format!(
        "<data id=\"all_features\" version=\"2025040301\"><intro>{}</intro></data>",
        "x".repeat(11 * 1024 * 1024)
    );
    let parts: Vec<raw::RawPart> = vec![(
        b"xml_submission_file",
        Some(b"x.xml"),
        "text/xml",
        big.as_bytes(),
    )];
    let res = raw::send(
        &server.base,
        &raw::post(&path, boundary, &raw::multipart(boundary, &parts)),
    )
    .await;
    assert_eq!(raw::status(&res), 413, "{}", &res[..res.len().min(300)]);
    assert!(openrosa_error(&res).contains("larger than"), "{res}");

    // A body larger than the advertised limit, declared or not.
    let huge = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 999999999999\r\n\r\n"
    );
    let res = raw::send(&server.base, huge.as_bytes()).await;
    assert_eq!(raw::status(&res), 413, "{res}");

    // Not multipart at all.
    let res = raw::send(
        &server.base,
        format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: text/xml\r\nContent-Length: 7\r\n\r\n<data/>").as_bytes(),
    )
    .await;
    assert_eq!(raw::status(&res), 400, "{res}");

    // Broken multipart framing.
    let res = raw::send(
        &server.base,
        &raw::post(&path, boundary, b"--not-the-boundary\r\nnonsense\r\n"),
    )
    .await;
    assert_eq!(raw::status(&res), 400, "{res}");

    assert_nothing_stored(&server, &admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused() {
    let (server, _admin) = server_with_forms().await;
    let big = "a".repeat(256 * 1024);
    let res = raw::send(
        &server.base,
        format!("GET /formList HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    let status = raw::status(&res);
    assert!(status == 431 || status == 400, "{res}");
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let res = raw::send(
        &server.base,
        format!("GET /formList HTTP/1.1\r\nHost: localhost\r\n{many}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let status = raw::status(&res);
    assert!(status == 431 || status == 400, "{res}");
    // A JSON body over the API's limit.
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth/token"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "bad_json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_and_heads_time_out_and_store_nothing() {
    let server =
        Server::start_with(&["--upload-idle-timeout", "2", "--request-head-timeout", "2"]).await;
    let admin = server.admin().await;
    let xml = std::fs::read(fixture("forms/all_features.xml")).expect("fixture");
    assert_eq!(admin.upload_form(&xml, true).await.0, 201);
    admin
        .create_user("lan", "lan-password-1", "collector")
        .await;
    let prefix = key_prefix(&admin).await;

    // A body that stops half-way, as a phone that lost its signal.
    let id = new_instance_id();
    let xml = all_features_instance(&id, None, "Stalled", 2, Some("photo1.jpg"));
    let boundary = "----stall";
    let photo = random_bytes(50_000);
    let parts: Vec<raw::RawPart> = vec![
        (b"xml_submission_file", Some(b"x.xml"), "text/xml", &xml),
        (b"photo1.jpg", Some(b"photo1.jpg"), "image/jpeg", &photo),
    ];
    let request = raw::post(
        &format!("{prefix}/submission"),
        boundary,
        &raw::multipart(boundary, &parts),
    );
    let mut stream = raw::connect(&server.base).await;
    stream
        .write_all(&request[..request.len() - 20_000])
        .await
        .expect("write");
    let res = raw::read_response(&mut stream, Duration::from_secs(30)).await;
    assert_eq!(raw::status(&res), 408, "{res}");
    assert!(
        openrosa_error(&res).contains("nothing arrived for 2 seconds"),
        "{res}"
    );

    // A request head that never ends.
    let mut stream = raw::connect(&server.base).await;
    stream
        .write_all(b"GET /formList HTTP/1.1\r\nHost: loc")
        .await
        .expect("write");
    let res = raw::read_response(&mut stream, Duration::from_secs(30)).await;
    assert!(res.is_empty() || raw::status(&res) == 408, "{res}");

    assert_nothing_stored(&server, &admin).await;
}
