//! Every public entry point must return an error, never panic, whatever bytes arrive: these
//! functions run on request bodies from the internet.

use fieldtally_forms::{
    extract, identify, parse_form, parse_geoshape, parse_geotrace, FormDef, Geopoint,
};
use proptest::prelude::*;

const FORM: &str = include_str!("fixtures/household_survey.xml");
const SUBMISSION: &str = include_str!("fixtures/household_submission.xml");

fn household() -> FormDef {
    match parse_form(FORM.as_bytes()) {
        Ok(form) => form,
        Err(err) => panic!("the fixture form must parse: {err}"),
    }
}

/// Runs every XML entry point on `bytes`; a panic fails the property.
fn feed(form: &FormDef, bytes: &[u8]) {
    let _ = parse_form(bytes);
    let _ = identify(bytes);
    let _ = extract(form, bytes);
}

/// Small strings made of XML-ish pieces, so that the parser gets past the first byte and the
/// tree walks see odd but well-formed shapes.
fn xmlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<data id=\"f\">".to_string()),
        Just("</data>".to_string()),
        Just("<meta>".to_string()),
        Just("</meta>".to_string()),
        Just("<orx:meta xmlns:orx=\"http://openrosa.org/xforms\">".to_string()),
        Just("<instanceID>uuid:1</instanceID>".to_string()),
        Just("<h:html xmlns:h=\"h\"><h:head><model><instance>".to_string()),
        Just("</instance></model></h:head></h:html>".to_string()),
        Just("<members jr:template=\"\" xmlns:jr=\"j\">".to_string()),
        Just("<repeat nodeset=\"/data/x\"/>".to_string()),
        Just("<!DOCTYPE x>".to_string()),
        Just("<!--".to_string()),
        Just("-->".to_string()),
        Just("<![CDATA[".to_string()),
        Just("]]>".to_string()),
        Just("<?pi".to_string()),
        Just("?>".to_string()),
        Just("&amp;".to_string()),
        Just("&#0;".to_string()),
        Just("&#x1F600;".to_string()),
        "<[a-z:]{1,4}( [a-z:]{1,4}=[\"'][a-z0-9 .;:/>]{0,8}[\"'])?/?>",
        "</[a-z:]{1,4}>",
        "[a-z0-9 .;:/\"'=<>-]{0,8}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        feed(&household(), &bytes);
    }

    #[test]
    fn xmlish_strings_never_panic(text in xmlish()) {
        feed(&household(), text.as_bytes());
    }

    #[test]
    fn damaged_submissions_never_panic(
        cut in 0..SUBMISSION.len(),
        insert in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut bytes = SUBMISSION.as_bytes().to_vec();
        bytes.splice(cut..cut, insert.iter().copied());
        feed(&household(), &bytes);
        feed(&household(), &SUBMISSION.as_bytes()[..cut]);
    }

    #[test]
    fn damaged_forms_never_panic(
        cut in 0..FORM.len(),
        insert in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut bytes = FORM.as_bytes().to_vec();
        bytes.splice(cut..cut, insert.iter().copied());
        feed(&household(), &bytes);
    }

    #[test]
    fn location_values_never_panic(text in "[0-9 .;eE+NaInf\t-]{0,40}", any_text in any::<String>()) {
        for value in [&text, &any_text] {
            if let Ok(point) = Geopoint::parse(value) {
                prop_assert!((-90.0..=90.0).contains(&point.lat));
                prop_assert!((-180.0..=180.0).contains(&point.lon));
            }
            let _ = parse_geotrace(value);
            let _ = parse_geoshape(value);
        }
    }
}
