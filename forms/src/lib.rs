//! XForm definitions and OpenRosa submission instances: parse, identify, extract typed values.
//!
//! This crate does no I/O: the server hands it bytes and gets plain data back. Every input is
//! untrusted, so every function returns a [`FormError`] instead of panicking, and the XML reader
//! refuses DTDs and bounds nesting, attributes, namespaces and node count (see `xml.rs`).

mod error;
mod extract;
mod form;
mod geo;
mod instance;
mod labels;
pub mod shipped;
mod values;
mod xml;

pub use error::FormError;
pub use extract::{extract, Extracted};
pub use form::{parse_form, FieldDef, FieldKind, FormDef};
pub use geo::{parse_geoshape, parse_geotrace, Geopoint};
pub use instance::{identify, Identity};
pub use labels::{parse_labels, FormLabels, Translations};
pub use values::{check_values, reduce_geo_precision, MAX_YEAR, MIN_YEAR};
