//! mosquitto's `acl_file`, read and evaluated the way mosquitto 2.x does.
//!
//! ```text
//! # Lines before the first `user` line apply to clients without a user name.
//! topic read $SYS/#
//!
//! user roger                       # starts roger's section (the rest of the line, trimmed)
//! topic foo/bar                    # access defaults to readwrite
//! topic deny foo/bar/secret        # read | write | readwrite | deny
//!
//! # Patterns apply to every client, wherever they appear; a level that is exactly %c or %u
//! # becomes the client id or the user name.
//! pattern write $SYS/broker/connection/%c/state
//! ```
//!
//! Evaluation, for one client and one topic (mosquitto's `acl_check`):
//! 1. The client's own section: the `user` section of its user name, or the anonymous section
//!    if it has none. A matching `deny` line denies; else a matching line granting the access
//!    allows.
//! 2. Otherwise the `pattern` lines, the same way. Before them, a client whose user name or
//!    client id contains `+` or `#` is denied outright (CVE-2017-7650), and a `%u` pattern
//!    never matches a client without a user name. A substituted value must equal one whole
//!    level, so a value containing `/` matches nothing.
//! 3. Otherwise: denied. Nothing is allowed unless a line grants it.
//!
//! Publish needs `write`; Receive needs `read`; Subscribe needs `read` on a line whose filter
//! covers the whole subscription filter (mosquitto's `sub_matches_acl`: `foo/#` covers
//! `foo/+/bar` and `foo/#` but not `#`), and is denied by a `deny` line that covers it. A
//! subscription that is allowed but overlaps a `deny` line still receives nothing there,
//! because every delivery is checked again as Receive. Topics starting with `$` match only
//! lines starting with `$` (so `#` does not grant `$SYS/...`).
//!
//! Differences from mosquitto, all towards clearer errors: any line that is not blank, a
//! comment, `user`, `topic` or `pattern` is an error naming file, line and fix (mosquitto
//! 2.0 agrees); indented comments and tab separators are accepted; lines whose meaning is
//! probably not what was meant are reported as [`AclWarning`]s.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use midge_broker::auth::{Action, Authorizer, ClientIdentity, Decision};

const READ: u8 = 1;
const WRITE: u8 = 2;
/// `deny` lines grant nothing; they are kept in their own list.
const NONE: u8 = 0;

const MEMORY_FILE_NAME: &str = "<acl file>";

/// Why an ACL file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// The file could not be read.
    #[error("cannot read ACL file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A line is not valid.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The file name (or `<acl file>` for text parsed from memory).
        file: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// A line that is valid but probably does not do what its author meant. Log these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclWarning {
    /// The file name.
    pub file: String,
    /// The line number, from 1.
    pub line: usize,
    /// What is suspicious.
    pub message: String,
}

impl fmt::Display for AclWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// One level of an ACL topic filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    /// `+`
    Single,
    /// `#`
    Multi,
    /// `%c` in a pattern line.
    ClientId,
    /// `%u` in a pattern line.
    Username,
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone)]
struct Rule {
    levels: Vec<Level>,
    /// The first level is a literal starting with `$`.
    dollar: bool,
    /// `READ`, `WRITE`, both, or `NONE` for deny.
    access: u8,
    line: usize,
}

impl Rule {
    fn new(topic: &str, pattern: bool, access: u8, line: usize) -> Self {
        let levels: Vec<Level> = topic
            .split('/')
            .map(|level| match level {
                "+" => Level::Single,
                "#" => Level::Multi,
                "%c" if pattern => Level::ClientId,
                "%u" if pattern => Level::Username,
                other => Level::Literal(other.to_owned()),
            })
            .collect();
        let dollar = matches!(levels.first(), Some(Level::Literal(s)) if s.starts_with('$'));
        Rule {
            levels,
            dollar,
            access,
            line,
        }
    }

    /// True if this rule applies: for Subscribe, its filter covers the subscription filter;
    /// otherwise it matches the topic name.
    fn applies(&self, topic: &str, subscribe: bool, who: &ClientIdentity<'_>) -> bool {
        if topic.starts_with('$') != self.dollar {
            return false;
        }
        let mut levels = topic.split('/');
        for rule_level in &self.levels {
            let wanted = match rule_level {
                // Matches the rest, including the parent level (`a/#` matches `a`) and, for
                // subscriptions, any wildcards in the rest.
                Level::Multi => return true,
                Level::Single => match levels.next() {
                    // For subscriptions `+` covers a name or `+`, never `#`.
                    Some("#") if subscribe => return false,
                    Some(_) => continue,
                    None => return false,
                },
                Level::Literal(s) => s.as_str(),
                Level::ClientId => match who.client_id {
                    "" => return false,
                    id => id,
                },
                Level::Username => match who.username {
                    Some(user) if !user.is_empty() => user,
                    _ => return false,
                },
            };
            if levels.next() != Some(wanted) {
                return false;
            }
        }
        levels.next().is_none()
    }
}

/// The rules of one section, deny lines apart: any matching deny wins (mosquitto puts
/// them at the front of the list).
#[derive(Debug, Clone, Default)]
struct Rules {
    deny: Vec<Rule>,
    allow: Vec<Rule>,
}

impl Rules {
    fn push(&mut self, rule: Rule) {
        if rule.access == NONE {
            self.deny.push(rule);
        } else {
            self.allow.push(rule);
        }
    }

    fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.allow.is_empty()
    }

    /// The decision of this section and the line that made it, if a line applies.
    fn decide(
        &self,
        need: u8,
        topic: &str,
        subscribe: bool,
        who: &ClientIdentity<'_>,
    ) -> Option<(Decision, usize)> {
        if let Some(rule) = self.deny.iter().find(|r| r.applies(topic, subscribe, who)) {
            return Some((Decision::Deny, rule.line));
        }
        self.allow
            .iter()
            .find(|r| r.access & need != 0 && r.applies(topic, subscribe, who))
            .map(|rule| (Decision::Allow, rule.line))
    }
}

/// A parsed ACL file.
#[derive(Debug, Clone, Default)]
pub struct AclFile {
    anonymous: Rules,
    users: HashMap<String, Rules>,
    patterns: Rules,
    warnings: Vec<AclWarning>,
}

impl AclFile {
    /// Reads and parses an ACL file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, AclError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| AclError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_named(&text, &path.display().to_string())
    }

    /// Parses the text of an ACL file (errors name the file `<acl file>`).
    pub fn parse(text: &str) -> Result<Self, AclError> {
        Self::parse_named(text, MEMORY_FILE_NAME)
    }

    fn parse_named(text: &str, file_name: &str) -> Result<Self, AclError> {
        let mut acl = AclFile::default();
        let mut user: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let syntax = |message: String| AclError::Syntax {
                file: file_name.to_owned(),
                line,
                message,
            };
            let mut warn = |message: String| {
                acl.warnings.push(AclWarning {
                    file: file_name.to_owned(),
                    line,
                    message,
                })
            };
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_token(content);
            match keyword {
                "user" => {
                    let name = rest.trim();
                    if name.is_empty() {
                        return Err(syntax(
                            "`user` needs a user name, e.g. `user alice`".to_owned(),
                        ));
                    }
                    user = Some(name.to_owned());
                }
                "topic" | "pattern" => {
                    let pattern = keyword == "pattern";
                    let (first, remainder) = split_token(rest.trim_start());
                    if first.is_empty() {
                        return Err(syntax(format!(
                            "`{keyword}` needs a topic, e.g. `{keyword} read sensors/#`"
                        )));
                    }
                    let remainder = remainder.trim();
                    // As in mosquitto, a single word is the topic and access is readwrite.
                    let (access, topic) = if remainder.is_empty() {
                        if parse_access(first).is_some() {
                            warn(format!(
                                "`{keyword} {first}` grants readwrite on the topic {first:?}; \
                                 write `{keyword} {first} <topic>` to restrict a topic"
                            ));
                        }
                        (READ | WRITE, first)
                    } else {
                        let access = parse_access(first).ok_or_else(|| {
                            syntax(format!(
                                "invalid access {first:?}; expected read, write, readwrite or \
                                 deny, e.g. `{keyword} read sensors/#` (a topic containing \
                                 spaces needs the access word first)"
                            ))
                        })?;
                        (access, remainder)
                    };
                    check_filter(topic)
                        .map_err(|why| syntax(format!("invalid topic filter {topic:?}: {why}")))?;
                    let rule = Rule::new(topic, pattern, access, line);
                    let substitutes = rule
                        .levels
                        .iter()
                        .any(|l| matches!(l, Level::ClientId | Level::Username));
                    let mentions = topic.contains("%c") || topic.contains("%u");
                    if pattern && !substitutes {
                        warn(if mentions {
                            format!(
                                "pattern {topic:?}: %c and %u are substituted only when they \
                                 are a whole level, like `devices/%c/state`"
                            )
                        } else {
                            format!(
                                "pattern {topic:?} contains neither %c nor %u, so it applies \
                                 to every client alike"
                            )
                        });
                    }
                    if !pattern && mentions {
                        warn(format!(
                            "topic {topic:?}: `topic` lines do not substitute %c or %u; use \
                             `pattern` for that"
                        ));
                    }
                    if pattern {
                        acl.patterns.push(rule);
                    } else {
                        match &user {
                            Some(name) => acl.users.entry(name.clone()).or_default().push(rule),
                            None => acl.anonymous.push(rule),
                        }
                    }
                }
                other => {
                    return Err(syntax(format!(
                        "unknown keyword {other:?}; a line is `user <name>`, \
                         `topic [read|write|readwrite|deny] <topic>`, \
                         `pattern [read|write|readwrite|deny] <topic>` or a `#` comment"
                    )));
                }
            }
        }
        Ok(acl)
    }

    /// Lines that parsed but probably do not mean what their author intended.
    pub fn warnings(&self) -> &[AclWarning] {
        &self.warnings
    }

    /// Number of `topic` and `pattern` lines.
    pub fn rule_count(&self) -> usize {
        let count = |r: &Rules| r.deny.len() + r.allow.len();
        count(&self.anonymous)
            + self.users.values().map(count).sum::<usize>()
            + count(&self.patterns)
    }

    /// Decides one action: [`Decision::Allow`] or [`Decision::Deny`], never Defer (with an
    /// ACL file, whatever is not granted is denied). `topic` is a topic name for Publish and
    /// Receive, a filter without `$share/{group}/` for Subscribe.
    pub fn check(&self, who: &ClientIdentity<'_>, action: Action, topic: &str) -> Decision {
        self.evaluate(who, action, topic).0
    }

    /// Like [`check`](Self::check), also telling which line decided (`None` when no line
    /// applied and the default denial decided), for logs and for debugging a file.
    pub fn evaluate(
        &self,
        who: &ClientIdentity<'_>,
        action: Action,
        topic: &str,
    ) -> (Decision, Option<usize>) {
        let (need, subscribe) = match action {
            Action::Publish => (WRITE, false),
            Action::Receive => (READ, false),
            Action::Subscribe => (READ, true),
        };
        let own = match who.username {
            Some(user) => self.users.get(user),
            None => Some(&self.anonymous),
        };
        if let Some((decision, line)) =
            own.and_then(|rules| rules.decide(need, topic, subscribe, who))
        {
            return (decision, Some(line));
        }
        if self.patterns.is_empty() {
            return (Decision::Deny, None);
        }
        let dangerous = |s: &str| s.contains(['+', '#']);
        if who.username.is_some_and(dangerous) || dangerous(who.client_id) {
            return (Decision::Deny, None);
        }
        match self.patterns.decide(need, topic, subscribe, who) {
            Some((decision, line)) => (decision, Some(line)),
            None => (Decision::Deny, None),
        }
    }

    /// True if the file has no rules at all (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.anonymous.is_empty() && self.users.is_empty() && self.patterns.is_empty()
    }
}

/// Splits off the first word (separated by spaces or tabs).
fn split_token(s: &str) -> (&str, &str) {
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

fn parse_access(word: &str) -> Option<u8> {
    match word {
        "read" => Some(READ),
        "write" => Some(WRITE),
        "readwrite" => Some(READ | WRITE),
        "deny" => Some(NONE),
        _ => None,
    }
}

/// mosquitto's `mosquitto_sub_topic_check`: wildcards alone in their level, `#` last.
fn check_filter(topic: &str) -> Result<(), &'static str> {
    if topic.len() > 65_535 {
        return Err("longer than 65535 bytes");
    }
    let mut levels = topic.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('+') && level != "+" {
            return Err("'+' must be a whole level, like `a/+/c`");
        }
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err("'#' must be the whole last level, like `a/#`");
        }
    }
    Ok(())
}

/// Authorizes publish, subscribe and receive against an [`AclFile`]; reloadable.
pub struct AclAuthorizer {
    file: ArcSwap<AclFile>,
}

impl fmt::Debug for AclAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AclAuthorizer")
            .field("rules", &self.file.load().rule_count())
            .finish()
    }
}

impl AclAuthorizer {
    /// Authorizes against `file`.
    pub fn new(file: AclFile) -> Self {
        AclAuthorizer {
            file: ArcSwap::from_pointee(file),
        }
    }

    /// Replaces the file; checks already running finish against the old one.
    pub fn reload(&self, file: AclFile) {
        self.file.store(Arc::new(file));
    }

    /// The current file.
    pub fn file(&self) -> Arc<AclFile> {
        self.file.load_full()
    }
}

impl Authorizer for AclAuthorizer {
    fn authorize(&self, who: &ClientIdentity<'_>, action: Action, topic: &str) -> Decision {
        self.file.load().check(who, action, topic)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use Action::{Publish as P, Receive as R, Subscribe as S};
    use Decision::{Allow as A, Deny as D};

    const ACL: &str = "\
# Anonymous clients
topic read public/#
topic write public/anon-inbox
topic deny public/secret

user alice
topic readwrite alice/#
topic read sensors/+/temperature
topic deny alice/private/#
topic read $SYS/#
topic read news/+

user bob
topic sensors/#
topic deny sensors/secret
topic read

user root
topic #

# Patterns apply to everybody.
pattern read devices/%c/config
pattern write devices/%c/state
pattern readwrite users/%u/#
pattern deny users/%u/locked/#
pattern read shared/%u/%c
";

    /// (client id, user name)
    type Who<'a> = (&'a str, Option<&'a str>);

    fn id<'a>(client_id: &'a str, username: Option<&'a str>) -> ClientIdentity<'a> {
        ClientIdentity {
            client_id,
            username,
        }
    }

    #[test]
    fn table() {
        let acl = AclFile::parse(ACL).unwrap();
        let anon = ("anon1", None);
        let alice = ("a1", Some("alice"));
        let bob = ("b1", Some("bob"));
        let root = ("r1", Some("root"));
        let mallory = ("m1", Some("mallory"));
        #[rustfmt::skip]
        let cases: &[(Who<'_>, Action, &str, Decision)] = &[
            // Anonymous section.
            (anon, R, "public/news", A),
            (anon, R, "public", A),
            (anon, S, "public/#", A),
            (anon, S, "public/+", A),
            (anon, S, "public/+/deep", A),
            (anon, P, "public/news", D),
            (anon, P, "public/anon-inbox", A),
            (anon, R, "public/anon-inbox", A),
            (anon, R, "public/secret", D),
            (anon, S, "public/secret", D),
            (anon, S, "#", D),
            (anon, S, "+/news", D),
            // Patterns for an anonymous client: %c works, %u never matches.
            (anon, R, "devices/anon1/config", A),
            (anon, S, "devices/anon1/config", A),
            (anon, S, "devices/+/config", D),
            (anon, P, "devices/anon1/state", A),
            (anon, P, "devices/other/state", D),
            (anon, R, "devices/anon1/state", D),
            (anon, P, "users/anon1/x", D),
            // alice: her own section, deny first.
            (alice, P, "alice/notes", A),
            (alice, R, "alice/notes", A),
            (alice, P, "alice", A),
            (alice, P, "alice/private/diary", D),
            (alice, R, "alice/private", D),
            (alice, S, "alice/#", A),
            (alice, S, "alice/private/+", D),
            (alice, S, "alice/+/diary", A),
            (alice, R, "sensors/kitchen/temperature", A),
            (alice, P, "sensors/kitchen/temperature", D),
            (alice, S, "sensors/+/temperature", A),
            (alice, S, "sensors/kitchen/temperature", A),
            (alice, S, "sensors/#", D),
            (alice, S, "sensors/kitchen/+", D),
            (alice, S, "sensors/+/temperature/#", D),
            (alice, R, "$SYS/broker/uptime", A),
            (alice, S, "$SYS/#", A),
            (alice, S, "$SYS", A),
            (alice, P, "$SYS/broker/uptime", D),
            (alice, S, "news/+", A),
            (alice, S, "news/today", A),
            (alice, S, "news/#", D),
            (alice, S, "news", D),
            (alice, R, "public/news", D),
            // alice falls through to the patterns.
            (alice, R, "users/alice/inbox", A),
            (alice, P, "users/alice/inbox", A),
            (alice, P, "users/alice/locked/x", D),
            (alice, S, "users/alice/#", A),
            (alice, S, "users/alice/locked/+", D),
            (alice, P, "users/bob/inbox", D),
            (alice, R, "shared/alice/a1", A),
            (alice, R, "shared/alice/a2", D),
            (alice, R, "devices/a1/config", A),
            // bob: default readwrite, deny, and mosquitto's one-word quirk.
            (bob, P, "sensors/kitchen/temperature", A),
            (bob, R, "sensors/kitchen/temperature", A),
            (bob, R, "sensors/secret", D),
            (bob, S, "sensors/#", A),
            (bob, S, "sensors/secret", D),
            (bob, S, "sensors/+", A),
            (bob, P, "read", A),
            (bob, R, "read", A),
            // root: `#` covers everything except $ topics.
            (root, P, "anything/at/all", A),
            (root, S, "#", A),
            (root, S, "+/+/#", A),
            (root, R, "$SYS/broker/uptime", D),
            (root, S, "$SYS/#", D),
            (root, S, "$share-like/x", D),
            // A user without a section only has the patterns.
            (mallory, R, "devices/m1/config", A),
            (mallory, R, "public/news", D),
            (mallory, P, "users/mallory/x", A),
            (mallory, P, "users/mallory/locked/x", D),
            (mallory, S, "users/+/x", D),
            // Wildcard client ids and user names lose every pattern grant (CVE-2017-7650)...
            (("+", None), S, "devices/+/config", D),
            (("#", None), S, "devices/#", D),
            (("m1", Some("#")), S, "users/#", D),
            (("m1", Some("a+")), P, "users/a+/x", D),
            // ...but not their own section, which is checked first.
            (("x#", None), R, "public/news", A),
            // A '/' in a substituted value never matches one level.
            (("a/b", None), R, "devices/a/b/config", D),
            // An empty user name never matches %u.
            (("e1", Some("")), P, "users//x", D),
        ];
        for (n, ((client_id, username), action, topic, expected)) in cases.iter().enumerate() {
            let who = id(client_id, *username);
            assert_eq!(
                acl.check(&who, *action, topic),
                *expected,
                "case {n}: {client_id}/{username:?} {action:?} {topic}"
            );
        }
        assert!(cases.len() >= 40);
    }

    /// mosquitto's `TEST_acl_pattern_*` vectors for `sub_matches_acl` (test/unit/util_topic_test.c).
    #[test]
    fn mosquitto_sub_matches_acl_vectors() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, Option<&str>, bool)] = &[
            ("$SYS/#", "$SYS/broker/#", "c", None, true),
            ("$SYS/#", "$SYS/+/#", "c", None, true),
            ("$SYS/#", "$SYS", "c", None, true),
            ("$SYS/+", "$SYS/#", "c", None, false),
            ("$SYS/+/a", "$SYS/a/+", "c", None, false),
            ("$SYS/+", "$SYS/+/a", "c", None, false),
            ("$SYS/broker/uptime", "$SYS/broker/#", "c", None, false),
            ("#", "$SYS/broker/#", "c", None, false),
            ("%c/test/+", "clientid/test/+", "clientid", None, true),
            ("%c/test/+", "clientid/test/+", "nomatch", None, false),
            ("%c/test/#", "clientid/test/+", "clientid", None, true),
            ("test/%c/%c/test/+", "test/clientid/clientid/test/test", "clientid", None, true),
            ("+/test/%count", "+/test/clientid", "clientid", None, false),
            ("%u/#", "username/test/+", "c", Some("username"), true),
            ("+/%u/test", "test/username/test", "c", Some("username"), true),
            ("+/test/%c/%u/#", "+/test/clientid/username/test", "clientid", Some("username"), true),
            ("test/a%u/+/a%c", "test/ausername/a/aclientid", "clientid", Some("username"), false),
            ("%c", "clientid/test", "clientid/test", None, false),
            ("clientid/%c/+", "clientid/test/topic", "test", None, true),
            ("+/clientid/%c/#", "+/clientid/test", "test", None, true),
            ("+/pattern/%u/#", "+/pattern/username", "c", Some("username"), true),
            ("%u", "username", "c", None, false),
        ];
        for (acl, sub, client_id, username, expected) in cases {
            let rule = Rule::new(acl, true, READ, 1);
            assert_eq!(
                rule.applies(sub, true, &id(client_id, *username)),
                *expected,
                "acl {acl} sub {sub}"
            );
        }
    }

    /// mosquitto's `TEST_valid_matching` / `TEST_valid_no_matching` for topic names.
    #[test]
    fn mosquitto_topic_matches_sub_vectors() {
        let yes = [
            ("foo/#", "foo/"),
            ("foo/#", "foo"),
            ("foo//bar", "foo//bar"),
            ("foo//+", "foo//bar"),
            ("foo/+/+/baz", "foo///baz"),
            ("foo/bar/+", "foo/bar/"),
            ("foo/+/baz", "foo/bar/baz"),
            ("A/B/+/#", "A/B/B/C"),
            ("foo/+/#", "foo/bar"),
            ("#", "/foo/bar"),
            ("/#", "/foo/bar"),
        ];
        let no = [
            ("test/6/#", "test/3"),
            ("foo/bar", "foo"),
            ("foo/+", "foo/bar/baz"),
            ("foo/+/baz", "foo/bar/bar"),
            ("foo/+/#", "fo2/bar/baz"),
            ("/#", "foo/bar"),
            ("#", "$SYS/bar"),
            ("$BOB/bar", "$SYS/bar"),
            ("foo/+", "foo"),
        ];
        let who = id("c", None);
        for (filter, topic) in yes {
            assert!(
                Rule::new(filter, false, READ, 1).applies(topic, false, &who),
                "{filter} {topic}"
            );
        }
        for (filter, topic) in no {
            assert!(
                !Rule::new(filter, false, READ, 1).applies(topic, false, &who),
                "{filter} {topic}"
            );
        }
    }

    #[test]
    fn topic_lines_do_not_substitute() {
        let acl = AclFile::parse("topic read devices/%c\n").unwrap();
        assert_eq!(acl.check(&id("x", None), R, "devices/x"), D);
        assert_eq!(acl.check(&id("x", None), R, "devices/%c"), A);
        assert_eq!(acl.warnings().len(), 1);
        assert!(acl.warnings()[0].message.contains("use `pattern`"));
    }

    #[test]
    fn deny_in_own_section_beats_allow_anywhere_but_not_other_way_round() {
        // A user deny line stops the patterns from granting.
        let acl = AclFile::parse("user u\ntopic deny a/b\npattern read a/%c\n").unwrap();
        assert_eq!(acl.check(&id("b", Some("u")), R, "a/b"), D);
        // A user grant wins before a pattern deny is looked at (mosquitto's order).
        let acl = AclFile::parse("user u\ntopic read a/#\npattern deny a/%u\n").unwrap();
        assert_eq!(acl.check(&id("c", Some("u")), R, "a/u"), A);
        assert_eq!(acl.evaluate(&id("c", Some("u")), R, "a/u"), (A, Some(2)));
        // Deny placed after the allow still wins.
        let acl = AclFile::parse("topic read x/#\ntopic deny x/y\n").unwrap();
        assert_eq!(acl.check(&id("c", None), R, "x/y"), D);
        assert_eq!(acl.evaluate(&id("c", None), R, "x/y"), (D, Some(2)));
        assert_eq!(acl.evaluate(&id("c", None), R, "q"), (D, None));
        assert_eq!(acl.check(&id("c", None), R, "x/z"), A);
    }

    #[test]
    fn sections_merge_and_names_keep_spaces() {
        let acl = AclFile::parse(
            "user  john smith \ntopic read a\nuser other\ntopic read b\nuser john smith\ntopic write c\n",
        )
        .unwrap();
        let john = id("c", Some("john smith"));
        assert_eq!(acl.check(&john, R, "a"), A);
        assert_eq!(acl.check(&john, P, "c"), A);
        assert_eq!(acl.check(&john, R, "b"), D);
        assert_eq!(acl.rule_count(), 3);
    }

    #[test]
    fn whitespace_crlf_comments_and_topics_with_spaces() {
        let acl = AclFile::parse(
            "# comment\r\n   # indented comment\r\n\r\n\ttopic\tread\tsp ace/x  \r\n  topic  write   a b  \r\n",
        )
        .unwrap();
        let who = id("c", None);
        assert_eq!(acl.check(&who, R, "sp ace/x"), A);
        assert_eq!(acl.check(&who, P, "a b"), A);
        assert!(acl.warnings().is_empty());
    }

    #[test]
    fn empty_file_denies_everything() {
        let acl = AclFile::parse("# nothing\n").unwrap();
        assert!(acl.is_empty());
        assert_eq!(acl.check(&id("c", None), R, "a"), D);
        assert_eq!(acl.check(&id("c", Some("u")), S, "#"), D);
    }

    #[test]
    fn syntax_errors_name_line_and_fix() {
        let cases: &[(&str, usize, &str)] = &[
            ("topic\n", 1, "`topic` needs a topic"),
            ("pattern   \n", 1, "`pattern` needs a topic"),
            ("\ntopic reed a/b\n", 2, "invalid access \"reed\""),
            (
                "topic foo bar\n",
                1,
                "expected read, write, readwrite or deny",
            ),
            ("topic read a/b+\n", 1, "'+' must be a whole level"),
            ("topic read a/#/b\n", 1, "'#' must be the whole last level"),
            ("pattern read a#\n", 1, "'#' must be the whole last level"),
            ("user\n", 1, "`user` needs a user name"),
            ("user   \n", 1, "`user` needs a user name"),
            ("# ok\nallow read a\n", 2, "unknown keyword \"allow\""),
            ("Topic read a\n", 1, "unknown keyword \"Topic\""),
        ];
        for (text, line, needle) in cases {
            let err = AclFile::parse(text).unwrap_err();
            let shown = err.to_string();
            assert!(
                shown.starts_with(&format!("<acl file>:{line}: ")),
                "{shown}"
            );
            assert!(shown.contains(needle), "{text:?}: {shown}");
        }
    }

    #[test]
    fn warnings() {
        let acl = AclFile::parse(
            "topic deny\npattern read all/#\npattern read x%c/y\npattern read ok/%u\n",
        )
        .unwrap();
        let lines: Vec<usize> = acl.warnings().iter().map(|w| w.line).collect();
        assert_eq!(lines, [1, 2, 3]);
        assert!(acl.warnings()[0]
            .to_string()
            .starts_with("<acl file>:1: `topic deny` grants readwrite"));
        assert!(acl.warnings()[1].message.contains("neither %c nor %u"));
        assert!(acl.warnings()[2].message.contains("whole level"));
        // `topic deny` alone is mosquitto's readwrite on the topic "deny".
        assert_eq!(acl.check(&id("c", None), P, "deny"), A);
    }

    #[test]
    fn mosquitto_example_file() {
        // The aclfile.example shipped with mosquitto.
        let acl = AclFile::parse(
            "# This affects access control for clients with no username.\n\
             topic read $SYS/#\n\n\
             # This only affects clients with username \"roger\".\n\
             user roger\n\
             topic foo/bar\n\n\
             # This affects all clients.\n\
             pattern write $SYS/broker/connection/%c/state\n",
        )
        .unwrap();
        assert!(acl.warnings().is_empty());
        assert_eq!(acl.check(&id("c", None), R, "$SYS/broker/uptime"), A);
        assert_eq!(
            acl.check(&id("c", Some("roger")), R, "$SYS/broker/uptime"),
            D
        );
        assert_eq!(acl.check(&id("c", Some("roger")), P, "foo/bar"), A);
        assert_eq!(
            acl.check(
                &id("br1", Some("roger")),
                P,
                "$SYS/broker/connection/br1/state"
            ),
            A
        );
        assert_eq!(
            acl.check(&id("br1", None), P, "$SYS/broker/connection/br2/state"),
            D
        );
    }

    #[test]
    fn authorizer_reloads() {
        let authz = AclAuthorizer::new(AclFile::parse("topic read a\n").unwrap());
        let who = id("c", None);
        assert_eq!(authz.authorize(&who, R, "a"), A);
        authz.reload(AclFile::parse("topic read b\n").unwrap());
        assert_eq!(authz.authorize(&who, R, "a"), D);
        assert_eq!(authz.authorize(&who, R, "b"), A);
        assert_eq!(authz.file().rule_count(), 1);
        assert!(format!("{authz:?}").contains("rules: 1"));
    }
}
