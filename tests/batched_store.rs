//! The writer stores the submission POSTs of a batch together (`submissions::store_all`: new
//! submissions a statement per table, the rest one by one). A proptest checks that this ends
//! exactly as storing the same POSTs one after another does: the same answers (outcome, missing
//! attachments, which submission, which refusal) and the same stored submissions, versions,
//! attachments, area index and change feed. POSTs repeat, conflict, edit, arrive before the
//! version they edit, and bring their photo later, within a batch and across batches.
//!
//! Runs on SQLite, or on PostgreSQL with FIELDTALLY_TEST_POSTGRES.

#[path = "common/lab.rs"]
mod lab;

use std::cell::RefCell;
use std::collections::BTreeMap;

use diesel::prelude::*;
use fieldtally::db::schema::{
    attachments, submission_areas, submission_changes, submission_versions, submissions,
};
use fieldtally::db::Conn;
use fieldtally::error::AppError;
use fieldtally::on_conn;
use fieldtally::submissions::{store, store_all, Incoming, IncomingFile, Stored};
use lab::{date, Lab, Version, HAMLETS};
use proptest::prelude::*;
use serde_json::json;

/// One POST: logical submission `k`, its version `v` (an edit of version `v - 1`), whether its
/// XML differs from the first POST of that version (a conflict), whether it brings the photo
/// the instance names, and its hamlet.
#[derive(Debug, Clone)]
struct Spec {
    k: usize,
    v: usize,
    altered: bool,
    photo: bool,
    hamlet: usize,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0usize..3,
        0usize..3,
        proptest::bool::weighted(0.1),
        any::<bool>(),
        0..HAMLETS.len(),
    )
        .prop_map(|(k, v, altered, photo, hamlet)| Spec {
            k,
            v,
            altered,
            photo,
            hamlet,
        })
}

fn batches() -> impl Strategy<Value = Vec<Vec<Spec>>> {
    proptest::collection::vec(proptest::collection::vec(spec(), 1..6), 1..5)
}

fn instance(case: u64, k: usize, v: usize) -> String {
    format!("uuid:batch-{case}-{k}-{v}")
}

fn incoming(lab: &mut Lab, case: u64, s: &Spec) -> Incoming {
    // Every POST of a version sends the same XML, unless it is altered (a conflict).
    let (hamlet, fields) = if s.altered {
        (
            s.hamlet,
            json!({"club_code": format!("C{}", s.k), "edited": s.v, "altered": true}),
        )
    } else {
        (
            s.k,
            json!({"club_code": format!("C{}", s.k), "edited": s.v}),
        )
    };
    let mut inc = lab.incoming(&Version {
        form: "club_meeting".into(),
        instance_id: instance(case, s.k, s.v),
        deprecated_id: (s.v > 0).then(|| instance(case, s.k, s.v - 1)),
        hamlet: HAMLETS[hamlet].into(),
        date: date(if s.k == 0 { "2025-03-01" } else { "2025-09-15" }),
        key: None,
        fields,
    });
    inc.expected = vec!["photo.jpg".into()];
    if s.photo {
        inc.files = vec![IncomingFile {
            name: "photo.jpg".into(),
            sha256: format!("{:064x}", s.k * 10 + s.v),
            size: 1000,
            content_type: "image/jpeg".into(),
        }];
    }
    inc
}

/// What a POST was answered: (outcome, missing, the instanceID that names its submission once
/// the batch is stored) or the refusal.
type Answer = Result<(String, i64, String), String>;

fn answers(
    c: &mut Conn<'_>,
    results: Vec<Result<Stored, String>>,
) -> Result<Vec<Answer>, AppError> {
    let mut out = Vec::new();
    for result in results {
        out.push(match result {
            Ok(stored) => {
                let root: String = on_conn!(c, x => submissions::table
                    .find(stored.submission_id)
                    .select(submissions::instance_id)
                    .first(x))?;
                Ok((format!("{:?}", stored.outcome), stored.missing, root))
            }
            Err(e) => Err(e),
        });
    }
    Ok(out)
}

/// Stores one POST under its own savepoint, as the writer's fallback does.
fn alone(c: &mut Conn<'_>, inc: &Incoming) -> Result<Stored, String> {
    c.transaction(|c| store(c, inc)).map_err(|e| e.to_string())
}

/// One POST after another, each under its own savepoint, a transaction per batch.
fn one_by_one(lab: &mut Lab, batches: &[Vec<Incoming>]) -> Vec<Answer> {
    let mut out = Vec::new();
    for batch in batches {
        let stored = lab
            .tx(|c| {
                let results = batch.iter().map(|inc| alone(c, inc)).collect();
                answers(c, results)
            })
            .expect("batch");
        out.extend(stored);
    }
    out
}

/// As the writer: the batch together; if that fails, each alone under a savepoint.
fn together(lab: &mut Lab, batches: &[Vec<Incoming>]) -> Vec<Answer> {
    let mut out = Vec::new();
    for batch in batches {
        let stored = lab
            .tx(|c| {
                let incs: Vec<&Incoming> = batch.iter().collect();
                let results = match c.transaction(|c| store_all(c, &incs)) {
                    Ok(stored) => stored.into_iter().map(Ok).collect(),
                    Err(_) => batch.iter().map(|inc| alone(c, inc)).collect(),
                };
                answers(c, results)
            })
            .expect("batch");
        out.extend(stored);
    }
    out
}

/// (id, instanceID, deprecatedID, current, hamlet) of a stored version.
type VersionRow = (i64, String, Option<String>, bool, Option<String>);

/// Everything stored about the submissions, by the instanceID that names each.
type Contents = BTreeMap<String, Vec<String>>;

fn stored(lab: &mut Lab) -> Contents {
    lab.tx(|c| {
        let subs: Vec<(i64, String, String, String)> = on_conn!(c, x => submissions::table
            .select((
                submissions::id,
                submissions::instance_id,
                submissions::form_version,
                submissions::review_state,
            ))
            .load(x))?;
        let mut out = BTreeMap::new();
        for (id, root, form_version, state) in subs {
            let mut facts = vec![format!("{form_version} {state}")];
            let versions: Vec<VersionRow> = on_conn!(c, x => submission_versions::table
                .filter(submission_versions::submission_id.eq(id))
                .select((
                    submission_versions::id,
                    submission_versions::instance_id,
                    submission_versions::deprecated_id,
                    submission_versions::is_current,
                    submission_versions::hamlet_code,
                ))
                .load(x))?;
            let mut lines = Vec::new();
            for (vid, instance_id, deprecated, current, hamlet) in versions {
                let files: Vec<(String, Option<String>)> = on_conn!(c, x => attachments::table
                    .filter(attachments::version_id.eq(vid))
                    .select((attachments::name, attachments::sha256))
                    .order(attachments::name)
                    .load(x))?;
                lines.push(format!(
                    "version {instance_id} of {deprecated:?} current={current} {hamlet:?} files {files:?}"
                ));
            }
            lines.sort();
            facts.extend(lines);
            let mut areas: Vec<String> = on_conn!(c, x => submission_areas::table
                .filter(submission_areas::submission_id.eq(id))
                .select(submission_areas::area_code)
                .load(x))?;
            areas.sort();
            facts.push(format!("areas {areas:?}"));
            let changes: Vec<(String, String)> = on_conn!(c, x => submission_changes::table
                .filter(submission_changes::submission_id.eq(id))
                .order(submission_changes::seq)
                .select((submission_changes::kind, submission_changes::instance_id))
                .load(x))?;
            facts.push(format!("changes {changes:?}"));
            out.insert(root, facts);
        }
        Ok(out)
    })
    .expect("read back")
}

#[test]
fn storing_a_batch_together_ends_as_storing_it_one_post_after_another() {
    let labs = RefCell::new((Lab::new(), Lab::new()));
    let cases = if labs.borrow().0.is_postgres() {
        16
    } else {
        48
    };
    let mut runner = lab::runner(cases);
    let case = RefCell::new(0u64);
    runner
        .run(&batches(), |specs| {
            *case.borrow_mut() += 1;
            let case = *case.borrow();
            let (a, b) = &mut *labs.borrow_mut();
            a.clear();
            b.clear();
            let posts: Vec<Vec<Incoming>> = specs
                .iter()
                .map(|batch| batch.iter().map(|s| incoming(a, case, s)).collect())
                .collect();
            let expected = one_by_one(a, &posts);
            let got = together(b, &posts);
            prop_assert_eq!(&got, &expected, "answers differ");
            prop_assert_eq!(stored(b), stored(a), "stored data differs");
            Ok(())
        })
        .unwrap();
}

#[test]
fn one_batch_holds_repeats_edits_late_originals_and_new_submissions() {
    // Guards the comparison above: storing together handles each kind of POST itself (it does
    // not fall back), and refuses a batch with a conflict, which the writer then stores POST
    // by POST.
    let mut lab = Lab::new();
    let s = |k, v, altered, photo| Spec {
        k,
        v,
        altered,
        photo,
        hamlet: 0,
    };
    let mut batch: Vec<Incoming> = [
        s(0, 1, false, false), // an edit before its original: a new submission
        s(0, 0, false, true),  // the original, late: an older version
        s(1, 0, false, false), // new
        s(1, 0, false, true),  // the same XML again, with its photo
        s(2, 0, false, true),  // new, complete
        s(1, 1, false, true),  // an edit of a submission of this batch
    ]
    .iter()
    .map(|spec| incoming(&mut lab, 0, spec))
    .collect();
    let outcomes = lab
        .tx(|c| {
            let incs: Vec<&Incoming> = batch.iter().collect();
            Ok(store_all(c, &incs)?
                .into_iter()
                .map(|s| format!("{:?} {}", s.outcome, s.missing))
                .collect::<Vec<_>>())
        })
        .expect("stored together");
    assert_eq!(
        outcomes,
        [
            "Created 1",
            "OlderVersion 0",
            "Created 1",
            "Duplicate 0",
            "Created 0",
            "Edited 0"
        ]
    );
    batch = vec![
        incoming(&mut lab, 0, &s(2, 1, false, true)),
        incoming(&mut lab, 0, &s(2, 0, true, true)),
    ];
    let refused = lab.tx(|c| {
        let incs: Vec<&Incoming> = batch.iter().collect();
        store_all(c, &incs)
    });
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("different content")),
        "{refused:?}"
    );
}
