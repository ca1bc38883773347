//! The REST API described as an OpenAPI 3.1 document (`GET /api/v1/openapi.json`) and as a page
//! to read offline (`GET /api/v1/docs`), both built from [`OPERATIONS`].
//!
//! Adding a route: add its line to [`OPERATIONS`] (method, path as registered under `/api/v1`,
//! tag, summary, who may call it). The test `every_registered_route_is_documented` lists the
//! routes the application itself registers and fails for any that has no line here.

use actix_web::{web, HttpResponse};
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder};

/// One documented operation.
pub struct Op {
    pub method: &'static str,
    /// Under `/api/v1`, with `{parameters}` as registered.
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    /// Who may call it, beyond a valid token or key.
    pub who: &'static str,
}

const fn op(
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    who: &'static str,
) -> Op {
    Op {
        method,
        path,
        tag,
        summary,
        who,
    }
}

const ADMIN: &str = "administrators (scope `administer` with a key)";
const ANY: &str = "any signed-in user";
const READERS: &str = "roles that read submissions (scope `read_submissions`); rows limited to what the caller may see";
const REVIEWERS: &str = "admin, province officer, supervisor (scope `administer`)";
const INDICATOR_READERS: &str = "admin, province officer, api_client (scope `read_indicators`)";
const PROVINCE: &str = "admin, province officer (scope `administer`)";
const FORM_READERS: &str = "admin, province officer, supervisor, api_client";

pub const OPERATIONS: &[Op] = &[
    op("POST", "/auth/token", "auth", "A user name and password, or an API key, for a short-lived access token", "anyone (rate-limited)"),
    op("POST", "/auth/logout", "auth", "Revoke every access token of the caller, on every instance, at once", ANY),
    op("GET", "/auth/signing-keys", "auth", "The token signing keys' ids and dates (never their secrets)", ADMIN),
    op("POST", "/auth/signing-keys/rotate", "auth", "A new key signs new tokens; tokens signed with earlier keys stay valid until they expire", ADMIN),
    op("GET", "/api-keys", "auth", "API keys of service accounts (never the keys themselves)", ADMIN),
    op("POST", "/api-keys", "auth", "Create an API key {username, name, scopes, expires_at}; the key is shown once", ADMIN),
    op("DELETE", "/api-keys/{id}", "auth", "Revoke an API key and every token exchanged for it, at once", ADMIN),
    op("GET", "/forms", "forms", "Forms and their versions", FORM_READERS),
    op("POST", "/forms", "forms", "Upload an XForm or XLSForm workbook (?publish=true to open it)", ADMIN),
    op("POST", "/forms/convert", "forms", "Convert an XLSForm workbook without storing anything", ADMIN),
    op("GET", "/forms/{form_id}/versions", "forms", "The versions of a form (draft, open, closed)", FORM_READERS),
    op("POST", "/forms/{form_id}/versions/{version}/publish", "forms", "Open a version for phones", ADMIN),
    op("POST", "/forms/{form_id}/versions/{version}/close", "forms", "Close a version", ADMIN),
    op("PUT", "/forms/{form_id}/versions/{version}/media/{filename}", "forms", "Attach a media file to a version", ADMIN),
    op("GET", "/forms/{form_id}/versions/{version}/media", "forms", "The media files of a version", FORM_READERS),
    op("GET", "/forms/{form_id}/versions/{version}/source", "forms", "The XLSForm workbook a version was made from", FORM_READERS),
    op("GET", "/forms/{form_id}/versions/{version}/form.xml", "forms", "The stored XForm, the bytes phones get", FORM_READERS),
    op("GET", "/forms/{form_id}/protection", "forms", "How the form's submissions are protected", ADMIN),
    op("PUT", "/forms/{form_id}/protection", "forms", "Seal submissions, reduce geotags, record consent", ADMIN),
    op("GET", "/users", "users", "Users and their roles", ADMIN),
    op("POST", "/users", "users", "Create a user {username, password, role}", ADMIN),
    op("POST", "/users/{username}/app-key", "users", "Issue a collector's app key", ADMIN),
    op("DELETE", "/users/{username}/app-key", "users", "Revoke a collector's app key", ADMIN),
    op("POST", "/users/{username}/revoke-tokens", "users", "Revoke every access token of a user", ADMIN),
    op("GET", "/users/{username}/forms", "users", "The forms a collector is restricted to", ADMIN),
    op("PUT", "/users/{username}/forms", "users", "Restrict a collector to these forms", ADMIN),
    op("GET", "/users/{username}/areas", "users", "The areas a supervisor covers", ADMIN),
    op("PUT", "/users/{username}/areas", "users", "Set the areas a supervisor covers", ADMIN),
    op("GET", "/users/{username}/hamlets", "users", "The hamlets of a collector", ADMIN),
    op("PUT", "/users/{username}/hamlets", "users", "Set the hamlets of a collector", ADMIN),
    op("GET", "/users/{username}/collect-settings.json", "users", "The settings that configure ODK Collect for a collector", ADMIN),
    op("GET", "/users/{username}/collect-settings.png", "users", "The QR code that configures ODK Collect for a collector", ADMIN),
    op("GET", "/areas", "areas", "The area tree valid on a day (?on=YYYY-MM-DD)", ANY),
    op("GET", "/areas/{code}", "areas", "One area on a day, with parents, children, successions and optionally its boundary", ANY),
    op("GET", "/submissions", "submissions", "Submissions with filters and a cursor; with ?updated_since=CURSOR the change feed for incremental pulls", READERS),
    op("POST", "/submissions/review", "submissions", "Review many submissions at once (ids or filter; dry run; expected count)", REVIEWERS),
    op("GET", "/submissions/{instance_id}", "submissions", "A submission: answers without sensitive values, versions, attachments, review", READERS),
    op("DELETE", "/submissions/{instance_id}", "submissions", "Delete a submission with every version and file; out of the figures at once; audited", ADMIN),
    op("POST", "/submissions/{instance_id}/review", "submissions", "Set a submission's review state, with a comment", REVIEWERS),
    op("GET", "/submissions/{instance_id}/comments", "submissions", "The comment thread", READERS),
    op("POST", "/submissions/{instance_id}/comments", "submissions", "Add a comment", "admin, province officer, supervisor, collector"),
    op("GET", "/submissions/{instance_id}/xml", "submissions", "The raw XML as received (sealed XML needs a purpose, logged)", READERS),
    op("GET", "/submissions/{instance_id}/attachments/{name}", "submissions", "An attachment, or a photo's upright metadata-free copy", READERS),
    op("GET", "/submissions/{instance_id}/sensitive", "submissions", "The values of sensitive fields, for a stated purpose written to the access log", "admin, province officer, supervisor (scope `read_sensitive`)"),
    op("GET", "/access-log", "audit", "Every read of sealed data: who, what, when, why", PROVINCE),
    op("GET", "/audit", "audit", "The append-only audit log", PROVINCE),
    op("GET", "/indicators", "indicators", "The indicator definitions", INDICATOR_READERS),
    op("GET", "/indicators/values", "indicators", "The indicator values table", INDICATOR_READERS),
    op("GET", "/indicators/{code}/values/{area}/{period}/submissions", "indicators", "The submissions behind one number", INDICATOR_READERS),
    op("GET", "/indicators/targets", "indicators", "Targets (?year=)", INDICATOR_READERS),
    op("POST", "/indicators/targets", "indicators", "Import targets (JSON list or CSV), all or nothing", PROVINCE),
    op("GET", "/indicators/baselines", "indicators", "Baselines", INDICATOR_READERS),
    op("POST", "/indicators/baselines", "indicators", "Import baselines (JSON list or CSV), all or nothing", PROVINCE),
    op("GET", "/indicators/periods", "indicators", "Closed reporting periods", INDICATOR_READERS),
    op("GET", "/indicators/periods/{period}", "indicators", "A closed period with its revisions", INDICATOR_READERS),
    op("POST", "/indicators/periods/{period}/close", "indicators", "Close a reporting period", PROVINCE),
    op("GET", "/openapi.json", "docs", "This document", "anyone"),
    op("GET", "/docs", "docs", "This document as a page", "anyone"),
];

fn method(m: &str) -> HttpMethod {
    match m {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        "PATCH" => HttpMethod::Patch,
        _ => HttpMethod::Get,
    }
}

/// The `{name}` parameters of a path.
fn path_parameters(path: &str) -> Vec<&str> {
    path.split('{')
        .skip(1)
        .filter_map(|p| p.split_once('}').map(|(name, _)| name))
        .collect()
}

/// The whole REST API as an OpenAPI document.
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for op in OPERATIONS {
        let public = op.who.starts_with("anyone");
        let mut operation = OperationBuilder::new()
            .summary(Some(op.summary))
            .description(Some(format!("Who: {}.", op.who)))
            .tag(op.tag)
            .response("200", ResponseBuilder::new().description("success (201 for a creation)"))
            .response(
                "4XX",
                ResponseBuilder::new()
                    .description("refused: `{\"error\":{\"code\",\"message\"}}` (401 no or bad credentials, 403 role or key scope, 404 unknown or not visible)"),
            );
        for name in path_parameters(op.path) {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(utoipa::openapi::Required::True),
            );
        }
        if !public {
            operation =
                operation.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
        paths = paths.path(
            format!("/api/v1{}", op.path),
            PathItem::new(method(op.method), operation),
        );
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("fieldtally REST API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Send `Authorization: Bearer <access token or API key>`. An access token comes from POST /api/v1/auth/token; an API key (ftk_…) from an administrator. Errors are {\"error\":{\"code\",\"message\"}}.",
                )),
        )
        .paths(paths)
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme(
                    "bearer",
                    SecurityScheme::Http(
                        HttpBuilder::new()
                            .scheme(HttpAuthScheme::Bearer)
                            .bearer_format("JWT or API key")
                            .build(),
                    ),
                )
                .build(),
        ))
        .build()
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(json))
        .route("/docs", web::get().to(page));
}

async fn json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

/// The document as a plain page: served by the binary, no script, works offline.
async fn page() -> HttpResponse {
    use maud::html;
    let markup = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "fieldtally REST API" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                h1 { "fieldtally REST API" }
                p {
                    "Every path is under " code { "/api/v1" } ". Send "
                    code { "Authorization: Bearer <access token or API key>" }
                    ". Errors are " code { "{\"error\":{\"code\",\"message\"}}" }
                    ". The same as OpenAPI: " a href="/api/v1/openapi.json" { "openapi.json" } "."
                }
                @for tag in tags() {
                    h2 { (tag) }
                    table {
                        @for op in OPERATIONS.iter().filter(|o| o.tag == tag) {
                            tr {
                                td class="m" { (op.method) }
                                td { code { "/api/v1" (op.path) } }
                                td { (op.summary) br; small { "Who: " (op.who) } }
                            }
                        }
                    }
                }
            }
        }
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ))
        .body(markup.into_string())
}

fn tags() -> Vec<&'static str> {
    let mut tags: Vec<&str> = Vec::new();
    for op in OPERATIONS {
        if !tags.contains(&op.tag) {
            tags.push(op.tag);
        }
    }
    tags
}

const STYLE: &str = "body{font-family:sans-serif;max-width:70em;margin:1em auto;padding:0 1em}table{border-collapse:collapse;width:100%}td{border-top:1px solid #ccc;padding:.3em;vertical-align:top}td.m{font-weight:bold;width:5em}small{color:#555}";

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test as web_test;
    use actix_web::App;

    /// The `/api/v1` resource patterns the application registers, read from its resource map,
    /// so that a new route is found without anyone listing it. actix-web offers no iterator over
    /// the map, so this reads its debug form, where every scope and resource is a nested
    /// `ResourceMap { pattern: ResourceDef { .. patterns: Single("…") .. } .. nodes: … }`; a
    /// node's full path is its open ancestors' patterns joined. (If actix-web changed that
    /// form, the test below fails loudly rather than passing with nothing found.)
    fn patterns(map: &str) -> Vec<String> {
        const NODE: &str = "ResourceMap {";
        const PATTERN: &str = "patterns: Single(\"";
        let mut out = Vec::new();
        // The nodes still open: the brace depth inside each, and its full path.
        let mut open: Vec<(usize, String)> = Vec::new();
        let mut depth = 0usize;
        let mut i = 0;
        while i < map.len() {
            let rest = &map[i..];
            if rest.starts_with(NODE) {
                depth += 1;
                while open.last().is_some_and(|(d, _)| *d >= depth) {
                    open.pop();
                }
                let own = rest
                    .find(PATTERN)
                    .and_then(|at| rest[at + PATTERN.len()..].split_once("\")"))
                    .map(|(p, _)| p)
                    .unwrap_or_default();
                let parent = open.last().map(|(_, p)| p.as_str()).unwrap_or_default();
                let full = format!("{parent}{own}");
                out.push(full.clone());
                open.push((depth, full));
                i += NODE.len();
                continue;
            }
            match rest.as_bytes()[0] {
                b'{' => depth += 1,
                b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
        out.retain(|p| p.starts_with("/api/v1/"));
        out.sort();
        out.dedup();
        out
    }

    #[actix_web::test]
    async fn every_registered_route_is_documented() {
        let app = web_test::init_service(App::new().configure(crate::api::routes).route(
            "/resource-map",
            web::get().to(|req: actix_web::HttpRequest| async move {
                format!("{:?}", req.resource_map())
            }),
        ))
        .await;
        let map = web_test::call_and_read_body(
            &app,
            web_test::TestRequest::get()
                .uri("/resource-map")
                .to_request(),
        )
        .await;
        let patterns = patterns(&String::from_utf8_lossy(&map));
        assert!(
            patterns.contains(&"/api/v1/submissions/{instance_id}".to_string()),
            "the resource map could not be read: {patterns:?}"
        );
        let documented = document();
        let mut missing = Vec::new();
        let mut found = 0;
        for pattern in &patterns {
            let uri = pattern
                .split('/')
                .map(|s| if s.starts_with('{') { "1" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            for m in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
                let req = web_test::TestRequest::default()
                    .method(actix_web::http::Method::from_bytes(m.as_bytes()).expect("method"))
                    .uri(&uri)
                    .to_request();
                let res = web_test::call_service(&app, req).await;
                // Another route took it (`/submissions/review` for GET is the detail's).
                if res.request().match_pattern().as_deref() != Some(pattern.as_str()) {
                    continue;
                }
                // 405: the path is registered without this method; 404 `no_route`: not at all.
                let status = res.status().as_u16();
                let body = web_test::read_body(res).await;
                let unrouted =
                    status == 404 && String::from_utf8_lossy(&body).contains("\"no_route\"");
                if status == 405 || unrouted {
                    continue;
                }
                found += 1;
                let item = documented.paths.paths.get(pattern);
                let has = item.is_some_and(|i| match m {
                    "GET" => i.get.is_some(),
                    "POST" => i.post.is_some(),
                    "PUT" => i.put.is_some(),
                    "DELETE" => i.delete.is_some(),
                    _ => i.patch.is_some(),
                });
                if !has {
                    missing.push(format!("{m} {pattern}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "routes without a line in openapi::OPERATIONS: {missing:?}"
        );
        // And nothing documented that the application does not route.
        assert_eq!(
            found,
            OPERATIONS.len(),
            "a documented operation has no route"
        );
    }

    #[test]
    fn every_documented_operation_names_its_path_parameters() {
        let doc = serde_json::to_value(document()).expect("json");
        let op = &doc["paths"]["/api/v1/submissions/{instance_id}/attachments/{name}"]["get"];
        assert_eq!(op["parameters"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            doc["paths"]["/api/v1/auth/token"]["post"].get("security"),
            None
        );
    }
}
