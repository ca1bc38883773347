//! XLSForm workbooks uploaded as they are: converted by the server (rxform, corrected to
//! pyxform), stored with the workbook, and served to phones. The conversions are compared with
//! pyxform's own output and checked by ODK Validate when the ODK tools are installed (always in
//! CI); the rest runs everywhere.

mod common;

use std::path::{Path, PathBuf};

use common::tools::Tools;
use common::*;
use serde_json::Value;

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

fn good(name: &str) -> PathBuf {
    fixture(&format!("xlsform/good/{name}"))
}

fn broken(name: &str) -> PathBuf {
    fixture(&format!("xlsform/broken/{name}.xlsx"))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("xls") => "application/vnd.ms-excel",
        Some("ods") => "application/vnd.oasis.opendocument.spreadsheet",
        _ => XLSX,
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("file name")
        .to_string()
}

/// POSTs a workbook file to `path` as a client would: its content type and file name.
async fn send(admin: &Admin, path: &str, file: &Path) -> (u16, Value) {
    let res = admin
        .post(path)
        .header("content-type", content_type(file))
        .header(
            "content-disposition",
            format!("attachment; filename=\"{}\"", file_name(file)),
        )
        .body(std::fs::read(file).expect("workbook"))
        .send()
        .await
        .expect("POST workbook");
    let status = res.status().as_u16();
    (status, res.json().await.expect("json"))
}

async fn upload(admin: &Admin, file: &Path, publish: bool) -> (u16, Value) {
    send(admin, &format!("/api/v1/forms?publish={publish}"), file).await
}

/// The server's conversion of a workbook, stored nowhere.
async fn convert(admin: &Admin, file: &Path) -> Value {
    let (status, body) = send(admin, "/api/v1/forms/convert", file).await;
    assert_eq!(status, 200, "convert {}: {body}", file.display());
    body
}

/// XML reduced to what matters: element names with namespaces, attributes sorted, text
/// trimmed, one line per element or text, in document order. Two XForms with the same lines
/// are the same form whatever their formatting and attribute order.
fn canonical(xml: &str, add_version: Option<&str>) -> Vec<String> {
    fn walk(
        node: roxmltree::Node,
        depth: usize,
        version: &mut Option<String>,
        out: &mut Vec<String>,
    ) {
        for child in node.children() {
            if child.is_text() {
                let text = child.text().unwrap_or_default().trim();
                if !text.is_empty() {
                    out.push(format!("{}TEXT {text:?}", "  ".repeat(depth)));
                }
                continue;
            }
            if !child.is_element() {
                continue;
            }
            let tag = child.tag_name();
            let mut attrs: Vec<String> = child
                .attributes()
                .map(|a| {
                    format!(
                        "{{{}}}{}={:?}",
                        a.namespace().unwrap_or(""),
                        a.name(),
                        a.value()
                    )
                })
                .collect();
            // pyxform leaves out the version the server derives: add it where it belongs, on
            // the primary instance's root.
            let primary_root = node.has_tag_name("instance") && node.attribute("id").is_none();
            if primary_root {
                if let Some(v) = version.take() {
                    attrs.push(format!("{{}}version={v:?}"));
                }
            }
            attrs.sort();
            out.push(format!(
                "{}{{{}}}{} [{}]",
                "  ".repeat(depth),
                tag.namespace().unwrap_or(""),
                tag.name(),
                attrs.join(" ")
            ));
            walk(child, depth + 1, version, out);
        }
    }
    let doc = roxmltree::Document::parse(xml).expect("XForm parses");
    let mut out = Vec::new();
    let mut version = add_version.map(str::to_string);
    walk(doc.root(), 0, &mut version, &mut out);
    out
}

fn assert_same_form(ours: &str, pyxform: &str, add_version: Option<&str>, what: &str) {
    let (a, b) = (canonical(ours, None), canonical(pyxform, add_version));
    if a != b {
        let at = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        let from = at.saturating_sub(3);
        panic!(
            "{what}: the server's XForm differs from pyxform's at line {at}\nserver:\n{}\npyxform:\n{}",
            a[from..(at + 6).min(a.len())].join("\n"),
            b[from..(at + 6).min(b.len())].join("\n"),
        );
    }
}

fn workbooks_to_compare() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("forms/xlsform"))
        .expect("forms/xlsform")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "xlsx"))
        .collect();
    assert_eq!(files.len(), 9, "the nine Project 8 forms");
    for name in [
        "groups_repeats.xlsx",
        "multilingual.xlsx",
        "geo_media.xlsx",
        "entities_create.xlsx",
        "versionless.xlsx",
        "versionless_changed.xlsx",
        "xls_format.xlsx",
        "xls_format.xls",
    ] {
        files.push(good(name));
    }
    files.sort();
    files
}

#[tokio::test]
async fn shipped_and_test_workbooks_convert_exactly_as_pyxform_does_and_pass_odk_validate() {
    let Some(tools) = Tools::find("shipped_and_test_workbooks_convert_exactly_as_pyxform_does")
    else {
        return;
    };
    let server = Server::start().await;
    let admin = server.admin().await;
    // Every conversion first, then the slow tools: no long pauses on the HTTP connection.
    let mut previews = Vec::new();
    for file in workbooks_to_compare() {
        let preview = convert(&admin, &file).await;
        previews.push((file, preview));
    }
    let ods = convert(&admin, &good("xls_format.ods")).await;
    for (file, preview) in previews {
        let ours = preview["xform"].as_str().expect("xform");
        let pyxform = String::from_utf8(tools.convert(&file)).expect("utf8");
        let derived = (preview["version_derived"] == true)
            .then(|| preview["version"].as_str().expect("version"));
        assert_same_form(ours, &pyxform, derived, &file.display().to_string());
        tools.validate(ours.as_bytes());
    }
    // pyxform does not read OpenDocument; the .ods holds the same form as the .xlsx beside it.
    let pyxform = String::from_utf8(tools.convert(&good("xls_format.xlsx"))).expect("utf8");
    assert_same_form(
        ods["xform"].as_str().expect("xform"),
        &pyxform,
        None,
        "xls_format.ods",
    );
}

#[tokio::test]
async fn an_uploaded_workbook_is_stored_with_its_xform_and_can_be_downloaded_again() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let file = good("groups_repeats.xlsx");
    let workbook = std::fs::read(&file).expect("workbook");
    let (status, body) = upload(&admin, &file, true).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["form_id"], "groups_repeats");
    assert_eq!(body["version"], "2025080101");
    assert_eq!(body["state"], "open");
    assert_eq!(body["version_derived"], false);
    assert_eq!(body["source"]["format"], "xlsx");
    assert_eq!(body["source"]["filename"], "groups_repeats.xlsx");
    assert_eq!(body["source"]["size"], workbook.len());
    assert_eq!(body["source"]["sha256"], sha256_hex(&workbook).as_str());

    // The workbook comes back byte for byte, named as uploaded.
    let res = admin
        .get("/api/v1/forms/groups_repeats/versions/2025080101/source")
        .send()
        .await
        .expect("source");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], XLSX);
    let disposition = res.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        disposition.contains("attachment") && disposition.contains("groups_repeats.xlsx"),
        "{disposition}"
    );
    assert_eq!(res.bytes().await.expect("bytes").to_vec(), workbook);

    // Phones get the generated XForm, and its md5 is the md5 of exactly those bytes.
    let xform = admin
        .get("/api/v1/forms/groups_repeats/versions/2025080101/form.xml")
        .send()
        .await
        .expect("form.xml")
        .bytes()
        .await
        .expect("bytes")
        .to_vec();
    assert_eq!(body["md5"], md5_hex(&xform).as_str());
    let collect = {
        admin
            .create_user("lan", "lan-password-1", "collector")
            .await;
        collector(&server)
    };
    let list = collect.get("/formList").await.text().await.expect("list");
    assert!(list.contains(&format!("md5:{}", md5_hex(&xform))), "{list}");
    let served = collect
        .get("/forms/groups_repeats/2025080101/form.xml")
        .await
        .bytes()
        .await
        .expect("form")
        .to_vec();
    assert_eq!(served, xform);

    // The same workbook again is the same version; the same form in the other formats too.
    let (status, again) = upload(&admin, &file, true).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["md5"], body["md5"]);

    // A version uploaded as XForm XML has no workbook.
    let res = admin
        .get("/api/v1/forms/all_features/versions/2025040301/source")
        .send()
        .await
        .expect("source");
    assert_eq!(res.status(), 404);
    let (status, _) = admin
        .upload_form(
            &std::fs::read(fixture("forms/all_features.xml")).expect("xml"),
            false,
        )
        .await;
    assert_eq!(status, 201);
    let res = admin
        .get("/api/v1/forms/all_features/versions/2025040301/source")
        .send()
        .await
        .expect("source");
    assert_eq!(res.status(), 404);
    let err: Value = res.json().await.expect("json");
    assert_eq!(err["error"]["code"], "no_source");
}

#[tokio::test]
async fn xlsx_xls_and_ods_of_one_form_give_the_same_xform() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let (status, first) = upload(&admin, &good("xls_format.xlsx"), false).await;
    assert_eq!(status, 201, "{first}");
    for other in ["xls_format.xls", "xls_format.ods"] {
        let (status, body) = upload(&admin, &good(other), false).await;
        assert_eq!(status, 200, "{other}: {body}");
        assert_eq!(body["md5"], first["md5"], "{other}");
    }
    // Recognised by the file's signature alone, too.
    for (file, format) in [("xls_format.xls", "xls"), ("xls_format.ods", "ods")] {
        let res = admin
            .post("/api/v1/forms/convert")
            .header("content-type", "application/octet-stream")
            .body(std::fs::read(good(file)).expect("file"))
            .send()
            .await
            .expect("convert");
        assert_eq!(res.status(), 200, "{format}");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["form_id"], "xls_format");
    }
}

#[tokio::test]
async fn a_workbook_without_a_version_gets_one_from_the_upload_hour() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let before: u64 = chrono_free_hour_floor();
    let (status, first) = upload(&admin, &good("versionless.xlsx"), false).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["version_derived"], true);
    let v1: u64 = first["version"]
        .as_str()
        .expect("version")
        .parse()
        .expect("a number");
    assert_eq!(
        first["version"].as_str().map(str::len),
        Some(10),
        "yyyymmddHH"
    );
    assert!(
        v1 >= before,
        "{v1} is the upload hour in Vietnam, at or after {before}"
    );

    // The same workbook again is the same form; a changed one gets a later version.
    let (status, again) = upload(&admin, &good("versionless.xlsx"), false).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["version"], first["version"]);
    let (status, second) = upload(&admin, &good("versionless_changed.xlsx"), false).await;
    assert_eq!(status, 201, "{second}");
    let v2: u64 = second["version"]
        .as_str()
        .expect("version")
        .parse()
        .expect("a number");
    assert!(v2 > v1, "{v2} after {v1}");
    let versions = admin.json("/api/v1/forms/versionless/versions").await;
    assert_eq!(versions.as_array().map(Vec::len), Some(2));
}

/// The hour (yyyymmddHH, Vietnam time) an hour before now, computed without the server's code.
fn chrono_free_hour_floor() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
        + 7 * 3600
        - 3600;
    let days = secs.div_euclid(86_400);
    let hour = secs.rem_euclid(86_400) / 3600;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year * 1_000_000 + month * 10_000 + day * 100 + hour) as u64
}

#[tokio::test]
async fn broken_workbooks_are_refused_with_the_cell_to_fix_and_nothing_is_stored() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let before = admin.json("/api/v1/forms").await;
    let cases = [
        ("missing_name", "survey", 3, "name", "no name"),
        ("unknown_type", "survey", 3, "type", "integr"),
        ("bad_choice_list", "survey", 2, "type", "colors"),
        ("duplicate_choice", "choices", 3, "name", "yes"),
        ("duplicate_names", "survey", 4, "name", "age"),
        ("broken_reference", "survey", 3, "relevant", "aeg"),
    ];
    for (name, sheet, row, column, mentions) in cases {
        let (status, body) = upload(&admin, &broken(name), true).await;
        assert_eq!(status, 400, "{name}: {body}");
        let error = &body["error"];
        assert_eq!(error["code"], "invalid_xlsform", "{name}: {body}");
        let detail = &error["details"][0];
        assert_eq!(detail["sheet"], sheet, "{name}: {body}");
        assert_eq!(detail["row"], row, "{name}: {body}");
        assert_eq!(detail["column"], column, "{name}: {body}");
        assert!(
            detail["message"]
                .as_str()
                .is_some_and(|m| m.contains(mentions)),
            "{name}: {body}"
        );
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("row {row}"))),
            "{name}: {body}"
        );
        // The preview reports the same.
        let (status, preview) = send(&admin, "/api/v1/forms/convert", &broken(name)).await;
        assert_eq!(status, 400);
        assert_eq!(preview["error"]["details"], error["details"]);
    }
    // Not a workbook at all, though it claims to be one.
    let res = admin
        .post("/api/v1/forms")
        .header("content-type", XLSX)
        .body(b"PK\x03\x04 not really a zip".to_vec())
        .send()
        .await
        .expect("upload");
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_xlsform");
    assert_eq!(
        admin.json("/api/v1/forms").await,
        before,
        "nothing was stored"
    );
}

#[tokio::test]
async fn pyxform_rejects_every_broken_workbook_too() {
    let Some(tools) = Tools::find("pyxform_rejects_every_broken_workbook_too") else {
        return;
    };
    for name in [
        "missing_name",
        "unknown_type",
        "bad_choice_list",
        "duplicate_choice",
        "duplicate_names",
        "broken_reference",
    ] {
        let out = tempfile::Builder::new()
            .suffix(".xml")
            .tempfile()
            .expect("temp");
        let status = std::process::Command::new(tools.xls2xform())
            .arg("--skip_validate")
            .arg(broken(name))
            .arg(out.path())
            .output()
            .expect("xls2xform");
        assert!(!status.status.success(), "pyxform converted {name}");
    }
}

#[tokio::test]
async fn warnings_come_back_beside_a_successful_upload() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let (status, body) = upload(&admin, &good("geo_media.xlsx"), false).await;
    assert_eq!(status, 201, "{body}");
    let warnings = body["warnings"].as_array().expect("warnings");
    // `signature` is an image without max-pixels, on row 10 of the survey sheet.
    assert!(
        warnings.iter().any(|w| w["sheet"] == "survey"
            && w["row"] == 10
            && w["column"] == "parameters"
            && w["message"]
                .as_str()
                .is_some_and(|m| m.contains("max-pixels"))),
        "{body}"
    );
    let (status, body) = upload(&admin, &good("groups_repeats.xlsx"), false).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["warnings"], serde_json::json!([]));
}

#[tokio::test]
async fn a_javarosa_submission_to_a_form_uploaded_as_xlsform_is_accepted() {
    let Some(tools) = Tools::find("a_javarosa_submission_to_a_form_uploaded_as_xlsform") else {
        return;
    };
    let server = Server::start().await;
    let admin = server.admin().await;
    let (status, body) = upload(&admin, &good("multilingual.xlsx"), true).await;
    assert_eq!(status, 201, "{body}");
    admin
        .create_user("lan", "lan-password-1", "collector")
        .await;
    let collect = collector(&server);
    let form = collect
        .get("/forms/multilingual/2025080101/form.xml")
        .await
        .bytes()
        .await
        .expect("form")
        .to_vec();
    let answers = "/data/consent=yes\n/data/identity/full_name=Lò Thị Mai\n/data/identity/birth_year=1994\n/data/identity/ethnicity=04\n/data/identity/services=anc delivery\n";
    let instance = tools.fill(&form, answers, None);
    let text = String::from_utf8(instance.clone()).expect("utf8");
    let doc = roxmltree::Document::parse(&text).expect("instance");
    let id = doc
        .descendants()
        .find(|n| n.has_tag_name("instanceID"))
        .and_then(|n| n.text())
        .expect("instanceID")
        .to_string();
    assert_eq!(collect.head_submission().await.status(), 204);
    let res = collect.submit(&instance, &[], false).await;
    assert_eq!(res.status(), 201);
    let s = admin.json(&format!("/api/v1/submissions/{id}")).await;
    assert_eq!(s["form_id"], "multilingual");
    assert_eq!(s["form_version"], "2025080101");
    assert_eq!(s["fields"]["identity/birth_year"], 1994);
    assert_eq!(
        s["fields"]["identity/services"],
        serde_json::json!(["anc", "delivery"])
    );
}

#[tokio::test]
async fn the_command_line_adds_workbooks_and_reports_mistakes() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let out = server.cli(
        &[
            "form",
            "add",
            good("geo_media.xlsx").to_str().expect("path"),
            "--publish",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("Added form 'geo_media' version '2025080101'"),
        "{stdout}"
    );
    assert!(
        stderr.contains("row 10") && stderr.contains("max-pixels"),
        "{stderr}"
    );
    let versions = admin.json("/api/v1/forms/geo_media/versions").await;
    assert_eq!(versions[0]["state"], "open");
    let res = admin
        .get("/api/v1/forms/geo_media/versions/2025080101/source")
        .send()
        .await
        .expect("source");
    assert_eq!(res.status(), 200);

    let out = server.cli(
        &[
            "form",
            "add",
            broken("unknown_type").to_str().expect("path"),
        ],
        None,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sheet 'survey', row 3, column 'type'") && stderr.contains("integr"),
        "{stderr}"
    );
}
