-- Product catalogs and the sales assistant (issue 16, seed 003).
--
-- A catalog is the products of one (owner, business_id). Search is PostgreSQL full-text search
-- over a generated, weighted tsvector: the title counts most (A), then the text of the facets
-- (B), then the description (C); a GIN index answers the match.
CREATE TABLE catalog_products (
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
    search       tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', title), 'A') ||
        setweight(to_tsvector('english', facets_text), 'B') ||
        setweight(to_tsvector('english', coalesce(description, '')), 'C')
    ) STORED,
    PRIMARY KEY (owner_id, business_id, product_id)
);
CREATE INDEX catalog_products_search ON catalog_products USING GIN (search);
CREATE INDEX catalog_products_price ON catalog_products (owner_id, business_id, price);

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
