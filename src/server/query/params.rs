//! The parameters of a Query request: form fields, with AWS's encoding of lists
//! (`Name.member.N`) and of tags (`Tags.member.N.Key`).

use std::collections::BTreeMap;

use super::QueryError;
use crate::proto;

/// A request's parameters, from the form body and the URL's query string.
#[derive(Debug, Default)]
pub struct Params {
    fields: BTreeMap<String, String>,
}

impl Params {
    /// Reads `query` then `body`; a field given in both keeps the body's value.
    pub fn parse(query: &str, body: &[u8]) -> Params {
        let fields = form_urlencoded::parse(query.as_bytes())
            .chain(form_urlencoded::parse(body))
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        Params { fields }
    }

    /// The names of the fields given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// The field's value, or `""` when absent (the gRPC messages' "not set").
    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_string()
    }

    pub fn required(&self, name: &str) -> Result<String, QueryError> {
        match self.get(name) {
            Some(value) if !value.is_empty() => Ok(value.to_string()),
            _ => Err(QueryError::validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not \
                 be null",
                lower_first(name)
            ))),
        }
    }

    /// `name.member.1`, `name.member.2`, ... in order, up to the first gap.
    pub fn list(&self, name: &str) -> Vec<String> {
        (1..).map_while(|n| self.get(&format!("{name}.member.{n}")).map(str::to_string)).collect()
    }

    /// `name.member.N.Key` and `name.member.N.Value`, as tags.
    pub fn tags(&self, name: &str) -> Vec<proto::Tag> {
        (1..)
            .map_while(|n| {
                let key = self.get(&format!("{name}.member.{n}.Key"))?;
                let value = self.get(&format!("{name}.member.{n}.Value")).unwrap_or_default();
                Some(proto::Tag { key: key.to_string(), value: value.to_string() })
            })
            .collect()
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, QueryError> {
        self.get(name)
            .map(|value| {
                value.parse::<i64>().map_err(|_| {
                    QueryError::validation(format!(
                        "Value '{value}' at '{}' is not an integer",
                        lower_first(name)
                    ))
                })
            })
            .transpose()
    }

    /// An integer that fits the gRPC message's `int32` (0 when absent, as there).
    pub fn int32(&self, name: &str) -> Result<i32, QueryError> {
        let value = self.int(name)?.unwrap_or(0);
        i32::try_from(value).map_err(|_| {
            QueryError::validation(format!("Value '{value}' at '{}' is out of range", lower_first(name)))
        })
    }

    pub fn uint32(&self, name: &str) -> Result<u32, QueryError> {
        let value = self.int(name)?.unwrap_or(0);
        u32::try_from(value).map_err(|_| {
            QueryError::validation(format!("Value '{value}' at '{}' is out of range", lower_first(name)))
        })
    }

    /// `true` or `false` (`None` when absent).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, QueryError> {
        self.get(name)
            .map(|value| match value {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(QueryError::validation(format!(
                    "Value '{other}' at '{}' is not a boolean: expected true or false",
                    lower_first(name)
                ))),
            })
            .transpose()
    }
}

/// AWS names parameters in validation messages in lower camel case (`userName`).
fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map(|c| c.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lists_and_tags_in_order_up_to_the_first_gap() {
        let params = Params::parse(
            "Action=ListUsers",
            b"A.member.2=b&A.member.1=a%2Fx&A.member.4=d&Tags.member.1.Key=team&Tags.member.1.Value=red&\
              Tags.member.2.Key=empty",
        );
        assert_eq!(params.get("Action"), Some("ListUsers"));
        assert_eq!(params.list("A"), ["a/x", "b"]);
        let tags = params.tags("Tags");
        assert_eq!(tags.len(), 2);
        assert_eq!((tags[0].key.as_str(), tags[0].value.as_str()), ("team", "red"));
        assert_eq!((tags[1].key.as_str(), tags[1].value.as_str()), ("empty", ""));
    }

    #[test]
    fn refuses_malformed_numbers_and_booleans_naming_the_field() {
        let params = Params::parse("", b"MaxItems=ten&SetAsDefault=yes&DurationSeconds=99999999999");
        assert!(params.int("MaxItems").unwrap_err().message.contains("'maxItems'"));
        assert!(params.bool("SetAsDefault").unwrap_err().message.contains("expected true or false"));
        assert!(params.int32("DurationSeconds").unwrap_err().message.contains("out of range"));
        assert!(params.required("UserName").unwrap_err().message.contains("'userName'"));
        assert_eq!(params.bool("Missing").unwrap(), None);
    }
}
