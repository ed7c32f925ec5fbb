//! The header's identity area: the `Name` + `Join` form when signed out, the
//! user's initials avatar, name and `Leave` when signed in.

use leptos::either::Either;
use leptos::ev::SubmitEvent;
use leptos::prelude::*;

use crate::client;

/// Up to two initials of a name, in capitals, for the avatar.
pub fn initials(name: &str) -> String {
    let mut words = name.split_whitespace();
    let first = words.next().and_then(|w| w.chars().next());
    let last = words.last().and_then(|w| w.chars().next());
    client::case::upper(&first.into_iter().chain(last).collect::<String>())
}

#[component]
pub fn Identity() -> impl IntoView {
    let identity = expect_context::<client::Identity>();
    let name = RwSignal::new(String::new());
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        identity.join(name.get_untracked());
    };
    view! {
        <div class="identity">
            {move || match identity.user.get() {
                Some(user) => Either::Left(view! {
                    <span class="avatar" aria-hidden="true">{initials(&user.name)}</span>
                    <span class="user-name">{user.name.clone()}</span>
                    <button type="button" on:click=move |_| identity.leave()>"Leave"</button>
                }),
                None => Either::Right(view! {
                    <form class="join" on:submit=on_submit>
                        <label class="visually-hidden" for="name-input">"Name"</label>
                        <input
                            id="name-input"
                            type="text"
                            placeholder="Your name"
                            autocomplete="nickname"
                            maxlength="32"
                            aria-describedby="join-problem"
                            prop:value=move || name.get()
                            on:input=move |event| name.set(event_target_value(&event))
                        />
                        <button type="submit">"Join"</button>
                        <span id="join-problem" class="form-problem" role="alert">
                            {move || identity.join_problem.get()}
                        </span>
                    </form>
                }),
            }}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::initials;

    #[test]
    fn initials_take_the_first_and_last_word() {
        assert_eq!(initials("Ada Lovelace"), "AL");
        assert_eq!(initials("bob"), "B");
        assert_eq!(initials("Jean Paul Sartre"), "JS");
        assert_eq!(initials("  "), "");
        assert_eq!(initials("émile zola"), "ÉZ");
    }
}
