//! fieldtally: an OpenRosa server for ODK Collect with versioned forms, exactly-once
//! submissions, review and indicators, on SQLite or PostgreSQL.

pub mod access_log;
pub mod api;
pub mod areas;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod beneficiary;
pub mod blobs;
pub mod changes;
pub mod config;
pub mod connections;
pub mod crypto;
pub mod db;
pub mod deletion;
pub mod error;
pub mod exports;
pub mod fieldwork;
pub mod forms;
pub mod fsck;
pub mod geotag;
pub mod indicators;
pub mod ingest;
pub mod maintenance;
pub mod metrics;
pub mod openapi;
pub mod openrosa;
pub mod ops;
pub mod photos;
pub mod posts;
pub mod protection;
pub mod push;
pub mod review;
pub mod scope;
pub mod sensitive;
pub mod settings;
pub mod state;
pub mod subject;
pub mod submissions;
pub mod ui;
pub mod users;
pub mod xlsform;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::Service;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{ConnectionType, Method};
use actix_web::{web, App, HttpServer};
use tracing::Instrument;

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
    let (key_path, may_create) = args.keys.path(&args.db.data_dir);
    // A new key is made only for a database that has nothing sealed yet: otherwise the key file
    // was lost (or not restored), and a new key would make the sealed data look unreadable.
    let sealed = db.read(protection::has_sealed_data).await?;
    let data_keys = crypto::DataKeys::load_or_create(&key_path, may_create && !sealed).map_err(
        |e| match sealed && !key_path.exists() {
            true => AppError::internal(format!(
                "{e}: the database holds sealed data, so restore its data key file to {}",
                key_path.display()
            )),
            false => e,
        },
    )?;
    let data_keys = Arc::new(data_keys);
    let secrets = db.write(settings::load_or_create).await?;
    db.write(auth::signing::ensure_current).await?;
    ensure_admin(&db).await?;
    load_shipped_forms(&db).await?;
    load_shipped_areas(&db).await?;
    let indicators = Arc::new(indicators::Indicators::load(
        args.indicators_dir.as_deref(),
    )?);
    sync_indicators(&db, &indicators).await?;
    Ok(AppState {
        db,
        config: Config::from(args),
        secrets,
        blobs,
        form_cache: Default::default(),
        seen_nonces: Default::default(),
        data_keys,
        metrics: Default::default(),
        geometry_cache: Default::default(),
        refresher: indicators::backlog::recorder(),
        posts: Arc::new(posts::Posts),
        indicators,
        signing_keys: Default::default(),
        export_wake: Default::default(),
    })
}

/// Rebuilds the figures of indicators whose definitions changed since the last start (all of
/// them on a new database or after the area registry changed).
async fn sync_indicators(
    db: &Db,
    indicators: &Arc<indicators::Indicators>,
) -> Result<(), AppError> {
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

/// A request id from the client (a proxy's, say) is kept if it is short and plain; otherwise a
/// new one is made. It ties log lines to a request and is echoed in `X-Request-Id`.
fn request_id(req: &actix_web::dev::ServiceRequest) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        })
        .map(str::to_string)
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 8]>()))
}

/// Headers every response carries unless its handler chose otherwise.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

fn add_security_headers(headers: &mut header::HeaderMap, https: bool, api: bool) {
    for (name, value) in SECURITY_HEADERS {
        let name = HeaderName::from_static(name);
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if api && !headers.contains_key(header::CACHE_CONTROL) {
        // API answers carry personal data: no shared or browser cache may keep them.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Runs the HTTP server until it is stopped (SIGTERM or SIGINT: requests in flight, uploads
/// included, are finished first, for up to `--shutdown-timeout` seconds).
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let state = web::Data::new(bootstrap(&args).await?);
    let db = state.db.clone();
    let max_submission = args.max_submission_bytes;
    let maintenance = actix_web::rt::spawn(maintenance::run(db.clone()));
    let ind = state.indicators.clone();
    let figures = actix_web::rt::spawn(indicators::backlog::follow(db.clone(), ind.clone()));
    let export_jobs = actix_web::rt::spawn(exports::jobs::run(
        exports::Context::of(&state),
        args.db.data_dir.clone(),
        state.config.export_jobs.clone(),
        state.export_wake.clone(),
    ));
    let push = actix_web::rt::spawn(
        push::worker::Worker {
            db: db.clone(),
            keys: state.data_keys.clone(),
            indicators: state.indicators.clone(),
            metrics: state.metrics.clone(),
            config: state.config.push,
        }
        .run(),
    );
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let connections = connections::Connections::new(args.max_connections, workers);
    let counted = connections.clone();
    let server = HttpServer::new(move || {
        let metrics = state.metrics.clone();
        let connections = connections.clone();
        App::new()
            .app_data(state.clone())
            .wrap_fn(move |req, srv| {
                let started = Instant::now();
                let id = request_id(&req);
                // Log the route pattern, never the path: paths carry app keys and instance ids.
                let method = req.method().clone();
                let pattern = req.match_pattern().unwrap_or_else(|| "-".into());
                let https = req.connection_info().scheme() == "https";
                let api = req.path().starts_with("/api/");
                let span = tracing::info_span!("request", request_id = %id);
                let metrics = metrics.clone();
                let connections = connections.clone();
                let fut = span.in_scope(|| srv.call(req));
                async move {
                    let mut res = fut.await?;
                    // Collect sends its POST right after a HEAD, on the same connection.
                    if connections.busy() && method != Method::HEAD {
                        res.response_mut()
                            .head_mut()
                            .set_connection_type(ConnectionType::Close);
                    }
                    let status = res.status().as_u16();
                    let headers = res.headers_mut();
                    add_security_headers(headers, https, api);
                    if let Ok(v) = HeaderValue::from_str(&id) {
                        headers.insert(HeaderName::from_static("x-request-id"), v);
                    }
                    let elapsed = started.elapsed();
                    metrics.record_request(method.as_str(), &pattern, status, elapsed.as_secs_f64());
                    tracing::info!(%method, route = %pattern, status, ms = elapsed.as_millis() as u64, "request");
                    Ok(res)
                }
                .instrument(span)
            })
            .configure(ops::routes)
            .configure(api::routes)
            .configure(ui::routes)
            .configure(|cfg| openrosa::routes(cfg, max_submission))
    })
    // Phones on 2G take seconds per kilobyte and lose signal for minutes: see the README.
    .client_request_timeout(Duration::from_secs(args.request_head_timeout.max(1)))
    .client_disconnect_timeout(Duration::from_secs(10))
    .keep_alive(Duration::from_secs(30))
    .shutdown_timeout(args.shutdown_timeout)
    .on_connect(move |_, ext| {
        ext.insert(counted.opened());
    })
    .workers(workers)
    .max_connections(connections::Connections::per_worker(
        args.max_connections,
        workers,
    ));
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
    maintenance.abort();
    figures.abort();
    export_jobs.abort();
    // A delivery in flight stays leased until its lease runs out; then it is sent again.
    push.abort();
    // Writes queued by the last requests are committed before the process ends.
    db.write(|_| Ok(())).await?;
    // Not needed for correctness (the next start applies what waits), but the figures on disk
    // are then current for whoever opens the database next, a backup or the command line.
    indicators::backlog::settle(&db, &ind).await?;
    println!("fieldtally stopped");
    Ok(())
}
