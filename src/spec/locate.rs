//! Finds where each field of a YAML document is: field path -> line and column.
//!
//! serde_yaml reports positions only for the error it stops at. Unknown keys and the checks made
//! after deserializing need positions too, so the text is read once more with an event parser that
//! marks every node.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::path::FieldPath;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Default)]
pub struct Locations {
    keys: HashMap<FieldPath, Position>,
    values: HashMap<FieldPath, Position>,
}

impl Locations {
    /// Indexes `text`; a document that does not parse gives an empty index (serde_yaml reports why).
    pub fn index(text: &str) -> Self {
        let mut indexer = Indexer::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut indexer, false);
        indexer.locations
    }

    /// Where the key of this field is written, else its value, else the nearest enclosing field.
    pub fn key_or_value(&self, path: &FieldPath) -> Option<Position> {
        self.keys.get(path).or_else(|| self.values.get(path)).copied().or_else(|| self.enclosing(path))
    }

    /// Where the value of this field starts, else its key, else the nearest enclosing field.
    pub fn value(&self, path: &FieldPath) -> Option<Position> {
        self.values.get(path).or_else(|| self.keys.get(path)).copied().or_else(|| self.enclosing(path))
    }

    fn enclosing(&self, path: &FieldPath) -> Option<Position> {
        let mut p = path.parent();
        while let Some(parent) = p {
            if let Some(pos) = self.keys.get(&parent).or_else(|| self.values.get(&parent)) {
                return Some(*pos);
            }
            p = parent.parent();
        }
        None
    }
}

enum Frame {
    Map { path: FieldPath, key: Option<String> },
    Seq { path: FieldPath, next: usize },
}

#[derive(Default)]
struct Indexer {
    stack: Vec<Frame>,
    locations: Locations,
}

impl Indexer {
    /// The path of the node that starts now, given what encloses it.
    fn child_path(&self) -> FieldPath {
        match self.stack.last() {
            None => FieldPath::root(),
            Some(Frame::Map { path, key }) => path.key(key.clone().unwrap_or_default()),
            Some(Frame::Seq { path, next }) => path.index(*next),
        }
    }

    /// Whether the next scalar in a mapping is a key.
    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    /// A value node finished: the enclosing mapping expects a key again, or the sequence moves on.
    fn finish_value(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { next, .. }) => *next += 1,
            None => {}
        }
    }

    fn start_node(&mut self, mark: Marker) -> FieldPath {
        let path = self.child_path();
        self.locations.values.entry(path.clone()).or_insert(position(mark));
        path
    }
}

fn position(mark: Marker) -> Position {
    Position { line: mark.line(), column: mark.col() + 1 }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, ..) => {
                if self.expecting_key() {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let field = path.key(text.clone());
                        let at = position(mark);
                        self.locations.keys.entry(field).or_insert(at);
                        // A block mapping's start is marked after its first key; the key is where
                        // a reader looks for it.
                        let map_at = self.locations.values.entry(path.clone()).or_insert(at);
                        if (at.line, at.column) < (map_at.line, map_at.column) {
                            *map_at = at;
                        }
                        *key = Some(text);
                    }
                } else {
                    self.start_node(mark);
                    self.finish_value();
                }
            }
            Event::Alias(_) => {
                if self.expecting_key() {
                    if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                        *key = Some("*alias".into());
                    }
                } else {
                    self.start_node(mark);
                    self.finish_value();
                }
            }
            Event::MappingStart(..) => {
                let path = self.start_node(mark);
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.start_node(mark);
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.finish_value();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_values_in_block_and_flow_style() {
        let text = "name: x\nprobes:\n  - name: a\n    tcp: { port: 22 }\n  - name: b\n    http:\n      port: 80\n";
        let loc = Locations::index(text);
        let probes = FieldPath::root().key("probes");
        assert_eq!(loc.key_or_value(&probes), Some(Position { line: 2, column: 1 }));
        let port = probes.index(0).key("tcp").key("port");
        assert_eq!(loc.key_or_value(&port), Some(Position { line: 4, column: 12 }));
        let http_port = probes.index(1).key("http").key("port");
        assert_eq!(loc.value(&http_port), Some(Position { line: 7, column: 13 }));
        // A field that is not written points at the nearest enclosing one.
        let missing = probes.index(1).key("expect");
        assert_eq!(loc.key_or_value(&missing), Some(Position { line: 5, column: 5 }));
    }
}
