//! Answers of fields a form marks sensitive (`fieldtally:sensitive="yes"`: names, phone
//! numbers): set apart from the other answers on ingest, so that lists, details and logs never
//! carry them. They are stored in one column (`submission_versions.sensitive`) written only
//! through [`seal`], encrypted with the data key (see `crypto.rs`): the column holds
//! `{"paths":[…],"sealed":"<base64>"}`, so the paths withheld can be named without opening
//! anything, and the values come back only through [`open`], which the API calls after writing
//! the access log.

use std::collections::HashSet;

use base64::Engine;
use fieldtally_forms::FormDef;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::crypto::DataKeys;
use crate::error::AppError;

/// The answers with sensitive values removed, and the removed values in the same shape (keyed
/// by path; inside a repeat, an array with one object per repeat instance).
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub public: Value,
    pub sensitive: Option<Value>,
}

/// Splits extracted answers (see `fieldtally_forms::Extracted::fields`) by the form's marks.
pub fn split(form: &FormDef, fields: Value) -> Split {
    let marked: HashSet<&str> = form
        .fields
        .iter()
        .filter(|f| f.sensitive)
        .map(|f| f.path.as_str())
        .collect();
    let Value::Object(object) = fields else {
        return Split {
            public: fields,
            sensitive: None,
        };
    };
    if marked.is_empty() {
        return Split {
            public: Value::Object(object),
            sensitive: None,
        };
    }
    let (public, sensitive) = split_object(form, &marked, "", object);
    Split {
        public: Value::Object(public),
        sensitive: (!sensitive.is_empty()).then_some(Value::Object(sensitive)),
    }
}

fn split_object(
    form: &FormDef,
    marked: &HashSet<&str>,
    prefix: &str,
    object: Map<String, Value>,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut public = Map::new();
    let mut sensitive = Map::new();
    for (key, value) in object {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}/{key}")
        };
        if marked.contains(path.as_str()) {
            sensitive.insert(key, value);
            continue;
        }
        match value {
            Value::Array(items) if form.is_repeat(&path) => {
                let mut public_items = Vec::with_capacity(items.len());
                let mut sensitive_items = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::Object(o) => {
                            let (p, s) = split_object(form, marked, &path, o);
                            public_items.push(Value::Object(p));
                            sensitive_items.push(Value::Object(s));
                        }
                        other => {
                            public_items.push(other);
                            sensitive_items.push(Value::Object(Map::new()));
                        }
                    }
                }
                if sensitive_items
                    .iter()
                    .any(|s| s.as_object().is_some_and(|o| !o.is_empty()))
                {
                    sensitive.insert(key.clone(), Value::Array(sensitive_items));
                }
                public.insert(key, Value::Array(public_items));
            }
            other => {
                public.insert(key, other);
            }
        }
    }
    (public, sensitive)
}

/// What the sensitive-values column holds.
#[derive(Serialize, Deserialize)]
struct Envelope {
    paths: Vec<String>,
    sealed: String,
}

/// The context the values of a submission version are sealed under.
fn context(instance_id: &str) -> Vec<u8> {
    format!("submission_versions.sensitive:{instance_id}").into_bytes()
}

/// The text stored in the sensitive-values column of the version `instance_id`.
pub fn seal(keys: &DataKeys, sensitive: &Value, instance_id: &str) -> Result<String, AppError> {
    let mut paths = Vec::new();
    collect_paths(sensitive, "", &mut paths);
    let plain = serde_json::to_vec(sensitive)
        .map_err(|e| AppError::internal(format!("cannot encode sensitive values: {e}")))?;
    let sealed = keys.seal(&plain, &context(instance_id))?;
    let envelope = Envelope {
        paths,
        sealed: base64::engine::general_purpose::STANDARD.encode(sealed),
    };
    serde_json::to_string(&envelope)
        .map_err(|e| AppError::internal(format!("cannot encode sensitive values: {e}")))
}

fn envelope(stored: &str) -> Result<(Envelope, Vec<u8>), AppError> {
    let damaged = || AppError::internal("the stored sensitive values are damaged");
    let envelope: Envelope = serde_json::from_str(stored).map_err(|_| damaged())?;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(&envelope.sealed)
        .map_err(|_| damaged())?;
    Ok((envelope, sealed))
}

/// The values, opened. Callers write the access log first.
pub fn open(keys: &DataKeys, stored: &str, instance_id: &str) -> Result<Value, AppError> {
    let (_, sealed) = envelope(stored)?;
    let plain = keys.open(&sealed, &context(instance_id))?;
    serde_json::from_slice(&plain)
        .map_err(|_| AppError::internal("the stored sensitive values are damaged"))
}

/// The same values sealed again with the current key, or `None` when they already are.
pub fn reseal(
    keys: &DataKeys,
    stored: &str,
    instance_id: &str,
) -> Result<Option<String>, AppError> {
    let (_, sealed) = envelope(stored)?;
    if crate::crypto::key_id_of(&sealed) == Some(keys.current_id()) {
        return Ok(None);
    }
    let values = open(keys, stored, instance_id)?;
    seal(keys, &values, instance_id).map(Some)
}

/// Paths of the values set aside, for showing that something is withheld (never the values).
pub fn withheld_paths(stored: Option<&str>) -> Vec<String> {
    stored
        .and_then(|s| envelope(s).ok())
        .map(|(e, _)| e.paths)
        .unwrap_or_default()
}

fn collect_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    let Value::Object(object) = value else {
        return;
    };
    for (key, value) in object {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}/{key}")
        };
        match value {
            Value::Array(items) => {
                for item in items {
                    collect_paths(item, &path, out);
                }
            }
            _ => {
                if !out.contains(&path) {
                    out.push(path);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn form() -> FormDef {
        let xml = br#"<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:jr="http://openrosa.org/javarosa" xmlns:fieldtally="urn:fieldtally"><h:head><h:title>t</h:title><model><instance><data id="s" version="1"><woman_name/><phone/><year/><children jr:template=""><child_name/><age/></children><meta><instanceID/></meta></data></instance><bind nodeset="/data/woman_name" type="string" fieldtally:sensitive="yes"/><bind nodeset="/data/phone" type="string" fieldtally:sensitive="true()"/><bind nodeset="/data/children/child_name" type="string" fieldtally:sensitive="yes"/></model></h:head><h:body/></h:html>"#;
        fieldtally_forms::parse_form(xml).expect("form")
    }

    #[test]
    fn marked_values_leave_the_answers_and_keep_their_shape() {
        let fields = json!({
            "woman_name": "Lò Thị Mai",
            "phone": null,
            "year": 1998,
            "children": [{"child_name": "A", "age": 2}, {"child_name": "B", "age": 4}],
            "meta/instanceID": "uuid:1"
        });
        let split = split(&form(), fields);
        assert_eq!(
            split.public,
            json!({"year": 1998, "children": [{"age": 2}, {"age": 4}], "meta/instanceID": "uuid:1"})
        );
        let sensitive = split.sensitive.expect("sensitive values");
        assert_eq!(
            sensitive,
            json!({"woman_name": "Lò Thị Mai", "phone": null, "children": [{"child_name": "A"}, {"child_name": "B"}]})
        );
        let keys =
            DataKeys::parse("k1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
                .expect("keys");
        let sealed = seal(&keys, &sensitive, "uuid:1").expect("seal");
        assert!(!sealed.contains("Lò"), "sealed at rest: {sealed}");
        assert_eq!(
            withheld_paths(Some(&sealed)),
            ["woman_name", "phone", "children/child_name"]
        );
        assert_eq!(open(&keys, &sealed, "uuid:1").expect("open"), sensitive);
        assert!(
            open(&keys, &sealed, "uuid:2").is_err(),
            "bound to its record"
        );
        assert_eq!(reseal(&keys, &sealed, "uuid:1").expect("reseal"), None);
        let rotated = DataKeys::parse(
            "k1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\nk2 1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100",
        )
        .expect("keys");
        let moved = reseal(&rotated, &sealed, "uuid:1")
            .expect("reseal")
            .expect("moved to k2");
        assert_eq!(open(&rotated, &moved, "uuid:1").expect("open"), sensitive);
        assert_eq!(withheld_paths(Some(&moved)), withheld_paths(Some(&sealed)));
        assert!(!serde_json::to_string(&split.public)
            .unwrap_or_default()
            .contains("Lò"));
    }

    #[test]
    fn forms_without_marks_keep_every_answer() {
        let plain = fieldtally_forms::parse_form(br#"<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml"><h:head><model><instance><data id="p"><name/></data></instance></model></h:head></h:html>"#).expect("form");
        let fields = json!({"name": "Mai"});
        assert_eq!(
            split(&plain, fields.clone()),
            Split {
                public: fields,
                sensitive: None
            }
        );
        assert!(withheld_paths(None).is_empty());
    }
}
