//! Labels of an XForm's questions, groups and choices in each of its languages, so that people
//! see "Số người trong hộ" instead of `household/household_size`.
//!
//! Labels come from the body controls' `<label>`: either plain text or a reference
//! `jr:itext('id')` into the model's `<itext>` translations. Choice labels come from `<item>`
//! elements inside a select, or from an `<itemset>` over a secondary instance whose items name
//! an itext id (what pyxform writes) or carry the label text.

use std::collections::HashMap;

use roxmltree::Node;

use crate::xml::{self, attr, child, elements};
use crate::FormError;

/// A label in each language of the form: language name (as the form writes it) → text. A form
/// without translations uses the language name `""`.
pub type Translations = HashMap<String, String>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FormLabels {
    /// Language names in the form's order, e.g. `Vietnamese (vi)`, `English (en)`.
    pub languages: Vec<String>,
    /// The translation marked `default="true()"`, or the first.
    pub default_language: Option<String>,
    /// Labels of questions and groups by path (same scheme as [`crate::FieldDef::path`]).
    labels: HashMap<String, Translations>,
    /// Labels of choices: question path → choice value → translations.
    choices: HashMap<String, HashMap<String, Translations>>,
}

impl FormLabels {
    /// The language of the form that matches `wanted`: an ISO code such as `vi` matches
    /// `Vietnamese (vi)`, or a name matches itself (case-insensitively).
    pub fn language(&self, wanted: &str) -> Option<&str> {
        let wanted = wanted.trim().to_ascii_lowercase();
        self.languages
            .iter()
            .find(|lang| {
                let l = lang.to_ascii_lowercase();
                l == wanted
                    || l.ends_with(&format!("({wanted})"))
                    || l.split_whitespace().next() == Some(wanted.as_str())
            })
            .map(String::as_str)
    }

    fn pick<'a>(&self, t: &'a Translations, wanted: &str) -> Option<&'a str> {
        let chosen = self.language(wanted);
        chosen
            .and_then(|l| t.get(l))
            .or_else(|| self.default_language.as_ref().and_then(|l| t.get(l)))
            .or_else(|| t.get(""))
            .or_else(|| self.languages.iter().find_map(|l| t.get(l)))
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The label of a question or group in the wanted language (falling back to the default).
    pub fn label(&self, path: &str, wanted: &str) -> Option<&str> {
        self.pick(self.labels.get(path)?, wanted)
    }

    /// The label of one choice of a select question.
    pub fn choice(&self, path: &str, value: &str, wanted: &str) -> Option<&str> {
        self.pick(self.choices.get(path)?.get(value)?, wanted)
    }
}

/// Reads the labels of an XForm.
pub fn parse_labels(xml: &[u8]) -> Result<FormLabels, FormError> {
    let doc = xml::parse(xml)?;
    let html = doc.root_element();
    let model = child(html, "head")
        .and_then(|head| child(head, "model"))
        .ok_or(FormError::NoModel)?;
    let root_name = child(model, "instance")
        .and_then(|i| elements(i).next())
        .map(|r| r.tag_name().name().to_string())
        .ok_or(FormError::NoInstanceRoot)?;

    let mut out = FormLabels::default();
    let itext = read_itext(model, &mut out);
    let Some(body) = child(html, "body") else {
        return Ok(out);
    };
    for control in body.descendants().filter(|n| n.is_element()) {
        let Some(reference) = attr(control, "ref").or_else(|| attr(control, "nodeset")) else {
            continue;
        };
        let Some(path) = relative(reference, &root_name) else {
            continue;
        };
        if let Some(label) = child(control, "label") {
            let t = label_translations(label, &itext);
            if !t.is_empty() {
                out.labels.entry(path.clone()).or_insert(t);
            }
        }
        let name = control.tag_name().name();
        if name == "select" || name == "select1" || name == "odk:rank" || name == "rank" {
            let choices = choice_labels(control, model, &itext);
            if !choices.is_empty() {
                out.choices.insert(path, choices);
            }
        }
    }
    Ok(out)
}

/// `/data/a/b` → `a/b` for root `data`.
fn relative(reference: &str, root_name: &str) -> Option<String> {
    let p = reference
        .trim()
        .strip_prefix('/')?
        .strip_prefix(root_name)?
        .strip_prefix('/')?;
    (!p.is_empty()).then(|| p.to_string())
}

/// itext id → translations; fills in the form's languages.
fn read_itext(model: Node<'_, '_>, out: &mut FormLabels) -> HashMap<String, Translations> {
    let mut texts: HashMap<String, Translations> = HashMap::new();
    let Some(itext) = child(model, "itext") else {
        return texts;
    };
    for translation in elements(itext).filter(|n| n.tag_name().name() == "translation") {
        let lang = attr(translation, "lang").unwrap_or_default().to_string();
        if attr(translation, "default").is_some() && out.default_language.is_none() {
            out.default_language = Some(lang.clone());
        }
        if !out.languages.contains(&lang) {
            out.languages.push(lang.clone());
        }
        for text in elements(translation).filter(|n| n.tag_name().name() == "text") {
            let Some(id) = attr(text, "id") else { continue };
            // The plain value; `form="image"`, `audio`, `guidance`… are media or extra help.
            let value = elements(text)
                .filter(|v| v.tag_name().name() == "value")
                .find(|v| attr(*v, "form").is_none_or(|f| f == "long" || f == "short"))
                .map(text_of);
            if let Some(v) = value {
                texts
                    .entry(id.to_string())
                    .or_default()
                    .insert(lang.clone(), v);
            }
        }
    }
    if out.default_language.is_none() {
        out.default_language = out.languages.first().cloned();
    }
    texts
}

/// The visible text of a label or value element, `<output>`s shown as `…`.
fn text_of(node: Node<'_, '_>) -> String {
    let mut s = String::new();
    for n in node.descendants() {
        if n.is_text() {
            s.push_str(n.text().unwrap_or_default());
        } else if n.is_element() && n.tag_name().name() == "output" {
            s.push('…');
        }
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `jr:itext('id')` → `id`.
fn itext_id(reference: &str) -> Option<&str> {
    let inner = reference
        .trim()
        .strip_prefix("jr:itext(")?
        .strip_suffix(')')?;
    Some(inner.trim().trim_matches(|c| c == '\'' || c == '"'))
}

fn label_translations(label: Node<'_, '_>, itext: &HashMap<String, Translations>) -> Translations {
    if let Some(r) = attr(label, "ref") {
        return itext_id(r)
            .and_then(|id| itext.get(id))
            .cloned()
            .unwrap_or_default();
    }
    let text = text_of(label);
    if text.is_empty() {
        Translations::new()
    } else {
        Translations::from([(String::new(), text)])
    }
}

fn choice_labels(
    control: Node<'_, '_>,
    model: Node<'_, '_>,
    itext: &HashMap<String, Translations>,
) -> HashMap<String, Translations> {
    let mut out = HashMap::new();
    for item in elements(control).filter(|n| n.tag_name().name() == "item") {
        let (Some(value), Some(label)) = (child(item, "value"), child(item, "label")) else {
            continue;
        };
        let t = label_translations(label, itext);
        if !t.is_empty() {
            out.insert(xml::text(value), t);
        }
    }
    if let Some(itemset) = child(control, "itemset") {
        itemset_labels(itemset, model, itext, &mut out);
    }
    out
}

/// Labels of an `<itemset nodeset="instance('name')/root/item">` from that secondary instance.
fn itemset_labels(
    itemset: Node<'_, '_>,
    model: Node<'_, '_>,
    itext: &HashMap<String, Translations>,
    out: &mut HashMap<String, Translations>,
) {
    let Some(nodeset) = attr(itemset, "nodeset") else {
        return;
    };
    let Some(name) = nodeset
        .split_once("instance(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(n, _)| n.trim().trim_matches(|c| c == '\'' || c == '"'))
    else {
        return;
    };
    let value_ref = child(itemset, "value")
        .and_then(|v| attr(v, "ref"))
        .unwrap_or("name");
    let label_ref = child(itemset, "label")
        .and_then(|l| attr(l, "ref"))
        .unwrap_or("label");
    let Some(instance) = elements(model)
        .filter(|n| n.tag_name().name() == "instance")
        .find(|n| attr(*n, "id") == Some(name))
    else {
        return;
    };
    let Some(root) = elements(instance).next() else {
        return;
    };
    for item in elements(root) {
        let field = |name: &str| child(item, name).map(xml::text);
        let Some(value) = field(value_ref.trim()) else {
            continue;
        };
        let t = match itext_id(label_ref) {
            // `jr:itext(itextId)`: the item names its itext id in a child element.
            Some(key) => field(key)
                .and_then(|id| itext.get(&id).cloned())
                .unwrap_or_default(),
            None => field(label_ref.trim())
                .map(|text| Translations::from([(String::new(), text)]))
                .unwrap_or_default(),
        };
        if !t.is_empty() {
            out.insert(value, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUSEHOLD: &str = include_str!("../tests/fixtures/household_survey.xml");

    #[test]
    fn pyxform_labels_in_two_languages_with_itemset_choices() {
        let xml = include_str!("../xforms/policy_dialogue.xml");
        let l = parse_labels(xml.as_bytes()).expect("labels");
        assert_eq!(l.languages, ["Vietnamese (vi)", "English (en)"]);
        assert_eq!(l.default_language.as_deref(), Some("Vietnamese (vi)"));
        assert_eq!(l.language("vi"), Some("Vietnamese (vi)"));
        assert_eq!(l.language("EN"), Some("English (en)"));
        assert_eq!(l.language("fr"), None);
        assert_eq!(l.label("level", "vi"), Some("Cấp tổ chức đối thoại"));
        assert_eq!(
            l.label("activity_date", "vi"),
            Some("Ngày diễn ra hoạt động")
        );
        assert!(l
            .label("level", "en")
            .is_some_and(|s| s != "Cấp tổ chức đối thoại"));
        // An unknown language falls back to the default.
        assert_eq!(l.label("level", "fr"), Some("Cấp tổ chức đối thoại"));
        assert_eq!(l.choice("level", "commune", "vi"), Some("Cấp xã"));
        assert_eq!(
            l.choice("level", "village_cluster", "en"),
            Some("Village cluster")
        );
        assert_eq!(l.choice("level", "nowhere", "en"), None);
        assert!(l.label("no/such/path", "vi").is_none());
    }

    #[test]
    fn household_fixture_labels_groups_repeats_and_choices() {
        let l = parse_labels(HOUSEHOLD.as_bytes()).expect("labels");
        for path in [
            "household/head_name",
            "members",
            "members/member_age",
            "household",
        ] {
            assert!(l.label(path, "en").is_some(), "{path} has a label");
        }
    }

    #[test]
    fn plain_labels_and_inline_items() {
        let xml = br#"<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:jr="http://openrosa.org/javarosa"><h:head><h:title>t</h:title><model><itext><translation lang="en"><text id="y"><value form="image">jr://images/y.png</value><value>Yes &amp; sure</value></text></translation></itext><instance><d id="p"><q/><name/></d></instance></model></h:head><h:body><select1 ref="/d/q"><label>Pick <output value="/d/name"/> one</label><item><label ref="jr:itext('y')"/><value>y</value></item><item><label>No</label><value>n</value></item></select1><input ref="/d/name"><label>Name</label></input></h:body></h:html>"#;
        let l = parse_labels(xml).expect("labels");
        assert_eq!(l.label("q", "en"), Some("Pick … one"));
        assert_eq!(l.label("name", "vi"), Some("Name"));
        assert_eq!(l.choice("q", "y", "en"), Some("Yes & sure"));
        assert_eq!(l.choice("q", "n", "en"), Some("No"));
        assert_eq!(l.choice("q", "maybe", "en"), None);
    }

    #[test]
    fn a_form_without_body_or_itext_has_no_labels() {
        let xml = br#"<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml"><h:head><model><instance><d id="p"><q/></d></instance></model></h:head></h:html>"#;
        let l = parse_labels(xml).expect("labels");
        assert!(l.languages.is_empty());
        assert_eq!(l.label("q", "vi"), None);
        assert!(parse_labels(b"<x/>").is_err());
    }
}
