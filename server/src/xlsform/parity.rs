//! Where rxform 0.1.4 and pyxform 4.5.0 part ways, and how the server keeps to pyxform.
//!
//! Compared on the shipped Project 8 forms, the test workbooks and rxform's own pyxform examples,
//! rxform differs in these ways, each handled here:
//!
//! 1. **References inside repeats.** pyxform writes `${name}` as a path relative to the lowest
//!    repeat that the referring field and the target share (` ../name `, or ` current()/../name `
//!    in choice filters and secondary-instance predicates); rxform always writes the absolute
//!    path. [`relative_references`] rewrites those references in the model before rxform sees
//!    them (it copies plain text through), and [`relative_outputs`] does the same for
//!    `<output value=…>` in labels and hints, which rxform builds itself.
//! 2. **Order of `<itext>` entries.** pyxform lists each language's texts in the order it met
//!    them (choices, then per field: constraint message, required message, label, hint; then
//!    media-only labels; then "-" fillers for texts missing in that language) and the languages
//!    in the order they first appear; rxform uses one order for every language and puts the
//!    default language first. [`itext_order`] moves rxform's `<text>` and `<translation>`
//!    elements, byte ranges unchanged, into pyxform's order.
//! 3. **Untagged columns in translated forms.** pyxform files them under the default language;
//!    rxform makes a language called "default" of them ([`default_language_keys`]).
//! 4. Constructs whose pyxform output rxform does not reproduce and that are not corrected here
//!    — a repeat inside a repeat (pyxform adds a `jr:template` copy), a constraint or required
//!    message with a `${reference}` in a form without translations (pyxform routes it through
//!    itext), `indexed-repeat()` or a default or trigger that would need a relative reference,
//!    selects whose choices come from a `${repeat}` — are refused with the cell to blame,
//!    rather than served different from pyxform.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use rxform::model::{Item, Question, Section, SectionKind, Survey, Translated, DEFAULT_LANG};
use rxform::xls::Workbook;

use super::{detail, ConvertError};

const XFORMS_NS: &str = "http://www.w3.org/2002/xforms";

/// Refuses what pyxform would turn into something rxform does not write.
pub fn refuse_unsupported(survey: &Survey) -> Result<(), ConvertError> {
    fn walk(items: &[Item], in_repeat: bool) -> Result<(), ConvertError> {
        for item in items {
            match item {
                Item::Section(s) => {
                    if s.kind == SectionKind::Repeat && in_repeat {
                        return Err(ConvertError::unsupported(detail(
                            "survey",
                            Some(s.row),
                            Some("type"),
                            format!("repeat '{}' is inside another repeat", s.name),
                        )));
                    }
                    walk(&s.children, in_repeat || s.kind == SectionKind::Repeat)?;
                }
                Item::Question(q) => check_question(q)?,
            }
        }
        Ok(())
    }
    walk(&survey.items, false)
}

fn check_question(q: &Question) -> Result<(), ConvertError> {
    for (column, messages) in [
        ("constraint_message", &q.constraint_message),
        ("required_message", &q.required_message),
    ] {
        let untranslated = messages.keys().all(|lang| lang == DEFAULT_LANG);
        if untranslated && messages.values().any(|m| m.contains("${")) {
            return Err(ConvertError::unsupported(detail(
                "survey",
                Some(q.row),
                Some(column),
                "a message with a ${reference} in a form without translations",
            )));
        }
    }
    if let Some((_, list)) = &q.select {
        if list.trim_start().starts_with("${") {
            return Err(ConvertError::unsupported(detail(
                "survey",
                Some(q.row),
                Some("type"),
                "a select whose choices come from a ${repeat}",
            )));
        }
    }
    if q.qtype == "rank" && q.select.is_none() {
        return Err(ConvertError::invalid(detail(
            "survey",
            Some(q.row),
            Some("type"),
            "rank needs the name of its choice list, e.g. 'rank priorities'",
        )));
    }
    if let Some(px) = q.parameters.get("max-pixels") {
        if px.parse::<i64>().is_err() {
            return Err(ConvertError::invalid(detail(
                "survey",
                Some(q.row),
                Some("parameters"),
                "the max-pixels parameter must be a whole number",
            )));
        }
    }
    Ok(())
}

/// pyxform files text from untagged columns under the declared default language: always for
/// media, and for other columns when the same cell also has tagged translations. rxform keeps
/// them under a language of their own, "default", which would add a `<translation
/// lang="default">` pyxform does not write.
pub fn default_language_keys(survey: &mut Survey) {
    let Some(lang) = survey.settings.default_language.clone() else {
        return;
    };
    if lang == DEFAULT_LANG {
        return;
    }
    let rename = |map: &mut Translated, always: bool| {
        if (always || map.len() > 1) && !map.contains_key(&lang) {
            if let Some(text) = map.remove(DEFAULT_LANG) {
                map.insert(lang.clone(), text);
            }
        }
    };
    fn walk(items: &mut [Item], rename: &dyn Fn(&mut Translated, bool)) {
        for item in items {
            match item {
                Item::Question(q) => {
                    for map in [
                        &mut q.label,
                        &mut q.hint,
                        &mut q.guidance_hint,
                        &mut q.constraint_message,
                        &mut q.required_message,
                    ] {
                        rename(map, false);
                    }
                    for map in q.media.values_mut() {
                        rename(map, true);
                    }
                }
                Item::Section(s) => {
                    rename(&mut s.label, false);
                    walk(&mut s.children, rename);
                }
            }
        }
    }
    walk(&mut survey.items, &rename);
    for list in &mut survey.choice_lists {
        for choice in &mut list.choices {
            rename(&mut choice.label, false);
            for map in choice.media.values_mut() {
                rename(map, true);
            }
        }
    }
}

// ----------------------------------------------------------------------------------------------
// The form tree as pyxform sees it, for relative paths
// ----------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Field,
    Group,
    Repeat,
}

struct Node {
    name: String,
    kind: Kind,
    parent: Option<usize>,
}

struct Tree {
    nodes: Vec<Node>,
    by_name: HashMap<String, Vec<usize>>,
    by_xpath: HashMap<String, usize>,
}

impl Tree {
    fn new(survey: &Survey) -> Tree {
        fn add(tree: &mut Tree, items: &[Item], parent: Option<usize>, prefix: &str) {
            for item in items {
                let (name, kind, children) = match item {
                    Item::Question(q) => (q.name.clone(), Kind::Field, None),
                    Item::Section(s) => (
                        s.name.clone(),
                        if s.kind == SectionKind::Repeat {
                            Kind::Repeat
                        } else {
                            Kind::Group
                        },
                        Some(s),
                    ),
                };
                let xpath = match children {
                    Some(s) => Survey::child_prefix(s, prefix),
                    None => format!("{prefix}/{name}"),
                };
                let id = tree.nodes.len();
                tree.nodes.push(Node {
                    name: name.clone(),
                    kind,
                    parent,
                });
                tree.by_name.entry(name).or_default().push(id);
                tree.by_xpath.insert(xpath.clone(), id);
                if let Some(s) = children {
                    add(tree, &s.children, Some(id), &xpath);
                }
            }
        }
        let mut tree = Tree {
            nodes: Vec::new(),
            by_name: HashMap::new(),
            by_xpath: HashMap::new(),
        };
        add(&mut tree, &survey.items, None, &format!("/{}", survey.name));
        tree
    }

    fn named(&self, name: &str) -> Option<usize> {
        match self.by_name.get(name).map(Vec::as_slice) {
            Some([one]) => Some(*one),
            _ => None,
        }
    }

    /// Ancestors of `node` from its parent upwards, with their distance (parent = 1).
    fn ancestors(&self, node: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut current = self.nodes[node].parent;
        let mut distance = 1;
        while let Some(a) = current {
            out.push((a, distance));
            distance += 1;
            current = self.nodes[a].parent;
        }
        out
    }

    /// pyxform's `_relative_path`: when `source` and `target` share a repeat, the number of
    /// steps from `source` up to their lowest common group or repeat, and the path from there
    /// down to `target`.
    fn relative(&self, source: usize, target: usize) -> Option<(usize, String)> {
        let source_up = self.ancestors(source);
        let target_up: HashSet<usize> =
            self.ancestors(target).into_iter().map(|(a, _)| a).collect();
        let shared = |(a, _): &&(usize, usize)| target_up.contains(a);
        source_up
            .iter()
            .filter(shared)
            .find(|(a, _)| self.nodes[*a].kind == Kind::Repeat)?;
        let &(lca, steps) = source_up
            .iter()
            .filter(shared)
            .find(|(a, _)| self.nodes[*a].kind != Kind::Field)?;
        let mut path = Vec::new();
        let mut current = Some(target);
        while let Some(n) = current {
            if n == lca {
                break;
            }
            path.push(self.nodes[n].name.as_str());
            current = self.nodes[n].parent;
        }
        path.reverse();
        Some((steps, format!("/{}", path.join("/"))))
    }
}

fn relative_text(steps: usize, path: &str, use_current: bool) -> String {
    let prefix = if use_current { " current()/" } else { " " };
    format!("{prefix}{}{path} ", vec![".."; steps].join("/"))
}

/// `${…}` references in an expression: (byte range of the whole reference, name).
fn references(expr: &str) -> Vec<(Range<usize>, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = expr[from..].find("${").map(|i| from + i) {
        let Some(end) = expr[start..].find('}').map(|i| start + i + 1) else {
            break;
        };
        out.push((start..end, expr[start + 2..end - 1].trim().to_string()));
        from = end;
    }
    out
}

/// pyxform's `_in_secondary_instance_predicate`: the expression reads a secondary instance and
/// the reference sits inside a `[…]` predicate, where `current()` is needed.
fn in_instance_predicate(expr: &str, at: &Range<usize>) -> bool {
    let reads_instance = expr.find("instance(").is_some_and(|i| {
        let rest = &expr[i + "instance(".len()..];
        rest.chars().next().is_some_and(|c| c != ')') && rest.chars().count() >= 2
    });
    if !reads_instance {
        return false;
    }
    let mut from = 0;
    while let Some(open) = expr[from..].find('[').map(|i| from + i) {
        let Some(close) = expr[open + 1..].find(']').map(|i| open + 1 + i) else {
            return false;
        };
        if close > open + 1 && at.start >= open && at.end <= close + 1 {
            return true;
        }
        from = close + 1;
    }
    false
}

/// Why a reference could not be written as pyxform would.
struct Refused(&'static str);

/// Rewrites the references in `expr` that pyxform makes relative to `context`; references that
/// stay absolute are left for rxform to expand.
fn rewrite(
    tree: &Tree,
    context: usize,
    expr: &str,
    use_current: bool,
) -> Result<Option<String>, Refused> {
    let mut out = String::new();
    let mut last = 0;
    let mut changed = false;
    for (range, name) in references(expr) {
        if name.starts_with("last-saved#") {
            continue;
        }
        let Some(target) = tree.named(&name) else {
            continue;
        };
        let Some((steps, path)) = tree.relative(context, target) else {
            continue;
        };
        if expr.contains("indexed-repeat(") {
            return Err(Refused(
                "indexed-repeat() beside a reference within the same repeat",
            ));
        }
        let current = use_current || in_instance_predicate(expr, &range);
        out.push_str(&expr[last..range.start]);
        out.push_str(&relative_text(steps, &path, current));
        last = range.end;
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    out.push_str(&expr[last..]);
    Ok(Some(out))
}

/// Writes pyxform's relative paths into the expressions of fields inside repeats.
pub fn relative_references(survey: &mut Survey) -> Result<(), ConvertError> {
    let tree = Tree::new(survey);
    let flat = survey.settings.flat;
    let mut next = 0;
    rewrite_items(&tree, &mut survey.items, &mut next, flat)
}

fn rewrite_field(
    tree: &Tree,
    id: usize,
    value: &mut Option<String>,
    use_current: bool,
    row: usize,
    column: &str,
    flat: bool,
) -> Result<bool, ConvertError> {
    let Some(expr) = value.as_deref() else {
        return Ok(false);
    };
    let refuse = |why: &str| {
        ConvertError::unsupported(detail("survey", Some(row), Some(column), why.to_string()))
    };
    match rewrite(tree, id, expr, use_current) {
        Ok(Some(_)) if flat => Err(refuse("a reference within a repeat in a flat form")),
        Ok(Some(new)) => {
            *value = Some(new);
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(Refused(why)) => Err(refuse(why)),
    }
}

fn rewrite_items(
    tree: &Tree,
    items: &mut [Item],
    next: &mut usize,
    flat: bool,
) -> Result<(), ConvertError> {
    for item in items {
        let id = *next;
        *next += 1;
        match item {
            Item::Section(s) => {
                rewrite_section(tree, id, s, flat)?;
                rewrite_items(tree, &mut s.children, next, flat)?;
            }
            Item::Question(q) => rewrite_question(tree, id, q, flat)?,
        }
    }
    Ok(())
}

fn rewrite_section(
    tree: &Tree,
    id: usize,
    s: &mut Section,
    flat: bool,
) -> Result<(), ConvertError> {
    rewrite_field(tree, id, &mut s.relevant, false, s.row, "relevant", flat)?;
    if rewrite(tree, id, s.count.as_deref().unwrap_or_default(), false)
        .map_or(true, |r| r.is_some())
    {
        return Err(ConvertError::unsupported(detail(
            "survey",
            Some(s.row),
            Some("repeat_count"),
            "a repeat_count that refers to a field of an enclosing repeat",
        )));
    }
    Ok(())
}

fn rewrite_question(
    tree: &Tree,
    id: usize,
    q: &mut Question,
    flat: bool,
) -> Result<(), ConvertError> {
    let row = q.row;
    let mut uses_relative = false;
    for (value, column, current) in [
        (&mut q.relevant, "relevant", false),
        (&mut q.constraint, "constraint", false),
        (&mut q.calculation, "calculation", false),
        (&mut q.required, "required", false),
        (&mut q.readonly, "read_only", false),
        (&mut q.choice_filter, "choice_filter", true),
    ] {
        uses_relative |= rewrite_field(tree, id, value, current, row, column, flat)?;
    }
    for (key, value) in q.bind_extra.iter_mut() {
        if key == "entities:saveto" {
            continue;
        }
        let mut v = Some(value.clone());
        if rewrite_field(tree, id, &mut v, false, row, key, flat)? {
            *value = v.unwrap_or_default();
        }
    }
    let refuse = |column: &str, why: &str| {
        Err(ConvertError::unsupported(detail(
            "survey",
            Some(row),
            Some(column),
            why.to_string(),
        )))
    };
    if uses_relative && q.trigger.is_some() {
        return refuse(
            "trigger",
            "a triggered calculation with a reference within the same repeat",
        );
    }
    if let Some(default) = &q.default {
        if rewrite(tree, id, default, false).map_or(true, |r| r.is_some()) {
            return refuse(
                "default",
                "a default with a reference within the same repeat",
            );
        }
    }
    let attrs = q
        .parameters
        .values()
        .chain(q.body_attrs.iter().map(|(_, v)| v))
        .chain(q.instance_attrs.iter().map(|(_, v)| v));
    for value in attrs {
        if rewrite(tree, id, value, false).map_or(true, |r| r.is_some()) {
            return refuse(
                "parameters",
                "a parameter or attribute with a reference within the same repeat",
            );
        }
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// The generated XML
// ----------------------------------------------------------------------------------------------

fn parse(xml: &str) -> Result<roxmltree::Document<'_>, ConvertError> {
    roxmltree::Document::parse(xml)
        .map_err(|e| internal(format!("the generated XForm does not parse: {e}")))
}

fn internal(message: String) -> ConvertError {
    ConvertError::unsupported(super::Detail {
        sheet: None,
        row: None,
        column: None,
        message,
    })
}

fn splice(xml: &str, mut edits: Vec<(Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = xml.to_string();
    for (range, text) in edits {
        out.replace_range(range, &text);
    }
    out
}

/// Makes `<output value=…>` in labels, hints and messages relative where pyxform does: the
/// field the text belongs to is the context (an itext id `/data/r/q:label`, or the body control
/// around an inline label); choice labels have none.
pub fn relative_outputs(xml: &str, survey: &Survey) -> Result<String, ConvertError> {
    let tree = Tree::new(survey);
    let doc = parse(xml)?;
    let mut edits = Vec::new();
    for output in doc
        .descendants()
        .filter(|n| n.has_tag_name((XFORMS_NS, "output")))
    {
        let Some(attr) = output.attributes().find(|a| a.name() == "value") else {
            continue;
        };
        let Some(&target) = tree.by_xpath.get(attr.value().trim()) else {
            continue;
        };
        let context = output.ancestors().find_map(|a| {
            if a.has_tag_name((XFORMS_NS, "text")) {
                return Some(
                    a.attribute("id")
                        .and_then(|id| id.split_once(':'))
                        .map(|(p, _)| p),
                );
            }
            a.attribute("ref")
                .or_else(|| a.attribute("nodeset"))
                .map(Some)
        });
        let Some(&context) = context.flatten().and_then(|c| tree.by_xpath.get(c)) else {
            continue;
        };
        if let Some((steps, path)) = tree.relative(context, target) {
            if survey.settings.flat {
                return Err(internal(
                    "a label refers to a field within a repeat in a flat form".into(),
                ));
            }
            edits.push((attr.range_value(), relative_text(steps, &path, false)));
        }
    }
    Ok(splice(xml, edits))
}

/// Where a text id first appears in pyxform's walk, for ordering languages: (phase, item,
/// key within the item, column of the language in the sheet).
type Position = (u8, usize, u8, usize);

struct Texts<'a> {
    default_language: String,
    survey: &'a Survey,
    survey_columns: Vec<(String, Option<String>)>,
    choice_columns: Vec<(String, Option<String>)>,
}

impl Texts<'_> {
    fn tr<'m>(&self, map: &'m Translated, lang: &str) -> Option<&'m String> {
        map.get(lang).or_else(|| {
            if lang == self.default_language {
                map.get(DEFAULT_LANG)
            } else {
                None
            }
        })
    }

    /// The sheet column holding `base` in `lang` (an untagged column counts for the default).
    fn column(&self, choices: bool, bases: &[&str], lang: &str) -> usize {
        let columns = if choices {
            &self.choice_columns
        } else {
            &self.survey_columns
        };
        columns
            .iter()
            .position(|(b, l)| {
                bases.contains(&b.as_str())
                    && match l {
                        Some(l) => l == lang,
                        None => lang == self.default_language || lang == DEFAULT_LANG,
                    }
            })
            .unwrap_or(usize::MAX)
    }
}

/// A sheet header as (base column, language): `label::English (en)`, `media::image::fr`,
/// the legacy `label:English`, or an untagged `label`.
fn header(raw: &str) -> (String, Option<String>) {
    const TRANSLATABLE: [&str; 10] = [
        "label",
        "hint",
        "guidance_hint",
        "constraint_message",
        "constraining_message",
        "required_message",
        "image",
        "big-image",
        "audio",
        "video",
    ];
    let mut parts: Vec<&str> = raw.trim().split("::").map(str::trim).collect();
    if parts.len() > 1 && parts[0].eq_ignore_ascii_case("media") {
        parts.remove(0);
    }
    let base = parts[0].to_lowercase();
    if parts.len() > 1 {
        return (base, Some(parts[1..].join("::")));
    }
    if let Some((b, lang)) = parts[0].split_once(':') {
        let b = b.trim().to_lowercase();
        if TRANSLATABLE.contains(&b.as_str()) && !lang.trim().is_empty() {
            return (b, Some(lang.trim().to_string()));
        }
    }
    let base = match base.as_str() {
        "caption" => "label".to_string(),
        "constraining_message" => "constraint_message".to_string(),
        _ => base,
    };
    (base, None)
}

struct Element<'a> {
    xpath: String,
    label: &'a Translated,
    hint: Option<&'a Translated>,
    guidance: Option<&'a Translated>,
    media: Option<&'a BTreeMap<String, Translated>>,
    constraint_message: Option<&'a Translated>,
    required_message: Option<&'a Translated>,
}

fn elements<'a>(items: &'a [Item], prefix: &str, out: &mut Vec<Element<'a>>) {
    for item in items {
        match item {
            Item::Question(q) => out.push(Element {
                xpath: format!("{prefix}/{}", q.name),
                label: &q.label,
                hint: Some(&q.hint),
                guidance: Some(&q.guidance_hint),
                media: Some(&q.media),
                constraint_message: Some(&q.constraint_message),
                required_message: Some(&q.required_message),
            }),
            Item::Section(s) => {
                let xpath = Survey::child_prefix(s, prefix);
                out.push(Element {
                    xpath: xpath.clone(),
                    label: &s.label,
                    hint: None,
                    guidance: None,
                    media: None,
                    constraint_message: None,
                    required_message: None,
                });
                elements(&s.children, &xpath, out);
            }
        }
    }
}

const MEDIA: [&str; 4] = ["image", "big-image", "audio", "video"];

/// The texts of one language in pyxform's order (before "-" fillers), and where the language
/// first appears.
fn own_texts(texts: &Texts<'_>, lang: &str, ids: &HashSet<&str>) -> (Vec<String>, Position) {
    let survey = texts.survey;
    let mut own = Vec::new();
    let mut first: Position = (u8::MAX, usize::MAX, u8::MAX, usize::MAX);
    let seen = |pos: Position, first: &mut Position| {
        if pos < *first {
            *first = pos;
        }
    };
    let mut item = 0;
    for list in survey.choice_lists.iter().filter(|l| l.needs_itext()) {
        for (i, choice) in list.choices.iter().enumerate() {
            item += 1;
            let labelled = texts.tr(&choice.label, lang).is_some();
            let media = choice.media.values().any(|m| texts.tr(m, lang).is_some());
            if labelled {
                seen(
                    (0, item, 0, texts.column(true, &["label"], lang)),
                    &mut first,
                );
            }
            if media {
                seen((0, item, 1, texts.column(true, &MEDIA, lang)), &mut first);
            }
            if labelled || media {
                own.push(format!("{}-{i}", list.name));
            }
        }
    }
    let mut all = Vec::new();
    elements(&survey.items, &format!("/{}", survey.name), &mut all);
    let empty = Translated::new();
    let mut media_only = Vec::new();
    for (index, e) in all.iter().enumerate() {
        let hint_or_guidance = |lang: &str| {
            texts.tr(e.hint.unwrap_or(&empty), lang).is_some()
                || texts.tr(e.guidance.unwrap_or(&empty), lang).is_some()
        };
        let keys: [(&str, u8, bool, &[&str]); 4] = [
            (
                "jr:constraintMsg",
                0,
                texts
                    .tr(e.constraint_message.unwrap_or(&empty), lang)
                    .is_some(),
                &["constraint_message"],
            ),
            (
                "jr:requiredMsg",
                1,
                texts
                    .tr(e.required_message.unwrap_or(&empty), lang)
                    .is_some(),
                &["required_message"],
            ),
            ("label", 2, texts.tr(e.label, lang).is_some(), &["label"]),
            (
                "hint",
                3,
                hint_or_guidance(lang),
                &["hint", "guidance_hint"],
            ),
        ];
        for (key, rank, present, columns) in keys {
            let id = format!("{}:{key}", e.xpath);
            if present && ids.contains(id.as_str()) {
                seen(
                    (1, index, rank, texts.column(false, columns, lang)),
                    &mut first,
                );
                own.push(id);
            }
        }
        let label_id = format!("{}:label", e.xpath);
        let media = e
            .media
            .is_some_and(|m| m.values().any(|m| texts.tr(m, lang).is_some()));
        if media && ids.contains(label_id.as_str()) && !own.contains(&label_id) {
            seen((2, index, 0, texts.column(false, &MEDIA, lang)), &mut first);
            media_only.push(label_id);
        }
    }
    own.extend(media_only);
    (own, first)
}

/// An element's child elements with a given name (in the XForms namespace).
fn children<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    node.children()
        .filter(|c| c.has_tag_name((XFORMS_NS, name)))
        .collect()
}

/// Rebuilds the span from the first to the last of `parts` with the parts in `order`, keeping
/// whatever separated them (whitespace, if any) in place.
fn permute(xml: &str, parts: &[Range<usize>], order: &[String]) -> String {
    let mut out = String::new();
    for (i, text) in order.iter().enumerate() {
        out.push_str(text);
        if let (Some(a), Some(b)) = (parts.get(i), parts.get(i + 1)) {
            out.push_str(&xml[a.end..b.start]);
        }
    }
    out
}

/// Puts `<itext>` into pyxform's order: languages by first appearance, each language's texts
/// as pyxform inserts them. Only the order changes: every `<text>` keeps its bytes.
pub fn itext_order(
    xml: &str,
    survey: &Survey,
    workbook: &Workbook,
) -> Result<String, ConvertError> {
    let doc = parse(xml)?;
    let Some(itext) = doc
        .descendants()
        .find(|n| n.has_tag_name((XFORMS_NS, "itext")))
    else {
        return Ok(xml.to_string());
    };
    let texts = Texts {
        default_language: survey
            .settings
            .default_language
            .clone()
            .unwrap_or_else(|| DEFAULT_LANG.to_string()),
        survey,
        survey_columns: workbook.survey.headers.iter().map(|h| header(h)).collect(),
        choice_columns: workbook.choices.headers.iter().map(|h| header(h)).collect(),
    };
    let translations = children(itext, "translation");
    let mut blocks = Vec::new();
    for t in &translations {
        let lang = t.attribute("lang").unwrap_or_default();
        let entries: Vec<(String, Range<usize>)> = children(*t, "text")
            .iter()
            .map(|e| (e.attribute("id").unwrap_or_default().to_string(), e.range()))
            .collect();
        let ids: HashSet<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
        let (own, first) = own_texts(&texts, lang, &ids);
        blocks.push((lang.to_string(), t.range(), entries, own, first));
    }
    // Languages in the order pyxform first meets them.
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by(|&a, &b| (blocks[a].4, &blocks[a].0).cmp(&(blocks[b].4, &blocks[b].0)));
    // Every text id, in the order first seen across the languages: the fillers' order.
    let mut paths: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for &i in &order {
        for id in &blocks[i].3 {
            if seen.insert(id.clone()) {
                paths.push(id.clone());
            }
        }
    }
    let mut rebuilt = Vec::new();
    for (lang, range, entries, own, _) in &blocks {
        let own_set: HashSet<&String> = own.iter().collect();
        let wanted: Vec<&String> = own
            .iter()
            .chain(paths.iter().filter(|p| !own_set.contains(p)))
            .collect();
        let by_id: HashMap<&str, &Range<usize>> =
            entries.iter().map(|(id, r)| (id.as_str(), r)).collect();
        if wanted.len() != entries.len() || wanted.iter().any(|id| !by_id.contains_key(id.as_str()))
        {
            return Err(internal(format!(
                "the translations of language '{lang}' could not be put in pyxform's order"
            )));
        }
        let parts: Vec<Range<usize>> = entries.iter().map(|(_, r)| r.clone()).collect();
        let texts: Vec<String> = wanted
            .iter()
            .map(|id| xml[by_id[id.as_str()].clone()].to_string())
            .collect();
        let body = permute(xml, &parts, &texts);
        let mut block = xml[range.clone()].to_string();
        if let (Some(first), Some(last)) = (parts.first(), parts.last()) {
            block.replace_range(first.start - range.start..last.end - range.start, &body);
        }
        rebuilt.push(block);
    }
    let parts: Vec<Range<usize>> = blocks.iter().map(|b| b.1.clone()).collect();
    let ordered: Vec<String> = order.iter().map(|&i| rebuilt[i].clone()).collect();
    let body = permute(xml, &parts, &ordered);
    match (parts.first(), parts.last()) {
        (Some(first), Some(last)) => Ok(splice(xml, vec![(first.start..last.end, body)])),
        _ => Ok(xml.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::convert;
    use super::super::tests::{workbook, xml_of};

    #[test]
    fn references_within_a_repeat_are_relative_as_in_pyxform() {
        let xml = xml_of(&workbook(
            &[
                &[
                    "type",
                    "name",
                    "label",
                    "relevant",
                    "calculation",
                    "choice_filter",
                ],
                &["integer", "outside", "Outside", "", "", ""],
                &["begin repeat", "r", "R", "", "", ""],
                &["select_one d", "d", "D", "", "", ""],
                &["select_one c", "c", "C of ${d}", "", "", "dist=${d}"],
                &["begin group", "g", "G", "${d} != ''", "", ""],
                &["integer", "a", "A", "${outside} > 1", "", ""],
                &[
                    "calculate",
                    "l",
                    "",
                    "",
                    "instance('d')/root/item[name=${d}]/label",
                    "",
                ],
                &["calculate", "s", "", "", "${a} + ${l}", ""],
                &["end group", "", "", "", "", ""],
                &["end repeat", "", "", "", "", ""],
                &["calculate", "total", "", "", "sum(${a})", ""],
            ],
            &[
                &["list_name", "name", "label", "dist"],
                &["d", "x", "X", ""],
                &["c", "y", "Y", "x"],
            ],
            &[&["form_id"], &["f"]],
        ));
        for expected in [
            r#"nodeset="/data/r/g" relevant=" ../d  != ''""#,
            r#"relevant=" /data/outside  &gt; 1""#,
            r#"calculate="instance('d')/root/item[name= current()/../../d ]/label""#,
            r#"calculate=" ../a  +  ../l ""#,
            r#"calculate="sum( /data/r/g/a )""#,
            r#"nodeset="instance('c')/root/item[dist= current()/../d ]""#,
            r#"C of <output value=" ../d "/>"#,
        ] {
            assert!(xml.contains(expected), "missing {expected} in {xml}");
        }
    }

    #[test]
    fn itext_follows_pyxform_order() {
        let xml = xml_of(&workbook(
            &[
                &[
                    "type",
                    "name",
                    "label::English (en)",
                    "label::Tiếng Việt (vi)",
                    "constraint",
                    "constraint_message::English (en)",
                    "constraint_message::Tiếng Việt (vi)",
                    "hint::English (en)",
                ],
                &[
                    "integer", "a", "A", "A vi", ". > 0", "positive", "dương", "hint a",
                ],
                &["integer", "b", "B", "", "", "", "", ""],
            ],
            &[],
            &[&["form_id", "default_language"], &["f", "Tiếng Việt (vi)"]],
        ));
        let en = xml.find(r#"lang="English (en)""#).expect("en");
        let vi = xml.find(r#"lang="Tiếng Việt (vi)""#).expect("vi");
        assert!(en < vi, "English columns come first in the sheet");
        let pos = |s: &str, from: usize| xml[from..].find(s).map(|i| i + from).expect(s);
        // English: a's constraint message, label, hint, then b's label.
        let ids = [
            "/data/a:jr:constraintMsg",
            "/data/a:label",
            "/data/a:hint",
            "/data/b:label",
        ];
        let en_pos: Vec<usize> = ids
            .iter()
            .map(|id| pos(&format!("id=\"{id}\""), en))
            .collect();
        assert!(en_pos.windows(2).all(|w| w[0] < w[1]), "{xml}");
        // Vietnamese has no hint and no label for b: those "-" fillers go last.
        let vi_ids = [
            "/data/a:jr:constraintMsg",
            "/data/a:label",
            "/data/a:hint",
            "/data/b:label",
        ];
        let vi_pos: Vec<usize> = vi_ids
            .iter()
            .map(|id| pos(&format!("id=\"{id}\""), vi))
            .collect();
        assert!(vi_pos.windows(2).all(|w| w[0] < w[1]), "{xml}");
    }

    #[test]
    fn constructs_rxform_writes_differently_are_refused_with_their_cell() {
        let cases: &[(&[&[&str]], usize, &str)] = &[
            (
                &[
                    &["type", "name", "label"],
                    &["begin repeat", "r", "R"],
                    &["begin repeat", "r2", "R2"],
                    &["text", "t", "T"],
                    &["end repeat", "", ""],
                    &["end repeat", "", ""],
                ],
                3,
                "type",
            ),
            (
                &[
                    &["type", "name", "label", "constraint", "constraint_message"],
                    &["integer", "x", "X", "", ""],
                    &["integer", "y", "Y", ". < ${x}", "less than ${x}"],
                ],
                3,
                "constraint_message",
            ),
            (
                &[
                    &["type", "name", "label", "calculation"],
                    &["begin repeat", "r", "R", ""],
                    &["text", "t", "T", ""],
                    &[
                        "calculate",
                        "c",
                        "",
                        "concat(${t}, indexed-repeat(${t}, ${r}, 1))",
                    ],
                    &["end repeat", "", "", ""],
                ],
                4,
                "calculation",
            ),
            (
                &[
                    &["type", "name", "label", "default"],
                    &["begin repeat", "r", "R", ""],
                    &["integer", "a", "A", ""],
                    &["integer", "b", "B", "${a}"],
                    &["end repeat", "", "", ""],
                ],
                4,
                "default",
            ),
        ];
        for (survey, row, column) in cases {
            let e = convert(&workbook(survey, &[], &[&["form_id"], &["f"]]), None, 1)
                .expect_err("refused");
            assert_eq!(e.code, "xlsform_unsupported", "{survey:?}");
            assert_eq!(e.details[0].row, Some(*row), "{survey:?}");
            assert_eq!(e.details[0].column.as_deref(), Some(*column), "{survey:?}");
        }
    }
}
