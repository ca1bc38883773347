//! fieldtally: an OpenRosa server for ODK Collect with versioned forms, exactly-once
//! submissions, review and indicators, on SQLite or PostgreSQL.

pub mod api;
pub mod areas;
pub mod auth;
pub mod beneficiary;
pub mod blobs;
pub mod config;
pub mod db;
pub mod error;
pub mod fieldwork;
pub mod forms;
pub mod geotag;
pub mod indicators;
pub mod ingest;
pub mod openrosa;
pub mod sensitive;
pub mod settings;
pub mod state;
pub mod submissions;
pub mod users;

use std::sync::Arc;

use actix_web::dev::Service;
use actix_web::{web, App, HttpServer};

use crate::blobs::Blobs;
use crate::config::{Config, ServeArgs};
use crate::db::Db;
use crate::error::AppError;
use crate::state::AppState;
use crate::users::{NewUser, Role};

/// Reads connections per server; writes go through the single writer.
const READ_POOL_SIZE: u32 = 8;

/// Opens the database, creates secrets, and on an empty database the first administrator and
/// the shipped forms.
pub async fn bootstrap(args: &ServeArgs) -> Result<AppState, AppError> {
    let db = Db::open(&args.db.url(), READ_POOL_SIZE)?;
    let blobs = Blobs::open(&args.db.data_dir)?;
    let secrets = db.write(settings::load_or_create).await?;
    ensure_admin(&db).await?;
    load_shipped_forms(&db).await?;
    load_shipped_areas(&db).await?;
    let indicators = Arc::new(indicators::Indicators::load(args.indicators_dir.as_deref())?);
    sync_indicators(&db, &indicators).await?;
    Ok(AppState {
        db,
        config: Config::from(args),
        secrets,
        blobs,
        form_cache: Default::default(),
        geometry_cache: Default::default(),
        indicators,
    })
}

/// Rebuilds the figures of indicators whose definitions changed since the last start (all of
/// them on a new database or after the area registry changed).
async fn sync_indicators(db: &Db, indicators: &Arc<indicators::Indicators>) -> Result<(), AppError> {
    let ind = indicators.clone();
    let report = db
        .write(move |conn| indicators::sync(conn, &ind))
        .await
        .map_err(|e| AppError::internal(format!("indicator definitions failed to load: {e}")))?;
    if report.full || !report.rebuilt.is_empty() || !report.dropped.is_empty() {
        tracing::info!(
            full = report.full,
            rebuilt = report.rebuilt.len(),
            dropped = report.dropped.len(),
            submissions = report.report.submissions,
            "indicator figures rebuilt"
        );
    }
    Ok(())
}

async fn ensure_admin(db: &Db) -> Result<(), AppError> {
    if db.read(users::count).await? > 0 {
        return Ok(());
    }
    let (password, generated) = match std::env::var("FIELDTALLY_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (users::generate_app_key(), true),
    };
    let new = web::block(move || {
        NewUser::prepare("admin", &password, Role::Admin).map(|n| (n, password))
    })
    .await??;
    let (new, password) = new;
    db.write(move |conn| users::create(conn, &new)).await?;
    if generated {
        // Shown once, on the console of whoever started the server; never logged.
        println!("Created the user 'admin' with the password: {password}");
    } else {
        println!("Created the user 'admin' with the password from FIELDTALLY_ADMIN_PASSWORD");
    }
    Ok(())
}

async fn load_shipped_forms(db: &Db) -> Result<(), AppError> {
    if db.read(forms::count).await? > 0 {
        return Ok(());
    }
    for (name, xml) in fieldtally_forms::shipped::FORMS {
        let v = db
            .write(move |conn| forms::add_version(conn, xml, true))
            .await
            .map_err(|e| AppError::internal(format!("shipped form {name} failed to load: {e}")))?;
        tracing::info!(form_id = %v.version.form_id, version = %v.version.version, "loaded shipped form");
    }
    Ok(())
}

/// Sơn La's official areas, on an empty registry (like the shipped forms).
async fn load_shipped_areas(db: &Db) -> Result<(), AppError> {
    if db.read(areas::count).await? > 0 {
        return Ok(());
    }
    let report = db
        .write(areas::shipped::load)
        .await
        .map_err(|e| AppError::internal(format!("shipped areas failed to load: {e}")))?;
    tracing::info!(
        areas = report.created,
        successions = report.linked,
        "loaded the shipped Sơn La areas"
    );
    Ok(())
}

fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<rustls::ServerConfig> {
    use anyhow::Context;
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("cannot open {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .context("cannot read the TLS certificate")?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("cannot open {}", key.display()))?,
    ))
    .context("cannot read the TLS key")?
    .context("no private key in the TLS key file")?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")
}

/// Runs the HTTP server until it is stopped.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let state = web::Data::new(bootstrap(&args).await?);
    let max_submission = args.max_submission_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap_fn(|req, srv| {
                // Log the route pattern, never the path: paths carry app keys and instance ids.
                let method = req.method().clone();
                let pattern = req.match_pattern().unwrap_or_else(|| "-".into());
                let fut = srv.call(req);
                async move {
                    let res = fut.await?;
                    tracing::info!(%method, route = %pattern, status = res.status().as_u16(), "request");
                    Ok(res)
                }
            })
            .configure(api::routes)
            .configure(|cfg| openrosa::routes(cfg, max_submission))
    });
    let server = match args.workers {
        Some(n) => server.workers(n),
        None => server,
    };
    let server = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => server.bind_rustls_0_23(args.listen, tls_config(cert, key)?)?,
        _ => server.bind(args.listen)?,
    };
    for addr in server.addrs() {
        let scheme = if args.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        println!("fieldtally listening on {scheme}://{addr}");
    }
    server.run().await?;
    Ok(())
}
