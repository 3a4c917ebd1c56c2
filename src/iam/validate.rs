//! AWS IAM's naming rules and quotas.

use super::error::IamError;
use super::model::Tag;

/// Managed policies attached to one user, group or role.
pub const MAX_ATTACHED_POLICIES: usize = 10;
/// Groups one user belongs to.
pub const MAX_GROUPS_PER_USER: usize = 10;
/// Tags on one entity.
pub const MAX_TAGS: usize = 50;
/// Aggregate size of a user's, group's and role's inline policies, in characters without white
/// space.
pub const USER_INLINE_LIMIT: usize = 2_048;
pub const GROUP_INLINE_LIMIT: usize = 5_120;
pub const ROLE_INLINE_LIMIT: usize = 10_240;

/// Which entity a name is for: the length limits differ.
#[derive(Clone, Copy, Debug)]
pub enum NameKind {
    User,
    Group,
    Role,
    Policy,
}

impl NameKind {
    fn label(self) -> &'static str {
        match self {
            NameKind::User => "user name",
            NameKind::Group => "group name",
            NameKind::Role => "role name",
            NameKind::Policy => "policy name",
        }
    }

    fn max_len(self) -> usize {
        match self {
            NameKind::User | NameKind::Role => 64,
            NameKind::Group | NameKind::Policy => 128,
        }
    }
}

/// Names: 1 to 64 (128) characters of letters, digits and `+=,.@_-`.
pub fn name(kind: NameKind, name: &str) -> Result<(), IamError> {
    let valid_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if name.is_empty() || name.chars().count() > kind.max_len() || !valid_chars {
        return Err(IamError::InvalidInput(format!(
            "{} `{name}` is invalid: use 1 to {} letters, digits and the characters +=,.@_-",
            kind.label(),
            kind.max_len()
        )));
    }
    Ok(())
}

/// Paths: `/`, or `/` + segments each followed by `/`, printable ASCII, at most 512 characters.
pub fn path(path: &str) -> Result<(), IamError> {
    let valid = path.starts_with('/')
        && path.ends_with('/')
        && path.len() <= 512
        && path.chars().all(|c| ('\u{21}'..='\u{7e}').contains(&c))
        && !path.contains("//");
    if !valid {
        return Err(IamError::InvalidInput(format!(
            "path `{path}` is invalid: it must start and end with `/`, such as `/` or `/division/team/`, \
             with at most 512 printable characters"
        )));
    }
    Ok(())
}

/// Tag keys 1 to 128 characters, values up to 256, not under the reserved `aws:` prefix.
pub fn tags(tags: &[Tag]) -> Result<(), IamError> {
    for tag in tags {
        let allowed =
            |s: &str| s.chars().all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c));
        if tag.key.is_empty() || tag.key.chars().count() > 128 || !allowed(&tag.key) {
            return Err(IamError::InvalidInput(format!(
                "tag key `{}` is invalid: use 1 to 128 letters, digits, spaces and _.:/=+-@",
                tag.key
            )));
        }
        if tag.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(IamError::InvalidInput(format!(
                "tag key `{}` uses the reserved prefix `aws:`",
                tag.key
            )));
        }
        if tag.value.chars().count() > 256 || !allowed(&tag.value) {
            return Err(IamError::InvalidInput(format!(
                "value of tag `{}` is invalid: use at most 256 letters, digits, spaces and _.:/=+-@",
                tag.key
            )));
        }
    }
    Ok(())
}

/// Merges `new` into `existing` (a tag key is case-insensitive: a new value replaces the old),
/// enforcing the tag quota.
pub fn merge_tags(existing: &mut Vec<Tag>, new: &[Tag]) -> Result<(), IamError> {
    tags(new)?;
    for tag in new {
        match existing.iter_mut().find(|t| t.key.eq_ignore_ascii_case(&tag.key)) {
            Some(old) => *old = tag.clone(),
            None => existing.push(tag.clone()),
        }
    }
    if existing.len() > MAX_TAGS {
        return Err(IamError::LimitExceeded(format!(
            "an entity can have at most {MAX_TAGS} tags; this change would give it {}",
            existing.len()
        )));
    }
    Ok(())
}

/// Session durations a role allows: one to twelve hours.
pub fn max_session_duration(seconds: u32) -> Result<(), IamError> {
    if !(3_600..=43_200).contains(&seconds) {
        return Err(IamError::InvalidInput(format!(
            "max session duration {seconds} is out of range: expected 3600 to 43200 seconds"
        )));
    }
    Ok(())
}

pub fn description(text: &str) -> Result<(), IamError> {
    if text.chars().count() > 1_000 {
        return Err(IamError::InvalidInput("description is longer than 1000 characters".into()));
    }
    Ok(())
}

/// Characters that count against inline policy quotas.
pub fn policy_size(text: &str) -> usize {
    text.chars().filter(|c| !c.is_whitespace()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert!(name(NameKind::User, "alice+ops@example.com").is_ok());
        assert!(name(NameKind::User, "").is_err());
        assert!(name(NameKind::User, &"a".repeat(65)).is_err());
        assert!(name(NameKind::Group, &"a".repeat(128)).is_ok());
        assert!(name(NameKind::Role, "my role").is_err());
        assert!(path("/").is_ok());
        assert!(path("/division/team/").is_ok());
        assert!(path("division/").is_err());
        assert!(path("/a//b/").is_err());
    }

    #[test]
    fn tag_quota_and_merge() {
        let tag = |k: &str, v: &str| Tag { key: k.into(), value: v.into() };
        let mut existing = vec![tag("Team", "a")];
        merge_tags(&mut existing, &[tag("team", "b"), tag("env", "prod")]).unwrap();
        assert_eq!(existing, vec![tag("team", "b"), tag("env", "prod")]);
        let many: Vec<Tag> = (0..50).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert!(matches!(merge_tags(&mut existing, &many), Err(IamError::LimitExceeded(_))));
        assert!(tags(&[tag("aws:owner", "x")]).is_err());
    }
}
