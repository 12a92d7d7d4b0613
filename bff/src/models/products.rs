//! Products: the catalogue entry and the bodies that create and change one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ordermesh_proto::product;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{Money, page, time};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category_id: String,
    pub price: Option<Money>,
    pub active: bool,
    pub attributes: BTreeMap<String, String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub version: i64,
}

impl Product {
    pub fn from_proto(p: product::Product) -> Self {
        Self {
            id: p.id,
            sku: p.sku,
            name: p.name,
            description: p.description,
            category_id: p.category_id,
            price: Money::from_proto(p.price),
            active: p.active,
            attributes: p.attributes.into_iter().collect(),
            created_at: time(p.create_time),
            updated_at: time(p.update_time),
            version: p.version,
        }
    }
}

page!(ProductPage, Product);

/// Body of `POST /api/v1/products`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProduct {
    #[schema(min_length = 1, max_length = 64)]
    pub sku: String,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[schema(format = Uuid)]
    pub category_id: String,
    pub price: Money,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// Body of `PUT /api/v1/products/{id}`: the fields present are changed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateProduct {
    pub name: Option<String>,
    pub description: Option<String>,
    pub category_id: Option<String>,
    pub price: Option<Money>,
    pub active: Option<bool>,
    pub attributes: Option<BTreeMap<String, String>>,
    /// Succeeds only if the product is still at this version (409 otherwise).
    pub expected_version: Option<i64>,
}
