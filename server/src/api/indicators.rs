//! Project 8 indicators: definitions, the values table, the submissions behind a number,
//! targets and baselines, closed periods and their revisions.

use std::collections::{BTreeMap, HashMap};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::areas::Level;
use crate::auth::ApiUser;
use crate::error::AppError;
use crate::indicators::backlog;
use crate::indicators::closing::{self, ClosedPeriod};
use crate::indicators::contribution::Basis;
use crate::indicators::definition::Indicator;
use crate::indicators::period::Period;
use crate::indicators::query::{self, BehindRequest, ValuesRequest};
use crate::indicators::registry::MapKind;
use crate::indicators::report;
use crate::indicators::targets::{self, BaselineInput, BaselineView, TargetInput, TargetView};
use crate::scope::Capability;
use crate::state::AppState;

/// Target and baseline files for every commune and hamlet fit well within this.
const MAX_IMPORT_BYTES: usize = 10 * 1024 * 1024;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/indicators", web::get().to(definitions))
        .route("/indicators/values", web::get().to(values))
        .service(
            web::resource("/indicators/targets")
                .app_data(web::PayloadConfig::new(MAX_IMPORT_BYTES))
                .route(web::get().to(list_targets))
                .route(web::post().to(import_targets)),
        )
        .service(
            web::resource("/indicators/baselines")
                .app_data(web::PayloadConfig::new(MAX_IMPORT_BYTES))
                .route(web::get().to(list_baselines))
                .route(web::post().to(import_baselines)),
        )
        .route("/indicators/periods", web::get().to(periods))
        .route("/indicators/periods/{period}", web::get().to(period_detail))
        .route(
            "/indicators/periods/{period}/close",
            web::post().to(close_period),
        )
        .route(
            "/indicators/{code}/values/{area}/{period}/submissions",
            web::get().to(behind),
        )
        .route("/reports/project8.xlsx", web::get().to(report_workbook));
}

#[derive(Serialize, ToSchema)]
pub(crate) struct IndicatorDefinitions {
    indicators: Vec<Indicator>,
    /// The periods a year's values can be broken down by.
    breakdowns: Vec<&'static str>,
    /// Cells of sensitive measures below this are suppressed.
    suppressed_below: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Targets {
    targets: Vec<TargetView>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Baselines {
    baselines: Vec<BaselineView>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Imported {
    /// Rows imported.
    imported: usize,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ClosedPeriods {
    closed_periods: Vec<ClosedPeriod>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    year: Option<String>,
    basis: Option<String>,
    map: Option<String>,
}

/// The report workbook for the central Women's Union, from the values table's figures.
async fn report_workbook(
    user: ApiUser,
    state: web::Data<AppState>,
    query: web::Query<ReportQuery>,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::ReadIndicators)?;
    let q = query.into_inner();
    let year = match q.year.as_deref() {
        None => chrono::Datelike::year(&crate::areas::today()),
        Some(y) => y
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|y| (2000..=2100).contains(y))
            .ok_or_else(|| AppError::bad_request("bad_year", "year is a year such as 2025"))?,
    };
    let basis = parse_basis(q.basis.as_deref())?;
    let map = parse_map(q.map.as_deref())?;
    backlog::settle(&state.db, &state.indicators).await?;
    let indicators = state.indicators.clone();
    let bytes = state
        .db
        .read(move |conn| {
            let figures = report::figures(conn, &indicators, year, basis, map)?;
            report::workbook(&indicators, &figures)
        })
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"du-an-8-{year}-{}-{}.xlsx\"",
                basis.as_str(),
                map.as_str()
            ),
        ))
        .body(bytes))
}

async fn definitions(user: ApiUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    user.require(Capability::ReadIndicators)?;
    let defs = state.indicators.definitions();
    Ok(HttpResponse::Ok().json(IndicatorDefinitions {
        indicators: defs.indicators.clone(),
        breakdowns: vec!["month", "quarter"],
        suppressed_below: query::SUPPRESS_BELOW,
    }))
}

fn parse_basis(s: Option<&str>) -> Result<Basis, AppError> {
    match s {
        None => Ok(Basis::Provisional),
        Some(b) => Basis::parse(b).ok_or_else(|| {
            AppError::bad_request(
                "bad_basis",
                "basis is `provisional` (not rejected) or `confirmed` (approved)",
            )
        }),
    }
}

fn parse_map(s: Option<&str>) -> Result<MapKind, AppError> {
    match s {
        None => Ok(MapKind::Current),
        Some(m) => MapKind::parse(m).ok_or_else(|| {
            AppError::bad_request(
                "bad_map",
                "map is `current` (today's communes) or `as-recorded` (the communes and districts of the activity date)",
            )
        }),
    }
}

fn list(s: Option<&str>) -> Vec<String> {
    s.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValuesQuery {
    period: Option<String>,
    area: Option<String>,
    level: Option<String>,
    by: Option<String>,
    basis: Option<String>,
    map: Option<String>,
    indicator: Option<String>,
    snapshot: Option<String>,
}

async fn values(
    user: ApiUser,
    state: web::Data<AppState>,
    query: web::Query<ValuesQuery>,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::ReadIndicators)?;
    let q = query.into_inner();
    let period = match &q.period {
        Some(p) => Period::parse(p)?,
        None => Period::Year(chrono::Datelike::year(&crate::areas::today())),
    };
    let level = q
        .level
        .as_deref()
        .map(|l| {
            Level::parse(l).ok_or_else(|| {
                AppError::bad_request(
                    "bad_level",
                    "level is province, district, commune or hamlet",
                )
            })
        })
        .transpose()?;
    let req = ValuesRequest {
        period,
        area: q.area.filter(|a| !a.trim().is_empty()),
        level,
        by: list(q.by.as_deref()),
        basis: parse_basis(q.basis.as_deref())?,
        map: parse_map(q.map.as_deref())?,
        indicators: list(q.indicator.as_deref()),
        snapshot: q.snapshot.as_deref().map(Period::parse).transpose()?,
    };
    backlog::settle(&state.db, &state.indicators).await?;
    let indicators = state.indicators.clone();
    let table = state
        .db
        .read(move |conn| query::values(conn, &indicators, &req))
        .await?;
    Ok(HttpResponse::Ok().json(table))
}

async fn behind(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::ReadIndicators)?;
    user.require(Capability::ReadSubmissions)?;
    let (code, area, period) = path.into_inner();
    let mut q = query.into_inner();
    let limit = match q.remove("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                AppError::bad_request(
                    "bad_limit",
                    format!("limit must be between 1 and {MAX_LIMIT}"),
                )
            })?,
        None => DEFAULT_LIMIT,
    };
    let after = match q.remove("cursor") {
        Some(c) => c.parse::<i64>().map_err(|_| {
            AppError::bad_request("bad_cursor", "the cursor is not one this API gave out")
        })?,
        None => 0,
    };
    let req = BehindRequest {
        indicator: code,
        measure: q.remove("measure"),
        area,
        period: Period::parse(&period)?,
        basis: parse_basis(q.remove("basis").as_deref())?,
        map: parse_map(q.remove("map").as_deref())?,
        // Every other parameter narrows the number to one value of a dimension.
        filters: q.into_iter().collect::<BTreeMap<_, _>>(),
        limit,
        after,
    };
    backlog::settle(&state.db, &state.indicators).await?;
    let indicators = state.indicators.clone();
    let result = state
        .db
        .read(move |conn| query::behind(conn, &indicators, &req))
        .await?;
    Ok(HttpResponse::Ok().json(result))
}

#[derive(Deserialize)]
struct YearQuery {
    year: Option<i64>,
}

async fn list_targets(
    user: ApiUser,
    state: web::Data<AppState>,
    query: web::Query<YearQuery>,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::ReadIndicators)?;
    let year = query.year;
    let indicators = state.indicators.clone();
    let rows = state
        .db
        .read(move |conn| {
            let index = indicators.area_index(conn)?;
            targets::list_targets(conn, &index, year)
        })
        .await?;
    Ok(HttpResponse::Ok().json(Targets { targets: rows }))
}

async fn list_baselines(
    user: ApiUser,
    state: web::Data<AppState>,
    query: web::Query<YearQuery>,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::ReadIndicators)?;
    let year = query.year;
    let indicators = state.indicators.clone();
    let rows = state
        .db
        .read(move |conn| {
            let index = indicators.area_index(conn)?;
            targets::list_baselines(conn, &index, year)
        })
        .await?;
    Ok(HttpResponse::Ok().json(Baselines { baselines: rows }))
}

/// Rows from a CSV body (`Content-Type: text/csv`) or JSON: a list, or `{"<key>": [...]}`.
pub(super) fn import_rows<T: DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
    key: &str,
) -> Result<Vec<(String, T)>, AppError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("text/csv") {
        return targets::parse_csv(body);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        AppError::bad_request("bad_json", format!("send CSV (text/csv) or JSON: {e}"))
    })?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(mut o) => match o.remove(key) {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(AppError::bad_request(
                    "bad_json",
                    format!("send a list, or an object with a list `{key}`"),
                ))
            }
        },
        _ => return Err(AppError::bad_request("bad_json", "send a list of rows")),
    };
    let mut out = Vec::new();
    for (label, item) in targets::label_items(items) {
        let row = serde_json::from_value(item)
            .map_err(|e| AppError::bad_request("bad_import_row", format!("{label}: {e}")))?;
        out.push((label, row));
    }
    Ok(out)
}

async fn import_targets(
    req: HttpRequest,
    user: ApiUser,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::ManageIndicators)?;
    let rows: Vec<(String, TargetInput)> = import_rows(&req, &body, "targets")?;
    let indicators = state.indicators.clone();
    let n = state
        .db
        .write(move |conn| {
            let index = indicators.area_index(conn)?;
            targets::import_targets(conn, indicators.definitions(), &index, &rows)
        })
        .await?;
    Ok(HttpResponse::Ok().json(Imported { imported: n }))
}

async fn import_baselines(
    req: HttpRequest,
    user: ApiUser,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::ManageIndicators)?;
    let rows: Vec<(String, BaselineInput)> = import_rows(&req, &body, "baselines")?;
    let indicators = state.indicators.clone();
    let n = state
        .db
        .write(move |conn| {
            let index = indicators.area_index(conn)?;
            targets::import_baselines(conn, indicators.definitions(), &index, &rows)
        })
        .await?;
    Ok(HttpResponse::Ok().json(Imported { imported: n }))
}

async fn periods(user: ApiUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    user.require(Capability::ReadIndicators)?;
    // The revisions a closed period lists come from the changes that waited.
    backlog::settle(&state.db, &state.indicators).await?;
    let list = state.db.read(closing::list).await?;
    Ok(HttpResponse::Ok().json(ClosedPeriods {
        closed_periods: list,
    }))
}

async fn period_detail(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::ReadIndicators)?;
    let period = Period::parse(&path.into_inner())?;
    backlog::settle(&state.db, &state.indicators).await?;
    let detail = state
        .db
        .read(move |conn| closing::detail(conn, period))
        .await?;
    Ok(HttpResponse::Ok().json(detail))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ClosePeriod)]
pub(crate) struct CloseBody {
    /// Why or how the period was closed; the body may be left empty.
    note: Option<String>,
}

async fn close_period(
    user: ApiUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    user.require(Capability::ManageIndicators)?;
    let period = Period::parse(&path.into_inner())?;
    let body: CloseBody = if body.iter().all(u8::is_ascii_whitespace) {
        CloseBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AppError::bad_request("bad_json", e.to_string()))?
    };
    let indicators = state.indicators.clone();
    let by = user.id;
    let closed = state
        .db
        .write(move |conn| {
            // The snapshot holds every submission acknowledged before the close.
            backlog::catch_up(conn, &indicators)?;
            let index = indicators.area_index(conn)?;
            let closed = closing::close(
                conn,
                indicators.definitions(),
                &index,
                period,
                Some(by),
                body.note.as_deref(),
            )?;
            // In the same transaction: the close and its pushes commit together.
            crate::push::dhis2::enqueue_period_closed(conn, &indicators, period)?;
            Ok(closed)
        })
        .await?;
    Ok(HttpResponse::Created().json(closed))
}
