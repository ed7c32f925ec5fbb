//! Owns `<Shown>`: leptos' `<Show>` with its fallback kept as its own type.
//! `<Show>` takes the fallback as a `ViewFn` (an `AnyView`), so every use
//! compiles a type-erased view (build, rebuild, hydrate, HTML) even for the
//! empty fallback; here the fallback is a typed closure and the branch an
//! `Either`. Otherwise it is `<Show>`: the condition memoised, the children
//! built again only when it turns true.

use leptos::either::Either;
use leptos::prelude::*;

/// `children` while `when` is true, else `fallback` (`|| ()` for nothing).
#[component]
pub fn Shown<W, C, F, V>(children: TypedChildrenFn<C>, when: W, fallback: F) -> impl IntoView
where
    W: Fn() -> bool + Send + Sync + 'static,
    C: IntoView + 'static,
    F: Fn() -> V + Send + Sync + 'static,
    V: IntoView + 'static,
{
    let memoized_when = ArcMemo::new(move |_| when());
    let children = children.into_inner();
    move || match memoized_when.get() {
        true => Either::Left(children()),
        false => Either::Right(fallback()),
    }
}
