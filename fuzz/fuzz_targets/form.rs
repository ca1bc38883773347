//! Form definitions uploaded by administrators (or anyone holding a stolen token): parse, and
//! if the form parses, extract a real submission against it. Any panic is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

const SUBMISSION: &[u8] = include_bytes!("../../forms/tests/fixtures/household_submission.xml");

fuzz_target!(|data: &[u8]| {
    if let Ok(form) = fieldtally_forms::parse_form(data) {
        if let Ok(extracted) = fieldtally_forms::extract(&form, SUBMISSION) {
            let _ = fieldtally_forms::check_values(&form, &extracted.fields);
        }
    }
});
