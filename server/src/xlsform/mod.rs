//! XLSForm workbooks (`.xlsx`, `.xls`, `.ods`) converted to XForms inside the server with the
//! `rxform` crate, so form designers upload the spreadsheet they edit and no Python service is
//! needed.
//!
//! The promise is pyxform's output exactly: phones get what pyxform 4.5.0 would have generated
//! from the same workbook. rxform gets most forms right; [`parity`] corrects the places where it is
//! known to differ (relative references inside repeats, the order of `<itext>` entries, untagged
//! columns in translated forms)
//! and refuses, with the cell to blame, the few constructs whose output it cannot vouch for.
//! Conversion has no I/O: bytes in, XForm bytes out.

mod parity;
mod warnings;

use std::panic::{catch_unwind, AssertUnwindSafe};

use chrono::{DateTime, FixedOffset, Offset as _, Utc};
use rxform::xls::Workbook;

use crate::error::Detail;

const XLSX_TYPE: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const XLS_TYPE: &str = "application/vnd.ms-excel";
const ODS_TYPE: &str = "application/vnd.oasis.opendocument.spreadsheet";

/// The spreadsheet formats the converter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xlsx,
    Xls,
    Ods,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Xlsx => "xlsx",
            Format::Xls => "xls",
            Format::Ods => "ods",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Xlsx => XLSX_TYPE,
            Format::Xls => XLS_TYPE,
            Format::Ods => ODS_TYPE,
        }
    }
}

/// Recognises a workbook by its declared content type, or else by the file's first bytes: a zip
/// (`PK\x03\x04`) is an `.xlsx` unless its first entry declares OpenDocument, and an OLE compound
/// file (`D0 CF 11 E0`) is an `.xls`. Anything else is not a workbook (an XForm, presumably).
pub fn sniff(bytes: &[u8], content_type: Option<&str>) -> Option<Format> {
    let declared = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    match declared.as_deref() {
        Some(XLSX_TYPE) => return Some(Format::Xlsx),
        Some(XLS_TYPE) => return Some(Format::Xls),
        Some(ODS_TYPE) => return Some(Format::Ods),
        _ => {}
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return Some(if is_ods(bytes) {
            Format::Ods
        } else {
            Format::Xlsx
        });
    }
    if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return Some(Format::Xls);
    }
    None
}

/// An OpenDocument file starts with an uncompressed zip entry `mimetype` holding its media type.
fn is_ods(bytes: &[u8]) -> bool {
    let field = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let (Some(name_len), Some(extra_len)) = (field(26), field(28)) else {
        return false;
    };
    let name = bytes.get(30..30 + name_len);
    let data_at = 30 + name_len + extra_len;
    name == Some(b"mimetype".as_slice())
        && bytes
            .get(data_at..)
            .is_some_and(|d| d.starts_with(ODS_TYPE.as_bytes()))
}

/// Why a workbook was not turned into a form; nothing is stored.
#[derive(Debug, Clone)]
pub struct ConvertError {
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Detail>,
}

impl ConvertError {
    /// A mistake in the workbook that the designer can fix (pyxform refuses it too).
    fn invalid(detail: Detail) -> Self {
        ConvertError {
            code: "invalid_xlsform",
            message: format!("the XLSForm cannot be converted: {}", describe(&detail)),
            details: vec![detail],
        }
    }

    /// Valid XLSForm that this server cannot convert exactly as pyxform would.
    fn unsupported(detail: Detail) -> Self {
        ConvertError {
            code: "xlsform_unsupported",
            message: format!(
                "this XLSForm uses something the server cannot yet convert exactly as pyxform does, so it was not stored: {}; convert it with pyxform (xls2xform) and upload the XForm XML instead",
                describe(&detail)
            ),
            details: vec![detail],
        }
    }
}

impl From<ConvertError> for crate::error::AppError {
    fn from(e: ConvertError) -> Self {
        crate::error::AppError::Detailed {
            status: actix_web::http::StatusCode::BAD_REQUEST,
            code: e.code,
            message: e.message,
            details: e.details,
        }
    }
}

/// "[sheet 'survey', row 3, column 'type'] unknown question type": a detail in one line.
pub fn describe(d: &Detail) -> String {
    let mut at = Vec::new();
    if let Some(s) = &d.sheet {
        at.push(format!("sheet '{s}'"));
    }
    if let Some(r) = d.row {
        at.push(format!("row {r}"));
    }
    if let Some(c) = &d.column {
        at.push(format!("column '{c}'"));
    }
    if at.is_empty() {
        d.message.clone()
    } else {
        format!("[{}] {}", at.join(", "), d.message)
    }
}

pub(crate) fn detail(
    sheet: &str,
    row: Option<usize>,
    column: Option<&str>,
    message: impl Into<String>,
) -> Detail {
    Detail {
        sheet: Some(sheet.to_string()),
        row,
        column: column.map(str::to_string),
        message: message.into(),
    }
}

impl From<rxform::Error> for ConvertError {
    fn from(e: rxform::Error) -> Self {
        let message = match &e.hint {
            Some(hint) => format!("{}; probable cause: {hint}", e.message),
            None => e.message.clone(),
        };
        ConvertError::invalid(Detail {
            sheet: e.location.sheet.clone(),
            row: e.location.row,
            column: e.location.column.clone(),
            message,
        })
    }
}

/// Reads a workbook from bytes.
pub fn read(bytes: &[u8]) -> Result<Workbook, ConvertError> {
    guarded(|| Ok(rxform::xls::read_workbook_from_bytes(bytes)?))
}

/// A parser of untrusted spreadsheets must not take the server down: a panic inside the
/// converter becomes an error about the workbook.
fn guarded<T>(f: impl FnOnce() -> Result<T, ConvertError>) -> Result<T, ConvertError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(ConvertError::invalid(Detail {
            sheet: None,
            row: None,
            column: None,
            message:
                "the workbook could not be read; save it again from Excel or LibreOffice as .xlsx"
                    .into(),
        }))
    })
}

/// The form an XLSForm describes.
#[derive(Debug, Clone)]
pub struct Conversion {
    pub form_id: String,
    pub version: String,
    /// The settings sheet had no version; `version` was derived from the upload time.
    pub version_derived: bool,
    /// The XForm phones receive: pyxform's output for this workbook.
    pub xform: Vec<u8>,
    /// Files the form needs beside it, generated from the workbook (`itemsets.csv` for
    /// `select_one_external`), as (file name, bytes).
    pub media: Vec<(String, Vec<u8>)>,
    pub warnings: Vec<Detail>,
}

/// The settings sheet's `version`, if it has one.
pub fn settings_version(workbook: &Workbook) -> Option<String> {
    settings_value(workbook, "version")
}

fn settings_value(workbook: &Workbook, key: &str) -> Option<String> {
    let (_, row) = workbook.settings.rows.first()?;
    row.iter()
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The version given to a form whose settings sheet has none: the upload time in Vietnam
/// (UTC+7, no daylight saving) as the number `yyyymmddHH`, the same shape as the
/// `yyyymmddnn` versions XLSForm designers write by hand. It stays below 2^31 (some ODK tools
/// read versions as 32-bit integers) and grows with time, so a later upload gets a later
/// version.
pub fn time_version(at: DateTime<Utc>) -> u64 {
    let vietnam = FixedOffset::east_opt(7 * 3600).unwrap_or_else(|| Utc.fix());
    at.with_timezone(&vietnam)
        .format("%Y%m%d%H")
        .to_string()
        .parse()
        .unwrap_or_default()
}

/// Converts a workbook. `fallback_name` (the uploaded file's name without extension) stands in
/// for the form id and title when the settings sheet has none, as with pyxform. When the
/// settings sheet has no version, `derived_version` is written into it before conversion, so
/// the XForm is exactly pyxform's output for the workbook with that version filled in.
pub fn convert(
    workbook: &Workbook,
    fallback_name: Option<&str>,
    derived_version: u64,
) -> Result<Conversion, ConvertError> {
    guarded(|| convert_unguarded(workbook, fallback_name, derived_version))
}

fn convert_unguarded(
    workbook: &Workbook,
    fallback_name: Option<&str>,
    derived_version: u64,
) -> Result<Conversion, ConvertError> {
    let mut workbook = workbook.clone();
    let version_derived = settings_version(&workbook).is_none();
    if version_derived {
        set_setting(&mut workbook, "version", &derived_version.to_string());
    }
    let fallback = match (settings_value(&workbook, "form_id"), fallback_name) {
        (Some(_), _) => "data".to_string(),
        (None, Some(name)) => name.to_string(),
        (None, None) => {
            return Err(ConvertError::invalid(detail(
                "settings",
                None,
                Some("form_id"),
                "the settings sheet has no form_id; add one (it identifies the form on every phone), or upload the workbook with its file name",
            )))
        }
    };
    let mut survey = rxform::parser::parse(&workbook, &fallback)?;
    parity::refuse_unsupported(&survey)?;
    parity::default_language_keys(&mut survey);
    parity::relative_references(&mut survey)?;
    let xml = rxform::xform::generate(&survey)?;
    let xml = parity::relative_outputs(&xml, &survey)?;
    let xml = parity::itext_order(&xml, &survey, &workbook)?;
    let mut media = Vec::new();
    if let Some(csv) = rxform::xform::itemsets_csv(&survey) {
        media.push(("itemsets.csv".to_string(), csv.into_bytes()));
    }
    let version = survey.settings.version.clone().unwrap_or_default();
    Ok(Conversion {
        form_id: survey.id_string.clone(),
        version,
        version_derived,
        warnings: warnings::collect(&survey, &workbook),
        xform: xml.into_bytes(),
        media,
    })
}

/// Sets a value on the settings sheet's first row, adding the sheet, row or column as needed.
fn set_setting(workbook: &mut Workbook, key: &str, value: &str) {
    let settings = &mut workbook.settings;
    let header = settings
        .headers
        .iter()
        .find(|h| h.trim().eq_ignore_ascii_case(key))
        .cloned();
    let header = match header {
        Some(h) => h,
        None => {
            settings.headers.push(key.to_string());
            key.to_string()
        }
    };
    if settings.rows.is_empty() {
        settings.rows.push((2, Default::default()));
    }
    if let Some((_, row)) = settings.rows.first_mut() {
        row.insert(header, value.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rxform::xls::{sheet_from_rows, Sheet};

    pub(super) fn sheet(rows: &[&[&str]]) -> Sheet {
        sheet_from_rows(
            rows.iter()
                .map(|r| r.iter().map(|c| c.to_string()).collect()),
        )
    }

    pub(super) fn workbook(
        survey: &[&[&str]],
        choices: &[&[&str]],
        settings: &[&[&str]],
    ) -> Workbook {
        Workbook {
            survey: sheet(survey),
            choices: sheet(choices),
            settings: sheet(settings),
            ..Default::default()
        }
    }

    pub(super) fn xml_of(wb: &Workbook) -> String {
        let c = convert(wb, Some("t"), 2025080110).expect("converts");
        String::from_utf8(c.xform).expect("utf8")
    }

    #[test]
    fn workbooks_are_recognised_by_content_type_or_signature() {
        assert_eq!(sniff(b"anything", Some(XLSX_TYPE)), Some(Format::Xlsx));
        assert_eq!(
            sniff(
                b"anything",
                Some("application/vnd.ms-excel; charset=binary")
            ),
            Some(Format::Xls)
        );
        assert_eq!(sniff(b"anything", Some(ODS_TYPE)), Some(Format::Ods));
        assert_eq!(sniff(b"PK\x03\x04rest", None), Some(Format::Xlsx));
        assert_eq!(
            sniff(b"PK\x03\x04rest", Some("application/octet-stream")),
            Some(Format::Xlsx)
        );
        assert_eq!(
            sniff(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0], None),
            Some(Format::Xls)
        );
        assert_eq!(
            sniff(b"<?xml version='1.0'?><h:html/>", Some("text/xml")),
            None
        );
        assert_eq!(sniff(b"", None), None);
        // A zip whose first entry is the OpenDocument mimetype, as LibreOffice writes it.
        let mut ods = b"PK\x03\x04".to_vec();
        ods.extend_from_slice(&[0u8; 22]);
        ods.extend_from_slice(&8u16.to_le_bytes());
        ods.extend_from_slice(&0u16.to_le_bytes());
        ods.extend_from_slice(b"mimetype");
        ods.extend_from_slice(ODS_TYPE.as_bytes());
        assert_eq!(sniff(&ods, None), Some(Format::Ods));
    }

    #[test]
    fn the_time_version_is_the_vietnam_hour() {
        let at = DateTime::parse_from_rfc3339("2025-08-01T20:30:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(
            time_version(at),
            2025080203,
            "20:30 UTC is 03:30 the next day in Vietnam"
        );
        assert!(time_version(at) < (1u64 << 31));
    }

    #[test]
    fn a_missing_version_is_filled_in_and_an_existing_one_kept() {
        let survey: &[&[&str]] = &[&["type", "name", "label"], &["text", "a", "A"]];
        let c = convert(
            &workbook(survey, &[], &[&["form_id"], &["f"]]),
            None,
            2025080110,
        )
        .expect("converts");
        assert_eq!(c.version, "2025080110");
        assert!(c.version_derived);
        assert!(String::from_utf8_lossy(&c.xform).contains(r#"version="2025080110""#));

        let c = convert(
            &workbook(survey, &[], &[&["form_id", "version"], &["f", "7"]]),
            None,
            2025080110,
        )
        .expect("converts");
        assert_eq!((c.version.as_str(), c.version_derived), ("7", false));

        // No settings sheet at all: the file name is the form id, as with pyxform.
        let c =
            convert(&workbook(survey, &[], &[]), Some("household"), 2025080110).expect("converts");
        assert_eq!(c.form_id, "household");
        assert_eq!(c.version, "2025080110");
    }

    #[test]
    fn without_form_id_or_file_name_the_settings_cell_is_named() {
        let e = convert(
            &workbook(&[&["type", "name", "label"], &["text", "a", "A"]], &[], &[]),
            None,
            1,
        )
        .expect_err("no form id");
        assert_eq!(e.code, "invalid_xlsform");
        assert_eq!(e.details[0].sheet.as_deref(), Some("settings"));
        assert_eq!(e.details[0].column.as_deref(), Some("form_id"));
    }

    #[test]
    fn mistakes_carry_sheet_row_and_column() {
        let e = convert(
            &workbook(
                &[
                    &["type", "name", "label"],
                    &["text", "a", "A"],
                    &["integr", "b", "B"],
                ],
                &[],
                &[&["form_id"], &["f"]],
            ),
            None,
            1,
        )
        .expect_err("unknown type");
        assert_eq!(e.code, "invalid_xlsform");
        let d = &e.details[0];
        assert_eq!(
            (d.sheet.as_deref(), d.row, d.column.as_deref()),
            (Some("survey"), Some(3), Some("type"))
        );
        assert!(
            d.message.contains("integr") && d.message.contains("integer"),
            "{}",
            d.message
        );
        assert!(e.message.contains("row 3"), "{}", e.message);
    }

    #[test]
    fn external_choices_become_an_itemsets_media_file() {
        let mut wb = workbook(
            &[
                &["type", "name", "label", "choice_filter"],
                &["select_one district", "district", "District", ""],
                &[
                    "select_one_external commune",
                    "commune",
                    "Commune",
                    "district=${district}",
                ],
            ],
            &[
                &["list_name", "name", "label"],
                &["district", "ml", "Mường La"],
            ],
            &[&["form_id"], &["f"]],
        );
        wb.external_choices = sheet(&[
            &["list_name", "name", "label", "district"],
            &["commune", "nc", "Ngọc Chiến", "ml"],
        ]);
        let c = convert(&wb, None, 1).expect("converts");
        let (name, csv) = c.media.first().expect("itemsets.csv");
        assert_eq!(name, "itemsets.csv");
        assert!(String::from_utf8_lossy(csv).contains("Ngọc Chiến"));
    }

    #[test]
    fn bytes_that_are_not_a_workbook_are_an_error_not_a_panic() {
        for junk in [
            &b"PK\x03\x04garbage"[..],
            &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 1, 2][..],
            b"",
        ] {
            let e = read(junk).expect_err("not a workbook");
            assert_eq!(e.code, "invalid_xlsform");
        }
    }
}
