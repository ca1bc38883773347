//! Indicator definitions are data: the TOML files in `forms/indicators/` (embedded in the
//! binary; a folder given with `--indicators-dir` adds or replaces files). Each file is one
//! indicator (code, wording in Vietnamese and English, source document, status) with one or
//! more *measures*: what one submission version contributes (its facts) and how they are
//! counted. This module parses and checks the files and computes the facts.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::AppError;

/// Dimensions every measure may be broken down by: the commune's region (I, II, III) and
/// whether the hamlet is especially difficult, both from the area registry.
pub const AREA_DIMS: [&str; 2] = ["region", "especially_difficult"];
/// Names that mean something else in a values query or its rows.
const RESERVED: [&str; 19] = [
    "month",
    "quarter",
    "year",
    "area",
    "area_name",
    "level",
    "period",
    "indicator",
    "measure",
    "unit",
    "basis",
    "map",
    "value",
    "numerator",
    "denominator",
    "target",
    "achievement",
    "suppressed",
    "snapshot",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Wording)]
pub struct Text {
    pub vi: String,
    pub en: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = IndicatorStatus)]
pub enum Status {
    Confirmed,
    Working,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = MeasureKind)]
pub enum Kind {
    /// One per submission, or per matching repeat row.
    Count,
    /// A whole-number field, or several split into a dimension (women → female, men → male).
    Sum,
    /// Distinct keys: beneficiaries, team codes.
    Distinct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ConditionOp)]
pub enum Op {
    Eq,
    Ne,
    In,
    NotIn,
    Gt,
    Ge,
    Lt,
    Le,
    NotEmpty,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = ConditionValue)]
pub enum CondValue {
    Number(f64),
    Text(String),
    List(Vec<String>),
}

/// A filter on an answer. Every operator but `not_empty` is false when the answer is empty: an
/// unanswered question never qualifies a submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub field: String,
    pub op: Op,
    #[serde(default)]
    pub value: Option<CondValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ValueSplit)]
pub struct Split {
    pub dim: String,
    /// Dimension value → the field that holds the figure for it.
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldRef {
    pub field: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgeBands {
    pub birth_year: String,
    /// Lower bounds of the bands after the first: `[15, 20]` gives `<15`, `15-19`, `20+`.
    pub bands: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum DimSource {
    Field(FieldRef),
    AgeBand(AgeBands),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeySpec {
    /// `"beneficiary"`: the pseudonymous beneficiary key ingest derives.
    Named(String),
    /// A field such as a team code, compared without case and extra spaces.
    Field(FieldRef),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndicatorFile {
    code: String,
    status: Status,
    /// The content area of the province's plan (1 to 4) the indicator reports on.
    #[serde(default)]
    content: Option<u8>,
    source: String,
    wording: Text,
    measures: Vec<MeasureFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MeasureFile {
    name: String,
    unit: Text,
    kind: Kind,
    forms: Vec<String>,
    #[serde(default)]
    sensitive: bool,
    #[serde(default, rename = "where")]
    filter: Vec<Condition>,
    #[serde(default)]
    rows: Option<String>,
    #[serde(default)]
    row_where: Vec<Condition>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    split: Option<Split>,
    #[serde(default)]
    key: Option<KeySpec>,
    #[serde(default)]
    by: Vec<String>,
    #[serde(default)]
    dims: BTreeMap<String, DimSource>,
    #[serde(default)]
    fixed: BTreeMap<String, String>,
    #[serde(default)]
    baseline: Option<String>,
    #[serde(default)]
    target: Option<f64>,
}

/// What a fact's value is.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = ValueSource)]
pub enum ValueSpec {
    One,
    Field(String),
    Split(Split),
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub enum KeySource {
    Beneficiary,
    Field(String),
}

/// One measure, checked.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = IndicatorMeasure)]
pub struct Measure {
    /// `P8-04/people_reached`: how the measure is stored.
    pub id: String,
    pub indicator: String,
    pub name: String,
    pub unit: Text,
    pub kind: Kind,
    pub forms: Vec<String>,
    /// Cells below 5 are suppressed in outputs.
    pub sensitive: bool,
    pub filter: Vec<Condition>,
    pub rows: Option<String>,
    pub row_filter: Vec<Condition>,
    pub value: ValueSpec,
    pub key: Option<KeySource>,
    /// Every dimension the measure can be broken down by, in the definition's order.
    pub by: Vec<String>,
    pub dims: BTreeMap<String, DimSource>,
    pub fixed: BTreeMap<String, String>,
    /// A ratio: the value is 100 × count / this baseline of the area and year.
    pub baseline: Option<String>,
    /// The target every area has unless one is imported for it.
    pub target: Option<f64>,
    /// Changes when, and only when, the counting rules change: a changed fingerprint rebuilds
    /// the measure.
    #[serde(skip)]
    pub fingerprint: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = IndicatorDefinition)]
pub struct Indicator {
    pub code: String,
    pub status: Status,
    /// The content area of the province's plan (1 to 4): the report workbook's sheet.
    pub content: Option<u8>,
    pub source: String,
    pub wording: Text,
    pub measures: Vec<Measure>,
    /// The TOML text, as loaded.
    #[serde(skip)]
    pub text: String,
}

/// Every indicator, and each measure's place in them.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    pub indicators: Vec<Indicator>,
    /// (indicator, measure) positions in numbering order: a measure's number (`u16`) is its
    /// place here.
    order: Vec<(usize, usize)>,
    by_id: HashMap<String, u16>,
    by_form: HashMap<String, Vec<u16>>,
}

/// One fact of one submission version for one measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub dims: BTreeMap<String, String>,
    pub value: i64,
    pub key: Option<String>,
}

/// What facts are computed from.
pub struct VersionData<'a> {
    pub fields: &'a Value,
    pub beneficiary_key: Option<&'a str>,
    pub activity_date: NaiveDate,
}

fn invalid(file: &str, message: impl std::fmt::Display) -> AppError {
    AppError::bad_request("invalid_indicator_definition", format!("{file}: {message}"))
}

impl Condition {
    fn check(&self, file: &str) -> Result<(), AppError> {
        let ok = matches!(
            (self.op, &self.value),
            (
                Op::Eq | Op::Ne,
                Some(CondValue::Text(_) | CondValue::Number(_))
            ) | (Op::In | Op::NotIn, Some(CondValue::List(_)))
                | (
                    Op::Gt | Op::Ge | Op::Lt | Op::Le,
                    Some(CondValue::Number(_))
                )
                | (Op::NotEmpty, None)
        );
        if ok {
            Ok(())
        } else {
            Err(invalid(
                file,
                format!(
                    "the condition on '{}' needs a value that fits its op (eq/ne: a text or number, in/not_in: a list, gt/ge/lt/le: a number, not_empty: none)",
                    self.field
                ),
            ))
        }
    }

    pub fn holds(&self, answer: Option<&Value>) -> bool {
        let values = texts(answer);
        if self.op == Op::NotEmpty {
            return !values.is_empty();
        }
        if values.is_empty() {
            return false;
        }
        let equal = |v: &str, x: &CondValue| match x {
            CondValue::Text(t) => v == t.trim(),
            CondValue::Number(n) => v.parse::<f64>().is_ok_and(|f| f == *n),
            CondValue::List(_) => false,
        };
        let number = || values.first().and_then(|v| v.parse::<f64>().ok());
        match (&self.op, &self.value) {
            (Op::Eq, Some(x)) => values.iter().any(|v| equal(v, x)),
            (Op::Ne, Some(x)) => !values.iter().any(|v| equal(v, x)),
            (Op::In, Some(CondValue::List(l))) => {
                values.iter().any(|v| l.iter().any(|x| x.trim() == v))
            }
            (Op::NotIn, Some(CondValue::List(l))) => {
                !values.iter().any(|v| l.iter().any(|x| x.trim() == v))
            }
            (Op::Gt, Some(CondValue::Number(x))) => number().is_some_and(|n| n > *x),
            (Op::Ge, Some(CondValue::Number(x))) => number().is_some_and(|n| n >= *x),
            (Op::Lt, Some(CondValue::Number(x))) => number().is_some_and(|n| n < *x),
            (Op::Le, Some(CondValue::Number(x))) => number().is_some_and(|n| n <= *x),
            _ => false,
        }
    }
}

/// An answer as texts: one for a single value, several for a multiple choice, none if empty.
fn texts(answer: Option<&Value>) -> Vec<String> {
    match answer {
        Some(Value::String(s)) if !s.trim().is_empty() => vec![s.trim().to_string()],
        Some(Value::Number(n)) => vec![n.to_string()],
        Some(Value::Bool(b)) => vec![if *b { "yes" } else { "no" }.to_string()],
        Some(Value::Array(items)) => items.iter().flat_map(|i| texts(Some(i))).collect(),
        _ => Vec::new(),
    }
}

/// A whole number, from a number or a text (calculated fields arrive as text).
fn whole(answer: Option<&Value>) -> Option<i64> {
    let float = match answer? {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Some(i);
            }
            n.as_f64()?
        }
        Value::String(s) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                return Some(i);
            }
            s.parse::<f64>().ok()?
        }
        _ => return None,
    };
    // Only whole numbers are summed, so that sums are exact in any order.
    (float.fract() == 0.0 && float.abs() < 9.0e15).then_some(float as i64)
}

fn age_band(bands: &[i64], age: i64) -> String {
    match bands.iter().position(|b| age < *b) {
        Some(0) => format!("<{}", bands[0]),
        Some(i) => format!("{}-{}", bands[i - 1], bands[i] - 1),
        None => format!("{}+", bands.last().copied().unwrap_or(0)),
    }
}

/// Normalizes a code typed by hand: `tt 01` and ` TT  01` are the same team.
fn normalize_key(s: &str) -> Option<String> {
    let k = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase();
    (!k.is_empty()).then_some(k)
}

impl Measure {
    fn from_file(indicator: &str, m: MeasureFile, file: &str) -> Result<Measure, AppError> {
        let file = &format!("{file}, measure '{}'", m.name);
        if m.name.is_empty()
            || !m
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(invalid(
                file,
                "a measure name is lower-case letters, digits and _",
            ));
        }
        if m.forms.is_empty() {
            return Err(invalid(file, "name at least one form in `forms`"));
        }
        for c in m.filter.iter().chain(&m.row_where) {
            c.check(file)?;
        }
        if m.rows.is_none() && !m.row_where.is_empty() {
            return Err(invalid(file, "`row_where` needs `rows`"));
        }
        let value = match (m.kind, &m.field, &m.split) {
            (Kind::Count | Kind::Distinct, None, None) => ValueSpec::One,
            (Kind::Sum, Some(f), None) => ValueSpec::Field(f.clone()),
            (Kind::Sum, None, Some(s)) => {
                if s.fields.is_empty() {
                    return Err(invalid(file, "`split.fields` is empty"));
                }
                ValueSpec::Split(s.clone())
            }
            (Kind::Sum, _, _) => {
                return Err(invalid(file, "a sum needs either `field` or `split`"))
            }
            _ => return Err(invalid(file, "`field` and `split` belong to sums only")),
        };
        let key = match (m.kind, &m.key) {
            (Kind::Distinct, Some(KeySpec::Named(n))) if n == "beneficiary" => {
                Some(KeySource::Beneficiary)
            }
            (Kind::Distinct, Some(KeySpec::Field(f))) => Some(KeySource::Field(f.field.clone())),
            (Kind::Distinct, _) => {
                return Err(invalid(
                    file,
                    "a distinct measure needs `key = \"beneficiary\"` or `key = { field = \"…\" }`",
                ))
            }
            (_, Some(_)) => return Err(invalid(file, "`key` belongs to distinct measures only")),
            (_, None) => None,
        };
        if m.kind == Kind::Distinct && m.rows.is_some() {
            // One key per submission: the latest record of a key decides its dimensions.
            return Err(invalid(
                file,
                "a distinct measure counts submissions, not repeat rows",
            ));
        }
        // Where each dimension in `by` comes from, and nothing defined that `by` leaves out.
        let split_dim = m.split.as_ref().map(|s| s.dim.clone());
        let mut seen = Vec::new();
        for d in &m.by {
            if RESERVED.contains(&d.as_str()) {
                return Err(invalid(file, format!("'{d}' cannot be a dimension name")));
            }
            if seen.contains(d) {
                return Err(invalid(file, format!("'{d}' is twice in `by`")));
            }
            seen.push(d.clone());
            let sources = usize::from(AREA_DIMS.contains(&d.as_str()))
                + usize::from(m.dims.contains_key(d))
                + usize::from(m.fixed.contains_key(d))
                + usize::from(split_dim.as_deref() == Some(d.as_str()));
            if sources != 1 {
                return Err(invalid(
                    file,
                    format!("the dimension '{d}' needs exactly one source (an area attribute, `dims`, `fixed` or `split`)"),
                ));
            }
        }
        let undeclared = m
            .dims
            .keys()
            .chain(m.fixed.keys())
            .chain(split_dim.iter())
            .find(|d| !m.by.contains(d));
        if let Some(d) = undeclared {
            return Err(invalid(
                file,
                format!("the dimension '{d}' is not listed in `by`"),
            ));
        }
        for source in m.dims.values() {
            if let DimSource::AgeBand(a) = source {
                if a.bands.is_empty() || a.bands.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(invalid(file, "age bands must be increasing"));
                }
            }
        }
        if m.target.is_some_and(|t| !t.is_finite() || t <= 0.0) {
            return Err(invalid(file, "a target must be a positive number"));
        }
        let rules = serde_json::json!({
            "kind": m.kind,
            "forms": m.forms,
            "where": m.filter,
            "rows": m.rows,
            "row_where": m.row_where,
            "value": value,
            "key": key,
            "by": m.by,
            "dims": m.dims,
            "fixed": m.fixed,
        });
        let fingerprint = hex::encode(Sha256::digest(rules.to_string().as_bytes()));
        Ok(Measure {
            id: format!("{indicator}/{}", m.name),
            indicator: indicator.to_string(),
            name: m.name,
            unit: m.unit,
            kind: m.kind,
            forms: m.forms,
            sensitive: m.sensitive,
            filter: m.filter,
            rows: m.rows,
            row_filter: m.row_where,
            value,
            key,
            by: m.by,
            dims: m.dims,
            fixed: m.fixed,
            baseline: m.baseline,
            target: m.target,
            fingerprint,
        })
    }

    pub fn allows(&self, dim: &str) -> bool {
        self.by.iter().any(|d| d == dim)
    }

    pub fn area_dim(&self, dim: &str) -> bool {
        AREA_DIMS.contains(&dim) && self.allows(dim)
    }

    /// Every field name the measure reads: (name, read in repeat rows).
    pub fn fields(&self) -> Vec<(String, bool)> {
        let in_rows = self.rows.is_some();
        let mut out: Vec<(String, bool)> = self
            .filter
            .iter()
            .map(|c| (c.field.clone(), false))
            .collect();
        out.extend(self.row_filter.iter().map(|c| (c.field.clone(), true)));
        match &self.value {
            ValueSpec::One => {}
            ValueSpec::Field(f) => out.push((f.clone(), in_rows)),
            ValueSpec::Split(s) => out.extend(s.fields.values().map(|f| (f.clone(), in_rows))),
        }
        if let Some(KeySource::Field(f)) = &self.key {
            out.push((f.clone(), false));
        }
        for source in self.dims.values() {
            match source {
                DimSource::Field(f) => out.push((f.field.clone(), in_rows)),
                DimSource::AgeBand(a) => out.push((a.birth_year.clone(), in_rows)),
            }
        }
        out
    }

    /// The facts one submission version gives this measure (before area dimensions).
    pub fn facts(&self, data: &VersionData<'_>) -> Vec<Fact> {
        let top = data.fields;
        if !self.filter.iter().all(|c| c.holds(top.get(&c.field))) {
            return Vec::new();
        }
        let units: Vec<Option<&serde_json::Map<String, Value>>> = match &self.rows {
            None => vec![None],
            Some(r) => match top.get(r) {
                Some(Value::Array(rows)) => rows
                    .iter()
                    .filter_map(Value::as_object)
                    .filter(|row| self.row_filter.iter().all(|c| c.holds(row.get(&c.field))))
                    .map(Some)
                    .collect(),
                _ => Vec::new(),
            },
        };
        let mut out: Vec<Fact> = Vec::new();
        for row in units {
            // A field is looked up in the repeat row first, then at the top of the form.
            let lookup = |name: &str| row.and_then(|r| r.get(name)).or_else(|| top.get(name));
            let mut dims = self.fixed.clone();
            for (name, source) in &self.dims {
                let value = match source {
                    DimSource::Field(f) => {
                        let t = texts(lookup(&f.field));
                        (!t.is_empty()).then(|| t.join(" "))
                    }
                    DimSource::AgeBand(a) => whole(lookup(&a.birth_year)).map(|born| {
                        age_band(&a.bands, i64::from(data.activity_date.year()) - born)
                    }),
                };
                if let Some(v) = value {
                    dims.insert(name.clone(), v);
                }
            }
            match (&self.value, &self.key) {
                (_, Some(source)) => {
                    let key = match source {
                        KeySource::Beneficiary => data.beneficiary_key.map(str::to_string),
                        KeySource::Field(f) => {
                            texts(lookup(f)).first().and_then(|s| normalize_key(s))
                        }
                    };
                    // Without a key there is nobody to count.
                    if let Some(key) = key {
                        out.push(Fact {
                            dims,
                            value: 1,
                            key: Some(key),
                        });
                    }
                }
                (ValueSpec::One, None) => out.push(Fact {
                    dims,
                    value: 1,
                    key: None,
                }),
                (ValueSpec::Field(f), None) => {
                    if let Some(v) = whole(lookup(f)) {
                        out.push(Fact {
                            dims,
                            value: v,
                            key: None,
                        });
                    }
                }
                (ValueSpec::Split(s), None) => {
                    for (dim_value, f) in &s.fields {
                        if let Some(v) = whole(lookup(f)) {
                            let mut d = dims.clone();
                            d.insert(s.dim.clone(), dim_value.clone());
                            out.push(Fact {
                                dims: d,
                                value: v,
                                key: None,
                            });
                        }
                    }
                }
            }
        }
        out
    }
}

impl Definitions {
    /// Parses indicator files given as (file name, TOML text).
    pub fn parse(files: &[(String, String)]) -> Result<Definitions, AppError> {
        let mut indicators: Vec<Indicator> = Vec::new();
        for (name, text) in files {
            let f: IndicatorFile = toml::from_str(text).map_err(|e| invalid(name, e))?;
            if f.code.trim().is_empty() || f.code.contains('/') {
                return Err(invalid(name, "`code` must be set and contain no '/'"));
            }
            if indicators.iter().any(|i| i.code == f.code) {
                return Err(invalid(
                    name,
                    format!("the code {} is defined twice", f.code),
                ));
            }
            if f.measures.is_empty() {
                return Err(invalid(
                    name,
                    "an indicator needs at least one [[measures]]",
                ));
            }
            let mut measures: Vec<Measure> = Vec::new();
            for m in f.measures {
                let m = Measure::from_file(&f.code, m, name)?;
                if measures.iter().any(|x| x.name == m.name) {
                    return Err(invalid(
                        name,
                        format!("the measure '{}' is defined twice", m.name),
                    ));
                }
                measures.push(m);
            }
            indicators.push(Indicator {
                code: f.code,
                status: f.status,
                content: f.content,
                source: f.source,
                wording: f.wording,
                measures,
                text: text.clone(),
            });
        }
        indicators.sort_by(|a, b| a.code.cmp(&b.code));
        let mut defs = Definitions {
            indicators,
            ..Default::default()
        };
        for (i, ind) in defs.indicators.iter().enumerate() {
            for (j, m) in ind.measures.iter().enumerate() {
                let n = u16::try_from(defs.order.len())
                    .map_err(|_| AppError::internal("too many indicator measures"))?;
                defs.order.push((i, j));
                defs.by_id.insert(m.id.clone(), n);
                for form in &m.forms {
                    defs.by_form.entry(form.clone()).or_default().push(n);
                }
            }
        }
        Ok(defs)
    }

    /// The shipped definitions, with the files of `dir` (if any) added or replacing shipped
    /// files of the same name.
    pub fn load(dir: Option<&Path>) -> Result<Definitions, AppError> {
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        for (name, bytes) in fieldtally_forms::shipped::INDICATORS {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| invalid(name, "not UTF-8"))?
                .to_string();
            files.insert(format!("{name}.toml"), text);
        }
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|e| {
                AppError::internal(format!(
                    "cannot read the indicators folder {}: {e}",
                    dir.display()
                ))
            })?;
            for entry in entries {
                let path = entry?.path();
                if path.extension().is_some_and(|x| x == "toml") {
                    let name = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default()
                        .to_string();
                    files.insert(name, std::fs::read_to_string(&path)?);
                }
            }
        }
        Definitions::parse(&files.into_iter().collect::<Vec<_>>())
    }

    pub fn measure_count(&self) -> usize {
        self.order.len()
    }

    /// The measure numbered `n`.
    pub fn measure(&self, n: u16) -> Option<&Measure> {
        let (i, j) = *self.order.get(usize::from(n))?;
        self.indicators.get(i)?.measures.get(j)
    }

    pub fn number(&self, id: &str) -> Option<u16> {
        self.by_id.get(id).copied()
    }

    /// Numbers of the measures computed from a form.
    pub fn for_form(&self, form_id: &str) -> &[u16] {
        self.by_form.get(form_id).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn indicator(&self, code: &str) -> Option<&Indicator> {
        self.indicators.iter().find(|i| i.code == code)
    }

    /// Every measure with its number.
    pub fn numbered(&self) -> impl Iterator<Item = (u16, &Measure)> {
        (0..self.order.len()).filter_map(|n| {
            let n = u16::try_from(n).ok()?;
            Some((n, self.measure(n)?))
        })
    }

    /// (file name, TOML) of every indicator, to keep with the figures they produced.
    pub fn sources(&self) -> Vec<(String, String)> {
        self.indicators
            .iter()
            .map(|i| (format!("{}.toml", i.code), i.text.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn defs(toml: &str) -> Result<Definitions, AppError> {
        Definitions::parse(&[("T.toml".to_string(), toml.to_string())])
    }

    const HEAD: &str = "code = \"T-1\"\nstatus = \"working\"\nsource = \"test\"\nwording = { vi = \"v\", en = \"e\" }\n";

    fn one(measure: &str) -> Measure {
        let d = defs(&format!("{HEAD}[[measures]]\n{measure}")).unwrap();
        d.measure(0).unwrap().clone()
    }

    fn data(fields: &Value) -> VersionData<'_> {
        VersionData {
            fields,
            beneficiary_key: Some("k1"),
            activity_date: NaiveDate::from_ymd_opt(2025, 7, 15).unwrap(),
        }
    }

    #[test]
    fn the_shipped_definitions_load() {
        let d = Definitions::load(None).unwrap();
        let codes: Vec<&str> = d.indicators.iter().map(|i| i.code.as_str()).collect();
        assert_eq!(
            codes,
            [
                "P8-01", "P8-02", "P8-03", "P8-04", "P8-05", "P8-06", "P8-07", "P8-08", "P8-09",
                "P8-10", "P8-11"
            ]
        );
        for i in &d.indicators {
            assert!(!i.wording.vi.is_empty() && !i.wording.en.is_empty());
            assert!(!i.source.is_empty());
        }
        let p801 = d.indicator("P8-01").unwrap();
        assert_eq!(
            p801.measures[0].baseline.as_deref(),
            Some("women_15_49_high_home_birth_groups")
        );
        assert_eq!(p801.measures[0].target, Some(80.0));
        assert!(
            d.measure(d.number("P8-05/people_supported").unwrap())
                .unwrap()
                .sensitive
        );
        assert_eq!(d.for_form("communication_session").len(), 3);
    }

    #[test]
    fn the_shipped_definitions_read_fields_the_shipped_forms_have() {
        let d = Definitions::load(None).unwrap();
        let forms: HashMap<String, fieldtally_forms::FormDef> = fieldtally_forms::shipped::FORMS
            .iter()
            .map(|(_, xml)| {
                let f = fieldtally_forms::parse_form(xml).unwrap();
                (f.form_id.clone(), f)
            })
            .collect();
        let mut checked = 0;
        for (_, m) in d.numbered() {
            for form_id in &m.forms {
                let form = forms
                    .get(form_id)
                    .unwrap_or_else(|| panic!("{}: no shipped form {form_id}", m.id));
                if let Some(r) = &m.rows {
                    assert!(
                        form.repeats.contains(r),
                        "{}: {form_id} has no repeat {r}",
                        m.id
                    );
                }
                for (field, in_rows) in m.fields() {
                    let top = form.fields.iter().any(|f| f.path == field);
                    let row = in_rows
                        && form.fields.iter().any(|f| {
                            Some(f.path.as_str())
                                == m.rows.as_ref().map(|r| format!("{r}/{field}")).as_deref()
                        });
                    assert!(top || row, "{}: {form_id} has no field {field}", m.id);
                    checked += 1;
                }
            }
        }
        assert!(checked > 40, "{checked}");
    }

    #[test]
    fn bad_definitions_are_refused_with_the_file_named() {
        let cases = [
            ("name = \"x\"\nunit = { vi = \"a\", en = \"b\" }\nkind = \"sum\"\nforms = [\"f\"]\n", "either `field` or `split`"),
            ("name = \"x\"\nunit = { vi = \"a\", en = \"b\" }\nkind = \"distinct\"\nforms = [\"f\"]\n", "needs `key"),
            ("name = \"x\"\nunit = { vi = \"a\", en = \"b\" }\nkind = \"count\"\nforms = [\"f\"]\nby = [\"ethnicity\"]\n", "exactly one source"),
            ("name = \"x\"\nunit = { vi = \"a\", en = \"b\" }\nkind = \"count\"\nforms = [\"f\"]\ndims.ethnicity = { field = \"e\" }\n", "not listed in `by`"),
            ("name = \"x\"\nunit = { vi = \"a\", en = \"b\" }\nkind = \"count\"\nforms = [\"f\"]\nwhere = [{ field = \"a\", op = \"in\", value = \"x\" }]\n", "fits its op"),
            ("name = \"x\"\nunit = { vi = \"a\", en = \"b\" }\nkind = \"count\"\nforms = [\"f\"]\nby = [\"month\"]\n", "cannot be a dimension"),
            ("name = \"x\"\nunit = { vi = \"a\", en = \"b\" }\nkind = \"count\"\nforms = [\"f\"]\ncolour = \"red\"\n", "unknown field"),
        ];
        for (measure, expected) in cases {
            let err = defs(&format!("{HEAD}[[measures]]\n{measure}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("T.toml") && err.contains(expected), "{err}");
        }
    }

    #[test]
    fn conditions_follow_their_operators() {
        let c = |op: Op, value: Option<CondValue>| Condition {
            field: "f".into(),
            op,
            value,
        };
        let text = |s: &str| Some(CondValue::Text(s.into()));
        let list = |l: &[&str]| Some(CondValue::List(l.iter().map(|s| s.to_string()).collect()));
        assert!(c(Op::Eq, text("yes")).holds(Some(&json!("yes"))));
        assert!(
            c(Op::Eq, text("a")).holds(Some(&json!(["b", "a"]))),
            "a multiple choice contains it"
        );
        assert!(!c(Op::Eq, text("yes")).holds(None));
        assert!(
            !c(Op::Ne, text("yes")).holds(None),
            "empty answers never qualify"
        );
        assert!(c(Op::Ne, text("yes")).holds(Some(&json!("no"))));
        assert!(c(Op::In, list(&["08", "09"])).holds(Some(&json!("09"))));
        assert!(!c(Op::NotIn, list(&["01", "99"])).holds(Some(&json!("01"))));
        assert!(c(Op::NotIn, list(&["01", "99"])).holds(Some(&json!("03"))));
        assert!(!c(Op::NotIn, list(&["01"])).holds(Some(&json!(""))));
        assert!(c(Op::Gt, Some(CondValue::Number(2.0))).holds(Some(&json!("3"))));
        assert!(!c(Op::Gt, Some(CondValue::Number(2.0))).holds(Some(&json!(2))));
        assert!(c(Op::Le, Some(CondValue::Number(2.0))).holds(Some(&json!(2))));
        assert!(c(Op::Eq, Some(CondValue::Number(2.0))).holds(Some(&json!("2"))));
        assert!(c(Op::NotEmpty, None).holds(Some(&json!("x"))));
        assert!(!c(Op::NotEmpty, None).holds(Some(&json!(null))));
        assert!(!c(Op::NotEmpty, None).holds(Some(&json!([]))));
    }

    #[test]
    fn a_split_sum_over_repeat_rows_gives_one_fact_per_row_and_sex() {
        let m = one(
            "name = \"p\"\nunit = { vi = \"a\", en = \"b\" }\nkind = \"sum\"\nforms = [\"f\"]\nrows = \"g\"\nrow_where = [{ field = \"eth\", op = \"not_in\", value = [\"01\"] }]\nsplit = { dim = \"sex\", fields = { female = \"women\", male = \"men\" } }\nby = [\"sex\", \"ethnicity\"]\ndims.ethnicity = { field = \"eth\" }\n",
        );
        let fields = json!({"g": [
            {"eth": "03", "women": 4, "men": "2"},
            {"eth": "01", "women": 7, "men": 7},
            {"eth": "08", "women": 1, "men": null},
        ]});
        let facts = m.facts(&data(&fields));
        let got: Vec<(String, String, i64)> = facts
            .iter()
            .map(|f| (f.dims["ethnicity"].clone(), f.dims["sex"].clone(), f.value))
            .collect();
        assert_eq!(
            got,
            [
                ("03".to_string(), "female".to_string(), 4),
                ("03".to_string(), "male".to_string(), 2),
                ("08".to_string(), "female".to_string(), 1),
            ]
        );
    }

    #[test]
    fn distinct_keys_age_bands_and_fixed_dimensions() {
        let m = one(
            "name = \"w\"\nunit = { vi = \"a\", en = \"b\" }\nkind = \"distinct\"\nkey = \"beneficiary\"\nforms = [\"f\"]\nwhere = [{ field = \"consent\", op = \"eq\", value = \"yes\" }]\nby = [\"age_band\", \"sex\"]\ndims.age_band = { birth_year = \"by\", bands = [15, 20, 50] }\nfixed = { sex = \"female\" }\n",
        );
        let f = m.facts(&data(&json!({"consent": "yes", "by": 2004})));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].key.as_deref(), Some("k1"));
        assert_eq!(f[0].dims["age_band"], "20-49");
        assert_eq!(f[0].dims["sex"], "female");
        assert_eq!(
            m.facts(&data(&json!({"consent": "yes", "by": 2011})))[0].dims["age_band"],
            "<15"
        );
        assert_eq!(
            m.facts(&data(&json!({"consent": "yes", "by": 1960})))[0].dims["age_band"],
            "50+"
        );
        assert_eq!(
            m.facts(&data(&json!({"consent": "yes", "by": 2008})))[0].dims["age_band"],
            "15-19"
        );
        assert!(m
            .facts(&data(&json!({"consent": "no", "by": 2004})))
            .is_empty());
        let team = one(
            "name = \"t\"\nunit = { vi = \"a\", en = \"b\" }\nkind = \"distinct\"\nkey = { field = \"team\" }\nforms = [\"f\"]\n",
        );
        assert_eq!(
            team.facts(&data(&json!({"team": "  tt   01 "})))[0]
                .key
                .as_deref(),
            Some("TT 01")
        );
        assert!(team.facts(&data(&json!({"team": " "}))).is_empty());
    }

    #[test]
    fn sums_take_whole_numbers_only() {
        assert_eq!(whole(Some(&json!(12))), Some(12));
        assert_eq!(whole(Some(&json!("12"))), Some(12));
        assert_eq!(whole(Some(&json!(12.0))), Some(12));
        assert_eq!(whole(Some(&json!("12.5"))), None);
        assert_eq!(whole(Some(&json!("x"))), None);
        assert_eq!(whole(None), None);
    }

    #[test]
    fn the_fingerprint_follows_the_counting_rules_only() {
        let base = "name = \"x\"\nkind = \"count\"\nforms = [\"f\"]\n";
        let a = one(&format!("{base}unit = {{ vi = \"a\", en = \"b\" }}\n"));
        let b = one(&format!(
            "{base}unit = {{ vi = \"c\", en = \"d\" }}\ntarget = 5\n"
        ));
        let c = one(&format!(
            "{base}unit = {{ vi = \"a\", en = \"b\" }}\nwhere = [{{ field = \"a\", op = \"not_empty\" }}]\n"
        ));
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
    }
}
