//! Typed answers from a submission instance, shaped by the form.
//!
//! The result is what the server stores for review, indicators and export: a JSON object keyed
//! by field path, numbers as JSON numbers, multiple choices as arrays, repeats as arrays of
//! objects. It also picks out the location to map and the attachment names to keep.

use std::collections::{HashMap, HashSet};

use roxmltree::Node;
use serde_json::{Map, Number, Value};

use crate::form::join;
use crate::xml::{self, attr, child, elements};
use crate::{FieldKind, FormDef, FormError, Geopoint};

/// The answers of one submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// JSON object keyed by field path (as in [`crate::FieldDef::path`]). A repeat's key holds an
    /// array with one object per repeat instance, keyed by paths relative to the repeat.
    /// Values are typed by the form: `Int` → integer, `Decimal` → number, `Select` → array of
    /// strings, empty → `null`; anything that does not parse as its type, and everything else,
    /// is the trimmed text. Elements the form does not know are kept as text, because forms
    /// evolve and data must not be lost.
    pub fields: Value,
    /// The first geopoint field, in document order, whose value is a valid geopoint.
    pub first_geopoint: Option<Geopoint>,
    /// File names the submission declares as attachments, in document order, without
    /// duplicates: the values of binary fields (including inside repeats); for an encrypted
    /// submission, its `encryptedXmlFile` and `media/file` names. These are names chosen by the
    /// client: never use them as file system paths.
    pub attachments: Vec<String>,
}

/// Extracts the answers of submission `xml` for `form`.
pub fn extract(form: &FormDef, xml: &[u8]) -> Result<Extracted, FormError> {
    let doc = xml::parse(xml)?;
    let root = doc.root_element();
    let mut walker = Walker {
        kinds: form
            .fields
            .iter()
            .map(|field| (field.path.as_str(), &field.kind))
            .collect(),
        repeats: form.repeats.iter().map(String::as_str).collect(),
        first_geopoint: None,
        attachments: Vec::new(),
        seen_attachments: HashSet::new(),
    };
    let mut fields = Map::new();
    walker.walk(root, "", "", &mut fields);
    if attr(root, "encrypted").is_some_and(|value| value.trim() == "yes") {
        walker.add_encrypted_files(root);
    }
    Ok(Extracted {
        fields: Value::Object(fields),
        first_geopoint: walker.first_geopoint,
        attachments: walker.attachments,
    })
}

/// State of one pass over a submission.
struct Walker<'f> {
    kinds: HashMap<&'f str, &'f FieldKind>,
    repeats: HashSet<&'f str>,
    first_geopoint: Option<Geopoint>,
    attachments: Vec<String>,
    seen_attachments: HashSet<String>,
}

impl Walker<'_> {
    /// Adds the children of `node` to `out`. `form_path` is `node`'s path in the form (repeat
    /// instances flattened, as in `FieldDef::path`); `key_prefix` is its path relative to the
    /// object being filled (the root, or the enclosing repeat instance). Recursion depth is
    /// bounded by the nesting limit of [`xml::parse`].
    fn walk(
        &mut self,
        node: Node<'_, '_>,
        form_path: &str,
        key_prefix: &str,
        out: &mut Map<String, Value>,
    ) {
        let mut name_counts: HashMap<&str, usize> = HashMap::new();
        for element in elements(node) {
            *name_counts.entry(element.tag_name().name()).or_default() += 1;
        }
        for element in elements(node) {
            let name = element.tag_name().name();
            let path = join(form_path, name);
            let key = join(key_prefix, name);
            let is_group = elements(element).next().is_some();
            // A group the form does not declare as a repeat but that occurs several times is
            // most likely a repeat added in another form version: keep every occurrence.
            let repeated_group = is_group && name_counts.get(name).copied().unwrap_or(0) > 1;
            if self.repeats.contains(path.as_str()) || repeated_group {
                let mut item = Map::new();
                self.walk(element, &path, "", &mut item);
                match out.get_mut(&key) {
                    Some(Value::Array(items)) => items.push(Value::Object(item)),
                    _ => {
                        out.insert(key, Value::Array(vec![Value::Object(item)]));
                    }
                }
            } else if is_group {
                self.walk(element, &path, &key, out);
            } else if !out.contains_key(&key) {
                // A leaf that occurs twice outside a repeat is not something Collect writes;
                // the first occurrence is kept.
                let value = self.leaf(&path, &xml::text(element));
                out.insert(key, value);
            }
        }
    }

    /// The typed value of a leaf, noting geopoints and attachments on the way.
    fn leaf(&mut self, path: &str, text: &str) -> Value {
        let kind = self.kinds.get(path).copied().unwrap_or(&FieldKind::Text);
        if text.is_empty() {
            return Value::Null;
        }
        match kind {
            FieldKind::Int => match text.parse::<i64>() {
                Ok(number) => Value::from(number),
                Err(_) => Value::String(text.to_string()),
            },
            FieldKind::Decimal => match text.parse::<f64>().ok().and_then(Number::from_f64) {
                Some(number) => Value::Number(number),
                None => Value::String(text.to_string()),
            },
            FieldKind::Select => Value::Array(
                text.split_whitespace()
                    .map(|choice| Value::String(choice.to_string()))
                    .collect(),
            ),
            FieldKind::Geopoint => {
                if self.first_geopoint.is_none() {
                    self.first_geopoint = Geopoint::parse(text).ok();
                }
                Value::String(text.to_string())
            }
            FieldKind::Binary => {
                self.add_attachment(text);
                Value::String(text.to_string())
            }
            _ => Value::String(text.to_string()),
        }
    }

    /// An encrypted submission's answers and files are all in encrypted attachments, named
    /// by `encryptedXmlFile` and `media/file`; they must be kept like binary answers.
    fn add_encrypted_files(&mut self, root: Node<'_, '_>) {
        if let Some(file) = child(root, "encryptedXmlFile") {
            self.add_attachment(&xml::text(file));
        }
        for media in elements(root).filter(|node| node.tag_name().name() == "media") {
            for file in elements(media).filter(|node| node.tag_name().name() == "file") {
                self.add_attachment(&xml::text(file));
            }
        }
    }

    fn add_attachment(&mut self, name: &str) {
        if !name.is_empty() && self.seen_attachments.insert(name.to_string()) {
            self.attachments.push(name.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::parse_form;

    const FORM: &str = include_str!("../tests/fixtures/household_survey.xml");
    const SUBMISSION: &str = include_str!("../tests/fixtures/household_submission.xml");

    fn household() -> FormDef {
        parse_form(FORM.as_bytes()).unwrap()
    }

    #[test]
    fn extracts_the_whole_household_submission() {
        let extracted = extract(&household(), SUBMISSION.as_bytes()).unwrap();
        let expected = json!({
            "start_geopoint": null,
            "start": "2025-04-03T09:12:44.031+01:00",
            "end": "2025-04-03T09:31:02.877+01:00",
            "intro": null,
            "household/head_name": "Ama Mensah",
            "household/head_age": 47,
            "household/village": "north",
            "household/hamlet": "Kpone",
            "income": 1250.5,
            "water_sources": ["well", "tap"],
            "members_count": 3,
            "members": [
                {"member_name": "Ama Mensah", "member_age": 47, "member_photo": "1743668000001.jpg"},
                {"member_name": "Kofi Mensah", "member_age": 12, "member_photo": null},
                {"member_name": "Esi Mensah", "member_age": "unknown", "member_photo": "1743668000003.jpg"}
            ],
            "location": "5.6037 -0.187 61.2 4.8",
            "road": "5.6037 -0.187 61.2 4.8;5.6041 -0.1875 60.0 5.0",
            "field_boundary": "5.6 -0.18 0 0;5.61 -0.18 0 0;5.61 -0.19 0 0;5.6 -0.18 0 0",
            "house_photo": "1743668000001.jpg",
            "visit_date": "2025-04-03",
            "tablet_battery": "83",
            "meta/instanceID": "uuid:0d4f7a52-6f3c-4a8e-9a51-2b3c4d5e6f70",
            "meta/instanceName": "Ama Mensah - north"
        });
        assert_eq!(extracted.fields, expected);
    }

    #[test]
    fn keys_follow_document_order() {
        let extracted = extract(&household(), SUBMISSION.as_bytes()).unwrap();
        let keys: Vec<&String> = extracted.fields.as_object().unwrap().keys().collect();
        assert_eq!(keys.first().map(|k| k.as_str()), Some("start_geopoint"));
        assert_eq!(keys.last().map(|k| k.as_str()), Some("meta/instanceName"));
    }

    #[test]
    fn repeat_with_three_instances_gives_three_objects() {
        let extracted = extract(&household(), SUBMISSION.as_bytes()).unwrap();
        let members = extracted.fields["members"].as_array().unwrap();
        assert_eq!(members.len(), 3);
        assert_eq!(members[2]["member_name"], "Esi Mensah");
    }

    #[test]
    fn attachments_are_binary_values_only_deduplicated_in_order() {
        let extracted = extract(&household(), SUBMISSION.as_bytes()).unwrap();
        // house_photo repeats the first member's photo; hamlet, a text field, is not a file.
        assert_eq!(
            extracted.attachments,
            ["1743668000001.jpg", "1743668000003.jpg"]
        );
    }

    #[test]
    fn first_geopoint_skips_empty_and_invalid_values() {
        let extracted = extract(&household(), SUBMISSION.as_bytes()).unwrap();
        assert_eq!(
            extracted.first_geopoint,
            Some(Geopoint {
                lat: 5.6037,
                lon: -0.187,
                alt: Some(61.2),
                accuracy: Some(4.8)
            })
        );
        let bad_start = SUBMISSION.replace(
            "<start_geopoint />",
            "<start_geopoint>95 10</start_geopoint>",
        );
        let extracted = extract(&household(), bad_start.as_bytes()).unwrap();
        assert_eq!(extracted.first_geopoint.map(|p| p.lat), Some(5.6037));
        assert_eq!(extracted.fields["start_geopoint"], "95 10");

        let good_start =
            SUBMISSION.replace("<start_geopoint />", "<start_geopoint>1 2</start_geopoint>");
        let extracted = extract(&household(), good_start.as_bytes()).unwrap();
        assert_eq!(extracted.first_geopoint.map(|p| p.lat), Some(1.0));
    }

    #[test]
    fn values_that_do_not_parse_as_their_type_stay_text() {
        let xml = SUBMISSION
            .replace("<income>1250.50</income>", "<income>lots</income>")
            .replace(
                "<members_count>3</members_count>",
                "<members_count> 99999999999999999999 </members_count>",
            );
        let extracted = extract(&household(), xml.as_bytes()).unwrap();
        assert_eq!(extracted.fields["income"], "lots");
        assert_eq!(extracted.fields["members_count"], "99999999999999999999");
        let xml = SUBMISSION.replace("<income>1250.50</income>", "<income>NaN</income>");
        let extracted = extract(&household(), xml.as_bytes()).unwrap();
        assert_eq!(extracted.fields["income"], "NaN");
    }

    #[test]
    fn empty_select_multiple_is_null_and_single_choice_is_one_element_array() {
        let xml = SUBMISSION.replace(
            "<water_sources>well  tap</water_sources>",
            "<water_sources/>",
        );
        assert_eq!(
            extract(&household(), xml.as_bytes()).unwrap().fields["water_sources"],
            Value::Null
        );
        let xml = SUBMISSION.replace(
            "<water_sources>well  tap</water_sources>",
            "<water_sources>river</water_sources>",
        );
        assert_eq!(
            extract(&household(), xml.as_bytes()).unwrap().fields["water_sources"],
            json!(["river"])
        );
    }

    #[test]
    fn submission_without_repeat_instances_has_no_repeat_key() {
        let start = SUBMISSION.find("<members>").unwrap();
        let end = SUBMISSION.rfind("</members>").unwrap() + "</members>".len();
        let xml = format!("{}{}", &SUBMISSION[..start], &SUBMISSION[end..]);
        let extracted = extract(&household(), xml.as_bytes()).unwrap();
        assert!(extracted.fields.get("members").is_none());
        assert_eq!(extracted.attachments, ["1743668000001.jpg"]);
    }

    const NESTED_FORM: &str = r#"<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:jr="http://openrosa.org/javarosa">
  <h:head>
    <h:title>Plots</h:title>
    <model>
      <instance>
        <data id="plots">
          <plot jr:template="">
            <details><area/></details>
            <tree jr:template=""><species/><photo/></tree>
          </plot>
          <meta><instanceID/></meta>
        </data>
      </instance>
      <bind nodeset="/data/plot/details/area" type="decimal"/>
      <bind nodeset="/data/plot/tree/photo" type="binary"/>
    </model>
  </h:head>
  <h:body/>
</h:html>"#;

    #[test]
    fn nested_repeats_and_groups_inside_repeats() {
        let form = parse_form(NESTED_FORM.as_bytes()).unwrap();
        assert_eq!(form.repeats, ["plot", "plot/tree"]);
        let xml = r#"<data id="plots">
  <plot><details><area>1.5</area></details>
    <tree><species>oak</species><photo>a.jpg</photo></tree>
    <tree><species>ash</species><photo/></tree>
  </plot>
  <plot><details><area/></details></plot>
  <visit><by>x</by></visit><visit><by>y</by></visit>
  <meta><instanceID>uuid:1</instanceID><deprecatedID>uuid:0</deprecatedID></meta>
</data>"#;
        let extracted = extract(&form, xml.as_bytes()).unwrap();
        assert_eq!(
            extracted.fields,
            json!({
                "plot": [
                    {
                        "details/area": 1.5,
                        "tree": [
                            {"species": "oak", "photo": "a.jpg"},
                            {"species": "ash", "photo": null}
                        ]
                    },
                    {"details/area": null}
                ],
                "visit": [{"by": "x"}, {"by": "y"}],
                "meta/instanceID": "uuid:1",
                "meta/deprecatedID": "uuid:0"
            })
        );
        assert_eq!(extracted.attachments, ["a.jpg"]);
        assert_eq!(extracted.first_geopoint, None);
    }

    #[test]
    fn encrypted_submission_lists_its_encrypted_files() {
        let form = household();
        let xml = r#"<data id="household_survey" version="2025040301" encrypted="yes" xmlns="http://www.opendatakit.org/xforms/encrypted">
<base64EncryptedKey>AbCd==</base64EncryptedKey>
<meta xmlns="http://openrosa.org/xforms"><instanceID>uuid:enc-1</instanceID></meta>
<media><file>1743668000001.jpg.enc</file></media>
<media><file>1743668000003.jpg.enc</file></media>
<encryptedXmlFile>submission.xml.enc</encryptedXmlFile>
<base64EncryptedElementSignature>XyZ=</base64EncryptedElementSignature>
</data>"#;
        let extracted = extract(&form, xml.as_bytes()).unwrap();
        assert_eq!(
            extracted.attachments,
            [
                "submission.xml.enc",
                "1743668000001.jpg.enc",
                "1743668000003.jpg.enc"
            ]
        );
        assert_eq!(extracted.fields["meta/instanceID"], "uuid:enc-1");
    }

    #[test]
    fn malformed_submission_is_an_error() {
        let cut = &SUBMISSION[..SUBMISSION.len() - 20];
        assert!(matches!(
            extract(&household(), cut.as_bytes()).unwrap_err(),
            FormError::NotWellFormed(_)
        ));
    }
}
