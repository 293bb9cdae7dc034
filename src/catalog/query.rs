//! What a search query means: its words. The text a shopper (or the model) types becomes a
//! list of plain words, lowercased, without the little words that only join others, at most
//! [`MAX_TERMS`] of them. Both stores build their own query syntax from these words (FTS5:
//! `"pink" OR "dress"`; PostgreSQL: `pink | dress`), so nothing typed can reach either
//! syntax, and both rank the same words. A product matches when any word matches; more
//! matching words, and rarer ones, rank higher: "pink dress for a 10th birthday" still finds a
//! pink dress that says nothing of birthdays.

/// Most words one query keeps.
pub const MAX_TERMS: usize = 16;

/// Words too common to say anything about a product (English; the stores stem the rest).
const STOP_WORDS: &[&str] = &[
    "a", "about", "an", "and", "any", "are", "as", "at", "be", "but", "by", "can", "do", "does",
    "for", "from", "have", "her", "his", "how", "i", "in", "into", "is", "it", "its", "like", "me",
    "my", "need", "of", "on", "or", "our", "please", "show", "so", "some", "that", "the", "their",
    "them", "there", "these", "this", "those", "to", "want", "was", "we", "what", "which", "with",
    "would", "you", "your",
];

/// The words of `text` that a search ranks by.
pub fn terms(text: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        let word = word.to_lowercase();
        if word.chars().count() < 2 || STOP_WORDS.contains(&word.as_str()) {
            continue;
        }
        if !terms.contains(&word) {
            terms.push(word);
        }
        if terms.len() == MAX_TERMS {
            break;
        }
    }
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shoppers_sentence_becomes_its_words() {
        assert_eq!(
            terms("Yes I want a pink dress for my daughter's 10th birthday!"),
            ["yes", "pink", "dress", "daughter", "10th", "birthday"]
        );
    }

    #[test]
    fn query_syntax_never_survives() {
        assert_eq!(
            terms(r#"dress" OR title:* NEAR(x) -- ' | &"#),
            ["dress", "title", "near"]
        );
        assert!(terms("the a of").is_empty());
        assert_eq!(terms("Robe ÉTÉ rosé"), ["robe", "été", "rosé"]);
    }

    #[test]
    fn long_queries_are_cut() {
        let text: Vec<String> = (0..40).map(|i| format!("word{i}")).collect();
        assert_eq!(terms(&text.join(" ")).len(), MAX_TERMS);
    }
}
