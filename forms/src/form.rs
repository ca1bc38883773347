//! XForm definitions: what the server needs to know about an uploaded form.
//!
//! Only the parts the server acts on are read: identity (id, version, title), the shape of the
//! primary instance (fields, their types, repeats), the media files the form expects on the
//! phone, and whether submissions will be encrypted. Everything else (labels, logic, appearance)
//! is the phone's business.

use std::collections::{BTreeSet, HashMap, HashSet};

use roxmltree::{Document, Node};

use crate::xml::{self, attr, child, elements};
use crate::FormError;

/// What the server knows about one form version.
#[derive(Debug, Clone, PartialEq)]
pub struct FormDef {
    /// The `id` attribute of the primary instance root: the form's identity across versions.
    pub form_id: String,
    /// The `version` attribute of the primary instance root, `""` when absent.
    pub version: String,
    /// The `<h:title>` text, or the form id when the title is missing or empty.
    pub title: String,
    /// Local name of the primary instance root element, e.g. `data`.
    pub root_name: String,
    /// One entry per leaf of the primary instance, in document order.
    pub fields: Vec<FieldDef>,
    /// Paths of repeat groups, e.g. `members`.
    pub repeats: Vec<String>,
    /// Base names of the media files the form references (`logo.png`, `hamlets.csv`), sorted
    /// and without duplicates: the server lists them in the manifest Collect downloads.
    pub media: Vec<String>,
    /// Whether the form carries a public key, in which case submissions arrive encrypted.
    pub encrypted: bool,
}

impl FormDef {
    /// The field at `path` (same scheme as [`FieldDef::path`]), if the form has it.
    pub fn field(&self, path: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|field| field.path == path)
    }

    /// Whether `path` is a repeat group of this form.
    pub fn is_repeat(&self, path: &str) -> bool {
        self.repeats.iter().any(|repeat| repeat == path)
    }
}

/// One leaf of the primary instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDef {
    /// Slash-separated path below the root, without the root name: `household/head_name`,
    /// `meta/instanceID`, `members/member_name` for a field inside the repeat `members`.
    pub path: String,
    /// The type from the field's `<bind>`; [`FieldKind::Text`] when no bind gives one.
    pub kind: FieldKind,
    /// The bind says `fieldtally:sensitive="yes"`: the value is personal data (a name, a phone
    /// number) that the server keeps apart from the other answers and never shows in lists.
    pub sensitive: bool,
    /// The bind's `fieldtally:beneficiary` role (`name`, `birth_year`, `household_code`…): the
    /// field is part of the identity from which the server derives a pseudonymous key.
    pub beneficiary: Option<String>,
    /// Filled by the phone itself when the form opens (`odk:setgeopoint`, pyxform's
    /// start-geopoint), not by the collector at the place of the activity.
    pub background: bool,
}

/// Namespace of fieldtally's own bind attributes. In an XLSForm: a survey column
/// `bind::fieldtally:sensitive` and, in the settings sheet, `namespaces` =
/// `fieldtally="urn:fieldtally"`; pyxform copies such attributes onto the bind.
pub const FIELDTALLY_NS: &str = "urn:fieldtally";

/// What fieldtally's bind attributes say about one field.
#[derive(Debug, Default, Clone)]
struct Annotations {
    sensitive: bool,
    beneficiary: Option<String>,
}

/// Data type of a field, from its `<bind type="…">`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKind {
    /// `string`, or no type at all.
    Text,
    /// `int` (also `integer`, `long`, `short`, which JavaRosa accepts as aliases).
    Int,
    /// `decimal` (also `double`, `float`).
    Decimal,
    /// `date`.
    Date,
    /// `time`.
    Time,
    /// `dateTime`.
    DateTime,
    /// `select1`: one choice.
    Select1,
    /// `select`: space-separated choices.
    Select,
    /// `geopoint`: `"lat lon alt accuracy"`.
    Geopoint,
    /// `geotrace`: geopoints joined by `;`.
    Geotrace,
    /// `geoshape`: a closed ring of geopoints joined by `;`.
    Geoshape,
    /// `binary`: the file name of an attachment (photo, audio, video, file).
    Binary,
    /// `barcode`.
    Barcode,
    /// Any other type, as written in the bind (e.g. `odk:rank`, `boolean`).
    Other(String),
}

impl FieldKind {
    /// The kind for a bind's `type` attribute. A namespace prefix (`xsd:`, `odk:`) is ignored
    /// because pyxform and hand-written forms differ in whether they write one.
    pub fn from_bind_type(bind_type: &str) -> FieldKind {
        let bind_type = bind_type.trim();
        let local = match bind_type.split_once(':') {
            Some((_prefix, local)) => local,
            None => bind_type,
        };
        match local {
            "" | "string" => FieldKind::Text,
            "int" | "integer" | "long" | "short" => FieldKind::Int,
            "decimal" | "double" | "float" => FieldKind::Decimal,
            "date" => FieldKind::Date,
            "time" => FieldKind::Time,
            "dateTime" => FieldKind::DateTime,
            "select1" => FieldKind::Select1,
            "select" => FieldKind::Select,
            "geopoint" => FieldKind::Geopoint,
            "geotrace" => FieldKind::Geotrace,
            "geoshape" => FieldKind::Geoshape,
            "binary" => FieldKind::Binary,
            "barcode" => FieldKind::Barcode,
            _ => FieldKind::Other(bind_type.to_string()),
        }
    }

    /// The canonical bind type name (`string`, `int`, `dateTime`…), for storing and showing.
    pub fn as_str(&self) -> &str {
        match self {
            FieldKind::Text => "string",
            FieldKind::Int => "int",
            FieldKind::Decimal => "decimal",
            FieldKind::Date => "date",
            FieldKind::Time => "time",
            FieldKind::DateTime => "dateTime",
            FieldKind::Select1 => "select1",
            FieldKind::Select => "select",
            FieldKind::Geopoint => "geopoint",
            FieldKind::Geotrace => "geotrace",
            FieldKind::Geoshape => "geoshape",
            FieldKind::Binary => "binary",
            FieldKind::Barcode => "barcode",
            FieldKind::Other(name) => name,
        }
    }
}

/// Reads an XForm (`<h:html><h:head><model>…`). Elements and attributes are matched by local
/// name, so prefixes and default namespaces may vary.
pub fn parse_form(xml: &[u8]) -> Result<FormDef, FormError> {
    let doc = xml::parse(xml)?;
    let html = doc.root_element();
    let head = child(html, "head");
    let model = head
        .and_then(|head| child(head, "model"))
        .ok_or(FormError::NoModel)?;
    let instance = child(model, "instance").ok_or(FormError::NoInstance)?;
    let root = elements(instance).next().ok_or(FormError::NoInstanceRoot)?;

    let form_id = attr(root, "id")
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or(FormError::NoFormId)?
        .to_string();
    let version = attr(root, "version").unwrap_or_default().trim().to_string();
    let title = head
        .and_then(|head| child(head, "title"))
        .map(xml::text)
        .filter(|title| !title.is_empty())
        .unwrap_or_else(|| form_id.clone());
    let root_name = root.tag_name().name().to_string();

    let mut kinds = bind_kinds(model, &root_name);
    if let Some(body) = child(html, "body") {
        select_kinds(body, &root_name, &mut kinds);
    }
    let mut shape = InstanceShape {
        annotations: bind_annotations(model, &root_name),
        background: background_geopoints(&doc, &root_name),
        ..InstanceShape::default()
    };
    shape.collect(root, "", &kinds);
    if let Some(body) = child(html, "body") {
        for repeat in body
            .descendants()
            .filter(|node| node.is_element() && node.tag_name().name() == "repeat")
        {
            if let Some(path) = attr(repeat, "nodeset").and_then(|n| relative_path(n, &root_name)) {
                shape.add_repeat(path);
            }
        }
    }

    let encrypted = child(model, "submission")
        .and_then(|submission| attr(submission, "base64RsaPublicKey"))
        .is_some_and(|key| !key.trim().is_empty());

    Ok(FormDef {
        form_id,
        version,
        title,
        root_name,
        fields: shape.fields,
        repeats: shape.repeats,
        media: media_files(&doc),
        encrypted,
    })
}

/// `/data/household/head_age` → `household/head_age` when `root_name` is `data`. Relative or
/// foreign paths, and the root itself, give `None`: pyxform always writes absolute paths.
fn relative_path<'a>(nodeset: &'a str, root_name: &str) -> Option<&'a str> {
    let path = nodeset
        .trim()
        .strip_prefix('/')?
        .strip_prefix(root_name)?
        .strip_prefix('/')?;
    (!path.is_empty()).then_some(path)
}

/// Field kinds by path from the model's `<bind>` elements; the first bind with a type wins.
fn bind_kinds(model: Node<'_, '_>, root_name: &str) -> HashMap<String, FieldKind> {
    let mut kinds = HashMap::new();
    for bind in elements(model).filter(|node| node.tag_name().name() == "bind") {
        let (Some(nodeset), Some(bind_type)) = (attr(bind, "nodeset"), attr(bind, "type")) else {
            continue;
        };
        if let Some(path) = relative_path(nodeset, root_name) {
            kinds
                .entry(path.to_string())
                .or_insert_with(|| FieldKind::from_bind_type(bind_type));
        }
    }
    kinds
}

/// fieldtally's attributes on the model's `<bind>` elements, by path.
fn bind_annotations(model: Node<'_, '_>, root_name: &str) -> HashMap<String, Annotations> {
    let mut found: HashMap<String, Annotations> = HashMap::new();
    for bind in elements(model).filter(|node| node.tag_name().name() == "bind") {
        let Some(path) = attr(bind, "nodeset").and_then(|n| relative_path(n, root_name)) else {
            continue;
        };
        for attribute in bind.attributes() {
            if attribute.namespace() != Some(FIELDTALLY_NS) {
                continue;
            }
            let value = attribute.value().trim();
            let entry = found.entry(path.to_string()).or_default();
            match attribute.name() {
                "sensitive" => entry.sensitive = matches!(value, "yes" | "true" | "true()"),
                "beneficiary" if !value.is_empty() => {
                    entry.beneficiary = Some(value.to_string());
                }
                _ => {}
            }
        }
    }
    found
}

/// Paths the phone fills on its own with `odk:setgeopoint` (in the model or the body).
fn background_geopoints(doc: &Document<'_>, root_name: &str) -> HashSet<String> {
    doc.descendants()
        .filter(|node| node.is_element() && node.tag_name().name() == "setgeopoint")
        .filter_map(|node| attr(node, "ref").and_then(|r| relative_path(r, root_name)))
        .map(str::to_string)
        .collect()
}

/// pyxform binds select_one and select_multiple questions as `string`: the body control
/// (`<select1>` or `<select>`) tells which one a question is.
fn select_kinds(body: Node<'_, '_>, root_name: &str, kinds: &mut HashMap<String, FieldKind>) {
    for control in body.descendants().filter(|node| node.is_element()) {
        let kind = match control.tag_name().name() {
            "select" => FieldKind::Select,
            "select1" => FieldKind::Select1,
            _ => continue,
        };
        let Some(path) = attr(control, "ref").and_then(|r| relative_path(r, root_name)) else {
            continue;
        };
        let entry = kinds.entry(path.to_string()).or_insert(FieldKind::Text);
        if *entry == FieldKind::Text {
            *entry = kind;
        }
    }
}

/// Fields and repeats found so far, without duplicates: pyxform writes each repeat twice in the
/// instance (the `jr:template` copy and a first real instance).
#[derive(Default)]
struct InstanceShape {
    fields: Vec<FieldDef>,
    field_paths: HashSet<String>,
    repeats: Vec<String>,
    annotations: HashMap<String, Annotations>,
    background: HashSet<String>,
}

impl InstanceShape {
    /// Walks the children of `node`, whose path below the root is `prefix`. Recursion depth is
    /// bounded by the nesting limit of [`xml::parse`].
    fn collect(&mut self, node: Node<'_, '_>, prefix: &str, kinds: &HashMap<String, FieldKind>) {
        for element in elements(node) {
            let path = join(prefix, element.tag_name().name());
            let is_template = attr(element, "template").is_some();
            if is_template {
                self.add_repeat(&path);
            }
            if is_template || elements(element).next().is_some() {
                self.collect(element, &path, kinds);
            } else if self.field_paths.insert(path.clone()) {
                let kind = kinds.get(&path).cloned().unwrap_or(FieldKind::Text);
                let annotations = self.annotations.get(&path).cloned().unwrap_or_default();
                let background = self.background.contains(&path);
                self.fields.push(FieldDef {
                    path,
                    kind,
                    sensitive: annotations.sensitive,
                    beneficiary: annotations.beneficiary,
                    background,
                });
            }
        }
    }

    fn add_repeat(&mut self, path: &str) {
        if !self.repeats.iter().any(|repeat| repeat == path) {
            self.repeats.push(path.to_string());
        }
    }
}

/// `prefix/name`, or `name` at the top.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// The URI prefixes under which Collect looks for form media in the form's media folder.
const MEDIA_PREFIXES: [&str; 5] = [
    "jr://images/",
    "jr://audio/",
    "jr://video/",
    "jr://file/",
    "jr://file-csv/",
];

/// Base names of all media references anywhere in the form: itext values, body text, `src`
/// of secondary instances, default values. Scanning every text and attribute finds them
/// wherever pyxform or a hand-written form puts them.
fn media_files(doc: &Document<'_>) -> Vec<String> {
    let mut names = BTreeSet::new();
    for node in doc.descendants() {
        if node.is_text() {
            add_media_references(node.text().unwrap_or_default(), &mut names);
        } else if node.is_element() {
            for attribute in node.attributes() {
                add_media_references(attribute.value(), &mut names);
            }
        }
    }
    names.into_iter().collect()
}

/// Adds the base name of every `jr://<media kind>/…` reference in `value`. A reference ends at
/// whitespace, a quote, a bracket or a separator, so references inside expressions are found
/// too. Empty names (a reference completed by an `<output>`) and `.`/`..` are skipped.
fn add_media_references(value: &str, names: &mut BTreeSet<String>) {
    let mut rest = value;
    while let Some(at) = rest.find("jr://") {
        let candidate = &rest[at..];
        let end = candidate
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '(' | ')' | ',' | ';')
            })
            .unwrap_or(candidate.len());
        let reference = &candidate[..end];
        if MEDIA_PREFIXES
            .iter()
            .any(|prefix| reference.starts_with(prefix))
        {
            let name = reference.rsplit('/').next().unwrap_or_default();
            if !name.is_empty() && name != "." && name != ".." {
                names.insert(name.to_string());
            }
        }
        rest = &candidate["jr://".len()..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUSEHOLD: &str = include_str!("../tests/fixtures/household_survey.xml");

    fn household() -> FormDef {
        parse_form(HOUSEHOLD.as_bytes()).unwrap()
    }

    #[test]
    fn reads_identity_and_title() {
        let form = household();
        assert_eq!(form.form_id, "household_survey");
        assert_eq!(form.version, "2025040301");
        assert_eq!(form.title, "Household survey");
        assert_eq!(form.root_name, "data");
        assert!(!form.encrypted);
    }

    #[test]
    fn lists_every_leaf_once_in_document_order() {
        let form = household();
        let paths: Vec<&str> = form.fields.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "start_geopoint",
                "start",
                "end",
                "intro",
                "household/head_name",
                "household/head_age",
                "household/village",
                "household/hamlet",
                "income",
                "water_sources",
                "members_count",
                "members/member_name",
                "members/member_age",
                "members/member_photo",
                "location",
                "road",
                "field_boundary",
                "house_photo",
                "visit_date",
                "meta/instanceID",
                "meta/instanceName",
            ]
        );
    }

    #[test]
    fn field_kinds_come_from_binds() {
        let form = household();
        let kind = |path: &str| form.field(path).map(|f| f.kind.clone());
        assert_eq!(kind("start_geopoint"), Some(FieldKind::Geopoint));
        assert_eq!(kind("start"), Some(FieldKind::DateTime));
        assert_eq!(kind("household/head_name"), Some(FieldKind::Text));
        assert_eq!(kind("household/head_age"), Some(FieldKind::Int));
        assert_eq!(kind("household/village"), Some(FieldKind::Select1));
        assert_eq!(kind("income"), Some(FieldKind::Decimal));
        assert_eq!(kind("water_sources"), Some(FieldKind::Select));
        assert_eq!(kind("members/member_photo"), Some(FieldKind::Binary));
        assert_eq!(kind("road"), Some(FieldKind::Geotrace));
        assert_eq!(kind("field_boundary"), Some(FieldKind::Geoshape));
        assert_eq!(kind("house_photo"), Some(FieldKind::Binary));
        assert_eq!(kind("visit_date"), Some(FieldKind::Date));
        assert_eq!(kind("meta/instanceID"), Some(FieldKind::Text));
        assert_eq!(kind("nonexistent"), None);
    }

    #[test]
    fn selects_bound_as_string_take_their_kind_from_the_body() {
        // What pyxform 4.5 writes for select_one / select_multiple questions.
        let xml = br#"<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml"><h:head><h:title>t</h:title><model><instance><data id="s" version="1"><one/><many/><rank/><meta><instanceID/></meta></data></instance><bind nodeset="/data/one" type="string"/><bind nodeset="/data/many" type="string"/><bind nodeset="/data/rank" type="odk:rank"/></model></h:head><h:body><select1 ref="/data/one"><label>1</label></select1><select ref="/data/many"><label>2</label></select><select ref="/data/rank"><label>3</label></select></h:body></h:html>"#;
        let form = parse_form(xml).expect("form");
        let kind = |path: &str| form.field(path).map(|f| f.kind.clone());
        assert_eq!(kind("one"), Some(FieldKind::Select1));
        assert_eq!(kind("many"), Some(FieldKind::Select));
        assert_eq!(kind("rank"), Some(FieldKind::Other("odk:rank".into())));
    }

    #[test]
    fn finds_repeats_once() {
        let form = household();
        assert_eq!(form.repeats, ["members"]);
        assert!(form.is_repeat("members"));
        assert!(!form.is_repeat("household"));
    }

    #[test]
    fn lists_media_from_itext_body_and_secondary_instances() {
        assert_eq!(
            household().media,
            [
                "bienvenue.mp3",
                "hamlets.csv",
                "howto.mp4",
                "logo.png",
                "well.jpg"
            ]
        );
    }

    #[test]
    fn bind_types_ignore_prefixes_and_keep_unknown_ones() {
        assert_eq!(FieldKind::from_bind_type("xsd:int"), FieldKind::Int);
        assert_eq!(
            FieldKind::from_bind_type("xsd:dateTime"),
            FieldKind::DateTime
        );
        assert_eq!(FieldKind::from_bind_type("odk:barcode"), FieldKind::Barcode);
        assert_eq!(FieldKind::from_bind_type("string"), FieldKind::Text);
        assert_eq!(FieldKind::from_bind_type("integer"), FieldKind::Int);
        assert_eq!(
            FieldKind::from_bind_type("odk:rank"),
            FieldKind::Other("odk:rank".to_string())
        );
        assert_eq!(FieldKind::from_bind_type("odk:rank").as_str(), "odk:rank");
        assert_eq!(FieldKind::DateTime.as_str(), "dateTime");
    }

    /// A minimal hand-written form: prefixed bind types, a repeat known only from the body,
    /// no title, no version, a public key.
    const MINIMAL: &str = r#"<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:jr="http://openrosa.org/javarosa">
  <h:head>
    <model>
      <instance>
        <survey id=" minimal ">
          <age/>
          <visits><when/><photo/></visits>
          <note>default text</note>
        </survey>
      </instance>
      <bind nodeset="/survey/age" type="xsd:int"/>
      <bind nodeset="/survey/age" type="string"/>
      <bind nodeset="/survey/visits/when" type="xsd:dateTime"/>
      <bind nodeset="/survey/visits/photo" type="binary"/>
      <submission base64RsaPublicKey="MIIBIjANBgkq" method="post"/>
    </model>
  </h:head>
  <h:body>
    <repeat nodeset="/survey/visits"><input ref="/survey/visits/when"/></repeat>
  </h:body>
</h:html>"#;

    #[test]
    fn hand_written_form_with_repeat_only_in_body_and_public_key() {
        let form = parse_form(MINIMAL.as_bytes()).unwrap();
        assert_eq!(form.form_id, "minimal");
        assert_eq!(form.version, "");
        assert_eq!(form.title, "minimal");
        assert_eq!(form.root_name, "survey");
        assert_eq!(form.repeats, ["visits"]);
        assert!(form.encrypted);
        assert!(form.media.is_empty());
        let fields: Vec<(&str, &FieldKind)> = form
            .fields
            .iter()
            .map(|f| (f.path.as_str(), &f.kind))
            .collect();
        assert_eq!(
            fields,
            [
                ("age", &FieldKind::Int),
                ("visits/when", &FieldKind::DateTime),
                ("visits/photo", &FieldKind::Binary),
                ("note", &FieldKind::Text),
            ]
        );
    }

    #[test]
    fn fieldtally_bind_attributes_and_background_geopoints() {
        // As pyxform 4.5 writes `bind::fieldtally:…` columns with the `namespaces` setting.
        let xml = br#"<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:odk="http://www.opendatakit.org/xforms" xmlns:fieldtally="urn:fieldtally" xmlns:other="urn:other"><h:head><h:title>t</h:title><model><instance><data id="b" version="1"><start_location/><name/><year/><code/><note/><location/><meta><instanceID/></meta></data></instance><bind nodeset="/data/start_location" type="geopoint"/><odk:setgeopoint ref="/data/start_location" event="odk-instance-first-load"/><bind nodeset="/data/name" type="string" fieldtally:sensitive="yes" fieldtally:beneficiary="name"/><bind nodeset="/data/year" type="int" fieldtally:beneficiary="birth_year" fieldtally:sensitive="no"/><bind nodeset="/data/code" type="string" other:sensitive="yes"/><bind nodeset="/data/location" type="geopoint"/></model></h:head><h:body/></h:html>"#;
        let form = parse_form(xml).unwrap();
        let field = |path: &str| form.field(path).unwrap().clone();
        assert!(field("name").sensitive);
        assert_eq!(field("name").beneficiary.as_deref(), Some("name"));
        assert!(!field("year").sensitive);
        assert_eq!(field("year").beneficiary.as_deref(), Some("birth_year"));
        // Another namespace's attribute of the same name means nothing to fieldtally.
        assert!(!field("code").sensitive);
        assert_eq!(field("code").beneficiary, None);
        assert!(field("start_location").background);
        assert!(!field("location").background);
        assert!(!field("note").sensitive);
    }

    #[test]
    fn missing_id_is_an_error() {
        let xml = MINIMAL.replace(r#"id=" minimal ""#, "");
        let err = parse_form(xml.as_bytes()).unwrap_err();
        assert!(matches!(err, FormError::NoFormId), "{err}");
        assert_eq!(
            err.to_string(),
            "the primary instance root has no id attribute"
        );
        let xml = MINIMAL.replace(r#"id=" minimal ""#, r#"id="  ""#);
        assert!(matches!(
            parse_form(xml.as_bytes()).unwrap_err(),
            FormError::NoFormId
        ));
    }

    #[test]
    fn missing_instance_or_model_is_an_error() {
        let no_instance = br#"<h:html xmlns:h="http://www.w3.org/1999/xhtml"><h:head><model><bind nodeset="/a"/></model></h:head></h:html>"#;
        let err = parse_form(no_instance).unwrap_err();
        assert!(matches!(err, FormError::NoInstance), "{err}");
        assert_eq!(err.to_string(), "no <instance> in the form");

        let empty_instance = br#"<h:html xmlns:h="http://www.w3.org/1999/xhtml"><h:head><model><instance> </instance></model></h:head></h:html>"#;
        assert!(matches!(
            parse_form(empty_instance).unwrap_err(),
            FormError::NoInstanceRoot
        ));

        let submission = br#"<data id="x"><meta><instanceID>uuid:1</instanceID></meta></data>"#;
        assert!(matches!(
            parse_form(submission).unwrap_err(),
            FormError::NoModel
        ));
    }

    #[test]
    fn doctype_in_a_form_is_refused() {
        let xml = format!("<!DOCTYPE html [<!ENTITY t \"x\">]>{MINIMAL}");
        assert!(matches!(
            parse_form(xml.as_bytes()).unwrap_err(),
            FormError::Doctype
        ));
    }

    #[test]
    fn truncated_form_is_not_well_formed() {
        let cut = &HOUSEHOLD[..HOUSEHOLD.len() / 2];
        assert!(matches!(
            parse_form(cut.as_bytes()).unwrap_err(),
            FormError::NotWellFormed(_)
        ));
    }

    #[test]
    fn media_references_inside_expressions_and_odd_names() {
        let mut names = BTreeSet::new();
        add_media_references(
            "jr://images/a.png jr://images/ jr://images/.. x",
            &mut names,
        );
        add_media_references("concat('jr://audio/b.mp3', 'x')", &mut names);
        add_media_references("jr://instance/casedb jr://file/sub/c.xml", &mut names);
        add_media_references("jr://file-csv/d.csv;jr://video/e.mp4", &mut names);
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["a.png", "b.mp3", "c.xml", "d.csv", "e.mp4"]
        );
    }
}
