//! The Leptos views: the HTML shell and the dashboard. Views read the signals
//! of [`crate::client`] and do no IO of their own.

mod chat;
mod header;
mod identity;
mod new_version;
mod note;
mod notifications;
mod presence;
mod shown;
mod ticker;

use leptos::either::Either;
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, MetaTags, Title};

use crate::client;
use chat::ChatPanel;
use header::Header;
use new_version::NewVersionBanner;
use note::NotePanel;
use notifications::Toast;
use presence::Online;
use ticker::Watchlist;

/// The HTML document around the app, rendered by the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                // id="leptos" for `cargo leptos watch`'s CSS reload; the
                // file's name carries its hash in a hashed release build.
                <HashedStylesheet options=options.clone() id="leptos"/>
                <AutoReload options=options.clone()/>
                // The protocol inspector's hook (server/inspector/): plain
                // JavaScript before the bundle, so it sees the page's socket;
                // the inspector itself loads only when opened.
                <script type="module" src="/inspector/hook.js" nonce=leptos::nonce::use_nonce()></script>
                {split_loader(&options).map(|href| view! {
                    <link rel="modulepreload" href=href crossorigin=leptos::nonce::use_nonce()/>
                })}
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The note module's loader on a split release build, which the page
/// preloads (`server/assets.rs`); the browser renders no shell.
#[cfg(feature = "ssr")]
fn split_loader(options: &LeptosOptions) -> Option<String> {
    crate::server::assets::split_loader(options)
}

#[cfg(not(feature = "ssr"))]
fn split_loader(_options: &LeptosOptions) -> Option<String> {
    None
}

/// Which page the app shows: the dashboard at `/`; any other path that is
/// not a file is "not found".
///
/// One page needs no router: leptos_router (its path matching, history
/// handling and the type-erased views a route is made of) was a sixth of the
/// wasm bundle. The server registers `/` for the app (an app without routes
/// gets exactly that one) and renders every other path through its fallback,
/// which provides [`Page::NotFound`]; the browser reads its address bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Dashboard,
    NotFound,
}

impl Page {
    /// The page of a URL path.
    pub fn of_path(path: &str) -> Page {
        if path == "/" {
            Page::Dashboard
        } else {
            Page::NotFound
        }
    }

    /// The page being rendered: what the server's handler provided (the
    /// dashboard unless its fallback said otherwise).
    #[cfg(not(feature = "browser"))]
    fn current() -> Page {
        use_context::<Page>().unwrap_or(Page::Dashboard)
    }

    /// The page being hydrated or mounted: the browser's location.
    #[cfg(feature = "browser")]
    fn current() -> Page {
        Page::of_path(&window().location().pathname().unwrap_or_default())
    }
}

/// The application: the dashboard, or "not found".
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    client::provide_live();
    let page = match Page::current() {
        Page::Dashboard => Either::Left(view! { <Dashboard/> }),
        Page::NotFound => Either::Right(view! { <NotFound/> }),
    };
    view! {
        <Title text="Pulse"/>
        {page}
    }
}

/// The dashboard at `/`.
#[component]
fn Dashboard() -> impl IntoView {
    view! {
       <Header/>
       <NewVersionBanner/>
       <main class="layout">
           <Watchlist/>
           <aside class="side-column" aria-label="People">
               <Online/>
               <ChatPanel/>
           </aside>
           <NotePanel/>
           <Toast/>
       </main>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    // The server's file-and-error fallback answers unknown paths with 404.
    view! {
        <main class="not-found">
            <h1>"Page not found"</h1>
            <p><a href="/">"Back to the dashboard"</a></p>
        </main>
    }
}
