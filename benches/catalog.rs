//! Catalog search at scale: one business with 100,000 products in SQLite (FTS5, the default
//! store), searched the way the sales assistant and `GET /catalog/{business_id}/products` do.
//! The catalog is loaded once, through the same bulk upsert the API uses (10 requests of
//! 10,000), and the load time is printed. Run with `cargo bench --bench catalog`; the README's
//! "Performance" section lists the figures measured on the project's machine.
//!
//! The products are made up from fixed word lists with a fixed seed, so every run searches the
//! same catalog: titles like "Pink cotton party dress", a sentence of description, colour and
//! size facets, prices from 5 to 250.

use std::sync::OnceLock;
use std::time::Instant;

use divan::{Bencher, black_box};
use serde_json::json;
use voxbridge::catalog::{Product, Search};
use voxbridge::store::Store;

const PRODUCTS: usize = 100_000;
const BUSINESS: &str = "bench-store";

const COLOURS: &[&str] = &[
    "pink", "red", "blue", "green", "yellow", "purple", "black", "white", "grey", "orange", "navy",
    "beige", "silver", "gold", "teal", "coral",
];
const MATERIALS: &[&str] = &[
    "cotton", "linen", "wool", "silk", "denim", "velvet", "leather", "fleece", "satin", "knit",
];
const KINDS: &[&str] = &[
    "dress", "shirt", "skirt", "jacket", "coat", "sweater", "trousers", "shorts", "shoes", "boots",
    "hat", "scarf", "backpack", "pyjamas", "swimsuit", "hoodie", "tights", "gloves",
];
const OCCASIONS: &[&str] = &[
    "party", "school", "summer", "winter", "birthday", "wedding", "holiday", "sport", "everyday",
    "rainy",
];
const WORDS: &[&str] = &[
    "soft",
    "comfortable",
    "easy",
    "wash",
    "machine",
    "washable",
    "durable",
    "light",
    "warm",
    "bright",
    "classic",
    "modern",
    "fit",
    "kids",
    "girls",
    "boys",
    "sizes",
    "pockets",
    "zip",
    "buttons",
    "lined",
    "breathable",
    "stretch",
    "organic",
    "recycled",
    "handmade",
    "perfect",
    "gift",
    "favourite",
    "season",
];

/// A tiny deterministic generator (the same catalog on every run).
struct Lcg(u64);

impl Lcg {
    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        list[((self.0 >> 33) as usize) % list.len()]
    }
}

fn product(i: usize, rng: &mut Lcg) -> Product {
    let (colour, material, kind, occasion) = (
        rng.pick(COLOURS),
        rng.pick(MATERIALS),
        rng.pick(KINDS),
        rng.pick(OCCASIONS),
    );
    let words: Vec<&str> = (0..12).map(|_| rng.pick(WORDS)).collect();
    Product {
        product_id: format!("sku-{i:06}"),
        title: format!("{colour} {material} {occasion} {kind}"),
        description: Some(format!(
            "A {occasion} {kind} in {colour} {material}: {}.",
            words.join(" ")
        )),
        url: Some(format!("https://shop.example.com/p/{i}")),
        image_url: Some(format!("https://shop.example.com/i/{i}.jpg")),
        price: Some(5.0 + (i % 2450) as f64 / 10.0),
        currency: Some("USD".to_owned()),
        facets: Some(json!({"color": colour, "size": format!("{}yrs", 2 + i % 12)})),
        metadata: None,
    }
}

/// The runtime, the loaded store and the catalog's owner, made once for every benchmark.
fn fixture() -> &'static (tokio::runtime::Runtime, Store, String) {
    static FIXTURE: OnceLock<(tokio::runtime::Runtime, Store, String)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let path = std::env::temp_dir().join(format!("vb-catalog-bench-{}.db", std::process::id()));
        let (store, owner) = runtime.block_on(async {
            let store = Store::connect(&format!("sqlite:{}", path.display()), 4)
                .await
                .expect("sqlite opens");
            store.migrate().await.expect("migrated");
            let key = store
                .create_api_key("bench@example.com")
                .await
                .expect("an owner");
            let owner = store
                .owner_by_key(&key.plaintext)
                .await
                .expect("looked up")
                .expect("the key's owner")
                .id;
            let mut rng = Lcg(42);
            let products: Vec<Product> = (0..PRODUCTS).map(|i| product(i, &mut rng)).collect();
            let started = Instant::now();
            for chunk in products.chunks(10_000) {
                store
                    .upsert_products(&owner, BUSINESS, chunk)
                    .await
                    .expect("upserted");
            }
            eprintln!(
                "loaded {PRODUCTS} products in {:.1} s (10 bulk upserts of 10,000)",
                started.elapsed().as_secs_f64()
            );
            (store, owner)
        });
        (runtime, store, owner)
    })
}

fn search(bencher: Bencher, query: Option<&str>, max_price: Option<f64>) {
    let (runtime, store, owner) = fixture();
    let search = Search {
        query: query.map(str::to_owned),
        min_price: None,
        max_price,
        page: 1,
        page_size: 20,
    };
    let found = runtime
        .block_on(store.search_products(owner, BUSINESS, &search))
        .expect("searched");
    assert!(!found.products.is_empty(), "{query:?} finds something");
    bencher.bench(|| {
        runtime
            .block_on(store.search_products(owner, BUSINESS, black_box(&search)))
            .expect("searched")
    });
}

fn main() {
    divan::main();
}

/// Two common words (each in about one product of 16 and 18): thousands of matches ranked.
#[divan::bench(sample_count = 30)]
fn pink_dress(bencher: Bencher) {
    search(bencher, Some("pink dress"), None);
}

/// A shopper's sentence, as the sales assistant's search gets it.
#[divan::bench(sample_count = 30)]
fn shoppers_sentence(bencher: Bencher) {
    search(
        bencher,
        Some("I want a pink party dress for my daughter's birthday"),
        None,
    );
}

/// Common words under a price limit.
#[divan::bench(sample_count = 30)]
fn pink_dress_under_50(bencher: Bencher) {
    search(bencher, Some("pink dress"), Some(50.0));
}

/// A rare combination (a few hundred matches).
#[divan::bench(sample_count = 30)]
fn velvet_wedding_gloves(bencher: Bencher) {
    search(bencher, Some("teal velvet wedding gloves"), None);
}

/// No query: the first page by id.
#[divan::bench(sample_count = 30)]
fn first_page(bencher: Bencher) {
    search(bencher, None, None);
}
