//! Request extractors whose rejections are [`ApiError`]s: a JSON body read in two steps (syntax,
//! then shape and type) and a path segment.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::Json;
use serde::de::DeserializeOwned;

use super::api::{check_objects, WireBody};
use super::error::ApiError;

/// A JSON request body whose rejections are [`ApiError`]s (JSON bodies with the right status).
///
/// The body is parsed in two steps so that the status says what is wrong: any syntactically
/// valid JSON gets past the first (only malformed JSON is 400 `invalid_json`; size 413, content
/// type 415), then its shape is checked (an object where the type has one, see
/// [`WireBody::OBJECTS`]) and it is read into `T`; every failure of that second step (wrong
/// type, unknown or missing field, an array where an object belongs) is 422 `validation`.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: WireBody> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let value = match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(v)) => v,
            Err(r) => return Err(ApiError::from_json_rejection(&r)),
        };
        check_objects(&value, T::OBJECTS)?;
        match serde_json::from_value::<T>(value) {
            Ok(v) => Ok(Self(v)),
            Err(e) => Err(ApiError::validation(format!(
                "the JSON body does not fit the request type: {e}"
            ))),
        }
    }
}

/// `Path<T>` whose rejections (e.g. a segment that is not UTF-8) are [`ApiError`]s.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Self(v)),
            Err(r) => Err(ApiError::from_path_rejection(&r)),
        }
    }
}
