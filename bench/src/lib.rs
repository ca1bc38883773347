//! What the load generator and the benchmarks send: realistic instances of the shipped forms
//! (the answers the ODK tools tests fill in, one fresh instanceID each), a generated
//! 250-question form and its instances, and a JPEG photo of a given size.

pub mod phone;

use std::fmt::Write as _;

use fieldtally_forms::{FieldKind, FormDef};

/// The answers a collector gives to each shipped form (tests/fixtures/answers), by form file name.
const ANSWERS: [(&str, &str); 9] = [
    (
        "club_meeting",
        include_str!("../../tests/fixtures/answers/club_meeting.txt"),
    ),
    (
        "communication_session",
        include_str!("../../tests/fixtures/answers/communication_session.txt"),
    ),
    (
        "livelihood_support",
        include_str!("../../tests/fixtures/answers/livelihood_support.txt"),
    ),
    (
        "policy_dialogue",
        include_str!("../../tests/fixtures/answers/policy_dialogue.txt"),
    ),
    (
        "safe_birth_outreach",
        include_str!("../../tests/fixtures/answers/safe_birth_outreach.txt"),
    ),
    (
        "supervision_visit",
        include_str!("../../tests/fixtures/answers/supervision_visit.txt"),
    ),
    (
        "trafficking_livelihood_report",
        include_str!("../../tests/fixtures/answers/trafficking_livelihood_report.txt"),
    ),
    (
        "training_session",
        include_str!("../../tests/fixtures/answers/training_session.txt"),
    ),
    (
        "trusted_address_report",
        include_str!("../../tests/fixtures/answers/trusted_address_report.txt"),
    ),
];

/// Days of 2025 over which activity dates are spread.
const DAYS: u64 = 300;

/// How many distinct clubs, teams, groups, models and households the generated submissions
/// belong to. Every form counts some of these once (distinct counts), so each key's facts are
/// read back on every submission of it: a realistic number of keys keeps that bounded as it is
/// in the field (a club meets a few dozen times a year), where a single fixed key would make
/// every submission read all the earlier ones.
const KEYS: u64 = 20_000;

/// A form the generator fills: its identity, answers as (path below the root, value) pairs,
/// and the binary field a photo goes in, if it has one.
#[derive(Debug, Clone)]
pub struct Template {
    pub form_id: String,
    pub version: String,
    pub root: String,
    pub answers: Vec<(String, String)>,
    pub photo_field: Option<String>,
}

/// A filled instance ready to POST.
pub struct Filled {
    pub instance_id: String,
    pub xml: Vec<u8>,
    /// The file name the instance gives its photo, when one is attached.
    pub photo_name: Option<String>,
}

impl Template {
    fn from_form(def: &FormDef, answers: Vec<(String, String)>) -> Template {
        let photo_field = def
            .fields
            .iter()
            .find(|f| {
                f.kind == FieldKind::Binary && !def.repeats.iter().any(|r| f.path.starts_with(r))
            })
            .map(|f| f.path.clone());
        Template {
            form_id: def.form_id.clone(),
            version: def.version.clone(),
            root: def.root_name.clone(),
            answers,
            photo_field,
        }
    }

    /// An instance with a fresh instanceID, its activity date moved by `n`, and a photo file
    /// name in the photo field when `photo` is set.
    pub fn fill(&self, n: u64, photo: bool) -> Filled {
        let instance_id = format!("uuid:{}", uuid4());
        let date = activity_date(n);
        let photo_name = photo
            .then(|| {
                self.photo_field
                    .as_ref()
                    .map(|_| format!("photo-{}.jpg", n))
            })
            .flatten();
        let mut values: Vec<(String, String)> = self
            .answers
            .iter()
            .map(|(p, v)| {
                let v = if p == "activity_date" {
                    date.clone()
                } else if p.ends_with("_code") {
                    format!("{v}-{}", n % KEYS)
                } else {
                    v.clone()
                };
                (p.clone(), v)
            })
            .collect();
        if let (Some(field), Some(name)) = (&self.photo_field, &photo_name) {
            values.retain(|(p, _)| p != field);
            values.push((field.clone(), name.clone()));
        }
        values.push(("meta/instanceID".into(), instance_id.clone()));
        let xml = render(&self.root, &self.form_id, &self.version, &values);
        Filled {
            instance_id,
            xml: xml.into_bytes(),
            photo_name,
        }
    }
}

fn activity_date(n: u64) -> String {
    let day = (n % DAYS) as u32;
    let (mut month, mut d) = (1u32, day + 1);
    let lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    while d > lengths[(month - 1) as usize] {
        d -= lengths[(month - 1) as usize];
        month += 1;
    }
    format!("2025-{month:02}-{d:02}")
}

fn uuid4() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Nested elements from paths like `group[1]/field`, in the order the paths first appear.
fn render(root: &str, form_id: &str, version: &str, values: &[(String, String)]) -> String {
    #[derive(Default)]
    struct Node {
        name: String,
        value: Option<String>,
        children: Vec<Node>,
    }
    fn insert(node: &mut Node, path: &[&str], value: &str) {
        let Some((first, rest)) = path.split_first() else {
            node.value = Some(value.to_string());
            return;
        };
        let idx = match node.children.iter().position(|c| c.name == *first) {
            Some(i) => i,
            None => {
                node.children.push(Node {
                    name: first.to_string(),
                    ..Node::default()
                });
                node.children.len() - 1
            }
        };
        insert(&mut node.children[idx], rest, value);
    }
    fn write(node: &Node, out: &mut String) {
        let tag = node.name.split('[').next().unwrap_or(&node.name);
        let _ = write!(out, "<{tag}>");
        if let Some(v) = &node.value {
            out.push_str(&escape(v));
        }
        for c in &node.children {
            write(c, out);
        }
        let _ = write!(out, "</{tag}>");
    }
    let mut top = Node::default();
    for (path, value) in values {
        let parts: Vec<&str> = path.split('/').collect();
        insert(&mut top, &parts, value);
    }
    let mut out = format!(
        "<?xml version='1.0' encoding='UTF-8' ?><{root} id=\"{form_id}\" version=\"{version}\" xmlns:orx=\"http://openrosa.org/xforms\">"
    );
    for c in &top.children {
        write(c, &mut out);
    }
    let _ = write!(out, "</{root}>");
    out
}

/// The shipped forms, each with the answers of its fixture.
pub fn shipped_templates() -> anyhow::Result<Vec<Template>> {
    let mut out = Vec::new();
    for (name, xml) in fieldtally_forms::shipped::FORMS {
        let def = fieldtally_forms::parse_form(xml)
            .map_err(|e| anyhow::anyhow!("shipped form {name}: {e}"))?;
        let answers_text = ANSWERS
            .iter()
            .find(|(n, _)| name.trim_end_matches(".xml") == *n)
            .map(|(_, a)| *a)
            .ok_or_else(|| anyhow::anyhow!("no answers for shipped form {name}"))?;
        let prefix = format!("/{}/", def.root_name);
        let answers = answers_text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| l.split_once('='))
            .map(|(p, v)| (p.trim_start_matches(&prefix).to_string(), v.to_string()))
            .collect();
        out.push(Template::from_form(&def, answers));
    }
    Ok(out)
}

/// How many questions the large form has: the size peer servers publish figures for.
pub const LARGE_FORM_QUESTIONS: usize = 250;

fn large_kind(i: usize) -> &'static str {
    match i % 5 {
        0 => "string",
        1 => "int",
        2 => "select1",
        3 => "decimal",
        _ => "date",
    }
}

/// An XForm with 250 questions (text, integers, decimals, dates, single choices), a hamlet,
/// an activity date and a photo, as an XLSForm author would build a long survey.
pub fn large_form_xml() -> String {
    let mut instance = String::from("<hamlet/><activity_date/>");
    let mut binds = String::from(
        "<bind nodeset=\"/data/hamlet\" type=\"string\" required=\"true()\"/><bind nodeset=\"/data/activity_date\" type=\"date\" required=\"true()\"/>",
    );
    let mut body = String::from(
        "<input ref=\"/data/hamlet\"><label>Hamlet</label></input><input ref=\"/data/activity_date\"><label>Activity date</label></input>",
    );
    for i in 1..=LARGE_FORM_QUESTIONS {
        let name = format!("q{i:03}");
        let kind = large_kind(i);
        let _ = write!(instance, "<{name}/>");
        let _ = write!(binds, "<bind nodeset=\"/data/{name}\" type=\"{kind}\"/>");
        if kind == "select1" {
            let _ = write!(
                body,
                "<select1 ref=\"/data/{name}\"><label>Question {i}</label><item><label>Yes</label><value>yes</value></item><item><label>No</label><value>no</value></item><item><label>Unknown</label><value>unknown</value></item></select1>"
            );
        } else {
            let _ = write!(
                body,
                "<input ref=\"/data/{name}\"><label>Question {i}</label></input>"
            );
        }
    }
    instance.push_str("<photo/><meta><instanceID/></meta>");
    binds.push_str("<bind nodeset=\"/data/photo\" type=\"binary\"/><bind nodeset=\"/data/meta/instanceID\" type=\"string\" readonly=\"true()\" jr:preload=\"uid\"/>");
    body.push_str(
        "<upload ref=\"/data/photo\" mediatype=\"image/*\"><label>Photo</label></upload>",
    );
    format!(
        "<?xml version=\"1.0\"?><h:html xmlns=\"http://www.w3.org/2002/xforms\" xmlns:h=\"http://www.w3.org/1999/xhtml\" xmlns:jr=\"http://openrosa.org/javarosa\" xmlns:orx=\"http://openrosa.org/xforms\"><h:head><h:title>Khảo sát 250 câu hỏi</h:title><model><instance><data id=\"survey_250\" version=\"2025090101\">{instance}</data></instance>{binds}</model></h:head><h:body>{body}</h:body></h:html>"
    )
}

/// The template for [`large_form_xml`], answered like a real collector would.
pub fn large_template() -> anyhow::Result<Template> {
    let def = fieldtally_forms::parse_form(large_form_xml().as_bytes())
        .map_err(|e| anyhow::anyhow!("the generated 250-question form: {e}"))?;
    let mut answers = vec![
        ("hamlet".to_string(), "DEMO-04231-1".to_string()),
        ("activity_date".to_string(), "2025-03-15".to_string()),
    ];
    for i in 1..=LARGE_FORM_QUESTIONS {
        let value = match large_kind(i) {
            "string" => format!("Câu trả lời cho câu hỏi số {i}, ghi chép tại bản"),
            "int" => format!("{}", i * 7 % 90),
            "select1" => ["yes", "no", "unknown"][i % 3].to_string(),
            "decimal" => format!("{}.{}", i % 50, i % 10),
            _ => format!("2025-0{}-1{}", 1 + i % 9, i % 10),
        };
        answers.push((format!("q{i:03}"), value));
    }
    Ok(Template::from_form(&def, answers))
}

/// A JPEG photo of about `target` bytes: a textured scene at the quality that comes closest.
pub fn jpeg_of_size(target: usize) -> anyhow::Result<Vec<u8>> {
    let (w, h) = (1280u32, 960u32);
    let mut state = 0x2545_f491_u32;
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let noise = (state % 24) as u8;
        image::Rgb([
            ((x * 255 / w) as u8).saturating_add(noise),
            ((y * 255 / h) as u8).saturating_add(noise / 2),
            (((x + y) % 256) as u8).saturating_add(noise),
        ])
    });
    let mut best: Option<Vec<u8>> = None;
    for quality in (20..=95).step_by(5) {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
            .encode_image(&img)
            .map_err(|e| anyhow::anyhow!("cannot encode the photo: {e}"))?;
        let closer = best
            .as_ref()
            .is_none_or(|b| out.len().abs_diff(target) < b.len().abs_diff(target));
        if closer {
            best = Some(out);
        }
    }
    best.ok_or_else(|| anyhow::anyhow!("no photo encoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_instances_are_accepted_by_the_forms_crate() {
        for t in shipped_templates().expect("templates") {
            let def = fieldtally_forms::shipped::FORMS
                .iter()
                .map(|(_, x)| fieldtally_forms::parse_form(x).expect("form"))
                .find(|d| d.form_id == t.form_id)
                .expect("def");
            let filled = t.fill(3, true);
            let id = fieldtally_forms::identify(&filled.xml).expect("identify");
            assert_eq!(id.instance_id, filled.instance_id);
            let ex = fieldtally_forms::extract(&def, &filled.xml).expect("extract");
            fieldtally_forms::check_values(&def, &ex.fields).expect("values");
            assert_eq!(
                ex.attachments.len(),
                usize::from(filled.photo_name.is_some())
            );
        }
    }

    #[test]
    fn the_large_form_has_250_answered_questions() {
        let t = large_template().expect("template");
        let def = fieldtally_forms::parse_form(large_form_xml().as_bytes()).expect("form");
        let filled = t.fill(7, true);
        let ex = fieldtally_forms::extract(&def, &filled.xml).expect("extract");
        fieldtally_forms::check_values(&def, &ex.fields).expect("values");
        let answered = (1..=LARGE_FORM_QUESTIONS)
            .filter(|i| ex.fields.get(format!("q{i:03}")).is_some())
            .count();
        assert_eq!(answered, LARGE_FORM_QUESTIONS);
        assert_eq!(ex.attachments, vec!["photo-7.jpg".to_string()]);
    }

    #[test]
    fn the_photo_is_a_jpeg_near_the_size_asked() {
        let p = jpeg_of_size(150_000).expect("jpeg");
        assert_eq!(&p[..2], &[0xff, 0xd8]);
        assert!(p.len() > 75_000 && p.len() < 300_000, "{}", p.len());
    }
}
