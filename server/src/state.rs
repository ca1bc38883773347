//! What every request handler shares.

use crate::areas::geometry::GeometryCache;
use crate::blobs::Blobs;
use crate::config::Config;
use crate::db::Db;
use crate::openrosa::FormCache;
use crate::settings::Secrets;

pub struct AppState {
    pub db: Db,
    pub config: Config,
    pub secrets: Secrets,
    pub blobs: Blobs,
    pub form_cache: FormCache,
    pub geometry_cache: GeometryCache,
}
