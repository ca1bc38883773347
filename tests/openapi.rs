//! The API's own description: `/api/v1/openapi.json` and the page `/api/v1/docs`, served by the
//! binary without any outside asset. (That every registered route is described is checked by
//! the unit test `openapi::tests::every_registered_route_is_documented`.)

mod common;

use common::*;
use serde_json::Value;

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
    // Nothing loaded from elsewhere: the page must work without the internet.
    for outside in ["http://", "https://", "<script", "<link"] {
        assert!(!page.contains(outside), "the page refers to {outside}");
    }
}
