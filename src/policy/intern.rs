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
}
