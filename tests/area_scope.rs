//! Supervisors see and review exactly the submissions whose hamlet lies in their areas, on the
//! map of the activity date (old communes and districts before 1 July 2025) and on today's map.

mod common;

use std::collections::BTreeSet;

use common::web::sign_in;
use common::*;
use serde_json::json;

fn dialogue(instance_id: &str, hamlet: &str, activity_date: &str) -> Vec<u8> {
    format!(
        "<?xml version='1.0' encoding='UTF-8' ?><data id=\"policy_dialogue\" version=\"2025040301\"><start>2025-03-10T08:00:00.000+07:00</start><end>2025-03-10T09:00:00.000+07:00</end><start_location /><hamlet>{hamlet}</hamlet><activity_date>{activity_date}</activity_date><level>commune</level><topic>child_marriage</topic><topic_other /><chair>Chủ tịch xã</chair><participants_total>30</participants_total><participants_women>18</participants_women><participants_ethnic_minority>25</participants_ethnic_minority><participants_children>0</participants_children><issues_raised>3</issues_raised><commitments>2</commitments><location /><attendance_photo /><attendance_photo_2 /><meta><instanceID>{instance_id}</instanceID></meta></data>"
    )
    .into_bytes()
}

#[tokio::test]
async fn supervisors_see_their_areas_on_both_maps_and_nothing_else() {
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
    // 04012 Chiềng Hắc (district 123 Mộc Châu) until 30 June 2025; its hamlets went to
    // 04078 Chiềng Hặc and 03980 Mộc Châu from 1 July. 04231 is Sốp Cộp.
    let supervisors = [
        ("sup_old", "04012"),
        ("sup_new", "04078"),
        ("sup_district", "123"),
        ("sup_other", "04231"),
    ];
    for (name, area) in supervisors {
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

    let collect = collector(&server);
    let a = new_instance_id(); // Chiềng Hắc hamlet before the reform
    let b = new_instance_id(); // a Chiềng Hắc hamlet now in Mộc Châu ward, after the reform
    let c = new_instance_id(); // Sốp Cộp
    for (id, hamlet, date) in [
        (&a, "DEMO-04012-1", "2025-03-10"),
        (&b, "DEMO-04012-3", "2025-08-05"),
        (&c, "DEMO-04231-1", "2025-03-10"),
    ] {
        let res = collect
            .submit(&dialogue(id, hamlet, date), &[], false)
            .await;
        assert_eq!(res.status(), 201);
    }

    let expected: [(&str, Vec<&String>); 4] = [
        ("sup_old", vec![&a]),
        ("sup_new", vec![&a]),
        ("sup_district", vec![&a]),
        ("sup_other", vec![&c]),
    ];
    for (name, visible) in expected {
        let client = Admin::login(&server, name, "supervisor-password").await;
        let seen: BTreeSet<String> = client
            .all_submissions("")
            .await
            .iter()
            .map(|s| s["instance_id"].as_str().unwrap_or("").to_string())
            .collect();
        let want: BTreeSet<String> = visible.iter().map(|s| s.to_string()).collect();
        assert_eq!(seen, want, "{name}");
        for id in [&a, &b, &c] {
            let status = client
                .get(&format!("/api/v1/submissions/{id}"))
                .send()
                .await
                .expect("detail")
                .status();
            let expect = if want.contains(id.as_str()) { 200 } else { 404 };
            assert_eq!(status, expect, "{name} reads {id}");
        }
    }

    // Reviewing: inside the area works, outside looks like nothing is there.
    let sup = Admin::login(&server, "sup_other", "supervisor-password").await;
    let res = sup
        .post(&format!("/api/v1/submissions/{c}/review"))
        .json(&json!({ "state": "approved" }))
        .send()
        .await
        .expect("review");
    assert_eq!(res.status(), 200);
    let res = sup
        .post(&format!("/api/v1/submissions/{a}/review"))
        .json(&json!({ "state": "approved" }))
        .send()
        .await
        .expect("review");
    assert_eq!(res.status(), 404);
    let detail = admin.json(&format!("/api/v1/submissions/{a}")).await;
    assert_eq!(
        detail["review_state"], "received",
        "the refused review changed nothing"
    );

    // The same areas, and the flags, filter the list, bulk review and the page's queue.
    let ids = |rows: Vec<serde_json::Value>| -> BTreeSet<String> {
        rows.iter()
            .map(|s| s["instance_id"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let one = |id: &String| BTreeSet::from([id.to_string()]);
    assert_eq!(ids(admin.all_submissions("&area=04012").await), one(&a));
    assert_eq!(ids(admin.all_submissions("&area=123").await), one(&a));
    assert_eq!(ids(admin.all_submissions("&area=04231").await), one(&c));
    assert_eq!(
        ids(admin.all_submissions("&area=14").await).len(),
        3,
        "the province"
    );
    assert_eq!(
        ids(admin.all_submissions("&flag=no_location").await).len(),
        3,
        "none of them has a location"
    );
    assert!(ids(admin.all_submissions("&flag=outside_district").await).is_empty());
    assert!(ids(admin
        .all_submissions("&area=04012&flag=outside_district")
        .await)
    .is_empty());

    let res = admin
        .post("/api/v1/submissions/review")
        .json(&json!({"state": "approved", "filter": {"area": "04012", "flag": "no_location"}, "dry_run": true}))
        .send()
        .await
        .expect("bulk");
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["count"], 1, "only the Chiềng Hắc dialogue");

    let (status, session) = sign_in(&server, "admin", ADMIN_PASSWORD).await;
    assert_eq!(status, 303);
    let session = session.expect("session");
    let page = session
        .get("/ui/queue?area=04231")
        .await
        .text()
        .await
        .expect("queue");
    assert!(page.contains(&c.replace(':', "%3A")) || page.contains(c.as_str()));
    assert!(!page.contains(&a.replace(':', "%3A")) && !page.contains(a.as_str()));
    let page = session
        .get(&format!("/ui/s/{}", a.replace(':', "%3A")))
        .await
        .text()
        .await
        .expect("detail");
    assert!(
        page.contains("data-flag=\"no_location\""),
        "flags are highlighted"
    );
}
