-- What a telephony provider needs beyond an account and a secret (Telnyx's public key that
-- verifies its webhooks, Vonage's application id and signature secret, …), as a JSON object
-- whose keys the trunk's provider defines and checks.
ALTER TABLE trunks ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
