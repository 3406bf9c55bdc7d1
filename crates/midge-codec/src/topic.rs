//! Topic names, topic filters and the matching rule between them (MQTT 5.0 section 4.7,
//! shared subscriptions section 4.8.2).
//!
//! Invariants: a `TopicName` is a non-empty MQTT string without `+` or `#`; a `TopicFilter`
//! is a non-empty MQTT string whose wildcards stand alone in their level (`#` only last), and
//! whose `$share/{group}/{filter}` form, if used, has a valid group and a valid filter.

use std::fmt;

use bytestring::ByteString;

use crate::types::{check_mqtt_str, MqttString, StringError};

/// Why a string is not a valid topic name or topic filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Empty topic names and filters are not allowed.
    #[error("[MQTT-4.7.3-1] topic names and topic filters must be at least one character long")]
    Empty,
    /// The string itself is not a valid MQTT string.
    #[error(transparent)]
    String(#[from] StringError),
    /// A topic name (used in PUBLISH) contains `+` or `#`.
    #[error("[MQTT-3.3.2-2] topic name must not contain wildcard characters")]
    WildcardInName,
    /// `#` is not alone in the last level.
    #[error("[MQTT-4.7.1-1] multi-level wildcard '#' must be the last character and occupy a whole level")]
    MultiLevelWildcard,
    /// `+` shares its level with other characters.
    #[error("[MQTT-4.7.1-2] single-level wildcard '+' must occupy an entire level")]
    SingleLevelWildcard,
    /// `$share/` with an empty or invalid share name, or without a filter after it.
    #[error("[MQTT-4.8.2-1] [MQTT-4.8.2-2] a shared subscription must be $share/{{ShareName}}/{{filter}} with a non-empty ShareName without '/', '+' or '#'")]
    InvalidShare,
}

/// A topic name: where a message is published.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(MqttString);

impl TopicName {
    /// The topic.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The topic as a shared MQTT string.
    pub fn as_mqtt_str(&self) -> &MqttString {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a topic name is never empty. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Builds from a checked MQTT string.
    pub fn from_mqtt_str(s: MqttString) -> Result<Self, TopicError> {
        validate_name(&s)?;
        Ok(TopicName(s))
    }
}

fn validate_name(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

impl TryFrom<&str> for TopicName {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        validate_name(s)?;
        Ok(TopicName(MqttString::try_from(s)?))
    }
}

impl TryFrom<String> for TopicName {
    type Error = TopicError;
    fn try_from(s: String) -> Result<Self, TopicError> {
        validate_name(&s)?;
        Ok(TopicName(MqttString::try_from(s)?))
    }
}

impl TryFrom<ByteString> for TopicName {
    type Error = TopicError;
    fn try_from(s: ByteString) -> Result<Self, TopicError> {
        validate_name(&s)?;
        Ok(TopicName(MqttString::try_from(s)?))
    }
}

impl std::str::FromStr for TopicName {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, TopicError> {
        TopicName::try_from(s)
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const SHARE_PREFIX: &str = "$share/";

/// A topic filter, possibly a shared subscription `$share/{group}/{filter}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter {
    full: MqttString,
    /// Byte offset of the matching filter within `full`: 0 for an ordinary filter, after
    /// `$share/{group}/` for a shared one.
    filter_start: u16,
}

impl TopicFilter {
    /// The whole filter as written by the client, `$share/...` prefix included.
    pub fn as_str(&self) -> &str {
        self.full.as_str()
    }

    /// The whole filter as a shared MQTT string.
    pub fn as_mqtt_str(&self) -> &MqttString {
        &self.full
    }

    /// The share name of a `$share/{group}/{filter}` subscription.
    pub fn share_group(&self) -> Option<&str> {
        if self.filter_start == 0 {
            None
        } else {
            let end = usize::from(self.filter_start) - 1;
            Some(&self.full[SHARE_PREFIX.len()..end])
        }
    }

    /// True for a `$share/...` filter.
    pub fn is_shared(&self) -> bool {
        self.filter_start != 0
    }

    /// The part that is matched against topic names (without any `$share/{group}/`).
    pub fn filter(&self) -> &str {
        &self.full[usize::from(self.filter_start)..]
    }

    /// True if the matching part contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.filter().bytes().any(|b| b == b'+' || b == b'#')
    }

    /// True if `topic` is matched by this filter.
    pub fn matches(&self, topic: &TopicName) -> bool {
        matches(self.filter(), topic.as_str())
    }

    /// Builds from a checked MQTT string.
    pub fn from_mqtt_str(s: MqttString) -> Result<Self, TopicError> {
        let filter_start = validate_filter(&s)?;
        Ok(TopicFilter {
            full: s,
            filter_start,
        })
    }
}

/// Returns the byte offset at which the matching part starts.
fn validate_filter(s: &str) -> Result<u16, TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    let mut start = 0;
    if let Some(rest) = s.strip_prefix(SHARE_PREFIX) {
        let slash = rest.find('/').ok_or(TopicError::InvalidShare)?;
        let group = &rest[..slash];
        if group.is_empty() || group.contains(['+', '#']) {
            return Err(TopicError::InvalidShare);
        }
        start = SHARE_PREFIX.len() + slash + 1;
        if start == s.len() {
            return Err(TopicError::InvalidShare);
        }
    } else if s == "$share" {
        return Err(TopicError::InvalidShare);
    }
    let filter = &s[start..];
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::SingleLevelWildcard);
        }
    }
    // A string of at most 65535 bytes (checked by the caller) has offsets that fit in u16.
    u16::try_from(start).map_err(|_| TopicError::String(StringError::TooLong(s.len())))
}

/// True if topic name `topic` matches the filter pattern `filter` (without `$share/`).
///
/// `+` matches exactly one level, `#` matches the parent level and any number of child
/// levels, and a filter starting with a wildcard does not match a topic starting with `$`
/// ([MQTT-4.7.2-1]). Both inputs are assumed valid.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        check_mqtt_str(s)?;
        let filter_start = validate_filter(s)?;
        Ok(TopicFilter {
            full: MqttString::try_from(s)?,
            filter_start,
        })
    }
}

impl TryFrom<String> for TopicFilter {
    type Error = TopicError;
    fn try_from(s: String) -> Result<Self, TopicError> {
        TopicFilter::from_mqtt_str(MqttString::try_from(s)?)
    }
}

impl std::str::FromStr for TopicFilter {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, TopicError> {
        TopicFilter::try_from(s)
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (filter, topic, expected match)
    const MATCH_TABLE: &[(&str, &str, bool)] = &[
        // exact
        ("a", "a", true),
        ("a", "b", false),
        ("a/b", "a/b", true),
        ("a/b", "a/c", false),
        ("a/b", "a", false),
        ("a", "a/b", false),
        ("a/b/c", "a/b/c", true),
        ("A", "a", false),
        ("a ", "a", false),
        ("/", "/", true),
        ("/a", "/a", true),
        ("/a", "a", false),
        ("a/", "a/", true),
        ("a/", "a", false),
        ("a//b", "a//b", true),
        ("a//b", "a/b", false),
        // single level
        ("+", "a", true),
        ("+", "a/b", false),
        ("+", "/a", false),
        ("+/+", "/a", true),
        ("+", "/", false),
        ("+/+", "/", true),
        ("a/+", "a/b", true),
        ("a/+", "a/", true),
        ("a/+", "a", false),
        ("a/+", "a/b/c", false),
        ("a/+/c", "a/b/c", true),
        ("a/+/c", "a//c", true),
        ("a/+/c", "a/b/d", false),
        ("+/b", "a/b", true),
        ("+/+/+", "a/b/c", true),
        ("+/+/+", "a/b", false),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        // multi level
        ("#", "a", true),
        ("#", "a/b/c", true),
        ("#", "/", true),
        ("#", "/a", true),
        ("a/#", "a", true),
        ("a/#", "a/b", true),
        ("a/#", "a/b/c", true),
        ("a/#", "a/", true),
        ("a/#", "b", false),
        ("a/#", "ab", false),
        ("a/b/#", "a", false),
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/#", "sport", true),
        ("+/#", "a", true),
        ("+/#", "a/b/c", true),
        ("a/+/#", "a/b", true),
        ("a/+/#", "a", false),
        // topics starting with $ ([MQTT-4.7.2-1])
        ("#", "$SYS", false),
        ("#", "$SYS/broker/uptime", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("$SYS/#", "$SYS/broker/uptime", true),
        ("$SYS/#", "$SYS", true),
        ("+", "$SYS", false),
        ("$SYS/+", "$SYS/a", true),
        ("a/$b", "a/$b", true),
        ("a/+", "a/$b", true),
        ("a/#", "a/$b", true),
        // unicode
        ("ü/+", "ü/ß", true),
        ("日本/#", "日本/東京/渋谷", true),
        ("日本/+", "日本", false),
    ];

    #[test]
    fn match_table() {
        assert!(MATCH_TABLE.len() >= 60);
        for &(filter, topic, expected) in MATCH_TABLE {
            let f = TopicFilter::try_from(filter).expect("table filters are valid");
            let t = TopicName::try_from(topic).expect("table topics are valid");
            assert_eq!(f.matches(&t), expected, "filter {filter:?} topic {topic:?}");
        }
    }

    #[test]
    fn shared_filters_match_on_their_filter_part() {
        let f = TopicFilter::try_from("$share/g1/a/+").expect("valid");
        assert_eq!(f.share_group(), Some("g1"));
        assert_eq!(f.filter(), "a/+");
        assert!(f.is_shared());
        assert!(f.matches(&TopicName::try_from("a/b").expect("valid")));
        assert!(!f.matches(&TopicName::try_from("$share/g1/a/b").expect("valid")));
        let f = TopicFilter::try_from("$share/g/#").expect("valid");
        assert_eq!(f.filter(), "#");
        assert!(!f.matches(&TopicName::try_from("$SYS/x").expect("valid")));
    }

    #[test]
    fn filter_validation_table() {
        use TopicError::*;
        let cases: &[(&str, Result<(), TopicError>)] = &[
            ("a", Ok(())),
            ("#", Ok(())),
            ("+", Ok(())),
            ("a/#", Ok(())),
            ("+/+/#", Ok(())),
            ("/", Ok(())),
            ("$SYS/#", Ok(())),
            ("$share/g/a", Ok(())),
            ("$share/g/#", Ok(())),
            ("$share/g//", Ok(())),
            ("$sharex/a", Ok(())),
            ("$shared/g/a", Ok(())),
            ("", Err(Empty)),
            ("a#", Err(MultiLevelWildcard)),
            ("#/a", Err(MultiLevelWildcard)),
            ("a/#/b", Err(MultiLevelWildcard)),
            ("a/b#", Err(MultiLevelWildcard)),
            ("##", Err(MultiLevelWildcard)),
            ("a+", Err(SingleLevelWildcard)),
            ("a/+b", Err(SingleLevelWildcard)),
            ("++", Err(SingleLevelWildcard)),
            ("a/b+/c", Err(SingleLevelWildcard)),
            ("$share", Err(InvalidShare)),
            ("$share/", Err(InvalidShare)),
            ("$share/g", Err(InvalidShare)),
            ("$share/g/", Err(InvalidShare)),
            ("$share//a", Err(InvalidShare)),
            ("$share/g+/a", Err(InvalidShare)),
            ("$share/#/a", Err(InvalidShare)),
            ("$share/g/a#", Err(MultiLevelWildcard)),
            ("a\0b", Err(String(StringError::NullCharacter))),
        ];
        for (s, expected) in cases {
            let got = TopicFilter::try_from(*s).map(|_| ());
            assert_eq!(&got, expected, "filter {s:?}");
        }
    }

    #[test]
    fn name_validation_table() {
        use TopicError::*;
        let cases: &[(&str, Result<(), TopicError>)] = &[
            ("a", Ok(())),
            ("/", Ok(())),
            ("$SYS/x", Ok(())),
            (" ", Ok(())),
            ("", Err(Empty)),
            ("a/+", Err(WildcardInName)),
            ("#", Err(WildcardInName)),
            ("a/b#", Err(WildcardInName)),
            ("a\0", Err(String(StringError::NullCharacter))),
        ];
        for (s, expected) in cases {
            assert_eq!(&TopicName::try_from(*s).map(|_| ()), expected, "name {s:?}");
        }
    }
}
