//! A beneficiary's rights from the command line: find every record of her, export it (the
//! reads go to the access log), erase it (the figures change at once, her photos are gone, the
//! audit log says who did it and why). Runs on SQLite, or on PostgreSQL with
//! FIELDTALLY_TEST_POSTGRES.

mod common;

use common::collect::Attachment;
use common::photos::phone_jpeg;
use common::*;
use serde_json::Value;

/// A safe-birth outreach visit to a woman who consented, as Collect sends it.
fn visit(id: &str, name: &str, household: &str, date: &str, photo: Option<&str>) -> Vec<u8> {
    let photo = photo
        .map(|p| format!("<photo>{p}</photo>"))
        .unwrap_or_else(|| "<photo />".into());
    format!(
        "<?xml version='1.0' encoding='UTF-8' ?><data id=\"safe_birth_outreach\" version=\"2025040302\" xmlns:orx=\"http://openrosa.org/xforms\"><start>2025-08-10T08:00:00.000+07:00</start><end>2025-08-10T08:20:00.000+07:00</end><start_location /><hamlet>DEMO-04231-1</hamlet><activity_date>{date}</activity_date><consent>yes</consent><woman_name>{name}</woman_name><birth_year>1998</birth_year><household_code>{household}</household_code><ethnicity>03</ethnicity><pregnancy_status>pregnant</pregnancy_status><topics>antenatal facility_delivery</topics><referred>no</referred><policy_package>none</policy_package><location>21.0 103.5 600.0 5.0</location>{photo}<meta><instanceID>{id}</instanceID></meta></data>"
    )
    .into_bytes()
}

fn cli_json(server: &Server, args: &[&str]) -> (bool, Value) {
    let out = server.cli(args, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), value)
}

async fn women_counselled(admin: &Admin) -> f64 {
    let t = admin
        .json("/api/v1/indicators/values?period=2025&area=04231&indicator=P8-01")
        .await;
    t["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["measure"] == "women_counselled_all")
        .and_then(|r| r["value"].as_f64())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_beneficiary_is_found_exported_and_erased_with_the_figures_following() {
    let (server, admin) = server_with_hamlets().await;
    let phone = collector(&server);
    let (first, second, other) = (new_instance_id(), new_instance_id(), new_instance_id());
    let sent = [
        (
            visit(&first, "Lò Thị Mai", "HH-07", "2025-08-10", Some("p.jpg")),
            true,
        ),
        (
            visit(&second, "LO THI  MAI", "hh-07", "2025-09-02", None),
            false,
        ),
        (
            visit(&other, "Cầm Thị Hoa", "HH-09", "2025-08-11", None),
            false,
        ),
    ];
    for (xml, with_photo) in &sent {
        let files = match with_photo {
            true => vec![Attachment::jpeg("p.jpg", phone_jpeg())],
            false => Vec::new(),
        };
        assert_eq!(phone.submit(xml, &files, false).await.status(), 201);
    }
    assert_eq!(women_counselled(&admin).await, 2.0);
    let key = admin.json(&format!("/api/v1/submissions/{first}")).await["beneficiary_key"]
        .as_str()
        .expect("key")
        .to_string();

    // Found by her identity (written any way) or by her key: both visits, not the other woman.
    let (ok, by_identity) = cli_json(
        &server,
        &[
            "subject",
            "find",
            "--hamlet",
            "demo-04231-1",
            "--part",
            "name=lo thi mai",
            "--part",
            "birth_year=1998",
            "--part",
            "household_code=HH-07",
        ],
    );
    assert!(ok);
    assert_eq!(by_identity["beneficiary_key"], key.as_str());
    let found: Vec<&str> = by_identity["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["instance_id"].as_str().expect("id"))
        .collect();
    assert_eq!(found, [first.as_str(), second.as_str()]);
    let (_, by_key) = cli_json(&server, &["subject", "find", "--key", &key]);
    assert_eq!(by_key["records"], by_identity["records"]);

    // Exported for her, names opened, each opening in the access log with the purpose.
    let purpose = "data subject request DS-2025-014";
    let (ok, export) = cli_json(
        &server,
        &[
            "subject",
            "export",
            "--key",
            &key,
            "--by",
            "admin",
            "--purpose",
            purpose,
        ],
    );
    assert!(ok, "{export}");
    let records = export["records"].as_array().expect("records");
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0]["sensitive_values"][&first]["woman_name"],
        "Lò Thị Mai"
    );
    assert_eq!(records[0]["submission"]["attachments"][0]["name"], "p.jpg");
    let log = admin.json("/api/v1/access-log").await;
    let opened: Vec<&Value> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "subject_export" && e["purpose"] == purpose)
        .collect();
    assert_eq!(opened.len(), 2, "{log}");

    // Erasing needs --yes and an administrator; without them nothing changes.
    let out = server.cli(
        &[
            "subject", "erase", "--key", &key, "--by", "admin", "--reason", purpose,
        ],
        None,
    );
    assert!(!out.status.success());
    let out = server.cli(
        &[
            "subject", "erase", "--key", &key, "--by", "lan", "--reason", purpose, "--yes",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an administrator"));
    assert_eq!(women_counselled(&admin).await, 2.0);
    // Garbage in: a part without a value, an identity without a hamlet, a blank reason.
    for args in [
        &[
            "subject",
            "find",
            "--hamlet",
            "DEMO-04231-1",
            "--part",
            "name",
        ][..],
        &["subject", "find", "--part", "name=lo thi mai"][..],
        &[
            "subject",
            "find",
            "--hamlet",
            "DEMO-04231-1",
            "--part",
            "name= ",
        ][..],
        &[
            "subject", "erase", "--key", &key, "--by", "admin", "--reason", " ", "--yes",
        ][..],
    ] {
        let out = server.cli(args, None);
        assert!(!out.status.success(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: a message says why");
    }
    assert_eq!(women_counselled(&admin).await, 2.0);

    let blobs_before = blob_count(&server);
    let (ok, erased) = cli_json(
        &server,
        &[
            "subject", "erase", "--key", &key, "--by", "admin", "--reason", purpose, "--yes",
        ],
    );
    assert!(ok, "{erased}");
    assert_eq!(erased["erased"]["submissions"], 2);
    assert_eq!(erased["files_removed"], 1);
    assert!(blob_count(&server) < blobs_before, "her photo is gone");

    // Gone from the API and from the figures, at once; the other woman stays.
    for id in [&first, &second] {
        let res = admin
            .get(&format!("/api/v1/submissions/{id}"))
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 404);
    }
    assert_eq!(
        admin.json(&format!("/api/v1/submissions/{other}")).await["review_state"],
        "received"
    );
    assert_eq!(women_counselled(&admin).await, 1.0);
    assert_figures_equal_recompute(&server);
    // Systems pulling the change feed learn of the erasure, to erase their copies too.
    let feed = admin
        .json("/api/v1/submissions?updated_since=&limit=1000")
        .await;
    let deleted: Vec<&str> = feed["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["change"] == "deleted")
        .filter_map(|c| c["instance_id"].as_str())
        .collect();
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert!(deleted.contains(&first.as_str()) && deleted.contains(&second.as_str()));
    let (_, again) = cli_json(&server, &["subject", "find", "--key", &key]);
    assert_eq!(again["records"], serde_json::json!([]));

    // The audit log says who erased what and why, without her key or answers.
    let audit = admin.json("/api/v1/audit?action=subject.erase").await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["actor"], "admin");
    let details = entry["details"].to_string();
    assert!(
        details.contains(&first) && details.contains(purpose),
        "{details}"
    );
    assert!(
        !details.contains(&key) && !details.contains("Mai"),
        "{details}"
    );

    // No row points at a file that is gone, and no file of hers is left behind.
    let fsck = server.cli(&["fsck", "--grace-secs", "0"], None);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
}
