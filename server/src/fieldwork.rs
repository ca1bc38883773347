//! Collectors in the field: the hamlets each collector works in, the per-collector list of
//! those hamlets that their forms pick from (`hamlets.csv`), and the QR code that puts a phone
//! into service.
//!
//! A collector with no hamlet assigned may record any hamlet of the registry (as a collector
//! with no form assigned may fill every open form).

use std::io::Write;

use base64::Engine;
use chrono::NaiveDate;
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::areas::{self, Area, Level};
use crate::db::schema::{areas as areas_table, hamlet_assignments};
use crate::db::Conn;
use crate::error::AppError;
use crate::on_conn;

/// The media file name through which forms pick the collector's hamlet
/// (`select_one_from_file hamlets.csv`).
pub const HAMLETS_CSV: &str = "hamlets.csv";

/// The codes of the hamlets assigned to the user, sorted; empty when none is.
pub fn assigned_codes(conn: &mut Conn<'_>, user_id: i64) -> Result<Vec<String>, AppError> {
    Ok(on_conn!(conn, c => hamlet_assignments::table
        .filter(hamlet_assignments::user_id.eq(user_id))
        .select(hamlet_assignments::hamlet_code)
        .order(hamlet_assignments::hamlet_code)
        .load(c))?)
}

/// Replaces the user's hamlets; every code must name a hamlet of the registry.
pub fn assign(conn: &mut Conn<'_>, user_id: i64, codes: &[String]) -> Result<(), AppError> {
    for code in codes {
        let versions = areas::versions_of(conn, code)?;
        if !versions.iter().any(|a| a.is(Level::Hamlet)) {
            return Err(AppError::not_found(
                "unknown_hamlet",
                format!("no hamlet has the code '{code}'; import hamlets with `fieldtally areas import`"),
            ));
        }
    }
    on_conn!(conn, c => diesel::delete(
        hamlet_assignments::table.filter(hamlet_assignments::user_id.eq(user_id)),
    )
    .execute(c))?;
    let mut unique: Vec<&String> = codes.iter().collect();
    unique.sort();
    unique.dedup();
    for code in unique {
        on_conn!(conn, c => diesel::insert_into(hamlet_assignments::table)
            .values((
                hamlet_assignments::user_id.eq(user_id),
                hamlet_assignments::hamlet_code.eq(code),
            ))
            .execute(c))?;
    }
    Ok(())
}

/// A hamlet as a collector sees it, with the commune it belongs to on the given day.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HamletChoice {
    pub code: String,
    pub name: String,
    pub commune_code: Option<String>,
    pub commune_name: Option<String>,
    pub demo: bool,
}

impl HamletChoice {
    /// The label phones show: the hamlet and its commune, since hamlet names repeat.
    pub fn label(&self) -> String {
        match &self.commune_name {
            Some(c) => format!("{} ({c})", self.name),
            None => self.name.clone(),
        }
    }
}

fn choice(conn: &mut Conn<'_>, hamlet: &Area) -> Result<HamletChoice, AppError> {
    let commune = match hamlet.parent_id {
        Some(id) => Some(areas::get(conn, id)?),
        None => None,
    };
    Ok(HamletChoice {
        code: hamlet.code.clone(),
        name: hamlet.name.clone(),
        commune_code: commune.as_ref().map(|c| c.code.clone()),
        commune_name: commune.map(|c| c.name),
        demo: hamlet.demo,
    })
}

/// The hamlets the user may record on `date`: their assignment (each hamlet in its version of
/// that day, or its latest version), or without an assignment every hamlet valid that day.
/// Sorted by commune, then hamlet name.
pub fn hamlet_choices(
    conn: &mut Conn<'_>,
    user_id: i64,
    date: NaiveDate,
) -> Result<Vec<HamletChoice>, AppError> {
    let codes = assigned_codes(conn, user_id)?;
    let hamlets: Vec<Area> = if codes.is_empty() {
        on_conn!(conn, c => areas_table::table
            .filter(areas_table::level.eq(Level::Hamlet.as_str()))
            .filter(areas_table::valid_from.is_null().or(areas_table::valid_from.le(date)))
            .filter(areas_table::valid_to.is_null().or(areas_table::valid_to.ge(date)))
            .select(Area::as_select())
            .load(c))?
    } else {
        let mut list = Vec::new();
        for code in &codes {
            let versions: Vec<Area> = areas::versions_of(conn, code)?
                .into_iter()
                .filter(|a| a.is(Level::Hamlet))
                .collect();
            let version = versions
                .iter()
                .find(|a| a.valid_on(date))
                .or_else(|| versions.iter().max_by_key(|a| a.valid_to))
                .cloned();
            list.extend(version);
        }
        list
    };
    let mut choices = hamlets
        .iter()
        .map(|h| choice(conn, h))
        .collect::<Result<Vec<_>, _>>()?;
    choices.sort_by(|a, b| {
        (&a.commune_name, &a.name, &a.code).cmp(&(&b.commune_name, &b.name, &b.code))
    });
    Ok(choices)
}

/// Whether the user may record the hamlet `code`.
pub fn may_record(conn: &mut Conn<'_>, user_id: i64, code: &str) -> Result<bool, AppError> {
    let assigned = assigned_codes(conn, user_id)?;
    if !assigned.is_empty() {
        return Ok(assigned.iter().any(|c| c == code));
    }
    Ok(areas::versions_of(conn, code)?
        .iter()
        .any(|a| a.is(Level::Hamlet)))
}

/// The `hamlets.csv` a collector's phone receives: columns `name` (the code, stored in the
/// submission) and `label`.
pub fn hamlets_csv(choices: &[HamletChoice]) -> Result<Vec<u8>, AppError> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let failed = |e: csv::Error| AppError::internal(format!("cannot write hamlets.csv: {e}"));
    writer.write_record(["name", "label"]).map_err(failed)?;
    for c in choices {
        writer
            .write_record([c.code.as_str(), c.label().as_str()])
            .map_err(failed)?;
    }
    writer
        .into_inner()
        .map_err(|e| AppError::internal(format!("cannot write hamlets.csv: {e}")))
}

/// The project name shown in Collect: "Dự án 8 – ‹commune›" for the communes of the
/// collector's hamlets.
pub fn project_name(choices: &[HamletChoice]) -> String {
    let mut communes: Vec<&str> = choices
        .iter()
        .filter_map(|c| c.commune_name.as_deref())
        .collect();
    communes.sort();
    communes.dedup();
    if communes.is_empty() {
        "Dự án 8".to_string()
    } else {
        format!("Dự án 8 – {}", communes.join(", "))
    }
}

/// The settings JSON that configures ODK Collect for a collector (ODK's client settings
/// schema): the server URL with the collector's app key, forms kept exactly in step with the
/// server, finalized forms sent over any network.
pub fn collect_settings(server_url: &str, project_name: &str) -> Result<Vec<u8>, AppError> {
    let settings = json!({
        "general": {
            "server_url": server_url,
            "form_update_mode": "match_exactly",
            "autosend": "wifi_and_cellular",
        },
        "admin": {},
        "project": {
            "name": project_name,
            "icon": "8",
            "color": "#c2185b",
        },
    });
    serde_json::to_vec(&settings)
        .map_err(|e| AppError::internal(format!("cannot encode settings: {e}")))
}

/// What the QR code holds, as Collect decodes it: base64 (standard alphabet) of the zlib
/// stream (RFC 1950, with header) of the settings JSON.
pub fn qr_payload(settings_json: &[u8]) -> Result<String, AppError> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(settings_json)?;
    let compressed = encoder.finish()?;
    Ok(base64::engine::general_purpose::STANDARD.encode(compressed))
}

/// The QR code of `payload` as a PNG image.
pub fn qr_png(payload: &str) -> Result<Vec<u8>, AppError> {
    let code = qrcode::QrCode::with_error_correction_level(payload.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| AppError::internal(format!("cannot make the QR code: {e}")))?;
    let image = code
        .render::<image::Luma<u8>>()
        .min_dimensions(360, 360)
        .build();
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| AppError::internal(format!("cannot encode the QR code: {e}")))?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn choice(code: &str, name: &str, commune: Option<&str>) -> HamletChoice {
        HamletChoice {
            code: code.into(),
            name: name.into(),
            commune_code: commune.map(|_| "c".into()),
            commune_name: commune.map(str::to_string),
            demo: false,
        }
    }

    #[test]
    fn the_hamlet_list_quotes_labels_that_need_it() {
        let csv = hamlets_csv(&[
            choice("H1", "Bản Nà", Some("Xã Chiềng Hặc")),
            choice("H2", "Bản \"Mới\", 2", None),
        ])
        .unwrap();
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "name,label\nH1,Bản Nà (Xã Chiềng Hặc)\nH2,\"Bản \"\"Mới\"\", 2\"\n"
        );
    }

    #[test]
    fn the_project_is_named_after_the_communes() {
        assert_eq!(project_name(&[]), "Dự án 8");
        let list = [
            choice("H1", "A", Some("Xã Chiềng Hặc")),
            choice("H2", "B", Some("Xã Chiềng Hặc")),
        ];
        assert_eq!(project_name(&list), "Dự án 8 – Xã Chiềng Hặc");
        let two = [
            choice("H1", "A", Some("Xã Mường Bang")),
            choice("H2", "B", Some("Phường Mộc Châu")),
        ];
        assert_eq!(
            project_name(&two),
            "Dự án 8 – Phường Mộc Châu, Xã Mường Bang"
        );
    }

    #[test]
    fn the_payload_is_base64_of_zlib_with_header() {
        let json = collect_settings("https://x.example/key/abc", "Dự án 8").unwrap();
        let payload = qr_payload(&json).unwrap();
        let compressed = base64::engine::general_purpose::STANDARD
            .decode(&payload)
            .unwrap();
        // RFC 1950 header: compression method 8, and the check bits make it a multiple of 31.
        assert_eq!(compressed[0] & 0x0f, 8);
        assert_eq!(
            (u16::from(compressed[0]) << 8 | u16::from(compressed[1])) % 31,
            0
        );
        let mut inflated = Vec::new();
        flate2::read::ZlibDecoder::new(compressed.as_slice())
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(inflated, json);
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["general"]["form_update_mode"], "match_exactly");
        assert_eq!(value["general"]["server_url"], "https://x.example/key/abc");
        assert!(value["admin"].is_object());
    }
}
