//! The demo store of `serve --sim`: a small catalog (`fixtures/sales/catalog.json`, the seed's
//! two pink dresses among others) and a shop assistant linked to it, so the seed's example runs
//! against the sales assistant route, and a web call on the demo page can show products, on
//! the very first start with no accounts.

use super::Product;
use crate::assistant::{Assistant, CallSettings, CartesiaVoice, TtsConfig};
use crate::store::{Store, StoreError, now_timestamp};
use crate::widget::demo::DEMO_VOICE_ID;

/// The demo store's business id.
pub const DEMO_BUSINESS_ID: &str = "demo-store";

/// The demo catalog (compiled in; a unit test parses and checks it).
pub fn demo_products() -> Vec<Product> {
    serde_json::from_str(include_str!("../../fixtures/sales/catalog.json"))
        .expect("the demo catalog is valid")
}

/// The demo shop assistant of `owner_id`, linked to the demo catalog.
pub fn demo_shop_assistant(owner_id: &str) -> Assistant {
    let now = now_timestamp();
    Assistant {
        id: uuid::Uuid::new_v4().to_string(),
        owner_id: owner_id.to_owned(),
        name: "Demo shop assistant".to_owned(),
        description: "Created by `voxbridge serve --sim`: sells from the demo-store catalog"
            .to_owned(),
        prompt: "You are the shop assistant of a children's clothing store. Shipping is free on \
                 all orders over $50. Help shoppers find products and keep answers short."
            .to_owned(),
        tts: TtsConfig::Cartesia(CartesiaVoice {
            voice_id: DEMO_VOICE_ID.to_owned(),
            ..CartesiaVoice::default()
        }),
        start_instruction: Some("Welcome to my store! How can I help?".to_owned()),
        end_call_url: None,
        settings: CallSettings {
            catalog_business_id: Some(DEMO_BUSINESS_ID.to_owned()),
            ..Default::default()
        },
        tool_ids: Vec::new(),
        created_at: now.clone(),
        updated_at: now,
    }
}

/// Stocks the demo catalog and stores the shop assistant for `owner_id`; answers its id.
pub async fn create_demo_store(store: &Store, owner_id: &str) -> Result<String, StoreError> {
    store
        .upsert_products(owner_id, DEMO_BUSINESS_ID, &demo_products())
        .await?;
    let assistant = demo_shop_assistant(owner_id);
    store.insert_assistant(&assistant).await?;
    Ok(assistant.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::Violations;

    #[test]
    fn the_demo_catalog_is_valid_and_holds_the_seeds_dresses() {
        let products = demo_products();
        let mut v = Violations::new();
        for (i, p) in products.iter().enumerate() {
            p.validate(&format!("[{i}]"), &mut v);
        }
        assert!(v.is_empty(), "{:?}", v.into_result());
        assert!(products.iter().any(|p| p.title == "Pink dress size 10yrs"));
        assert!(super::super::is_business_id(DEMO_BUSINESS_ID));
    }
}
