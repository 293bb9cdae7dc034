//! The vocabulary of a phone call's progress as Twilio reports it: the status of a call resource
//! (REST answers and `CallStatus` in webhooks) and the events a status callback can subscribe to.

use std::fmt;

/// Where a call is in its life. `Initiated` only appears in status callbacks; a REST answer says
/// `Queued` instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallStatus {
    Queued,
    Initiated,
    Ringing,
    InProgress,
    Completed,
    Busy,
    Failed,
    NoAnswer,
    Canceled,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Initiated => "initiated",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::Failed => "failed",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Canceled => "canceled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "queued" => CallStatus::Queued,
            "initiated" => CallStatus::Initiated,
            "ringing" => CallStatus::Ringing,
            "in-progress" => CallStatus::InProgress,
            "completed" => CallStatus::Completed,
            "busy" => CallStatus::Busy,
            "failed" => CallStatus::Failed,
            "no-answer" => CallStatus::NoAnswer,
            "canceled" => CallStatus::Canceled,
            _ => return None,
        })
    }

    /// True once the call is over: nothing can change it any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CallStatus::Completed
                | CallStatus::Busy
                | CallStatus::Failed
                | CallStatus::NoAnswer
                | CallStatus::Canceled
        )
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A progress event a `StatusCallback` can subscribe to (`StatusCallbackEvent`, one form key per
/// value). The callback of `Answered` carries `CallStatus=in-progress`; the one of `Completed`
/// carries the final status (`completed`, `busy`, `no-answer`, `failed` or `canceled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCallbackEvent {
    Initiated,
    Ringing,
    Answered,
    Completed,
}

impl StatusCallbackEvent {
    /// Every event, in the order they happen.
    pub const ALL: [StatusCallbackEvent; 4] = [
        StatusCallbackEvent::Initiated,
        StatusCallbackEvent::Ringing,
        StatusCallbackEvent::Answered,
        StatusCallbackEvent::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StatusCallbackEvent::Initiated => "initiated",
            StatusCallbackEvent::Ringing => "ringing",
            StatusCallbackEvent::Answered => "answered",
            StatusCallbackEvent::Completed => "completed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for status in [
            CallStatus::Queued,
            CallStatus::Initiated,
            CallStatus::Ringing,
            CallStatus::InProgress,
            CallStatus::Completed,
            CallStatus::Busy,
            CallStatus::Failed,
            CallStatus::NoAnswer,
            CallStatus::Canceled,
        ] {
            assert_eq!(CallStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(CallStatus::parse("in_progress"), None);
        assert!(CallStatus::Busy.is_final());
        assert!(!CallStatus::InProgress.is_final());
        for event in StatusCallbackEvent::ALL {
            assert_eq!(StatusCallbackEvent::parse(event.as_str()), Some(event));
        }
        assert_eq!(StatusCallbackEvent::parse("initiated,ringing"), None);
    }
}
