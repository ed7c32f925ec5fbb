//! The front-end-only entry point for `trunk serve`: renders the app in the
//! browser with no server-side rendering; `/ws` is proxied to a running server.

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(pulse::app::App);
}
