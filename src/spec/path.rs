//! Field paths such as `probes[1].expect.status`: how errors name the place in a spec.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FieldPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.into()));
        p
    }

    pub fn index(&self, index: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Index(index));
        p
    }

    /// `other` below this path.
    pub fn join(&self, other: &FieldPath) -> Self {
        let mut p = self.clone();
        p.0.extend(other.0.iter().cloned());
        p
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn parent(&self) -> Option<FieldPath> {
        let mut p = self.clone();
        p.0.pop().map(|_| p)
    }

    pub fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// Converts serde_ignored's path (unknown keys) into ours.
    pub fn from_ignored(path: &serde_ignored::Path) -> Self {
        use serde_ignored::Path as P;
        match path {
            P::Root => FieldPath::root(),
            P::Seq { parent, index } => FieldPath::from_ignored(parent).index(*index),
            P::Map { parent, key } => FieldPath::from_ignored(parent).key(key.clone()),
            P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
                FieldPath::from_ignored(parent)
            }
        }
    }

    /// Converts serde_path_to_error's path (type errors) into ours.
    pub fn from_tracked(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment as S;
        let mut p = FieldPath::root();
        for segment in path.iter() {
            p = match segment {
                S::Seq { index } => p.index(*index),
                S::Map { key } => p.key(key.clone()),
                S::Enum { variant } => p.key(variant.clone()),
                S::Unknown => p,
            };
        }
        p
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}
