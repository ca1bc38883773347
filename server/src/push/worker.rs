//! The delivery worker: one per server. It queues the DHIS2 pushes the schedule calls for,
//! claims due deliveries with a lease, sends them with reqwest, and records each outcome.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};

use super::outbox::{self, Attempt, Claimed, Recorded, RetryPolicy};
use super::{dhis2, webhook, Credentials, Kind};
use crate::crypto::DataKeys;
use crate::db::Db;
use crate::indicators::{backlog, Indicators};
use crate::metrics::Metrics;

/// Deliveries one worker sends at once.
const BATCH: i64 = 16;
/// The header that lets a receiver recognise a delivery it has already booked.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// How the worker runs (from `serve`'s `--push-*` flags).
#[derive(Debug, Clone, Copy)]
pub struct PushConfig {
    /// How often the outbox is looked at when there is nothing to send.
    pub poll: Duration,
    /// How long one request may take, connecting included.
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl PushConfig {
    /// A lease outlasts a request by far, so it only passes to another worker when its holder
    /// has died (or its database writes stalled).
    fn lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(5)
    }
}

/// Everything the worker needs from the server.
pub struct Worker {
    pub db: Db,
    pub keys: Arc<DataKeys>,
    pub indicators: Arc<Indicators>,
    pub metrics: Arc<Metrics>,
    pub config: PushConfig,
}

fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        // A redirect would turn the POST into a GET (and DHIS2 redirects to its login page):
        // a 3xx is a failure to report, never followed.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("fieldtally/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {:.1} s", timeout.as_secs_f64())
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        // Without the URL: the target's address is in its configuration already.
        format!("request failed: {}", ErrorText(e))
    }
}

/// A reqwest error's message without the URL, followed by its causes.
struct ErrorText<'a>(&'a reqwest::Error);

impl std::fmt::Display for ErrorText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut source = std::error::Error::source(self.0);
        let mut first = true;
        while let Some(s) = source {
            if !first {
                f.write_str(": ")?;
            }
            write!(f, "{s}")?;
            first = false;
            source = s.source();
        }
        if first {
            f.write_str("unknown error")?;
        }
        Ok(())
    }
}

fn snippet(s: &str) -> String {
    s.chars().take(200).collect()
}

async fn send_webhook(
    http: &reqwest::Client,
    keys: &DataKeys,
    c: &Claimed,
    timeout: Duration,
) -> Attempt {
    let secret = match c.target.signing_secret(keys) {
        Ok(s) => s,
        Err(e) => return Attempt::Failed(format!("cannot open the signing secret: {e}")),
    };
    let timestamp = chrono::Utc::now().timestamp();
    let signature = match webhook::signature(&secret, timestamp, c.payload.as_bytes()) {
        Ok(s) => s,
        Err(e) => return Attempt::Failed(e.to_string()),
    };
    let res = http
        .post(&c.target.url)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(webhook::SIGNATURE_HEADER, signature)
        .header(webhook::EVENT_HEADER, &c.event)
        .header(webhook::DELIVERY_HEADER, c.id.to_string())
        .header(IDEMPOTENCY_HEADER, &c.idempotency_key)
        .body(c.payload.clone())
        .send()
        .await;
    match res {
        Ok(r) if r.status().is_success() => Attempt::Delivered,
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            Attempt::Failed(format!("HTTP {status}: {}", snippet(&body)))
        }
        Err(e) => Attempt::Failed(describe(&e, timeout)),
    }
}

async fn send_dhis2(
    http: &reqwest::Client,
    keys: &DataKeys,
    c: &Claimed,
    timeout: Duration,
) -> Attempt {
    let auth = match c.target.credentials(keys) {
        Ok(Credentials::Basic { username, password }) => {
            use base64::Engine;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )
        }
        Ok(Credentials::Token { token }) => format!("ApiToken {token}"),
        Err(e) => return Attempt::Failed(format!("cannot open the credentials: {e}")),
    };
    let res = http
        .post(format!("{}/api/dataValueSets", c.target.url))
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(AUTHORIZATION, auth)
        .header(IDEMPOTENCY_HEADER, &c.idempotency_key)
        .body(c.payload.clone())
        .send()
        .await;
    let r = match res {
        Ok(r) => r,
        Err(e) => return Attempt::Failed(describe(&e, timeout)),
    };
    let status = r.status().as_u16();
    let body = match r.text().await {
        Ok(b) => b,
        Err(e) => return Attempt::Failed(describe(&e, timeout)),
    };
    match dhis2::read_answer(status, &body) {
        dhis2::Answer::Imported(summary) => {
            tracing::info!(delivery = c.id, %summary, "pushed to DHIS2");
            Attempt::Delivered
        }
        dhis2::Answer::Retry(e) => Attempt::Failed(e),
        dhis2::Answer::Refused(e) => Attempt::Refused(e),
    }
}

impl Worker {
    /// Runs until the server stops.
    pub async fn run(self) {
        let http = match client(self.config.timeout) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the delivery worker");
                return;
            }
        };
        let name = hex::encode(rand::random::<[u8; 8]>());
        loop {
            let busy = self.round(&http, &name).await;
            if !busy {
                tokio::time::sleep(self.config.poll).await;
            }
        }
    }

    /// Queues due scheduled pushes, then sends what is due; whether there was anything.
    async fn round(&self, http: &reqwest::Client, name: &str) -> bool {
        self.schedule().await;
        // A look on a read connection first: an idle outbox costs the writer nothing.
        match self.db.read(outbox::has_due).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox");
                return false;
            }
        }
        let worker = name.to_string();
        let lease = self.config.lease();
        let claimed = match self
            .db
            .write(move |conn| outbox::claim(conn, &worker, lease, BATCH))
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim deliveries");
                return false;
            }
        };
        if claimed.is_empty() {
            return false;
        }
        let timeout = self.config.timeout;
        let sends = claimed.iter().map(|c| async move {
            let attempt = match c.target.kind {
                Kind::Webhook => send_webhook(http, &self.keys, c, timeout).await,
                Kind::Dhis2 => send_dhis2(http, &self.keys, c, timeout).await,
            };
            (c, attempt)
        });
        let results = futures_util::future::join_all(sends).await;
        for (c, attempt) in results {
            self.record(name, c, attempt).await;
        }
        true
    }

    /// Queues the scheduled DHIS2 pushes that are due, their values read outside the writer.
    async fn schedule(&self) {
        if let Err(e) = backlog::settle(&self.db, &self.indicators).await {
            tracing::warn!(error = %e, "the figures to push could not be brought up to date");
            return;
        }
        let indicators = self.indicators.clone();
        let due = match self
            .db
            .read(move |conn| dhis2::due_scheduled(conn, &indicators))
            .await
        {
            Ok(d) if d.is_empty() => return,
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "scheduled DHIS2 pushes could not be read");
                return;
            }
        };
        if let Err(e) = self
            .db
            .write(move |conn| dhis2::enqueue_scheduled(conn, &due))
            .await
        {
            tracing::warn!(error = %e, "scheduled DHIS2 pushes could not be queued");
        }
    }

    async fn record(&self, name: &str, c: &Claimed, attempt: Attempt) {
        let (id, worker, policy) = (c.id, name.to_string(), self.config.retry);
        let jitter: f64 = rand::random();
        let outcome = attempt.clone();
        let recorded = self
            .db
            .write(move |conn| outbox::record(conn, id, &worker, &outcome, &policy, jitter))
            .await;
        match recorded {
            Ok(r) => {
                self.metrics.record_push(match r {
                    Recorded::Delivered => "delivered",
                    Recorded::Retry(_) => "retry",
                    Recorded::Failed => "failed",
                    Recorded::LeaseLost => "lease_lost",
                });
                if let (
                    Recorded::Retry(_) | Recorded::Failed,
                    Attempt::Failed(e) | Attempt::Refused(e),
                ) = (&r, &attempt)
                {
                    tracing::warn!(delivery = id, target = c.target.id, event = %c.event, outcome = ?r, error = %e, "delivery failed");
                }
            }
            // The lease runs out and the delivery is sent again, with the same key.
            Err(e) => tracing::warn!(delivery = id, error = %e, "cannot record a delivery"),
        }
    }
}
