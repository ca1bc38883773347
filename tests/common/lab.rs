//! A database with the shipped forms, Sơn La's areas and a few test hamlets, on which tests
//! store submissions through the domain functions (as the OpenRosa handler does) and read the
//! indicator figures. SQLite in a temporary folder, or a fresh PostgreSQL database when
//! `FIELDTALLY_TEST_POSTGRES` is set.
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::NaiveDate;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl};
use fieldtally::areas::import::{self, FileKind};
use fieldtally::db::{self, Conn, DbConn, Refresh};
use fieldtally::error::AppError;
use fieldtally::indicators::contribution::Basis;
use fieldtally::indicators::period::Period;
use fieldtally::indicators::query::{self, ValueRow, ValuesRequest};
use fieldtally::indicators::recompute::Verification;
use fieldtally::indicators::registry::MapKind;
use fieldtally::indicators::{self, backlog, Indicators};
use fieldtally::submissions::{self, Derived, Incoming, Stored};
use fieldtally::users::{self, NewUser, Role};
use serde_json::Value;

/// Test hamlets: two versions each (old commune until 30 June 2025, new commune from 1 July).
/// T-A3 is in the split commune 04012 Chiềng Hắc, whose hamlets went to 04078 and 03980.
pub const HAMLETS_CSV: &str =
    "level,code,name,type,parent_code,valid_from,valid_to,especially_difficult,demo
hamlet,T-A1,Bản A1,Bản,04012,,2025-06-30,yes,yes
hamlet,T-A1,Bản A1,Bản,04078,2025-07-01,,yes,yes
hamlet,T-A2,Bản A2,Bản,04012,,2025-06-30,no,yes
hamlet,T-A2,Bản A2,Bản,04078,2025-07-01,,no,yes
hamlet,T-A3,Bản A3,Bản,04012,,2025-06-30,no,yes
hamlet,T-A3,Bản A3,Bản,03980,2025-07-01,,no,yes
hamlet,T-B1,Bản B1,Bản,03646,,2025-06-30,yes,yes
hamlet,T-B1,Bản B1,Bản,03646,2025-07-01,,yes,yes
hamlet,T-B2,Bản B2,Bản,03649,,2025-06-30,no,yes
hamlet,T-B2,Bản B2,Bản,03646,2025-07-01,,no,yes
";

pub const HAMLETS: [&str; 5] = ["T-A1", "T-A2", "T-A3", "T-B1", "T-B2"];

/// Commune regions set on the test communes (the official lists carry none).
pub const REGIONS: [(&str, &str); 4] = [
    ("04078", "III"),
    ("03980", "II"),
    ("03646", "I"),
    ("04012", "III"),
];

/// A proptest runner for a lab: `cases` (PROPTEST_CASES overrides it), no failure files.
pub fn runner(cases: u32) -> proptest::test_runner::TestRunner {
    proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..Default::default()
    })
}

pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

pub struct Lab {
    conn: Option<DbConn>,
    pub indicators: Indicators,
    pub collector: i64,
    pg: Option<(String, String)>,
    _dir: tempfile::TempDir,
    versions: BTreeMap<String, String>,
    counter: u64,
}

fn fresh_postgres(base: &str) -> (String, String) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "fieldtally_lab_{}_{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let admin = format!("{}/postgres", base.trim_end_matches('/'));
    let mut c = PgConnection::establish(&admin).expect("connect to PostgreSQL");
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut c)
        .expect("drop");
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .expect("create");
    (format!("{}/{name}", base.trim_end_matches('/')), name)
}

impl Lab {
    /// On SQLite, or PostgreSQL when `FIELDTALLY_TEST_POSTGRES` is set.
    pub fn new() -> Lab {
        match std::env::var("FIELDTALLY_TEST_POSTGRES") {
            Ok(base) if !base.is_empty() => Lab::postgres(&base),
            _ => Lab::sqlite(),
        }
    }

    pub fn sqlite() -> Lab {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("lab.sqlite3").display());
        Lab::open(
            &url,
            dir,
            None,
            Indicators::load(None).expect("definitions"),
        )
    }

    pub fn postgres(base: &str) -> Lab {
        let (url, name) = fresh_postgres(base);
        Lab::open(
            &url,
            tempfile::tempdir().expect("temp dir"),
            Some((base.to_string(), name)),
            Indicators::load(None).expect("definitions"),
        )
    }

    /// With definitions other than the shipped ones.
    pub fn with_indicators(indicators: Indicators) -> Lab {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("lab.sqlite3").display());
        Lab::open(&url, dir, None, indicators)
    }

    fn open(
        url: &str,
        dir: tempfile::TempDir,
        pg: Option<(String, String)>,
        indicators: Indicators,
    ) -> Lab {
        let (_, conn) = db::connect(url).expect("connect");
        let collector = NewUser::prepare("lan", "lan-password-1", Role::Collector).expect("user");
        let mut lab = Lab {
            conn: Some(conn),
            indicators,
            collector: 0,
            pg,
            _dir: dir,
            versions: BTreeMap::new(),
            counter: 0,
        };
        for (_, xml) in fieldtally_forms::shipped::FORMS {
            let def = fieldtally_forms::parse_form(xml).expect("shipped form");
            lab.versions
                .insert(def.form_id.clone(), def.version.clone());
        }
        lab.collector = lab
            .tx(|c| {
                fieldtally::areas::shipped::load(c)?;
                import::import(c, FileKind::Csv, HAMLETS_CSV.as_bytes())?;
                for (_, xml) in fieldtally_forms::shipped::FORMS {
                    fieldtally::forms::add_version(c, xml, true)?;
                }
                Ok(users::create(c, &collector)?.id)
            })
            .expect("set up");
        for (code, region) in REGIONS {
            lab.sql(&format!(
                "UPDATE areas SET region = '{region}' WHERE level = 'commune' AND code = '{code}'"
            ));
        }
        let ind = std::mem::replace(&mut lab.indicators, Indicators::new(Default::default()));
        lab.tx(|c| indicators::sync(c, &ind).map(|_| ()))
            .expect("sync");
        lab.indicators = ind;
        lab
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    pub fn conn(&mut self) -> Conn<'_> {
        self.conn.as_mut().expect("connection").conn()
    }

    /// Runs `f` in one write transaction, as the server's writer does.
    pub fn tx<T>(
        &mut self,
        f: impl FnOnce(&mut Conn<'_>) -> Result<T, AppError>,
    ) -> Result<T, AppError> {
        self.conn().write_transaction(f)
    }

    pub fn sql(&mut self, sql: &str) {
        match self.conn.as_mut().expect("connection") {
            DbConn::Sqlite(c) => c.batch_execute(sql).expect(sql),
            DbConn::Pg(c) => c.batch_execute(sql).expect(sql),
        }
    }

    /// Removes every submission and figure (between proptest cases).
    pub fn clear(&mut self) {
        self.sql(
            "DELETE FROM indicator_revisions; DELETE FROM indicator_periods; \
             DELETE FROM indicator_cells; DELETE FROM indicator_rollups; DELETE FROM indicator_facts; \
             DELETE FROM indicator_applied; DELETE FROM indicator_backlog; \
             DELETE FROM indicator_targets; DELETE FROM indicator_baselines; \
             DELETE FROM submission_flags; DELETE FROM attachments; \
             DELETE FROM submission_areas; DELETE FROM submission_reviews; \
             DELETE FROM submission_comments; DELETE FROM submission_consent; \
             DELETE FROM submission_versions; DELETE FROM submission_changes; \
             DELETE FROM submissions;",
        );
    }

    pub fn version_of(&self, form: &str) -> String {
        self.versions.get(form).cloned().expect("shipped form")
    }

    /// Builds the POST a phone would send.
    pub fn incoming(&mut self, v: &Version) -> Incoming {
        let mut fields = v.fields.clone();
        if let Value::Object(o) = &mut fields {
            o.insert("hamlet".into(), Value::String(v.hamlet.clone()));
            o.insert("activity_date".into(), Value::String(v.date.to_string()));
        }
        let xml = format!(
            "<data id=\"{}\">{}|{}</data>",
            v.form, v.instance_id, fields
        )
        .into_bytes();
        Incoming {
            identity: fieldtally_forms::Identity {
                form_id: v.form.clone(),
                version: self.version_of(&v.form),
                instance_id: v.instance_id.clone(),
                deprecated_id: v.deprecated_id.clone(),
                instance_name: None,
                encrypted: false,
            },
            fields_json: fields.to_string(),
            derived: Derived {
                hamlet_code: Some(v.hamlet.clone()),
                activity_date: Some(v.date),
                beneficiary_key: v.key.clone(),
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
            collector_id: self.collector,
            device_id: None,
            files: Vec::new(),
            received_at: chrono::Utc::now().naive_utc(),
            consent: None,
        }
    }

    /// Stores a version and refreshes the figures in the same transaction, as the OpenRosa
    /// handler does.
    pub fn post(&mut self, v: &Version) -> Result<Stored, AppError> {
        let inc = self.incoming(v);
        let ind = std::mem::replace(&mut self.indicators, Indicators::new(Default::default()));
        let collector = self.collector;
        let result = self.tx(|c| {
            let stored = submissions::store(c, &inc)?;
            if stored.outcome != submissions::Outcome::Duplicate {
                indicators::refresh_submission(c, &ind, stored.submission_id, Some(collector))?;
            }
            Ok(stored)
        });
        self.indicators = ind;
        result
    }

    pub fn submit(&mut self, v: &Version) -> Stored {
        self.post(v).expect("stored")
    }

    /// Stores versions together in one transaction and refreshes their figures together at its
    /// end.
    pub fn submit_together(&mut self, vs: &[Version]) {
        let incoming: Vec<Incoming> = vs.iter().map(|v| self.incoming(v)).collect();
        let ind = std::mem::replace(&mut self.indicators, Indicators::new(Default::default()));
        let collector = self.collector;
        self.tx(|c| {
            let refreshes = store_together(c, &incoming, collector)?;
            indicators::refresh_submissions(c, &ind, &refreshes)
        })
        .expect("stored together");
        self.indicators = ind;
    }

    /// Stores versions together in one transaction that records them in the indicator backlog,
    /// as the server's writer does with the submissions of one batch; [`Lab::catch_up`] brings
    /// their figures up to date.
    pub fn submit_recorded(&mut self, vs: &[Version]) {
        let incoming: Vec<Incoming> = vs.iter().map(|v| self.incoming(v)).collect();
        let collector = self.collector;
        self.tx(|c| {
            let refreshes = store_together(c, &incoming, collector)?;
            backlog::record(c, &refreshes)
        })
        .expect("stored and recorded");
    }

    /// Brings the figures up to date with the backlog, as the server does before every read;
    /// returns how many submissions waited.
    pub fn catch_up(&mut self) -> usize {
        let ind = std::mem::replace(&mut self.indicators, Indicators::new(Default::default()));
        let n = self.tx(|c| backlog::catch_up(c, &ind)).expect("caught up");
        self.indicators = ind;
        n
    }

    /// A new submission of `form` in `hamlet` on `date`.
    pub fn new_version(&mut self, form: &str, hamlet: &str, date: &str, fields: Value) -> Version {
        self.counter += 1;
        Version {
            form: form.to_string(),
            instance_id: format!("uuid:lab-{}-{}", std::process::id(), self.counter),
            deprecated_id: None,
            hamlet: hamlet.to_string(),
            date: self::date(date),
            key: None,
            fields,
        }
    }

    /// An edit of `of` with other answers.
    pub fn edit_of(&mut self, of: &Version, fields: Value) -> Version {
        self.counter += 1;
        Version {
            instance_id: format!("uuid:lab-{}-{}", std::process::id(), self.counter),
            deprecated_id: Some(of.instance_id.clone()),
            fields,
            ..of.clone()
        }
    }

    /// Sets a review state the way the review code does: a plain update, then the hook.
    pub fn review(&mut self, instance_id: &str, state: &str) {
        let ind = std::mem::replace(&mut self.indicators, Indicators::new(Default::default()));
        let instance = instance_id.to_string();
        let state = state.to_string();
        self.tx(|c| {
            let sid = submission_id(c, &instance)?;
            set_review_state(c, sid, &state)?;
            indicators::refresh_submission(c, &ind, sid, None)
        })
        .expect("review");
        self.indicators = ind;
    }

    pub fn values(&mut self, req: &ValuesRequest) -> Result<Vec<ValueRow>, AppError> {
        let ind = std::mem::replace(&mut self.indicators, Indicators::new(Default::default()));
        let result = query::values(&mut self.conn(), &ind, req).map(|t| t.rows);
        self.indicators = ind;
        result
    }

    /// The one number for a measure, area and period (no breakdown).
    pub fn number(
        &mut self,
        measure: &str,
        area: &str,
        period: &str,
        basis: Basis,
        map: MapKind,
    ) -> Option<f64> {
        self.number_in(measure, area, period, basis, map)
            .expect("values")
    }

    /// The provisional number, or why there is none.
    pub fn number_result(
        &mut self,
        measure: &str,
        area: &str,
        period: &str,
        map: MapKind,
    ) -> Result<Option<f64>, AppError> {
        self.number_in(measure, area, period, Basis::Provisional, map)
    }

    fn number_in(
        &mut self,
        measure: &str,
        area: &str,
        period: &str,
        basis: Basis,
        map: MapKind,
    ) -> Result<Option<f64>, AppError> {
        let (indicator, name) = measure.split_once('/').expect("indicator/measure");
        let rows = self.values(&ValuesRequest {
            period: Period::parse(period).expect("period"),
            area: Some(area.to_string()),
            level: None,
            by: Vec::new(),
            basis,
            map,
            indicators: vec![indicator.to_string()],
            snapshot: None,
        })?;
        let row = rows
            .iter()
            .find(|r| r.measure == name)
            .unwrap_or_else(|| panic!("no row for {measure}"));
        Ok(row.value)
    }

    /// Provisional, current map.
    pub fn n(&mut self, measure: &str, area: &str, period: &str) -> f64 {
        self.number(measure, area, period, Basis::Provisional, MapKind::Current)
            .unwrap_or_else(|| panic!("{measure} {area} {period} has no value"))
    }

    /// Rows broken down by `by` for one measure, as (dims, numerator); a suppressed cell has
    /// no numerator.
    pub fn breakdown(
        &mut self,
        measure: &str,
        area: &str,
        period: &str,
        by: &[&str],
    ) -> Vec<(Vec<Option<String>>, Option<i64>)> {
        let (indicator, name) = measure.split_once('/').expect("indicator/measure");
        let rows = self
            .values(&ValuesRequest {
                period: Period::parse(period).expect("period"),
                area: Some(area.to_string()),
                level: None,
                by: by.iter().map(|s| s.to_string()).collect(),
                basis: Basis::Provisional,
                map: MapKind::Current,
                indicators: vec![indicator.to_string()],
                snapshot: None,
            })
            .expect("values");
        rows.into_iter()
            .filter(|r| r.measure == name)
            .map(|r| {
                (
                    by.iter()
                        .map(|d| r.dims.get(*d).cloned().flatten())
                        .collect(),
                    r.numerator,
                )
            })
            .collect()
    }

    pub fn verify(&mut self) -> Verification {
        let ind = std::mem::replace(&mut self.indicators, Indicators::new(Default::default()));
        let v = self.tx(|c| indicators::verify(c, &ind)).expect("verify");
        self.indicators = ind;
        v
    }

    /// Asserts that the maintained figures equal a full recompute.
    pub fn assert_exact(&mut self) {
        let v = self.verify();
        assert!(
            v.identical(),
            "maintained figures differ from a recompute: {v:?}"
        );
    }

    /// Replaces the definitions and brings the figures in line, as a restart does.
    pub fn restart_with(&mut self, indicators: Indicators) -> indicators::SyncReport {
        let report = self.tx(|c| indicators::sync(c, &indicators)).expect("sync");
        self.indicators = indicators;
        report
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        drop(self.conn.take());
        if let Some((base, name)) = &self.pg {
            let admin = format!("{}/postgres", base.trim_end_matches('/'));
            if let Ok(mut c) = PgConnection::establish(&admin) {
                let _ =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}")).execute(&mut c);
            }
        }
    }
}

pub fn submission_id(c: &mut Conn<'_>, instance_id: &str) -> Result<i64, AppError> {
    use diesel::prelude::*;
    use fieldtally::db::schema::submission_versions as v;
    Ok(fieldtally::on_conn!(c, x => v::table
        .filter(v::instance_id.eq(instance_id))
        .select(v::submission_id)
        .first(x))?)
}

/// The update the review code of issue 5 makes, without it.
pub fn set_review_state(c: &mut Conn<'_>, submission_id: i64, state: &str) -> Result<(), AppError> {
    use diesel::prelude::*;
    use fieldtally::db::schema::submissions as s;
    fieldtally::on_conn!(c, x => diesel::update(s::table.find(submission_id))
        .set(s::review_state.eq(state))
        .execute(x))?;
    Ok(())
}

/// One version of a submission as a phone sends it.
#[derive(Debug, Clone)]
pub struct Version {
    pub form: String,
    pub instance_id: String,
    pub deprecated_id: Option<String>,
    pub hamlet: String,
    pub date: NaiveDate,
    pub key: Option<String>,
    pub fields: Value,
}

impl Version {
    pub fn key(mut self, k: &str) -> Version {
        self.key = Some(k.to_string());
        self
    }

    pub fn in_hamlet(mut self, h: &str) -> Version {
        self.hamlet = h.to_string();
        self
    }

    pub fn on(mut self, d: &str) -> Version {
        self.date = date(d);
        self
    }
}

/// Stores versions in the open transaction; the refreshes their figures need.
fn store_together(
    c: &mut Conn<'_>,
    incoming: &[Incoming],
    collector: i64,
) -> Result<Vec<Refresh>, AppError> {
    let incs: Vec<&Incoming> = incoming.iter().collect();
    Ok(submissions::store_all(c, &incs)?
        .into_iter()
        .filter(|stored| stored.outcome != submissions::Outcome::Duplicate)
        .map(|stored| Refresh {
            submission_id: stored.submission_id,
            by: Some(collector),
        })
        .collect())
}
