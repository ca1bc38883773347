//! The offline map: Sơn La's province and district boundaries, drawn as SVG from the GeoJSON
//! shipped in the binary, and the projection that places a geotag on it. No tiles, no network.

use std::fmt::Write;
use std::sync::OnceLock;

use serde_json::Value;

const GEOJSON: &str = include_str!("../../assets/districts-2025-03-01.geojson");

/// Width of the drawing in SVG units; the height follows the province's shape.
const WIDTH: f64 = 1000.0;
const PADDING: f64 = 10.0;
/// Vertices closer than this (SVG units) to the previous one are dropped: invisible at any
/// size the page shows, and they make the drawing several times smaller.
const MIN_STEP: f64 = 0.8;

/// The drawing and the projection it was made with.
pub struct Map {
    /// A complete SVG document (served as an asset, cached by browsers).
    pub svg: String,
    pub width: f64,
    pub height: f64,
    min_lon: f64,
    max_lat: f64,
    scale_x: f64,
    scale_y: f64,
}

impl Map {
    /// SVG coordinates of a point, or `None` when it falls outside the drawing.
    pub fn project(&self, lat: f64, lon: f64) -> Option<(f64, f64)> {
        let x = PADDING + (lon - self.min_lon) * self.scale_x;
        let y = PADDING + (self.max_lat - lat) * self.scale_y;
        let inside = (0.0..=self.width).contains(&x) && (0.0..=self.height).contains(&y);
        inside.then_some((x, y))
    }
}

/// The map, built on first use.
pub fn map() -> &'static Map {
    static MAP: OnceLock<Map> = OnceLock::new();
    MAP.get_or_init(|| build(GEOJSON))
}

struct Feature {
    level: String,
    name: String,
    rings: Vec<Vec<(f64, f64)>>,
}

fn features(geojson: &str) -> Vec<Feature> {
    let doc: Value = serde_json::from_str(geojson).unwrap_or(Value::Null);
    let mut out = Vec::new();
    for f in doc["features"].as_array().into_iter().flatten() {
        let geometry = &f["geometry"];
        let polygons: Vec<&Value> = match geometry["type"].as_str() {
            Some("Polygon") => vec![&geometry["coordinates"]],
            Some("MultiPolygon") => geometry["coordinates"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            _ => continue,
        };
        let mut rings = Vec::new();
        for polygon in polygons {
            for ring in polygon.as_array().into_iter().flatten() {
                let points: Vec<(f64, f64)> = ring
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                    .collect();
                if points.len() >= 3 {
                    rings.push(points);
                }
            }
        }
        out.push(Feature {
            level: f["properties"]["level"].as_str().unwrap_or_default().into(),
            name: f["properties"]["name"].as_str().unwrap_or_default().into(),
            rings,
        });
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn build(geojson: &str) -> Map {
    let features = features(geojson);
    let points = || features.iter().flat_map(|f| f.rings.iter().flatten());
    let fold = |init: f64, pick: fn(&(f64, f64)) -> f64, better: fn(f64, f64) -> f64| {
        points().map(pick).fold(init, better)
    };
    let min_lon = fold(f64::INFINITY, |p| p.0, f64::min);
    let max_lon = fold(f64::NEG_INFINITY, |p| p.0, f64::max);
    let min_lat = fold(f64::INFINITY, |p| p.1, f64::min);
    let max_lat = fold(f64::NEG_INFINITY, |p| p.1, f64::max);
    // Equirectangular with the longitude shrunk by cos(latitude): true enough at 21° N over
    // one province.
    let mid = ((min_lat + max_lat) / 2.0).to_radians();
    let span_x = (max_lon - min_lon) * mid.cos();
    let scale_y = (WIDTH - 2.0 * PADDING) / span_x.max(1e-9);
    let scale_x = scale_y * mid.cos();
    let height = 2.0 * PADDING + (max_lat - min_lat) * scale_y;
    let mut map = Map {
        svg: String::new(),
        width: WIDTH,
        height,
        min_lon,
        max_lat,
        scale_x,
        scale_y,
    };
    let to_xy = |(lon, lat): (f64, f64)| {
        (
            PADDING + (lon - map.min_lon) * map.scale_x,
            PADDING + (map.max_lat - lat) * map.scale_y,
        )
    };
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH:.0} {height:.1}" width="{WIDTH:.0}" height="{height:.1}">"#
    );
    let mut labels = String::new();
    // Districts first, then the province outline drawn over them.
    for level in ["district", "province"] {
        for f in features.iter().filter(|f| f.level == level) {
            let mut d = String::new();
            let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
            for ring in &f.rings {
                let mut last: Option<(f64, f64)> = None;
                for (i, p) in ring.iter().enumerate() {
                    let (x, y) = to_xy(*p);
                    sx += x;
                    sy += y;
                    n += 1.0;
                    let is_last = i + 1 == ring.len();
                    if let Some((lx, ly)) = last {
                        if ((x - lx).powi(2) + (y - ly).powi(2)).sqrt() < MIN_STEP && !is_last {
                            continue;
                        }
                    }
                    let cmd = if last.is_none() { 'M' } else { 'L' };
                    let _ = write!(d, "{cmd}{x:.1} {y:.1}");
                    last = Some((x, y));
                }
                d.push('Z');
            }
            let class = if level == "province" {
                "province"
            } else {
                "district"
            };
            let (fill, stroke, width) = if level == "province" {
                ("none", "#5b3a8c", "3")
            } else {
                ("#f3eefa", "#9b86bd", "1.2")
            };
            let _ = write!(
                svg,
                r#"<path class="{class}" d="{d}" fill="{fill}" stroke="{stroke}" stroke-width="{width}" stroke-linejoin="round"/>"#
            );
            if level == "district" && n > 0.0 {
                let name = f
                    .name
                    .trim_start_matches("Huyện ")
                    .trim_start_matches("Thành phố ");
                let _ = write!(
                    labels,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-family="sans-serif" font-size="26" fill="#6d5a8c">{}</text>"##,
                    sx / n,
                    sy / n,
                    escape(name)
                );
            }
        }
    }
    svg.push_str(&labels);
    svg.push_str("</svg>");
    map.svg = svg;
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_the_province_and_its_twelve_districts() {
        let m = map();
        assert_eq!(m.svg.matches(r#"class="district""#).count(), 12);
        assert_eq!(m.svg.matches(r#"class="province""#).count(), 1);
        assert!(m.svg.contains(">Mộc Châu</text>"));
        // Simplified well below the 280 KB of the source.
        assert!(m.svg.len() < 200_000, "{} bytes", m.svg.len());
        assert!(m.height > 300.0 && m.height < 1000.0, "{}", m.height);
    }

    #[test]
    fn projects_places_inside_and_refuses_places_outside() {
        let m = map();
        // Sơn La city is in the middle of the province; Mộc Châu to its south-east.
        let (cx, cy) = m.project(21.3256, 103.9188).expect("Sơn La city");
        let (mx, my) = m.project(20.85, 104.63).expect("Mộc Châu");
        assert!(mx > cx && my > cy);
        assert!(
            m.project(21.0285, 105.8542).is_none(),
            "Hà Nội is off the map"
        );
        assert!(m.project(10.8, 106.7).is_none());
    }
}
