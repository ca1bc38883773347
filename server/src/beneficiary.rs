//! Pseudonymous beneficiary keys: a keyed hash over what a collector can reliably ask a woman
//! (name, year of birth, household code) and the hamlet, so that two visits to the same woman
//! give the same key while the key reveals nothing without the server's secret.
//!
//! Which fields take part is data: the form marks them with `fieldtally:beneficiary="<role>"`
//! on their bind (see `forms/xlsform/README.md`).

use fieldtally_forms::FormDef;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Bumped if the normalization or the layout of the hashed text ever changes, so keys of
/// different schemes can never collide.
const SCHEME: &str = "fieldtally-beneficiary-v1";

/// Folds the ways one name gets written: Vietnamese diacritics removed (including đ/Đ, which
/// Unicode does not decompose), case folded, control characters dropped, runs of whitespace
/// collapsed to one space and trimmed. `"  Lò   Thị MAI "` and `"lo thi mai"` give the same
/// text.
pub fn normalize(text: &str) -> String {
    let folded: String = text
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .map(|c| if c.is_control() { ' ' } else { c })
        .map(|c| match c {
            'đ' | 'Đ' => 'd',
            other => other,
        })
        .flat_map(char::to_lowercase)
        .collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text of an answer as the form gave it: numbers written plainly, text as is.
fn answer_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The key for one set of identity parts: HMAC-SHA256 under the server secret over the
/// normalized `(role, value)` pairs (sorted by role) and the hamlet code, as lowercase hex.
/// `None` when the hamlet or any part is empty after normalization: a partial identity would
/// merge different women.
pub fn derive(secret: &[u8], hamlet: &str, parts: &[(String, String)]) -> Option<String> {
    let hamlet = normalize(hamlet);
    if hamlet.is_empty() || parts.is_empty() {
        return None;
    }
    let mut normalized: Vec<(String, String)> = parts
        .iter()
        .map(|(role, value)| (role.clone(), normalize(value)))
        .collect();
    if normalized.iter().any(|(_, v)| v.is_empty()) {
        return None;
    }
    normalized.sort();
    // The unit separator is a control character, which normalization removes from values, so
    // the layout is unambiguous.
    let mut text = format!("{SCHEME}\u{1f}hamlet={hamlet}");
    for (role, value) in &normalized {
        text.push('\u{1f}');
        text.push_str(role);
        text.push('=');
        text.push_str(value);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(text.as_bytes());
    Some(hex::encode(mac.finalize().into_bytes()))
}

/// The key of a submission whose form marks beneficiary fields, from its answers (keyed by
/// path, before sensitive values are set aside). `None` for forms without such fields and for
/// submissions that leave one of them empty (e.g. consent refused).
pub fn for_submission(
    secret: &[u8],
    form: &FormDef,
    fields: &Value,
    hamlet: Option<&str>,
) -> Option<String> {
    let parts: Vec<(String, String)> = form
        .fields
        .iter()
        .filter_map(|f| f.beneficiary.as_ref().map(|role| (role, &f.path)))
        .map(|(role, path)| Some((role.clone(), answer_text(fields.get(path)?)?)))
        .collect::<Option<Vec<_>>>()?;
    derive(secret, hamlet?, &parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn parts(name: &str, year: &str, household: &str) -> Vec<(String, String)> {
        vec![
            ("name".into(), name.into()),
            ("birth_year".into(), year.into()),
            ("household_code".into(), household.into()),
        ]
    }

    #[test]
    fn normalization_removes_diacritics_case_and_odd_spacing() {
        assert_eq!(normalize("Lò Thị Mai"), "lo thi mai");
        assert_eq!(normalize("  LÒ   THỊ\tMAI \n"), "lo thi mai");
        assert_eq!(normalize("Lo Thi Mai"), "lo thi mai");
        assert_eq!(normalize("Đinh Thị Đào"), "dinh thi dao");
        assert_eq!(normalize("đinh thị đào"), "dinh thi dao");
        assert_eq!(normalize("Hoàng Thị Thủy"), "hoang thi thuy");
        // Precomposed (NFC) and decomposed (NFD) input are the same name.
        let nfd: String = "Nguyễn Thị Ánh".nfd().collect();
        assert_eq!(normalize(&nfd), normalize("Nguyễn Thị Ánh"));
        assert_eq!(normalize("Nguyễn Thị Ánh"), "nguyen thi anh");
        assert_eq!(normalize("Mùa Thị Chư"), "mua thi chu");
        assert_eq!(normalize("   "), "");
        assert_eq!(normalize("HH-07"), "hh-07");
        assert_eq!(normalize("Mai\u{1f}x"), "mai x");
    }

    #[test]
    fn the_same_woman_written_differently_gets_the_same_key() {
        let a = derive(
            SECRET,
            "demo-04012-1",
            &parts("Lò Thị Mai", "1998", "HH-07"),
        );
        let b = derive(
            SECRET,
            "DEMO-04012-1",
            &parts(" lo  thi MAI", "1998", "hh-07 "),
        );
        let c = derive(
            SECRET,
            "demo-04012-1",
            &parts("LÒ THỊ MAI", " 1998", "HH-07"),
        );
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_eq!(a, c);
        let key = a.clone().unwrap_or_default();
        assert_eq!(key.len(), 64);
        assert!(key
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        // The order in which the form lists the parts does not matter.
        let mut reversed = parts("Lò Thị Mai", "1998", "HH-07");
        reversed.reverse();
        assert_eq!(derive(SECRET, "demo-04012-1", &reversed), a);
    }

    #[test]
    fn any_difference_in_identity_or_secret_changes_the_key() {
        let base = derive(SECRET, "h1", &parts("Lò Thị Mai", "1998", "HH-07"));
        for other in [
            derive(SECRET, "h1", &parts("Lò Thị Mải", "1998", "HH-08")),
            derive(SECRET, "h1", &parts("Lò Thị Mai", "1999", "HH-07")),
            derive(SECRET, "h1", &parts("Lò Thị Mai", "1998", "HH-08")),
            derive(SECRET, "h2", &parts("Lò Thị Mai", "1998", "HH-07")),
            derive(
                b"another secret",
                "h1",
                &parts("Lò Thị Mai", "1998", "HH-07"),
            ),
            // Values cannot be shifted between parts.
            derive(SECRET, "h1", &parts("Lò Thị", "Mai 1998", "HH-07")),
        ] {
            assert!(other.is_some());
            assert_ne!(other, base);
        }
    }

    #[test]
    fn an_incomplete_identity_gives_no_key() {
        assert_eq!(derive(SECRET, "h1", &parts("  ", "1998", "HH-07")), None);
        assert_eq!(derive(SECRET, " ", &parts("Mai", "1998", "HH-07")), None);
        assert_eq!(derive(SECRET, "h1", &[]), None);
    }

    #[test]
    fn submission_keys_use_the_fields_the_form_marks() {
        let xml = br#"<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:fieldtally="urn:fieldtally"><h:head><h:title>t</h:title><model><instance><data id="b" version="1"><hamlet/><woman_name/><birth_year/><household_code/><meta><instanceID/></meta></data></instance><bind nodeset="/data/woman_name" type="string" fieldtally:beneficiary="name"/><bind nodeset="/data/birth_year" type="int" fieldtally:beneficiary="birth_year"/><bind nodeset="/data/household_code" type="string" fieldtally:beneficiary="household_code"/></model></h:head><h:body/></h:html>"#;
        let form = fieldtally_forms::parse_form(xml).expect("form");
        let fields = serde_json::json!({
            "hamlet": "h1", "woman_name": "Lò Thị Mai", "birth_year": 1998, "household_code": "HH-07"
        });
        assert_eq!(
            for_submission(SECRET, &form, &fields, Some("h1")),
            derive(SECRET, "h1", &parts("Lo Thi Mai", "1998", "hh-07"))
        );
        let refused = serde_json::json!({ "hamlet": "h1", "woman_name": null });
        assert_eq!(for_submission(SECRET, &form, &refused, Some("h1")), None);
        assert_eq!(for_submission(SECRET, &form, &fields, None), None);
    }
}
