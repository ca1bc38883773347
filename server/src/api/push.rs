//! Push targets and their deliveries: the administrator's configuration of what goes upstream
//! (webhooks, DHIS2) and the outbox's state. Secrets go in, never out.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::indicators::import_rows;
use crate::audit::{self, Actor};
use crate::auth::ApiUser;
use crate::error::AppError;
use crate::push::{self, dhis2, outbox, ElementMap, OrgUnitMap, TargetInput};
use crate::state::AppState;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;
/// Mappings for every commune and many data elements fit well within this.
const MAX_MAPPING_BYTES: usize = 5 * 1024 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/push-targets")
            .route(web::get().to(list_targets))
            .route(web::post().to(create_target)),
    )
    .service(
        web::resource("/push-targets/{id}")
            .route(web::get().to(get_target))
            .route(web::put().to(update_target))
            .route(web::delete().to(delete_target)),
    )
    .service(
        web::resource("/push-targets/{id}/data-elements")
            .app_data(web::PayloadConfig::new(MAX_MAPPING_BYTES))
            .route(web::put().to(put_data_elements)),
    )
    .service(
        web::resource("/push-targets/{id}/org-units")
            .app_data(web::PayloadConfig::new(MAX_MAPPING_BYTES))
            .route(web::put().to(put_org_units)),
    )
    .route("/deliveries", web::get().to(list_deliveries))
    .route("/deliveries/{id}", web::get().to(get_delivery))
    .route("/deliveries/{id}/retry", web::post().to(retry_delivery));
}

fn actor(user: &ApiUser) -> Actor {
    Actor {
        id: user.id,
        username: user.username.clone(),
    }
}

fn parse_id(s: &str, what: &'static str) -> Result<i64, AppError> {
    s.parse::<i64>()
        .map_err(|_| AppError::bad_request("bad_path", format!("'{s}' is not a {what} id")))
}

/// Reads a JSON body with the API's error shape for anything unreadable.
fn json_body(body: &[u8]) -> Result<TargetInput, AppError> {
    serde_json::from_slice(body).map_err(|e| AppError::bad_request("bad_json", e.to_string()))
}

async fn list_targets(user: ApiUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let targets = state.db.read(push::all).await?;
    let keys = state.data_keys.clone();
    let list: Vec<_> = targets.iter().map(|t| t.view(&keys)).collect();
    Ok(HttpResponse::Ok().json(json!({ "push_targets": list })))
}

async fn get_target(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = parse_id(&path.into_inner(), "push target")?;
    let t = state.db.read(move |conn| push::get(conn, id)).await?;
    Ok(HttpResponse::Ok().json(t.view(&state.data_keys)))
}

/// Checks a DHIS2 mapping against the definitions and areas (reads only).
async fn check_against_registry(state: &AppState, checked: &push::Checked) -> Result<(), AppError> {
    if let Some(s) = checked.settings.dhis2.clone() {
        let indicators = state.indicators.clone();
        state
            .db
            .read(move |conn| dhis2::check_mapping(conn, &indicators, &s))
            .await?;
    }
    Ok(())
}

async fn create_target(
    user: ApiUser,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let checked = push::check(json_body(&body)?, None)?;
    check_against_registry(&state, &checked).await?;
    let keys = state.data_keys.clone();
    let who = actor(&user);
    let stored = checked.clone();
    let t = state
        .db
        .write(move |conn| {
            let t = push::create(conn, &keys, &stored)?;
            audit::record(
                conn,
                &who,
                "push_target.created",
                Some(&t.id.to_string()),
                json!({ "kind": t.kind, "name": t.name }),
            )?;
            Ok(t)
        })
        .await?;
    let mut view = t.view(&state.data_keys);
    if let Some(secret) = &checked.generated_secret {
        // Shown once: the receiver needs it to check signatures; it is never shown again.
        view["secret"] = json!(secret);
    }
    Ok(HttpResponse::Created().json(view))
}

async fn update_target(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = parse_id(&path.into_inner(), "push target")?;
    let input = json_body(&body)?;
    let existing = state.db.read(move |conn| push::get(conn, id)).await?;
    let checked = push::check(input, Some(&existing))?;
    replace(&user, &state, id, checked).await
}

/// Stores a checked replacement of target `id`.
async fn replace(
    user: &ApiUser,
    state: &AppState,
    id: i64,
    checked: push::Checked,
) -> Result<HttpResponse, AppError> {
    check_against_registry(state, &checked).await?;
    let keys = state.data_keys.clone();
    let who = actor(user);
    let t = state
        .db
        .write(move |conn| {
            let t = push::update(conn, &keys, id, &checked)?;
            audit::record(
                conn,
                &who,
                "push_target.updated",
                Some(&id.to_string()),
                json!({ "kind": t.kind, "name": t.name, "secret_changed": checked.secret.is_some() }),
            )?;
            Ok(t)
        })
        .await?;
    Ok(HttpResponse::Ok().json(t.view(&state.data_keys)))
}

async fn delete_target(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = parse_id(&path.into_inner(), "push target")?;
    let who = actor(&user);
    state
        .db
        .write(move |conn| {
            let t = push::delete(conn, id)?;
            audit::record(
                conn,
                &who,
                "push_target.deleted",
                Some(&id.to_string()),
                json!({ "kind": t.kind, "name": t.name }),
            )
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A data element mapping row of a CSV file; `disaggregation` is `dim=value;dim=value`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ElementCsvRow {
    indicator: String,
    #[serde(default)]
    measure: Option<String>,
    #[serde(default)]
    disaggregation: Option<String>,
    data_element: String,
    #[serde(default)]
    category_option_combo: Option<String>,
    #[serde(default)]
    attribute_option_combo: Option<String>,
}

fn disaggregation(label: &str, text: &str) -> Result<BTreeMap<String, String>, AppError> {
    let mut out = BTreeMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            AppError::bad_request(
                "bad_import_row",
                format!("{label}: disaggregation is dimension=value;dimension=value, not '{part}'"),
            )
        })?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

fn empty_none(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn is_csv(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/csv"))
}

fn element_rows(req: &HttpRequest, body: &[u8]) -> Result<Vec<ElementMap>, AppError> {
    if !is_csv(req) {
        return Ok(import_rows::<ElementMap>(req, body, "data_elements")?
            .into_iter()
            .map(|(_, r)| r)
            .collect());
    }
    import_rows::<ElementCsvRow>(req, body, "data_elements")?
        .into_iter()
        .map(|(label, r)| {
            Ok(ElementMap {
                indicator: r.indicator,
                measure: empty_none(r.measure),
                disaggregation: disaggregation(&label, r.disaggregation.as_deref().unwrap_or(""))?,
                data_element: r.data_element,
                category_option_combo: empty_none(r.category_option_combo),
                attribute_option_combo: empty_none(r.attribute_option_combo),
            })
        })
        .collect()
}

/// The stored target as input for a replacement with a new mapping.
fn as_input(t: &push::Target) -> Result<(TargetInput, push::Dhis2Settings), AppError> {
    let Some(d) = t.settings.dhis2.clone() else {
        return Err(AppError::bad_request(
            "bad_kind",
            "mappings are for dhis2 targets",
        ));
    };
    let input = TargetInput {
        name: Some(t.name.clone()),
        kind: Some(t.kind.as_str().to_string()),
        url: Some(t.url.clone()),
        enabled: Some(t.enabled),
        period_type: Some(d.period_type.as_str().to_string()),
        basis: Some(d.basis.clone()),
        map: Some(d.map.clone()),
        schedule_secs: d.schedule_secs,
        lookback: Some(d.lookback),
        ..Default::default()
    };
    Ok((input, d))
}

async fn put_data_elements(
    req: HttpRequest,
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = parse_id(&path.into_inner(), "push target")?;
    let rows = element_rows(&req, &body)?;
    let existing = state.db.read(move |conn| push::get(conn, id)).await?;
    let (mut input, d) = as_input(&existing)?;
    input.data_elements = Some(rows);
    input.org_units = Some(d.org_units);
    let checked = push::check(input, Some(&existing))?;
    replace(&user, &state, id, checked).await
}

async fn put_org_units(
    req: HttpRequest,
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = parse_id(&path.into_inner(), "push target")?;
    let rows: Vec<OrgUnitMap> = import_rows(&req, &body, "org_units")?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let existing = state.db.read(move |conn| push::get(conn, id)).await?;
    let (mut input, d) = as_input(&existing)?;
    input.data_elements = Some(d.data_elements);
    input.org_units = Some(rows);
    let checked = push::check(input, Some(&existing))?;
    replace(&user, &state, id, checked).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryQuery {
    status: Option<String>,
    target: Option<i64>,
    event: Option<String>,
    limit: Option<i64>,
    cursor: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Deliveries {
    deliveries: Vec<outbox::Delivery>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    next_cursor: Option<String>,
}

async fn list_deliveries(
    user: ApiUser,
    state: web::Data<AppState>,
    query: web::Query<DeliveryQuery>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::bad_request(
            "bad_limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let filter = outbox::Filter {
        status: q.status,
        target_id: q.target,
        event: q.event,
        before_id: q.cursor,
        limit,
    };
    let rows = state
        .db
        .read(move |conn| outbox::list(conn, &filter))
        .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|d| d.id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(Deliveries {
        deliveries: rows,
        next_cursor: next,
    }))
}

async fn get_delivery(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = parse_id(&path.into_inner(), "delivery")?;
    let d = state.db.read(move |conn| outbox::get(conn, id)).await?;
    Ok(HttpResponse::Ok().json(d))
}

async fn retry_delivery(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require_admin()?;
    let id = parse_id(&path.into_inner(), "delivery")?;
    let who = actor(&user);
    let d = state
        .db
        .write(move |conn| {
            let d = outbox::retry(conn, id)?;
            audit::record(
                conn,
                &who,
                "delivery.retried",
                Some(&id.to_string()),
                json!({ "target": d.target_id, "event": d.event }),
            )?;
            Ok(d)
        })
        .await?;
    Ok(HttpResponse::Ok().json(d))
}
