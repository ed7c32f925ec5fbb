//! The "new version" banner: the server is another build than this page's
//! wasm, so a reload would get the new one. Polite, never reloads by itself;
//! the page keeps working meanwhile.

use leptos::prelude::*;

use super::shown::Shown;
use crate::client::Connection;

/// "A new version of Pulse is available — Reload", while the server is
/// another build. The live region (`role="status"`) is always in the page, so
/// a screen reader announces the text when it appears.
#[component]
pub fn NewVersionBanner() -> impl IntoView {
    let connection = expect_context::<Connection>();
    let shown = connection.new_version;
    view! {
        <div class="new-version" role="status" aria-label="New version">
            <Shown when=move || shown.get() fallback=|| ()>
                <p class="new-version-banner">
                    "A new version of Pulse is available — "
                    <button type="button" on:click=move |_| reload()>"Reload"</button>
                </p>
            </Shown>
        </div>
    }
}

/// Loads the page again (the server's new bundle with it).
fn reload() {
    #[cfg(feature = "browser")]
    {
        let _ = window().location().reload();
    }
}
