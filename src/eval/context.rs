//! The request context: condition keys and their values.

use std::net::IpAddr;
use std::sync::OnceLock;

use crate::policy::condition::{parse_date, parse_ip, parse_number};

/// One value of a condition key. Its readings as a date, an address or a number are made on
/// first use and kept, so a request checked by a hundred `DateLessThan` conditions parses its
/// `aws:CurrentTime` once.
#[derive(Clone, Debug, Default)]
pub struct ContextValue {
    text: String,
    date: OnceLock<Option<i128>>,
    ip: OnceLock<Option<IpAddr>>,
    number: OnceLock<Option<f64>>,
}

impl ContextValue {
    pub fn new(text: impl Into<String>) -> ContextValue {
        ContextValue { text: text.into(), ..ContextValue::default() }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Nanoseconds since the epoch, if the value is an ISO 8601 date or epoch seconds.
    pub fn date(&self) -> Option<i128> {
        *self.date.get_or_init(|| parse_date(&self.text))
    }

    pub fn ip(&self) -> Option<IpAddr> {
        *self.ip.get_or_init(|| parse_ip(&self.text))
    }

    pub fn number(&self) -> Option<f64> {
        *self.number.get_or_init(|| parse_number(&self.text))
    }
}

impl PartialEq for ContextValue {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for ContextValue {}

/// Condition keys of a request, each with one value or several (a multi-valued key such as
/// `aws:TagKeys`). Keys are case-insensitive: they are stored lower-cased and sorted, so a lookup
/// by a key compiled lower-case at load time is a binary search with no allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    entries: Vec<(Box<str>, Vec<ContextValue>)>,
}

impl Context {
    /// Sets `key` to `values`, replacing any earlier value of that key.
    pub fn insert<I, S>(&mut self, key: &str, values: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let key = key.to_ascii_lowercase();
        let values: Vec<ContextValue> = values.into_iter().map(ContextValue::new).collect();
        match self.entries.binary_search_by(|(k, _)| (**k).cmp(key.as_str())) {
            Ok(at) => self.entries[at].1 = values,
            Err(at) => self.entries.insert(at, (key.into_boxed_str(), values)),
        }
    }

    /// The values of `key`, which must already be lower-case.
    pub fn get(&self, key: &str) -> Option<&[ContextValue]> {
        self.entries.binary_search_by(|(k, _)| (**k).cmp(key)).ok().map(|at| self.entries[at].1.as_slice())
    }

    /// Removes every key starting with `prefix` (lower-case), such as caller-supplied
    /// `aws:principaltag/` keys that iamd replaces with the stored tags.
    pub fn remove_prefix(&mut self, prefix: &str) {
        self.entries.retain(|(key, _)| !key.starts_with(prefix));
    }

    /// Every key (lower-case) with its values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[ContextValue])> {
        self.entries.iter().map(|(key, values)| (&**key, values.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive() {
        let mut context = Context::default();
        context.insert("aws:SourceIp", ["10.0.0.1"]);
        context.insert("AWS:sourceip", ["10.0.0.2"]);
        assert_eq!(context.len(), 1);
        assert_eq!(context.get("aws:sourceip"), Some(&[ContextValue::new("10.0.0.2")][..]));
        assert_eq!(context.get("aws:username"), None);
    }
}
