//! Product catalogs (seed 003): the products of one business of an owner, searched with real
//! full-text ranking (SQLite FTS5, PostgreSQL `tsvector`; see `store/catalog.rs`) and offered to
//! an agent as tools (`tools.rs`). A product has the seed's fields and casing (`productId`,
//! `imageUrl`, ...), so what the catalog API takes and answers is what a `recommendationEvent`
//! shows.
//!
//! A business id is the owner's own name for a catalog (the seed's `business_id` path
//! parameter): two owners may use the same one and never see each other's products.

pub mod demo;
pub mod query;
pub mod tools;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::validation::{Violations, check_http_url};

/// Most products one `PUT /catalog/{business_id}/products` takes.
pub const MAX_PRODUCTS_PER_REQUEST: usize = 10_000;
/// The largest body that route takes: 10,000 products of a few KiB each. Other routes keep the
/// server's `max_body_bytes`.
pub const MAX_UPSERT_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Limits of one product's fields (characters; facets and metadata in bytes of JSON).
pub const PRODUCT_ID_MAX_CHARS: usize = 256;
pub const BUSINESS_ID_MAX_CHARS: usize = 128;
pub const TITLE_MAX_CHARS: usize = 500;
pub const DESCRIPTION_MAX_CHARS: usize = 10_000;
pub const URL_MAX_CHARS: usize = 2_048;
pub const DOCUMENT_MAX_BYTES: usize = 16 * 1024;
/// A price above this is a typo (or a unit mix-up), not a product.
pub const PRICE_MAX: f64 = 1e12;

/// One product, as the catalog API and the `recommendationEvent` show it (every field present,
/// `null` when unknown, as in the seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Product {
    /// The business's own id of the product (1-256 characters).
    pub product_id: String,
    /// 1-500 characters.
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The product's page (http or https).
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub image_url: Option<String>,
    /// 0 to 1e12, in `currency`.
    #[serde(default)]
    pub price: Option<f64>,
    /// ISO 4217 code, e.g. `USD`.
    #[serde(default)]
    pub currency: Option<String>,
    /// Searchable attributes (a JSON object), e.g. `{"color": "pink", "size": "10yrs"}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub facets: Option<Value>,
    /// Anything else the business keeps with the product (a JSON object; not searched).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

impl Product {
    /// Checks the product's fields; `at` is its place in the request (`[3]`).
    pub fn validate(&self, at: &str, v: &mut Violations) {
        let field = |name: &str| format!("{at}.{name}");
        if self.product_id.trim().is_empty() {
            v.add(field("productId"), "must not be empty");
        } else {
            v.char_length(
                &field("productId"),
                &self.product_id,
                1,
                PRODUCT_ID_MAX_CHARS,
            );
        }
        if self.title.trim().is_empty() {
            v.add(field("title"), "must not be empty");
        } else {
            v.char_length(&field("title"), &self.title, 1, TITLE_MAX_CHARS);
        }
        if let Some(text) = &self.description {
            v.char_length(&field("description"), text, 0, DESCRIPTION_MAX_CHARS);
        }
        for (name, url) in [("url", &self.url), ("imageUrl", &self.image_url)] {
            if let Some(url) = url {
                if url.chars().count() > URL_MAX_CHARS {
                    v.add(
                        field(name),
                        format!("must be at most {URL_MAX_CHARS} characters"),
                    );
                } else if let Err(why) = check_http_url(url) {
                    v.add(field(name), why);
                }
            }
        }
        if let Some(price) = self.price
            && !(price.is_finite() && (0.0..=PRICE_MAX).contains(&price))
        {
            v.add(field("price"), "must be a number from 0 to 1e12");
        }
        if let Some(currency) = &self.currency
            && !is_currency_code(currency)
        {
            v.add(
                field("currency"),
                "must be an ISO 4217 code: three capital letters such as \"USD\"",
            );
        }
        for (name, document) in [("facets", &self.facets), ("metadata", &self.metadata)] {
            match document {
                None | Some(Value::Null) => {}
                Some(Value::Object(_)) => {
                    if document.as_ref().map_or(0, |d| d.to_string().len()) > DOCUMENT_MAX_BYTES {
                        v.add(
                            field(name),
                            format!("must be at most {DOCUMENT_MAX_BYTES} bytes of JSON"),
                        );
                    }
                }
                Some(_) => v.add(field(name), "must be a JSON object or null"),
            }
        }
    }

    /// The words of the facets that search matches: every value (not the keys, which name
    /// what a value is rather than describe the product), flattened.
    pub fn facets_text(&self) -> String {
        fn collect(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::String(s) => out.push(s.clone()),
                Value::Number(n) => out.push(n.to_string()),
                Value::Bool(b) => out.push(b.to_string()),
                Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
                Value::Object(map) => map.values().for_each(|i| collect(i, out)),
                Value::Null => {}
            }
        }
        let mut words = Vec::new();
        if let Some(facets) = &self.facets {
            collect(facets, &mut words);
        }
        words.join(" ")
    }
}

/// Whether `id` can name a catalog: 1-128 characters of letters, digits, `-`, `_`, `.` and
/// `:` (it travels in URL paths and logs).
pub fn is_business_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= BUSINESS_ID_MAX_CHARS
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// The rule [`is_business_id`] checks, in words.
pub const BUSINESS_ID_RULE: &str =
    "must be 1-128 characters of letters, digits, '-', '_', '.' and ':'";

fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// Keeps the last of products that share an id (a bulk upsert names each product once; the
/// later line of an export wins, as it would had the lines been sent one by one).
pub fn last_of_each(products: Vec<Product>) -> Vec<Product> {
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<Product> = products
        .into_iter()
        .rev()
        .filter(|p| seen.insert(p.product_id.clone()))
        .collect();
    kept.reverse();
    kept
}

/// A search of one catalog.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Search {
    /// Words to rank by (none: every product, by id).
    pub query: Option<String>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    /// 1-based page of `page_size` products.
    pub page: u32,
    pub page_size: u32,
}

/// A page of search results.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub products: Vec<Product>,
    /// More products match beyond this page.
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn product(id: &str) -> Product {
        Product {
            product_id: id.into(),
            title: "Pink dress".into(),
            description: None,
            url: Some("https://shop.example.com/p/1".into()),
            image_url: None,
            price: Some(79.9),
            currency: Some("USD".into()),
            facets: Some(json!({"color": "pink", "sizes": ["8yrs", "10yrs"], "sale": true})),
            metadata: None,
        }
    }

    fn violations(p: &Product) -> Vec<String> {
        let mut v = Violations::new();
        p.validate("[0]", &mut v);
        v.into_result()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn products_are_checked_field_by_field() {
        assert!(violations(&product("a")).is_empty());
        let bad = Product {
            product_id: " ".into(),
            title: String::new(),
            url: Some("ftp://x".into()),
            price: Some(-1.0),
            currency: Some("usd".into()),
            facets: Some(json!([1])),
            ..product("a")
        };
        assert_eq!(
            violations(&bad),
            [
                "[0].productId",
                "[0].title",
                "[0].url",
                "[0].price",
                "[0].currency",
                "[0].facets"
            ]
        );
        let nan = Product {
            price: Some(f64::INFINITY),
            ..product("a")
        };
        assert_eq!(violations(&nan), ["[0].price"]);
    }

    #[test]
    fn facet_values_are_the_searchable_text() {
        assert_eq!(product("a").facets_text(), "pink true 8yrs 10yrs");
    }

    #[test]
    fn business_ids_are_path_safe() {
        assert!(is_business_id("acme-store_1.eu:2"));
        assert!(!is_business_id(""));
        assert!(!is_business_id("a/b"));
        assert!(!is_business_id(&"x".repeat(129)));
    }

    #[test]
    fn the_last_of_duplicates_wins_in_first_seen_order() {
        let mut second = product("a");
        second.title = "newer".into();
        let kept = last_of_each(vec![product("a"), product("b"), second]);
        let ids: Vec<&str> = kept.iter().map(|p| p.product_id.as_str()).collect();
        assert_eq!(ids, ["b", "a"]);
        assert_eq!(kept[1].title, "newer");
    }
}
