//! `-D COMMAND NAME VALUE [VALUE]`: MQTT 5 properties in mosquitto's syntax.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;
use midge_codec::{
    ConnectProperties, MqttString, ProtocolVersion, PublishProperties, SubscribeProperties,
    SubscriptionId, WillProperties,
};

use super::ToolError;

/// Properties given with `-D`, by packet.
#[derive(Debug, Clone, Default)]
pub struct Props {
    /// For CONNECT.
    pub connect: ConnectProperties,
    /// For PUBLISH.
    pub publish: PublishProperties,
    /// For SUBSCRIBE.
    pub subscribe: SubscribeProperties,
    /// For the will.
    pub will: WillProperties,
}

impl Props {
    /// True if no CONNECT property was given.
    pub fn connect_is_empty(&self) -> bool {
        self.connect == ConnectProperties::default()
    }
}

fn s(v: &str) -> Result<MqttString, ToolError> {
    MqttString::try_from(v).map_err(|e| ToolError::usage(format!("-D value `{v}`: {e}")))
}

fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ToolError> {
    v.parse()
        .map_err(|_| ToolError::usage(format!("-D {name} {v}: not a valid number")))
}

fn flag(name: &str, v: &str) -> Result<bool, ToolError> {
    match v {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(ToolError::usage(format!("-D {name} {v}: use 0 or 1"))),
    }
}

/// Parses the flat list clap collected (3 or 4 values per `-D`).
pub fn parse(values: &[String], protocol: ProtocolVersion) -> Result<Props, ToolError> {
    let mut props = Props::default();
    let mut i = 0;
    while i < values.len() {
        let command = values[i].as_str();
        let name = values.get(i + 1).map(String::as_str).unwrap_or_default();
        let value = values.get(i + 2).map(String::as_str).unwrap_or_default();
        let pair = name == "user-property";
        let extra = if pair {
            values.get(i + 3).map(String::as_str)
        } else {
            None
        };
        i += if pair { 4 } else { 3 };
        if !protocol.is_v5() {
            return Err(ToolError::usage("-D properties need MQTT 5 (-V 5)"));
        }
        let unknown = || {
            ToolError::usage(format!(
                "-D {command} {name}: unknown property for {command}"
            ))
        };
        if pair {
            let v =
                extra.ok_or_else(|| ToolError::usage("-D ... user-property needs NAME VALUE"))?;
            let up = (s(value)?, s(v)?);
            match command {
                "connect" => props.connect.user_properties.push(up),
                "publish" => props.publish.user_properties.push(up),
                "subscribe" => props.subscribe.user_properties.push(up),
                "will" => props.will.user_properties.push(up),
                _ => return Err(unknown()),
            }
            continue;
        }
        match (command, name) {
            ("connect", "session-expiry-interval") => {
                props.connect.session_expiry_interval = Some(num(name, value)?)
            }
            ("connect", "receive-maximum") => {
                props.connect.receive_maximum = Some(
                    NonZeroU16::new(num(name, value)?)
                        .ok_or_else(|| ToolError::usage("receive-maximum must not be 0"))?,
                )
            }
            ("connect", "maximum-packet-size") => {
                props.connect.maximum_packet_size = Some(
                    NonZeroU32::new(num(name, value)?)
                        .ok_or_else(|| ToolError::usage("maximum-packet-size must not be 0"))?,
                )
            }
            ("connect", "topic-alias-maximum") => {
                props.connect.topic_alias_maximum = Some(num(name, value)?)
            }
            ("connect", "request-response-information") => {
                props.connect.request_response_information = Some(flag(name, value)?)
            }
            ("connect", "request-problem-information") => {
                props.connect.request_problem_information = Some(flag(name, value)?)
            }
            ("publish", "message-expiry-interval") => {
                props.publish.message_expiry_interval = Some(num(name, value)?)
            }
            ("publish", "content-type") => props.publish.content_type = Some(s(value)?),
            ("publish", "response-topic") => {
                props.publish.response_topic = Some(
                    value
                        .parse()
                        .map_err(|e| ToolError::usage(format!("response-topic {value}: {e}")))?,
                )
            }
            ("publish", "correlation-data") => {
                props.publish.correlation_data = Some(Bytes::from(value.to_owned()))
            }
            ("publish", "payload-format-indicator") => {
                props.publish.payload_format_indicator = Some(flag(name, value)?)
            }
            ("subscribe", "subscription-identifier") => {
                props.subscribe.subscription_identifier =
                    Some(SubscriptionId::new(num(name, value)?).ok_or_else(|| {
                        ToolError::usage("subscription-identifier must be 1 to 268435455")
                    })?)
            }
            ("will", "will-delay-interval") => {
                props.will.will_delay_interval = Some(num(name, value)?)
            }
            ("will", "message-expiry-interval") => {
                props.will.message_expiry_interval = Some(num(name, value)?)
            }
            ("will", "content-type") => props.will.content_type = Some(s(value)?),
            ("will", "payload-format-indicator") => {
                props.will.payload_format_indicator = Some(flag(name, value)?)
            }
            _ => return Err(unknown()),
        }
    }
    Ok(props)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_mixed_properties() {
        let p = parse(
            &v(&[
                "publish",
                "user-property",
                "k",
                "v",
                "connect",
                "session-expiry-interval",
                "60",
                "publish",
                "content-type",
                "text/plain",
            ]),
            ProtocolVersion::V5,
        )
        .expect("valid");
        assert_eq!(p.publish.user_properties.len(), 1);
        assert_eq!(p.connect.session_expiry_interval, Some(60));
        assert_eq!(p.publish.content_type.as_deref(), Some("text/plain"));
    }

    #[test]
    fn refuses_unknown_and_v3() {
        assert!(parse(&v(&["publish", "nope", "1"]), ProtocolVersion::V5).is_err());
        assert!(parse(&v(&["publish", "content-type", "x"]), ProtocolVersion::V311).is_err());
    }
}
