//! The API's own description: `/api/v1/openapi.json` and the page `/api/v1/docs`, served by the
//! binary without any outside asset. (That every registered route is described is checked by
//! the unit test `openapi::tests::every_registered_route_is_documented`.)

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn the_api_description_and_its_page_are_served_offline() {
    let server = Server::start().await;
    let http = reqwest::Client::new();
    let res = http
        .get(server.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("openapi.json");
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/api/v1/submissions/{instance_id}"));
    assert!(paths["/api/v1/submissions/{instance_id}"]["delete"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let res = http
        .get(server.url("/api/v1/docs"))
        .send()
        .await
        .expect("docs");
    assert_eq!(res.status(), 200);
    let csp = res
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let page = res.text().await.expect("page");
    assert!(page.contains("/api/v1/submissions/{instance_id}"));
    assert!(page.contains("updated_since"));
    // Each operation's query parameters, body and answer are named on the page.
    assert!(page.contains("<code>updated_since</code>"), "{page}");
    assert!(page.contains("Body: Login (application/json)"), "{page}");
    assert!(
        page.contains("Answer: 200 TokenResponse (application/json)"),
        "{page}"
    );
    assert!(page.contains("text/csv"), "{page}");
    // Nothing loaded from elsewhere: the page must work without the internet.
    for outside in ["http://", "https://", "<script", "<link"] {
        assert!(!page.contains(outside), "the page refers to {outside}");
    }
}

/// Checks real answers against the schemas the document gives for them.
struct Schemas {
    doc: Value,
}

impl Schemas {
    async fn fetch(server: &Server) -> Schemas {
        let res = reqwest::get(server.url("/api/v1/openapi.json"))
            .await
            .expect("openapi.json");
        assert_eq!(res.status(), 200);
        Schemas {
            doc: res.json().await.expect("json"),
        }
    }

    /// A validator for `schema`, its `$ref`s resolved in the document's components (OpenAPI
    /// 3.1 schemas are JSON Schema 2020-12).
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        assert!(schema.is_object(), "no schema");
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("the schema does not compile: {e}\n{schema}"))
    }

    fn operation(&self, method: &str, path: &str) -> &Value {
        let op = &self.doc["paths"][format!("/api/v1{path}")][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        op
    }

    /// The answer's schema for `status` (the `4XX` error body for 400 to 499).
    fn answer(&self, method: &str, path: &str, status: u16) -> jsonschema::Validator {
        let responses = &self.operation(method, path)["responses"];
        let answer = match responses.get(status.to_string()) {
            Some(a) => a,
            None if (400..500).contains(&status) => &responses["4XX"],
            None => panic!("{method} {path} documents no {status}: {responses}"),
        };
        self.validator(&answer["content"]["application/json"]["schema"])
    }

    fn request(&self, method: &str, path: &str) -> jsonschema::Validator {
        let op = self.operation(method, path);
        self.validator(&op["requestBody"]["content"]["application/json"]["schema"])
    }

    /// Asserts that `body`, answered with `status` by `method path`, is what the document
    /// says; returns it.
    fn check(&self, method: &str, path: &str, status: u16, body: Value) -> Value {
        let validator = self.answer(method, path, status);
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} answered {status} unlike its schema: {errors:?}\n{body}"
        );
        body
    }
}

/// Sends `req` and checks its JSON answer against the document.
async fn checked(
    schemas: &Schemas,
    method: &str,
    documented: &str,
    req: reqwest::RequestBuilder,
    status: u16,
) -> Value {
    let res = req.send().await.expect("request");
    let got = res.status().as_u16();
    let body: Value = res.json().await.expect("json answer");
    assert_eq!(got, status, "{method} {documented}: {body}");
    schemas.check(method, documented, status, body)
}

#[tokio::test]
async fn real_answers_match_the_documented_schemas() {
    let (server, admin) = server_with_hamlets().await;
    let schemas = Schemas::fetch(&server).await;
    let http = reqwest::Client::new();

    // Sign-in: the request as documented, the token and the error body.
    let login = json!({ "username": "admin", "password": ADMIN_PASSWORD });
    assert!(schemas.request("post", "/auth/token").is_valid(&login));
    assert!(!schemas
        .request("post", "/auth/token")
        .is_valid(&json!({ "username": "admin" })));
    let token = checked(
        &schemas,
        "post",
        "/auth/token",
        http.post(server.url("/api/v1/auth/token")).json(&login),
        200,
    )
    .await;
    // The schemas are not vacuous: an answer without its token is refused.
    let mut broken = token.clone();
    broken
        .as_object_mut()
        .expect("object")
        .remove("access_token");
    assert!(!schemas.answer("post", "/auth/token", 200).is_valid(&broken));
    let refused = checked(
        &schemas,
        "post",
        "/auth/token",
        http.post(server.url("/api/v1/auth/token"))
            .json(&json!({ "username": "admin", "password": "wrong" })),
        401,
    )
    .await;
    assert_eq!(refused["error"]["code"], "bad_credentials");
    assert!(!schemas
        .answer("post", "/auth/token", 401)
        .is_valid(&json!({ "error": { "code": "x" } })));
    checked(
        &schemas,
        "get",
        "/submissions",
        admin.get("/api/v1/submissions?limit=0"),
        400,
    )
    .await;

    // A submission, listed, in the feed, in detail, reviewed and commented on.
    let phone = collector(&server);
    let id = new_instance_id();
    let xml = Dialogue::new(&id, "DEMO-04231-1").xml();
    assert_eq!(phone.submit(&xml, &[], false).await.status(), 201);
    let list = checked(
        &schemas,
        "get",
        "/submissions",
        admin.get("/api/v1/submissions"),
        200,
    )
    .await;
    assert_eq!(list["submissions"][0]["instance_id"], id.as_str());
    // On PostgreSQL the feed holds a change back while any older transaction on the database
    // server is open (other tests run at the same time): it shows a moment later.
    let mut feed = Value::Null;
    for _ in 0..300 {
        feed = checked(
            &schemas,
            "get",
            "/submissions",
            admin.get("/api/v1/submissions?updated_since="),
            200,
        )
        .await;
        if feed["changes"].as_array().is_some_and(|c| !c.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(feed["changes"][0]["change"], "created", "{feed}");
    let review = json!({ "state": "has_issues", "comment": "the count looks high" });
    assert!(schemas
        .request("post", "/submissions/{instance_id}/review")
        .is_valid(&review));
    checked(
        &schemas,
        "post",
        "/submissions/{instance_id}/review",
        admin
            .post(&format!("/api/v1/submissions/{id}/review"))
            .json(&review),
        200,
    )
    .await;
    checked(
        &schemas,
        "post",
        "/submissions/{instance_id}/comments",
        admin
            .post(&format!("/api/v1/submissions/{id}/comments"))
            .json(&json!({ "body": "checked with the commune" })),
        201,
    )
    .await;
    let detail = checked(
        &schemas,
        "get",
        "/submissions/{instance_id}",
        admin.get(&format!("/api/v1/submissions/{id}")),
        200,
    )
    .await;
    assert_eq!(detail["review"]["state"], "has_issues");
    for (documented, path) in [
        (
            "/submissions/{instance_id}/comments",
            format!("/api/v1/submissions/{id}/comments"),
        ),
        ("/forms", "/api/v1/forms".to_string()),
        ("/users", "/api/v1/users".to_string()),
        (
            "/users/{username}/hamlets",
            "/api/v1/users/lan/hamlets".to_string(),
        ),
        ("/areas", "/api/v1/areas".to_string()),
        ("/areas/{code}", "/api/v1/areas/DEMO-04231-1".to_string()),
        ("/audit", "/api/v1/audit".to_string()),
        ("/indicators", "/api/v1/indicators".to_string()),
        (
            "/auth/signing-keys",
            "/api/v1/auth/signing-keys".to_string(),
        ),
        ("/deliveries", "/api/v1/deliveries".to_string()),
    ] {
        checked(&schemas, "get", documented, admin.get(&path), 200).await;
    }

    // The values table, with a row the submission made, and the submissions behind it.
    let values = checked(
        &schemas,
        "get",
        "/indicators/values",
        admin.get("/api/v1/indicators/values?period=2025&indicator=P8-08"),
        200,
    )
    .await;
    assert!(participants(&values) > 0.0, "{values}");
    let row = values["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["measure"] == "participants")
        .expect("participants");
    checked(
        &schemas,
        "get",
        "/indicators/{code}/values/{area}/{period}/submissions",
        admin.get(&format!(
            "/api/v1/indicators/P8-08/values/{}/2025/submissions?measure=participants",
            row["area"].as_str().expect("area")
        )),
        200,
    )
    .await;

    // An export job, started, followed and listed.
    let job = checked(
        &schemas,
        "post",
        "/exports",
        admin
            .post("/api/v1/exports")
            .json(&json!({ "form": "policy_dialogue", "format": "xlsx" })),
        202,
    )
    .await;
    let job_id = job["id"].as_str().expect("id").to_string();
    let mut status = job;
    for _ in 0..300 {
        if status["status"] == "done" || status["status"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        status = checked(
            &schemas,
            "get",
            "/exports/{id}",
            admin.get(&format!("/api/v1/exports/{job_id}")),
            200,
        )
        .await;
    }
    assert_eq!(status["status"], "done", "{status}");
    assert!(status["download"].is_string(), "{status}");
    checked(
        &schemas,
        "get",
        "/exports",
        admin.get("/api/v1/exports"),
        200,
    )
    .await;

    // Keys, push targets, targets and closed periods: what administrators and the province's
    // systems read back.
    admin
        .create_user("svc", "svc-password-1", "api_client")
        .await;
    let created = checked(
        &schemas,
        "post",
        "/api-keys",
        admin.post("/api/v1/api-keys").json(
            &json!({ "username": "svc", "name": "nightly pull", "scopes": ["read_indicators"] }),
        ),
        201,
    )
    .await;
    let key_token = checked(
        &schemas,
        "post",
        "/auth/token",
        http.post(server.url("/api/v1/auth/token"))
            .json(&json!({ "api_key": created["key"] })),
        200,
    )
    .await;
    assert_eq!(key_token["scope"], "read_indicators");
    let target = checked(
        &schemas,
        "post",
        "/push-targets",
        admin.post("/api/v1/push-targets").json(&json!({
            "name": "province hook",
            "kind": "webhook",
            "url": "http://127.0.0.1:9/hook",
            "events": ["submission.deleted"],
        })),
        201,
    )
    .await;
    assert!(target["secret"].is_string(), "{target}");
    checked(
        &schemas,
        "post",
        "/indicators/targets",
        admin.post("/api/v1/indicators/targets").json(
            &json!({ "targets": [{ "indicator": "P8-08", "area": "14", "year": 2025, "target": 100 }] }),
        ),
        200,
    )
    .await;
    checked(
        &schemas,
        "post",
        "/indicators/periods/{period}/close",
        admin
            .post("/api/v1/indicators/periods/2025-Q3/close")
            .json(&json!({ "note": "quarter III" })),
        201,
    )
    .await;
    for (documented, path) in [
        ("/api-keys", "/api/v1/api-keys".to_string()),
        ("/push-targets", "/api/v1/push-targets".to_string()),
        (
            "/push-targets/{id}",
            format!("/api/v1/push-targets/{}", target["id"]),
        ),
        (
            "/indicators/targets",
            "/api/v1/indicators/targets".to_string(),
        ),
        (
            "/indicators/baselines",
            "/api/v1/indicators/baselines".to_string(),
        ),
        (
            "/indicators/periods",
            "/api/v1/indicators/periods".to_string(),
        ),
        (
            "/indicators/periods/{period}",
            "/api/v1/indicators/periods/2025-Q3".to_string(),
        ),
        (
            "/forms/{form_id}/versions",
            "/api/v1/forms/policy_dialogue/versions".to_string(),
        ),
        (
            "/forms/{form_id}/protection",
            "/api/v1/forms/policy_dialogue/protection".to_string(),
        ),
        ("/access-log", "/api/v1/access-log".to_string()),
    ] {
        checked(&schemas, "get", documented, admin.get(&path), 200).await;
    }
    checked(
        &schemas,
        "delete",
        "/submissions/{instance_id}",
        admin.delete(&format!("/api/v1/submissions/{id}")),
        200,
    )
    .await;

    let download = admin
        .get(&format!("/api/v1/exports/{job_id}/download"))
        .send()
        .await
        .expect("download");
    let content_type = download
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        schemas.operation("get", "/exports/{id}/download")["responses"]["200"]["content"]
            .get(&content_type)
            .is_some(),
        "the download's {content_type} is not documented"
    );
}
