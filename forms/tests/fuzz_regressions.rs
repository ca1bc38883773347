//! Every input the fuzzers found (and the hostile seeds they started from) is fed again to the
//! entry points it broke or probed: `fuzz/regressions/instance/*` as submissions,
//! `fuzz/regressions/form/*` as form definitions. Run by `cargo test`, no nightly needed.

use std::path::{Path, PathBuf};

use fieldtally_forms::{check_values, extract, identify, parse_form, reduce_geo_precision};

const FORM: &[u8] = include_bytes!("fixtures/household_survey.xml");
const SUBMISSION: &[u8] = include_bytes!("fixtures/household_submission.xml");

fn files(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(kind);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no regression inputs in {}", dir.display());
    out
}

#[test]
fn instance_regressions_never_panic() {
    let form = parse_form(FORM).expect("fixture form");
    for path in files("instance") {
        let data = std::fs::read(&path).expect("read");
        let _ = identify(&data);
        if let Ok(mut extracted) = extract(&form, &data) {
            let _ = check_values(&form, &extracted.fields);
            reduce_geo_precision(&form, &mut extracted.fields, 2);
        }
    }
}

#[test]
fn form_regressions_never_panic() {
    for path in files("form") {
        let data = std::fs::read(&path).expect("read");
        if let Ok(form) = parse_form(&data) {
            if let Ok(extracted) = extract(&form, SUBMISSION) {
                let _ = check_values(&form, &extracted.fields);
            }
        }
    }
}

#[test]
fn hostile_seeds_are_refused_with_a_reason() {
    let form = parse_form(FORM).expect("fixture form");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/instance");
    for (file, want) in [
        ("billion_laughs.xml", "DOCTYPE"),
        ("external_entity.xml", "DOCTYPE"),
        ("invalid_utf8.xml", "UTF-8"),
    ] {
        let data = std::fs::read(dir.join(file)).expect("read");
        let err = identify(&data).expect_err(file).to_string();
        assert!(err.contains(want), "{file}: {err}");
    }
    let data = std::fs::read(dir.join("bad_typed_values.xml")).expect("read");
    let extracted = extract(&form, &data).expect("well-formed");
    let err = check_values(&form, &extracted.fields)
        .expect_err("bad values")
        .to_string();
    assert!(err.contains("location"), "{err}");
}
