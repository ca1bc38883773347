//! The Project 8 report workbook for the central Women's Union: a summary sheet with the
//! province's totals, and a sheet per content area of the plan with each measure by district (on
//! the map of the activity dates) and by commune, with targets and achievement. The figures are
//! the values table's ([`super::query::values`]), read in one snapshot, so the workbook and the
//! API cannot disagree; suppressed cells stay suppressed.

use chrono::{FixedOffset, NaiveDateTime};
use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use super::contribution::Basis;
use super::period::Period;
use super::query::{self, ValueRow, ValuesRequest, ValuesTable};
use super::registry::MapKind;
use super::Indicators;
use crate::areas::Level;
use crate::db::Conn;
use crate::error::AppError;

/// What the workbook shows in place of a suppressed figure.
pub const SUPPRESSED: &str = "<5";

/// The column headings of every table, in order.
pub const HEADINGS: [&str; 13] = [
    "Nội dung",
    "Mã chỉ tiêu",
    "Chỉ tiêu",
    "Mã chỉ số",
    "Đơn vị tính",
    "Cấp",
    "Mã địa bàn",
    "Địa bàn",
    "Kết quả",
    "Tử số",
    "Mẫu số",
    "Kế hoạch",
    "Tỷ lệ đạt kế hoạch (%)",
];

const CONTENT_AREAS: [&str; 4] = [
    "Tuyên truyền, vận động thay đổi \"nếp nghĩ, cách làm\"",
    "Xây dựng và nhân rộng các mô hình thay đổi \"cuộc sống\"",
    "Bảo đảm tiếng nói và sự tham gia thực chất của phụ nữ",
    "Trang bị kiến thức về bình đẳng giới, kỹ năng lồng ghép giới",
];

/// The figures of one report: the province's totals, and the districts (as-recorded map only)
/// and communes of the province.
pub struct Figures {
    pub year: i32,
    pub basis: Basis,
    pub map: MapKind,
    pub cut_off: NaiveDateTime,
    pub province: ValuesTable,
    pub districts: Option<ValuesTable>,
    pub communes: ValuesTable,
}

/// Reads the figures in one snapshot of the database.
pub fn figures(
    conn: &mut Conn<'_>,
    indicators: &Indicators,
    year: i32,
    basis: Basis,
    map: MapKind,
) -> Result<Figures, AppError> {
    conn.transaction(|conn| {
        if let Conn::Pg(c) = conn {
            diesel::connection::SimpleConnection::batch_execute(
                &mut **c,
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            )?;
        }
        let request = |level| ValuesRequest {
            period: Period::Year(year),
            area: None,
            level: Some(level),
            by: Vec::new(),
            basis,
            map,
            indicators: Vec::new(),
            snapshot: None,
        };
        let province = query::values(conn, indicators, &request(Level::Province))?;
        let districts = match map {
            MapKind::AsRecorded => {
                Some(query::values(conn, indicators, &request(Level::District))?)
            }
            MapKind::Current => None,
        };
        let communes = query::values(conn, indicators, &request(Level::Commune))?;
        Ok(Figures {
            year,
            basis,
            map,
            cut_off: province.cut_off,
            province,
            districts,
            communes,
        })
    })
}

fn xlsx(e: XlsxError) -> AppError {
    AppError::internal(format!("cannot write the report workbook: {e}"))
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Province => "Tỉnh",
        Level::District => "Huyện",
        Level::Commune => "Xã",
        Level::Hamlet => "Thôn, bản",
    }
}

struct Styles {
    title: Format,
    heading: Format,
    number: Format,
    total: Format,
}

/// Writes the title, cut-off and basis lines, and the column headings; returns the next row.
fn preamble(
    sheet: &mut Worksheet,
    styles: &Styles,
    f: &Figures,
    title: &str,
) -> Result<u32, AppError> {
    let local = f.cut_off.and_utc().with_timezone(
        &FixedOffset::east_opt(7 * 3600)
            .ok_or_else(|| AppError::internal("the Vietnam time offset"))?,
    );
    let basis = match f.basis {
        Basis::Confirmed => "Số liệu đã được duyệt (confirmed)",
        Basis::Provisional => "Số liệu tạm tính: mọi báo cáo chưa bị từ chối (provisional)",
    };
    let map = match f.map {
        MapKind::Current => {
            "Địa giới hành chính hiện hành (xã, phường từ ngày 01/7/2025) (current)"
        }
        MapKind::AsRecorded => {
            "Địa giới hành chính tại thời điểm hoạt động (huyện, xã trước ngày 01/7/2025) (as-recorded)"
        }
    };
    let lines = [
        format!("Số liệu tính đến: {} (giờ Việt Nam)", local.format("%H:%M ngày %d/%m/%Y")),
        format!("Cơ sở số liệu: {basis}"),
        format!("Bản đồ: {map}"),
        format!(
            "Ô có giá trị dưới {} của chỉ số nhạy cảm được ẩn ({SUPPRESSED}) để bảo vệ người được hỗ trợ.",
            query::SUPPRESS_BELOW
        ),
    ];
    sheet
        .write_string_with_format(0, 0, title, &styles.title)
        .map_err(xlsx)?;
    for (i, line) in lines.iter().enumerate() {
        sheet.write_string(1 + i as u32, 0, line).map_err(xlsx)?;
    }
    let header_row = 6;
    for (c, h) in HEADINGS.iter().enumerate() {
        sheet
            .write_string_with_format(header_row, c as u16, *h, &styles.heading)
            .map_err(xlsx)?;
    }
    sheet.set_freeze_panes(header_row + 1, 0).map_err(xlsx)?;
    sheet.set_column_width(2, 50).map_err(xlsx)?;
    sheet.set_column_width(4, 30).map_err(xlsx)?;
    sheet.set_column_width(7, 24).map_err(xlsx)?;
    Ok(header_row + 1)
}

fn number(
    sheet: &mut Worksheet,
    row: u32,
    col: u16,
    value: Option<f64>,
    format: &Format,
) -> Result<(), AppError> {
    if let Some(v) = value {
        sheet
            .write_number_with_format(row, col, v, format)
            .map_err(xlsx)?;
    }
    Ok(())
}

fn write_row(
    sheet: &mut Worksheet,
    styles: &Styles,
    indicators: &Indicators,
    row: u32,
    r: &ValueRow,
) -> Result<(), AppError> {
    let defs = indicators.definitions();
    let indicator = defs.indicator(&r.indicator);
    let content = indicator
        .and_then(|i| i.content)
        .map(|c| c.to_string())
        .unwrap_or_default();
    let wording = indicator.map(|i| i.wording.vi.as_str()).unwrap_or("");
    let format = if r.level == Level::Province {
        &styles.total
    } else {
        &styles.number
    };
    let area_name = if r.level == Level::Province {
        format!("Toàn tỉnh ({})", r.area_name)
    } else {
        r.area_name.clone()
    };
    let texts = [
        content.as_str(),
        r.indicator.as_str(),
        wording,
        r.measure.as_str(),
        r.unit.vi.as_str(),
        level_name(r.level),
        r.area.as_str(),
        area_name.as_str(),
    ];
    for (c, t) in texts.iter().enumerate() {
        sheet.write_string(row, c as u16, *t).map_err(xlsx)?;
    }
    if r.suppressed && r.value.is_none() {
        sheet
            .write_string_with_format(row, 8, SUPPRESSED, format)
            .map_err(xlsx)?;
    } else {
        number(sheet, row, 8, r.value, format)?;
    }
    number(sheet, row, 9, r.numerator.map(|n| n as f64), format)?;
    number(sheet, row, 10, r.denominator, format)?;
    number(sheet, row, 11, r.target, format)?;
    number(sheet, row, 12, r.achievement, format)?;
    Ok(())
}

/// The workbook's bytes.
pub fn workbook(indicators: &Indicators, f: &Figures) -> Result<Vec<u8>, AppError> {
    let mut book = Workbook::new();
    let styles = Styles {
        title: Format::new().set_bold().set_font_size(14),
        heading: Format::new()
            .set_bold()
            .set_text_wrap()
            .set_border(rust_xlsxwriter::FormatBorder::Thin),
        number: Format::new().set_num_format("#,##0.##"),
        total: Format::new().set_bold().set_num_format("#,##0.##"),
    };
    let defs = indicators.definitions();
    let summary = book.add_worksheet();
    summary.set_name("Tổng hợp").map_err(xlsx)?;
    let first = preamble(
        summary,
        &styles,
        f,
        &format!(
            "BÁO CÁO KẾT QUẢ THỰC HIỆN DỰ ÁN 8 NĂM {} - TỈNH SƠN LA: TỔNG HỢP TOÀN TỈNH",
            f.year
        ),
    )?;
    for (row, r) in (first..).zip(&f.province.rows) {
        write_row(summary, &styles, indicators, row, r)?;
    }
    let mut contents: Vec<Option<u8>> = defs.indicators.iter().map(|i| i.content).collect();
    contents.sort();
    contents.dedup();
    for content in contents {
        let codes: Vec<&str> = defs
            .indicators
            .iter()
            .filter(|i| i.content == content)
            .map(|i| i.code.as_str())
            .collect();
        let (name, title) = match content {
            Some(c) => (
                format!("Nội dung {c}"),
                format!(
                    "NỘI DUNG {c}: {}",
                    CONTENT_AREAS
                        .get(usize::from(c).wrapping_sub(1))
                        .copied()
                        .unwrap_or("")
                        .to_uppercase()
                ),
            ),
            None => ("Chỉ tiêu khác".to_string(), "CÁC CHỈ TIÊU KHÁC".to_string()),
        };
        let sheet = book.add_worksheet();
        sheet.set_name(&name).map_err(xlsx)?;
        let mut row = preamble(
            sheet,
            &styles,
            f,
            &format!("DỰ ÁN 8 NĂM {} - {title}", f.year),
        )?;
        // Each measure: the province's total, then its districts, then its communes.
        for measure in defs.numbered().map(|(_, m)| m) {
            if !codes.contains(&measure.indicator.as_str()) {
                continue;
            }
            let tables = [Some(&f.province), f.districts.as_ref(), Some(&f.communes)];
            for table in tables.into_iter().flatten() {
                for r in table
                    .rows
                    .iter()
                    .filter(|r| r.indicator == measure.indicator && r.measure == measure.name)
                {
                    write_row(sheet, &styles, indicators, row, r)?;
                    row += 1;
                }
            }
        }
    }
    book.save_to_buffer().map_err(xlsx)
}
