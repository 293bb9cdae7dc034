//! `/catalog/{business_id}/products`: a business's product catalog. `PUT` upserts up to 10,000
//! products at once (a JSON array of the seed's product objects; all or none are stored),
//! `GET` pages through them, ranked by `query` (full-text, best first) and within a price
//! range, and `DELETE .../{product_id}` removes one. Bearer key and the envelope, as every
//! resource route; a catalog belongs to the key's owner, so another owner's business id is
//! simply an empty catalog of one's own.

use axum::extract::{Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Caller;
use super::envelope::{Envelope, ok};
use super::error::ApiError;
use super::json::ApiJsonArray;
use super::path::{ApiPath, ApiPathPair};
use crate::catalog::{
    BUSINESS_ID_RULE, MAX_PRODUCTS_PER_REQUEST, Product, Search, is_business_id, last_of_each,
};
use crate::validation::Violations;

/// Largest page of `GET /catalog/{business_id}/products`.
const MAX_PAGE_SIZE: u32 = 100;
/// Longest `query`, in characters.
const MAX_QUERY_CHARS: usize = 500;
/// Violations listed in one answer: a broken export can have one per product.
const MAX_LISTED_VIOLATIONS: usize = 100;

/// Query of `GET /catalog/{business_id}/products`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProductQuery {
    /// Words to search title, description and facets for, best match first (any word
    /// matches; more and rarer words rank higher). Without it: every product, by id.
    pub query: Option<String>,
    /// 1-based page number (default 1).
    pub page: Option<u32>,
    /// Products per page, 1-100 (default 20).
    pub page_size: Option<u32>,
    /// Only products at this price or above.
    pub min_price: Option<f64>,
    /// Only products at this price or below.
    pub max_price: Option<f64>,
}

/// `data` of `PUT /catalog/{business_id}/products`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductsUpserted {
    pub business_id: String,
    /// Products written (a productId named twice counts once: the later one is kept).
    pub upserted: usize,
}

/// `data` of `GET /catalog/{business_id}/products`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    pub products: Vec<Product>,
    pub page: u32,
    pub page_size: u32,
    /// Another page follows.
    pub has_more: bool,
}

/// `data` of `DELETE /catalog/{business_id}/products/{product_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductDeleted {
    pub business_id: String,
    pub product_id: String,
}

fn business_id(id: &str) -> Result<(), ApiError> {
    if is_business_id(id) {
        Ok(())
    } else {
        Err(ApiError::invalid("business_id", BUSINESS_ID_RULE))
    }
}

#[utoipa::path(
    put, path = "/catalog/{business_id}/products", operation_id = "catalog_upsert", tag = "catalog",
    params(("business_id" = String, Path, description = "The business whose catalog this is")),
    request_body(content = Vec<Product>, description = "1 to 10,000 products; an existing productId is replaced"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Products stored (all of them)", body = Envelope<ProductsUpserted>),
        (status = 400, description = "Not an array of products; each broken rule names `[index].field`. Nothing is stored", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 413, description = "Body larger than 64 MiB", body = Envelope<Value>),
    )
)]
pub async fn upsert(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(business): ApiPath,
    body: Result<ApiJsonArray<Product>, ApiError>,
) -> Result<Response, ApiError> {
    business_id(&business)?;
    let ApiJsonArray(products) = body?;
    if products.len() > MAX_PRODUCTS_PER_REQUEST {
        return Err(ApiError::invalid(
            "body",
            format!(
                "holds {} products; at most {MAX_PRODUCTS_PER_REQUEST} per request",
                products.len()
            ),
        ));
    }
    let mut v = Violations::new();
    for (i, product) in products.iter().enumerate() {
        product.validate(&format!("[{i}]"), &mut v);
        if v.len() >= MAX_LISTED_VIOLATIONS {
            break;
        }
    }
    v.into_result().map_err(ApiError::Invalid)?;
    let products = last_of_each(products);
    let upserted = state
        .store
        .upsert_products(&owner.id, &business, &products)
        .await?;
    Ok(ok(
        format!("{upserted} products stored"),
        ProductsUpserted {
            business_id: business,
            upserted,
        },
    ))
}

#[utoipa::path(
    get, path = "/catalog/{business_id}/products", operation_id = "catalog_search", tag = "catalog",
    params(("business_id" = String, Path, description = "The business whose catalog this is"), ProductQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of products, best match first", body = Envelope<ProductPage>),
        (status = 400, description = "Invalid query", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(business): ApiPath,
    query: Result<Query<ProductQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    business_id(&business)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let mut v = Violations::new();
    let page = query.page.unwrap_or(1);
    if page == 0 {
        v.add("page", "must be at least 1");
    }
    let page_size = query.page_size.unwrap_or(20);
    if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
        v.add("page_size", format!("must be 1-{MAX_PAGE_SIZE}"));
    }
    if let Some(text) = &query.query {
        v.char_length("query", text, 0, MAX_QUERY_CHARS);
    }
    for (name, price) in [
        ("min_price", query.min_price),
        ("max_price", query.max_price),
    ] {
        if price.is_some_and(|p| !p.is_finite() || p < 0.0) {
            v.add(name, "must be a number of at least 0");
        }
    }
    if let (Some(min), Some(max)) = (query.min_price, query.max_price)
        && min > max
    {
        v.add("max_price", "must not be below min_price");
    }
    v.into_result().map_err(ApiError::Invalid)?;
    let search = Search {
        // A blank query is no query: the whole catalog.
        query: query.query.filter(|q| !q.trim().is_empty()),
        min_price: query.min_price,
        max_price: query.max_price,
        page,
        page_size,
    };
    let found = state
        .store
        .search_products(&owner.id, &business, &search)
        .await?;
    Ok(ok(
        "Products",
        ProductPage {
            products: found.products,
            page,
            page_size,
            has_more: found.has_more,
        },
    ))
}

#[utoipa::path(
    delete, path = "/catalog/{business_id}/products/{product_id}", operation_id = "catalog_delete", tag = "catalog",
    params(
        ("business_id" = String, Path, description = "The business whose catalog this is"),
        ("product_id" = String, Path, description = "The product's productId (percent-encoded)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Product deleted", body = Envelope<ProductDeleted>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "No such product in this catalog", body = Envelope<Value>),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPathPair(business, product): ApiPathPair,
) -> Result<Response, ApiError> {
    business_id(&business)?;
    if !state
        .store
        .delete_product(&owner.id, &business, &product)
        .await?
    {
        return Err(ApiError::NotFound("Product not found".to_owned()));
    }
    Ok(ok(
        "Product deleted",
        ProductDeleted {
            business_id: business,
            product_id: product,
        },
    ))
}
