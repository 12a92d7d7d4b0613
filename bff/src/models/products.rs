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
    /// Whether it can be ordered now; absent when the product has no stock record. Never the
    /// count (employees read that at `/products/{id}/stock`).
    pub availability: Option<Availability>,
}

/// How much of a product can be ordered, as everyone may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Availability {
    /// More than the low-stock threshold.
    InStock,
    /// Some, at most the low-stock threshold.
    Low,
    OutOfStock,
}

impl Availability {
    pub fn from_proto(value: i32) -> Option<Self> {
        match product::StockAvailability::try_from(value).ok()? {
            product::StockAvailability::InStock => Some(Self::InStock),
            product::StockAvailability::Low => Some(Self::Low),
            product::StockAvailability::OutOfStock => Some(Self::OutOfStock),
            product::StockAvailability::Unspecified => None,
        }
    }
}

/// A product's inventory (employees).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockLevel {
    pub product_id: String,
    pub sku: String,
    /// Units physically in stock.
    pub on_hand: i64,
    /// Units held by open reservations.
    pub reserved: i64,
    /// Units that can still be ordered: onHand - reserved.
    pub available: i64,
    pub availability: Option<Availability>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl StockLevel {
    pub fn from_proto(l: product::StockLevel) -> Self {
        Self {
            product_id: l.product_id,
            sku: l.sku,
            on_hand: l.on_hand,
            reserved: l.reserved,
            available: l.available,
            availability: Availability::from_proto(l.availability),
            updated_at: time(l.update_time),
        }
    }
}

/// Stock levels of several products; `missingIds` names those without one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockLevels {
    pub items: Vec<StockLevel>,
    pub missing_ids: Vec<String>,
}

/// Body of `POST /api/v1/products/{id}/stock/adjustments`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StockAdjustment {
    /// Units added to on-hand stock; negative to remove. Not 0; at most 1,000,000 either way.
    #[schema(minimum = -1000000, maximum = 1000000, example = 25)]
    pub delta: i64,
    /// Why, e.g. `restock`, `damaged`, `inventory count`. No personal data.
    #[schema(min_length = 1, max_length = 500, pattern = "\\S", example = "restock")]
    pub reason: String,
}

/// A product category; categories form a tree through `parentId`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Category {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    pub description: String,
    pub created_at: Option<DateTime<Utc>>,
}

impl Category {
    pub fn from_proto(c: product::Category) -> Self {
        Self {
            id: c.id,
            name: c.name,
            parent_id: super::common::non_empty(c.parent_id),
            description: c.description,
            created_at: time(c.create_time),
        }
    }
}

page!(CategoryPage, Category);

/// Body of `POST /api/v1/products/categories`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCategory {
    /// Unique among its siblings (case-insensitive).
    #[schema(min_length = 1, max_length = 100, pattern = "\\S", example = "Kitchen")]
    pub name: String,
    /// The parent category; absent for a top-level one.
    pub parent_id: Option<uuid::Uuid>,
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: String,
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
            availability: Availability::from_proto(p.availability),
        }
    }
}

page!(ProductPage, Product);

/// Body of `POST /api/v1/products`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProduct {
    #[schema(pattern = "^[A-Z0-9_-]{1,64}$", example = "KETTLE-1")]
    pub sku: String,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub description: String,
    pub category_id: uuid::Uuid,
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
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[schema(max_length = 5000)]
    pub description: Option<String>,
    pub category_id: Option<uuid::Uuid>,
    pub price: Option<Money>,
    pub active: Option<bool>,
    pub attributes: Option<BTreeMap<String, String>>,
    /// Succeeds only if the product is still at this version (409 otherwise).
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    pub expected_version: Option<i64>,
}
