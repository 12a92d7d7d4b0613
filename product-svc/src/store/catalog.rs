//! Categories and products.

use std::collections::BTreeMap;

use ordermesh_platform::db::Database;
use ordermesh_platform::events::Tx;
use ordermesh_platform::validate::Money;
use ordermesh_platform::{ServiceError, StoreResult, on_pool, on_tx};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::{Store, push_in, refusal, row_lock};
use crate::domain::{self, Category, ListCursor, Origin, Product, ProductFilter, ProductPatch};
use crate::events;
use ordermesh_platform::db::columns::{Id, Time};
use ordermesh_platform::db::page::Keyset;

/// Position after the last category of a `ListCategories` page (ordered by name, then id).
pub type CategoryCursor = (String, Uuid);

#[derive(sqlx::FromRow)]
struct CategoryRow {
    id: Id,
    name: String,
    parent_id: Option<Id>,
    description: String,
    create_time: Time,
}

impl From<CategoryRow> for Category {
    fn from(row: CategoryRow) -> Self {
        Self {
            id: row.id.into(),
            name: row.name,
            parent_id: row.parent_id.map(Uuid::from),
            description: row.description,
            create_time: row.create_time.into(),
        }
    }
}

/// Categories by name in byte order (PostgreSQL's index uses the "C" collation), then id.
const CATEGORIES_PAGE: Keyset = Keyset::ascending("name", "id").in_byte_order();
/// Products newest first.
const PRODUCTS_PAGE: Keyset = Keyset::descending("p.create_time", "p.id");

/// The columns of [`ProductRow`], of `products p`.
const PRODUCT_COLUMNS: &str = "p.id, p.sku, p.name, p.description, p.category_id, p.price_amount_minor, \
     p.price_currency, p.active, p.attributes, p.create_time, p.update_time, p.version";

#[derive(sqlx::FromRow)]
struct ProductRow {
    id: Id,
    sku: String,
    name: String,
    description: String,
    category_id: Id,
    price_amount_minor: i64,
    price_currency: String,
    active: bool,
    attributes: Json<BTreeMap<String, String>>,
    create_time: Time,
    update_time: Time,
    version: i64,
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        Self {
            id: row.id.into(),
            sku: row.sku,
            name: row.name,
            description: row.description,
            category_id: row.category_id.into(),
            price: Money {
                amount_minor: row.price_amount_minor,
                currency_code: row.price_currency,
            },
            active: row.active,
            attributes: row.attributes.0,
            create_time: row.create_time.into(),
            update_time: row.update_time.into(),
            version: row.version,
        }
    }
}

/// The columns a write sets: every column of a product but its id.
const PRODUCT_STATE: &str = "sku, name, description, category_id, price_amount_minor, price_currency, active, \
     attributes, create_time, update_time, version";

/// Appends the values of [`PRODUCT_STATE`] for `product`, one bind each.
fn push_state<DB: sqlx::Database>(q: &mut QueryBuilder<DB>, product: &Product)
where
    Id: Encode<'static, DB> + Type<DB>,
    String: Encode<'static, DB> + Type<DB>,
    i64: Encode<'static, DB> + Type<DB>,
    bool: Encode<'static, DB> + Type<DB>,
    Json<BTreeMap<String, String>>: Encode<'static, DB> + Type<DB>,
    Time: Encode<'static, DB> + Type<DB>,
{
    let mut values = q.separated(", ");
    values
        .push_bind(product.sku.clone())
        .push_bind(product.name.clone())
        .push_bind(product.description.clone())
        .push_bind(Id(product.category_id))
        .push_bind(product.price.amount_minor)
        .push_bind(product.price.currency_code.clone())
        .push_bind(product.active)
        .push_bind(Json(product.attributes.clone()))
        .push_bind(Time(product.create_time))
        .push_bind(Time(product.update_time))
        .push_bind(product.version);
}

fn sku_taken() -> ServiceError {
    ServiceError::AlreadyExists {
        resource: "product",
        field: "sku",
    }
}

fn unknown_category() -> ServiceError {
    ServiceError::invalid("product.category_id", "no such category")
}

/// Appends the conditions of `filter` on `products p`.
fn push_filter<DB: sqlx::Database>(q: &mut QueryBuilder<DB>, filter: &ProductFilter)
where
    Id: Encode<'static, DB> + Type<DB>,
    bool: Encode<'static, DB> + Type<DB>,
    String: Encode<'static, DB> + Type<DB>,
    i64: Encode<'static, DB> + Type<DB>,
{
    if let Some(category_id) = filter.category_id {
        q.push(" AND p.category_id = ").push_bind(Id(category_id));
    }
    if let Some(active) = filter.active {
        q.push(" AND p.active = ").push_bind(active);
    }
    if let Some(currency) = filter.currency() {
        q.push(" AND p.price_currency = ").push_bind(currency.to_owned());
    }
    if let Some(min) = &filter.min_price {
        q.push(" AND p.price_amount_minor >= ").push_bind(min.amount_minor);
    }
    if let Some(max) = &filter.max_price {
        q.push(" AND p.price_amount_minor <= ").push_bind(max.amount_minor);
    }
}

impl Store {
    /// ALREADY_EXISTS when a sibling has the same name; INVALID_ARGUMENT for an unknown parent.
    pub async fn create_category(&self, category: &Category) -> Result<(), ServiceError> {
        on_pool!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO categories (id, name, parent_id, description, create_time) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(Id(category.id))
            .bind(&category.name)
            .bind(category.parent_id.map(Id))
            .bind(&category.description)
            .bind(Time(category.create_time))
            .execute(pool)
            .await
            .map(drop)
        })
        .map_err(|error| {
            let name_taken = ServiceError::AlreadyExists {
                resource: "category",
                field: "name",
            };
            refusal(
                error,
                name_taken,
                ServiceError::invalid("parent_id", "no such category"),
            )
        })?;
        Ok(())
    }

    /// In byte order of the name, then id; strictly after `after`; at most `limit` rows.
    pub async fn list_categories(
        &self,
        parent_id: Option<Uuid>,
        after: Option<CategoryCursor>,
        limit: usize,
    ) -> StoreResult<Vec<Category>> {
        let rows = on_pool!(&self.db, |pool| {
            let mut q =
                QueryBuilder::new("SELECT id, name, parent_id, description, create_time FROM categories WHERE TRUE");
            if let Some(parent_id) = parent_id {
                q.push(" AND parent_id = ").push_bind(Id(parent_id));
            }
            CATEGORIES_PAGE.push(&mut q, after.clone().map(|(name, id)| (name, Id(id))), limit);
            q.build_query_as::<CategoryRow>().fetch_all(pool).await
        })?;
        Ok(rows.into_iter().map(Category::from).collect())
    }

    /// Inserts the product with a zero stock level, and `ProductCreated` in the outbox, in one
    /// transaction. ALREADY_EXISTS for a taken SKU; INVALID_ARGUMENT for an unknown category.
    pub async fn create_product(&self, product: &Product, origin: &Origin) -> Result<(), ServiceError> {
        let mut tx = Tx::begin(&self.db).await?;
        on_tx!(tx, |conn| {
            let mut q = QueryBuilder::new(format!("INSERT INTO products (id, {PRODUCT_STATE}) VALUES ("));
            q.push_bind(Id(product.id)).push(", ");
            push_state(&mut q, product);
            q.push(")");
            q.build().execute(&mut *conn).await.map(drop)
        })
        .map_err(|error| refusal(error, sku_taken(), unknown_category()))?;
        on_tx!(tx, |conn| {
            sqlx::query("INSERT INTO stock_levels (product_id, on_hand, reserved, update_time) VALUES ($1, 0, 0, $2)")
                .bind(Id(product.id))
                .bind(Time(product.create_time))
                .execute(&mut *conn)
                .await
                .map(drop)
        })?;
        tx.enqueue(&events::product_created(product, origin)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The products that exist among `ids`, in no particular order.
    pub async fn get_products(&self, ids: &[Uuid]) -> StoreResult<Vec<Product>> {
        let rows = on_pool!(&self.db, |pool| {
            let mut q = QueryBuilder::new(format!("SELECT {PRODUCT_COLUMNS} FROM products p WHERE p.id"));
            push_in(&mut q, ids);
            q.build_query_as::<ProductRow>().fetch_all(pool).await
        })?;
        Ok(rows.into_iter().map(Product::from).collect())
    }

    /// Applies `patch`, bumps the version and enqueues `ProductUpdated`, in one transaction.
    /// NOT_FOUND, ABORTED on a version mismatch, ALREADY_EXISTS for a taken SKU.
    pub async fn update_product(
        &self,
        id: Uuid,
        patch: &ProductPatch,
        expected_version: Option<i64>,
        origin: &Origin,
    ) -> Result<Product, ServiceError> {
        let mut tx = Tx::begin(&self.db).await?;
        let sql = format!(
            "SELECT {PRODUCT_COLUMNS} FROM products p WHERE p.id = $1{}",
            row_lock(&tx, "p")
        );
        let row = on_tx!(tx, |conn| {
            sqlx::query_as::<_, ProductRow>(AssertSqlSafe(sql))
                .bind(Id(id))
                .fetch_optional(&mut *conn)
                .await
        })?;
        let Some(row) = row else {
            return Err(ServiceError::not_found("product", id));
        };
        let before = Product::from(row);
        if expected_version.is_some_and(|v| v != before.version) {
            return Err(ServiceError::Aborted(format!(
                "product version is {}, not the expected version",
                before.version
            )));
        }
        let mut after = before.clone();
        patch.apply(&mut after);
        after.version += 1;
        after.update_time = domain::now().max(after.update_time);
        on_tx!(tx, |conn| {
            let mut q = QueryBuilder::new(format!("UPDATE products SET ({PRODUCT_STATE}) = ("));
            push_state(&mut q, &after);
            q.push(") WHERE id = ").push_bind(Id(id));
            q.build().execute(&mut *conn).await.map(drop)
        })
        .map_err(|error| refusal(error, sku_taken(), unknown_category()))?;
        tx.enqueue(&events::product_updated(&before, &after, origin)).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Newest first, strictly after `after`; at most `limit` rows.
    pub async fn list_products(
        &self,
        filter: &ProductFilter,
        after: Option<ListCursor>,
        limit: usize,
    ) -> StoreResult<Vec<Product>> {
        let rows = on_pool!(&self.db, |pool| {
            let mut q = QueryBuilder::new(format!("SELECT {PRODUCT_COLUMNS} FROM products p WHERE TRUE"));
            push_filter(&mut q, filter);
            PRODUCTS_PAGE.push(&mut q, after.as_ref().map(|a| (Time(a.create_time), Id(a.id))), limit);
            q.build_query_as::<ProductRow>().fetch_all(pool).await
        })?;
        Ok(rows.into_iter().map(Product::from).collect())
    }

    /// Products matching every word (stemmed) in SKU, name or description, best match first.
    pub async fn search_products(
        &self,
        words: &[String],
        filter: &ProductFilter,
        offset: usize,
        limit: usize,
    ) -> StoreResult<Vec<Product>> {
        // The one statement that differs by backend: each has its own full-text engine. On
        // PostgreSQL the generated `search` column (GIN-indexed) against `plainto_tsquery`; on
        // SQLite the FTS5 table `products_fts`, with every word quoted so that FTS5 query syntax
        // in the input is never interpreted.
        let (before_terms, terms, after_terms, best_first) = match self.db {
            Database::Postgres(_) => (
                "products p, plainto_tsquery('english', ",
                words.join(" "),
                ") AS query WHERE p.search @@ query",
                "ts_rank(p.search, query) DESC",
            ),
            Database::Sqlite(_) => (
                "products_fts f JOIN products p ON p.seq = f.rowid WHERE products_fts MATCH ",
                words
                    .iter()
                    .map(|w| format!("\"{}\"", w.replace('"', "")))
                    .collect::<Vec<_>>()
                    .join(" "),
                "",
                "f.rank",
            ),
        };
        let rows = on_pool!(&self.db, |pool| {
            let mut q = QueryBuilder::new(format!("SELECT {PRODUCT_COLUMNS} FROM {before_terms}"));
            q.push_bind(terms).push(after_terms);
            push_filter(&mut q, filter);
            q.push(format_args!(" ORDER BY {best_first}, p.id DESC LIMIT "))
                .push_bind(limit as i64)
                .push(" OFFSET ")
                .push_bind(offset as i64);
            q.build_query_as::<ProductRow>().fetch_all(pool).await
        })?;
        Ok(rows.into_iter().map(Product::from).collect())
    }
}
