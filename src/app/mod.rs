//! The Leptos views: the HTML shell and the dashboard. Views read the signals
//! of [`crate::client`] and do no IO of their own.

mod chat;
mod header;
mod identity;
mod notifications;
mod presence;
mod ticker;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::StaticSegment;

use crate::client;
use chat::ChatPanel;
use header::Header;
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
                // id="leptos" lets `cargo leptos watch` hot-reload the CSS.
                <link rel="stylesheet" id="leptos" href="/pkg/pulse.css"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The application: one dashboard page.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    client::provide_live_connection();
    view! {
        <Title text="Pulse"/>
        <Router>
            <Routes fallback=NotFound>
                <Route path=StaticSegment("") view=Dashboard/>
            </Routes>
        </Router>
    }
}

/// The dashboard at `/`.
#[component]
fn Dashboard() -> impl IntoView {
    view! {
       <Header/>
       <main class="layout">
           <Watchlist/>
           <aside class="side-column" aria-label="People">
               <Online/>
               <ChatPanel/>
           </aside>
           <Toast/>
       </main>
    }
    .into_any()
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
