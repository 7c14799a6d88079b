//! The API's errors: a status and a JSON body `{code, message, path}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::Error;

/// An error answer: `path` names the request field at fault (a JSON pointer) when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ApiError {
    /// The HTTP status.
    #[serde(skip)]
    #[schemars(skip)]
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
        let status = |status, code| ApiError::new(status, code, error.to_string());
        match &error {
            Error::TaskNotFound(_) | Error::StepNotFound(_) | Error::ScheduleNotFound(_) => {
                ApiError::not_found(error.to_string())
            }
            Error::UnknownTemplate { .. } => {
                status(StatusCode::NOT_FOUND, "unknown_template").at("/name")
            }
            Error::InvalidContext { errors, .. } => {
                // The first violation names the field; a violation of the whole context (an
                // empty pointer) names the context itself.
                let pointer = errors.first().map_or("", |v| v.pointer.as_str());
                status(StatusCode::UNPROCESSABLE_ENTITY, "invalid_context")
                    .at(format!("/context{pointer}"))
            }
            Error::ContextTooLarge { .. } => {
                status(StatusCode::BAD_REQUEST, "invalid_request").at("/context")
            }
            Error::UnknownBypassStep { .. } | Error::StepNotSkippable { .. } => {
                status(StatusCode::BAD_REQUEST, "invalid_request").at("/bypass_steps")
            }
            Error::StepPlan { .. } => status(StatusCode::UNPROCESSABLE_ENTITY, "step_plan_refused"),
            Error::InvalidField { field, .. } => {
                status(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").at(format!("/{field}"))
            }
            Error::InvalidResult { .. } => {
                status(StatusCode::UNPROCESSABLE_ENTITY, "invalid_result").at("/results")
            }
            Error::IdentityConflict => status(StatusCode::BAD_REQUEST, "invalid_request"),
            Error::DuplicateRequest(_) => status(StatusCode::CONFLICT, "duplicate_request"),
            Error::TaskTransitionRefused { .. } | Error::StepTransitionRefused { .. } => {
                status(StatusCode::CONFLICT, "transition_refused")
            }
            Error::Pool(_) | Error::Connection(_) => {
                status(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
            Error::CorruptData { .. } => {
                // The message names the row and column, which is what an operator needs.
                tracing::error!(%error, "request failed on corrupt data");
                status(StatusCode::INTERNAL_SERVER_ERROR, "corrupt_data")
            }
            _ => {
                tracing::error!(%error, "request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the request failed; the server's log has the details",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ContextViolation;

    fn invalid_context(pointers: &[&str]) -> Error {
        Error::InvalidContext {
            template: "shop/order@1.0.0".to_owned(),
            errors: pointers
                .iter()
                .map(|p| ContextViolation::new(*p, "is wrong"))
                .collect(),
        }
    }

    #[test]
    fn an_invalid_context_names_the_first_violation_by_its_pointer() {
        let api = ApiError::from(invalid_context(&["/lines/0/sku", "/order_id"]));
        assert_eq!(api.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(api.code, "invalid_context");
        assert_eq!(api.path.as_deref(), Some("/context/lines/0/sku"));
        assert_eq!(
            api.message,
            "context of `shop/order@1.0.0` is invalid: at `/lines/0/sku`: is wrong; at `/order_id`: is wrong"
        );
        // Keys with a backtick or a slash (escaped `~1` in a pointer) come through whole.
        let api = ApiError::from(invalid_context(&["/odd`key/a~1b"]));
        assert_eq!(api.path.as_deref(), Some("/context/odd`key/a~1b"));
        // A violation of the whole context names the context.
        let api = ApiError::from(invalid_context(&[""]));
        assert_eq!(api.path.as_deref(), Some("/context"));
        assert!(api.message.ends_with("at `/`: is wrong"), "{}", api.message);
    }

    #[test]
    fn request_errors_name_their_field() {
        let field = ApiError::from(Error::InvalidField {
            field: "initiator",
            problem: "is longer than 128 characters".to_owned(),
        });
        assert_eq!(field.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field.code, "invalid_field");
        assert_eq!(field.path.as_deref(), Some("/initiator"));
        assert_eq!(
            field.message,
            "invalid request: `initiator` is longer than 128 characters"
        );
        let bypass = ApiError::from(Error::StepNotSkippable {
            template: "shop/order@1.0.0".to_owned(),
            step: "fetch".to_owned(),
        });
        assert_eq!(bypass.path.as_deref(), Some("/bypass_steps"));
        let large = ApiError::from(Error::ContextTooLarge { bytes: 9, limit: 8 });
        assert_eq!(large.path.as_deref(), Some("/context"));
    }

    #[test]
    fn corrupt_data_is_a_server_error_that_names_the_row() {
        let api = ApiError::from(Error::CorruptData {
            table: "tasker_workflow_steps",
            id: 42,
            column: "state",
            problem: "unknown state `done`".to_owned(),
        });
        assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(api.code, "corrupt_data");
        assert_eq!(api.path, None);
        assert_eq!(
            api.message,
            "corrupt data in `tasker_workflow_steps` row 42, column `state`: unknown state `done`"
        );
    }
}
