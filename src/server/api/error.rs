//! Owns [`ApiError`]: an HTTP error answer carrying a protocol error code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::protocol::{ApiErrorBody, ApiErrorResponse, ErrorCode};

/// An API failure: the protocol's `code` and a message saying what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status each protocol code maps onto.
    pub fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::BadJson
            | ErrorCode::BadFrame
            | ErrorCode::Invalid
            | ErrorCode::UnknownType
            | ErrorCode::HelloRequired => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ApiErrorResponse {
            error: ApiErrorBody {
                code: self.code,
                message: self.message,
            },
        };
        let unauthorized = body.error.code == ErrorCode::Unauthorized;
        let mut response = (status, Json(body)).into_response();
        if unauthorized {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
