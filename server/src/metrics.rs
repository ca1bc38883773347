//! Prometheus metrics: requests by route and status, request latencies, submissions by outcome,
//! and the writer's queue length and batch sizes, rendered at `/metrics` in the text format.
//!
//! Labels use route patterns (`/submissions/{instance_id}`), never paths, so no instance id, app
//! key or name ever appears, and the number of series stays bounded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::db::WriterStats;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// Outcomes of submission POSTs that are counted.
pub const OUTCOMES: [&str; 5] = [
    "created",
    "edited",
    "older_version",
    "duplicate",
    "rejected",
];

/// Outcomes of delivery attempts that are counted (see `push::worker`).
pub const PUSH_OUTCOMES: [&str; 4] = ["delivered", "retry", "failed", "lease_lost"];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latencies: Mutex<BTreeMap<String, Histogram>>,
    submissions: [AtomicU64; OUTCOMES.len()],
    pushes: [AtomicU64; PUSH_OUTCOMES.len()],
}

/// Methods outside this list are counted as `OTHER`, so a client cannot mint label values.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

impl Metrics {
    /// Counts a finished request; `route` is its pattern, or `-` when no route matched.
    pub fn record_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((method_label(method).to_string(), route.to_string(), status))
                .or_default() += 1;
        }
        if let Ok(mut l) = self.latencies.lock() {
            l.entry(route.to_string()).or_default().observe(seconds);
        }
    }

    pub fn record_submission(&self, outcome: &str) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.submissions[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_push(&self, outcome: &str) {
        if let Some(i) = PUSH_OUTCOMES.iter().position(|o| *o == outcome) {
            self.pushes[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The text exposition format.
    pub fn render(&self, writer: &WriterStats, queue_length: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP fieldtally_http_requests_total HTTP requests by method, route pattern and status.\n");
        out.push_str("# TYPE fieldtally_http_requests_total counter\n");
        if let Ok(r) = self.requests.lock() {
            for ((method, route, status), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "fieldtally_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP fieldtally_http_request_duration_seconds Time to answer a request, by route pattern.\n");
        out.push_str("# TYPE fieldtally_http_request_duration_seconds histogram\n");
        if let Ok(l) = self.latencies.lock() {
            for (route, h) in l.iter() {
                let route = escape(route);
                for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "fieldtally_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                        h.buckets[i]
                    );
                }
                let _ = writeln!(out, "fieldtally_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(
                    out,
                    "fieldtally_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "fieldtally_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    h.count
                );
            }
        }
        out.push_str("# HELP fieldtally_submissions_total Submission POSTs by outcome.\n");
        out.push_str("# TYPE fieldtally_submissions_total counter\n");
        for (i, outcome) in OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "fieldtally_submissions_total{{outcome=\"{outcome}\"}} {}",
                self.submissions[i].load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP fieldtally_push_attempts_total Delivery attempts to push targets by outcome (retry: failed, tried again later; failed: given up or refused).\n");
        out.push_str("# TYPE fieldtally_push_attempts_total counter\n");
        for (i, outcome) in PUSH_OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "fieldtally_push_attempts_total{{outcome=\"{outcome}\"}} {}",
                self.pushes[i].load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP fieldtally_writer_queue_length Writes waiting for the writer.\n");
        out.push_str("# TYPE fieldtally_writer_queue_length gauge\n");
        let _ = writeln!(out, "fieldtally_writer_queue_length {queue_length}");
        writer.render(&mut out);
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Adds the outbox's state to `out`: deliveries waiting (the queue) and given up, across every
/// server on the database.
pub fn render_outbox(out: &mut String, pending: i64, failed: i64) {
    out.push_str("# HELP fieldtally_push_queue_length Deliveries waiting to be sent.\n");
    out.push_str("# TYPE fieldtally_push_queue_length gauge\n");
    let _ = writeln!(out, "fieldtally_push_queue_length {pending}");
    out.push_str("# HELP fieldtally_push_failed_deliveries Deliveries given up (status failed).\n");
    out.push_str("# TYPE fieldtally_push_failed_deliveries gauge\n");
    let _ = writeln!(out, "fieldtally_push_failed_deliveries {failed}");
}

/// Adds how many submissions wait for their indicator figures, across every server on the
/// database: it stays near what 200 ms of uploads bring while the figures keep up.
pub fn render_backlog(out: &mut String, waiting: i64) {
    out.push_str(
        "# HELP fieldtally_indicator_backlog Submissions whose indicator figures wait to be brought up to date.\n",
    );
    out.push_str("# TYPE fieldtally_indicator_backlog gauge\n");
    let _ = writeln!(out, "fieldtally_indicator_backlog {waiting}");
}

/// Adds the writer's batch statistics to `out`.
pub fn render_batches(out: &mut String, buckets: &[(usize, u64)], batches: u64, jobs: u64) {
    out.push_str(
        "# HELP fieldtally_writer_batch_size Writes committed together in one transaction.\n",
    );
    out.push_str("# TYPE fieldtally_writer_batch_size histogram\n");
    for (bound, n) in buckets {
        let _ = writeln!(
            out,
            "fieldtally_writer_batch_size_bucket{{le=\"{bound}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "fieldtally_writer_batch_size_bucket{{le=\"+Inf\"}} {batches}"
    );
    let _ = writeln!(out, "fieldtally_writer_batch_size_sum {jobs}");
    let _ = writeln!(out, "fieldtally_writer_batch_size_count {batches}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.record_request("GET", "/formList", 200, 0.003);
        m.record_request("GET", "/formList", 200, 0.2);
        m.record_request("BREW", "-", 404, 0.0001);
        m.record_submission("created");
        m.record_submission("nonsense");
        m.record_push("retry");
        let text = m.render(&WriterStats::default(), 3);
        assert!(text.contains(
            "fieldtally_http_requests_total{method=\"GET\",route=\"/formList\",status=\"200\"} 2"
        ));
        assert!(text.contains("method=\"OTHER\""));
        assert!(text.contains(
            "fieldtally_http_request_duration_seconds_bucket{route=\"/formList\",le=\"0.005\"} 1"
        ));
        assert!(
            text.contains("fieldtally_http_request_duration_seconds_count{route=\"/formList\"} 2")
        );
        assert!(text.contains("fieldtally_submissions_total{outcome=\"created\"} 1"));
        assert!(text.contains("fieldtally_writer_queue_length 3"));
        assert!(text.contains("fieldtally_push_attempts_total{outcome=\"retry\"} 1"));
        assert!(text.contains("fieldtally_writer_batch_size_count 0"));
    }

    #[test]
    fn renders_the_indicator_backlog_as_a_gauge() {
        let mut text = String::new();
        render_backlog(&mut text, 17);
        assert!(text.contains("# TYPE fieldtally_indicator_backlog gauge\n"));
        assert!(text.ends_with("\nfieldtally_indicator_backlog 17\n"));
    }
}
