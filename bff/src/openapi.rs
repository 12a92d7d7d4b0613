//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! DTOs' `ToSchema` derives, served at `/api/v1/openapi.json`. Every operation requires the
//! bearer scheme and documents the problem responses the BFF can give.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::problem::{FieldError, ProblemDocument};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ordermesh BFF",
        version = "1.0.0",
        description = "REST API of the ordermesh client and employee portals. Errors are RFC 9457 problem+json."
    ),
    components(schemas(ProblemDocument, FieldError)),
    modifiers(&BearerScheme),
    security(("bearer" = [])),
    tags(
        (name = "orders"), (name = "products"), (name = "customers"),
        (name = "payments"), (name = "notifications"), (name = "gdpr"), (name = "audit"), (name = "admin"), (name = "analytics")
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// Problem responses every operation can give (applied to the merged document, after the
/// routes are added).
const PROBLEMS: &[(&str, &str)] = &[
    (
        "400",
        "Invalid request (unknown or invalid fields, malformed JSON, bad parameters)",
    ),
    ("401", "Missing or invalid bearer token"),
    ("403", "The caller's role does not allow this operation"),
    ("404", "Not found (or not the caller's)"),
    ("409", "Conflict with the resource's current state"),
    ("413", "Request body too large"),
    ("415", "Request body is not JSON"),
    ("429", "Rate limit exceeded; see Retry-After"),
    ("500", "Internal error"),
    ("501", "Not implemented by the service"),
    ("503", "A service this request needs is unavailable"),
    ("504", "The request timed out"),
];

pub struct ProblemResponses;

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete]
                .into_iter()
                .flatten()
            {
                for (status, description) in PROBLEMS {
                    operation
                        .responses
                        .responses
                        .entry((*status).to_owned())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(*description)
                                .content(
                                    crate::problem::CONTENT_TYPE,
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("Problem")))
                                        .build(),
                                )
                                .build()
                                .into()
                        });
                }
            }
        }
    }
}
