//! Every route walked with every role: what each may do, and what each may not see.

mod common;

use common::collect::{Attachment, Collect};
use common::photos::phone_jpeg;
use common::web::sign_in;
use common::*;
use serde_json::{json, Value};

/// The roles in the order of the expectation arrays below. `supervisor` covers a commune
/// (04243); `minh` is a collector who did not send the submission under test.
const ROLES: [&str; 6] = ["admin", "officer", "supervisor", "lan", "minh", "service"];

/// The allowed/forbidden matrix. The submission under test has no hamlet, so it lies in no
/// supervisor's area: the `supervisor` column says 404 (invisible). What a supervisor sees
/// inside and outside their areas is tested in `tests/area_scope.rs`.
struct Case {
    method: &'static str,
    path: String,
    body: Option<Value>,
    expect: [u16; 6],
}

fn case(
    method: &'static str,
    path: impl Into<String>,
    body: Option<Value>,
    expect: [u16; 6],
) -> Case {
    Case {
        method,
        path: path.into(),
        body,
        expect,
    }
}

#[tokio::test]
async fn every_route_with_every_role() {
    let (server, admin) = server_with_forms().await;
    admin
        .create_user("officer", "officer-password", "province_officer")
        .await;
    admin
        .create_user("supervisor", "supervisor-password", "supervisor")
        .await;
    admin
        .create_user("minh", "minh-password-1", "collector")
        .await;
    admin
        .create_user("service", "service-password", "api_client")
        .await;
    let res = admin
        .put("/api/v1/users/supervisor/areas")
        .json(&json!({ "area_codes": ["04243"] }))
        .send()
        .await
        .expect("areas");
    assert_eq!(res.status(), 200);

    // One submission by lan, with a real photo.
    let id = new_instance_id();
    let xml = all_features_instance(&id, None, "Lò Thị Mai", 5, Some("p.jpg"));
    let res = collector(&server)
        .submit(&xml, &[Attachment::jpeg("p.jpg", phone_jpeg())], false)
        .await;
    assert_eq!(res.status(), 201);

    let passwords = [
        ADMIN_PASSWORD,
        "officer-password",
        "supervisor-password",
        "lan-password-1",
        "minh-password-1",
        "service-password",
    ];
    let mut clients = Vec::new();
    for (name, password) in ROLES.iter().zip(passwords) {
        clients.push(Admin::login(&server, name, password).await);
    }

    let s = format!("/api/v1/submissions/{id}");
    let cases = vec![
        // Forms: reading for everyone but collectors (who use OpenRosa); changes for admins.
        case("GET", "/api/v1/forms", None, [200, 200, 200, 403, 403, 200]),
        case(
            "GET",
            "/api/v1/forms/all_features/versions",
            None,
            [200, 200, 200, 403, 403, 200],
        ),
        case(
            "GET",
            "/api/v1/forms/all_features/versions/2025040301/media",
            None,
            [200, 200, 200, 403, 403, 200],
        ),
        case(
            "POST",
            "/api/v1/forms/all_features/versions/2025040301/publish",
            None,
            [200, 403, 403, 403, 403, 403],
        ),
        // Users and areas: admins only.
        case("GET", "/api/v1/users", None, [200, 403, 403, 403, 403, 403]),
        case(
            "POST",
            "/api/v1/users",
            Some(json!({"username":"x1","password":"password-x1","role":"collector"})),
            [201, 403, 403, 403, 403, 403],
        ),
        case(
            "GET",
            "/api/v1/users/supervisor/areas",
            None,
            [200, 403, 403, 403, 403, 403],
        ),
        case(
            "PUT",
            "/api/v1/users/supervisor/areas",
            Some(json!({"area_codes":["04243"]})),
            [200, 403, 403, 403, 403, 403],
        ),
        case(
            "GET",
            "/api/v1/users/lan/forms",
            None,
            [200, 403, 403, 403, 403, 403],
        ),
        case(
            "PUT",
            "/api/v1/users/lan/forms",
            Some(json!({"form_ids":[]})),
            [200, 403, 403, 403, 403, 403],
        ),
        case(
            "POST",
            "/api/v1/users/minh/app-key",
            None,
            [201, 403, 403, 403, 403, 403],
        ),
        case(
            "DELETE",
            "/api/v1/users/minh/app-key",
            None,
            [200, 403, 403, 403, 403, 403],
        ),
        // Submissions: the list answers everyone (filtered); one submission only those who see it.
        case(
            "GET",
            "/api/v1/submissions",
            None,
            [200, 200, 200, 200, 200, 200],
        ),
        case("GET", s.clone(), None, [200, 200, 404, 200, 404, 200]),
        case(
            "GET",
            format!("{s}/xml"),
            None,
            [200, 200, 404, 200, 404, 200],
        ),
        case(
            "GET",
            format!("{s}/attachments/p.jpg"),
            None,
            [200, 200, 404, 200, 404, 200],
        ),
        case(
            "GET",
            format!("{s}/attachments/p.jpg?size=thumb"),
            None,
            [200, 200, 404, 200, 404, 200],
        ),
        case(
            "GET",
            format!("{s}/comments"),
            None,
            [200, 200, 404, 200, 404, 200],
        ),
        case(
            "POST",
            format!("{s}/comments"),
            Some(json!({"body":"ok?"})),
            [201, 201, 404, 201, 404, 403],
        ),
        case(
            "POST",
            format!("{s}/review"),
            Some(json!({"state":"approved"})),
            [200, 200, 404, 403, 403, 403],
        ),
        case(
            "POST",
            "/api/v1/submissions/review",
            Some(json!({"state":"approved","filter":{},"dry_run":true})),
            [200, 200, 200, 403, 403, 403],
        ),
        case(
            "POST",
            "/api/v1/submissions/review",
            Some(json!({"state":"has_issues","comment":"check","ids":[id]})),
            [200, 200, 404, 403, 403, 403],
        ),
        case("GET", "/api/v1/audit", None, [200, 200, 403, 403, 403, 403]),
        // Protected data: opening sealed values needs the role and the submission in view; the
        // access log is read like the audit log; protection settings and revocation are admin's.
        case(
            "GET",
            format!("{s}/sensitive?purpose=matrix%20test"),
            None,
            [200, 200, 404, 403, 403, 403],
        ),
        case(
            "GET",
            "/api/v1/access-log",
            None,
            [200, 200, 403, 403, 403, 403],
        ),
        case(
            "GET",
            "/api/v1/forms/all_features/protection",
            None,
            [200, 403, 403, 403, 403, 403],
        ),
        case(
            "PUT",
            "/api/v1/forms/all_features/protection",
            Some(json!({"sensitive": false})),
            [200, 403, 403, 403, 403, 403],
        ),
        // Indicators: the province's figures for admins, officers and service accounts;
        // targets, baselines and closing periods for the province only.
        case(
            "GET",
            "/api/v1/indicators",
            None,
            [200, 200, 403, 403, 403, 200],
        ),
        case(
            "GET",
            "/api/v1/indicators/values?period=2025",
            None,
            [200, 200, 403, 403, 403, 200],
        ),
        case(
            "GET",
            "/api/v1/indicators/P8-01/values/14/2025/submissions",
            None,
            [200, 200, 403, 403, 403, 200],
        ),
        case(
            "GET",
            "/api/v1/indicators/targets",
            None,
            [200, 200, 403, 403, 403, 200],
        ),
        case(
            "POST",
            "/api/v1/indicators/targets",
            Some(json!([])),
            [200, 200, 403, 403, 403, 403],
        ),
        case(
            "GET",
            "/api/v1/indicators/periods",
            None,
            [200, 200, 403, 403, 403, 200],
        ),
        // The admin closes the year; the officer, allowed too, finds it closed already.
        case(
            "POST",
            "/api/v1/indicators/periods/2019/close",
            None,
            [201, 409, 403, 403, 403, 403],
        ),
        case(
            "POST",
            "/api/v1/users/nobody/revoke-tokens",
            None,
            [404, 403, 403, 403, 403, 403],
        ),
    ];
    for c in &cases {
        for (i, client) in clients.iter().enumerate() {
            let mut req = match c.method {
                "GET" => client.get(&c.path),
                "POST" => client.post(&c.path),
                "PUT" => client.put(&c.path),
                "DELETE" => client.delete(&c.path),
                other => panic!("method {other}"),
            };
            if let Some(b) = &c.body {
                req = req.json(b);
            }
            let res = req.send().await.expect("request");
            let status = res.status().as_u16();
            let body = res.text().await.unwrap_or_default();
            assert_eq!(
                status, c.expect[i],
                "{} {} as {}: {body}",
                c.method, c.path, ROLES[i]
            );
            if status == 403 {
                let v: Value = serde_json::from_str(&body).expect("json error");
                assert_eq!(v["error"]["code"], "forbidden");
            }
        }
    }

    // What each sees in the list.
    let mut counts = Vec::new();
    for client in &clients {
        counts.push(client.all_submissions("").await.len());
    }
    assert_eq!(
        counts,
        [1, 1, 0, 1, 0, 1],
        "admin, officer, supervisor, lan, minh, service"
    );

    // OpenRosa: everyone who collects; never a service account.
    for (name, password, expected) in [
        ("officer", "officer-password", 200),
        ("supervisor", "supervisor-password", 200),
        ("minh", "minh-password-1", 200),
        ("service", "service-password", 403),
    ] {
        let c = Collect::with_password(&server.base, name, password);
        assert_eq!(
            c.get("/formList").await.status(),
            expected,
            "formList as {name}"
        );
    }

    // The web page: every person may sign in; a service account may not.
    let ui = format!("/ui/s/{}", id.replace(':', "%3A"));
    for (name, password, detail) in [
        ("admin", ADMIN_PASSWORD, 200),
        ("officer", "officer-password", 200),
        ("supervisor", "supervisor-password", 404),
        ("lan", "lan-password-1", 200),
        ("minh", "minh-password-1", 404),
    ] {
        let (status, session) = sign_in(&server, name, password).await;
        assert_eq!(status, 303, "sign in as {name}");
        let session = session.expect("session");
        assert_eq!(
            session.get(&ui).await.status(),
            detail,
            "detail page as {name}"
        );
        let thumb = session.get(&format!("{ui}/files/p.jpg?size=thumb")).await;
        assert_eq!(thumb.status(), detail, "thumbnail as {name}");
        let review = session
            .post(&format!("{ui}/review"), &[("state", "approved")])
            .await;
        let expected = match name {
            "admin" | "officer" => 303,
            "lan" | "minh" => 403,
            _ => 404,
        };
        assert_eq!(review.status(), expected, "review from the page as {name}");
    }
    let (status, session) = sign_in(&server, "service", "service-password").await;
    assert_eq!(status, 403);
    assert!(session.is_none());
    // Not signed in: every page sends the browser to the sign-in page.
    let anonymous = common::web::client();
    for path in ["/ui/queue", ui.as_str()] {
        let res = anonymous.get(server.url(path)).send().await.expect("get");
        assert_eq!(res.status(), 303, "{path}");
        assert_eq!(res.headers()["location"], "/ui/login");
    }
}
