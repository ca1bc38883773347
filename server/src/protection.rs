//! How a form's submissions are protected, set per form by an administrator.
//!
//! A form marked sensitive has its submissions' raw XML sealed with the data key (the XML holds
//! every answer, names included), its geotags stored at reduced precision, and its instance name
//! (often the respondent's name) left out of the plain columns. Where the form has a consent or
//! legal-basis field, its value is recorded per submission. Which individual fields are sensitive
//! and where they are kept is the forms' business; this module gives the mechanism for the whole
//! submission.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crypto::{self, DataKeys};
use crate::db::schema::{form_protection, form_versions, forms, submission_versions, submissions};
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;
use crate::users::now;

/// Decimal places kept of a sensitive form's latitude and longitude by default: two places are
/// about 1.1 km, enough to place a submission in its commune, not at a house.
pub const DEFAULT_GEO_DECIMALS: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Protection {
    pub sensitive: bool,
    #[serde(default = "default_geo_decimals")]
    pub geo_decimals: u32,
    /// Path of the field that records consent or the legal basis, e.g. `consent`.
    #[serde(default)]
    pub consent_field: Option<String>,
}

fn default_geo_decimals() -> u32 {
    DEFAULT_GEO_DECIMALS
}

impl Default for Protection {
    fn default() -> Self {
        Protection {
            sensitive: false,
            geo_decimals: DEFAULT_GEO_DECIMALS,
            consent_field: None,
        }
    }
}

impl Protection {
    pub fn validate(&self) -> Result<(), AppError> {
        if self.geo_decimals > 6 {
            return Err(AppError::bad_request(
                "bad_geo_decimals",
                "geo_decimals is between 0 and 6",
            ));
        }
        if let Some(f) = &self.consent_field {
            let ok = !f.is_empty()
                && f.len() <= 200
                && f.chars().all(|c| c.is_alphanumeric() || "_-./".contains(c));
            if !ok {
                return Err(AppError::bad_request(
                    "bad_consent_field",
                    "consent_field is a field path such as `consent` or `group/consent`",
                ));
            }
        }
        Ok(())
    }
}

/// The protection that applies to a submission of `form`: a form whose definition marks any
/// field sensitive (`fieldtally:sensitive`) is sensitive whatever the setting says, since its raw
/// XML holds those values; and a form with a field named `consent` records it unless another
/// field is configured.
pub fn effective(mut marked: Protection, form: &fieldtally_forms::FormDef) -> Protection {
    if form.fields.iter().any(|f| f.sensitive) {
        marked.sensitive = true;
    }
    if marked.consent_field.is_none() {
        marked.consent_field = form
            .fields
            .iter()
            .map(|f| f.path.as_str())
            .find(|p| *p == "consent" || p.ends_with("/consent"))
            .map(str::to_string);
    }
    marked
}

/// Whether the database holds anything sealed with a data key: then the key file must exist.
pub fn has_sealed_data(conn: &mut Conn<'_>) -> Result<bool, AppError> {
    let values: i64 = on_conn!(conn, c => submission_versions::table
        .filter(submission_versions::sensitive.is_not_null())
        .count()
        .get_result(c))?;
    Ok(values > 0 || any_sensitive(conn)?)
}

/// The protection of a form as set by an administrator; a form never configured is not
/// sensitive (see [`effective`] for what applies to its submissions).
pub fn get(conn: &mut Conn<'_>, form_id: &str) -> Result<Protection, AppError> {
    let row: Option<(bool, i64, Option<String>)> = on_conn!(conn, c => form_protection::table
        .find(form_id)
        .select((form_protection::sensitive, form_protection::geo_decimals, form_protection::consent_field))
        .first(c)
        .optional())?;
    Ok(match row {
        Some((sensitive, decimals, consent_field)) => Protection {
            sensitive,
            geo_decimals: u32::try_from(decimals).unwrap_or(DEFAULT_GEO_DECIMALS),
            consent_field,
        },
        None => Protection::default(),
    })
}

pub fn set(conn: &mut Conn<'_>, form_id: &str, p: &Protection) -> Result<Protection, AppError> {
    p.validate()?;
    let known: i64 =
        on_conn!(conn, c => forms::table.filter(forms::form_id.eq(form_id)).count().get_result(c))?;
    if known == 0 {
        return Err(AppError::not_found(
            "unknown_form",
            format!("no form with id '{form_id}'"),
        ));
    }
    let values = (
        form_protection::sensitive.eq(p.sensitive),
        form_protection::geo_decimals.eq(i64::from(p.geo_decimals)),
        form_protection::consent_field.eq(&p.consent_field),
        form_protection::updated_at.eq(now()),
    );
    let updated = on_conn!(conn, c => diesel::update(form_protection::table.find(form_id))
        .set(values)
        .execute(c))?;
    if updated == 0 {
        on_conn!(conn, c => diesel::insert_into(form_protection::table)
            .values((form_protection::form_id.eq(form_id), values))
            .execute(c))?;
    }
    get(conn, form_id)
}

/// Whether any form is marked sensitive (the server then needs a data key).
pub fn any_sensitive(conn: &mut Conn<'_>) -> Result<bool, AppError> {
    let n: i64 = on_conn!(conn, c => form_protection::table
        .filter(form_protection::sensitive.eq(true))
        .count()
        .get_result(c))?;
    Ok(n > 0)
}

/// The ids of forms that are sensitive: marked so by an administrator, or with a version that
/// marks a field sensitive.
pub fn sensitive_forms(conn: &mut Conn<'_>) -> Result<Vec<String>, AppError> {
    let mut ids: Vec<String> = on_conn!(conn, c => form_protection::table
        .filter(form_protection::sensitive.eq(true))
        .select(form_protection::form_id)
        .load(c))?;
    let versions: Vec<(String, Vec<u8>)> = on_conn!(conn, c => form_versions::table
        .select((form_versions::form_id, form_versions::xml))
        .load(c))?;
    for (form_id, xml) in versions {
        let marks = fieldtally_forms::parse_form(&xml)
            .map(|def| def.fields.iter().any(|f| f.sensitive))
            .unwrap_or(false);
        if marks && !ids.contains(&form_id) {
            ids.push(form_id);
        }
    }
    Ok(ids)
}

/// What one pass of [`reseal_batch`] did.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Resealed {
    pub scanned: usize,
    /// Sealed values moved to the current key.
    pub rotated: usize,
    /// Plain XML of forms marked sensitive, sealed now.
    pub sealed: usize,
    /// The last version id looked at; pass it as `after_id` to go on.
    pub last_id: i64,
}

/// Re-seals, with the current key, up to `limit` submission versions after `after_id`: sealed
/// XML and sensitive values under an older key are opened and sealed again, and plain XML of a
/// form now sensitive (in `sensitive`) is sealed. Run in a write transaction per batch; the XML of a
/// version never changes otherwise, so this is safe beside running servers.
pub fn reseal_batch(
    conn: &mut Conn<'_>,
    keys: &DataKeys,
    sensitive: &[String],
    after_id: i64,
    limit: i64,
) -> Result<Resealed, AppError> {
    type Row = (i64, String, Vec<u8>, Option<String>, String);
    let rows: Vec<Row> = on_conn!(conn, c => submission_versions::table
        .inner_join(submissions::table)
        .filter(submission_versions::id.gt(after_id))
        .order(submission_versions::id)
        .limit(limit)
        .select((
            submission_versions::id,
            submission_versions::instance_id,
            submission_versions::xml,
            submission_versions::sensitive,
            submissions::form_id,
        ))
        .load(c))?;
    let mut done = Resealed {
        last_id: after_id,
        ..Resealed::default()
    };
    for (id, instance_id, xml, values, form_id) in rows {
        done.scanned += 1;
        done.last_id = id;
        if let Some(moved) = values
            .map(|v| crate::sensitive::reseal(keys, &v, &instance_id))
            .transpose()?
            .flatten()
        {
            on_conn!(conn, c => diesel::update(submission_versions::table.find(id))
                .set(submission_versions::sensitive.eq(&moved))
                .execute(c))?;
        }
        let context = crypto::xml_context(&instance_id);
        let new = match crypto::key_id_of(&xml) {
            Some(key_id) if key_id == keys.current_id() => continue,
            Some(_) => {
                done.rotated += 1;
                keys.seal(&keys.open(&xml, &context)?, &context)?
            }
            None if sensitive.contains(&form_id) => {
                done.sealed += 1;
                keys.seal(&xml, &context)?
            }
            None => continue,
        };
        on_conn!(conn, c => diesel::update(submission_versions::table.find(id))
            .set(submission_versions::xml.eq(&new))
            .execute(c))?;
    }
    Ok(done)
}

/// The consent field's value in extracted fields (a top-level path), as text; `None` when the
/// submission leaves it empty.
pub fn consent_value(fields: &Value, field: &str) -> Option<String> {
    match fields.get(field)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn consent_is_read_as_text() {
        let f = json!({"consent": "yes", "basis": ["a", "b"], "n": 3, "empty": null});
        assert_eq!(consent_value(&f, "consent").as_deref(), Some("yes"));
        assert_eq!(consent_value(&f, "basis").as_deref(), Some("a b"));
        assert_eq!(consent_value(&f, "n").as_deref(), Some("3"));
        assert_eq!(consent_value(&f, "empty"), None);
        assert_eq!(consent_value(&f, "missing"), None);
    }

    #[test]
    fn settings_are_validated() {
        let mut p = Protection {
            sensitive: true,
            geo_decimals: 7,
            consent_field: None,
        };
        assert!(p.validate().is_err());
        p.geo_decimals = 3;
        p.consent_field = Some("consent".into());
        assert!(p.validate().is_ok());
        p.consent_field = Some("a b".into());
        assert!(p.validate().is_err());
    }
}
