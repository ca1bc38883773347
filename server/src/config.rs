//! One typed configuration, built once from flags and `FIELDTALLY_*` variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `sqlite://PATH` (or a bare file path) or `postgres://…`. Default: `DATA_DIR/fieldtally.sqlite3`.
    #[arg(long, env = "FIELDTALLY_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where the SQLite file (by default), attachments and form media are kept.
    #[arg(long, env = "FIELDTALLY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

impl DatabaseArgs {
    pub fn url(&self) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!(
                "sqlite://{}",
                self.data_dir.join("fieldtally.sqlite3").display()
            ),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Address and port to listen on.
    #[arg(long, env = "FIELDTALLY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The URL phones and browsers use to reach this server (scheme, host, optional path prefix);
    /// by default derived from each request, honouring X-Forwarded-Proto and X-Forwarded-Host.
    #[arg(long, env = "FIELDTALLY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// PEM certificate chain; with --tls-key the server speaks https (needed for Basic auth).
    #[arg(long, env = "FIELDTALLY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "FIELDTALLY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Largest accepted submission POST in bytes (advertised to phones, which split larger uploads).
    #[arg(
        long,
        env = "FIELDTALLY_MAX_SUBMISSION_BYTES",
        default_value_t = 50 * 1024 * 1024
    )]
    pub max_submission_bytes: u64,
    /// Lifetime of API access tokens in seconds.
    #[arg(long, env = "FIELDTALLY_TOKEN_TTL", default_value_t = 3600)]
    pub token_ttl: i64,
    /// Worker threads for HTTP (default: one per core).
    #[arg(long, env = "FIELDTALLY_WORKERS")]
    pub workers: Option<usize>,
    /// A geotag whose accuracy radius is larger than this many metres is flagged `low_accuracy`.
    #[arg(long, env = "FIELDTALLY_LOW_ACCURACY_METRES", default_value_t = 100.0)]
    pub low_accuracy_metres: f64,
    /// A geotag farther than this many metres from its hamlet's centre is flagged
    /// `far_from_hamlet`.
    #[arg(
        long,
        env = "FIELDTALLY_FAR_FROM_HAMLET_METRES",
        default_value_t = 5000.0
    )]
    pub far_from_hamlet_metres: f64,
    /// A folder of indicator definitions (`*.toml`) that add to or replace the shipped ones
    /// (same file name); figures of changed indicators are rebuilt at start.
    #[arg(long, env = "FIELDTALLY_INDICATORS_DIR")]
    pub indicators_dir: Option<PathBuf>,
}

/// What request handlers need to know, shared as `web::Data`.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub public_url: Option<String>,
    pub max_submission_bytes: u64,
    pub token_ttl: i64,
    pub geotag: crate::geotag::Limits,
}

impl From<&ServeArgs> for Config {
    fn from(a: &ServeArgs) -> Self {
        Config {
            data_dir: a.db.data_dir.clone(),
            public_url: a
                .public_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
            max_submission_bytes: a.max_submission_bytes,
            token_ttl: a.token_ttl,
            geotag: crate::geotag::Limits {
                low_accuracy_metres: a.low_accuracy_metres,
                far_from_hamlet_metres: a.far_from_hamlet_metres,
            },
        }
    }
}
