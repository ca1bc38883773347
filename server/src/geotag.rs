//! Checks of where and when a submission says its activity happened. They only flag: a flagged
//! submission is stored like any other, because a machine never throws away a collector's
//! work; a supervisor looks at the flags.

use chrono::{NaiveDate, NaiveDateTime};
use fieldtally_forms::{parse_geoshape, parse_geotrace, FieldKind, FormDef, Geopoint};
use geo::{Distance, Haversine, MultiPolygon, Point};
use serde_json::Value;

use crate::areas::geometry::contains;

pub const NO_LOCATION: &str = "no_location";
pub const LOW_ACCURACY: &str = "low_accuracy";
pub const OUTSIDE_PROVINCE: &str = "outside_province";
pub const OUTSIDE_DISTRICT: &str = "outside_district";
pub const FAR_FROM_HAMLET: &str = "far_from_hamlet";
pub const HAMLET_NOT_ASSIGNED: &str = "hamlet_not_assigned";
pub const ACTIVITY_IN_FUTURE: &str = "activity_in_future";

/// Every flag, in the order checks report them.
pub const ALL: [&str; 7] = [
    NO_LOCATION,
    LOW_ACCURACY,
    OUTSIDE_PROVINCE,
    OUTSIDE_DISTRICT,
    FAR_FROM_HAMLET,
    HAMLET_NOT_ASSIGNED,
    ACTIVITY_IN_FUTURE,
];

/// A flag's place in [`ALL`] (unknown flags last), for listing flags in a stable order.
pub fn order(flag: &str) -> usize {
    ALL.iter().position(|f| *f == flag).unwrap_or(ALL.len())
}

/// Configurable thresholds (`--low-accuracy-metres`, `--far-from-hamlet-metres`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub low_accuracy_metres: f64,
    pub far_from_hamlet_metres: f64,
}

/// Whether the form asks for a location at all (outside repeats).
pub fn asks_location(form: &FormDef) -> bool {
    form.fields.iter().any(|f| {
        matches!(
            f.kind,
            FieldKind::Geopoint | FieldKind::Geotrace | FieldKind::Geoshape
        ) && !form
            .repeats
            .iter()
            .any(|r| f.path.starts_with(&format!("{r}/")))
    })
}

/// The positions a submission records for its activity: those of the first answered geopoint,
/// geotrace or geoshape question, in form order. A position the phone took by itself when the
/// form was opened (start-geopoint) counts only when there is no other, since it may be far
/// from the activity. Questions inside repeats are not considered.
pub fn positions(form: &FormDef, fields: &Value) -> Vec<Geopoint> {
    let mut background = Vec::new();
    for field in &form.fields {
        let Some(text) = fields.get(&field.path).and_then(Value::as_str) else {
            continue;
        };
        let points = match field.kind {
            FieldKind::Geopoint => Geopoint::parse(text).map(|p| vec![p]).ok(),
            FieldKind::Geotrace => parse_geotrace(text).ok(),
            FieldKind::Geoshape => parse_geoshape(text).ok(),
            _ => None,
        };
        match points {
            Some(points) if field.background && background.is_empty() => background = points,
            Some(_) if field.background => {}
            Some(points) => return points,
            None => {}
        }
    }
    background
}

/// What the registry and the assignment say about the submission's hamlet.
#[derive(Debug, Default, Clone)]
pub struct Context {
    /// The collector may record this hamlet (it is assigned to them, or they have no
    /// assignment and it is a hamlet of the registry).
    pub hamlet_allowed: bool,
    /// The hamlet's centre.
    pub hamlet_centroid: Option<(f64, f64)>,
    /// Boundary of the district the hamlet belonged to on the activity date (districts exist
    /// only before the reform).
    pub district: Option<std::sync::Arc<MultiPolygon<f64>>>,
    /// Boundaries of the province(s) to check against.
    pub provinces: Vec<std::sync::Arc<MultiPolygon<f64>>>,
}

/// The flags of one submission, in a fixed order. `points` is `None` for a form that asks no
/// location at all, which is then not checked for one.
pub fn flags(
    ctx: &Context,
    points: Option<&[Geopoint]>,
    activity_date: Option<NaiveDate>,
    local_received: NaiveDate,
    limits: &Limits,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    let points_expected = points.is_some();
    let points = points.unwrap_or_default();
    if points.is_empty() {
        if points_expected {
            out.push(NO_LOCATION);
        }
    } else {
        if points
            .iter()
            .any(|p| p.accuracy.is_some_and(|a| a > limits.low_accuracy_metres))
        {
            out.push(LOW_ACCURACY);
        }
        if !ctx.provinces.is_empty()
            && points
                .iter()
                .any(|p| !ctx.provinces.iter().any(|b| contains(b, p.lat, p.lon)))
        {
            out.push(OUTSIDE_PROVINCE);
        }
        if let Some(district) = &ctx.district {
            if points.iter().any(|p| !contains(district, p.lat, p.lon)) {
                out.push(OUTSIDE_DISTRICT);
            }
        }
        if let Some((lat, lon)) = ctx.hamlet_centroid {
            let centre = Point::new(lon, lat);
            if points.iter().any(|p| {
                Haversine.distance(centre, Point::new(p.lon, p.lat)) > limits.far_from_hamlet_metres
            }) {
                out.push(FAR_FROM_HAMLET);
            }
        }
    }
    if !ctx.hamlet_allowed {
        out.push(HAMLET_NOT_ASSIGNED);
    }
    if activity_date.is_some_and(|d| d > local_received) {
        out.push(ACTIVITY_IN_FUTURE);
    }
    out
}

/// The date the activity was recorded for: the `activity_date` answer of the Project 8 forms.
pub fn activity_date(fields: &Value) -> Option<NaiveDate> {
    fields
        .get("activity_date")
        .and_then(Value::as_str)
        .and_then(|s| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok())
}

/// The hamlet code the collector chose: the `hamlet` answer of the Project 8 forms.
pub fn hamlet_code(fields: &Value) -> Option<String> {
    fields
        .get("hamlet")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Received time (UTC) as a date where the activity happened.
pub fn received_date(received_at: NaiveDateTime) -> NaiveDate {
    crate::areas::local_date(received_at)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::areas::geometry::parse;

    const LIMITS: Limits = Limits {
        low_accuracy_metres: 100.0,
        far_from_hamlet_metres: 5000.0,
    };

    fn square(lat: f64, lon: f64, size: f64) -> Arc<MultiPolygon<f64>> {
        let text = format!(
            r#"{{"type":"Polygon","coordinates":[[[{lon},{lat}],[{e},{lat}],[{e},{n}],[{lon},{n}],[{lon},{lat}]]]}}"#,
            e = lon + size,
            n = lat + size
        );
        Arc::new(parse(&text).expect("square"))
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn point(lat: f64, lon: f64, accuracy: f64) -> Geopoint {
        Geopoint {
            lat,
            lon,
            alt: None,
            accuracy: Some(accuracy),
        }
    }

    fn context() -> Context {
        Context {
            hamlet_allowed: true,
            hamlet_centroid: Some((21.05, 104.05)),
            district: Some(square(21.0, 104.0, 0.1)),
            provinces: vec![square(20.0, 103.0, 2.0)],
        }
    }

    #[test]
    fn a_good_submission_has_no_flags() {
        let f = flags(
            &context(),
            Some(&[point(21.06, 104.06, 8.0)]),
            Some(day("2025-03-01")),
            day("2025-03-02"),
            &LIMITS,
        );
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn each_check_flags_on_its_own() {
        let ctx = context();
        let today = day("2025-03-02");
        let date = Some(day("2025-03-01"));
        assert_eq!(flags(&ctx, Some(&[]), date, today, &LIMITS), [NO_LOCATION]);
        // A form that asks no location is not flagged for lacking one.
        assert!(flags(&ctx, None, date, today, &LIMITS).is_empty());
        assert_eq!(
            flags(
                &ctx,
                Some(&[point(21.06, 104.06, 150.0)]),
                date,
                today,
                &LIMITS
            ),
            [LOW_ACCURACY]
        );
        // In the province, outside the district, 16 km from the hamlet.
        assert_eq!(
            flags(
                &ctx,
                Some(&[point(21.06, 104.2, 5.0)]),
                date,
                today,
                &LIMITS
            ),
            [OUTSIDE_DISTRICT, FAR_FROM_HAMLET]
        );
        assert_eq!(
            flags(
                &ctx,
                Some(&[point(10.0, 104.06, 5.0)]),
                date,
                today,
                &LIMITS
            ),
            [OUTSIDE_PROVINCE, OUTSIDE_DISTRICT, FAR_FROM_HAMLET]
        );
        let not_assigned = Context {
            hamlet_allowed: false,
            ..context()
        };
        assert_eq!(
            flags(
                &not_assigned,
                Some(&[point(21.06, 104.06, 5.0)]),
                date,
                today,
                &LIMITS
            ),
            [HAMLET_NOT_ASSIGNED]
        );
        assert_eq!(
            flags(
                &ctx,
                Some(&[point(21.06, 104.06, 5.0)]),
                Some(day("2025-03-03")),
                today,
                &LIMITS
            ),
            [ACTIVITY_IN_FUTURE]
        );
        // Without a district (after the reform) or a centroid those checks do not apply.
        let bare = Context {
            district: None,
            hamlet_centroid: None,
            ..context()
        };
        assert!(flags(
            &bare,
            Some(&[point(21.06, 104.6, 5.0)]),
            date,
            today,
            &LIMITS
        )
        .is_empty());
    }

    #[test]
    fn limits_are_configurable() {
        let strict = Limits {
            low_accuracy_metres: 5.0,
            far_from_hamlet_metres: 500.0,
        };
        assert_eq!(
            flags(
                &context(),
                Some(&[point(21.06, 104.06, 8.0)]),
                None,
                day("2025-03-02"),
                &strict
            ),
            [LOW_ACCURACY, FAR_FROM_HAMLET]
        );
    }

    #[test]
    fn positions_prefer_the_activity_over_the_start_geopoint() {
        let xml = br#"<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:odk="http://www.opendatakit.org/xforms"><h:head><h:title>t</h:title><model><instance><data id="g" version="1"><start_location/><route/><location/><meta><instanceID/></meta></data></instance><bind nodeset="/data/start_location" type="geopoint"/><odk:setgeopoint ref="/data/start_location" event="odk-instance-first-load"/><bind nodeset="/data/route" type="geotrace"/><bind nodeset="/data/location" type="geopoint"/></model></h:head><h:body/></h:html>"#;
        let form = fieldtally_forms::parse_form(xml).expect("form");
        let all =
            json!({"start_location": "1 1 0 5", "route": "2 2 0 5;3 3 0 5", "location": "4 4 0 5"});
        let lats = |v: &Value| {
            positions(&form, v)
                .iter()
                .map(|p| p.lat)
                .collect::<Vec<_>>()
        };
        assert_eq!(lats(&all), [2.0, 3.0]);
        assert_eq!(
            lats(&json!({"start_location": "1 1 0 5", "route": null, "location": "4 4 0 5"})),
            [4.0]
        );
        assert_eq!(
            lats(&json!({"start_location": "1 1 0 5", "location": "bad"})),
            [1.0]
        );
        assert!(lats(&json!({"location": null})).is_empty());
    }

    #[test]
    fn hamlet_and_activity_date_come_from_the_answers() {
        let fields = json!({"hamlet": " DEMO-1 ", "activity_date": "2025-06-30"});
        assert_eq!(hamlet_code(&fields).as_deref(), Some("DEMO-1"));
        assert_eq!(activity_date(&fields), Some(day("2025-06-30")));
        let empty = json!({"hamlet": null, "activity_date": "30/06/2025"});
        assert_eq!(hamlet_code(&empty), None);
        assert_eq!(activity_date(&empty), None);
    }
}
