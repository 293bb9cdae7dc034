//! The one timestamp format stored and served: UTC, microseconds, no offset
//! (`2024-01-15T10:00:00.000000`), as the assistant API documents. It sorts lexically, so
//! `ORDER BY created_at` is chronological on both backends.

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]");

/// Now, in the stored format.
pub fn now_timestamp() -> String {
    format_timestamp(OffsetDateTime::now_utc())
}

/// Formats any instant (converted to UTC) in the stored format.
pub fn format_timestamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .expect("the format only uses fields every OffsetDateTime has")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn matches_the_documented_shape() {
        assert_eq!(
            format_timestamp(datetime!(2024-01-15 10:00:00.5 UTC)),
            "2024-01-15T10:00:00.500000"
        );
        assert_eq!(
            format_timestamp(datetime!(2024-01-15 12:00:00 +02:00)),
            "2024-01-15T10:00:00.000000"
        );
    }
}
