//! String interning for compiled policies: the same literal (`arn`, `aws`, an account id, a
//! bucket name, a condition key) appears in thousands of policies of a bundle, and is stored
//! once.

use std::collections::HashSet;
use std::sync::Arc;

/// Shares equal strings among the policies compiled with it.
#[derive(Debug, Default)]
pub struct Interner {
    strings: HashSet<Arc<str>>,
}

impl Interner {
    pub fn intern(&mut self, text: &str) -> Arc<str> {
        match self.strings.get(text) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = text.into();
                self.strings.insert(shared.clone());
                shared
            }
        }
    }

    /// Lets go of the strings nothing else holds any more (an account or policy ARN whose last
    /// user was deleted), so that a long-lived interner does not grow with every name it saw.
    pub fn forget_unused(&mut self) {
        self.strings.retain(|shared| Arc::strong_count(shared) > 1);
    }

    /// Distinct strings held.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_are_shared() {
        let mut interner = Interner::default();
        let a = interner.intern("arn:aws:s3:::reports");
        let b = interner.intern("arn:aws:s3:::reports");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(interner.len(), 1);
    }

    #[test]
    fn unused_strings_are_forgotten() {
        let mut interner = Interner::default();
        let kept = interner.intern("111122223333");
        drop(interner.intern("arn:aws:iam::111122223333:policy/Deleted"));
        interner.forget_unused();
        assert_eq!(interner.len(), 1);
        assert!(Arc::ptr_eq(&kept, &interner.intern("111122223333")));
    }
}
