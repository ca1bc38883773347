//! Protected personal data: a form marked sensitive has its raw XML sealed at rest, its geotags
//! reduced, its instance name kept out of plain columns and its consent recorded; reading the
//! XML needs a stated purpose and leaves an entry in the access log; keys rotate.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

const NAME: &str = "Lò Thị Xuân";

fn write_keys(dir: &Path, lines: &[String]) -> PathBuf {
    let path = dir.join("data.keys");
    std::fs::write(&path, lines.join("\n")).expect("write keys");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

fn key_line(id: &str) -> String {
    format!("{id} {}", hex::encode(rand::random::<[u8; 32]>()))
}

async fn protect(admin: &Admin) -> (u16, Value) {
    let res = admin
        .put("/api/v1/forms/all_features/protection")
        .json(
            &json!({ "sensitive": true, "geo_decimals": 2, "consent_field": "household/province" }),
        )
        .send()
        .await
        .expect("put");
    let status = res.status().as_u16();
    (status, res.json().await.expect("json"))
}

fn stored_xml_contains(server: &Server, needle: &str) -> bool {
    raw_bytes(server, "SELECT xml AS b FROM submission_versions")
        .iter()
        .any(|xml| xml.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensitive_forms_submissions_are_sealed_reduced_and_read_only_with_a_purpose() {
    let keys_dir = tempfile::tempdir().expect("dir");
    let keys = write_keys(keys_dir.path(), &[key_line("k1")]);
    let keys_arg = keys.display().to_string();
    let server = Server::start_with(&["--data-key-file", &keys_arg]).await;
    let admin = server.admin().await;
    for f in ["forms/all_features.xml", "forms/two_photos.xml"] {
        let xml = std::fs::read(fixture(f)).expect("fixture");
        assert_eq!(admin.upload_form(&xml, true).await.0, 201);
    }
    admin
        .create_user("lan", "lan-password-1", "collector")
        .await;
    let (status, body) = protect(&admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sensitive"], true);
    let got = admin.json("/api/v1/forms/all_features/protection").await;
    assert_eq!(got["consent_field"], "household/province");

    let collect = collector(&server);
    let id = new_instance_id();
    let xml = all_features_instance(&id, None, NAME, 4, None);
    assert_eq!(collect.submit(&xml, &[], false).await.status(), 201);
    // A retry is still recognised (the hash is of the plain XML).
    assert_eq!(collect.submit(&xml, &[], false).await.status(), 201);
    // An unprotected form is stored as before.
    let plain_id = new_instance_id();
    assert_eq!(
        collect
            .submit(&two_photos_instance(&plain_id, "plain note"), &[], false)
            .await
            .status(),
        201
    );

    // At rest: the name is nowhere in the stored XML of the sensitive form.
    assert!(!stored_xml_contains(&server, NAME));
    assert!(
        !stored_xml_contains(&server, "21.3256"),
        "precise location sealed too"
    );
    assert!(stored_xml_contains(&server, "plain note"));

    let d = admin.json(&format!("/api/v1/submissions/{id}")).await;
    assert_eq!(d["xml_sealed"], true);
    assert_eq!(d["instance_name"], Value::Null, "the label holds the name");
    assert!(d["fields"].get("meta/instanceName").is_none());
    assert_eq!(d["geopoint"]["lat"], 21.33);
    assert_eq!(d["geopoint"]["lon"], 103.92);
    assert_eq!(d["geopoint"]["alt"], 650.0);
    assert_eq!(d["fields"]["location"], "21.33 103.92 650 8.5");
    assert_eq!(d["fields"]["route"], "21.30 103.90 0 5;21.31 103.91 0 5");
    assert_eq!(
        d["consent"],
        json!({ "field": "household/province", "value": "hcm" })
    );
    let list = admin.all_submissions("&form=all_features").await;
    assert_eq!(list[0]["instance_name"], Value::Null);
    let plain = admin.json(&format!("/api/v1/submissions/{plain_id}")).await;
    assert_eq!(plain["xml_sealed"], false);
    assert_eq!(plain["consent"], Value::Null);

    // Reading the XML needs a purpose, and leaves a trace.
    let res = admin
        .get(&format!("/api/v1/submissions/{id}/xml"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "purpose_required");
    assert!(admin.json("/api/v1/access-log").await["entries"]
        .as_array()
        .expect("entries")
        .is_empty());
    let res = admin
        .get(&format!(
            "/api/v1/submissions/{id}/xml?purpose=referral%20follow-up"
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.expect("bytes").as_ref(), xml.as_slice());
    let res = admin
        .get(&format!("/api/v1/submissions/{id}/xml"))
        .header("x-purpose", "quality check")
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    let log = admin.json("/api/v1/access-log").await;
    let entries = log["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["username"], "admin");
    assert_eq!(entries[0]["action"], "submission_xml");
    assert_eq!(entries[0]["subject"], id.as_str());
    assert_eq!(entries[0]["purpose"], "referral follow-up");
    assert_eq!(entries[1]["purpose"], "quality check");
    let after = entries[0]["id"].as_i64().expect("id");
    let page = admin
        .json(&format!("/api/v1/access-log?after={after}"))
        .await;
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(1));
    // The plain XML needs no purpose and is not logged.
    let res = admin
        .get(&format!("/api/v1/submissions/{plain_id}/xml"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);

    // Rotation: a new key is appended, the command moves everything to it, the old key can go.
    let k1 = std::fs::read_to_string(&keys).expect("keys");
    let k2 = key_line("k2");
    write_keys(keys_dir.path(), &[k1.trim().to_string(), k2.clone()]);
    let out = server.cli(&["keys", "rotate", "--data-key-file", &keys_arg], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("1 moved to key 'k2'"), "{said}");
    write_keys(keys_dir.path(), &[k2]);
    let mut server = server;
    server.restart();
    let admin = server.admin().await;
    let res = admin
        .get(&format!(
            "/api/v1/submissions/{id}/xml?purpose=after%20rotation"
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.expect("bytes").as_ref(), xml.as_slice());
}

/// A form that marks its name field sensitive, as the Project 8 outreach form does.
const MARKED_FORM: &str = r#"<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:jr="http://openrosa.org/javarosa" xmlns:fieldtally="urn:fieldtally"><h:head><h:title>Marked</h:title><model><instance><data id="marked" version="1"><consent/><woman_name/><year/><location/><meta><instanceID/><instanceName/></meta></data></instance><bind nodeset="/data/consent" type="string"/><bind nodeset="/data/woman_name" type="string" fieldtally:sensitive="yes"/><bind nodeset="/data/year" type="int"/><bind nodeset="/data/location" type="geopoint"/></model></h:head><h:body/></h:html>"#;

fn marked_instance(id: &str) -> Vec<u8> {
    format!(r#"<data id="marked" version="1"><consent>yes</consent><woman_name>{NAME}</woman_name><year>1998</year><location>21.3256 103.9188 650 5</location><meta><instanceID>{id}</instanceID><instanceName>{NAME} 1998</instanceName></meta></data>"#).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_marking_fields_sensitive_is_protected_with_a_key_made_on_first_start() {
    let (mut server, admin) = server_with_forms().await;
    let keys = server.data_dir().join("data.keys");
    let mode = std::fs::metadata(&keys)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only the owner reads the key file");
    assert_eq!(admin.upload_form(MARKED_FORM.as_bytes(), true).await.0, 201);
    // No administrator setting needed: the marks make the form sensitive.
    let id = new_instance_id();
    let res = collector(&server)
        .submit(&marked_instance(&id), &[], false)
        .await;
    assert_eq!(res.status(), 201);

    assert!(!stored_xml_contains(&server, NAME));
    let as_bytes = if server.database_url().is_some() {
        "convert_to(sensitive, 'UTF8')"
    } else {
        "CAST(sensitive AS BLOB)"
    };
    let sensitive_column = raw_bytes(
        &server,
        &format!("SELECT {as_bytes} AS b FROM submission_versions WHERE sensitive IS NOT NULL"),
    );
    assert_eq!(sensitive_column.len(), 1);
    let text = String::from_utf8_lossy(&sensitive_column[0]).to_string();
    assert!(
        !text.contains("Xuân") && text.contains("woman_name"),
        "{text}"
    );

    let d = admin.json(&format!("/api/v1/submissions/{id}")).await;
    assert_eq!(d["xml_sealed"], true);
    assert_eq!(d["sensitive_fields"], json!(["woman_name"]));
    assert!(d["fields"].get("woman_name").is_none());
    assert_eq!(d["instance_name"], Value::Null);
    assert_eq!(d["fields"]["location"], "21.33 103.92 650 5");
    assert_eq!(d["consent"], json!({ "field": "consent", "value": "yes" }));

    let path = format!("/api/v1/submissions/{id}/sensitive");
    let res = admin.get(&path).send().await.expect("get");
    assert_eq!(res.status(), 400);
    let res = admin
        .get(&format!("{path}?purpose=call%20back%20about%20referral"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["values"], json!({ "woman_name": NAME }));
    let log = admin.json("/api/v1/access-log").await;
    assert_eq!(log["entries"][0]["action"], "sensitive_fields");
    assert_eq!(log["entries"][0]["purpose"], "call back about referral");

    // The key file lost: the server refuses to start rather than make a new key.
    server.kill();
    std::fs::rename(&keys, server.data_dir().join("data.keys.away")).expect("move key file");
    let out = server.cli(&["serve", "--listen", "127.0.0.1:0"], None);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("restore its data key file"), "{said}");
    std::fs::rename(server.data_dir().join("data.keys.away"), &keys).expect("restore key file");
    server.restart();
    let admin = server.admin().await;
    let res = admin
        .get(&format!("{path}?purpose=after%20restart"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
}
