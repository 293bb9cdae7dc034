//! Tests of the fake Twilio.
