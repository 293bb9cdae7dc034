//! The catalog's tools for an agent. `search_products` finds products (ranked, with a price
//! filter) and tells the model what it found; `recommend_products` shows products to the
//! shopper: the model names the ids it chose (from a search), and those products become the
//! reply's recommendation (a `recommendationEvent` of the sales API, product cards in the web
//! widget). Search results are not shown by themselves: the model may search several times, or
//! find nothing worth showing, and only it knows which products answer the shopper.
//!
//! `recommend_products` is offered only where products can be shown; a phone call gets
//! `search_products` alone and speaks about what it found.

use serde_json::{Value, json};

use super::{Product, Search};
use crate::llm::ToolSpec;
use crate::store::Store;

pub const SEARCH_PRODUCTS: &str = "search_products";
pub const RECOMMEND_PRODUCTS: &str = "recommend_products";
/// Products one search hands the model (each costs context), and the default.
const MAX_SEARCH_RESULTS: u32 = 10;
const DEFAULT_SEARCH_RESULTS: u32 = 5;
/// Products one recommendation shows.
const MAX_RECOMMENDED: usize = 10;
/// How much of a description the model reads per product.
const DESCRIPTION_PREVIEW_CHARS: usize = 300;

/// The catalog an agent may search (and show from).
#[derive(Clone)]
pub struct CatalogTools {
    store: Store,
    owner_id: String,
    business_id: String,
    can_show: bool,
}

impl std::fmt::Debug for CatalogTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogTools")
            .field("owner_id", &self.owner_id)
            .field("business_id", &self.business_id)
            .field("can_show", &self.can_show)
            .finish()
    }
}

/// A call of one of the catalog's tools, its arguments checked.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogCall {
    Search(Search),
    Recommend(Vec<String>),
}

impl CatalogTools {
    /// The owner's catalog `business_id`; `can_show`: the channel shows recommendations.
    pub fn new(store: Store, owner_id: &str, business_id: &str, can_show: bool) -> Self {
        Self {
            store,
            owner_id: owner_id.to_owned(),
            business_id: business_id.to_owned(),
            can_show,
        }
    }

    /// The catalog's tools, if the catalog has products (an empty one offers nothing to find).
    pub async fn if_stocked(
        store: &Store,
        owner_id: &str,
        business_id: &str,
        can_show: bool,
    ) -> Option<Self> {
        match store.catalog_has_products(owner_id, business_id).await {
            Ok(true) => Some(Self::new(store.clone(), owner_id, business_id, can_show)),
            Ok(false) => None,
            Err(e) => {
                tracing::warn!(error = %e, business_id, "catalog not checked; its tools are not offered");
                None
            }
        }
    }

    pub fn business_id(&self) -> &str {
        &self.business_id
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        let mut specs = vec![ToolSpec {
            name: SEARCH_PRODUCTS.into(),
            description: "Search the store's product catalog. Answers the best matches first, \
                          with their productId, title, price and a short description."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What the shopper is looking for, in a few words, e.g. \"pink dress 10 years\""},
                    "min_price": {"type": "number", "description": "Lowest price, if the shopper gave one"},
                    "max_price": {"type": "number", "description": "Highest price, if the shopper gave one"},
                    "limit": {"type": "integer", "description": "How many products (1-10, default 5)"}
                },
                "required": ["query"]
            }),
        }];
        if self.can_show {
            specs.push(ToolSpec {
                name: RECOMMEND_PRODUCTS.into(),
                description: "Show products to the shopper as cards (image, title, price, \
                              link). Pass the productIds of the products from search_products \
                              that fit what the shopper asked for, best first; then ask a short \
                              question about them."
                    .into(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "productIds": {"type": "array", "items": {"type": "string"}, "description": "Up to 10 productIds from search_products"}
                    },
                    "required": ["productIds"]
                }),
            });
        }
        specs
    }

    /// Checks a call of tool `name`: `None` when it is not one of these tools, else the call
    /// or the error text the model reads.
    pub fn resolve(&self, name: &str, arguments: &Value) -> Option<Result<CatalogCall, String>> {
        match name {
            SEARCH_PRODUCTS => Some(search_arguments(arguments).map(CatalogCall::Search)),
            RECOMMEND_PRODUCTS if self.can_show => {
                Some(recommend_arguments(arguments).map(CatalogCall::Recommend))
            }
            _ => None,
        }
    }

    /// Runs a checked call: what the model reads, and the products to show (a recommendation).
    pub async fn run(&self, call: CatalogCall) -> (String, Vec<Product>) {
        match call {
            CatalogCall::Search(search) => (self.search(&search).await, Vec::new()),
            CatalogCall::Recommend(ids) => self.recommend(&ids).await,
        }
    }

    async fn search(&self, search: &Search) -> String {
        let found = self
            .store
            .search_products(&self.owner_id, &self.business_id, search)
            .await;
        match found {
            Err(e) => {
                tracing::warn!(error = %e, "product search failed");
                json!({"error": "the catalog could not be searched right now"}).to_string()
            }
            Ok(page) if page.products.is_empty() => json!({
                "products": [],
                "note": "Nothing matched. Try other or fewer words, or a wider price range."
            })
            .to_string(),
            Ok(page) => {
                let products: Vec<Value> = page.products.iter().map(for_the_model).collect();
                json!({"products": products}).to_string()
            }
        }
    }

    async fn recommend(&self, ids: &[String]) -> (String, Vec<Product>) {
        let found = self
            .store
            .products_by_ids(&self.owner_id, &self.business_id, ids)
            .await;
        match found {
            Err(e) => {
                tracing::warn!(error = %e, "recommended products not loaded");
                let error = json!({"error": "the products could not be shown right now"});
                (error.to_string(), Vec::new())
            }
            Ok(products) => {
                let unknown: Vec<&String> = ids
                    .iter()
                    .filter(|id| !products.iter().any(|p| &p.product_id == *id))
                    .collect();
                let shown: Vec<&str> = products.iter().map(|p| p.product_id.as_str()).collect();
                let result = if shown.is_empty() {
                    json!({"error": "none of these productIds is in the catalog; use ids from search_products", "unknown": unknown})
                } else if unknown.is_empty() {
                    json!({"shown": shown})
                } else {
                    json!({"shown": shown, "unknown": unknown})
                };
                (result.to_string(), products)
            }
        }
    }
}

/// What the model reads of a product: enough to choose and to talk about it.
fn for_the_model(p: &Product) -> Value {
    let description = p.description.as_deref().map(|d| {
        if d.chars().count() > DESCRIPTION_PREVIEW_CHARS {
            let cut: String = d.chars().take(DESCRIPTION_PREVIEW_CHARS).collect();
            format!("{cut}…")
        } else {
            d.to_owned()
        }
    });
    json!({
        "productId": p.product_id,
        "title": p.title,
        "price": p.price,
        "currency": p.currency,
        "description": description,
        "facets": p.facets,
    })
}

fn search_arguments(arguments: &Value) -> Result<Search, String> {
    let query = match &arguments["query"] {
        Value::String(q) if !q.trim().is_empty() => q.clone(),
        _ => return Err("query must be a non-empty string".into()),
    };
    let price = |name: &str| match &arguments[name] {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_f64()
            .filter(|p| p.is_finite() && *p >= 0.0)
            .map(Some)
            .ok_or_else(|| format!("{name} must be a number of at least 0")),
        _ => Err(format!("{name} must be a number")),
    };
    let limit = match &arguments["limit"] {
        Value::Null => DEFAULT_SEARCH_RESULTS,
        Value::Number(n) => n.as_u64().map_or(DEFAULT_SEARCH_RESULTS, |l| {
            l.clamp(1, u64::from(MAX_SEARCH_RESULTS)) as u32
        }),
        _ => return Err("limit must be an integer from 1 to 10".into()),
    };
    Ok(Search {
        query: Some(query),
        min_price: price("min_price")?,
        max_price: price("max_price")?,
        page: 1,
        page_size: limit,
    })
}

fn recommend_arguments(arguments: &Value) -> Result<Vec<String>, String> {
    let Some(items) = arguments["productIds"].as_array() else {
        return Err("productIds must be an array of productId strings".into());
    };
    let mut ids: Vec<String> = Vec::new();
    for item in items {
        match item.as_str().map(str::trim) {
            // A blank entry is what a template with fewer results than slots leaves: skipped.
            Some("") => {}
            Some(id) if !ids.iter().any(|i| i == id) => ids.push(id.to_owned()),
            Some(_) => {}
            None => return Err("productIds must hold strings".into()),
        }
    }
    if ids.is_empty() {
        return Err("productIds must name at least one product".into());
    }
    ids.truncate(MAX_RECOMMENDED);
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_arguments_are_checked_and_bounded() {
        let s = search_arguments(&json!({"query": "pink dress", "max_price": 100, "limit": 50}))
            .unwrap();
        assert_eq!(s.query.as_deref(), Some("pink dress"));
        assert_eq!(s.max_price, Some(100.0));
        assert_eq!(s.page_size, MAX_SEARCH_RESULTS);
        assert_eq!(
            search_arguments(&json!({"query": "x"})).unwrap().page_size,
            DEFAULT_SEARCH_RESULTS
        );
        assert!(search_arguments(&json!({})).is_err());
        assert!(search_arguments(&json!({"query": " "})).is_err());
        assert!(search_arguments(&json!({"query": "x", "min_price": "cheap"})).is_err());
        assert!(search_arguments(&json!({"query": "x", "min_price": -1})).is_err());
    }

    #[test]
    fn recommended_ids_are_deduplicated_and_blank_ones_skipped() {
        assert_eq!(
            recommend_arguments(&json!({"productIds": ["a", "", "b", "a"]})).unwrap(),
            ["a", "b"]
        );
        assert!(recommend_arguments(&json!({"productIds": []})).is_err());
        assert!(recommend_arguments(&json!({"productIds": "a"})).is_err());
        assert!(recommend_arguments(&json!({"productIds": [1]})).is_err());
    }

    #[test]
    fn long_descriptions_are_previewed() {
        let p = Product {
            product_id: "p".into(),
            title: "t".into(),
            description: Some("é".repeat(1000)),
            url: None,
            image_url: None,
            price: None,
            currency: None,
            facets: None,
            metadata: None,
        };
        let shown = for_the_model(&p);
        let text = shown["description"].as_str().unwrap();
        assert_eq!(text.chars().count(), DESCRIPTION_PREVIEW_CHARS + 1);
    }
}
