//! The `Online` list: everyone signed in right now, with an initials avatar,
//! their name, away state and tab count, the current user marked.

use leptos::prelude::*;

use super::identity::initials;
use super::shown::Shown;
use crate::client::Identity;
use crate::protocol::{PresenceUser, UserStatus};

#[component]
pub fn Online() -> impl IntoView {
    let identity = expect_context::<Identity>();
    let me = move || identity.user.with(|u| u.as_ref().map(|u| u.id.clone()));
    let alone = move || {
        let me = me();
        identity
            .people
            .with(|people| people.iter().all(|p| Some(&p.id) == me.as_ref()))
    };
    view! {
        <section class="panel" aria-labelledby="online-heading">
            <h2 id="online-heading">"Online"</h2>
            <Shown
                when=move || identity.user.with(Option::is_some)
                fallback=|| view! { <p class="empty">"Join to see who is online."</p> }
            >
                <ul class="people" aria-label="Online">
                    <For each=move || identity.people.get() key=|p| (p.id.clone(), p.name.clone(), p.status, p.connections) let:person>
                        <Person is_me=me() == Some(person.id.clone()) person/>
                    </For>
                </ul>
                <Shown when=alone fallback=|| ()>
                    <p class="empty">"Nobody else is here yet — open a second window."</p>
                </Shown>
            </Shown>
        </section>
    }
}

#[component]
fn Person(person: PresenceUser, is_me: bool) -> impl IntoView {
    let away = person.status == UserStatus::Away;
    let tabs = (person.connections > 1).then(|| format!("{} tabs", person.connections));
    view! {
        <li class=if away { "person away" } else { "person" }>
            <span class="avatar" aria-hidden="true">{initials(&person.name)}</span>
            <span class="person-name">{person.name.clone()}</span>
            {is_me.then(|| view! { <span class="tag">"you"</span> })}
            {away.then(|| view! { <span class="tag">"away"</span> })}
            {tabs.map(|tabs| view! { <span class="tag">{tabs}</span> })}
        </li>
    }
}
