//! Strict checks of typed answers, and reduced-precision locations for protected forms.
//!
//! [`crate::extract`] keeps what it cannot type as text, so that no answer is ever lost. Some
//! types, though, must be right before a submission is stored: a location that is not a real
//! place breaks maps and area checks, and a date outside any plausible range breaks reporting
//! periods. ODK Collect never writes such values, so a submission carrying one was made by hand or
//! is hostile, and the server refuses it with the reason.

use serde_json::{Map, Value};

use crate::form::join;
use crate::{parse_geoshape, parse_geotrace, FieldKind, FormDef, FormError, Geopoint};

/// Earliest and latest years accepted in `date` and `dateTime` answers: no living person was
/// born before 1900, and no activity is planned after 2100.
pub const MIN_YEAR: u32 = 1900;
/// See [`MIN_YEAR`].
pub const MAX_YEAR: u32 = 2100;

/// Checks every geopoint, geotrace, geoshape, date, time and dateTime answer in `fields` (as
/// produced by [`crate::extract`] for `form`). Empty answers are fine.
pub fn check_values(form: &FormDef, fields: &Value) -> Result<(), FormError> {
    match fields {
        Value::Object(map) => check_object(form, "", map),
        _ => Ok(()),
    }
}

fn check_object(form: &FormDef, prefix: &str, map: &Map<String, Value>) -> Result<(), FormError> {
    for (key, value) in map {
        let path = join(prefix, key);
        match value {
            Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
                for item in items {
                    if let Value::Object(inner) = item {
                        check_object(form, &path, inner)?;
                    }
                }
            }
            Value::String(text) => {
                if let Some(field) = form.field(&path) {
                    check_text(&field.kind, text).map_err(|reason| FormError::InvalidAnswer {
                        path: path.clone(),
                        reason,
                    })?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_text(kind: &FieldKind, text: &str) -> Result<(), String> {
    match kind {
        FieldKind::Geopoint => Geopoint::parse(text).map(|_| ()).map_err(|e| e.to_string()),
        FieldKind::Geotrace => parse_geotrace(text).map(|_| ()).map_err(|e| e.to_string()),
        FieldKind::Geoshape => parse_geoshape(text).map(|_| ()).map_err(|e| e.to_string()),
        FieldKind::Date => check_date(text),
        FieldKind::Time => check_time(text),
        FieldKind::DateTime => {
            let (date, time) = text
                .split_once('T')
                .ok_or_else(|| "a dateTime is YYYY-MM-DDThh:mm:ss…".to_string())?;
            check_date(date)?;
            check_time(time)
        }
        _ => Ok(()),
    }
}

fn number(text: &str, digits: usize) -> Option<u32> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn check_date(text: &str) -> Result<(), String> {
    let bad = || format!("{:?} is not a date YYYY-MM-DD", shorten(text));
    let mut parts = text.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (year, month, day) = (
        number(y, 4).ok_or_else(bad)?,
        number(m, 2).ok_or_else(bad)?,
        number(d, 2).ok_or_else(bad)?,
    );
    if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
        return Err(format!("the year {year} is outside {MIN_YEAR}..{MAX_YEAR}"));
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if day == 0 || day > days {
        return Err(bad());
    }
    Ok(())
}

/// `hh:mm[:ss[.fff]]` followed by nothing, `Z`, or an offset `±hh:mm` / `±hhmm`.
fn check_time(text: &str) -> Result<(), String> {
    let bad = || format!("{:?} is not a time hh:mm:ss", shorten(text));
    let (clock, offset) = match text.find(['Z', '+', '-']) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let mut parts = clock.split(':');
    let hour = parts.next().and_then(|p| number(p, 2)).ok_or_else(bad)?;
    let minute = parts.next().and_then(|p| number(p, 2)).ok_or_else(bad)?;
    if let Some(seconds) = parts.next() {
        let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, "0"));
        let s = number(whole, 2).ok_or_else(bad)?;
        if s > 59 || fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    }
    if parts.next().is_some() || hour > 23 || minute > 59 {
        return Err(bad());
    }
    match offset {
        "" | "Z" => Ok(()),
        _ => {
            let digits = offset[1..].replace(':', "");
            let h = number(digits.get(..2).unwrap_or(""), 2).ok_or_else(bad)?;
            let m = number(digits.get(2..).unwrap_or(""), 2).ok_or_else(bad)?;
            if h > 14 || m > 59 {
                return Err(bad());
            }
            Ok(())
        }
    }
}

fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

impl Geopoint {
    /// The same point with latitude and longitude rounded to `decimals` places.
    pub fn rounded(&self, decimals: u32) -> Geopoint {
        Geopoint {
            lat: round(self.lat, decimals),
            lon: round(self.lon, decimals),
            alt: self.alt,
            accuracy: self.accuracy,
        }
    }
}

fn round(value: f64, decimals: u32) -> f64 {
    let factor = 10f64.powi(decimals.min(12) as i32);
    (value * factor).round() / factor
}

/// Rounds latitude and longitude in every geopoint, geotrace and geoshape answer of `fields`
/// to `decimals` places (altitude and accuracy are kept). Values that do not parse are left
/// alone: [`check_values`] refuses them first.
pub fn reduce_geo_precision(form: &FormDef, fields: &mut Value, decimals: u32) {
    if let Value::Object(map) = fields {
        reduce_object(form, "", map, decimals);
    }
}

fn reduce_object(form: &FormDef, prefix: &str, map: &mut Map<String, Value>, decimals: u32) {
    for (key, value) in map.iter_mut() {
        let path = join(prefix, key);
        match value {
            Value::Array(items) => {
                for item in items.iter_mut() {
                    if let Value::Object(inner) = item {
                        reduce_object(form, &path, inner, decimals);
                    }
                }
            }
            Value::String(text) => {
                let kind = form.field(&path).map(|f| &f.kind);
                if matches!(
                    kind,
                    Some(FieldKind::Geopoint | FieldKind::Geotrace | FieldKind::Geoshape)
                ) {
                    if let Some(reduced) = reduce_points(text, decimals) {
                        *text = reduced;
                    }
                }
            }
            _ => {}
        }
    }
}

fn reduce_points(text: &str, decimals: u32) -> Option<String> {
    let mut out = Vec::new();
    for piece in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let p = Geopoint::parse(piece).ok()?.rounded(decimals);
        let mut s = format!(
            "{:.*} {:.*}",
            decimals as usize, p.lat, decimals as usize, p.lon
        );
        for extra in [p.alt, p.accuracy].into_iter().flatten() {
            s.push_str(&format!(" {extra}"));
        }
        out.push(s);
    }
    Some(out.join(";"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::parse_form;

    const FORM: &str = include_str!("../tests/fixtures/household_survey.xml");

    fn household() -> FormDef {
        parse_form(FORM.as_bytes()).unwrap()
    }

    #[test]
    fn good_values_pass() {
        let fields = json!({
            "start": "2025-04-03T09:12:44.031+01:00",
            "end": "2025-04-03T09:31:02Z",
            "visit_date": "2024-02-29",
            "location": "5.6037 -0.187 61.2 4.8",
            "road": "5.6037 -0.187 61.2 4.8;5.6041 -0.1875 60.0 5.0",
            "members": [{"member_name": "A", "member_age": 4}],
            "income": null
        });
        check_values(&household(), &fields).unwrap();
    }

    #[test]
    fn malformed_geopoints_and_dates_are_refused_with_the_path() {
        for (fields, want) in [
            (json!({"location": "91 0"}), "location"),
            (json!({"location": "NaN 0"}), "location"),
            (json!({"location": "1 2 3 4 5"}), "location"),
            (json!({"road": "1 2"}), "road"),
            (
                json!({"field_boundary": "1 2;3 4;5 6;7 8"}),
                "field_boundary",
            ),
            (json!({"visit_date": "2025-02-29"}), "visit_date"),
            (json!({"visit_date": "99999-01-01"}), "visit_date"),
            (json!({"visit_date": "1066-10-14"}), "outside 1900..2100"),
            (json!({"visit_date": "2025-13-01"}), "visit_date"),
            (json!({"start": "2025-04-03 09:12"}), "start"),
            (json!({"start": "2025-04-03T25:00:00"}), "start"),
            (json!({"start": "2025-04-03T09:00:00+99:00"}), "start"),
        ] {
            let err = check_values(&household(), &fields).unwrap_err().to_string();
            assert!(err.contains(want), "{fields}: {err}");
        }
    }

    #[test]
    fn geotags_are_rounded_everywhere() {
        let form = household();
        let mut fields = json!({
            "location": "5.6037 -0.187 61.2 4.8",
            "road": "5.6037 -0.187 61.2 4.8;5.6041 -0.1875 60 5",
            "household/head_name": "5.6037 -0.187",
            "members": [{"member_name": "x"}]
        });
        reduce_geo_precision(&form, &mut fields, 2);
        assert_eq!(fields["location"], "5.60 -0.19 61.2 4.8");
        assert_eq!(fields["road"], "5.60 -0.19 61.2 4.8;5.60 -0.19 60 5");
        assert_eq!(
            fields["household/head_name"], "5.6037 -0.187",
            "text is text"
        );
        let p = Geopoint::parse("21.32567 103.91889").unwrap().rounded(3);
        assert_eq!((p.lat, p.lon), (21.326, 103.919));
    }
}
