//! Submission instances from the internet: identify, extract against a real form, check the
//! typed answers and reduce geotags, as the submission path does. Any panic is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static FORM: OnceLock<Option<fieldtally_forms::FormDef>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let form = FORM.get_or_init(|| {
        fieldtally_forms::parse_form(include_bytes!(
            "../../forms/tests/fixtures/household_survey.xml"
        ))
        .ok()
    });
    let Some(form) = form else { return };
    let _ = fieldtally_forms::identify(data);
    if let Ok(mut extracted) = fieldtally_forms::extract(form, data) {
        let _ = fieldtally_forms::check_values(form, &extracted.fields);
        fieldtally_forms::reduce_geo_precision(form, &mut extracted.fields, 2);
        if let Some(point) = extracted.first_geopoint {
            let _ = point.rounded(2);
        }
    }
});
