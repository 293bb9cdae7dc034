//! Product catalogs: bulk upserts, deletes, lookups by id and ranked full-text search. The one
//! place where the two backends speak different SQL: SQLite searches its FTS5 index
//! (`catalog_fts`, BM25 with the title weighted over facets over description), PostgreSQL its
//! generated `tsvector` (`ts_rank`, weights A/B/C the same way). Both rank the words
//! [`crate::catalog::query::terms`] keeps, so a query means the same on either.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Backend, Store, StoreError, now_timestamp};
use crate::catalog::query::terms;
use crate::catalog::{Product, Search, SearchPage};

/// Rows per INSERT of a bulk upsert: at 10 parameters a row this stays far below both backends'
/// limits (SQLite 32,766, PostgreSQL 65,535), and it is one statement per 500 rows, not per row.
const UPSERT_CHUNK: usize = 500;

/// The columns a product is read from, in the order [`product_of`] takes them.
const PRODUCT_COLUMNS: &str = "p.product_id, p.title, p.description, p.url, p.image_url, \
                               p.price, p.currency, p.facets, p.metadata";

impl Store {
    /// Inserts or replaces `products` (each id once) in the owner's catalog `business_id`, all
    /// or none. Answers how many were written.
    pub async fn upsert_products(
        &self,
        owner_id: &str,
        business_id: &str,
        products: &[Product],
    ) -> Result<usize, StoreError> {
        let now = now_timestamp();
        let mut tx = self.pool().begin().await?;
        for chunk in products.chunks(UPSERT_CHUNK) {
            // $1 owner, $2 business, $3 time; then 10 per row.
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p = |k: usize| format!("${}", 4 + i * 10 + k);
                    format!(
                        "($1, $2, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, $3, $3)",
                        p(0),
                        p(1),
                        p(2),
                        p(3),
                        p(4),
                        p(5),
                        p(6),
                        p(7),
                        p(8),
                        p(9)
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO catalog_products (owner_id, business_id, product_id, title, \
                 description, url, image_url, price, currency, facets, metadata, facets_text, \
                 created_at, updated_at) VALUES {} \
                 ON CONFLICT (owner_id, business_id, product_id) DO UPDATE SET \
                 title = excluded.title, description = excluded.description, url = excluded.url, \
                 image_url = excluded.image_url, price = excluded.price, \
                 currency = excluded.currency, facets = excluded.facets, \
                 metadata = excluded.metadata, facets_text = excluded.facets_text, \
                 updated_at = excluded.updated_at",
                rows.join(", ")
            );
            // Only placeholders are formatted into the statement; every value is bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(owner_id)
                .bind(business_id)
                .bind(&now);
            for product in chunk {
                query = query
                    .bind(&product.product_id)
                    .bind(&product.title)
                    .bind(&product.description)
                    .bind(&product.url)
                    .bind(&product.image_url)
                    .bind(product.price)
                    .bind(&product.currency)
                    .bind(json_text(product.facets.as_ref()))
                    .bind(json_text(product.metadata.as_ref()))
                    .bind(product.facets_text());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(products.len())
    }

    /// Deletes one product; false when the catalog has no such product.
    pub async fn delete_product(
        &self,
        owner_id: &str,
        business_id: &str,
        product_id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM catalog_products WHERE owner_id = $1 AND business_id = $2 \
             AND product_id = $3",
        )
        .bind(owner_id)
        .bind(business_id)
        .bind(product_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether the catalog holds any product (an agent is offered the catalog's tools only
    /// then).
    pub async fn catalog_has_products(
        &self,
        owner_id: &str,
        business_id: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM catalog_products WHERE owner_id = $1 AND business_id = $2 \
             LIMIT 1",
        )
        .bind(owner_id)
        .bind(business_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// The catalog's products with these ids, in the order asked (unknown ids left out).
    pub async fn products_by_ids(
        &self,
        owner_id: &str,
        business_id: &str,
        ids: &[String],
    ) -> Result<Vec<Product>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "SELECT {PRODUCT_COLUMNS} FROM catalog_products p WHERE p.owner_id = $1 \
             AND p.business_id = $2 AND p.product_id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner_id)
            .bind(business_id);
        for id in ids {
            query = query.bind(id);
        }
        let found: Vec<Product> = query
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(product_of)
            .collect::<Result<_, _>>()?;
        Ok(ids
            .iter()
            .filter_map(|id| found.iter().find(|p| &p.product_id == id).cloned())
            .collect())
    }

    /// A page of the catalog: ranked by `search.query`'s words (best first), or every product
    /// by id without a query; within the price bounds either way. A query without a single
    /// searchable word matches nothing.
    pub async fn search_products(
        &self,
        owner_id: &str,
        business_id: &str,
        search: &Search,
    ) -> Result<SearchPage, StoreError> {
        let words = search.query.as_deref().map(terms);
        if words.as_ref().is_some_and(Vec::is_empty) {
            return Ok(SearchPage {
                products: Vec::new(),
                has_more: false,
            });
        }
        // $1 owner, $2 business, then the match (if any), the price bounds (if any), and the
        // page. Built from fixed pieces; every value is bound.
        let mut next = 3;
        let mut placeholder = || {
            let p = format!("${next}");
            next += 1;
            p
        };
        let (with, from, mut filter, order) = match (&words, self.backend()) {
            (None, _) => (
                String::new(),
                "catalog_products p".to_owned(),
                String::new(),
                "p.product_id".to_owned(),
            ),
            // The match runs once, as the outer loop: left to itself, the planner may walk the
            // business's products and evaluate the match for each (seconds at 100,000).
            (Some(_), Backend::Sqlite) => (
                format!(
                    "WITH hits AS MATERIALIZED (SELECT rowid AS id, \
                     bm25(catalog_fts, 10.0, 1.0, 4.0) AS score FROM catalog_fts \
                     WHERE catalog_fts MATCH {}) ",
                    placeholder()
                ),
                "hits CROSS JOIN catalog_products p ON p.id = hits.id".to_owned(),
                String::new(),
                // BM25 is lower for better matches; title, description, facets.
                "hits.score, p.product_id".to_owned(),
            ),
            (Some(_), Backend::Postgres) => {
                let q = placeholder();
                (
                    String::new(),
                    "catalog_products p".to_owned(),
                    format!(" AND p.search @@ to_tsquery('english', {q})"),
                    format!("ts_rank(p.search, to_tsquery('english', {q})) DESC, p.product_id"),
                )
            }
        };
        if search.min_price.is_some() {
            filter.push_str(&format!(" AND p.price >= {}", placeholder()));
        }
        if search.max_price.is_some() {
            filter.push_str(&format!(" AND p.price <= {}", placeholder()));
        }
        let limit = placeholder();
        let offset = placeholder();
        let sql = format!(
            "{with}SELECT {PRODUCT_COLUMNS} FROM {from} WHERE p.owner_id = $1 AND p.business_id = $2\
             {filter} ORDER BY {order} LIMIT {limit} OFFSET {offset}"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner_id)
            .bind(business_id);
        if let Some(words) = &words {
            query = query.bind(match self.backend() {
                Backend::Sqlite => words
                    .iter()
                    .map(|w| format!("\"{w}\""))
                    .collect::<Vec<_>>()
                    .join(" OR "),
                Backend::Postgres => words.join(" | "),
            });
        }
        if let Some(min) = search.min_price {
            query = query.bind(min);
        }
        if let Some(max) = search.max_price {
            query = query.bind(max);
        }
        let page_size = i64::from(search.page_size.max(1));
        let offset = i64::from(search.page.max(1) - 1) * page_size;
        // One more than the page, to know whether another page follows.
        let rows = query
            .bind(page_size + 1)
            .bind(offset)
            .fetch_all(self.pool())
            .await?;
        let mut products: Vec<Product> = rows.iter().map(product_of).collect::<Result<_, _>>()?;
        let has_more = products.len() as i64 > page_size;
        products.truncate(page_size as usize);
        Ok(SearchPage { products, has_more })
    }
}

fn json_text(value: Option<&serde_json::Value>) -> Option<String> {
    value.filter(|v| !v.is_null()).map(|v| v.to_string())
}

fn product_of(row: &AnyRow) -> Result<Product, StoreError> {
    let document = |column: &str| -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> = row.try_get(column)?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| StoreError::Corrupt(format!("product {column}: {e}")))
        })
        .transpose()
    };
    Ok(Product {
        product_id: row.try_get("product_id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        url: row.try_get("url")?,
        image_url: row.try_get("image_url")?,
        price: row.try_get("price")?,
        currency: row.try_get("currency")?,
        facets: document("facets")?,
        metadata: document("metadata")?,
    })
}
