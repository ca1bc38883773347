//! The columns of an export: one table for the submissions and one per repeat group, each with
//! the union of the fields of every version of the form, in form order, headed by the form's
//! labels in the chosen language.

use fieldtally_forms::{FieldKind, FormDef, FormLabels};

/// A language for headers: the form's labels in it, or the field paths when none is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Vi,
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "vi" => Some(Lang::Vi),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Vi => "vi",
            Lang::En => "en",
        }
    }
}

/// Columns every submissions row starts with (after `KEY`), with their headers.
pub const META: [(&str, &str, &str); 7] = [
    ("SubmissionDate", "Ngày nhận", "Submission date"),
    ("form_version", "Phiên bản biểu mẫu", "Form version"),
    ("collector", "Người thu thập", "Collector"),
    ("review_state", "Trạng thái duyệt", "Review state"),
    ("hamlet_code", "Mã thôn/bản", "Hamlet code"),
    ("activity_date", "Ngày hoạt động", "Activity date"),
    ("instance_id", "Mã phiên bản bản ghi", "Version instance ID"),
];

/// One field's column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The field's path in the form (as `FieldDef::path`).
    pub path: String,
    /// The key of its value in a row object of its table (the path relative to the table).
    pub key: String,
    pub header: String,
    pub sensitive: bool,
    pub numeric: bool,
}

/// The submissions table (path `""`) or a repeat group's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub path: String,
    /// The file or sheet name: the form id, or the form id and the repeat's path.
    pub name: String,
    /// Index of the enclosing table; `None` for the submissions table.
    pub parent: Option<usize>,
    /// Where this repeat's items are in a row object of the parent table.
    pub key_in_parent: String,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub tables: Vec<Table>,
    /// Paths of the geopoint fields outside repeats, in form order.
    pub geopoints: Vec<String>,
    pub lang: Option<Lang>,
}

fn table_of<'a>(repeats: &'a [String], path: &str) -> &'a str {
    repeats
        .iter()
        .filter(|r| path.starts_with(&format!("{r}/")))
        .max_by_key(|r| r.len())
        .map(String::as_str)
        .unwrap_or("")
}

fn relative(path: &str, table: &str) -> String {
    if table.is_empty() {
        path.to_string()
    } else {
        path.strip_prefix(&format!("{table}/"))
            .unwrap_or(path)
            .to_string()
    }
}

/// Inserts `items` into `order` keeping each version's order: an item not seen before goes
/// right after the item that precedes it in its version.
fn merge_order(order: &mut Vec<String>, items: &[String]) {
    let mut previous: Option<usize> = None;
    for item in items {
        match order.iter().position(|o| o == item) {
            Some(i) => previous = Some(i),
            None => {
                let at = previous.map(|p| p + 1).unwrap_or(0);
                order.insert(at, item.clone());
                previous = Some(at);
            }
        }
    }
}

/// The layout for a form's versions (oldest first) and their labels.
pub fn build(form_id: &str, versions: &[(FormDef, FormLabels)], lang: Option<Lang>) -> Layout {
    let mut repeats: Vec<String> = Vec::new();
    for (def, _) in versions {
        merge_order(&mut repeats, &def.repeats);
    }
    let mut tables: Vec<Table> = std::iter::once(String::new())
        .chain(repeats.iter().cloned())
        .map(|path| {
            let parent_path = table_of(&repeats, &path);
            Table {
                name: if path.is_empty() {
                    form_id.to_string()
                } else {
                    format!("{form_id}-{}", path.replace('/', "-"))
                },
                parent: None,
                key_in_parent: relative(&path, parent_path),
                path,
                columns: Vec::new(),
            }
        })
        .collect();
    for i in 1..tables.len() {
        let parent_path = table_of(&repeats, &tables[i].path).to_string();
        tables[i].parent = tables.iter().position(|t| t.path == parent_path);
    }
    let mut geopoints: Vec<String> = Vec::new();
    for table in tables.iter_mut() {
        let mut order: Vec<String> = Vec::new();
        for (def, _) in versions {
            let fields: Vec<String> = def
                .fields
                .iter()
                .filter(|f| table_of(&repeats, &f.path) == table.path)
                .map(|f| f.path.clone())
                .collect();
            merge_order(&mut order, &fields);
        }
        table.columns = order
            .into_iter()
            .map(|path| {
                // The newest version that has the field says what it is and how it is labelled.
                let newest = versions
                    .iter()
                    .rev()
                    .find_map(|(d, l)| Some((d.field(&path)?, l)));
                let (sensitive, kind) = newest
                    .map(|(f, _)| (f.sensitive, f.kind.clone()))
                    .unwrap_or((false, FieldKind::Text));
                let label = lang.and_then(|lang| {
                    versions
                        .iter()
                        .rev()
                        .find_map(|(_, l)| l.label(&path, lang.code()).map(str::to_string))
                });
                if kind == FieldKind::Geopoint && table.path.is_empty() {
                    geopoints.push(path.clone());
                }
                Column {
                    key: relative(&path, &table.path),
                    header: label.unwrap_or_else(|| path.clone()),
                    sensitive,
                    numeric: matches!(kind, FieldKind::Int | FieldKind::Decimal),
                    path,
                }
            })
            .collect();
    }
    Layout {
        tables,
        geopoints,
        lang,
    }
}

impl Layout {
    /// The header row of a table: keys first, then (for submissions) the metadata, then fields.
    pub fn headers(&self, table: usize) -> Vec<String> {
        let t = &self.tables[table];
        let mut out = Vec::new();
        if t.parent.is_some() {
            out.push("PARENT_KEY".to_string());
        }
        out.push("KEY".to_string());
        if t.parent.is_none() {
            for (name, vi, en) in META {
                out.push(
                    match self.lang {
                        None => name,
                        Some(Lang::Vi) => vi,
                        Some(Lang::En) => en,
                    }
                    .to_string(),
                );
            }
        }
        out.extend(t.columns.iter().map(|c| c.header.clone()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(version: &str, body: &str, binds: &str) -> (FormDef, FormLabels) {
        let xml = format!(
            r#"<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:jr="http://openrosa.org/javarosa"><h:head><h:title>t</h:title><model><itext><translation lang="Vietnamese (vi)"><text id="a"><value>Câu A</value></text></translation><translation lang="English (en)"><text id="a"><value>Question A</value></text></translation></itext><instance><data id="f" version="{version}">{body}<meta><instanceID/></meta></data></instance>{binds}</model></h:head><h:body><input ref="/data/a"><label ref="jr:itext('a')"/></input></h:body></h:html>"#
        );
        (
            fieldtally_forms::parse_form(xml.as_bytes()).expect("form"),
            fieldtally_forms::parse_labels(xml.as_bytes()).expect("labels"),
        )
    }

    #[test]
    fn columns_are_the_union_of_versions_in_form_order() {
        let v1 = form(
            "1",
            "<a/><c/><kids jr:template=\"\"><name/></kids>",
            r#"<bind nodeset="/data/a" type="int"/>"#,
        );
        let v2 = form(
            "2",
            "<a/><b/><c/><kids jr:template=\"\"><name/><age/></kids><loc/>",
            r#"<bind nodeset="/data/loc" type="geopoint"/>"#,
        );
        let layout = build("f", &[v1, v2], Some(Lang::Vi));
        let root: Vec<&str> = layout.tables[0]
            .columns
            .iter()
            .map(|c| c.path.as_str())
            .collect();
        assert_eq!(root, ["a", "b", "c", "loc", "meta/instanceID"]);
        assert_eq!(layout.tables[0].columns[0].header, "Câu A");
        assert_eq!(layout.tables[1].name, "f-kids");
        assert_eq!(layout.tables[1].parent, Some(0));
        let kids: Vec<&str> = layout.tables[1]
            .columns
            .iter()
            .map(|c| c.key.as_str())
            .collect();
        assert_eq!(kids, ["name", "age"]);
        assert_eq!(layout.geopoints, ["loc"]);
        assert_eq!(layout.headers(1)[..2], ["PARENT_KEY", "KEY"]);
        assert_eq!(layout.headers(0)[1], "Ngày nhận");
    }

    #[test]
    fn merge_keeps_relative_order() {
        let mut order = vec!["a".to_string(), "c".to_string()];
        merge_order(
            &mut order,
            &["x".into(), "a".into(), "b".into(), "c".into()],
        );
        assert_eq!(order, ["x", "a", "b", "c"]);
    }
}
