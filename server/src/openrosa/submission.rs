//! `HEAD` and `POST /submission`: receiving a filled form and its attachments.
//!
//! Attachments are streamed to temporary files as they arrive (the request is never held in
//! memory), made durable under their content hash, and only then is the submission handed to
//! the writer; the phone gets 201 only after that transaction is durably committed.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, RwLock};

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use fieldtally_forms::FormDef;
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::xml;
use crate::auth::Collector;
use crate::error::{AppError, OpenRosaError};
use crate::forms;
use crate::indicators;
use crate::state::AppState;
use crate::submissions::{self, Incoming, IncomingFile, Outcome, Stored};

/// Parts beyond this many are refused: Collect sends at most 100 files per POST.
const MAX_PARTS: usize = 1000;

/// Parsed form definitions by (form id, version); versions never change, so entries never go stale.
#[derive(Default)]
pub struct FormCache {
    forms: RwLock<HashMap<(String, String), Arc<FormDef>>>,
}

impl FormCache {
    fn get(&self, form_id: &str, version: &str) -> Option<Arc<FormDef>> {
        self.forms
            .read()
            .ok()?
            .get(&(form_id.to_string(), version.to_string()))
            .cloned()
    }

    fn put(&self, def: Arc<FormDef>) {
        if let Ok(mut m) = self.forms.write() {
            m.insert((def.form_id.clone(), def.version.clone()), def);
        }
    }
}

pub async fn head(_collector: Collector) -> HttpResponse {
    HttpResponse::NoContent().finish()
}

#[derive(Deserialize)]
pub struct SubmissionQuery {
    #[serde(rename = "deviceID")]
    device_id: Option<String>,
}

/// A file part that is not the instance, kept in a temporary file until we know whether the
/// instance names it.
struct Part {
    name: String,
    filename: Option<String>,
    content_type: String,
    temp: tempfile::NamedTempFile,
    sha256: String,
    size: u64,
}

struct Upload {
    xml: Option<Vec<u8>>,
    parts: Vec<Part>,
}

fn bad(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::bad_request(code, message)
}

async fn read_multipart(state: &AppState, mut multipart: Multipart) -> Result<Upload, AppError> {
    let limit = state.config.max_submission_bytes;
    let mut total: u64 = 0;
    let mut upload = Upload {
        xml: None,
        parts: Vec::new(),
    };
    let mut count = 0usize;
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(|e| {
            bad(
                "bad_multipart",
                format!("the upload is not valid multipart data: {e}"),
            )
        })?;
        count += 1;
        if count > MAX_PARTS {
            return Err(bad(
                "too_many_parts",
                format!("an upload may have at most {MAX_PARTS} parts"),
            ));
        }
        let name = field.name().unwrap_or_default().to_string();
        let filename = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .map(str::to_string);
        let content_type = field
            .content_type()
            .map(|m| m.essence_str().to_string())
            .unwrap_or_else(|| "application/octet-stream".into());
        if name == "xml_submission_file" {
            let mut buf = Vec::new();
            while let Some(chunk) = field.next().await {
                let chunk = chunk
                    .map_err(|e| bad("bad_multipart", format!("the upload broke off: {e}")))?;
                total += chunk.len() as u64;
                if total > limit {
                    return Err(AppError::too_large(limit));
                }
                buf.extend_from_slice(&chunk);
            }
            upload.xml = Some(buf);
            continue;
        }
        let mut temp = state.blobs.temp_file()?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = field.next().await {
            let chunk =
                chunk.map_err(|e| bad("bad_multipart", format!("the upload broke off: {e}")))?;
            total += chunk.len() as u64;
            if total > limit {
                return Err(AppError::too_large(limit));
            }
            size += chunk.len() as u64;
            hasher.update(&chunk);
            // Into the page cache only; the fsync happens off the async workers before commit.
            temp.write_all(&chunk)?;
        }
        upload.parts.push(Part {
            name,
            filename,
            content_type,
            temp,
            sha256: hex::encode(hasher.finalize()),
            size,
        });
    }
    Ok(upload)
}

pub(super) async fn form_def(
    state: &AppState,
    form_id: &str,
    version: &str,
) -> Result<Arc<FormDef>, AppError> {
    if let Some(def) = state.form_cache.get(form_id, version) {
        return Ok(def);
    }
    let (f, v) = (form_id.to_string(), version.to_string());
    let xml = state
        .db
        .read(move |conn| match forms::find_version(conn, &f, &v)? {
            Some(info) => forms::xml(conn, info.id).map(Some),
            None => Ok(None),
        })
        .await?;
    let Some(xml) = xml else {
        return Err(unknown_form(state, form_id, version).await);
    };
    let def = Arc::new(fieldtally_forms::parse_form(&xml).map_err(|e| {
        AppError::internal(format!(
            "stored form {form_id} {version} does not parse: {e}"
        ))
    })?);
    state.form_cache.put(def.clone());
    Ok(def)
}

async fn unknown_form(state: &AppState, form_id: &str, version: &str) -> AppError {
    let f = form_id.to_string();
    let known = state
        .db
        .read(move |conn| forms::versions(conn, &f))
        .await
        .is_ok();
    if known {
        AppError::not_found(
            "unknown_form_version",
            format!("the form '{form_id}' has no version '{version}'; get the current forms and fill the form again"),
        )
    } else {
        AppError::not_found(
            "unknown_form",
            format!("there is no form '{form_id}' on this server"),
        )
    }
}

pub async fn post(
    req: HttpRequest,
    collector: Collector,
    state: web::Data<AppState>,
    query: web::Query<SubmissionQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, OpenRosaError> {
    let limit = state.config.max_submission_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(AppError::too_large(limit).into());
    }
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(bad(
            "not_multipart",
            "a submission must be sent as multipart/form-data with an xml_submission_file part",
        )
        .into());
    }
    let upload = read_multipart(&state, Multipart::new(req.headers(), payload)).await?;
    let Some(xml) = upload.xml else {
        return Err(bad(
            "missing_xml_submission_file",
            "the upload has no xml_submission_file part",
        )
        .into());
    };
    let identity = fieldtally_forms::identify(&xml)?;
    let def = form_def(&state, &identity.form_id, &identity.version).await?;
    let extracted = fieldtally_forms::extract(&def, &xml)?;
    let received_at = crate::users::now();
    let (fields_json, derived) = crate::ingest::derive(
        &state,
        &def,
        extracted.fields,
        identity.encrypted,
        collector.user.id,
        received_at,
    )
    .await?;

    // Only files the instance names are kept; other parts are dropped with their temp files.
    let mut keep = Vec::new();
    for part in upload.parts {
        let name = if extracted.attachments.contains(&part.name) {
            Some(part.name.clone())
        } else {
            part.filename
                .clone()
                .filter(|f| extracted.attachments.contains(f))
        };
        if let Some(name) = name {
            if !keep.iter().any(|(n, _): &(String, Part)| n == &name) {
                keep.push((name, part));
            }
        }
    }
    let blobs = state.blobs.clone();
    let files = web::block(move || -> Result<Vec<IncomingFile>, AppError> {
        let mut files = Vec::new();
        for (name, part) in keep {
            blobs.commit(part.temp, &part.sha256)?;
            files.push(IncomingFile {
                name,
                sha256: part.sha256,
                size: part.size as i64,
                content_type: part.content_type,
            });
        }
        Ok(files)
    })
    .await
    .map_err(AppError::from)??;

    let incoming = Arc::new(Incoming {
        xml_sha256: hex::encode(Sha256::digest(&xml)),
        identity,
        fields_json,
        derived,
        geopoint: extracted.first_geopoint,
        expected: extracted.attachments,
        xml,
        collector_id: collector.user.id,
        device_id: query.into_inner().device_id,
        files,
        received_at,
    });
    let indicators = state.indicators.clone();
    let collector_id = collector.user.id;
    let stored = state
        .db
        .write(move |conn| {
            let stored = submissions::store(conn, &incoming)?;
            if stored.outcome != Outcome::Duplicate {
                // In the same transaction: the figures never lag behind the data.
                indicators::refresh_submission(
                    conn,
                    &indicators,
                    stored.submission_id,
                    Some(collector_id),
                )?;
            }
            Ok(stored)
        })
        .await?;
    Ok(xml::respond(
        &mut HttpResponse::Created(),
        xml::message("submit_success", &success_message(stored)),
    ))
}

fn success_message(stored: Stored) -> String {
    let what = match stored.outcome {
        Outcome::Created => "Submission received.",
        Outcome::Edited => "Edited submission received.",
        Outcome::OlderVersion => "Earlier version received.",
        Outcome::Duplicate => "Submission already received.",
    };
    if stored.missing > 0 {
        format!(
            "{what} {} attachment(s) still to come; send again to complete it.",
            stored.missing
        )
    } else {
        format!("{what} Thank you!")
    }
}
