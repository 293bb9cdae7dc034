//! Product catalogs over REST: bulk upserts (up to 10,000 products, beyond the server's usual
//! body limit), ranked full-text search over title, description and facets with a price filter
//! and pages, deletes, owner scoping, and every kind of bad input answered with its status and
//! the field. On SQLite (FTS5) and PostgreSQL (tsvector); plus migration 0008 applied after
//! 0009 on a database that already had 0009.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::on_both_backends;

const PATH: &str = "/catalog/shop-1/products";

pub fn demo_catalog() -> Value {
    serde_json::from_str(include_str!("../../fixtures/sales/catalog.json")).unwrap()
}

async fn put(s: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    s.call(Method::PUT, path, Some(&s.key), Some(body)).await
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]["products"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|p| p["productId"].as_str().unwrap().to_owned())
        .collect()
}

async fn search(s: &TestServer, query: &str) -> Vec<String> {
    let (status, page) = s.get(&format!("{PATH}?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {page}");
    ids(&page)
}

const PINK: &str = "018c6302-ec34-02f2-cc2c-c5f1f38a7a03";
const SIGNATURE: &str = "018c39ce-db1b-48e1-1bca-d36601955c9c";

async fn products_are_upserted_searched_and_deleted(s: &TestServer) {
    let (status, reply) = put(s, PATH, demo_catalog()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"]["upserted"], 6);

    // Without a query: every product, by id, with the seed's fields and nulls.
    let (_, page) = s.get(PATH).await;
    assert_eq!(ids(&page).len(), 6);
    assert_eq!(page["data"]["has_more"], false);
    let pink = page["data"]["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["productId"] == PINK)
        .unwrap();
    assert_eq!(
        pink,
        &json!({"productId": PINK, "title": "Pink dress size 10yrs",
                "description": "The perfect pink dress for all Birthdays and events",
                "url": "https://shop.example.com/products/pink-dress-10yrs",
                "imageUrl": "https://shop.example.com/images/pink-dress-10yrs.jpg",
                "price": 79.9, "currency": "USD", "facets": null, "metadata": null})
    );

    // Ranked: both pink dresses before anything that is only pink or only a dress.
    let found = search(s, "query=pink%20dress").await;
    assert!(found[..2].contains(&PINK.to_owned()), "{found:?}");
    assert!(found[..2].contains(&SIGNATURE.to_owned()), "{found:?}");
    assert!(
        found.contains(&"demo-birthday-tiara".to_owned()),
        "any word matches: {found:?}"
    );
    // Stemmed, and facets are searched.
    assert!(search(s, "query=dresses").await.contains(&PINK.to_owned()));
    assert_eq!(search(s, "query=silver").await, ["demo-sparkly-shoes"]);
    assert_eq!(
        search(s, "query=10yrs%20purple").await[0],
        "demo-purple-party-dress"
    );
    // A query of nothing searchable finds nothing; no match is an empty page.
    assert!(search(s, "query=the%20a").await.is_empty());
    assert!(search(s, "query=submarine").await.is_empty());
    // Query syntax is only words.
    assert!(
        search(s, "query=%22pink%22%20OR%20*%3A%20NEAR(")
            .await
            .contains(&PINK.to_owned())
    );

    // Price filter, with and without a query.
    let cheap = search(s, "query=dress&max_price=70").await;
    assert_eq!(
        cheap.len(),
        3,
        "two dresses and shoes for a party dress: {cheap:?}"
    );
    assert!(!cheap.contains(&PINK.to_owned()));
    assert_eq!(search(s, "min_price=100").await, [SIGNATURE]);
    assert_eq!(
        search(s, "min_price=40&max_price=50").await,
        ["demo-sparkly-shoes"]
    );

    // Pages.
    let (_, first) = s.get(&format!("{PATH}?page_size=4")).await;
    assert_eq!(ids(&first).len(), 4);
    assert_eq!(first["data"]["has_more"], true);
    let (_, second) = s.get(&format!("{PATH}?page_size=4&page=2")).await;
    assert_eq!(ids(&second).len(), 2);
    assert_eq!(second["data"]["has_more"], false);
    assert_eq!(second["data"]["page"], 2);

    // An upsert replaces, and search follows the new text; a productId named twice: the later.
    let (status, reply) = put(
        s,
        PATH,
        json!([
            {"productId": "demo-blue-summer-dress", "title": "x"},
            {"productId": "demo-blue-summer-dress", "title": "Green linen dress", "price": 41,
             "facets": {"color": "green"}}
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"]["upserted"], 1);
    assert_eq!(search(s, "query=green").await, ["demo-blue-summer-dress"]);
    assert!(search(s, "query=blue").await.is_empty(), "old text is gone");
    assert_eq!(search(s, "query=green").await.len(), 1);
    assert_eq!(ids(&s.get(PATH).await.1).len(), 6);

    // Delete, then it is gone; again: 404.
    let product = format!("{PATH}/demo-birthday-tiara");
    let (status, reply) = s.delete(&product).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert!(search(s, "query=tiara").await.is_empty());
    assert_eq!(s.delete(&product).await.0, StatusCode::NOT_FOUND);
    // An id with a slash travels percent-encoded.
    put(s, PATH, json!([{"productId": "a/b", "title": "Slashed"}])).await;
    assert_eq!(s.delete(&format!("{PATH}/a%2Fb")).await.0, StatusCode::OK);

    // Another owner's catalog of the same name is their own (empty); ours is untouched.
    let other = s.key_for("other@example.com").await;
    let (status, page) = s.call(Method::GET, PATH, Some(&other), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ids(&page).is_empty());
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("{PATH}/{PINK}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(search(s, "query=pink").await.len(), 2);
    // Another business of ours is another catalog.
    let (_, page) = s.get("/catalog/shop-2/products").await;
    assert!(ids(&page).is_empty());
}

async fn ten_thousand_products_go_in_one_request(s: &TestServer) {
    let products: Vec<Value> = (0..10_000)
        .map(|i| {
            json!({"productId": format!("sku-{i:05}"), "title": format!("Cotton shirt number {i}"),
                   "description": "A plain shirt in a colour of your choice, machine washable",
                   "price": f64::from(i) / 10.0, "currency": "EUR",
                   "facets": {"color": if i % 2 == 0 { "red" } else { "white" }}})
        })
        .collect();
    let body = Value::Array(products);
    assert!(
        body.to_string().len() > 1024 * 1024,
        "beyond the usual body limit"
    );
    let (status, reply) = put(s, PATH, body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"]["upserted"], 10_000);
    // Eleven shirts cost at most 1; the six red ones match both words and come first.
    let (_, page) = s
        .get(&format!("{PATH}?query=red%20shirt&max_price=1"))
        .await;
    let found = ids(&page);
    assert_eq!(found.len(), 11, "{page}");
    let mut red: Vec<String> = found[..6].to_vec();
    red.sort();
    assert_eq!(
        red,
        (0..=10)
            .step_by(2)
            .map(|i| format!("sku-{i:05}"))
            .collect::<Vec<_>>()
    );
    let (_, page) = s.get(&format!("{PATH}?page=500&page_size=20")).await;
    assert_eq!(
        ids(&page),
        (9980..10_000)
            .map(|i| format!("sku-{i:05}"))
            .collect::<Vec<_>>()
    );
    let many: Vec<Value> = (0..10_001)
        .map(|i| json!({"productId": format!("{i}"), "title": "t"}))
        .collect();
    let (status, reply) = put(s, PATH, Value::Array(many)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(
        reply["message"].as_str().unwrap().contains("10000"),
        "{reply}"
    );
}

async fn bad_input_is_answered_with_its_field(s: &TestServer) {
    for (body, field) in [
        (json!({"productId": "a", "title": "t"}), "body"),
        (
            json!([{"productId": "a", "title": "t", "price": "79.90"}]),
            "[0].price",
        ),
        (
            json!([{"productId": "a", "title": "t"}, {"productId": "b"}]),
            "[1]",
        ),
        (
            json!([{"productId": "a", "title": "t", "colour": "red"}]),
            "[0]",
        ),
        (
            json!([{"productId": "a", "title": "t", "price": -1}]),
            "[0].price",
        ),
        (json!([{"productId": "a", "title": " "}]), "[0].title"),
        (
            json!([{"productId": "a", "title": "t", "currency": "dollars"}]),
            "[0].currency",
        ),
        (
            json!([{"productId": "a", "title": "t", "imageUrl": "javascript:alert(1)"}]),
            "[0].imageUrl",
        ),
        (
            json!([{"productId": "a", "title": "t", "facets": "pink"}]),
            "[0].facets",
        ),
        (
            json!([{"productId": "a", "title": "x".repeat(501)}]),
            "[0].title",
        ),
        (
            json!([{"productId": "a\u{0}", "title": "t"}]),
            "0.productId",
        ),
    ] {
        let (status, reply) = put(s, PATH, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert_eq!(reply["success"], false);
        let fields: Vec<&str> = reply["data"]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{body}: {reply}"
        );
    }
    let (status, reply) = s
        .call_raw(Method::PUT, PATH, "application/json", "[{not json")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let (status, _) = s.call_raw(Method::PUT, PATH, "text/csv", "a,b").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = s.call(Method::PUT, PATH, None, Some(json!([]))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, reply) = put(s, "/catalog/bad%20id/products", json!([])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["data"]["errors"][0]["field"], "business_id");
    for query in [
        "page=0",
        "page_size=1000",
        "page=x",
        "min_price=cheap",
        "min_price=-1",
        "min_price=10&max_price=5",
        "colour=red",
    ] {
        let (status, reply) = s.get(&format!("{PATH}?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {reply}");
        assert_eq!(reply["success"], false);
    }
    let (status, _) = s.get(&format!("{PATH}?query={}", "x".repeat(600))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // An empty array changes nothing and is fine.
    let (status, reply) = put(s, PATH, json!([])).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"]["upserted"], 0);
}

on_both_backends!(
    products_are_upserted_searched_and_deleted,
    ten_thousand_products_go_in_one_request,
    bad_input_is_answered_with_its_field,
);

/// Migration 0008 came after 0009 was released: a database that already has 0009 gets 0008 on
/// its next start (sqlx applies every migration it has not applied, gaps included).
#[tokio::test]
async fn the_catalog_migration_applies_after_a_later_one() {
    let dir = std::env::temp_dir().join(format!("vb-migrations-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("0008") {
            std::fs::copy(entry.path(), dir.join(&name)).unwrap();
        }
    }
    let db = std::env::temp_dir().join(format!("vb-gap-{}.db", uuid::Uuid::new_v4()));
    let url = format!("sqlite:{}", db.display());
    let store = voxbridge::store::Store::connect(&url, 1).await.unwrap();
    let without = sqlx::migrate::Migrator::new(dir.as_path()).await.unwrap();
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    without.run(&pool).await.unwrap();
    pool.close().await;
    store.migrate().await.expect("0008 applies after 0009");
    let found = store
        .search_products("nobody", "none", &Default::default())
        .await
        .expect("the catalog tables exist");
    assert!(found.products.is_empty());
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}
