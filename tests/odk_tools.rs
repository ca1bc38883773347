//! Real ODK artefacts: forms converted by pyxform and checked by ODK Validate (JavaRosa), and
//! submissions serialized by JavaRosa itself from the form the server served.

mod common;

use common::collect::Attachment;
use common::tools::Tools;
use common::*;

fn instance_id_of(xml: &[u8]) -> String {
    let text = std::str::from_utf8(xml).expect("utf8");
    let doc = roxmltree::Document::parse(text).expect("instance xml");
    doc.descendants()
        .find(|n| n.has_tag_name("instanceID"))
        .and_then(|n| n.text())
        .expect("instanceID")
        .to_string()
}

#[test]
fn shipped_and_fixture_xforms_are_exactly_what_pyxform_makes_and_pass_odk_validate() {
    let Some(tools) = Tools::find("shipped_and_fixture_xforms_are_exactly_what_pyxform_makes")
    else {
        return;
    };
    let mut pairs = vec![
        (
            fixture("forms/all_features.xlsx"),
            fixture("forms/all_features.xml"),
        ),
        (
            fixture("forms/two_photos.xlsx"),
            fixture("forms/two_photos.xml"),
        ),
    ];
    let xlsform_dir = repo_root().join("forms/xlsform");
    for entry in std::fs::read_dir(&xlsform_dir).expect("forms/xlsform") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "xlsx") {
            let stem = path.file_stem().and_then(|s| s.to_str()).expect("name");
            pairs.push((
                path.clone(),
                repo_root().join(format!("forms/xforms/{stem}.xml")),
            ));
        }
    }
    assert!(
        pairs.len() >= 11,
        "the nine Project 8 forms and two fixtures"
    );
    for (xlsx, xml) in pairs {
        let converted = tools.convert(&xlsx);
        let committed = std::fs::read(&xml)
            .unwrap_or_else(|_| panic!("{} has no generated XForm", xlsx.display()));
        assert!(
            converted == committed,
            "{} differs from pyxform's output for {}; regenerate it",
            xml.display(),
            xlsx.display()
        );
        tools.validate(&committed);
    }
}

#[tokio::test]
async fn a_javarosa_serialized_submission_and_its_edit_round_trip_through_the_server() {
    let Some(tools) = Tools::find("a_javarosa_serialized_submission_and_its_edit_round_trip")
    else {
        return;
    };
    let (server, admin) = server_with_forms().await;
    let collect = collector(&server);

    // Download the form the way Collect does and fill exactly those bytes.
    let list = collect.get("/formList").await.text().await.expect("list");
    let doc = roxmltree::Document::parse(&list).expect("xml");
    let url = doc
        .descendants()
        .find(|n| n.has_tag_name("xform") && n.children().any(|c| c.text() == Some("all_features")))
        .and_then(|f| f.children().find(|c| c.has_tag_name("downloadUrl")))
        .and_then(|u| u.text())
        .expect("downloadUrl")
        .to_string();
    let form = collect
        .get(&url)
        .await
        .bytes()
        .await
        .expect("form")
        .to_vec();
    let answers =
        std::fs::read_to_string(fixture("forms/all_features.answers.txt")).expect("answers");
    let instance = tools.fill(&form, &answers, None);
    let id = instance_id_of(&instance);
    assert!(id.starts_with("uuid:"));

    assert_eq!(collect.head_submission().await.status(), 204);
    let photo = random_bytes(50_000);
    let res = collect
        .submit(
            &instance,
            &[Attachment::jpeg("photo1.jpg", photo.clone())],
            false,
        )
        .await;
    assert_eq!(res.status(), 201);

    let s = admin.json(&format!("/api/v1/submissions/{id}")).await;
    assert_eq!(s["form_id"], "all_features");
    assert_eq!(s["fields"]["household/respondent_name"], "Nguyễn Văn An");
    assert_eq!(s["fields"]["household/household_size"], 4);
    assert_eq!(s["fields"]["household/monthly_income"], 12.5);
    assert_eq!(
        s["fields"]["household/water_sources"],
        serde_json::json!(["tap", "rain"])
    );
    assert_eq!(s["fields"]["members"][1]["member_name"], "Trần Thị Bình");
    assert_eq!(s["geopoint"]["lat"], 10.7769);
    assert_eq!(s["geopoint"]["accuracy"], 4.0);
    assert_eq!(s["attachments"][0]["sha256"], sha256_hex(&photo).as_str());

    // Collect's edit of a finalized form: new instanceID, the old one in deprecatedID.
    let edited = tools.fill(&form, "/data/household/household_size=5\n", Some(&instance));
    let edit_id = instance_id_of(&edited);
    assert_ne!(edit_id, id);
    let res = collect.submit(&edited, &[], false).await;
    assert_eq!(res.status(), 201);
    let s = admin.json(&format!("/api/v1/submissions/{id}")).await;
    assert_eq!(s["current_instance_id"], edit_id.as_str());
    assert_eq!(s["review_state"], "edited");
    assert_eq!(s["fields"]["household/household_size"], 5);
    assert_eq!(
        s["attachments"][0]["complete"], true,
        "the photo carries over"
    );
    assert_eq!(s["versions"].as_array().map(Vec::len), Some(2));
}

/// The text of the first child element named `name` of `node`.
fn child_text(node: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    node.children()
        .find(|c| c.has_tag_name(name))
        .and_then(|c| c.text())
        .map(str::to_string)
}

#[tokio::test]
async fn every_shipped_form_accepts_a_javarosa_serialized_submission() {
    let Some(tools) = Tools::find("every_shipped_form_accepts_a_javarosa_serialized_submission")
    else {
        return;
    };
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
    let res = admin
        .put("/api/v1/users/lan/hamlets")
        .json(&serde_json::json!({"hamlet_codes": ["DEMO-04231-1"]}))
        .send()
        .await
        .expect("hamlets");
    assert_eq!(res.status(), 200);
    let collect = collector(&server);

    let list = collect.get("/formList").await.text().await.expect("list");
    let doc = roxmltree::Document::parse(&list).expect("form list");
    let mut filled = 0;
    for entry in doc.descendants().filter(|n| n.has_tag_name("xform")) {
        let form_id = child_text(entry, "formID").expect("formID");
        let answers = std::fs::read_to_string(fixture(&format!("answers/{form_id}.txt")))
            .unwrap_or_else(|_| panic!("no answers for the shipped form {form_id}"));
        let form = collect
            .get(&child_text(entry, "downloadUrl").expect("downloadUrl"))
            .await
            .bytes()
            .await
            .expect("form")
            .to_vec();
        // Media as the phone gets them: every file in the manifest (the collector's hamlets).
        let mut media = Vec::new();
        if let Some(url) = child_text(entry, "manifestUrl") {
            let manifest = collect.get(&url).await.text().await.expect("manifest");
            let mdoc = roxmltree::Document::parse(&manifest).expect("manifest xml");
            for file in mdoc.descendants().filter(|n| n.has_tag_name("mediaFile")) {
                let name = child_text(file, "filename").expect("filename");
                let bytes = collect
                    .get(&child_text(file, "downloadUrl").expect("downloadUrl"))
                    .await
                    .bytes()
                    .await
                    .expect("media")
                    .to_vec();
                media.push((name, bytes));
            }
        }
        let media_refs: Vec<(&str, &[u8])> = media
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        let instance = tools.fill_with_media(&form, &media_refs, &answers, None);
        let id = instance_id_of(&instance);
        let photos: Vec<Attachment> = answers
            .lines()
            .filter_map(|l| l.split_once('=').map(|(_, v)| v))
            .filter(|v| v.ends_with(".jpg"))
            .map(|v| Attachment::jpeg(v, common::photos::phone_jpeg()))
            .collect();
        let res = collect.submit(&instance, &photos, false).await;
        assert_eq!(res.status(), 201, "{form_id}");
        let s = admin.json(&format!("/api/v1/submissions/{id}")).await;
        assert_eq!(s["form_id"], form_id.as_str());
        assert_eq!(s["hamlet_code"], "DEMO-04231-1", "{form_id}");
        assert_eq!(s["activity_date"], "2025-03-15", "{form_id}");
        assert!(
            s["attachments"]
                .as_array()
                .expect("attachments")
                .iter()
                .all(|a| a["complete"] == true),
            "{form_id}"
        );
        filled += 1;
    }
    assert_eq!(filled, 9, "the nine Project 8 forms");
}
