//! What every request handler shares.

use std::sync::Arc;

use crate::areas::geometry::GeometryCache;
use crate::auth::replay::SeenNonces;
use crate::auth::signing::KeyCache;
use crate::blobs::Blobs;
use crate::config::Config;
use crate::crypto::DataKeys;
use crate::db::{Db, Refresher};
use crate::indicators::Indicators;
use crate::metrics::Metrics;
use crate::openrosa::FormCache;
use crate::settings::Secrets;

pub struct AppState {
    pub db: Db,
    pub config: Config,
    pub secrets: Secrets,
    pub blobs: Blobs,
    pub form_cache: FormCache,
    pub seen_nonces: SeenNonces,
    /// The keys that seal protected data.
    pub data_keys: Arc<DataKeys>,
    pub metrics: Arc<Metrics>,
    pub geometry_cache: GeometryCache,
    /// The indicator definitions in use and the area registry they place submissions in.
    pub indicators: Arc<Indicators>,
    /// Refreshes the figures of the submissions a batch of writes stored (one for the server,
    /// so that the writer can group them).
    pub refresher: Refresher,
    /// The writer's kind of write for submission POSTs, stored together with those of their
    /// batch.
    pub posts: Arc<crate::posts::Posts>,
    /// Access token verification keys by `kid` (see `auth::signing`).
    pub signing_keys: KeyCache,
    /// Wakes this instance's export job runner when a job is queued here, so that it starts at
    /// once instead of at its next look.
    pub export_wake: Arc<tokio::sync::Notify>,
}
