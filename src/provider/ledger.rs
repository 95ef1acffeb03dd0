//! The run's ledger: everything created that must not outlive the run, written down *before* the
//! call that creates it, so that an interruption at any moment leaves a trace to clean up by. A
//! resource leaves the ledger once removed; whatever is still there at the end is reported as not
//! removed.
//!
//! The engine reads a [`Resource`] only for its cell, its key and its description: what it is
//! (an instance, a QEMU process...) is its provider's own type, reached with [`Resource::get`].

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex};

use super::lock;

/// What a provider records in the ledger: its own description of something it created. Its
/// `Display` is what a person reads ("instance i-0abc (cell ami-1_t3.micro)").
pub trait Created: fmt::Display + fmt::Debug + PartialEq + Send + Sync + 'static {
    /// The identifier cleanup steps name it by (an instance id, a pid, a key pair's name).
    fn key(&self) -> String;

    /// The cell it was made for; empty for what the run shares (its key pair, its security groups).
    fn cell(&self) -> &str;
}

/// Object-safe face of [`Created`], so the ledger can hold any provider's resources side by side.
trait AnyCreated: fmt::Display + fmt::Debug + Send + Sync {
    fn key(&self) -> String;
    fn cell(&self) -> &str;
    fn as_any(&self) -> &dyn Any;
    fn same(&self, other: &dyn AnyCreated) -> bool;
}

impl<T: Created> AnyCreated for T {
    fn key(&self) -> String {
        Created::key(self)
    }

    fn cell(&self) -> &str {
        Created::cell(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn same(&self, other: &dyn AnyCreated) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }
}

/// Something created that must not outlive the run, as its provider describes it.
#[derive(Clone)]
pub struct Resource(Arc<dyn AnyCreated>);

impl Resource {
    pub fn new(what: impl Created) -> Resource {
        Resource(Arc::new(what))
    }

    /// The cell it was made for; empty for what the run shares.
    pub fn cell(&self) -> &str {
        self.0.cell()
    }

    /// The identifier a cleanup step names the resource by.
    pub fn key(&self) -> String {
        self.0.key()
    }

    /// What it is, when it is a `T`: how a provider finds its own resources in the ledger.
    pub fn get<T: Created>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref::<T>()
    }
}

impl PartialEq for Resource {
    fn eq(&self, other: &Resource) -> bool {
        self.0.same(other.0.as_ref())
    }
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The run's list of created resources; a resource leaves it once removed.
#[derive(Debug, Clone, Default)]
pub struct Ledger(Arc<Mutex<Vec<Resource>>>);

impl Ledger {
    pub fn record(&self, resource: Resource) {
        lock(&self.0).push(resource);
    }

    pub fn removed(&self, resource: &Resource) {
        lock(&self.0).retain(|r| r != resource);
    }

    /// Keeps only what `keep` says is still there.
    pub fn retain(&self, keep: impl FnMut(&Resource) -> bool) {
        lock(&self.0).retain(keep);
    }

    /// What was recorded before a create call becomes what the call created.
    pub fn replace(&self, before: &Resource, after: Resource) {
        let mut list = lock(&self.0);
        list.retain(|r| r != before);
        list.push(after);
    }

    pub fn remaining(&self) -> Vec<Resource> {
        lock(&self.0).clone()
    }

    /// Whether `resource` is still recorded.
    pub fn holds(&self, resource: &Resource) -> bool {
        lock(&self.0).contains(resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Thing(u32, &'static str);

    impl fmt::Display for Thing {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "thing {}", self.0)
        }
    }

    impl Created for Thing {
        fn key(&self) -> String {
            self.0.to_string()
        }

        fn cell(&self) -> &str {
            self.1
        }
    }

    #[test]
    fn resources_of_any_provider_are_told_apart_by_value_and_cell() {
        let ledger = Ledger::default();
        ledger.record(Resource::new(Thing(1, "a")));
        ledger.record(Resource::new(Thing(2, "")));
        ledger.removed(&Resource::new(Thing(1, "b")));
        assert_eq!(ledger.remaining().len(), 2, "another cell's thing 1 is not this one");
        ledger.removed(&Resource::new(Thing(1, "a")));
        let left = ledger.remaining();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].to_string(), "thing 2");
        assert_eq!(left[0].cell(), "");
        assert_eq!(left[0].get::<Thing>(), Some(&Thing(2, "")));
        assert_eq!(left[0].key(), "2");
    }
}
