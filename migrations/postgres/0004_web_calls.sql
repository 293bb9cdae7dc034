-- Browser (web) calls: the socket URL carries only the one-time session token, so the call is
-- found by the token's hash. Directions are 'inbound', 'outbound' and 'web' (checked in code;
-- the column has no CHECK constraint to extend).
CREATE INDEX calls_stream_token_hash ON calls (stream_token_hash);
