//! Owns an awareness state's JSON (PROTOCOL.md, "Channels, offsets and
//! resume": each state is
//! `{"user": {"id", "name", "color"}, "cursor": {"anchor", "head"} | null}`),
//! the part of a y-protocols awareness update that says who edits where.
//! The positions are Yjs relative positions, whose JSON is yrs' own
//! (`StickyIndex`): their type is the caller's, so this module needs no yrs.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Who a co-editor is, as their awareness state says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EditorUser {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub color: String,
}

/// A caret or selection: where it starts (`anchor`) and where it ends
/// (`head`), as Yjs relative positions (`Y.relativePositionToJSON`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor<P> {
    pub anchor: P,
    pub head: P,
}

/// One awareness state; `P` is the relative position's type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditorState<P> {
    #[serde(default)]
    pub user: EditorUser,
    #[serde(default = "Option::default")]
    pub cursor: Option<Cursor<P>>,
}

impl<P: Serialize> EditorState<P> {
    /// The state as an awareness update carries it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

impl<P: DeserializeOwned> EditorState<P> {
    /// A state an awareness update carried; `None` for `null` (the editor
    /// left) and for a state this page cannot read, which counts as none.
    pub fn from_json(json: &str) -> Option<Self> {
        serde_json::from_str::<Option<Self>>(json).ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const STATE: &str = r#"{"user":{"id":"guest:ann","name":"Ann","color":"c3"},"cursor":{"anchor":{"item":{"client":1,"clock":4},"assoc":0},"head":{"item":{"client":1,"clock":6},"assoc":-1}}}"#;

    #[test]
    fn a_state_reads_back_and_is_written_the_same() {
        let state = EditorState::<Value>::from_json(STATE).unwrap();
        assert_eq!(state.user.name, "Ann");
        assert!(state.cursor.is_some());
        // (`Value` sorts an object's keys, so compare values, not text.)
        let written: Value = serde_json::from_str(&state.to_json()).unwrap();
        assert_eq!(written, serde_json::from_str::<Value>(STATE).unwrap());
    }

    #[test]
    fn null_or_an_unreadable_state_is_no_state_and_missing_fields_default() {
        assert_eq!(EditorState::<Value>::from_json("null"), None);
        assert_eq!(EditorState::<Value>::from_json("[1]"), None);
        let bare = EditorState::<Value>::from_json("{}").unwrap();
        assert_eq!((bare.user, bare.cursor), (EditorUser::default(), None));
    }
}
