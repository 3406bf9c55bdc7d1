//! How `midge sub` prints a message: plain payload, `-v` topic and payload, mosquitto's `-F`
//! format specifiers, or one JSON object per line (`--json`).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use midge_codec::Publish;

/// How messages are printed: the output flags shared by `midge sub` and `midge rr`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Output {
    /// Print the topic before the payload.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Output format (mosquitto_sub's %t %p %q %r %l %m %x %j %I %U ...).
    #[arg(short = 'F')]
    pub format: Option<String>,
    /// One JSON object per message.
    #[arg(long = "json")]
    pub json: bool,
    /// Do not print a newline after each message.
    #[arg(short = 'N')]
    pub no_newline: bool,
}

impl Output {
    /// The text to print for one message, newline included unless `-N`.
    pub fn render(&self, p: &Publish) -> String {
        let mut s = if self.json {
            json(p)
        } else if let Some(f) = &self.format {
            format_spec(f, p)
        } else if self.verbose {
            format!("{} {}", topic(p), String::from_utf8_lossy(&p.payload))
        } else {
            String::from_utf8_lossy(&p.payload).into_owned()
        };
        if !self.no_newline {
            s.push('\n');
        }
        s
    }
}

fn topic(p: &Publish) -> &str {
    p.topic.as_ref().map_or("", |t| t.as_str())
}

/// One JSON object: topic, qos, retain, payload (UTF-8 text, or hex in `payload_hex`), and
/// the MQTT 5 properties that are present.
pub fn json(p: &Publish) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("topic".into(), topic(p).into());
    obj.insert("qos".into(), p.qos.qos().as_u8().into());
    obj.insert("retain".into(), p.retain.into());
    match std::str::from_utf8(&p.payload) {
        Ok(text) => obj.insert("payload".into(), text.into()),
        Err(_) => obj.insert("payload_hex".into(), hex(&p.payload).into()),
    };
    let pr = &p.properties;
    let mut props = serde_json::Map::new();
    if let Some(v) = pr.payload_format_indicator {
        props.insert("payload_format_indicator".into(), u8::from(v).into());
    }
    if let Some(v) = pr.message_expiry_interval {
        props.insert("message_expiry_interval".into(), v.into());
    }
    if let Some(v) = &pr.content_type {
        props.insert("content_type".into(), v.as_str().into());
    }
    if let Some(v) = &pr.response_topic {
        props.insert("response_topic".into(), v.as_str().into());
    }
    if let Some(v) = &pr.correlation_data {
        props.insert("correlation_data".into(), String::from_utf8_lossy(v).into());
    }
    if !pr.subscription_identifiers.is_empty() {
        let ids: Vec<serde_json::Value> = pr
            .subscription_identifiers
            .iter()
            .map(|s| s.get().into())
            .collect();
        props.insert("subscription_identifiers".into(), ids.into());
    }
    if !pr.user_properties.is_empty() {
        let ups: Vec<serde_json::Value> = pr
            .user_properties
            .iter()
            .map(|(k, v)| serde_json::json!([k.as_str(), v.as_str()]))
            .collect();
        props.insert("user_properties".into(), ups.into());
    }
    if !props.is_empty() {
        obj.insert("properties".into(), props.into());
    }
    serde_json::Value::Object(obj).to_string()
}

/// mosquitto_sub's `%j` object: tst, topic, qos, retain (0/1), payloadlen, payload.
fn mosquitto_json(p: &Publish) -> String {
    serde_json::json!({
        "tst": iso8601_now(),
        "topic": topic(p),
        "qos": p.qos.qos().as_u8(),
        "retain": u8::from(p.retain),
        "payloadlen": p.payload.len(),
        "payload": String::from_utf8_lossy(&p.payload),
    })
    .to_string()
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// mosquitto_sub `-F`: %t topic, %p payload, %q QoS, %r retain, %l payload length, %m
/// message id, %x payload hex, %j JSON, %U Unix time, %I ISO 8601 time, %C content type,
/// %D correlation data, %E message expiry, %F payload format, %R response topic, %S
/// subscription identifiers, %P user properties, %% a percent sign; \n \t \\ escapes.
pub fn format_spec(f: &str, p: &Publish) -> String {
    let mut out = String::new();
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('t') => out.push_str(topic(p)),
                Some('p') => out.push_str(&String::from_utf8_lossy(&p.payload)),
                Some('q') => out.push_str(&p.qos.qos().as_u8().to_string()),
                Some('r') => out.push(if p.retain { '1' } else { '0' }),
                Some('l') => out.push_str(&p.payload.len().to_string()),
                Some('m') => out.push_str(&p.qos.packet_id().map_or(0, |id| id.get()).to_string()),
                Some('x') => out.push_str(&hex(&p.payload)),
                Some('j') => out.push_str(&mosquitto_json(p)),
                Some('U') => {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default();
                    let _ = write!(out, "{}.{:09}", now.as_secs(), now.subsec_nanos());
                }
                Some('I') => out.push_str(&iso8601_now()),
                Some('C') => out.push_str(p.properties.content_type.as_deref().unwrap_or("")),
                Some('D') => out.push_str(
                    &p.properties
                        .correlation_data
                        .as_ref()
                        .map(|d| String::from_utf8_lossy(d).into_owned())
                        .unwrap_or_default(),
                ),
                Some('E') => {
                    if let Some(e) = p.properties.message_expiry_interval {
                        out.push_str(&e.to_string());
                    }
                }
                Some('F') => {
                    if let Some(v) = p.properties.payload_format_indicator {
                        out.push(if v { '1' } else { '0' });
                    }
                }
                Some('R') => out.push_str(
                    p.properties
                        .response_topic
                        .as_ref()
                        .map_or("", |t| t.as_str()),
                ),
                Some('S') => {
                    let ids: Vec<String> = p
                        .properties
                        .subscription_identifiers
                        .iter()
                        .map(|s| s.get().to_string())
                        .collect();
                    out.push_str(&ids.join(","));
                }
                Some('P') => {
                    let ups: Vec<String> = p
                        .properties
                        .user_properties
                        .iter()
                        .map(|(k, v)| format!("{k}:{v}"))
                        .collect();
                    out.push_str(&ups.join(" "));
                }
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            },
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some('0') => out.push('\0'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn iso8601_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    // Days since the epoch to a civil date (Howard Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{:06}Z",
        now.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use midge_codec::{PacketId, PublishProperties, QosPid};

    fn msg() -> Publish {
        Publish {
            dup: false,
            qos: QosPid::AtLeastOnce(PacketId::new(7).expect("non-zero")),
            retain: true,
            topic: Some("a/b".parse().expect("valid")),
            properties: PublishProperties::default(),
            payload: Bytes::from_static(b"hi"),
        }
    }

    #[test]
    fn format_specifiers() {
        assert_eq!(
            format_spec("%t %p %q %r %l %m %x %%\\n", &msg()),
            "a/b hi 1 1 2 7 6869 %\n"
        );
    }

    #[test]
    fn json_is_one_object() {
        let j: serde_json::Value = serde_json::from_str(&json(&msg())).expect("valid JSON");
        assert_eq!(j["topic"], "a/b");
        assert_eq!(j["payload"], "hi");
        assert_eq!(j["qos"], 1);
    }

    #[test]
    fn iso_time_shape() {
        let t = iso8601_now();
        assert_eq!(t.len(), 27, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
