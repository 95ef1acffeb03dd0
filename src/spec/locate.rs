//! Finds where each field of a YAML document is: field path -> line and column.
//!
//! serde_yaml reports positions only for the error it stops at. Unknown keys and the checks made
//! after deserializing need positions too, so the text is read once more with an event parser that
//! marks every node. That same pass is the exact check of nesting depth and alias expansion, made
//! before serde_yaml (which would expand every alias) sees the document.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

use super::limits::{LimitError, MAX_ALIAS_NODES, MAX_DEPTH};
use super::path::{FieldPath, Segment};

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Positions by field path, kept as a tree of path segments: a node's path is never stored whole,
/// so memory grows with the document, not with the document times its depth.
#[derive(Debug)]
pub struct Locations {
    nodes: Vec<Place>,
    children: HashMap<(usize, Segment), usize>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Place {
    key: Option<Position>,
    value: Option<Position>,
}

const ROOT: usize = 0;

impl Default for Locations {
    fn default() -> Self {
        Locations { nodes: vec![Place::default()], children: HashMap::new() }
    }
}

impl Locations {
    /// Indexes `text`. A document that does not parse keeps what was indexed before the syntax error
    /// (serde_yaml reports the error); one nested too deep, or whose aliases expand too far, is an
    /// error where the limit is crossed.
    pub fn index(text: &str) -> Result<Self, LimitError> {
        let mut indexer = Indexer::default();
        let mut parser = Parser::new_from_str(text);
        loop {
            match parser.next_token() {
                // One document: serde_yaml refuses a second one anyway.
                Ok((Event::StreamEnd | Event::DocumentEnd, _)) => break,
                Ok((event, mark)) => indexer.on_event(event, mark)?,
                // The scanner reads ahead, and stops on 256 open brackets before the events
                // reach the depth limit: that is the same limit, hit sooner.
                Err(e) if e.info() == "recursion limit exceeded" => return Err(too_deep(*e.marker())),
                Err(_) => break,
            }
        }
        Ok(indexer.locations)
    }

    fn child(&mut self, parent: usize, segment: Segment) -> usize {
        let next = self.nodes.len();
        let id = *self.children.entry((parent, segment)).or_insert(next);
        if id == next {
            self.nodes.push(Place::default());
        }
        id
    }

    /// The node of each prefix of `path` that was written, from the root down.
    fn walk(&self, path: &FieldPath) -> Vec<usize> {
        let mut found = vec![ROOT];
        for segment in path.segments() {
            let Some(&id) = found.last().and_then(|&parent| self.children.get(&(parent, segment.clone()))) else {
                break;
            };
            found.push(id);
        }
        found
    }

    /// Where the key of this field is written, else its value, else the nearest enclosing field.
    pub fn key_or_value(&self, path: &FieldPath) -> Option<Position> {
        self.lookup(path, |p| p.key.or(p.value))
    }

    /// Where the value of this field starts, else its key, else the nearest enclosing field.
    pub fn value(&self, path: &FieldPath) -> Option<Position> {
        self.lookup(path, |p| p.value.or(p.key))
    }

    fn lookup(&self, path: &FieldPath, own: impl Fn(&Place) -> Option<Position>) -> Option<Position> {
        let found = self.walk(path);
        let whole = found.len() == path.segments().len() + 1;
        let mut enclosing = found.iter().rev();
        if whole {
            if let Some(pos) = enclosing.next().and_then(|&id| own(&self.nodes[id])) {
                return Some(pos);
            }
        }
        enclosing.find_map(|&id| self.nodes[id].key.or(self.nodes[id].value))
    }
}

enum Frame {
    Map { node: usize, key: Option<usize> },
    Seq { node: usize, next: usize },
}

/// An open collection, for measuring what an anchor on it stands for.
struct Open {
    frame: Frame,
    anchor: usize,
    /// `nodes` when it started.
    nodes_before: usize,
    /// The deepest level reached inside it (itself included).
    deepest: usize,
}

/// What an anchored node expands to wherever an alias repeats it.
#[derive(Clone, Copy)]
struct Anchor {
    nodes: usize,
    /// Levels of collections, itself included (0 for a scalar).
    height: usize,
}

#[derive(Default)]
struct Indexer {
    stack: Vec<Open>,
    locations: Locations,
    anchors: HashMap<usize, Anchor>,
    /// Nodes seen so far, aliases counted as what they expand to.
    nodes: usize,
    /// Nodes added by aliases.
    from_aliases: usize,
}

impl Indexer {
    /// The node that starts now, given what encloses it.
    fn child_node(&mut self) -> usize {
        match self.stack.last().map(|o| &o.frame) {
            None => ROOT,
            Some(&Frame::Map { node, key }) => match key {
                Some(key) => key,
                None => self.locations.child(node, Segment::Key(String::new())),
            },
            Some(&Frame::Seq { node, next }) => self.locations.child(node, Segment::Index(next)),
        }
    }

    /// Whether the next scalar in a mapping is a key.
    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Open { frame: Frame::Map { key: None, .. }, .. }))
    }

    /// A value node finished: the enclosing mapping expects a key again, or the sequence moves on.
    fn finish_value(&mut self) {
        match self.stack.last_mut().map(|o| &mut o.frame) {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { next, .. }) => *next += 1,
            None => {}
        }
    }

    fn start_node(&mut self, mark: Marker) -> usize {
        let node = self.child_node();
        let place = &mut self.locations.nodes[node];
        place.value = place.value.or(Some(position(mark)));
        node
    }

    fn set_key(&mut self, name: String, mark: Marker) {
        let Some(Open { frame: Frame::Map { node, .. }, .. }) = self.stack.last() else { return };
        let map = *node;
        let field = self.locations.child(map, Segment::Key(name));
        let at = position(mark);
        let place = &mut self.locations.nodes[field];
        place.key = place.key.or(Some(at));
        // A block mapping's start is marked after its first key; the key is where a reader looks.
        let map_place = &mut self.locations.nodes[map];
        match map_place.value {
            Some(v) if (v.line, v.column) <= (at.line, at.column) => {}
            _ => map_place.value = Some(at),
        }
        if let Some(Open { frame: Frame::Map { key, .. }, .. }) = self.stack.last_mut() {
            *key = Some(field);
        }
    }

    fn open(&mut self, frame: Frame, anchor: usize, mark: Marker) -> Result<(), LimitError> {
        let depth = self.stack.len() + 1;
        if depth > MAX_DEPTH {
            return Err(too_deep(mark));
        }
        self.nodes += 1;
        self.stack.push(Open { frame, anchor, nodes_before: self.nodes - 1, deepest: depth });
        Ok(())
    }

    fn close(&mut self) {
        if let Some(open) = self.stack.pop() {
            let depth = self.stack.len() + 1;
            if open.anchor != 0 {
                let anchor = Anchor { nodes: self.nodes - open.nodes_before, height: open.deepest + 1 - depth };
                self.anchors.insert(open.anchor, anchor);
            }
            if let Some(parent) = self.stack.last_mut() {
                parent.deepest = parent.deepest.max(open.deepest);
            }
        }
        self.finish_value();
    }

    fn alias(&mut self, id: usize, mark: Marker) -> Result<(), LimitError> {
        let anchor = self.anchors.get(&id).copied().unwrap_or(Anchor { nodes: 1, height: 0 });
        let depth = self.stack.len() + anchor.height;
        if depth > MAX_DEPTH {
            return Err(too_deep(mark));
        }
        if let Some(parent) = self.stack.last_mut() {
            parent.deepest = parent.deepest.max(depth);
        }
        self.nodes = self.nodes.saturating_add(anchor.nodes);
        self.from_aliases = self.from_aliases.saturating_add(anchor.nodes);
        if self.from_aliases > MAX_ALIAS_NODES {
            return Err(LimitError {
                position: position(mark),
                message: format!("aliases expand to more than {MAX_ALIAS_NODES} values"),
                help: Some("each `*name` repeats its anchor's whole value, and nested ones multiply".into()),
            });
        }
        Ok(())
    }

    fn on_event(&mut self, event: Event, mark: Marker) -> Result<(), LimitError> {
        match event {
            Event::Scalar(text, _, anchor, _) => {
                if self.expecting_key() {
                    self.set_key(text, mark);
                } else {
                    self.start_node(mark);
                    self.finish_value();
                }
                self.nodes += 1;
                if anchor != 0 {
                    self.anchors.insert(anchor, Anchor { nodes: 1, height: 0 });
                }
            }
            Event::Alias(id) => {
                self.alias(id, mark)?;
                if self.expecting_key() {
                    self.set_key("*alias".into(), mark);
                } else {
                    self.start_node(mark);
                    self.finish_value();
                }
            }
            Event::MappingStart(anchor, _) => {
                let node = self.start_node(mark);
                self.open(Frame::Map { node, key: None }, anchor, mark)?;
            }
            Event::SequenceStart(anchor, _) => {
                let node = self.start_node(mark);
                self.open(Frame::Seq { node, next: 0 }, anchor, mark)?;
            }
            Event::MappingEnd | Event::SequenceEnd => self.close(),
            _ => {}
        }
        Ok(())
    }
}

fn position(mark: Marker) -> Position {
    Position { line: mark.line(), column: mark.col() + 1 }
}

fn too_deep(mark: Marker) -> LimitError {
    LimitError {
        position: position(mark),
        message: format!("spec is nested more than {MAX_DEPTH} levels deep"),
        help: Some("a spec's own structure is a few levels deep; this looks generated by mistake".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_values_in_block_and_flow_style() {
        let text = "name: x\nprobes:\n  - name: a\n    tcp: { port: 22 }\n  - name: b\n    http:\n      port: 80\n";
        let loc = Locations::index(text).unwrap();
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

#[cfg(test)]
mod limit_tests {
    use super::*;

    fn error(text: &str) -> Option<String> {
        Locations::index(text).err().map(|e| format!("{}:{} {}", e.position.line, e.position.column, e.message))
    }

    #[test]
    fn refuses_nesting_however_it_is_written() {
        // The text scan in `limits` can be fooled; the parser's own events can't.
        for prefix in ["? ", "x: !tag ", "x: &a ", "x: "] {
            for open in ["[", "{a: ", "[{a: "] {
                for depth in [65, 300, 100_000] {
                    let text = format!("name: t\n{prefix}{}\n", open.repeat(depth));
                    let e = error(&text).unwrap_or_else(|| panic!("{prefix:?} {open:?} x {depth} accepted"));
                    assert!(e.starts_with("2:") && e.contains("more than 64 levels"), "{e}");
                }
            }
        }
        let block: String = (0..70).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        // (yaml-rust2 marks a block mapping after its first key, so only the line is exact.)
        assert!(error(&block).is_some_and(|e| e.starts_with("65:")), "{:?}", error(&block));
        assert_eq!(error(&format!("x: \"{}\"\n", "[".repeat(1000))), None, "quoted text is not nesting");
    }

    #[test]
    fn counts_what_aliases_expand_to() {
        let mut lol = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..6 {
            lol.push_str(&format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 10].join(", ")));
        }
        // a3 is 11,111 values: the aliases before a4 add 12,330, and a4's eighth `*a3` crosses 100,000.
        assert_eq!(error(&lol).as_deref(), Some("5:45 aliases expand to more than 100000 values"));
        // A deep anchor repeated where it is already deep is too deep as a whole.
        let deep = format!("a: &d {}{}\nb: {}*d{}\n", "[".repeat(40), "]".repeat(40), "[".repeat(30), "]".repeat(30));
        assert!(error(&deep).is_some_and(|e| e.contains("more than 64 levels")), "{deep}");
        assert_eq!(error("a: &x [1, 2]\nb: [*x, *x]\n"), None);
    }
}
