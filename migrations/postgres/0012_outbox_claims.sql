-- Outbox claims, so several server processes can share one database: a worker marks the due
-- deliveries it is about to send as its own until `lease_until` (a stored timestamp), and
-- other workers skip them until then. A worker that dies mid-delivery leaves its claim to
-- expire, and the delivery to whichever worker comes next.
ALTER TABLE webhook_deliveries ADD COLUMN lease_until TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN claimed_by TEXT;
