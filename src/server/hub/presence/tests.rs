//! Presence as plain data: joins, leaves, grace periods and coalescing,
//! driven by explicit instants.

use super::*;

const GRACE: Duration = Duration::from_secs(5);
const MS: Duration = Duration::from_millis(1);

fn user(id: &str) -> UserRef {
    UserRef {
        id: id.into(),
        name: id.to_uppercase(),
    }
}

fn shown(id: &str, status: UserStatus, connections: u32) -> PresenceUser {
    PresenceUser {
        id: id.into(),
        name: id.to_uppercase(),
        status,
        connections,
    }
}

fn presence() -> Presence {
    Presence::new(GRACE)
}

#[test]
fn the_first_connection_joins_and_more_tabs_update_the_count() {
    let mut presence = presence();
    let t0 = Instant::now();
    let change = presence.connect(&user("ann"), 1, t0);
    assert_eq!(change.joins, [shown("ann", UserStatus::Online, 1)]);
    let change = presence.connect(&user("ann"), 2, t0 + COALESCE);
    assert_eq!(change.updates, [shown("ann", UserStatus::Online, 2)]);
    assert!(change.joins.is_empty());
    assert_eq!(presence.users(), [shown("ann", UserStatus::Online, 2)]);
}

#[test]
fn closing_one_tab_of_two_keeps_the_user() {
    let mut presence = presence();
    let t0 = Instant::now();
    presence.connect(&user("ann"), 1, t0);
    presence.connect(&user("ann"), 2, t0 + COALESCE);
    let t1 = t0 + COALESCE * 2;
    let change = presence.disconnect("ann", &1, t1);
    assert_eq!(change.updates, [shown("ann", UserStatus::Online, 1)]);
    assert!(presence.due(t1 + GRACE * 10).is_empty());
    assert_eq!(presence.next_deadline(), None);
}

#[test]
fn the_last_tab_leaves_only_after_the_grace() {
    let mut presence = presence();
    let t0 = Instant::now();
    presence.connect(&user("ann"), 1, t0);
    assert!(
        presence.disconnect("ann", &1, t0).is_empty(),
        "no leave at once"
    );
    assert_eq!(presence.users().len(), 1, "still listed during the grace");
    assert_eq!(presence.next_deadline(), Some(t0 + GRACE));
    assert!(presence.due(t0 + GRACE - MS).is_empty());
    let change = presence.due(t0 + GRACE);
    assert_eq!(change.leaves, [shown("ann", UserStatus::Online, 1)]);
    assert!(presence.users().is_empty());
    assert_eq!(presence.next_deadline(), None);
}

#[test]
fn a_reload_within_the_grace_does_not_flap() {
    let mut presence = presence();
    let t0 = Instant::now();
    presence.connect(&user("ann"), 1, t0);
    presence.disconnect("ann", &1, t0);
    let change = presence.connect(&user("ann"), 2, t0 + MS);
    assert!(
        change.is_empty(),
        "no leave, no join, nothing changed: {change:?}"
    );
    assert_eq!(presence.next_deadline(), None, "the leave is cancelled");
    assert!(presence.due(t0 + GRACE * 2).is_empty());
}

#[test]
fn a_user_is_away_when_every_tab_is_away() {
    let mut presence = presence();
    let t0 = Instant::now();
    presence.connect(&user("ann"), 1, t0);
    presence.connect(&user("ann"), 2, t0 + COALESCE);
    let t1 = t0 + COALESCE * 2;
    assert!(
        presence
            .set_status("ann", &1, UserStatus::Away, t1)
            .is_empty(),
        "tab 2 is still online"
    );
    let change = presence.set_status("ann", &2, UserStatus::Away, t1);
    assert_eq!(change.updates, [shown("ann", UserStatus::Away, 2)]);
    let change = presence.set_status("ann", &1, UserStatus::Online, t1 + COALESCE);
    assert_eq!(change.updates, [shown("ann", UserStatus::Online, 2)]);
}

#[test]
fn changes_within_the_window_are_held_and_told_once_when_it_closes() {
    let mut presence = presence();
    let t0 = Instant::now();
    presence.connect(&user("ann"), 1, t0);
    // Joined at t0: nothing more about ann may go out before t0 + 250 ms.
    for (n, status) in [UserStatus::Away, UserStatus::Online, UserStatus::Away]
        .into_iter()
        .enumerate()
    {
        let change = presence.set_status("ann", &1, status, t0 + MS * (n as u32 + 1));
        assert!(change.is_empty(), "held back: {change:?}");
    }
    assert_eq!(
        presence.users(),
        [shown("ann", UserStatus::Away, 1)],
        "a snapshot shows the user as they are"
    );
    assert_eq!(presence.next_deadline(), Some(t0 + COALESCE));
    assert!(presence.due(t0 + COALESCE - MS).is_empty());
    let change = presence.due(t0 + COALESCE);
    assert_eq!(change.updates, [shown("ann", UserStatus::Away, 1)]);
    assert_eq!(presence.next_deadline(), None);
    // The next change waits for the next window.
    let t1 = t0 + COALESCE;
    assert!(presence
        .set_status("ann", &1, UserStatus::Online, t1 + MS)
        .is_empty());
    assert_eq!(presence.next_deadline(), Some(t1 + COALESCE));
}

#[test]
fn a_change_undone_within_the_window_tells_nothing() {
    let mut presence = presence();
    let t0 = Instant::now();
    presence.connect(&user("ann"), 1, t0);
    presence.set_status("ann", &1, UserStatus::Away, t0 + MS);
    presence.set_status("ann", &1, UserStatus::Online, t0 + MS * 2);
    assert_eq!(presence.next_deadline(), None);
    assert!(presence.due(t0 + COALESCE * 4).is_empty());
}

#[test]
fn a_leave_waits_for_both_the_grace_and_the_window() {
    let mut presence = Presence::new(Duration::from_millis(50));
    let t0 = Instant::now();
    presence.connect(&user("ann"), 1, t0);
    presence.disconnect("ann", &1, t0 + MS);
    assert_eq!(presence.next_deadline(), Some(t0 + COALESCE));
    assert!(presence.due(t0 + Duration::from_millis(100)).is_empty());
    let change = presence.due(t0 + COALESCE);
    assert_eq!(change.leaves, [shown("ann", UserStatus::Online, 1)]);
}

#[test]
fn users_due_together_go_out_in_one_change() {
    let mut presence = presence();
    let t0 = Instant::now();
    for id in ["ann", "bob"] {
        presence.connect(&user(id), 1, t0);
        presence.set_status(id, &1, UserStatus::Away, t0 + MS);
    }
    let change = presence.due(t0 + COALESCE);
    assert_eq!(
        change.updates,
        [
            shown("ann", UserStatus::Away, 1),
            shown("bob", UserStatus::Away, 1)
        ]
    );
}

#[test]
fn unknown_users_and_connections_change_nothing() {
    let mut presence = presence();
    let now = Instant::now();
    assert!(presence.disconnect("nobody", &1, now).is_empty());
    assert!(presence
        .set_status("nobody", &1, UserStatus::Away, now)
        .is_empty());
    presence.connect(&user("ann"), 1, now);
    assert!(presence.disconnect("ann", &9, now).is_empty());
    assert_eq!(presence.next_deadline(), None);
}

#[test]
fn a_seeded_list_keeps_whoever_connects_and_lets_the_rest_leave() {
    let mut presence = presence();
    let t0 = Instant::now();
    let seeded = [
        shown("ann", UserStatus::Online, 2),
        shown("bob", UserStatus::Away, 1),
    ];
    presence.seed(seeded.clone(), Duration::ZERO, t0);
    assert_eq!(presence.users(), seeded, "listed as shown");
    let change = presence.connect(&user("ann"), 1, t0);
    assert_eq!(change.updates, [shown("ann", UserStatus::Online, 1)]);
    assert!(presence.due(t0 + GRACE - MS).is_empty());
    let change = presence.due(t0 + GRACE);
    assert_eq!(change.leaves, [shown("bob", UserStatus::Away, 1)]);
    assert_eq!(presence.users(), [shown("ann", UserStatus::Online, 1)]);
}

#[test]
fn a_seeded_user_stays_at_least_as_long_as_asked() {
    let mut presence = presence();
    let t0 = Instant::now();
    presence.seed([shown("bob", UserStatus::Online, 1)], GRACE * 2, t0);
    assert_eq!(presence.next_deadline(), Some(t0 + GRACE * 2));
    assert!(presence.due(t0 + GRACE * 2 - MS).is_empty());
    assert_eq!(presence.due(t0 + GRACE * 2).leaves.len(), 1);
}

#[test]
fn users_are_listed_by_id() {
    let mut presence = presence();
    for id in ["cid", "ann", "bob"] {
        presence.connect(&user(id), 1, Instant::now());
    }
    let ids: Vec<_> = presence.users().into_iter().map(|u| u.id).collect();
    assert_eq!(ids, ["ann", "bob", "cid"]);
}
