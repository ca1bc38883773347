//! Area boundaries for point-in-polygon checks, parsed once and kept in memory. A district
//! boundary is a few hundred kilobytes of GeoJSON, far too much to parse per submission; an
//! entry is keyed by the area's `updated_at`, so a re-import is picked up at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::NaiveDateTime;
use geo::{Intersects, MultiPolygon, Point};

use super::Area;
use crate::db::Db;
use crate::error::AppError;

type Entry = (NaiveDateTime, Option<Arc<MultiPolygon<f64>>>);

#[derive(Default)]
pub struct GeometryCache {
    entries: RwLock<HashMap<i64, Entry>>,
}

/// Reads a stored GeoJSON Polygon or MultiPolygon.
pub fn parse(text: &str) -> Option<MultiPolygon<f64>> {
    let geometry: geojson::Geometry = serde_json::from_str(text).ok()?;
    match geo::Geometry::<f64>::try_from(&geometry).ok()? {
        geo::Geometry::Polygon(p) => Some(MultiPolygon(vec![p])),
        geo::Geometry::MultiPolygon(m) => Some(m),
        _ => None,
    }
}

/// Whether a point (degrees) lies in the boundary; a point on the boundary line counts as in.
pub fn contains(boundary: &MultiPolygon<f64>, lat: f64, lon: f64) -> bool {
    boundary.intersects(&Point::new(lon, lat))
}

impl GeometryCache {
    /// The boundary of `area`, if it has one.
    pub async fn boundary(
        &self,
        db: &Db,
        area: &Area,
    ) -> Result<Option<Arc<MultiPolygon<f64>>>, AppError> {
        if let Ok(entries) = self.entries.read() {
            if let Some((at, shape)) = entries.get(&area.id) {
                if *at == area.updated_at {
                    return Ok(shape.clone());
                }
            }
        }
        let id = area.id;
        let text = db.read(move |conn| super::geometry_text(conn, id)).await?;
        let shape = text.as_deref().and_then(parse).map(Arc::new);
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(area.id, (area.updated_at, shape.clone()));
        }
        Ok(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_inside_outside_and_on_the_edge() {
        let square = parse(
            r#"{"type":"Polygon","coordinates":[[[104.0,21.0],[104.1,21.0],[104.1,21.1],[104.0,21.1],[104.0,21.0]]]}"#,
        )
        .expect("polygon");
        assert!(contains(&square, 21.05, 104.05));
        assert!(!contains(&square, 21.05, 104.2));
        assert!(contains(&square, 21.0, 104.05));
        assert!(parse(r#"{"type":"Point","coordinates":[104.0,21.0]}"#).is_none());
        assert!(parse("not json").is_none());
    }
}
