-- Product catalogs and the sales assistant (issue 16, seed 003).
--
-- A catalog is the products of one (owner, business_id). Search is FTS5 over title,
-- description and the text of the facets, kept in step with the table by triggers (an
-- external-content index: the text is stored once, in catalog_products). The integer `id` is
-- only the index's rowid; the API names a product by its `product_id`.
CREATE TABLE catalog_products (
    id           INTEGER PRIMARY KEY,
    owner_id     TEXT NOT NULL REFERENCES users(id),
    business_id  TEXT NOT NULL,
    product_id   TEXT NOT NULL,
    title        TEXT NOT NULL,
    description  TEXT,
    url          TEXT,
    image_url    TEXT,
    price        DOUBLE PRECISION,
    currency     TEXT,
    facets       TEXT,
    metadata     TEXT,
    facets_text  TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (owner_id, business_id, product_id)
);
CREATE INDEX catalog_products_price ON catalog_products (owner_id, business_id, price);

CREATE VIRTUAL TABLE catalog_fts USING fts5(
    title, description, facets_text,
    content = 'catalog_products', content_rowid = 'id',
    tokenize = 'porter unicode61'
);
CREATE TRIGGER catalog_products_ai AFTER INSERT ON catalog_products BEGIN
    INSERT INTO catalog_fts (rowid, title, description, facets_text)
    VALUES (new.id, new.title, new.description, new.facets_text);
END;
CREATE TRIGGER catalog_products_ad AFTER DELETE ON catalog_products BEGIN
    INSERT INTO catalog_fts (catalog_fts, rowid, title, description, facets_text)
    VALUES ('delete', old.id, old.title, old.description, old.facets_text);
END;
CREATE TRIGGER catalog_products_au AFTER UPDATE ON catalog_products BEGIN
    INSERT INTO catalog_fts (catalog_fts, rowid, title, description, facets_text)
    VALUES ('delete', old.id, old.title, old.description, old.facets_text);
    INSERT INTO catalog_fts (rowid, title, description, facets_text)
    VALUES (new.id, new.title, new.description, new.facets_text);
END;

-- The sales assistant's states. A state is immutable: each answer writes a new one holding the
-- whole conversation so far, so continuing from an older state branches instead of rewriting.
-- `parent_id` is the state it continued (null for a session's first).
CREATE TABLE sales_states (
    id            TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL REFERENCES users(id),
    business_id   TEXT NOT NULL,
    session_id    TEXT NOT NULL,
    parent_id     TEXT,
    assistant_id  TEXT NOT NULL,
    history       TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX sales_states_session ON sales_states (session_id, created_at);
