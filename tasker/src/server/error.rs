//! The API's errors: a status and a JSON body `{code, message, path}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::Error;

/// An error answer: `path` names the request field at fault (a JSON pointer) when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// The HTTP status.
    #[serde(skip)]
    pub status: StatusCode,
    /// A stable machine-readable code, e.g. `invalid_context`.
    pub code: &'static str,
    /// What is wrong, for people.
    pub message: String,
    /// The field at fault, when there is one.
    pub path: Option<String>,
}

impl ApiError {
    /// An error with no field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            path: None,
        }
    }

    /// Names the field at fault.
    pub fn at(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self)).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::TaskNotFound(_) | Error::StepNotFound(_) => {
                ApiError::not_found(error.to_string())
            }
            Error::UnknownTemplate { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_template", error.to_string())
                    .at("/name")
            }
            Error::InvalidContext { ref errors, .. } => {
                // Each message reads "at `/pointer`: …"; the first names the field.
                let path = errors
                    .first()
                    .and_then(|e| e.strip_prefix("at `"))
                    .and_then(|e| e.split('`').next())
                    .map(|p| format!("/context{}", p.trim_end_matches('/')));
                let mut api = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_context",
                    error.to_string(),
                );
                api.path = path.or(Some("/context".to_owned()));
                api
            }
            Error::InvalidRequest(message) => ApiError::bad_request(message),
            Error::DuplicateRequest(_) => {
                ApiError::new(StatusCode::CONFLICT, "duplicate_request", error.to_string())
            }
            Error::TaskTransitionRefused { .. } | Error::StepTransitionRefused { .. } => {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "transition_refused",
                    error.to_string(),
                )
            }
            Error::Pool(_) | Error::Connection(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                error.to_string(),
            ),
            other => {
                tracing::error!(error = %other, "request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the request failed; the server's log has the details",
                )
            }
        }
    }
}
