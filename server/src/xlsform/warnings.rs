//! Advice pyxform gives on forms it converts anyway, located like errors so the designer can
//! find the cell: photos without `max-pixels`, choices without a label, names that differ only
//! in case, groups without a label, languages without a code, translations left out.

use std::collections::{BTreeMap, BTreeSet};

use rxform::model::{Item, Survey, DEFAULT_LANG};
use rxform::xls::{Sheet, Workbook};

use super::detail;
use crate::error::Detail;

pub fn collect(survey: &Survey, workbook: &Workbook) -> Vec<Detail> {
    let mut out = Vec::new();
    walk(&survey.items, &mut out);
    for list in &survey.choice_lists {
        for choice in &list.choices {
            if choice.row > 0 && choice.label.is_empty() && choice.media.is_empty() {
                out.push(detail(
                    "choices",
                    Some(choice.row),
                    Some("label"),
                    format!(
                        "choice '{}' of list '{}' has no label; phones will show its name",
                        choice.name, list.name
                    ),
                ));
            }
        }
    }
    let languages = survey.languages();
    let bad: Vec<&str> = languages
        .iter()
        .map(String::as_str)
        .filter(|l| *l != DEFAULT_LANG && !has_language_code(l))
        .collect();
    if !bad.is_empty() {
        out.push(Detail {
            sheet: None,
            row: None,
            column: None,
            message: format!(
                "these languages have no machine-readable code such as 'English (en)': {}",
                bad.join(", ")
            ),
        });
    }
    missing_translations("survey", &workbook.survey, &mut out);
    missing_translations("choices", &workbook.choices, &mut out);
    out
}

fn walk(items: &[Item], out: &mut Vec<Detail>) {
    let mut names: BTreeMap<String, &str> = BTreeMap::new();
    for item in items {
        let (name, row) = match item {
            Item::Question(q) => (q.name.as_str(), q.row),
            Item::Section(s) => (s.name.as_str(), s.row),
        };
        if let Some(other) = names.insert(name.to_lowercase(), name) {
            if other != name {
                out.push(detail(
                    "survey",
                    Some(row),
                    Some("name"),
                    format!("'{name}' differs from '{other}' only in upper and lower case, which confuses spreadsheets and databases"),
                ));
            }
        }
        match item {
            Item::Question(q) => {
                let photo = matches!(q.qtype.as_str(), "photo" | "image");
                if photo && !q.parameters.contains_key("max-pixels") {
                    out.push(detail(
                        "survey",
                        Some(q.row),
                        Some("parameters"),
                        format!("add max-pixels to image '{}' (e.g. max-pixels=1280) so photos are smaller and upload faster", q.name),
                    ));
                }
            }
            Item::Section(s) => {
                if s.label.is_empty() && !s.name.is_empty() && !s.children.is_empty() {
                    out.push(detail(
                        "survey",
                        Some(s.row),
                        Some("label"),
                        format!("group or repeat '{}' has no label", s.name),
                    ));
                }
                walk(&s.children, out);
            }
        }
    }
}

/// A language named like `English (en)`: a code of two or three letters in parentheses.
fn has_language_code(lang: &str) -> bool {
    lang.trim_end()
        .strip_suffix(')')
        .and_then(|l| l.rsplit_once('('))
        .is_some_and(|(_, code)| {
            let primary = code.split('-').next().unwrap_or_default();
            (2..=3).contains(&primary.len()) && primary.chars().all(|c| c.is_ascii_alphabetic())
        })
}

/// Columns translated into some languages but not others: phones show "-" for the gaps.
fn missing_translations(sheet: &str, data: &Sheet, out: &mut Vec<Detail>) {
    const TRANSLATABLE: [&str; 9] = [
        "label",
        "hint",
        "guidance_hint",
        "constraint_message",
        "required_message",
        "image",
        "big-image",
        "audio",
        "video",
    ];
    let mut by_language: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    let mut untagged: BTreeSet<&str> = BTreeSet::new();
    for raw in &data.headers {
        let mut parts: Vec<&str> = raw.trim().split("::").map(str::trim).collect();
        if parts.len() > 1 && parts[0].eq_ignore_ascii_case("media") {
            parts.remove(0);
        }
        let base = parts[0].to_lowercase();
        let Some(base) = TRANSLATABLE.iter().find(|b| **b == base) else {
            continue;
        };
        match parts.get(1) {
            Some(lang) => {
                by_language
                    .entry(lang.to_string())
                    .or_default()
                    .insert(base);
            }
            None => {
                untagged.insert(base);
            }
        }
    }
    if by_language.is_empty() {
        return;
    }
    if !untagged.is_empty() {
        by_language.insert(DEFAULT_LANG.to_string(), untagged);
    }
    let all: BTreeSet<&str> = by_language.values().flatten().copied().collect();
    for (lang, has) in &by_language {
        let missing: Vec<&str> = all.difference(has).copied().collect();
        if !missing.is_empty() {
            out.push(Detail {
                sheet: Some(sheet.to_string()),
                row: Some(1),
                column: None,
                message: format!(
                    "language '{lang}' is missing the columns {}; phones show '-' where a translation is missing",
                    missing.join(", ")
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::convert;
    use super::super::tests::workbook;

    #[test]
    fn advice_is_located() {
        let c = convert(
            &workbook(
                &[
                    &[
                        "type",
                        "name",
                        "label::English (en)",
                        "label::Vietnamese",
                        "hint::English (en)",
                    ],
                    &["image", "photo", "Photo", "Ảnh", ""],
                    &["image", "small", "Small", "Nhỏ", ""],
                    &["text", "Photo", "Again", "Lại", ""],
                    &["select_one yn", "q", "Q", "Q", ""],
                    &["begin group", "g", "", "", ""],
                    &["text", "in_g", "In", "Trong", ""],
                    &["end group", "", "", "", ""],
                ],
                &[
                    &[
                        "list_name",
                        "name",
                        "label::English (en)",
                        "label::Vietnamese",
                    ],
                    &["yn", "yes", "Yes", "Có"],
                    &["yn", "no", "No", "Không"],
                ],
                &[&["form_id"], &["f"]],
            ),
            None,
            1,
        )
        .expect("converts with warnings");
        let has = |row: Option<usize>, column: Option<&str>, text: &str| {
            c.warnings
                .iter()
                .any(|w| w.row == row && w.column.as_deref() == column && w.message.contains(text))
        };
        assert!(
            has(Some(2), Some("parameters"), "max-pixels"),
            "{:?}",
            c.warnings
        );
        assert!(has(Some(4), Some("name"), "case"), "{:?}", c.warnings);
        assert!(has(Some(6), Some("label"), "no label"), "{:?}", c.warnings);
        assert!(has(None, None, "Vietnamese"), "{:?}", c.warnings);
        assert!(has(Some(1), None, "hint"), "{:?}", c.warnings);

        let c = convert(
            &workbook(
                &[&["type", "name", "label"], &["select_one yn", "q", "Q"]],
                &[
                    &["list_name", "name", "label"],
                    &["yn", "yes", "Yes"],
                    &["yn", "no", ""],
                ],
                &[&["form_id"], &["f"]],
            ),
            None,
            1,
        )
        .expect("converts with a warning");
        assert!(
            c.warnings
                .iter()
                .any(|w| w.sheet.as_deref() == Some("choices") && w.row == Some(3)),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn a_clean_form_has_no_warnings() {
        let c = convert(
            &workbook(
                &[
                    &["type", "name", "label", "parameters"],
                    &["image", "p", "P", "max-pixels=1024"],
                ],
                &[],
                &[&["form_id"], &["f"]],
            ),
            None,
            1,
        )
        .expect("converts");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }
}
