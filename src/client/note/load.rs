//! Brings the note's engine in. On a split build (`cfg(pulse_split)`, set
//! by build.rs when cargo-leptos links with `--split`), the engine is a
//! second wasm module fetched on first use; a failed fetch is an error the
//! caller retries (nothing is cached but success). Otherwise (the server,
//! native tests, `cargo leptos watch`, the CSR build) it is compiled in and
//! ready at once.

use super::NoteReplica;

/// The note's wasm module could not be fetched or instantiated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the note's editor could not load")]
pub struct NoteLoadError;

#[cfg(pulse_split)]
impl From<leptos::wasm_split::SplitLoaderError> for NoteLoadError {
    fn from(_: leptos::wasm_split::SplitLoaderError) -> Self {
        NoteLoadError
    }
}

/// A new replica with Yjs client id `client_id`, from the note's module
/// (loaded first if it is not yet).
pub async fn load_replica(client_id: u64) -> Result<Box<dyn NoteReplica>, NoteLoadError> {
    #[cfg(pulse_split)]
    {
        make(client_id).await
    }
    #[cfg(not(pulse_split))]
    {
        Ok(super::new_replica(client_id))
    }
}

/// The split point: this function and all it reaches go into the module
/// `pulse_note`.
#[cfg(pulse_split)]
#[leptos::wasm_split::wasm_split(pulse_note, fallible, wasm_split_path = ::leptos::wasm_split)]
fn make(client_id: u64) -> Result<Box<dyn NoteReplica>, NoteLoadError> {
    Ok(super::new_replica(client_id))
}
