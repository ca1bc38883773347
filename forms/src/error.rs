//! The one error type of this crate.
//!
//! Messages are written for a person: the server may show them to a form designer who uploaded a
//! broken form, or (shortened) to a collector whose submission was refused.

/// Everything that can go wrong while reading a form, a submission or a location value.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    /// The bytes are not UTF-8; XForms and Collect's instances always are.
    #[error("the XML is not valid UTF-8: {0}")]
    NotUtf8(#[from] std::str::Utf8Error),

    /// A DOCTYPE is refused outright, so entity expansion (billion laughs, external entities)
    /// can never happen, whatever the parser would do with it.
    #[error("the XML has a DOCTYPE; DTDs and entities are not accepted")]
    Doctype,

    /// Real forms nest a few levels; deep nesting only serves to exhaust the stack or memory.
    #[error("the XML nests elements deeper than {limit} levels")]
    TooDeep {
        /// The maximum depth accepted.
        limit: usize,
    },

    /// The parser checks attributes for duplicates pairwise, so huge attribute lists cost
    /// quadratic time.
    #[error("an element has more than {limit} attributes")]
    TooManyAttributes {
        /// The maximum number of attributes per element accepted.
        limit: usize,
    },

    /// Every namespace declaration copies the namespaces in scope, so many of them cost
    /// quadratic time and memory.
    #[error("the XML declares more than {limit} namespaces")]
    TooManyNamespaces {
        /// The maximum number of namespace declarations per document accepted.
        limit: usize,
    },

    /// Bounds the memory a single document can take.
    #[error("the XML has more than {limit} nodes")]
    TooManyNodes {
        /// The maximum number of nodes per document accepted.
        limit: u32,
    },

    /// Any other parser complaint: unclosed tags, truncated documents, unknown entities...
    #[error("not well-formed XML: {0}")]
    NotWellFormed(String),

    /// A form needs `<h:head><model>`.
    #[error("no <model> in the form")]
    NoModel,

    /// A form needs a primary instance.
    #[error("no <instance> in the form")]
    NoInstance,

    /// The primary instance must have one root element, which names the submission.
    #[error("the primary <instance> has no root element")]
    NoInstanceRoot,

    /// Without an id the form cannot be listed or matched with its submissions.
    #[error("the primary instance root has no id attribute")]
    NoFormId,

    /// Without an id a submission cannot be matched with its form.
    #[error("the submission's root element has no id attribute")]
    NoSubmissionFormId,

    /// The instanceID is what makes re-posts and edits idempotent.
    #[error("no meta/instanceID in the submission")]
    NoInstanceId,

    /// A geopoint value that is not "lat lon [alt [accuracy]]" with sane numbers.
    #[error("invalid geopoint {value:?}: {reason}")]
    InvalidGeopoint {
        /// The offending value, shortened.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An answer that does not fit its field's type (see `check_values`).
    #[error("the answer to '{path}' is not valid: {reason}")]
    InvalidAnswer {
        /// The field's path in the form.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A geotrace value that is not two or more valid geopoints.
    #[error("invalid geotrace: {reason}")]
    InvalidGeotrace {
        /// What is wrong with it.
        reason: String,
    },

    /// A geoshape value that is not a closed ring of valid geopoints.
    #[error("invalid geoshape: {reason}")]
    InvalidGeoshape {
        /// What is wrong with it.
        reason: String,
    },
}
