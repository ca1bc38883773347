//! In-process hot paths of an upload, with criterion: reading an instance (identify, extract,
//! check the values) of a shipped form and of the 250-question form, and what the single writer
//! does per submission (store it and update the indicator aggregates), 100 submissions per
//! transaction as a busy grouped writer commits them.
//!
//! ```sh
//! cargo bench -p fieldtally-bench --bench hot_paths
//! ```

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fieldtally::db::{self, Conn, DbConn, Refresh};
use fieldtally::error::AppError;
use fieldtally::indicators::{self, Indicators};
use fieldtally::submissions::{self, Derived, Incoming};
use fieldtally::users::{self, NewUser, Role};
use fieldtally_bench::{large_form_xml, large_template, shipped_templates};

fn parsing(c: &mut Criterion) {
    let shipped = shipped_templates().expect("templates");
    let session = shipped
        .iter()
        .find(|t| t.form_id == "communication_session")
        .expect("communication_session");
    let def = fieldtally_forms::shipped::FORMS
        .iter()
        .map(|(_, x)| fieldtally_forms::parse_form(x).expect("form"))
        .find(|d| d.form_id == session.form_id)
        .expect("def");
    let large = large_template().expect("large");
    let large_def = fieldtally_forms::parse_form(large_form_xml().as_bytes()).expect("form");

    let mut group = c.benchmark_group("instance");
    for (name, template, def) in [
        ("communication_session", session, &def),
        ("survey_250", &large, &large_def),
    ] {
        let xml = template.fill(1, false).xml;
        group.throughput(Throughput::Bytes(xml.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let id = fieldtally_forms::identify(&xml).expect("identify");
                let ex = fieldtally_forms::extract(def, &xml).expect("extract");
                fieldtally_forms::check_values(def, &ex.fields).expect("values");
                (id, ex)
            })
        });
    }
    group.finish();
    c.bench_function("form/parse_survey_250", |b| {
        let xml = large_form_xml();
        b.iter(|| fieldtally_forms::parse_form(xml.as_bytes()).expect("form"))
    });
}

fn tx<T>(conn: &mut DbConn, f: impl FnOnce(&mut Conn<'_>) -> Result<T, AppError>) -> T {
    conn.conn().write_transaction(f).expect("transaction")
}

fn incoming(n: u64, version: &str, collector: i64) -> Incoming {
    let hamlet = "DEMO-04231-1";
    let date = NaiveDate::from_ymd_opt(2025, 1, 1).expect("date")
        + chrono::Duration::days((n % 300) as i64);
    let fields = serde_json::json!({
        "hamlet": hamlet,
        "activity_date": date.to_string(),
        "team_code": format!("TT-{}", n % 7),
        "session_format": "direct",
        "participants_by_group": [
            {"ethnicity": "03", "women": 5 + n % 4, "men": 3},
            {"ethnicity": "08", "women": 2, "men": 1 + n % 3}
        ]
    });
    let xml = format!("<data id=\"communication_session\">{n}{fields}</data>").into_bytes();
    Incoming {
        identity: fieldtally_forms::Identity {
            form_id: "communication_session".into(),
            version: version.to_string(),
            instance_id: format!("uuid:hot-{n}-{}", rand_suffix()),
            deprecated_id: None,
            instance_name: None,
            encrypted: false,
        },
        fields_json: fields.to_string(),
        derived: Derived {
            hamlet_code: Some(hamlet.into()),
            activity_date: Some(date),
            beneficiary_key: None,
            sensitive: None,
            flags: Vec::new(),
        },
        geopoint: None,
        expected: Vec::new(),
        xml_sha256: format!("{n:064x}"),
        xml,
        collector_id: collector,
        device_id: None,
        files: Vec::new(),
        received_at: Utc::now().naive_utc(),
        consent: None,
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn writer(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("hot.sqlite3").display());
    let (_, mut conn) = db::connect(&url).expect("database");
    let ind = Indicators::load(None).expect("definitions");
    let collector = NewUser::prepare("hot", "hot-password-1", Role::Collector).expect("user");
    let (collector, version) = tx(&mut conn, |c| {
        fieldtally::areas::shipped::load(c)?;
        let mut version = String::new();
        for (_, xml) in fieldtally_forms::shipped::FORMS {
            let v = fieldtally::forms::add_version(c, xml, true)?;
            if v.version.form_id == "communication_session" {
                version = v.version.version.clone();
            }
        }
        Ok((users::create(c, &collector)?.id, version))
    });
    tx(&mut conn, |c| indicators::sync(c, &ind).map(|_| ()));
    let mut n = 0u64;
    const PER_TX: u64 = 100;
    let mut group = c.benchmark_group("writer");
    group.throughput(Throughput::Elements(PER_TX));
    group.measurement_time(Duration::from_secs(10));
    // The writer's plain path (no savepoints; the figures of the whole batch refreshed together
    // at its end), and the per-write savepoints it falls back to when a write fails (each write
    // refreshing its own figures at once).
    for savepoints in [false, true] {
        let name = if savepoints {
            "store_and_refresh_100_per_tx_savepoint_each"
        } else {
            "store_100_together_refresh_together"
        };
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    n += PER_TX;
                    (0..PER_TX)
                        .map(|i| incoming(n + i, &version, collector))
                        .collect::<Vec<_>>()
                },
                |batch| {
                    tx(&mut conn, |c| {
                        if savepoints {
                            for inc in &batch {
                                c.transaction(|c| {
                                    let stored = submissions::store(c, inc)?;
                                    indicators::refresh_submission(
                                        c,
                                        &ind,
                                        stored.submission_id,
                                        Some(collector),
                                    )
                                })?;
                            }
                            return Ok(());
                        }
                        let incs: Vec<&Incoming> = batch.iter().collect();
                        let refreshes: Vec<Refresh> = submissions::store_all(c, &incs)?
                            .into_iter()
                            .map(|stored| Refresh {
                                submission_id: stored.submission_id,
                                by: Some(collector),
                            })
                            .collect();
                        indicators::refresh_submissions(c, &ind, &refreshes)
                    })
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, parsing, writer);
criterion_main!(benches);
