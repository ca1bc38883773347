//! Answers of fields a form marks sensitive (`fieldtally:sensitive="yes"`: names, phone
//! numbers): set apart from the other answers on ingest, so that lists, details and logs never
//! carry them. They are stored in one column (`submission_versions.sensitive`) written only
//! through [`seal`]; protecting that column at rest changes this module alone.

use std::collections::HashSet;

use fieldtally_forms::FormDef;
use serde_json::{Map, Value};

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

/// The text stored in the sensitive-values column.
pub fn seal(sensitive: &Value) -> Result<String, serde_json::Error> {
    serde_json::to_string(sensitive)
}

/// Paths of the values set aside, for showing that something is withheld (never the values).
pub fn withheld_paths(sealed: Option<&str>) -> Vec<String> {
    let Some(value) = sealed.and_then(|s| serde_json::from_str::<Value>(s).ok()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    collect_paths(&value, "", &mut out);
    out
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
        let sealed = seal(&sensitive).expect("json");
        assert_eq!(
            withheld_paths(Some(&sealed)),
            ["woman_name", "phone", "children/child_name"]
        );
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
