//! Reporters: the terminal display while a run goes, and the files people read afterwards.

pub mod terminal;
