//! Indicator benchmark: loads N submissions (default 100,000) over Sơn La's 75 communes and
//! 3,000 generated hamlets straight through the domain functions the server uses (store +
//! refresh in grouped transactions, reviews, edits), then measures the province-wide values
//! tables by commune (p50, p99) and a full recompute.
//!
//! ```sh
//! cargo bench --bench indicators -- --submissions 100000
//! cargo bench --bench indicators -- --submissions 1000000 --database-url postgres://postgres@127.0.0.1:5432/bench
//! ```
//!
//! `--sqlite-file PATH` keeps the SQLite database there; `--queries-only` then measures the
//! queries again on what an earlier run loaded (to compare builds without loading anew).
//!
//! Not a test: nothing here asserts a time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{Duration as Days, NaiveDate, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use fieldtally::areas::import::{self, FileKind};
use fieldtally::areas::Level;
use fieldtally::db::schema::{area_successions, areas};
use fieldtally::db::{self, Conn, DbConn, Refresh};
use fieldtally::error::AppError;
use fieldtally::indicators::contribution::Basis;
use fieldtally::indicators::period::Period;
use fieldtally::indicators::query::{self, ValuesRequest};
use fieldtally::indicators::registry::MapKind;
use fieldtally::indicators::{self, Indicators};
use fieldtally::submissions::{self, Derived, Incoming};
use fieldtally::users::{self, NewUser, Role};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Submissions per transaction, like a busy grouped writer.
const BATCH: usize = 500;

struct Args {
    submissions: usize,
    database_url: Option<String>,
    sqlite_file: Option<std::path::PathBuf>,
    queries_only: bool,
    queries: usize,
}

fn args() -> Args {
    let mut a = Args {
        submissions: 100_000,
        database_url: None,
        sqlite_file: None,
        queries_only: false,
        queries: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--submissions" => {
                a.submissions = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(a.submissions)
            }
            "--database-url" => a.database_url = it.next(),
            "--sqlite-file" => a.sqlite_file = it.next().map(Into::into),
            "--queries-only" => a.queries_only = true,
            "--queries" => a.queries = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.queries),
            // `cargo bench` passes --bench.
            _ => {}
        }
    }
    a
}

fn tx<T>(conn: &mut DbConn, f: impl FnOnce(&mut Conn<'_>) -> Result<T, AppError>) -> T {
    conn.conn().write_transaction(f).expect("transaction")
}

/// 40 hamlets per commune of today's map; before the reform each belongs to one of the old
/// communes its commune was formed from.
fn hamlets(conn: &mut DbConn) -> (String, Vec<String>) {
    let mut c = conn.conn();
    let new: Vec<(i64, String)> = fieldtally::on_conn!(&mut c, x => areas::table
        .filter(areas::level.eq(Level::Commune.as_str()))
        .filter(areas::valid_from.eq(NaiveDate::from_ymd_opt(2025, 7, 1).expect("date")))
        .select((areas::id, areas::code))
        .order(areas::code)
        .load(x))
    .expect("communes");
    let mut csv =
        String::from("level,code,name,type,parent_code,valid_from,valid_to,especially_difficult\n");
    let mut codes = Vec::new();
    for (i, (id, code)) in new.iter().enumerate() {
        let old: Vec<String> = fieldtally::on_conn!(&mut c, x => area_successions::table
            .inner_join(areas::table.on(areas::id.eq(area_successions::predecessor_id)))
            .filter(area_successions::successor_id.eq(id))
            .select(areas::code)
            .order(areas::code)
            .load(x))
        .expect("predecessors");
        for h in 0..40 {
            let hamlet = format!("B-{code}-{h:02}");
            let before = old
                .get(h % old.len().max(1))
                .cloned()
                .unwrap_or_else(|| code.clone());
            let difficult = if (i + h) % 3 == 0 { "yes" } else { "no" };
            csv.push_str(&format!(
                "hamlet,{hamlet},Bản {h},Bản,{before},,2025-06-30,{difficult}\n"
            ));
            csv.push_str(&format!(
                "hamlet,{hamlet},Bản {h},Bản,{code},2025-07-01,,{difficult}\n"
            ));
            codes.push(hamlet);
        }
    }
    (csv, codes)
}

const ETHNICITIES: [(&str, u32); 9] = [
    ("03", 50),
    ("08", 22),
    ("01", 10),
    ("06", 6),
    ("29", 4),
    ("09", 3),
    ("33", 2),
    ("34", 2),
    ("39", 1),
];

fn ethnicity(rng: &mut StdRng) -> &'static str {
    let total: u32 = ETHNICITIES.iter().map(|e| e.1).sum();
    let mut x = rng.random_range(0..total);
    for (e, w) in ETHNICITIES {
        if x < w {
            return e;
        }
        x -= w;
    }
    "03"
}

fn rows(rng: &mut StdRng, with_category: bool) -> Value {
    let n = rng.random_range(1..4);
    Value::Array(
        (0..n)
            .map(|_| {
                let mut r = json!({"ethnicity": ethnicity(rng), "women": rng.random_range(0..12), "men": rng.random_range(0..8)});
                if with_category {
                    let category = ["commune_official", "hamlet_head", "prestige_person"][rng.random_range(0..3)];
                    r["category"] = json!(category);
                }
                r
            })
            .collect(),
    )
}

/// A submission of a random form: (form, fields, beneficiary key).
fn answers(rng: &mut StdRng, hamlet: &str, woman: usize) -> (&'static str, Value, Option<String>) {
    let team =
        |rng: &mut StdRng, prefix: &str| format!("{prefix}-{hamlet}-{}", rng.random_range(0..2));
    match rng.random_range(0..100) {
        0..30 => {
            let packages = if rng.random_bool(0.4) {
                json!(["antenatal_care"])
            } else {
                json!(["none"])
            };
            (
                "safe_birth_outreach",
                json!({"consent": "yes", "ethnicity": ethnicity(rng), "birth_year": 1980 + woman % 25, "household_code": "H", "policy_package": packages}),
                Some(format!("W{hamlet}-{woman}")),
            )
        }
        30..55 => (
            "communication_session",
            json!({"team_code": team(rng, "TT"), "session_format": "direct", "participants_by_group": rows(rng, false)}),
            None,
        ),
        55..65 => (
            "club_meeting",
            json!({"club_code": team(rng, "CLB"), "club_type": "school", "participants_by_group": rows(rng, false)}),
            None,
        ),
        65..75 => (
            "policy_dialogue",
            json!({"level": "commune", "participants_total": rng.random_range(10..60), "participants_women": rng.random_range(5..30), "participants_ethnic_minority": rng.random_range(0..30)}),
            None,
        ),
        75..85 => {
            let kind = ["gender_mainstreaming", "em_women_leadership"][rng.random_range(0..2)];
            (
                "training_session",
                json!({"training_type": kind, "organiser_level": "commune", "participants_by_group": rows(rng, true)}),
                None,
            )
        }
        85..92 => (
            "livelihood_support",
            json!({"group_code": team(rng, "G"), "group_type": "cooperative", "women_role": "owner"}),
            None,
        ),
        92..96 => (
            "trusted_address_report",
            json!({"model_code": team(rng, "TA"), "model_active": "yes", "cases_received": 1, "people_supported_women": rng.random_range(0..4), "people_supported_men": rng.random_range(0..2)}),
            None,
        ),
        _ => (
            "trafficking_livelihood_report",
            json!({"model_code": team(rng, "M"), "model_active": "yes", "people_supported_women": rng.random_range(0..4), "people_supported_men": rng.random_range(0..2), "people_new": 0}),
            None,
        ),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn exit(message: &str) -> ! {
    eprintln!("indicator benchmark: {message}");
    std::process::exit(2)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = a
        .sqlite_file
        .clone()
        .unwrap_or_else(|| dir.path().join("bench.sqlite3"));
    let url = a
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", file.display()));
    let backend = if url.starts_with("sqlite") {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    if a.queries_only {
        println!("indicator benchmark: the tables of the loaded database on {backend}");
    } else {
        println!(
            "indicator benchmark: {} submissions on {backend}",
            a.submissions
        );
    }
    if a.queries_only && a.sqlite_file.is_none() && a.database_url.is_none() {
        exit("--queries-only measures a database an earlier run loaded: name it with --sqlite-file or --database-url");
    }
    if a.sqlite_file.is_some() && a.database_url.is_some() {
        exit("give --sqlite-file or --database-url, not both");
    }
    let (_, mut conn) = db::connect(&url).expect("database");
    let ind = Indicators::load(None).expect("definitions");
    let held: i64 = {
        use fieldtally::db::schema::submissions as s;
        fieldtally::on_conn!(&mut conn.conn(), x => s::table.count().get_result(x))
            .expect("count submissions")
    };
    match (a.queries_only, held) {
        (true, 0) => exit(&format!("{url} holds no submissions: load it first (without --queries-only)")),
        (false, n) if n > 0 => exit(&format!("{url} already holds {n} submissions: measure them with --queries-only, or load into another database")),
        _ => {}
    }
    if !a.queries_only {
        load(&mut conn, &ind, a.submissions);
    }
    queries(&mut conn, &ind, a.queries);
    if a.queries_only {
        return;
    }
    recompute(&mut conn, &ind);
    if url.starts_with("sqlite") {
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        println!("SQLite file: {:.0} MB", size as f64 / 1e6);
    }
}

/// Sets up the areas, forms and a collector, then stores `submissions` with their reviews.
fn load(conn: &mut DbConn, ind: &Indicators, submissions: usize) {
    let t = Instant::now();
    let collector = NewUser::prepare("bench", "bench-password", Role::Collector).expect("user");
    let (collector, versions) = tx(conn, |c| {
        fieldtally::areas::shipped::load(c)?;
        let mut versions = BTreeMap::new();
        for (_, xml) in fieldtally_forms::shipped::FORMS {
            let v = fieldtally::forms::add_version(c, xml, true)?;
            versions.insert(v.version.form_id.clone(), v.version.version.clone());
        }
        Ok((users::create(c, &collector)?.id, versions))
    });
    let (csv, hamlet_codes) = hamlets(conn);
    tx(conn, |c| {
        import::import(c, FileKind::Csv, csv.as_bytes()).map(|_| ())
    });
    match conn {
        DbConn::Sqlite(c) => c.batch_execute("UPDATE areas SET region = CASE id % 3 WHEN 0 THEN 'I' WHEN 1 THEN 'II' ELSE 'III' END WHERE level = 'commune'"),
        DbConn::Pg(c) => c.batch_execute("UPDATE areas SET region = CASE id % 3 WHEN 0 THEN 'I' WHEN 1 THEN 'II' ELSE 'III' END WHERE level = 'commune'"),
    }
    .expect("regions");
    tx(conn, |c| indicators::sync(c, ind).map(|_| ()));
    println!(
        "set up {} hamlets in {:.1} s",
        hamlet_codes.len(),
        t.elapsed().as_secs_f64()
    );

    // Load.
    let mut rng = StdRng::seed_from_u64(8);
    let start = NaiveDate::from_ymd_opt(2025, 1, 1).expect("date");
    let women_per_hamlet = (submissions * 3 / 10 / hamlet_codes.len() / 3).max(1);
    let t = Instant::now();
    let mut done = 0usize;
    let mut edits = 0usize;
    while done < submissions {
        let n = BATCH.min(submissions - done);
        let mut batch: Vec<(Incoming, &'static str, Option<Incoming>)> = Vec::with_capacity(n);
        for i in 0..n {
            let hamlet = &hamlet_codes[rng.random_range(0..hamlet_codes.len())];
            let date = start + Days::days(rng.random_range(0..365));
            let woman = rng.random_range(0..women_per_hamlet);
            let (form, fields, key) = answers(&mut rng, hamlet, woman);
            let state = match rng.random_range(0..100) {
                0..70 => "approved",
                70..75 => "rejected",
                75..80 => "has_issues",
                _ => "received",
            };
            let make = |id: String, deprecated: Option<String>, fields: &Value| {
                let mut f = fields.clone();
                f["hamlet"] = json!(hamlet);
                f["activity_date"] = json!(date.to_string());
                let xml = format!("<data id=\"{form}\">{id}{f}</data>").into_bytes();
                Incoming {
                    identity: fieldtally_forms::Identity {
                        form_id: form.to_string(),
                        version: versions[form].clone(),
                        instance_id: id,
                        deprecated_id: deprecated,
                        instance_name: None,
                        encrypted: false,
                    },
                    fields_json: f.to_string(),
                    derived: Derived {
                        hamlet_code: Some(hamlet.clone()),
                        activity_date: Some(date),
                        beneficiary_key: key.clone(),
                        sensitive: None,
                        flags: Vec::new(),
                    },
                    geopoint: None,
                    expected: Vec::new(),
                    xml_sha256: {
                        use sha2::Digest;
                        hex::encode(sha2::Sha256::digest(&xml))
                    },
                    xml,
                    collector_id: collector,
                    device_id: None,
                    files: Vec::new(),
                    received_at: Utc::now().naive_utc(),
                    consent: None,
                }
            };
            let id = format!("uuid:bench-{}", done + i);
            let edit = rng.random_bool(0.02).then(|| {
                let mut f = fields.clone();
                f["edited"] = json!(true);
                make(format!("uuid:bench-{}-e", done + i), Some(id.clone()), &f)
            });
            edits += usize::from(edit.is_some());
            batch.push((make(id, None, &fields), state, edit));
        }
        tx(conn, |c| {
            // As the writer does: the batch's new submissions stored together, then its edits,
            // then the review states, and the figures of all of them brought up to date once.
            let new: Vec<&Incoming> = batch.iter().map(|(inc, _, _)| inc).collect();
            let stored = submissions::store_all(c, &new)?;
            let edited: Vec<&Incoming> = batch.iter().filter_map(|(_, _, e)| e.as_ref()).collect();
            submissions::store_all(c, &edited)?;
            for state in ["approved", "rejected", "has_issues"] {
                let ids: Vec<i64> = stored
                    .iter()
                    .zip(&batch)
                    .filter(|(_, (_, s, _))| *s == state)
                    .map(|(st, _)| st.submission_id)
                    .collect();
                use fieldtally::db::schema::submissions as s;
                fieldtally::on_conn!(c, x => diesel::update(s::table.filter(s::id.eq_any(&ids)))
                    .set(s::review_state.eq(state))
                    .execute(x))?;
            }
            let refreshes: Vec<Refresh> = stored
                .iter()
                .map(|st| Refresh {
                    submission_id: st.submission_id,
                    by: Some(collector),
                })
                .collect();
            indicators::refresh_submissions(c, ind, &refreshes)
        });
        done += n;
        if done.is_multiple_of(50_000) || done == submissions {
            println!(
                "  loaded {done} submissions ({edits} edited) in {:.0} s: {:.0} submissions/s with their reviews",
                t.elapsed().as_secs_f64(),
                done as f64 / t.elapsed().as_secs_f64()
            );
        }
    }
}

/// The province-wide tables by commune: by ethnicity (on both bases and maps), in total, and by
/// ethnicity × sex.
fn queries(conn: &mut DbConn, ind: &Indicators, queries: usize) {
    let table = |basis: Basis, map: MapKind, by: &[&str]| ValuesRequest {
        period: Period::Year(2025),
        area: None,
        level: Some(Level::Commune),
        by: by.iter().map(|s| s.to_string()).collect(),
        basis,
        map,
        indicators: Vec::new(),
        snapshot: None,
    };
    let cases = [
        (
            "commune × ethnicity, provisional, current map",
            table(Basis::Provisional, MapKind::Current, &["ethnicity"]),
        ),
        (
            "commune × ethnicity, confirmed, as recorded",
            table(Basis::Confirmed, MapKind::AsRecorded, &["ethnicity"]),
        ),
        (
            "commune, provisional, current map",
            table(Basis::Provisional, MapKind::Current, &[]),
        ),
        // Two dimensions: always folded from the cells.
        (
            "commune × ethnicity × sex, provisional, current map",
            table(Basis::Provisional, MapKind::Current, &["ethnicity", "sex"]),
        ),
    ];
    for (label, req) in &cases {
        let mut times = Vec::with_capacity(queries);
        let mut rows = 0;
        for i in 0..queries + 5 {
            let t = Instant::now();
            let r = query::values(&mut conn.conn(), ind, req).expect("values");
            // The first runs warm the caches.
            if i >= 5 {
                times.push(t.elapsed());
            }
            rows = r.rows.len();
        }
        times.sort();
        println!(
            "values table, {label}: {rows} rows, p50 {}, p99 {} ({} runs)",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            times.len()
        );
    }
}

/// A full recompute, then a verification of the maintained figures against one.
fn recompute(conn: &mut DbConn, ind: &Indicators) {
    let t = Instant::now();
    let report = tx(conn, |c| indicators::recompute_all(c, ind, "benchmark"));
    println!(
        "full recompute: {:.1} s ({} submissions, {} facts, {} figures)",
        t.elapsed().as_secs_f64(),
        report.submissions,
        report.facts,
        report.cells
    );
    let t = Instant::now();
    let v = tx(conn, |c| indicators::verify(c, ind));
    println!(
        "verification (recompute into a scratch copy and compare): {:.1} s, identical: {}",
        t.elapsed().as_secs_f64(),
        v.identical()
    );
}
