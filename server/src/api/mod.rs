//! The REST API under `/api/v1`: JSON in and out, bearer access tokens.

pub(crate) mod api_keys;
pub(crate) mod areas;
pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod exports;
pub(crate) mod fieldwork;
pub(crate) mod forms;
pub(crate) mod indicators;
pub(crate) mod push;
pub(crate) mod submissions;
pub(crate) mod users;

use actix_web::web;

use crate::error::AppError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .app_data(json_config())
            .app_data(query_config())
            .app_data(path_config())
            .configure(auth::routes)
            .configure(api_keys::routes)
            .configure(forms::routes)
            .configure(users::routes)
            .configure(fieldwork::routes)
            .configure(areas::routes)
            .configure(submissions::routes)
            .configure(audit::routes)
            .configure(indicators::routes)
            .configure(exports::routes)
            .configure(push::routes)
            .configure(crate::openapi::routes)
            .default_service(web::to(|| async {
                Err::<actix_web::HttpResponse, _>(AppError::not_found(
                    "no_route",
                    "no such API endpoint",
                ))
            })),
    );
}

// Framework rejections of bodies, queries and paths answer in the API's JSON error shape.
fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(1024 * 1024)
        .error_handler(|e, _| AppError::bad_request("bad_json", e.to_string()).into())
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|e, _| AppError::bad_request("bad_query", e.to_string()).into())
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|e, _| AppError::bad_request("bad_path", e.to_string()).into())
}
