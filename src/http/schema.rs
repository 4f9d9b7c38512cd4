//! The response types and names the handlers' OpenAPI annotations share: the
//! envelopes and raw bytes. The handler
//! modules and the document (`openapi.rs`) both use them, so neither has to
//! import the other to describe a response.

use utoipa::openapi::schema::{AdditionalProperties, Schema};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::ToSchema;

/// The error envelope `{"error":{"code","message","fields"?}}`, schema `Error`:
/// use it as `body = ErrorBody` for every error response.
pub type ErrorBody = super::error::Body<'static>;

/// `{"data": …}`: the success envelope of every JSON route (built by
/// `http::data`); document a success body as `body = Data<YourType>`.
#[derive(serde::Serialize, ToSchema)]
pub struct Data<T> {
    pub data: T,
}

/// Raw bytes in a response (`type: string, format: binary`).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

/// Makes component `name` (an object) require at least one of its properties
/// and no other: an update that changes nothing is refused. Done here
/// because utoipa 5.5's `#[schema(min_properties = 1)]` writes `maxProperties`.
pub fn at_least_one_field(openapi: &mut OpenApi, name: &str) {
    let schema = openapi
        .components
        .as_mut()
        .and_then(|components| components.schemas.get_mut(name));
    if let Some(RefOr::T(Schema::Object(object))) = schema {
        object.min_properties = Some(1);
        object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
    }
}
