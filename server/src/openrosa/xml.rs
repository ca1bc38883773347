//! The XML documents of the OpenRosa protocol, written with quick-xml so every value is escaped.

use actix_web::http::header;
use actix_web::{HttpResponse, HttpResponseBuilder};
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

const RESPONSE_NS: &str = "http://openrosa.org/http/response";
const FORMLIST_NS: &str = "http://openrosa.org/xforms/xformsList";
const MANIFEST_NS: &str = "http://openrosa.org/xforms/xformsManifest";

struct Doc {
    w: Writer<Vec<u8>>,
}

impl Doc {
    fn new() -> Doc {
        let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
        // Writing into a Vec cannot fail.
        let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        Doc { w }
    }

    fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        let mut start = BytesStart::new(name);
        for (k, v) in attrs {
            start.push_attribute((*k, *v));
        }
        let _ = self.w.write_event(Event::Start(start));
    }

    fn close(&mut self, name: &str) {
        let _ = self.w.write_event(Event::End(BytesEnd::new(name)));
    }

    fn leaf(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) {
        self.open(name, attrs);
        let _ = self.w.write_event(Event::Text(BytesText::new(text)));
        self.close(name);
    }

    fn finish(self) -> Vec<u8> {
        self.w.into_inner()
    }
}

/// `<OpenRosaResponse>` with one message; Collect shows the first message to the collector.
pub fn message(nature: &str, text: &str) -> Vec<u8> {
    let mut d = Doc::new();
    d.open("OpenRosaResponse", &[("xmlns", RESPONSE_NS)]);
    d.leaf("message", &[("nature", nature)], text);
    d.close("OpenRosaResponse");
    d.finish()
}

pub struct FormListEntry {
    pub form_id: String,
    pub name: String,
    pub version: String,
    pub hash: String,
    pub download_url: String,
    pub manifest_url: Option<String>,
}

pub fn form_list(entries: &[FormListEntry]) -> Vec<u8> {
    let mut d = Doc::new();
    d.open("xforms", &[("xmlns", FORMLIST_NS)]);
    for e in entries {
        d.open("xform", &[]);
        d.leaf("formID", &[], &e.form_id);
        d.leaf("name", &[], &e.name);
        d.leaf("version", &[], &e.version);
        d.leaf("hash", &[], &e.hash);
        d.leaf("downloadUrl", &[], &e.download_url);
        if let Some(m) = &e.manifest_url {
            d.leaf("manifestUrl", &[], m);
        }
        d.close("xform");
    }
    d.close("xforms");
    d.finish()
}

pub struct ManifestEntry {
    pub filename: String,
    pub hash: String,
    pub download_url: String,
}

pub fn manifest(entries: &[ManifestEntry]) -> Vec<u8> {
    let mut d = Doc::new();
    d.open("manifest", &[("xmlns", MANIFEST_NS)]);
    for e in entries {
        d.open("mediaFile", &[]);
        d.leaf("filename", &[], &e.filename);
        d.leaf("hash", &[], &e.hash);
        d.leaf("downloadUrl", &[], &e.download_url);
        d.close("mediaFile");
    }
    d.close("manifest");
    d.finish()
}

/// Finishes an OpenRosa XML response: Collect rejects anything but `text/xml`.
pub fn respond(builder: &mut HttpResponseBuilder, body: Vec<u8>) -> HttpResponse {
    builder
        .insert_header((header::CONTENT_TYPE, "text/xml; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache, private"))
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_values() {
        let body = String::from_utf8(message("error", "a <b> & \"c\"")).unwrap_or_default();
        assert!(body.contains("a &lt;b&gt; &amp;"), "{body}");
        assert!(body.contains("xmlns=\"http://openrosa.org/http/response\""));
    }

    #[test]
    fn form_list_has_manifest_only_when_given() {
        let body = String::from_utf8(form_list(&[FormListEntry {
            form_id: "f".into(),
            name: "F & G".into(),
            version: "1".into(),
            hash: "md5:00".into(),
            download_url: "http://x/f".into(),
            manifest_url: None,
        }]))
        .unwrap_or_default();
        assert!(body.contains("<formID>f</formID>"));
        assert!(body.contains("<name>F &amp; G</name>"));
        assert!(!body.contains("manifestUrl"));
    }
}
