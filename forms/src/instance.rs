//! Submission identity: which form a submission belongs to and which record it is.
//!
//! The server decides everything about an incoming submission (which form version, new record,
//! retry, conflicting re-post or edit) from these few values, before reading the answers.

use roxmltree::Node;

use crate::xml::{self, attr, child};
use crate::FormError;

/// The identifying values of one submission instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The root element's `id` attribute: the form id.
    pub form_id: String,
    /// The root element's `version` attribute, `""` when absent.
    pub version: String,
    /// `meta/instanceID`, e.g. `uuid:…`: the record's identity, the same on every retry.
    pub instance_id: String,
    /// `meta/deprecatedID`: present when this submission is an edit of that earlier instance.
    pub deprecated_id: Option<String>,
    /// `meta/instanceName`: the collector's label for the record.
    pub instance_name: Option<String>,
    /// Whether the root says `encrypted="yes"`; the answers are then in an encrypted file.
    pub encrypted: bool,
}

/// Reads the identity of a submission instance. Elements and attributes are matched by local
/// name, because Collect and other clients write `meta` in the default namespace, with an
/// `orx:` prefix, or (encrypted submissions) under `xmlns="http://openrosa.org/xforms"`.
pub fn identify(xml: &[u8]) -> Result<Identity, FormError> {
    let doc = xml::parse(xml)?;
    let root = doc.root_element();
    let form_id = attr(root, "id")
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or(FormError::NoSubmissionFormId)?
        .to_string();
    let version = attr(root, "version").unwrap_or_default().trim().to_string();
    let encrypted = attr(root, "encrypted").is_some_and(|value| value.trim() == "yes");

    let meta = child(root, "meta");
    let instance_id = meta_value(meta, "instanceID").ok_or(FormError::NoInstanceId)?;
    Ok(Identity {
        form_id,
        version,
        instance_id,
        deprecated_id: meta_value(meta, "deprecatedID"),
        instance_name: meta_value(meta, "instanceName"),
        encrypted,
    })
}

/// The trimmed text of `meta/<name>`, `None` when missing or empty.
fn meta_value(meta: Option<Node<'_, '_>>, name: &str) -> Option<String> {
    let value = xml::text(child(meta?, name)?);
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_meta() {
        let xml = br#"<?xml version='1.0' ?><data id="household_survey" version="2025040301" xmlns:jr="http://openrosa.org/javarosa" xmlns:orx="http://openrosa.org/xforms"><name>Ama</name><meta><instanceID>uuid:6b7e1c1e-0000-4000-8000-000000000001</instanceID><instanceName>Ama - north</instanceName></meta></data>"#;
        let identity = identify(xml).unwrap();
        assert_eq!(
            identity,
            Identity {
                form_id: "household_survey".to_string(),
                version: "2025040301".to_string(),
                instance_id: "uuid:6b7e1c1e-0000-4000-8000-000000000001".to_string(),
                deprecated_id: None,
                instance_name: Some("Ama - north".to_string()),
                encrypted: false,
            }
        );
    }

    #[test]
    fn reads_orx_prefixed_meta_and_trims() {
        let xml = br#"<data xmlns:orx="http://openrosa.org/xforms" id="f" orx:version="7">
  <orx:meta>
    <orx:instanceID>
      uuid:abc
    </orx:instanceID>
    <orx:instanceName></orx:instanceName>
  </orx:meta>
</data>"#;
        let identity = identify(xml).unwrap();
        assert_eq!(identity.form_id, "f");
        assert_eq!(identity.version, "7");
        assert_eq!(identity.instance_id, "uuid:abc");
        assert_eq!(identity.instance_name, None);
    }

    #[test]
    fn reads_deprecated_id_of_an_edit() {
        let xml = br#"<data id="f" version="1"><meta><instanceID>uuid:new</instanceID><deprecatedID>uuid:old</deprecatedID></meta></data>"#;
        let identity = identify(xml).unwrap();
        assert_eq!(identity.instance_id, "uuid:new");
        assert_eq!(identity.deprecated_id.as_deref(), Some("uuid:old"));
    }

    #[test]
    fn missing_version_is_empty() {
        let identity =
            identify(br#"<data id="f"><meta><instanceID>uuid:1</instanceID></meta></data>"#)
                .unwrap();
        assert_eq!(identity.version, "");
    }

    #[test]
    fn reads_encrypted_submission() {
        let xml = br#"<data id="secret" version="3" encrypted="yes" xmlns="http://www.opendatakit.org/xforms/encrypted">
<base64EncryptedKey>AbCd==</base64EncryptedKey>
<meta xmlns="http://openrosa.org/xforms"><instanceID>uuid:enc-1</instanceID></meta>
<media><file>photo.jpg.enc</file></media>
<encryptedXmlFile>submission.xml.enc</encryptedXmlFile>
<base64EncryptedElementSignature>XyZ=</base64EncryptedElementSignature>
</data>"#;
        let identity = identify(xml).unwrap();
        assert!(identity.encrypted);
        assert_eq!(identity.form_id, "secret");
        assert_eq!(identity.version, "3");
        assert_eq!(identity.instance_id, "uuid:enc-1");
    }

    #[test]
    fn missing_or_empty_instance_id_is_an_error() {
        for xml in [
            r#"<data id="f"><name>x</name></data>"#,
            r#"<data id="f"><meta><instanceName>x</instanceName></meta></data>"#,
            r#"<data id="f"><meta><instanceID>  </instanceID></meta></data>"#,
            r#"<data id="f"><group><meta><instanceID>uuid:nested</instanceID></meta></group></data>"#,
        ] {
            let err = identify(xml.as_bytes()).unwrap_err();
            assert!(matches!(err, FormError::NoInstanceId), "{xml}: {err}");
            assert_eq!(err.to_string(), "no meta/instanceID in the submission");
        }
    }

    #[test]
    fn missing_form_id_is_an_error() {
        let err =
            identify(br#"<data version="1"><meta><instanceID>uuid:1</instanceID></meta></data>"#)
                .unwrap_err();
        assert!(matches!(err, FormError::NoSubmissionFormId), "{err}");
        assert_eq!(
            err.to_string(),
            "the submission's root element has no id attribute"
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(matches!(
            identify(br#"<data id="f"><meta><instanceID>uuid:1</instanceID></meta>"#).unwrap_err(),
            FormError::NotWellFormed(_)
        ));
        assert!(matches!(
            identify(b"").unwrap_err(),
            FormError::NotWellFormed(_)
        ));
        assert!(matches!(
            identify(b"\xc3\x28").unwrap_err(),
            FormError::NotUtf8(_)
        ));
        assert!(matches!(
            identify(br#"<!DOCTYPE data [<!ENTITY x SYSTEM "file:///etc/passwd">]><data id="f">&x;</data>"#)
                .unwrap_err(),
            FormError::Doctype
        ));
    }
}
