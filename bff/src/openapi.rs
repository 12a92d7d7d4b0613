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

/// Refuses NUL in every string: `ApiJson` refuses it in any body string and `finish` in any URL.
pub const NO_NUL: &str = r"^[^\x00]*$";

/// What an attribute's `pattern = "\\S"` stands for: not blank as the services see it (Rust's
/// `trim`, Unicode White_Space) and no NUL. Spelled out here because JSON Schema regexes have
/// no portable whitespace class of that exact meaning.
pub const NOT_BLANK: &str =
    r"^[^\x00]*[^\x00\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00]*$";

/// The generated document, completed with what is known only at run time or holds for every
/// string: the configured analytics limit, the time zones the services know, and the NUL rule
/// on each string that has no stricter shape of its own.
pub fn complete(doc: &mut serde_json::Value, analytics_max_days: i64) {
    // Only what the surface's document holds: indexing a `Value` mutably would add the rest.
    let parameters = doc
        .pointer_mut("/paths/~1api~1v1~1analytics~1summary/get/parameters")
        .and_then(serde_json::Value::as_array_mut);
    for parameter in parameters.into_iter().flatten() {
        match parameter["name"].as_str() {
            Some("days") => parameter["schema"]["maximum"] = analytics_max_days.into(),
            Some("timeZone") => {
                let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
                parameter["schema"]["enum"] = zones.into();
            }
            _ => {}
        }
    }
    // What utoipa has no attributes for: the size and keys of a map, a value ruled out, and a
    // bound on a property of a shared schema in one place.
    let mut property = |schema: &str, name: &str, change: &dyn Fn(&mut serde_json::Value)| {
        if let Some(value) = doc.pointer_mut(&format!("/components/schemas/{schema}/properties/{name}")) {
            change(value);
        }
    };
    property("SendNotification", "data", &|data| bounded_map(data, 20));
    property("CreateProduct", "attributes", &|map| bounded_map(map, 50));
    property("UpdateProduct", "attributes", &|map| bounded_map(map, 50));
    property("StockAdjustment", "delta", &|delta| {
        delta["not"] = serde_json::json!({"const": 0})
    });
    property("CreateProduct", "price", &|price| at_least(price, 0));
    property("UpdateProduct", "price", &|price| at_least(price, 0));
    property("CreatePayment", "amount", &|amount| at_least(amount, 1));
    property("RecordAuditEvent", "details", &|details| {
        *details = serde_json::json!({"oneOf": [{"type": "null"}, json_object_without_nul()]});
    });
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(serde_json::Value::as_object_mut)
        && schemas.contains_key("RecordAuditEvent")
    {
        schemas.insert("JsonWithoutNul".to_owned(), json_without_nul());
    }
    // serde refuses unknown fields in each variant of an internally tagged body as well.
    if let Some(variants) = doc
        .pointer_mut("/components/schemas/UpdateOrderStatus/oneOf")
        .and_then(serde_json::Value::as_array_mut)
    {
        for variant in variants {
            variant["additionalProperties"] = false.into();
        }
    }
    no_nul_in_strings(doc);
    add_links(doc);
}

/// How a client goes on from an answer: `(operation, status, operation it leads to, parameter,
/// value)`. A created or listed resource leads to its reads and changes; a page to the next.
const LINKS: &[(&str, &str, &str, &str, &str)] = &[
    ("post /orders", "202", "get /orders/{id}", "id", "$response.body#/id"),
    ("post /orders", "202", "delete /orders/{id}", "id", "$response.body#/id"),
    (
        "get /orders",
        "200",
        "get /orders/{id}",
        "id",
        "$response.body#/items/0/id",
    ),
    (
        "get /orders",
        "200",
        "delete /orders/{id}",
        "id",
        "$response.body#/items/0/id",
    ),
    (
        "get /orders",
        "200",
        "put /orders/{id}/status",
        "id",
        "$response.body#/items/0/id",
    ),
    (
        "get /orders",
        "200",
        "get /orders",
        "pageToken",
        "$response.body#/nextPageToken",
    ),
    (
        "post /products",
        "201",
        "get /products/{id}",
        "id",
        "$response.body#/id",
    ),
    (
        "post /products",
        "201",
        "put /products/{id}",
        "id",
        "$response.body#/id",
    ),
    (
        "post /products",
        "201",
        "post /products/{id}/stock/adjustments",
        "id",
        "$response.body#/id",
    ),
    (
        "get /products",
        "200",
        "get /products/{id}",
        "id",
        "$response.body#/items/0/id",
    ),
    (
        "get /products",
        "200",
        "get /products",
        "pageToken",
        "$response.body#/nextPageToken",
    ),
    (
        "post /products/categories",
        "201",
        "get /products/categories",
        "parentId",
        "$response.body#/id",
    ),
    (
        "post /payments",
        "201",
        "get /payments/{id}",
        "id",
        "$response.body#/id",
    ),
    (
        "post /payments",
        "201",
        "post /payments/{id}/refunds",
        "id",
        "$response.body#/id",
    ),
    (
        "get /payments",
        "200",
        "get /payments/{id}",
        "id",
        "$response.body#/items/0/id",
    ),
    (
        "get /payments",
        "200",
        "post /payments/{id}/refunds",
        "id",
        "$response.body#/items/0/id",
    ),
    (
        "post /customers/me",
        "201",
        "get /customers/{id}",
        "id",
        "$response.body#/id",
    ),
    (
        "post /customers/me",
        "201",
        "put /customers/{id}",
        "id",
        "$response.body#/id",
    ),
    (
        "post /customers/me",
        "201",
        "delete /customers/{id}",
        "id",
        "$response.body#/id",
    ),
    (
        "get /customers/me",
        "200",
        "put /customers/{id}",
        "id",
        "$response.body#/id",
    ),
    (
        "get /customers/me",
        "200",
        "delete /customers/{id}",
        "id",
        "$response.body#/id",
    ),
    (
        "get /customers",
        "200",
        "get /customers/{id}",
        "id",
        "$response.body#/items/0/id",
    ),
    (
        "get /customers",
        "200",
        "put /customers/{id}",
        "id",
        "$response.body#/items/0/id",
    ),
    (
        "get /customers",
        "200",
        "delete /customers/{id}",
        "id",
        "$response.body#/items/0/id",
    ),
    (
        "get /customers",
        "200",
        "get /customers",
        "pageToken",
        "$response.body#/nextPageToken",
    ),
    (
        "get /admin/dead-letters",
        "200",
        "post /admin/dead-letters/{id}/replay",
        "id",
        "$response.body#/items/0/id",
    ),
    (
        "get /admin/dead-letters",
        "200",
        "post /admin/dead-letters/{id}/discard",
        "id",
        "$response.body#/items/0/id",
    ),
];

/// Adds [`LINKS`] whose both ends this surface's document holds.
fn add_links(doc: &mut serde_json::Value) {
    // `get /orders/{id}` → its JSON pointer in the document and its path.
    let operation = |spec: &str| {
        let (method, path) = spec.split_once(' ').expect("method and path");
        let path = format!("/api/v1{path}");
        (
            format!("/paths/{}/{method}", path.replace('~', "~0").replace('/', "~1")),
            path,
        )
    };
    for (from, status, to, parameter, value) in LINKS {
        let (target, to_path) = operation(to);
        if doc.pointer(&target).is_none() {
            continue;
        }
        let Some(response) = doc.pointer_mut(&format!("{}/responses/{status}", operation(from).0)) else {
            continue;
        };
        let method = to.split_once(' ').map_or("", |(method, _)| method);
        let name = format!(
            "{method}{}",
            to_path.trim_start_matches("/api/v1").replace(['/', '{', '}', '-'], "_")
        );
        response["links"][name] = serde_json::json!({
            "operationRef": format!("#{target}"),
            "parameters": {*parameter: value},
        });
    }
}

/// Any JSON value with no NUL in a string or key (what `ApiJson` lets through a free-form field).
fn json_without_nul() -> serde_json::Value {
    serde_json::json!({
        "description": "Any JSON value without NUL in its strings and keys.",
        "anyOf": [
            {"type": "string", "pattern": NO_NUL},
            {"type": ["number", "boolean", "null"]},
            {"type": "array", "items": {"$ref": "#/components/schemas/JsonWithoutNul"}},
            json_object_without_nul(),
        ]
    })
}

fn json_object_without_nul() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "propertyNames": {"type": "string", "pattern": NO_NUL},
        "additionalProperties": {"$ref": "#/components/schemas/JsonWithoutNul"},
    })
}

/// A map of at most `entries` strings of at most 500 characters under keys of 1-64.
fn bounded_map(schema: &mut serde_json::Value, entries: u32) {
    schema["maxProperties"] = entries.into();
    schema["propertyNames"] = serde_json::json!({"type": "string", "minLength": 1, "maxLength": 64});
    schema["additionalProperties"]["maxLength"] = 500.into();
}

/// A `Money` property (or nullable one) whose amount is at least `minimum`.
fn at_least(property: &mut serde_json::Value, minimum: i64) {
    let bound = serde_json::json!({"properties": {"amount": {"minimum": minimum}}});
    *property = serde_json::json!({"allOf": [property.take(), bound]});
}

/// Adds [`NO_NUL`] to every string schema without a pattern, format or enum, and spells out
/// [`NOT_BLANK`].
fn no_nul_in_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            let is_string = match map.get("type") {
                Some(serde_json::Value::String(t)) => t == "string",
                Some(serde_json::Value::Array(types)) => types.iter().any(|t| t == "string"),
                _ => false,
            };
            let shaped = ["pattern", "format", "enum", "const"]
                .iter()
                .any(|key| map.contains_key(*key));
            if is_string && !shaped {
                map.insert("pattern".to_owned(), NO_NUL.into());
            }
            if map.get("pattern").is_some_and(|p| p == r"\S") {
                map.insert("pattern".to_owned(), NOT_BLANK.into());
            }
            map.values_mut().for_each(no_nul_in_strings);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(no_nul_in_strings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Surface, api};

    fn completed(surface: Surface) -> serde_json::Value {
        let mut doc = serde_json::to_value(api(surface).1).unwrap();
        complete(&mut doc, 90);
        doc
    }

    #[test]
    fn the_completed_document_states_the_run_time_rules_and_links() {
        let doc = completed(Surface::Both);
        let days = doc["paths"]["/api/v1/analytics/summary"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "days")
            .unwrap();
        assert_eq!(days["schema"]["maximum"], 90);
        assert_eq!(
            doc["components"]["schemas"]["Address"]["properties"]["line1"]["pattern"],
            NOT_BLANK
        );
        assert_eq!(
            doc["components"]["schemas"]["Address"]["properties"]["label"]["pattern"],
            NO_NUL
        );
        let placed = &doc["paths"]["/api/v1/orders"]["post"]["responses"]["202"]["links"];
        assert_eq!(placed["get_orders__id_"]["parameters"]["id"], "$response.body#/id");
        assert_eq!(
            placed["delete_orders__id_"]["operationRef"],
            "#/paths/~1api~1v1~1orders~1{id}/delete"
        );
    }

    #[test]
    fn a_surface_gets_only_what_it_serves() {
        let doc = completed(Surface::External);
        assert!(doc.pointer("/paths/~1api~1v1~1analytics~1summary").is_none());
        assert!(doc.pointer("/components/schemas/StockAdjustment").is_none());
        let listed = &doc["paths"]["/api/v1/orders"]["get"]["responses"]["200"]["links"];
        assert!(listed["get_orders__id_"].is_object(), "{listed}");
        assert!(listed["put_orders__id__status"].is_null(), "{listed}");
    }
}
