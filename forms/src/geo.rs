//! ODK location values: geopoint, geotrace and geoshape.
//!
//! Collect writes a geopoint as `"lat lon alt accuracy"`, a geotrace as geopoints joined by `;`
//! and a geoshape as a geotrace whose last point repeats the first. The server uses these to
//! place submissions on a map, so anything that is not a real position is refused here.

use serde::Serialize;

use crate::FormError;

/// One position in WGS84 degrees, with the optional altitude (metres) and accuracy (metres)
/// Collect records beside it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Geopoint {
    /// Latitude in degrees, -90 to 90.
    pub lat: f64,
    /// Longitude in degrees, -180 to 180.
    pub lon: f64,
    /// Altitude in metres, when given.
    pub alt: Option<f64>,
    /// Accuracy radius in metres, when given.
    pub accuracy: Option<f64>,
}

impl Geopoint {
    /// Parses `"lat lon [alt [accuracy]]"` (any whitespace between the numbers). Every number
    /// must be finite and latitude and longitude in range: a NaN or an out-of-range point would
    /// break maps and bounding boxes further on.
    pub fn parse(s: &str) -> Result<Geopoint, FormError> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        if parts.len() < 2 || parts.len() > 4 {
            return Err(invalid(
                s,
                "expected 2 to 4 numbers: lat lon [alt [accuracy]]",
            ));
        }
        let mut numbers = Vec::with_capacity(parts.len());
        for part in &parts {
            let number: f64 = part
                .parse()
                .map_err(|_| invalid(s, "a part is not a number"))?;
            if !number.is_finite() {
                return Err(invalid(s, "a part is not a finite number"));
            }
            numbers.push(number);
        }
        let lat = numbers[0];
        let lon = numbers[1];
        if !(-90.0..=90.0).contains(&lat) {
            return Err(invalid(s, "latitude is outside -90..90"));
        }
        if !(-180.0..=180.0).contains(&lon) {
            return Err(invalid(s, "longitude is outside -180..180"));
        }
        Ok(Geopoint {
            lat,
            lon,
            alt: numbers.get(2).copied(),
            accuracy: numbers.get(3).copied(),
        })
    }

    /// Same place, ignoring altitude and accuracy (which differ between two fixes of one spot).
    fn same_place(&self, other: &Geopoint) -> bool {
        self.lat == other.lat && self.lon == other.lon
    }
}

/// Parses a geotrace: two or more geopoints separated by `;`. Empty pieces (a trailing `;`,
/// which older Collect versions wrote) are skipped.
pub fn parse_geotrace(s: &str) -> Result<Vec<Geopoint>, FormError> {
    let points = parse_points(s).map_err(|error| FormError::InvalidGeotrace {
        reason: error.to_string(),
    })?;
    if points.len() < 2 {
        return Err(FormError::InvalidGeotrace {
            reason: format!("needs at least 2 points, found {}", points.len()),
        });
    }
    Ok(points)
}

/// Parses a geoshape: a closed ring of at least 4 geopoints (3 corners and the first one again)
/// separated by `;`, whose last point is at the same place as the first.
pub fn parse_geoshape(s: &str) -> Result<Vec<Geopoint>, FormError> {
    let points = parse_points(s).map_err(|error| FormError::InvalidGeoshape {
        reason: error.to_string(),
    })?;
    if points.len() < 4 {
        return Err(FormError::InvalidGeoshape {
            reason: format!(
                "needs at least 4 points (the first repeated at the end), found {}",
                points.len()
            ),
        });
    }
    match (points.first(), points.last()) {
        (Some(first), Some(last)) if first.same_place(last) => Ok(points),
        _ => Err(FormError::InvalidGeoshape {
            reason: "the last point is not the first point (the shape is not closed)".to_string(),
        }),
    }
}

/// The geopoints of a `;`-separated list, skipping empty pieces.
fn parse_points(s: &str) -> Result<Vec<Geopoint>, FormError> {
    s.split(';')
        .map(str::trim)
        .filter(|piece| !piece.is_empty())
        .map(Geopoint::parse)
        .collect()
}

/// Builds an [`FormError::InvalidGeopoint`], shortening the value so that a huge submitted
/// value does not end up whole in logs and responses.
fn invalid(value: &str, reason: &'static str) -> FormError {
    const MAX_CHARS: usize = 60;
    let mut shown: String = value.chars().take(MAX_CHARS).collect();
    if value.chars().nth(MAX_CHARS).is_some() {
        shown.push('…');
    }
    FormError::InvalidGeopoint {
        value: shown,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_parts_give_lat_lon_only() {
        let point = Geopoint::parse("12.5 -1.25").unwrap();
        assert_eq!(
            point,
            Geopoint {
                lat: 12.5,
                lon: -1.25,
                alt: None,
                accuracy: None
            }
        );
    }

    #[test]
    fn three_parts_add_altitude() {
        let point = Geopoint::parse("12.5 -1.25 300").unwrap();
        assert_eq!(point.alt, Some(300.0));
        assert_eq!(point.accuracy, None);
    }

    #[test]
    fn four_parts_add_accuracy_and_any_whitespace_separates() {
        let point = Geopoint::parse("  -33.9\t18.4 \n 12.0   4.5 ").unwrap();
        assert_eq!(
            point,
            Geopoint {
                lat: -33.9,
                lon: 18.4,
                alt: Some(12.0),
                accuracy: Some(4.5)
            }
        );
    }

    #[test]
    fn range_limits_are_inclusive() {
        assert!(Geopoint::parse("90 180").is_ok());
        assert!(Geopoint::parse("-90 -180").is_ok());
    }

    #[test]
    fn out_of_range_is_refused() {
        for value in ["90.0001 0", "-91 0", "0 180.5", "0 -181"] {
            let err = Geopoint::parse(value).unwrap_err();
            assert!(
                matches!(err, FormError::InvalidGeopoint { .. }),
                "{value}: {err}"
            );
        }
        let err = Geopoint::parse("95 10").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid geopoint \"95 10\": latitude is outside -90..90"
        );
    }

    #[test]
    fn wrong_number_of_parts_is_refused() {
        for value in ["", "   ", "12.5", "1 2 3 4 5"] {
            assert!(Geopoint::parse(value).is_err(), "{value:?}");
        }
    }

    #[test]
    fn nan_infinity_and_garbage_are_refused() {
        for value in [
            "NaN 0",
            "0 nan",
            "inf 0",
            "0 -infinity",
            "1 2 NaN",
            "1 2 3 inf",
            "1e999 0",
            "abc def",
            "1,5 2,5",
            "1 2 three",
            "12.5;-1.25",
        ] {
            let err = Geopoint::parse(value).unwrap_err();
            assert!(
                matches!(err, FormError::InvalidGeopoint { .. }),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn long_values_are_shortened_in_errors() {
        let value = "x".repeat(10_000);
        let message = Geopoint::parse(&format!("{value} 1"))
            .unwrap_err()
            .to_string();
        assert!(message.len() < 200, "{message}");
        assert!(message.contains('…'));
    }

    #[test]
    fn geotrace_needs_two_points() {
        let trace = parse_geotrace("1 2 3 4; 1.5 2.5 3 4 ;2 3").unwrap();
        assert_eq!(trace.len(), 3);
        assert_eq!(trace[1].lat, 1.5);
        assert_eq!(trace[2].alt, None);
        assert!(matches!(
            parse_geotrace("1 2 3 4").unwrap_err(),
            FormError::InvalidGeotrace { .. }
        ));
        assert!(parse_geotrace("").is_err());
    }

    #[test]
    fn geotrace_skips_a_trailing_separator() {
        assert_eq!(parse_geotrace("1 2;3 4;").unwrap().len(), 2);
    }

    #[test]
    fn geotrace_with_a_bad_point_is_refused() {
        let err = parse_geotrace("1 2;300 4").unwrap_err();
        assert!(matches!(err, FormError::InvalidGeotrace { .. }), "{err}");
        assert!(err.to_string().contains("latitude"), "{err}");
    }

    #[test]
    fn geoshape_is_a_closed_ring_of_four_or_more() {
        let shape = parse_geoshape("0 0 1 2;0 1 5 5;1 1;0 0 9 9").unwrap();
        assert_eq!(shape.len(), 4);
        assert_eq!(shape[0].lat, shape[3].lat);
    }

    #[test]
    fn geoshape_that_is_not_closed_is_refused() {
        let err = parse_geoshape("0 0;0 1;1 1;1 0").unwrap_err();
        assert!(matches!(err, FormError::InvalidGeoshape { .. }), "{err}");
        assert!(err.to_string().contains("not closed"), "{err}");
    }

    #[test]
    fn geoshape_with_too_few_points_is_refused() {
        let err = parse_geoshape("0 0;0 1;0 0").unwrap_err();
        assert!(matches!(err, FormError::InvalidGeoshape { .. }), "{err}");
        assert!(parse_geoshape("0 0;0 1;1 1;zz 0").is_err());
    }
}
