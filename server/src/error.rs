//! The crate's one error type and its mapping to HTTP.
//!
//! The REST API answers `{"error":{"code","message"}}`; the OpenRosa routes wrap the same error in
//! [`OpenRosaError`] so that ODK Collect can show the message to the collector.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// One place in the client's input that a failure (or a warning) is about, e.g. a cell of an
/// XLSForm workbook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = ErrorDetail)]
pub struct Detail {
    pub sheet: Option<String>,
    pub row: Option<usize>,
    pub column: Option<String>,
    pub message: String,
}

/// What the REST API answers for every failure.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorInfo {
    /// Stable and machine-readable, e.g. `bad_credentials`, `not_found`, `bad_limit`.
    pub code: &'static str,
    /// For people: what went wrong and what to do.
    pub message: String,
    /// The places in the input the failure is about (e.g. cells of a workbook).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<Detail>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A failure the client can act on: bad input, missing thing, conflict.
    #[error("{message}")]
    Client {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// A client failure that points at places in the input; answered with `details`.
    #[error("{message}")]
    Detailed {
        status: StatusCode,
        code: &'static str,
        message: String,
        details: Vec<Detail>,
    },
    /// No or wrong credentials; carries the `WWW-Authenticate` challenges to offer.
    #[error("authentication required")]
    Unauthorized { challenges: Vec<String> },
    /// Too many failed sign-ins: locked out for `retry_after` seconds.
    #[error("{message}")]
    TooManyAttempts { retry_after: i64, message: String },
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("database pool error: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    pub fn client(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError::Client {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::client(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::client(StatusCode::CONFLICT, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::client(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn too_large(limit: u64) -> Self {
        Self::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request is larger than the accepted {limit} bytes"),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        AppError::Internal(message.into())
    }

    /// Whether the database refused a row because a unique key already exists; another server
    /// instance may have stored the same thing a moment earlier.
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            AppError::Database(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }

    pub(crate) fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            AppError::Client {
                status,
                code,
                message,
            } => (*status, code, message.clone()),
            AppError::Detailed {
                status,
                code,
                message,
                ..
            } => (*status, code, message.clone()),
            AppError::Unauthorized { .. } => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "authentication required: sign in with a valid user name and password".into(),
            ),
            AppError::TooManyAttempts { message, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "locked_out", message.clone())
            }
            AppError::Database(diesel::result::Error::NotFound) => {
                (StatusCode::NOT_FOUND, "not_found", "not found".into())
            }
            other => {
                // Internal causes stay in the log; the client gets a generic message.
                tracing::error!(error = %other, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal server error; the request was not stored, please try again".into(),
                )
            }
        }
    }

    fn add_challenges(&self, builder: &mut actix_web::HttpResponseBuilder) {
        match self {
            AppError::Unauthorized { challenges } => {
                for c in challenges {
                    builder.append_header((header::WWW_AUTHENTICATE, c.as_str()));
                }
            }
            AppError::TooManyAttempts { retry_after, .. } => {
                builder.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            _ => {}
        }
    }
}

impl From<fieldtally_forms::FormError> for AppError {
    fn from(e: fieldtally_forms::FormError) -> Self {
        AppError::bad_request("invalid_xml", e.to_string())
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        AppError::internal(e.to_string())
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code, message) = self.parts();
        let mut builder = HttpResponse::build(status);
        self.add_challenges(&mut builder);
        let details = match self {
            AppError::Detailed { details, .. } => Some(details.clone()),
            _ => None,
        };
        builder.json(ErrorBody {
            error: ErrorInfo {
                code,
                message,
                details,
            },
        })
    }
}

/// The same error, rendered as an OpenRosaResponse for the phone's routes.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct OpenRosaError(pub AppError);

impl<E: Into<AppError>> From<E> for OpenRosaError {
    fn from(e: E) -> Self {
        OpenRosaError(e.into())
    }
}

impl ResponseError for OpenRosaError {
    fn status_code(&self) -> StatusCode {
        self.0.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, _, message) = self.0.parts();
        let mut builder = HttpResponse::build(status);
        self.0.add_challenges(&mut builder);
        crate::openrosa::xml::respond(
            &mut builder,
            crate::openrosa::xml::message("error", &message),
        )
    }
}
