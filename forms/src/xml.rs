//! Safe XML reading shared by forms and submissions.
//!
//! Forms and submissions arrive from the internet, so every document goes through [`parse`],
//! which refuses DTDs and bounds the work the parser can be made to do. roxmltree itself never
//! expands external entities, but it does check duplicate attributes and copy in-scope
//! namespaces in ways that cost quadratic time, and it does not bound nesting; a cheap lexical
//! pass over the text ([`check_structure`]) rejects such documents before roxmltree sees them.

use roxmltree::{Document, Node, ParsingOptions};

use crate::FormError;

/// Deepest element nesting accepted. pyxform forms stay well under 20 levels even with nested
/// groups and repeats; this also bounds the recursion of the tree walks in this crate.
pub(crate) const MAX_DEPTH: usize = 64;

/// Most attributes accepted on one element; a pyxform `<bind>` has about ten.
pub(crate) const MAX_ATTRIBUTES: usize = 256;

/// Most namespace declarations accepted in one document; XForms declare under ten.
pub(crate) const MAX_NAMESPACES: usize = 256;

/// Most nodes (elements, attributes' owners, text, comments) accepted in one document.
pub(crate) const MAX_NODES: u32 = 1_000_000;

/// Parses `xml` with DTDs refused and every resource limit above enforced.
pub(crate) fn parse(xml: &[u8]) -> Result<Document<'_>, FormError> {
    let text = std::str::from_utf8(xml)?;
    check_structure(text)?;
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
    };
    let doc = Document::parse_with_options(text, options).map_err(|error| match error {
        roxmltree::Error::DtdDetected => FormError::Doctype,
        roxmltree::Error::NodesLimitReached => FormError::TooManyNodes { limit: MAX_NODES },
        other => FormError::NotWellFormed(other.to_string()),
    })?;
    check_depth(&doc)?;
    Ok(doc)
}

/// A lexical pass over the raw text: finds a DOCTYPE, measures element nesting, counts
/// attributes per element and namespace declarations per document.
///
/// It only needs to be right for well-formed XML: anything it misreads on malformed input is
/// rejected by roxmltree afterwards.
fn check_structure(text: &str) -> Result<(), FormError> {
    let bytes = text.as_bytes();
    let mut depth: usize = 0;
    let mut namespaces: usize = 0;
    let mut pos = 0;
    while let Some(offset) = bytes[pos..].iter().position(|&b| b == b'<') {
        let start = pos + offset;
        let rest = &bytes[start..];
        if rest.starts_with(b"<!--") {
            pos = skip_past(bytes, start + 4, b"-->");
        } else if rest.starts_with(b"<![CDATA[") {
            pos = skip_past(bytes, start + 9, b"]]>");
        } else if rest.starts_with(b"<?") {
            pos = skip_past(bytes, start + 2, b"?>");
        } else if rest.len() >= 9 && rest[..9].eq_ignore_ascii_case(b"<!DOCTYPE") {
            return Err(FormError::Doctype);
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            pos = skip_past(bytes, start + 2, b">");
        } else {
            let tag = scan_start_tag(bytes, start + 1);
            if tag.attributes > MAX_ATTRIBUTES {
                return Err(FormError::TooManyAttributes {
                    limit: MAX_ATTRIBUTES,
                });
            }
            namespaces += tag.namespaces;
            if namespaces > MAX_NAMESPACES {
                return Err(FormError::TooManyNamespaces {
                    limit: MAX_NAMESPACES,
                });
            }
            if !tag.self_closing {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(FormError::TooDeep { limit: MAX_DEPTH });
                }
            }
            pos = tag.end;
        }
    }
    Ok(())
}

/// Index just after the first `needle` at or after `from`, or the end of `bytes`.
fn skip_past(bytes: &[u8], from: usize, needle: &[u8]) -> usize {
    let haystack = bytes.get(from..).unwrap_or_default();
    match haystack.windows(needle.len()).position(|w| w == needle) {
        Some(found) => from + found + needle.len(),
        None => bytes.len(),
    }
}

/// What [`scan_start_tag`] learned about one start tag.
struct StartTag {
    /// Index just after the closing `>` (or the end of the text).
    end: usize,
    attributes: usize,
    namespaces: usize,
    self_closing: bool,
}

/// Scans a start tag from just after its `<`, honouring quoted attribute values (which may
/// contain `>`). Each `=` outside quotes is one attribute; the word before it is its name.
fn scan_start_tag(bytes: &[u8], from: usize) -> StartTag {
    let mut attributes = 0;
    let mut namespaces = 0;
    let mut quote: Option<u8> = None;
    let mut name_start = from;
    let mut pos = from;
    while let Some(&byte) = bytes.get(pos) {
        match quote {
            Some(open) => {
                if byte == open {
                    quote = None;
                    name_start = pos + 1;
                }
            }
            None => match byte {
                b'"' | b'\'' => quote = Some(byte),
                b'=' => {
                    attributes += 1;
                    let before = bytes.get(name_start..pos).unwrap_or_default();
                    let name = before
                        .split(|b| b.is_ascii_whitespace())
                        .rfind(|word| !word.is_empty())
                        .unwrap_or_default();
                    if name == b"xmlns" || name.starts_with(b"xmlns:") {
                        namespaces += 1;
                    }
                }
                b'>' => {
                    let self_closing = pos > from && bytes.get(pos - 1) == Some(&b'/');
                    return StartTag {
                        end: pos + 1,
                        attributes,
                        namespaces,
                        self_closing,
                    };
                }
                _ => {}
            },
        }
        pos += 1;
    }
    StartTag {
        end: bytes.len(),
        attributes,
        namespaces,
        self_closing: true,
    }
}

/// Checks nesting on the parsed tree too, so the limit holds even if the lexical pass and the
/// parser ever disagreed. Nodes come in document order, so a parent's depth is always known
/// before its children's.
fn check_depth(doc: &Document<'_>) -> Result<(), FormError> {
    let mut depths: Vec<usize> = vec![0; doc.descendants().count()];
    for node in doc.descendants() {
        let depth = match node.parent() {
            Some(parent) => depths.get(parent.id().get_usize()).copied().unwrap_or(0) + 1,
            None => 0,
        };
        if node.is_element() && depth > MAX_DEPTH {
            return Err(FormError::TooDeep { limit: MAX_DEPTH });
        }
        if let Some(slot) = depths.get_mut(node.id().get_usize()) {
            *slot = depth;
        }
    }
    Ok(())
}

/// Value of the attribute with this local name, whatever its namespace (`id`, `orx:id`); an
/// unprefixed attribute wins over a prefixed one.
pub(crate) fn attr<'a>(node: Node<'a, '_>, local_name: &str) -> Option<&'a str> {
    let mut prefixed = None;
    for attribute in node.attributes() {
        if attribute.name() == local_name {
            if attribute.namespace().is_none() {
                return Some(attribute.value());
            }
            prefixed = prefixed.or(Some(attribute.value()));
        }
    }
    prefixed
}

/// Element children only (no text, comments or processing instructions).
pub(crate) fn elements<'a, 'input>(
    node: Node<'a, 'input>,
) -> impl Iterator<Item = Node<'a, 'input>> {
    node.children().filter(|child| child.is_element())
}

/// First element child with this local name, whatever its namespace.
pub(crate) fn child<'a, 'input>(
    node: Node<'a, 'input>,
    local_name: &str,
) -> Option<Node<'a, 'input>> {
    elements(node).find(|child| child.tag_name().name() == local_name)
}

/// The text directly inside an element, all text and CDATA pieces joined, trimmed.
pub(crate) fn text(node: Node<'_, '_>) -> String {
    let mut joined = String::new();
    for piece in node.children().filter(|child| child.is_text()) {
        joined.push_str(piece.text().unwrap_or_default());
    }
    joined.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        let mut xml = String::new();
        for _ in 0..depth {
            xml.push_str("<a>");
        }
        for _ in 0..depth {
            xml.push_str("</a>");
        }
        xml
    }

    #[test]
    fn accepts_nesting_up_to_the_limit() {
        assert!(parse(nested(MAX_DEPTH).as_bytes()).is_ok());
    }

    #[test]
    fn rejects_nesting_beyond_the_limit() {
        let err = parse(nested(MAX_DEPTH + 1).as_bytes()).unwrap_err();
        assert!(
            matches!(err, FormError::TooDeep { limit: MAX_DEPTH }),
            "{err}"
        );
        let err = parse(nested(100_000).as_bytes()).unwrap_err();
        assert!(matches!(err, FormError::TooDeep { .. }), "{err}");
    }

    #[test]
    fn self_closing_and_commented_tags_do_not_count_as_nesting() {
        let mut xml = String::from("<root>");
        for _ in 0..1000 {
            xml.push_str("<leaf a='>'/><!-- <b> --><![CDATA[<c>]]><?pi <d>?>");
        }
        xml.push_str("</root>");
        assert!(parse(xml.as_bytes()).is_ok());
    }

    #[test]
    fn rejects_doctype_without_internal_subset() {
        let err = parse(b"<!DOCTYPE html><html/>").unwrap_err();
        assert!(matches!(err, FormError::Doctype), "{err}");
    }

    #[test]
    fn rejects_billion_laughs() {
        let xml = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"#;
        let err = parse(xml.as_bytes()).unwrap_err();
        assert!(matches!(err, FormError::Doctype), "{err}");
        assert_eq!(
            err.to_string(),
            "the XML has a DOCTYPE; DTDs and entities are not accepted"
        );
    }

    #[test]
    fn rejects_external_entity() {
        let xml = r#"<?xml version="1.0"?>
<!DOCTYPE data [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<data id="x"><name>&xxe;</name></data>"#;
        let err = parse(xml.as_bytes()).unwrap_err();
        assert!(matches!(err, FormError::Doctype), "{err}");
    }

    #[test]
    fn undeclared_entity_is_not_well_formed() {
        let err = parse(b"<data>&xxe;</data>").unwrap_err();
        assert!(matches!(err, FormError::NotWellFormed(_)), "{err}");
    }

    #[test]
    fn predefined_and_character_references_are_decoded() {
        let doc = parse(b"<a>x &amp; y &#233;</a>").unwrap();
        assert_eq!(text(doc.root_element()), "x & y \u{e9}");
    }

    #[test]
    fn truncated_xml_is_not_well_formed() {
        let err = parse(b"<data id=\"x\"><meta><instanceID>uuid:1</inst").unwrap_err();
        assert!(matches!(err, FormError::NotWellFormed(_)), "{err}");
        assert!(
            err.to_string().starts_with("not well-formed XML: "),
            "{err}"
        );
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let err = parse(b"<a>\xff\xfe</a>").unwrap_err();
        assert!(matches!(err, FormError::NotUtf8(_)), "{err}");
    }

    #[test]
    fn bom_is_accepted() {
        let doc = parse(b"\xef\xbb\xbf<a>x</a>").unwrap();
        assert_eq!(text(doc.root_element()), "x");
    }

    #[test]
    fn rejects_too_many_attributes() {
        let mut xml = String::from("<a");
        for i in 0..=MAX_ATTRIBUTES {
            xml.push_str(&format!(" a{i}=\"v\""));
        }
        xml.push_str("/>");
        let err = parse(xml.as_bytes()).unwrap_err();
        assert!(matches!(err, FormError::TooManyAttributes { .. }), "{err}");
    }

    #[test]
    fn rejects_too_many_namespace_declarations() {
        let mut xml = String::from("<a>");
        for i in 0..=MAX_NAMESPACES {
            xml.push_str(&format!("<b xmlns:p{i}=\"urn:x\"/>"));
        }
        xml.push_str("</a>");
        let err = parse(xml.as_bytes()).unwrap_err();
        assert!(matches!(err, FormError::TooManyNamespaces { .. }), "{err}");
    }

    #[test]
    fn rejects_too_many_nodes() {
        let xml = "<a>".to_string() + &"<b/>".repeat(MAX_NODES as usize) + "</a>";
        let err = parse(xml.as_bytes()).unwrap_err();
        assert!(matches!(err, FormError::TooManyNodes { .. }), "{err}");
    }

    #[test]
    fn attributes_match_by_local_name_preferring_unprefixed() {
        let doc = parse(
            br#"<d xmlns:orx="http://openrosa.org/xforms" orx:id="p" id="u" orx:version="3"/>"#,
        )
        .unwrap();
        let root = doc.root_element();
        assert_eq!(attr(root, "id"), Some("u"));
        assert_eq!(attr(root, "version"), Some("3"));
        assert_eq!(attr(root, "missing"), None);
    }
}
