//! `HEAD` and `POST /submission`: receiving a filled form and its attachments.
//!
//! Attachments are streamed to temporary files as they arrive (the request is never held in
//! memory), made durable under their content hash, and only then is the submission handed to
//! the writer; the phone gets 201 only after that transaction is durably committed.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, RwLock};

use actix_multipart::Multipart;
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use fieldtally_forms::FormDef;
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::xml;
use crate::auth::replay;
use crate::auth::Collector;
use crate::error::{AppError, OpenRosaError};
use crate::forms;
use crate::protection;
use crate::state::AppState;
use crate::submissions::{self, Incoming, IncomingFile, Outcome, Stored};

/// Parts beyond this many are refused: Collect sends at most 100 files per POST.
const MAX_PARTS: usize = 1000;

/// Largest submission XML accepted: a 250-question form's instance is about 20 KB, and the
/// parsed tree of a document costs several times its size in memory.
const MAX_XML_BYTES: usize = 10 * 1024 * 1024;

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

/// A file part that is not the instance, kept in a temporary file (closed, so that an upload
/// of a thousand parts does not hold a thousand open files) until we know whether the instance
/// names it.
struct Part {
    name: String,
    filename: Option<String>,
    content_type: String,
    temp: tempfile::TempPath,
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

/// Waits for the next item of an upload, giving up when nothing arrives for `idle`: a phone
/// that lost its signal does not hold the request (and its temporary files) for ever.
async fn next_within<S, T>(stream: &mut S, idle: Duration) -> Result<Option<T>, AppError>
where
    S: futures_util::Stream<Item = T> + Unpin,
{
    tokio::time::timeout(idle, stream.next())
        .await
        .map_err(|_| {
            AppError::client(
                StatusCode::REQUEST_TIMEOUT,
                "upload_timeout",
                format!(
                    "nothing arrived for {} seconds; the upload was abandoned, send it again",
                    idle.as_secs()
                ),
            )
        })
}

/// A part or file name a client chose: it is only ever compared with the names in the instance
/// and shown in downloads, never used as a path, but a name with a path, NUL or other control
/// characters is a sign of a hostile upload and is refused outright.
pub fn validate_file_name(name: &str) -> Result<(), AppError> {
    let bad_name = name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control);
    if bad_name {
        return Err(bad(
            "bad_filename",
            "a file name must be a plain name of at most 255 bytes without '/', '\\' or control characters",
        ));
    }
    Ok(())
}

async fn read_multipart(state: &AppState, mut multipart: Multipart) -> Result<Upload, AppError> {
    let limit = state.config.max_submission_bytes;
    let idle = state.config.upload_idle_timeout;
    let mut total: u64 = 0;
    let mut upload = Upload {
        xml: None,
        parts: Vec::new(),
    };
    let mut count = 0usize;
    while let Some(field) = next_within(&mut multipart, idle).await? {
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
            if upload.xml.is_some() {
                return Err(bad(
                    "duplicate_xml_submission_file",
                    "the upload has more than one xml_submission_file part",
                ));
            }
            let mut buf = Vec::new();
            while let Some(chunk) = next_within(&mut field, idle).await? {
                let chunk = chunk
                    .map_err(|e| bad("bad_multipart", format!("the upload broke off: {e}")))?;
                total += chunk.len() as u64;
                if total > limit {
                    return Err(AppError::too_large(limit));
                }
                if buf.len() + chunk.len() > MAX_XML_BYTES {
                    return Err(AppError::client(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "xml_too_large",
                        format!("the submission XML is larger than {MAX_XML_BYTES} bytes"),
                    ));
                }
                buf.extend_from_slice(&chunk);
            }
            upload.xml = Some(buf);
            continue;
        }
        if let Some(f) = &filename {
            validate_file_name(f)?;
        }
        let mut temp = state.blobs.temp_file()?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = next_within(&mut field, idle).await? {
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
            temp: temp.into_temp_path(),
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
    let result = receive(req, collector, &state, query, payload).await;
    if result.is_err() {
        state.metrics.record_submission("rejected");
    }
    result
}

async fn receive(
    req: HttpRequest,
    collector: Collector,
    state: &web::Data<AppState>,
    query: web::Query<SubmissionQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, OpenRosaError> {
    let state = state.clone();
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
    let mut identity = fieldtally_forms::identify(&xml)?;
    let def = form_def(&state, &identity.form_id, &identity.version).await?;
    let mut extracted = fieldtally_forms::extract(&def, &xml)?;
    fieldtally_forms::check_values(&def, &extracted.fields)?;
    for name in &extracted.attachments {
        validate_file_name(name)?;
    }
    let received_at = crate::users::now();
    let place = crate::ingest::place(&identity, &extracted.fields, received_at);
    let known = identity.clone();
    let user_id = collector.user.id;
    // One read for all the handler needs to know, since each read costs a pooled connection.
    let (marked, found) = state
        .db
        .read(move |conn| {
            // Refuse early what the writer would refuse, before any file is stored.
            submissions::precheck(conn, &known)?;
            let marked = protection::get(conn, &known.form_id)?;
            let found = place
                .map(|p| crate::ingest::lookup(conn, user_id, p))
                .transpose()?;
            Ok((marked, found))
        })
        .await?;
    let protection = protection::effective(marked, &def);
    let consent = protection.consent_field.as_ref().map(|field| {
        (
            field.clone(),
            protection::consent_value(&extracted.fields, field),
        )
    });
    let (fields_json, derived) = crate::ingest::derive(
        &state,
        &def,
        extracted.fields,
        &identity,
        &protection,
        found,
    )
    .await?;
    let xml_sha256 = hex::encode(Sha256::digest(&xml));
    let mut stored_xml = xml;
    if protection.sensitive {
        // The precise location and the instance name (a label the collector's form builds,
        // often from the respondent's name) stay only in the sealed XML.
        extracted.first_geopoint = extracted
            .first_geopoint
            .map(|g| g.rounded(protection.geo_decimals));
        identity.instance_name = None;
        stored_xml = state.data_keys.seal(
            &stored_xml,
            &crate::crypto::xml_context(&identity.instance_id),
        )?;
    }

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
    let (blob_lock, files) = web::block(move || -> Result<_, AppError> {
        // Held until the submission is committed, so fsck --repair cannot take these blobs.
        let lock = blobs.lock_shared()?;
        let mut files = Vec::new();
        // Every photo is checked before anything is stored, so a damaged one or a
        // decompression bomb refuses the whole POST and leaves no trace.
        for (name, part) in &keep {
            let mut head = [0u8; 16];
            let n = std::io::Read::read(&mut std::fs::File::open(&part.temp)?, &mut head)?;
            if crate::photos::sniff(&head[..n]).is_none() {
                continue;
            }
            let bytes = std::fs::read(&part.temp)?;
            crate::photos::verify(&bytes).map_err(|e| {
                bad(
                    "bad_image",
                    format!("the photo '{name}' cannot be used: {e}; take it again and resend"),
                )
            })?;
        }
        for (name, part) in keep {
            blobs.commit(part.temp, &part.sha256)?;
            files.push(IncomingFile {
                name,
                sha256: part.sha256,
                size: part.size as i64,
                content_type: part.content_type,
            });
        }
        Ok((lock, files))
    })
    .await
    .map_err(AppError::from)??;

    let incoming = Incoming {
        xml_sha256,
        identity,
        fields_json,
        derived,
        geopoint: extracted.first_geopoint,
        expected: extracted.attachments,
        xml: stored_xml,
        collector_id: collector.user.id,
        device_id: query.into_inner().device_id,
        files,
        received_at,
        consent,
    };
    let post = crate::posts::Post {
        incoming,
        nonce_use: collector.nonce_use,
    };
    let result = state
        .db
        .write_grouped(state.posts.clone(), Some(state.refresher.clone()), post)
        .await;
    drop(blob_lock);
    let stored = match result {
        Ok(stored) => stored,
        Err(e) if replay::is_replayed(&e) => {
            return Err(crate::auth::challenges(&req, &state, true).into())
        }
        Err(e) => return Err(e.into()),
    };
    state.metrics.record_submission(match stored.outcome {
        Outcome::Created => "created",
        Outcome::Edited => "edited",
        Outcome::OlderVersion => "older_version",
        Outcome::Duplicate => "duplicate",
    });
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
