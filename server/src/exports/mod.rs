//! Exports of a form's submissions (all its versions) as a zip of CSV files, an XLSX workbook or
//! GeoJSON, for the submissions a caller may see (see [`crate::scope`]), filtered by area,
//! activity date and review state. Sensitive values stay withheld unless the caller may read
//! them and stated a purpose, which the access log records before anything is written.
//!
//! The file is produced a page of submissions at a time onto disk: small exports are sent as
//! soon as they are written, large ones run as jobs (see [`jobs`]).

pub mod jobs;
pub mod layout;
pub mod output;
pub mod rows;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::blobs::Blobs;
use crate::crypto::DataKeys;
use crate::db::{Conn, Db};
use crate::error::AppError;
use crate::scope::Visibility;
use layout::{Lang, Layout};
use output::{Output, Prepared};
use rows::{Record, Selection};

/// Submissions read and written per step.
const PAGE: i64 = 500;

/// How often a running export reports its progress (a durable write, and its heartbeat).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A zip of CSV files.
    Csv,
    Xlsx,
    GeoJson,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "csv" => Some(Format::Csv),
            "xlsx" => Some(Format::Xlsx),
            "geojson" => Some(Format::GeoJson),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
            Format::GeoJson => "geojson",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "zip",
            Format::Xlsx => "xlsx",
            Format::GeoJson => "geojson",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "application/zip",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::GeoJson => "application/geo+json",
        }
    }
}

/// The parameters of an export as a client sends them (query string or JSON body).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ExportParams)]
pub struct Params {
    /// The form id (in a job's body; the direct export has it in its path).
    pub form: Option<String>,
    /// `csv` (default), `xlsx` or `geojson`.
    pub format: Option<String>,
    /// Headers from the form's labels in `vi` or `en`; field paths by default.
    pub lang: Option<String>,
    /// An area code the submissions lie in.
    pub area: Option<String>,
    /// Activity dates from and to, `YYYY-MM-DD`, inclusive.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Current review state.
    pub state: Option<String>,
    /// CSV only: put the attachments into the zip.
    pub attachments: Option<bool>,
    /// GeoJSON only: the geopoint field to map (the first geopoint by default).
    pub field: Option<String>,
    /// Why sensitive values are needed (or the `X-Purpose` header): includes them.
    pub purpose: Option<String>,
}

/// A checked export request: what is stored with a job and what the run follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub form_id: String,
    pub format: Format,
    pub lang: Option<Lang>,
    pub area: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub state: Option<String>,
    pub attachments: bool,
    pub field: Option<String>,
    /// Sensitive values are opened (the caller's purpose, already in the access log).
    pub purpose: Option<String>,
}

fn date(name: &'static str, s: Option<String>) -> Result<Option<NaiveDate>, AppError> {
    s.filter(|s| !s.trim().is_empty())
        .map(|s| {
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
                AppError::bad_request(
                    "bad_date",
                    format!("`{name}` must be a date such as 2025-07-01"),
                )
            })
        })
        .transpose()
}

impl Spec {
    /// Checks the parameters' syntax; `purpose` is the validated purpose, if one was stated.
    pub fn from_params(
        form_id: String,
        p: Params,
        purpose: Option<String>,
    ) -> Result<Spec, AppError> {
        if form_id.trim().is_empty() {
            return Err(AppError::bad_request(
                "form_required",
                "name the form to export",
            ));
        }
        let format = match p.format.as_deref() {
            None => Format::Csv,
            Some(f) => Format::parse(f).ok_or_else(|| {
                AppError::bad_request("bad_format", "format is csv, xlsx or geojson")
            })?,
        };
        let lang = p
            .lang
            .as_deref()
            .map(|l| {
                Lang::parse(l).ok_or_else(|| AppError::bad_request("bad_lang", "lang is vi or en"))
            })
            .transpose()?;
        let from = date("from", p.from)?;
        let to = date("to", p.to)?;
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                return Err(AppError::bad_request(
                    "bad_period",
                    "`from` must not be after `to`",
                ));
            }
        }
        if let Some(s) = &p.state {
            if crate::review::State::parse(s).is_none() {
                return Err(AppError::bad_request(
                    "bad_state",
                    format!("unknown review state '{s}'"),
                ));
            }
        }
        let attachments = p.attachments.unwrap_or(false);
        if attachments && format != Format::Csv {
            return Err(AppError::bad_request(
                "bad_attachments",
                "attachments go only into the CSV zip",
            ));
        }
        if p.field.is_some() && format != Format::GeoJson {
            return Err(AppError::bad_request(
                "bad_field",
                "`field` chooses the geopoint of a GeoJSON export",
            ));
        }
        Ok(Spec {
            form_id,
            format,
            lang,
            area: p.area.filter(|a| !a.trim().is_empty()),
            from,
            to,
            state: p.state,
            attachments,
            field: p.field,
            purpose,
        })
    }

    pub fn selection(&self, visibility: Visibility) -> Selection {
        Selection {
            visibility,
            form_id: self.form_id.clone(),
            area: self.area.clone(),
            from: self.from,
            to: self.to,
            state: self.state.clone(),
        }
    }

    pub fn file_name(&self) -> String {
        format!("{}.{}", self.form_id, self.format.extension())
    }
}

/// The export's columns from every version of the form; 404 for an unknown form, 400 for a
/// `field` that is not one of its geopoints.
pub fn layout(conn: &mut Conn<'_>, spec: &Spec) -> Result<Layout, AppError> {
    let versions = crate::forms::versions(conn, &spec.form_id)?;
    let mut defs = Vec::with_capacity(versions.len());
    for v in &versions {
        let xml = crate::forms::xml(conn, v.id)?;
        let def = fieldtally_forms::parse_form(&xml)
            .map_err(|e| AppError::internal(format!("a stored form does not parse: {e}")))?;
        let labels = fieldtally_forms::parse_labels(&xml).unwrap_or_default();
        defs.push((def, labels));
    }
    let layout = layout::build(&spec.form_id, &defs, spec.lang);
    if let Some(field) = &spec.field {
        if !layout.geopoints.contains(field) {
            return Err(AppError::bad_request(
                "bad_field",
                format!(
                    "'{field}' is not a geopoint question of the form outside a repeat; its geopoints: {}",
                    layout.geopoints.join(", ")
                ),
            ));
        }
    }
    if spec.format == Format::GeoJson && layout.geopoints.is_empty() {
        return Err(AppError::bad_request(
            "no_geopoint",
            "the form has no geopoint question to map",
        ));
    }
    Ok(layout)
}

/// What producing an export needs besides the database.
#[derive(Clone)]
pub struct Context {
    pub db: Db,
    pub keys: Arc<DataKeys>,
    pub blobs: Blobs,
    /// Where temporary files go (the data folder's `tmp`).
    pub tmp: PathBuf,
}

impl Context {
    pub fn of(state: &crate::state::AppState) -> Context {
        Context {
            db: state.db.clone(),
            keys: state.data_keys.clone(),
            blobs: state.blobs.clone(),
            tmp: state.blobs.tmp_dir().to_path_buf(),
        }
    }
}

fn folder_of(key: &str) -> String {
    key.trim_start_matches("uuid:")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn prepare(
    ctx: &Context,
    spec: &Spec,
    layout: &Layout,
    record: &Record,
) -> Result<Prepared, AppError> {
    let mut values: serde_json::Value = serde_json::from_str(&record.fields)
        .map_err(|_| AppError::internal("stored answers are damaged"))?;
    let mut withheld = Vec::new();
    match (&spec.purpose, &record.sensitive) {
        (Some(_), Some(sealed)) => {
            let opened = crate::sensitive::open(&ctx.keys, sealed, &record.version_instance_id)?;
            output::merge(&mut values, opened);
        }
        (None, sealed) => withheld = crate::sensitive::withheld_paths(sealed.as_deref()),
        (Some(_), None) => {}
    }
    // A map shows the submissions only: their repeat rows would be made for nothing.
    let repeats = spec.format != Format::GeoJson;
    let mut prepared = output::prepare(layout, record, values, &withheld, repeats);
    if spec.attachments {
        let folder = folder_of(&record.key);
        for (name, sha) in &record.attachments {
            if crate::forms::validate_media_name(name).is_ok() {
                prepared
                    .files
                    .push((folder.clone(), name.clone(), ctx.blobs.path(sha)));
            }
        }
    }
    Ok(prepared)
}

fn open_output(
    spec: &Spec,
    layout: &Layout,
    path: &Path,
    tmp: &Path,
) -> Result<Box<dyn Output>, AppError> {
    Ok(match spec.format {
        Format::Csv => Box::new(output::CsvZip::create(layout, path, tmp)?),
        Format::Xlsx => Box::new(output::Xlsx::create(layout, path, tmp)?),
        Format::GeoJson => Box::new(output::GeoJson::create(layout, path, spec.field.clone())?),
    })
}

/// Writes the export of `selection` to `path`, a page at a time, in three stages that run at
/// once on three pages: the database read of one page, the preparing of the page before it
/// (parsing the stored answers, opening sensitive values, making the cells) and the writing of
/// the page before that, so that the cores stay busy whichever stage is the longest (reading
/// for GeoJSON and CSV, writing for XLSX).
/// At most once a [`PROGRESS_EVERY`] (and after the last page) `progress` is told how many
/// submissions are done; it answers whether to go on.
pub async fn produce<F, Fut>(
    ctx: &Context,
    spec: &Spec,
    layout: Layout,
    selection: Selection,
    path: &Path,
    mut progress: F,
) -> Result<i64, AppError>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = Result<bool, AppError>>,
{
    let layout = Arc::new(layout);
    let spec = Arc::new(spec.clone());
    let selection = Arc::new(selection);
    let (l, s, p, tmp) = (
        layout.clone(),
        spec.clone(),
        path.to_path_buf(),
        ctx.tmp.clone(),
    );
    let mut out = actix_web::web::block(move || open_output(&s, &l, &p, &tmp)).await??;
    let read = |after: Option<i64>| {
        let (db, sel, with_files) = (ctx.db.clone(), selection.clone(), spec.attachments);
        async move {
            match after {
                Some(after) => {
                    db.read(move |conn| rows::page(conn, &sel, after, PAGE, with_files))
                        .await
                }
                None => Ok(Vec::new()),
            }
        }
    };
    let mut records = read(Some(0)).await?;
    let mut ready: Vec<Prepared> = Vec::new();
    let mut done = 0;
    let mut reported = Instant::now();
    while !(records.is_empty() && ready.is_empty()) {
        let after = records.last().map(|r| r.id);
        done += ready.len() as i64;
        let write = actix_web::web::block(move || -> Result<Box<dyn Output>, AppError> {
            for submission in &ready {
                out.add(submission)?;
            }
            Ok(out)
        });
        let (c, s, l) = (ctx.clone(), spec.clone(), layout.clone());
        let prepare_page = actix_web::web::block(move || {
            records
                .iter()
                .map(|record| prepare(&c, &s, &l, record))
                .collect::<Result<Vec<_>, AppError>>()
        });
        let (written, prepared, next) = tokio::join!(write, prepare_page, read(after));
        out = written??;
        ready = prepared??;
        records = next?;
        let finished = records.is_empty() && ready.is_empty();
        if finished || reported.elapsed() >= PROGRESS_EVERY {
            if !progress(done).await? {
                return Err(AppError::conflict(
                    "export_taken_over",
                    "another server instance took this export over",
                ));
            }
            reported = Instant::now();
        }
    }
    actix_web::web::block(move || out.finish()).await??;
    Ok(done)
}
