//! One typed configuration, built once from flags and `FIELDTALLY_*` variables.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Args;

use crate::auth::throttle::{Limit, Limits};

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `sqlite://PATH` (or a bare file path) or `postgres://…`. Default: `DATA_DIR/fieldtally.sqlite3`.
    #[arg(long, env = "FIELDTALLY_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where the SQLite file (by default), attachments and form media are kept.
    #[arg(long, env = "FIELDTALLY_DATA_DIR", default_value = "./fieldtally-data")]
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

/// A count that must be at least one: no workers or no connections would be a server that
/// never answers (actix-web panics on zero workers).
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
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
    #[arg(long, env = "FIELDTALLY_WORKERS", value_parser = at_least_one())]
    pub workers: Option<usize>,
    /// Connections served at once; more wait their turn (see the README). Each open connection
    /// may hold up to about 300 KB of a request not yet processed.
    #[arg(
        long,
        env = "FIELDTALLY_MAX_CONNECTIONS",
        default_value_t = 192,
        value_parser = at_least_one()
    )]
    pub max_connections: usize,
    #[command(flatten)]
    pub keys: DataKeyArgs,
    /// Addresses of reverse proxies whose `X-Forwarded-For` is believed (comma-separated); the
    /// sign-in rate limits count per client address, and behind a proxy every client would
    /// otherwise share the proxy's.
    #[arg(long, env = "FIELDTALLY_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxy: Vec<IpAddr>,
    /// Failed sign-ins of one account within 15 minutes before it is locked out.
    #[arg(long, env = "FIELDTALLY_LOGIN_MAX_FAILURES", default_value_t = 10)]
    pub login_max_failures: i64,
    /// Failed sign-ins from one address (IPv6: one /64) within 15 minutes before it is locked out.
    #[arg(
        long,
        env = "FIELDTALLY_LOGIN_MAX_FAILURES_PER_ADDRESS",
        default_value_t = 100
    )]
    pub login_max_failures_per_address: i64,
    /// How long a lock-out lasts, in seconds.
    #[arg(long, env = "FIELDTALLY_LOGIN_LOCKOUT_SECS", default_value_t = 900)]
    pub login_lockout_secs: i64,
    /// Seconds a client has to send a request's head (request line and headers) once connected.
    #[arg(long, env = "FIELDTALLY_REQUEST_HEAD_TIMEOUT", default_value_t = 30)]
    pub request_head_timeout: u64,
    /// Seconds an upload may go without a single byte arriving before it is abandoned (408).
    #[arg(long, env = "FIELDTALLY_UPLOAD_IDLE_TIMEOUT", default_value_t = 120)]
    pub upload_idle_timeout: u64,
    /// Seconds a stopping server (SIGTERM, SIGINT) waits for requests in flight to finish.
    #[arg(long, env = "FIELDTALLY_SHUTDOWN_TIMEOUT", default_value_t = 120)]
    pub shutdown_timeout: u64,
    /// If set, `/metrics` needs `Authorization: Bearer <this token>`.
    #[arg(long, env = "FIELDTALLY_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
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
    /// Exports of at most this many submissions are answered at once; larger ones must run as
    /// a job (`POST /api/v1/exports`).
    #[arg(long, env = "FIELDTALLY_EXPORT_DIRECT_MAX", default_value_t = 10_000)]
    pub export_direct_max: i64,
    /// Seconds without a heartbeat after which a running export job is taken to have lost its
    /// server (crashed) and is started again by another (or the restarted) instance.
    #[arg(long, env = "FIELDTALLY_EXPORT_STALE_SECS", default_value_t = 60)]
    pub export_stale_secs: i64,
    /// Seconds a finished export's file is kept for download before it is deleted.
    #[arg(long, env = "FIELDTALLY_EXPORT_KEEP_SECS", default_value_t = 86_400)]
    pub export_keep_secs: i64,
    /// Seconds between an instance's looks for export jobs queued by other instances or left by
    /// a crashed one; a job queued on an instance starts there at once.
    #[arg(long, env = "FIELDTALLY_EXPORT_POLL_SECS", default_value_t = 1.0)]
    pub export_poll_secs: f64,
    /// Seconds between looks at the outbox of push deliveries when it has nothing due.
    #[arg(long, env = "FIELDTALLY_PUSH_POLL_SECS", default_value_t = 5.0)]
    pub push_poll_secs: f64,
    /// Seconds a push request (webhook or DHIS2) may take before it counts as failed.
    #[arg(long, env = "FIELDTALLY_PUSH_TIMEOUT_SECS", default_value_t = 30.0)]
    pub push_timeout_secs: f64,
    /// Seconds before the first retry of a failed delivery; doubled after each failure (with
    /// jitter) up to --push-retry-max-secs.
    #[arg(long, env = "FIELDTALLY_PUSH_RETRY_BASE_SECS", default_value_t = 30.0)]
    pub push_retry_base_secs: f64,
    /// The longest wait between two attempts, in seconds.
    #[arg(long, env = "FIELDTALLY_PUSH_RETRY_MAX_SECS", default_value_t = 3600.0)]
    pub push_retry_max_secs: f64,
    /// Seconds after which a delivery that keeps failing is given up (status `failed`).
    #[arg(long, env = "FIELDTALLY_PUSH_GIVE_UP_SECS", default_value_t = 259200.0)]
    pub push_give_up_secs: f64,
}

/// Seconds from a flag as a duration, at least `min` (a negative or NaN value gives `min`).
fn seconds(s: f64, min: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(s.max(min))
        .unwrap_or(std::time::Duration::from_secs_f64(min))
}

/// Where the data keys that protect personal data are read from.
#[derive(Debug, Clone, Args)]
pub struct DataKeyArgs {
    /// File of data keys (`ID HEX` per line, the last one current) that seal the personal data of
    /// sensitive forms; see SECURITY.md. Default: `DATA_DIR/data.keys`, created with a new key
    /// on first start.
    #[arg(long, env = "FIELDTALLY_DATA_KEY_FILE")]
    pub data_key_file: Option<PathBuf>,
}

impl DataKeyArgs {
    /// The key file, and whether it may be created (only at the default place).
    pub fn path(&self, data_dir: &std::path::Path) -> (PathBuf, bool) {
        match &self.data_key_file {
            Some(p) => (p.clone(), false),
            None => (data_dir.join("data.keys"), true),
        }
    }
}

/// What request handlers need to know, shared as `web::Data`.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub public_url: Option<String>,
    pub max_submission_bytes: u64,
    pub token_ttl: i64,
    pub trusted_proxies: Vec<IpAddr>,
    pub limits: Limits,
    pub upload_idle_timeout: std::time::Duration,
    pub metrics_token: Option<String>,
    pub geotag: crate::geotag::Limits,
    /// Largest export answered at once, in submissions.
    pub export_direct_max: i64,
    pub export_jobs: crate::exports::jobs::Settings,
    pub push: crate::push::worker::PushConfig,
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
            trusted_proxies: a.trusted_proxy.clone(),
            limits: Limits {
                account: Limit {
                    max_failures: a.login_max_failures.max(1),
                    window: chrono::Duration::minutes(15),
                    lockout: chrono::Duration::seconds(a.login_lockout_secs.max(1)),
                },
                address: Limit {
                    max_failures: a.login_max_failures_per_address.max(1),
                    window: chrono::Duration::minutes(15),
                    lockout: chrono::Duration::seconds(a.login_lockout_secs.max(1)),
                },
            },
            upload_idle_timeout: std::time::Duration::from_secs(a.upload_idle_timeout.max(1)),
            metrics_token: a.metrics_token.clone().filter(|t| !t.is_empty()),
            geotag: crate::geotag::Limits {
                low_accuracy_metres: a.low_accuracy_metres,
                far_from_hamlet_metres: a.far_from_hamlet_metres,
            },
            export_direct_max: a.export_direct_max.max(0),
            export_jobs: crate::exports::jobs::Settings {
                stale_after: chrono::Duration::seconds(a.export_stale_secs.max(1)),
                keep: chrono::Duration::seconds(a.export_keep_secs.max(0)),
                poll: seconds(a.export_poll_secs, 0.05),
            },
            push: crate::push::worker::PushConfig {
                poll: seconds(a.push_poll_secs, 0.05),
                timeout: seconds(a.push_timeout_secs, 0.1),
                retry: crate::push::outbox::RetryPolicy {
                    base: seconds(a.push_retry_base_secs, 0.01),
                    max: seconds(a.push_retry_max_secs, 0.01),
                    give_up: seconds(a.push_give_up_secs, 0.0),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[test]
    fn zero_workers_or_connections_is_refused_with_the_option_named() {
        for option in ["--workers", "--max-connections"] {
            let refused = Serve::try_parse_from(["fieldtally", option, "0"])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(refused.contains(option), "{option} 0: {refused}");
        }
        let ok = Serve::try_parse_from(["fieldtally", "--workers", "2", "--max-connections", "64"])
            .expect("valid counts");
        assert_eq!(ok.args.workers, Some(2));
        assert_eq!(ok.args.max_connections, 64);
    }
}
