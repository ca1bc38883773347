//! Operations endpoints: `/healthz` (the process answers), `/readyz` (the database answers and
//! the writer runs), `/metrics` (Prometheus). None of them touches personal data.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::auth::digest::constant_time_eq;
use crate::error::AppError;
use crate::state::AppState;

/// How long `/readyz` waits for the database before calling it unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db = match tokio::time::timeout(READY_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 seconds".to_string()),
    };
    let writer = if state.db.writer_running() {
        Ok(())
    } else {
        Err("the writer has stopped".to_string())
    };
    match (db, writer) {
        (Ok(()), Ok(())) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        (db, writer) => {
            // The cause goes to the log only; it may name hosts or paths.
            tracing::warn!(database = ?db.err(), writer = ?writer.err(), "not ready");
            HttpResponse::ServiceUnavailable().json(json!({
                "status": "unavailable",
                "error": { "code": "not_ready", "message": "the database is not reachable" }
            }))
        }
    }
}

async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    if let Some(token) = &state.config.metrics_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return Err(AppError::client(
                actix_web::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the metrics token: Authorization: Bearer <token>",
            ));
        }
    }
    let mut body = state
        .metrics
        .render(state.db.writer_stats(), state.db.writer_queue_length());
    let (pending, failed) = state.db.read(crate::push::outbox::counts).await?;
    crate::metrics::render_outbox(&mut body, pending, failed);
    let waiting = state.db.read(crate::indicators::backlog::waiting).await?;
    crate::metrics::render_backlog(&mut body, waiting);
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        ))
        .body(body))
}
