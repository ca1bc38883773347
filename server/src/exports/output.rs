//! The export files: a zip of CSV files (one per table, joined by `KEY` and `PARENT_KEY`, with
//! the attachments if asked), an XLSX workbook (a sheet per table), or GeoJSON (one point
//! feature per submission). Each is written a submission at a time to files on disk, so memory
//! stays the same whatever the number of submissions.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::layout::Layout;
use super::rows::Record;
use crate::error::AppError;

/// What a redacted sensitive value is replaced with.
pub const WITHHELD: &str = "[withheld]";

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    Number(serde_json::Number),
}

impl Cell {
    fn of(value: Option<&Value>) -> Cell {
        match value {
            None | Some(Value::Null) => Cell::Empty,
            Some(Value::String(s)) => Cell::Text(s.clone()),
            Some(Value::Number(n)) => Cell::Number(n.clone()),
            Some(Value::Bool(b)) => Cell::Text(b.to_string()),
            Some(Value::Array(items)) => Cell::Text(
                items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            Some(other @ Value::Object(_)) => Cell::Text(other.to_string()),
        }
    }

    fn text(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(s) => s.clone(),
            Cell::Number(n) => n.to_string(),
        }
    }
}

/// One submission made ready for writing.
pub struct Prepared {
    /// Rows by table index, parents before their repeats.
    pub rows: Vec<(usize, Vec<Cell>)>,
    /// The answers (sensitive values merged in when opened).
    pub values: Value,
    /// Attachments to include: (folder in the zip, file name, stored file).
    pub files: Vec<(String, String, PathBuf)>,
}

/// Adds `extra` (sensitive values, same shape) into `base`.
pub fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(e)) => {
            for (i, v) in e.into_iter().enumerate() {
                match b.get_mut(i) {
                    Some(existing) => merge(existing, v),
                    None => b.push(v),
                }
            }
        }
        (b, e) => {
            if b.is_null() {
                *b = e;
            }
        }
    }
}

fn timestamp(t: chrono::NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The rows of one submission in every table, or only its submissions row when `repeats` is
/// false. `withheld` are the paths of sensitive values not opened: their cells say so instead
/// of looking empty.
pub fn prepare(
    layout: &Layout,
    record: &Record,
    values: Value,
    withheld: &[String],
    repeats: bool,
) -> Prepared {
    let mut rows = Vec::new();
    let mut root = vec![
        Cell::Text(record.key.clone()),
        Cell::Text(timestamp(record.received_at)),
        Cell::Text(record.form_version.clone()),
        Cell::Text(record.collector.clone()),
        Cell::Text(record.review_state.clone()),
        record
            .hamlet_code
            .clone()
            .map(Cell::Text)
            .unwrap_or(Cell::Empty),
        record
            .activity_date
            .map(|d| Cell::Text(d.to_string()))
            .unwrap_or(Cell::Empty),
        Cell::Text(record.version_instance_id.clone()),
    ];
    let empty = Map::new();
    let object = values.as_object().unwrap_or(&empty);
    root.extend(cells(layout, 0, object, withheld));
    rows.push((0, root));
    if repeats {
        children(layout, 0, object, &record.key, withheld, &mut rows);
    }
    Prepared {
        rows,
        values,
        files: Vec::new(),
    }
}

fn cells(
    layout: &Layout,
    table: usize,
    object: &Map<String, Value>,
    withheld: &[String],
) -> Vec<Cell> {
    layout.tables[table]
        .columns
        .iter()
        .map(|c| {
            let value = object.get(&c.key);
            if c.sensitive && value.is_none() && withheld.contains(&c.path) {
                Cell::Text(WITHHELD.to_string())
            } else {
                Cell::of(value)
            }
        })
        .collect()
}

fn children(
    layout: &Layout,
    parent: usize,
    object: &Map<String, Value>,
    parent_key: &str,
    withheld: &[String],
    rows: &mut Vec<(usize, Vec<Cell>)>,
) {
    for (index, table) in layout.tables.iter().enumerate() {
        if table.parent != Some(parent) {
            continue;
        }
        let Some(Value::Array(items)) = object.get(&table.key_in_parent) else {
            continue;
        };
        for (n, item) in items.iter().enumerate() {
            let key = format!("{parent_key}/{}[{}]", table.key_in_parent, n + 1);
            let empty = Map::new();
            let item = item.as_object().unwrap_or(&empty);
            let mut row = vec![Cell::Text(parent_key.to_string()), Cell::Text(key.clone())];
            row.extend(cells(layout, index, item, withheld));
            rows.push((index, row));
            children(layout, index, item, &key, withheld, rows);
        }
    }
}

/// An export file being written.
pub trait Output: Send {
    fn add(&mut self, submission: &Prepared) -> Result<(), AppError>;
    /// Completes the file at the path the output was made for.
    fn finish(self: Box<Self>) -> Result<(), AppError>;
}

fn zip_error(e: zip::result::ZipError) -> AppError {
    AppError::internal(format!("cannot write the zip file: {e}"))
}

/// A zip of CSV files: the tables are written to temporary files and put into the zip at the
/// end, after the attachments.
pub struct CsvZip {
    zip: zip::ZipWriter<File>,
    tables: Vec<(String, csv::Writer<BufWriter<File>>)>,
    files_seen: HashSet<String>,
}

impl CsvZip {
    pub fn create(layout: &Layout, path: &Path, tmp: &Path) -> Result<CsvZip, AppError> {
        let zip = zip::ZipWriter::new(File::create(path)?);
        let mut tables = Vec::new();
        for (i, t) in layout.tables.iter().enumerate() {
            let file = tempfile::tempfile_in(tmp)?;
            let mut w = csv::Writer::from_writer(BufWriter::new(file));
            w.write_record(layout.headers(i)).map_err(csv_error)?;
            tables.push((format!("{}.csv", t.name), w));
        }
        Ok(CsvZip {
            zip,
            tables,
            files_seen: HashSet::new(),
        })
    }
}

fn csv_error(e: csv::Error) -> AppError {
    AppError::internal(format!("cannot write the CSV file: {e}"))
}

impl Output for CsvZip {
    fn add(&mut self, s: &Prepared) -> Result<(), AppError> {
        for (table, row) in &s.rows {
            self.tables[*table]
                .1
                .write_record(row.iter().map(Cell::text))
                .map_err(csv_error)?;
        }
        for (folder, name, stored) in &s.files {
            let entry = format!("media/{folder}/{name}");
            if !self.files_seen.insert(entry.clone()) {
                continue;
            }
            // Photos and recordings are compressed already.
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .large_file(std::fs::metadata(stored)?.len() >= u32::MAX as u64);
            self.zip.start_file(entry, options).map_err(zip_error)?;
            std::io::copy(&mut File::open(stored)?, &mut self.zip)?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), AppError> {
        let CsvZip {
            mut zip, tables, ..
        } = *self;
        for (name, writer) in tables {
            let mut file = writer
                .into_inner()
                .map_err(|e| AppError::internal(format!("cannot write the CSV file: {e}")))?
                .into_inner()
                .map_err(|e| AppError::Io(e.into_error()))?;
            let size = file.seek(SeekFrom::End(0))?;
            file.seek(SeekFrom::Start(0))?;
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(size >= u32::MAX as u64);
            zip.start_file(name, options).map_err(zip_error)?;
            std::io::copy(&mut file, &mut zip)?;
        }
        zip.finish().map_err(zip_error)?.sync_all()?;
        Ok(())
    }
}

/// An XLSX workbook in constant-memory mode: each sheet's rows go to a temporary file as they
/// are written. A table with more rows than a sheet holds goes on in another sheet, named after
/// it with the sheet's number ("members (2)"), under the same header.
pub struct Xlsx {
    workbook: rust_xlsxwriter::Workbook,
    sheets: Vec<TableSheet>,
    taken: Vec<String>,
    bold: rust_xlsxwriter::Format,
    /// Rows of a sheet, its header included: the most Excel holds.
    rows_per_sheet: u32,
    path: PathBuf,
}

/// Where a table's rows go: the workbook index of its current sheet and that sheet's next row.
struct TableSheet {
    name: String,
    headers: Vec<String>,
    index: usize,
    next_row: u32,
    count: u32,
}

fn xlsx_error(e: rust_xlsxwriter::XlsxError) -> AppError {
    AppError::internal(format!("cannot write the XLSX file: {e}"))
}

/// Most rows a sheet holds.
const XLSX_MAX_ROWS: u32 = 1_048_576;

/// A sheet name Excel accepts: at most 31 characters, none of `[]:*?/\`, unique, ending in
/// `suffix`.
fn sheet_name(name: &str, suffix: &str, taken: &[String]) -> String {
    let clean: String = name
        .chars()
        .map(|c| if "[]:*?/\\".contains(c) { '_' } else { c })
        .collect();
    let mut n = 1;
    loop {
        let unique = if n == 1 {
            String::new()
        } else {
            format!("~{n}")
        };
        let keep = 31 - unique.chars().count() - suffix.chars().count();
        let base: String = clean.chars().take(keep).collect();
        let candidate = format!("{base}{unique}{suffix}");
        if !taken.iter().any(|t| t.eq_ignore_ascii_case(&candidate)) {
            return candidate;
        }
        n += 1;
    }
}

impl Xlsx {
    pub fn create(layout: &Layout, path: &Path, tmp: &Path) -> Result<Xlsx, AppError> {
        let mut workbook = rust_xlsxwriter::Workbook::new();
        workbook.set_tempdir(tmp).map_err(xlsx_error)?;
        // Excel's own level: most of the time of a large workbook is compressing its sheets,
        // and level 3 takes about 30 % less than the default 6 (rust_xlsxwriter's figures) for
        // a larger file (about 15 % larger for the export benchmark's workbook).
        workbook.set_zip_compression_level(3);
        let mut xlsx = Xlsx {
            workbook,
            sheets: Vec::new(),
            taken: Vec::new(),
            bold: rust_xlsxwriter::Format::new().set_bold(),
            rows_per_sheet: XLSX_MAX_ROWS,
            path: path.to_path_buf(),
        };
        for (i, t) in layout.tables.iter().enumerate() {
            xlsx.sheets.push(TableSheet {
                name: t.name.clone(),
                headers: layout.headers(i),
                index: 0,
                next_row: 0,
                count: 0,
            });
            xlsx.start_sheet(i)?;
        }
        Ok(xlsx)
    }

    /// Starts the next sheet of table `table` with its header row.
    fn start_sheet(&mut self, table: usize) -> Result<(), AppError> {
        let t = &mut self.sheets[table];
        t.count += 1;
        let suffix = if t.count == 1 {
            String::new()
        } else {
            format!(" ({})", t.count)
        };
        let name = sheet_name(&t.name, &suffix, &self.taken);
        self.taken.push(name.clone());
        t.index = self.taken.len() - 1;
        t.next_row = 1;
        let sheet = self
            .workbook
            .add_worksheet_with_constant_memory()
            .map_err(xlsx_error)?;
        sheet.set_name(name).map_err(xlsx_error)?;
        for (c, header) in t.headers.iter().enumerate() {
            sheet
                .write_string_with_format(0, c as u16, header, &self.bold)
                .map_err(xlsx_error)?;
        }
        Ok(())
    }
}

impl Output for Xlsx {
    fn add(&mut self, s: &Prepared) -> Result<(), AppError> {
        for (table, row) in &s.rows {
            let Some(t) = self.sheets.get(*table) else {
                return Err(AppError::internal("a row for a table the layout lacks"));
            };
            if t.next_row >= self.rows_per_sheet {
                self.start_sheet(*table)?;
            }
            let t = &mut self.sheets[*table];
            let (r, index) = (t.next_row, t.index);
            t.next_row += 1;
            let sheet = self
                .workbook
                .worksheet_from_index(index)
                .map_err(xlsx_error)?;
            for (c, cell) in row.iter().enumerate() {
                let c = c as u16;
                match cell {
                    Cell::Empty => {}
                    Cell::Text(t) => {
                        sheet.write_string(r, c, t).map_err(xlsx_error)?;
                    }
                    Cell::Number(n) => match n.as_f64() {
                        Some(f) => {
                            sheet.write_number(r, c, f).map_err(xlsx_error)?;
                        }
                        None => {
                            sheet
                                .write_string(r, c, n.to_string())
                                .map_err(xlsx_error)?;
                        }
                    },
                }
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), AppError> {
        let path = self.path.clone();
        self.workbook.save(&path).map_err(xlsx_error)?;
        File::open(&path)?.sync_all()?;
        Ok(())
    }
}

/// A GeoJSON FeatureCollection, written feature by feature; submissions without a point at the
/// chosen field are left out.
pub struct GeoJson {
    out: BufWriter<File>,
    /// The root table's columns that become properties, with their JSON-encoded `"name":`.
    /// Where two columns share a header the first one is kept.
    properties: Vec<(usize, Vec<u8>)>,
    field: Option<String>,
    candidates: Vec<String>,
    first: bool,
}

fn json_error(e: serde_json::Error) -> AppError {
    AppError::internal(format!("cannot write GeoJSON: {e}"))
}

impl GeoJson {
    pub fn create(
        layout: &Layout,
        path: &Path,
        field: Option<String>,
    ) -> Result<GeoJson, AppError> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(b"{\"type\":\"FeatureCollection\",\"features\":[\n")?;
        let mut seen = HashSet::new();
        let mut properties = Vec::new();
        for (column, header) in layout.headers(0).into_iter().enumerate() {
            if seen.insert(header.clone()) {
                let mut key = serde_json::to_vec(&header).map_err(json_error)?;
                key.push(b':');
                properties.push((column, key));
            }
        }
        Ok(GeoJson {
            out,
            properties,
            field,
            candidates: layout.geopoints.clone(),
            first: true,
        })
    }

    fn point(&self, values: &Value) -> Option<geojson::Geometry> {
        let text = |path: &str| values.get(path).and_then(Value::as_str);
        let raw = match &self.field {
            Some(f) => text(f),
            None => self.candidates.iter().find_map(|p| text(p)),
        }?;
        let g = fieldtally_forms::Geopoint::parse(raw).ok()?;
        Some(match g.alt {
            Some(alt) => geojson::Geometry::new_point([g.lon, g.lat, alt]),
            None => geojson::Geometry::new_point([g.lon, g.lat]),
        })
    }
}

impl Output for GeoJson {
    /// Writes the feature straight from the row's cells: building a `geojson::Feature` would
    /// copy every header and value of every submission first.
    fn add(&mut self, s: &Prepared) -> Result<(), AppError> {
        let Some(geometry) = self.point(&s.values) else {
            return Ok(());
        };
        let Some((_, root)) = s.rows.iter().find(|(t, _)| *t == 0) else {
            return Ok(());
        };
        let out = &mut self.out;
        if !self.first {
            out.write_all(b",\n")?;
        }
        self.first = false;
        out.write_all(b"{\"type\":\"Feature\",\"geometry\":")?;
        serde_json::to_writer(&mut *out, &geometry).map_err(json_error)?;
        out.write_all(b",\"properties\":{")?;
        for (n, (column, key)) in self.properties.iter().enumerate() {
            if n > 0 {
                out.write_all(b",")?;
            }
            out.write_all(key)?;
            match root.get(*column) {
                None | Some(Cell::Empty) => out.write_all(b"null")?,
                Some(Cell::Text(t)) => serde_json::to_writer(&mut *out, t).map_err(json_error)?,
                Some(Cell::Number(n)) => serde_json::to_writer(&mut *out, n).map_err(json_error)?,
            }
        }
        out.write_all(b"}}")?;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), AppError> {
        let mut out = self.out;
        out.write_all(b"\n]}\n")?;
        out.into_inner()
            .map_err(|e| AppError::Io(e.into_error()))?
            .sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn opened_sensitive_values_merge_into_their_places() {
        let mut values = json!({"year": 1998, "children": [{"age": 2}, {"age": 4}]});
        merge(
            &mut values,
            json!({"name": "Mai", "children": [{"child_name": "A"}, {"child_name": "B"}]}),
        );
        assert_eq!(
            values,
            json!({"year": 1998, "name": "Mai", "children": [{"age": 2, "child_name": "A"}, {"age": 4, "child_name": "B"}]})
        );
    }

    #[test]
    fn sheet_names_are_short_clean_and_unique() {
        let taken = vec!["household_visit-members-visits-".to_string()];
        let name = sheet_name("household_visit-members-visits-notes", "", &taken);
        assert_eq!(name, "household_visit-members-visit~2");
        assert_eq!(name.chars().count(), 31);
        assert_eq!(sheet_name("a/b:c", "", &[]), "a_b_c");
        let next = sheet_name("household_visit-members-visits-notes", " (2)", &taken);
        assert_eq!(next, "household_visit-members-vis (2)");
    }

    #[test]
    fn a_table_longer_than_a_sheet_goes_on_in_numbered_sheets_under_its_header() {
        use calamine::Reader;
        let table = |name: &str, parent| crate::exports::layout::Table {
            path: name.into(),
            name: name.into(),
            parent,
            key_in_parent: name.into(),
            columns: Vec::new(),
        };
        let layout = Layout {
            tables: vec![table("visit", None), table("visit-members", Some(0))],
            geopoints: Vec::new(),
            lang: None,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.xlsx");
        let mut xlsx = Xlsx::create(&layout, &path, dir.path()).expect("workbook");
        xlsx.rows_per_sheet = 3;
        for i in 0..3 {
            let members = (0..2).map(|m| {
                let key = Cell::Text(format!("m{i}.{m}"));
                (1, vec![Cell::Text(format!("s{i}")), key])
            });
            let rows = std::iter::once((0, vec![Cell::Text(format!("s{i}"))]))
                .chain(members)
                .collect();
            xlsx.add(&Prepared {
                rows,
                values: Value::Null,
                files: Vec::new(),
            })
            .expect("rows");
        }
        Box::new(xlsx).finish().expect("saved");

        let mut book = calamine::open_workbook_auto(&path).expect("xlsx");
        assert_eq!(
            book.sheet_names(),
            [
                "visit",
                "visit-members",
                "visit-members (2)",
                "visit (2)",
                "visit-members (3)"
            ]
        );
        let cells = |book: &mut calamine::Sheets<_>, sheet: &str| -> Vec<Vec<String>> {
            book.worksheet_range(sheet)
                .expect("sheet")
                .rows()
                .map(|r| r.iter().map(|c| c.to_string()).collect())
                .collect()
        };
        let keys = |rows: Vec<Vec<String>>| -> Vec<String> {
            rows.into_iter().skip(1).map(|r| r[0].clone()).collect()
        };
        assert_eq!(keys(cells(&mut book, "visit")), ["s0", "s1"]);
        assert_eq!(cells(&mut book, "visit (2)")[1][0], "s2");
        for sheet in ["visit-members", "visit-members (2)", "visit-members (3)"] {
            assert_eq!(
                cells(&mut book, sheet)[0][..2],
                ["PARENT_KEY", "KEY"],
                "{sheet}"
            );
        }
        let members: Vec<String> = ["visit-members", "visit-members (2)", "visit-members (3)"]
            .iter()
            .flat_map(|s| {
                cells(&mut book, s)
                    .into_iter()
                    .skip(1)
                    .map(|r| r[1].clone())
            })
            .collect();
        assert_eq!(members, ["m0.0", "m0.1", "m1.0", "m1.1", "m2.0", "m2.1"]);
    }

    #[test]
    fn geojson_features_are_written_as_the_geojson_crate_reads_them() {
        let column = |path: &str, header: &str| crate::exports::layout::Column {
            path: path.into(),
            key: path.into(),
            header: header.into(),
            sensitive: false,
            numeric: false,
        };
        let layout = Layout {
            tables: vec![crate::exports::layout::Table {
                path: String::new(),
                name: "visit".into(),
                parent: None,
                key_in_parent: String::new(),
                columns: vec![
                    column("note", "Ghi chú \"A\""),
                    column("size", "size"),
                    column("other", "Ghi chú \"A\""),
                    column("location", "location"),
                ],
            }],
            geopoints: vec!["location".into()],
            lang: None,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.geojson");
        let mut geo = GeoJson::create(&layout, &path, None).expect("file");
        let meta = (0..8).map(|i| {
            if i == 5 {
                Cell::Empty
            } else {
                Cell::Text(format!("m{i}"))
            }
        });
        for (n, location) in [Some("21.5 103.25 600 5"), None, Some("21.75 103.5")]
            .into_iter()
            .enumerate()
        {
            let mut row: Vec<Cell> = meta.clone().collect();
            row.push(Cell::Text(format!("dòng \"{n}\"\n\\")));
            row.push(Cell::Number(serde_json::Number::from(n)));
            row.push(Cell::Text("not this one".into()));
            row.push(Cell::Empty);
            geo.add(&Prepared {
                rows: vec![(0, row)],
                values: serde_json::json!({ "location": location }),
                files: Vec::new(),
            })
            .expect("feature");
        }
        Box::new(geo).finish().expect("written");

        let text = std::fs::read_to_string(&path).expect("file");
        let collection: geojson::FeatureCollection = text
            .parse::<geojson::GeoJson>()
            .expect("GeoJSON")
            .try_into()
            .expect("a collection");
        // The submission without a point is left out.
        assert_eq!(collection.features.len(), 2);
        let second = &collection.features[1];
        assert_eq!(
            serde_json::to_value(second.geometry.as_ref().expect("point")).expect("json"),
            serde_json::json!({ "type": "Point", "coordinates": [103.5, 21.75] })
        );
        let properties = collection.features[0].properties.as_ref().expect("props");
        let names: Vec<&str> = properties.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "KEY",
                "SubmissionDate",
                "form_version",
                "collector",
                "review_state",
                "hamlet_code",
                "activity_date",
                "instance_id",
                "Ghi chú \"A\"",
                "size",
                "location"
            ]
        );
        assert_eq!(properties["hamlet_code"], Value::Null);
        assert_eq!(properties["Ghi chú \"A\""], "dòng \"0\"\n\\");
        assert_eq!(properties["size"], 0);
        assert_eq!(second.property("size"), Some(&serde_json::json!(2)));
    }

    #[test]
    fn submission_times_are_utc_to_the_millisecond() {
        let t = chrono::NaiveDate::from_ymd_opt(2025, 12, 31)
            .and_then(|d| d.and_hms_micro_opt(23, 59, 58, 123_456))
            .expect("time");
        assert_eq!(timestamp(t), "2025-12-31T23:59:58.123Z");
    }
}
