//! Owns the live connection's signals, provided as context to every view:
//! the connection status, the watchlist and one signal per watched symbol
//! (so a tick re-renders its own row only). Server messages reach them
//! through [`LiveConnection::apply`], which runs the pure reducer.

use leptos::prelude::*;
use std::collections::HashMap;

use super::chat::{self, ChatLine, ChatLog};
use super::initial::{InitialState, NotePreview, MAX_WATCHLIST};
use super::note::{color_of, EditorUser, Note, Peer, NOTE_DOC};
use super::outbox::{Due, Outbox, OUTBOX_CAPACITY};
use super::store::{apply_presence, sort_people, Cursors, QuoteView, Renewal};
use crate::protocol::{
    check_guest_name, Channel, ChatSend, ClientEnvelope, ClientMessage, DocAwarenessRequest,
    ErrorBody, ErrorCode, HistoryRequest, MarkRead, Notification, PresenceUser, ServerMessage,
    Since, Snapshot, Subscribe, SubscribeChannel, UserRef,
};
use base64::Engine as _;

/// Updates and awareness travel as standard base64.
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// The least time between two awareness updates of this page (the server
/// relays at most 10 a second).
const CURSOR_EVERY_MS: f64 = 120.0;

/// The room every page starts in.
pub const DEFAULT_ROOM: &str = "general";

/// What the views ask of the socket driver.
pub enum ToDriver {
    /// Send this now if welcomed (dropped otherwise: subscriptions are
    /// renewed and the status is sent after every `welcome`).
    Send(ClientEnvelope),
    /// The outbox has something new to send.
    Pump,
}

/// Hands a request to the socket driver; `false` when it could not.
pub type Sender = std::sync::Arc<dyn Fn(ToDriver) -> bool + Send + Sync>;

/// What the `Connection` badge says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionStatus {
    /// Not connected; `connecting` while the first attempt is under way.
    Offline { connecting: bool },
    /// The server answered `hello` with `welcome`.
    Connected,
    /// The socket closed; the next attempt is in `in_secs` seconds.
    Reconnecting { in_secs: u32 },
}

impl ConnectionStatus {
    pub fn label(&self) -> String {
        match self {
            ConnectionStatus::Offline { connecting: true } => "Offline · connecting…".into(),
            ConnectionStatus::Offline { connecting: false } => "Offline".into(),
            ConnectionStatus::Connected => "Connected".into(),
            ConnectionStatus::Reconnecting { in_secs: 0 } => "Reconnecting…".into(),
            ConnectionStatus::Reconnecting { in_secs } => format!("Reconnecting in {in_secs} s"),
        }
    }

    pub fn css_class(&self) -> &'static str {
        match self {
            ConnectionStatus::Offline { .. } => "offline",
            ConnectionStatus::Connected => "connected",
            ConnectionStatus::Reconnecting { .. } => "reconnecting",
        }
    }
}

/// Why a symbol could not be added to the watchlist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchlistError {
    #[error("“{0}” is not a symbol: use 1 to 12 letters, digits or dots")]
    NotASymbol(String),
    #[error("{0} is already on the watchlist")]
    AlreadyWatched(String),
    #[error("the watchlist holds at most {MAX_WATCHLIST} symbols")]
    Full,
}

/// The signals of the one live connection; cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct LiveConnection {
    pub status: RwSignal<ConnectionStatus>,
    pub watchlist: RwSignal<Vec<String>>,
    /// The signed-in user (`None`: anonymous), as the server's `welcome` said.
    pub user: RwSignal<Option<UserRef>>,
    /// Who is online, in name order (signed-in users only).
    pub people: RwSignal<Vec<PresenceUser>>,
    /// Why the last attempt to join failed, for the form.
    pub join_problem: RwSignal<Option<String>>,
    /// Bumped to make the socket driver reconnect now (after join or leave).
    pub generation: RwSignal<u64>,
    /// Chat rooms joined on this page, and the one shown.
    pub rooms: RwSignal<Vec<String>>,
    pub room: RwSignal<String>,
    /// Unread notifications, oldest first (the newest 100 at most), and the
    /// one the toast shows.
    pub unread: RwSignal<Vec<Notification>>,
    /// How many notifications are unread in all (more than `unread` holds
    /// when over a hundred wait).
    pub total_unread: RwSignal<u64>,
    pub toast: RwSignal<Option<Notification>>,
    /// One signal per room's log.
    lines: StoredValue<HashMap<String, RwSignal<ChatLog>>>,
    /// Hands a message to the socket driver (installed by it; `None` on the
    /// server); `false` when it cannot be sent now.
    sender: StoredValue<Option<Sender>>,
    /// The signed-in user's messages not acknowledged yet, sent again after
    /// every reconnect.
    outbox: StoredValue<Outbox>,
    /// Set when the outbox overflowed and dropped a message.
    pub outbox_warning: RwSignal<Option<String>>,
    /// Bumped by "retry now".
    pub retry: RwSignal<u64>,
    /// One signal per symbol ever watched on this page.
    quotes: StoredValue<HashMap<String, RwSignal<Option<QuoteView>>>>,
    cursors: StoredValue<Cursors>,
    /// The owner the per-symbol signals belong to (the app's), so signals
    /// made from the socket task are disposed with the app.
    owner: StoredValue<Owner>,
    /// The page's replica of the shared note (its undo history is apart:
    /// see [`NOTE_UNDO`]).
    note: StoredValue<Note>,
    /// The note's text, as the text area shows it: until the note is
    /// loaded, the beginning the server rendered (with a marker when the
    /// note goes on); then the replica's text.
    pub note_text: RwSignal<String>,
    /// Whether the replica holds the note's state from the server (the
    /// `subscribed` snapshot of this connection or an earlier one): only
    /// then may the person edit it. The page is rendered with the note's
    /// beginning only, never its state; an edit measured against a replica
    /// without that state would insert the whole text again.
    pub note_loaded: RwSignal<bool>,
    /// Whether the rendered beginning of the note is not all of it.
    pub note_cut: RwSignal<bool>,
    /// The person's selection after a remote edit moved the text around it:
    /// the view puts it back into the text area.
    pub note_selection_moved: RwSignal<Option<(u32, u32)>>,
    /// Co-editors and their carets, in name order.
    pub note_peers: RwSignal<Vec<Peer>>,
    /// Whether the note is live: signed in and subscribed on this connection.
    pub note_live: RwSignal<bool>,
    /// Why the server refused an edit of the note, for the panel.
    pub note_warning: RwSignal<Option<String>>,
    /// The person's selection in the note as the view last said (`None`:
    /// the note is not focused).
    note_selection: StoredValue<Option<(u32, u32)>>,
    /// Remote updates held while the person composes text (IME): `Some`
    /// while composing.
    note_held: StoredValue<Option<Vec<Vec<u8>>>>,
    /// When this page last shared its cursor, and whether a share waits.
    note_shared: StoredValue<(f64, bool)>,
}

impl LiveConnection {
    /// Signals seeded with what the server rendered.
    pub fn new(initial: InitialState) -> Self {
        let outbox = match &initial.user {
            Some(user) => Outbox::for_user(&user.id),
            None => Outbox::default(),
        };
        let live = LiveConnection {
            status: RwSignal::new(ConnectionStatus::Offline { connecting: true }),
            watchlist: RwSignal::new(initial.watchlist),
            user: RwSignal::new(initial.user),
            people: RwSignal::new(Vec::new()),
            join_problem: RwSignal::new(None),
            generation: RwSignal::new(0),
            rooms: RwSignal::new(vec![DEFAULT_ROOM.to_owned()]),
            room: RwSignal::new(DEFAULT_ROOM.to_owned()),
            unread: RwSignal::new(Vec::new()),
            total_unread: RwSignal::new(0),
            toast: RwSignal::new(None),
            lines: StoredValue::new(HashMap::new()),
            sender: StoredValue::new(None),
            outbox: StoredValue::new(outbox),
            outbox_warning: RwSignal::new(None),
            retry: RwSignal::new(0),
            quotes: StoredValue::new(HashMap::new()),
            cursors: StoredValue::new(Cursors::default()),
            owner: StoredValue::new(Owner::current().unwrap_or_default()),
            note: StoredValue::new(new_note()),
            note_text: RwSignal::new(
                initial
                    .note
                    .as_ref()
                    .map(NotePreview::shown)
                    .unwrap_or_default(),
            ),
            note_loaded: RwSignal::new(false),
            note_cut: RwSignal::new(initial.note.as_ref().is_some_and(|note| note.more)),
            note_selection_moved: RwSignal::new(None),
            note_peers: RwSignal::new(Vec::new()),
            note_live: RwSignal::new(false),
            note_warning: RwSignal::new(None),
            note_selection: StoredValue::new(None),
            note_held: StoredValue::new(None),
            note_shared: StoredValue::new((f64::MIN, false)),
        };
        let rendered = initial
            .tickers
            .into_iter()
            .chain(initial.presence)
            .chain(initial.chat)
            .chain(initial.inbox);
        for answer in rendered {
            live.apply(ServerMessage::Subscribed(answer));
        }
        live
    }

    /// Signs in as a guest named `name`, then reconnects with the new token.
    pub fn join(&self, name: String) {
        let live = *self;
        if let Err(problem) = check_guest_name(&name) {
            live.join_problem.set(Some(format!("name: {problem}")));
            return;
        }
        leptos::task::spawn_local(async move {
            match super::browser::login(&name).await {
                Ok(answer) => {
                    super::browser::store_token(Some(&answer.token));
                    live.join_problem.set(None);
                    live.user.set(Some(answer.user));
                    live.restart();
                }
                Err(problem) => live.join_problem.set(Some(problem)),
            }
        });
    }

    /// Signs out: forgets the token and reconnects anonymously.
    pub fn leave(&self) {
        super::browser::store_token(None);
        self.signed_out();
        self.restart();
    }

    /// Forgets the user and what only users see (after leave, a 4001 or an
    /// anonymous welcome), and drops their unsent messages: they are never
    /// sent as anyone else.
    pub fn signed_out(&self) {
        self.drop_outbox(Outbox::default());
        // A new replica: the next user's edits never build on this one's
        // unsent ones, and undo never reaches them. It is empty until the
        // next subscription's snapshot fills it.
        self.note.set_value(new_note());
        self.note_loaded.set(false);
        self.user.set(None);
        self.people.set(Vec::new());
        self.unread.set(Vec::new());
        self.total_unread.set(0);
        self.note_offline();
        self.cursors.update_value(|cursors| {
            cursors.forget("presence");
            cursors.forget(&Channel::Doc(NOTE_DOC.to_owned()).to_string());
            for room in self.rooms.get_untracked() {
                cursors.forget(&Channel::Chat(room).to_string());
            }
        });
    }

    /// The signal of a room's log.
    pub fn lines(&self, room: &str) -> RwSignal<ChatLog> {
        if let Some(signal) = self.lines.with_value(|lines| lines.get(room).copied()) {
            return signal;
        }
        let signal = self
            .owner
            .with_value(|owner| owner.with(|| RwSignal::new(ChatLog::default())));
        self.lines.update_value(|lines| {
            lines.insert(room.to_owned(), signal);
        });
        signal
    }

    /// Lets the socket driver take messages from the views.
    pub fn install_sender(&self, sender: Sender) {
        self.sender.set_value(Some(sender));
    }

    /// Sends `message` with envelope `id` if the socket is up.
    fn send(&self, message: ClientMessage, id: Option<String>) -> bool {
        if self.status.get_untracked() != ConnectionStatus::Connected {
            return false;
        }
        let envelope = ClientEnvelope {
            message,
            timestamp: None,
            id,
        };
        self.ask_driver(ToDriver::Send(envelope))
    }

    fn ask_driver(&self, request: ToDriver) -> bool {
        self.sender
            .with_value(|sender| sender.as_ref().is_some_and(|send| send(request)))
    }

    /// Sends a chat message to the shown room. It shows as pending until
    /// acknowledged; while disconnected it waits in the outbox (which survives
    /// a reload) and goes out with the same id after the reconnect.
    pub fn say(&self, text: &str, id: String) {
        let Some(user) = self.user.get_untracked() else {
            return;
        };
        let room = self.room.get_untracked();
        let text = text.trim().to_owned();
        if text.is_empty() {
            return;
        }
        self.lines(&room)
            .update(|lines| chat::pending(lines, &id, &user, &text));
        let message = ClientMessage::ChatSend(ChatSend { room, text });
        self.enqueue(ClientEnvelope::new(message).with_id(id));
    }

    /// Puts a message (with an id) in the signed-in user's outbox; the driver
    /// sends it when it may.
    fn enqueue(&self, envelope: ClientEnvelope) {
        let Some(user) = self.user.get_untracked() else {
            return;
        };
        let dropped = self
            .outbox
            .try_update_value(|outbox| {
                if outbox.owner() != Some(user.id.as_str()) {
                    *outbox = Outbox::for_user(&user.id);
                }
                outbox.push(envelope)
            })
            .flatten();
        if let Some(dropped) = dropped {
            self.outbox_warning.set(Some(format!(
                "More than {OUTBOX_CAPACITY} messages were waiting for the connection; the oldest was dropped."
            )));
            if let Some(id) = &dropped.id {
                self.fail_line(id, "dropped: too many messages waiting");
            }
        }
        self.store_outbox();
        self.ask_driver(ToDriver::Pump);
    }

    /// What the outbox may send now (the driver calls this when welcomed).
    pub fn outbox_due(&self, now_ms: f64) -> Due {
        self.outbox
            .try_update_value(|outbox| outbox.due(now_ms))
            .unwrap_or_default()
    }

    /// The socket is gone: unanswered messages go again on the next one.
    pub fn outbox_disconnected(&self) {
        self.outbox.update_value(Outbox::disconnected);
        self.note_offline();
    }

    /// The note is not live any more: co-editors are not known (the next
    /// subscription's snapshot says who is there).
    fn note_offline(&self) {
        self.note_live.set(false);
        self.note.update_value(Note::forget_peers);
        self.note_peers.set(Vec::new());
    }

    /// The person changed the note: `value` is the text area's text and
    /// `selection` its selection after the change. While they compose text
    /// (IME) nothing is taken until the composition ends.
    pub fn note_input(&self, value: &str, selection: (u32, u32)) {
        self.note_selection.set_value(Some(selection));
        // The text area is read-only until then (see `note_loaded`).
        if !self.note_loaded.get_untracked() || self.note_held.with_value(Option::is_some) {
            return;
        }
        let update = self
            .note
            .try_update_value(|note| {
                // The undo history starts with the first edit.
                with_undo(note, |_, _| ());
                note.edits(value, selection.1)
            })
            .unwrap_or_default();
        for update in update {
            self.note_local(update);
        }
    }

    /// A composition (IME) starts or ends; at its end the composed text is
    /// taken as one edit, then the co-editors' updates held meanwhile.
    pub fn note_composing(&self, composing: bool, value: &str, selection: (u32, u32)) {
        if composing {
            self.note_held.set_value(Some(Vec::new()));
            return;
        }
        let held = self.note_held.try_update_value(Option::take).flatten();
        self.note_input(value, selection);
        for update in held.unwrap_or_default() {
            self.note_remote(&update);
        }
    }

    /// Undoes (or redoes) the person's own last edit of the note.
    pub fn note_undo(&self, redo: bool) {
        if !self.note_loaded.get_untracked() {
            return;
        }
        let selection = self.note_selection.get_value();
        let result = self.note.try_update_value(|note| {
            let stickies = selection.map(|(a, h)| (note.sticky(a), note.sticky(h)));
            let update = with_undo(note, |note, undo| note.undo(undo, redo))?;
            let moved =
                stickies.and_then(|(a, h)| Some((note.index_of(&a?)?, note.index_of(&h?)?)));
            Some((update, moved))
        });
        if let Some(Some((update, moved))) = result {
            self.note_moved(moved);
            self.note_local(update);
        }
    }

    /// The person's selection in the note as last known (`None`: not focused).
    pub fn note_caret(&self) -> Option<(u32, u32)> {
        self.note_selection.get_value()
    }

    /// The person's selection moved (or the note lost focus: `None`).
    pub fn note_select(&self, selection: Option<(u32, u32)>) {
        self.note_selection.set_value(selection);
        self.share_cursor();
    }

    /// An edit of this page: into the outbox (it survives a reload), then
    /// shown and sent.
    fn note_local(&self, update: Vec<u8>) {
        let Some(user) = self.user.get_untracked() else {
            return;
        };
        self.outbox.update_value(|outbox| {
            if outbox.owner() != Some(user.id.as_str()) {
                *outbox = Outbox::for_user(&user.id);
            }
            outbox.push_note(&update, || super::new_envelope_id("d"));
        });
        self.store_outbox();
        self.note_changed();
        self.ask_driver(ToDriver::Pump);
        self.share_cursor();
    }

    /// An update from the server (or a taken-over outbox): applied with the
    /// person's selection kept between the same characters.
    fn note_remote(&self, update: &[u8]) {
        let held = self
            .note_held
            .try_update_value(|held| held.as_mut().map(|held| held.push(update.to_vec())))
            .flatten();
        if held.is_some() {
            return;
        }
        let selection = self.note_selection.get_value();
        let moved = self
            .note
            .try_update_value(|note| {
                let stickies = selection.map(|(a, h)| (note.sticky(a), note.sticky(h)));
                if let Err(err) = note.apply_remote(update) {
                    leptos::logging::warn!("note: {err}");
                }
                stickies.and_then(|(a, h)| Some((note.index_of(&a?)?, note.index_of(&h?)?)))
            })
            .flatten();
        self.note_moved(moved);
        self.note_changed();
    }

    fn note_moved(&self, moved: Option<(u32, u32)>) {
        if let Some(moved) = moved {
            if self.note_selection.get_value() != Some(moved) {
                self.note_selection.set_value(Some(moved));
                self.note_selection_moved.set(Some(moved));
            }
        }
    }

    /// The note's text or carets changed: the signals follow (the text
    /// once the note is loaded: until then the rendered beginning stays).
    fn note_changed(&self) {
        if self.note_loaded.get_untracked() {
            let text = self.note.with_value(Note::text);
            if self.note_text.with_untracked(|shown| *shown != text) {
                self.note_text.set(text);
            }
        }
        self.note_peers.set(self.note.with_value(Note::peers));
    }

    /// The note's state from a `subscribed` snapshot. The first one a
    /// replica gets loads it: the text area's selection, made in the
    /// rendered beginning, holds in the whole text too, so it is kept as is.
    /// A later one (a reconnect that could not resume) is merged like any
    /// remote update, the selection kept between the same characters.
    fn note_state(&self, state: &[u8]) {
        if self.note_loaded.get_untracked() {
            return self.note_remote(state);
        }
        let applied = self
            .note
            .try_update_value(|note| note.apply_remote(state))
            .unwrap_or(Ok(()));
        match applied {
            Ok(()) => {
                self.note_loaded.set(true);
                self.note_cut.set(false);
                self.note_changed();
            }
            // Unreadable: the note stays read-only, showing what was rendered.
            Err(err) => leptos::logging::warn!("note: {err}"),
        }
    }

    /// Shares where this page's caret is (at most every
    /// [`CURSOR_EVERY_MS`]; the latest always goes).
    pub fn share_cursor(&self) {
        let now = super::browser::now_ms();
        let (last, waiting) = self.note_shared.get_value();
        if waiting {
            return;
        }
        if now - last < CURSOR_EVERY_MS {
            self.note_shared.set_value((last, true));
            let live = *self;
            super::browser::later(CURSOR_EVERY_MS - (now - last), move || {
                live.note_shared.set_value((f64::MIN, false));
                live.share_cursor();
            });
            return;
        }
        self.note_shared.set_value((now, false));
        let Some(user) = self.user.get_untracked() else {
            return;
        };
        if !self.note_live.get_untracked() {
            return;
        }
        let me = EditorUser {
            color: color_of(&user.id).to_owned(),
            id: user.id,
            name: user.name,
        };
        let selection = self.note_selection.get_value();
        let Some(update) = self
            .note
            .try_update_value(|note| note.awareness(&me, selection))
        else {
            return;
        };
        let request = DocAwarenessRequest {
            doc: NOTE_DOC.to_owned(),
            update: BASE64.encode(update),
        };
        self.send(ClientMessage::DocAwareness(request), None);
    }

    /// `welcome` named `user`. An outbox of someone else is put away (it
    /// stays stored under its own user), and what pages of `user` that are
    /// gone left unsent is taken over.
    pub fn welcomed(&self, user: UserRef) {
        let mine = self
            .outbox
            .with_value(|outbox| outbox.owner() == Some(user.id.as_str()));
        if !mine {
            self.drop_outbox(Outbox::for_user(&user.id));
        }
        self.user.set(Some(user.clone()));
        self.take_over_outbox(&user);
    }

    /// Takes over what closed pages of `user` left unsent on this browser.
    pub fn take_over_outbox(&self, user: &UserRef) {
        let live = *self;
        super::browser::take_over_outboxes(&user.id, move |outbox| live.adopt(outbox));
    }

    /// Adds another page's unsent messages to this one's (same user only):
    /// chat lines show as pending, read marks apply at once.
    fn adopt(&self, adopted: Outbox) {
        let Some(user) = self.user.get_untracked() else {
            return;
        };
        if adopted.owner() != Some(user.id.as_str()) {
            return;
        }
        for envelope in adopted.iter() {
            if let (ClientMessage::ChatSend(send), Some(id)) = (&envelope.message, &envelope.id) {
                if !self.rooms.get_untracked().contains(&send.room) {
                    self.rooms.update(|rooms| rooms.push(send.room.clone()));
                }
                self.lines(&send.room)
                    .update(|lines| chat::pending(lines, id, &user, &send.text));
            }
        }
        let edits: Vec<Vec<u8>> = adopted
            .note()
            .updates()
            .filter_map(|update| BASE64.decode(update).ok())
            .collect();
        for update in &edits {
            self.note_remote(update);
        }
        self.outbox.update_value(|outbox| {
            if outbox.owner() != Some(user.id.as_str()) {
                *outbox = Outbox::for_user(&user.id);
            }
            outbox.merge(adopted);
        });
        self.hide_pending_reads();
        self.store_outbox();
        self.ask_driver(ToDriver::Pump);
    }

    /// Replaces the outbox, removing the pending lines of what it held and,
    /// when it belonged to someone, their stored copies.
    fn drop_outbox(&self, replacement: Outbox) {
        let old = self
            .outbox
            .try_update_value(|outbox| std::mem::replace(outbox, replacement))
            .unwrap_or_default();
        for envelope in old.iter() {
            if let (ClientMessage::ChatSend(send), Some(id)) = (&envelope.message, &envelope.id) {
                self.lines(&send.room)
                    .update(|lines| lines.retain(|line| &line.key != id));
            }
        }
        if let Some(owner) = old.owner() {
            super::browser::discard_outboxes(owner);
        }
    }

    /// Removes notifications that queued read marks cover from the list.
    fn hide_pending_reads(&self) {
        let read: Vec<String> = self
            .outbox
            .with_value(|outbox| outbox.pending_reads().map(str::to_owned).collect());
        if !read.is_empty() {
            self.forget_unread(&read);
        }
    }

    /// Takes notifications `ids` off the list and the count.
    fn forget_unread(&self, ids: &[String]) {
        let mut gone = 0;
        self.unread.update(|unread| {
            let before = unread.len();
            unread.retain(|n| !ids.contains(&n.notification_id));
            gone = (before - unread.len()) as u64;
        });
        self.total_unread
            .update(|total| *total = total.saturating_sub(gone));
    }

    fn settle(&self, id: &str) {
        self.outbox.update_value(|outbox| {
            outbox.settle(id);
        });
        self.store_outbox();
    }

    fn store_outbox(&self) {
        self.outbox.with_value(super::browser::store_outbox);
    }

    /// Sends a failed line again under its own id (exactly once on the server).
    pub fn retry(&self, room: &str, line: &ChatLine) {
        let previous = self.room.get_untracked();
        self.room.set(room.to_owned());
        self.say(&line.text, line.key.clone());
        self.room.set(previous);
    }

    /// Joins (or creates) a room by name and shows it.
    pub fn join_room(&self, name: &str) -> Result<(), String> {
        let room = name.trim().trim_start_matches('#').to_lowercase();
        Channel::chat(&room).map_err(|err| err.to_string())?;
        if !self.rooms.get_untracked().contains(&room) {
            self.rooms.update(|rooms| rooms.push(room.clone()));
        }
        self.room.set(room);
        Ok(())
    }

    /// Asks for the messages before the oldest one shown, unless a request
    /// for them is still unanswered or nothing older exists.
    pub fn load_older(&self, room: &str) {
        let lines = self.lines(room);
        let Some(before) = lines.with_untracked(ChatLog::older_request) else {
            return;
        };
        let request = HistoryRequest {
            channel: Channel::Chat(room.to_owned()).to_string(),
            before,
            limit: Some(50),
        };
        if self.send(ClientMessage::History(request), None) {
            lines.update(|log| log.history_requested(before));
        }
    }

    /// Marks these notifications read, on the server too: through the outbox
    /// under a fresh id, so it survives a lost connection and a reload.
    pub fn mark_read(&self, ids: Vec<String>) {
        self.forget_unread(&ids);
        let message = ClientMessage::MarkRead(MarkRead {
            notification_ids: ids,
        });
        self.enqueue(ClientEnvelope::new(message).with_id(super::new_envelope_id("r")));
    }

    /// An `error` answering one of our messages. `rate_limited` means
    /// "later": the message stays queued (and its line pending). Anything
    /// else settles it, and a chat line of ours fails with the reason.
    pub fn refused(&self, error: &ErrorBody, now_ms: f64) {
        let Some(id) = &error.id else {
            return;
        };
        if error.code == ErrorCode::RateLimited
            && self
                .outbox
                .try_update_value(|outbox| outbox.retry_later(id, now_ms))
                .unwrap_or(false)
        {
            return;
        }
        if self.outbox.with_value(|outbox| outbox.note().flight_is(id)) {
            return self.note_refused(id, error, now_ms);
        }
        self.settle(id);
        self.fail_line(id, &error.message);
    }

    /// The server refused the note's update in flight. `internal` (the
    /// store failed) means "again later", like `rate_limited`. Anything else
    /// (`invalid`, `too_large`) drops it and everything queued after it
    /// (which may build on it), and the page starts again from the server's
    /// state with a new replica, saying so.
    fn note_refused(&self, id: &str, error: &ErrorBody, now_ms: f64) {
        if error.code == ErrorCode::Internal {
            self.outbox.update_value(|outbox| {
                outbox.retry_later(id, now_ms);
            });
            return;
        }
        self.note_warning.set(Some(format!(
            "An edit of the note was refused and undone: {}",
            error.message
        )));
        self.outbox.update_value(Outbox::clear_note);
        self.store_outbox();
        self.note.set_value(new_note());
        // Read-only until the snapshot asked for below fills the new replica.
        self.note_loaded.set(false);
        let channel = Channel::Doc(NOTE_DOC.to_owned()).to_string();
        self.cursors
            .update_value(|cursors| cursors.forget(&channel));
        let subscribe = Subscribe {
            channels: vec![SubscribeChannel {
                channel,
                since: None,
            }],
        };
        self.send(ClientMessage::Subscribe(subscribe), None);
    }

    /// Marks our chat line `id` failed.
    fn fail_line(&self, id: &str, reason: &str) {
        for room in self.rooms.get_untracked() {
            let mut hit = false;
            self.lines(&room)
                .update(|lines| hit = chat::failed(lines, id, reason));
            if hit {
                return;
            }
        }
    }

    fn restart(&self) {
        self.generation.update(|generation| *generation += 1);
    }

    /// The signal of `symbol`'s quote (`None` until its first tick).
    pub fn quote(&self, symbol: &str) -> RwSignal<Option<QuoteView>> {
        if let Some(signal) = self.quotes.with_value(|quotes| quotes.get(symbol).copied()) {
            return signal;
        }
        let signal = self
            .owner
            .with_value(|owner| owner.with(|| RwSignal::new(None)));
        self.quotes.update_value(|quotes| {
            quotes.insert(symbol.to_owned(), signal);
        });
        signal
    }

    /// Adds a symbol (any case; trimmed) to the end of the watchlist.
    pub fn add_symbol(&self, input: &str) -> Result<String, WatchlistError> {
        let symbol = input.trim().to_ascii_uppercase();
        if !Channel::is_symbol(&symbol) {
            return Err(WatchlistError::NotASymbol(input.trim().to_owned()));
        }
        let list = self.watchlist.get_untracked();
        if list.contains(&symbol) {
            return Err(WatchlistError::AlreadyWatched(symbol));
        }
        if list.len() >= MAX_WATCHLIST {
            return Err(WatchlistError::Full);
        }
        self.watchlist.update(|list| list.push(symbol.clone()));
        Ok(symbol)
    }

    pub fn remove_symbol(&self, symbol: &str) {
        self.watchlist.update(|list| list.retain(|s| s != symbol));
        let channel = Channel::Ticker(symbol.to_owned()).to_string();
        self.cursors
            .update_value(|cursors| cursors.forget(&channel));
    }

    /// Where to resume `channel` from, if it was ever subscribed.
    pub fn since(&self, channel: &str) -> Option<Since> {
        self.cursors.with_value(|cursors| cursors.since(channel))
    }

    /// Applies one server message to the signals.
    pub fn apply(&self, message: ServerMessage) {
        match message {
            ServerMessage::Subscribed(answer) => {
                let channel = answer.channel.parse();
                let renewal = self.cursors.try_update_value(|c| c.subscribed(&answer));
                match (channel, renewal) {
                    (Ok(Channel::Ticker(symbol)), Some(Renewal::Replace(view))) => {
                        self.quote(&symbol).set(view);
                    }
                    (Ok(Channel::Chat(room)), Some(Renewal::Replace(_))) => {
                        let messages = match &answer.snapshot {
                            Some(Snapshot::Chat(snapshot)) => &snapshot.messages[..],
                            _ => &[],
                        };
                        self.lines(&room)
                            .update(|lines| chat::replace(lines, messages, answer.offset));
                    }
                    (Ok(Channel::Chat(room)), Some(Renewal::Keep)) => {
                        self.lines(&room).update(ChatLog::resubscribed);
                    }
                    (Ok(Channel::User(_)), Some(Renewal::Replace(_))) => {
                        if let Some(Snapshot::Unread(snapshot)) = answer.snapshot {
                            self.unread.set(snapshot.unread);
                            self.total_unread.set(snapshot.total_unread);
                            // Read marks still queued are not undone.
                            self.hide_pending_reads();
                        }
                    }
                    (Ok(Channel::Doc(doc)), Some(renewal)) if doc == NOTE_DOC => {
                        if let (Renewal::Replace(_), Some(Snapshot::Doc(snapshot))) =
                            (renewal, &answer.snapshot)
                        {
                            if let Ok(state) = BASE64.decode(&snapshot.state) {
                                self.note_state(&state);
                            }
                            let awareness = BASE64.decode(&snapshot.awareness).unwrap_or_default();
                            self.note.update_value(|note| {
                                note.forget_peers();
                                let _ = note.apply_awareness(&awareness);
                            });
                            self.note_changed();
                        }
                        self.note_live.set(true);
                        // The server forgot this page's cursor with its last connection.
                        self.note_shared.set_value((f64::MIN, false));
                        self.share_cursor();
                    }
                    (Ok(Channel::Presence), Some(Renewal::Replace(_))) => {
                        let mut users = match answer.snapshot {
                            Some(Snapshot::Presence(snapshot)) => snapshot.users,
                            _ => Vec::new(),
                        };
                        sort_people(&mut users);
                        self.people.set(users);
                    }
                    _ => {}
                }
            }
            ServerMessage::PresenceDiff(diff) => {
                let fresh = self
                    .cursors
                    .try_update_value(|c| c.accept(&diff.channel, diff.offset));
                if fresh == Some(true) {
                    self.people.update(|users| apply_presence(users, &diff));
                }
            }
            ServerMessage::Tick(tick) => {
                let fresh = self
                    .cursors
                    .try_update_value(|c| c.accept(&tick.channel, tick.offset));
                if fresh != Some(true) {
                    return;
                }
                self.quote(&tick.symbol).update(|view| match view {
                    Some(view) => view.apply(&tick),
                    None => *view = Some(QuoteView::from_tick(&tick)),
                });
            }
            ServerMessage::Chat(message) => {
                let fresh = self
                    .cursors
                    .try_update_value(|c| c.accept(&message.channel, message.offset));
                if fresh == Some(true) {
                    self.lines(&message.room)
                        .update(|lines| chat::received(lines, &message));
                }
            }
            ServerMessage::Ack(ack) => {
                self.settle(&ack.id);
                let channel = ack.channel.as_deref().map(str::parse::<Channel>);
                if let (Some(Ok(Channel::Chat(room))), Some(offset)) = (channel, ack.offset) {
                    self.lines(&room)
                        .update(|lines| chat::acked(lines, &ack.id, offset));
                }
            }
            ServerMessage::DocUpdate(event) => {
                let fresh = self
                    .cursors
                    .try_update_value(|c| c.accept(&event.channel, event.offset));
                if fresh == Some(true) && event.doc == NOTE_DOC {
                    if let Ok(update) = BASE64.decode(&event.update) {
                        self.note_remote(&update);
                    }
                }
            }
            ServerMessage::DocAwareness(event) if event.doc == NOTE_DOC => {
                if let Ok(update) = BASE64.decode(&event.update) {
                    self.note.update_value(|note| {
                        let _ = note.apply_awareness(&update);
                    });
                    self.note_peers.set(self.note.with_value(Note::peers));
                }
            }
            ServerMessage::History(page) => {
                if let Ok(Channel::Chat(room)) = page.channel.parse::<Channel>() {
                    self.lines(&room)
                        .update(|lines| chat::older(lines, &page.messages));
                }
            }
            ServerMessage::Notification(notification) => {
                let fresh = self
                    .cursors
                    .try_update_value(|c| c.accept(&notification.channel, notification.offset));
                if fresh == Some(true) {
                    let mut added = false;
                    self.unread.update(|unread| {
                        if !unread
                            .iter()
                            .any(|n| n.notification_id == notification.notification_id)
                        {
                            unread.push(notification.clone());
                            added = true;
                        }
                    });
                    if added {
                        self.total_unread.update(|total| *total += 1);
                    }
                    self.toast.set(Some(notification));
                }
            }
            _ => {}
        }
    }
}

/// A replica of the note with a random Yjs client id (53 bits, as Yjs
/// draws them).
fn new_note() -> Note {
    let client = (super::browser::random() * (1u64 << 53) as f64) as u64;
    Note::new(client.max(1))
}

thread_local! {
    /// The undo history of this page's note, with the Yjs client id of the
    /// replica it belongs to. Not in the reactive arena: yrs' undo manager is
    /// not `Send`, and only a page in a browser (one thread) edits; the
    /// server renders the note but never makes one.
    static NOTE_UNDO: std::cell::RefCell<Option<(u64, yrs::undo::UndoManager<()>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `work` with `note`'s undo history, made on first use (timed by the
/// browser's clock, which groups quick edits into one step).
fn with_undo<R>(
    note: &mut Note,
    work: impl FnOnce(&mut Note, &mut yrs::undo::UndoManager<()>) -> R,
) -> R {
    NOTE_UNDO.with(|cell| {
        let mut slot = cell.borrow_mut();
        let client = note.client_id();
        if slot.as_ref().is_none_or(|(owner, _)| *owner != client) {
            let clock = std::sync::Arc::new(|| super::browser::now_ms() as u64);
            *slot = Some((client, note.undo_manager(clock)));
        }
        let (_, undo) = slot.as_mut().expect("made above");
        work(note, undo)
    })
}

/// Creates the signals from what the server rendered, provides them as
/// context and, once the page runs in a browser, starts the socket driver
/// and the watchlist cookie.
pub fn provide_live_connection() -> LiveConnection {
    // Serialised into the page by the server, read back while hydrating.
    let initial = SharedValue::new(|| {
        use_context::<InitialState>().unwrap_or_else(super::browser::initial_state)
    })
    .into_inner();
    let live = LiveConnection::new(initial);
    provide_context(live);
    // Effects run only in the browser, after hydration: the server renders
    // the initial state and opens no socket.
    Effect::new(move |started: Option<()>| {
        if started.is_none() {
            super::socket::start(live);
        }
    });
    Effect::new(move |_| super::browser::store_watchlist(&live.watchlist.get()));
    live
}

#[cfg(test)]
mod tests {
    use super::ConnectionStatus::*;
    use super::*;
    use crate::protocol::{Snapshot, Subscribed, Tick, TickerSnapshot};

    #[test]
    fn labels_start_with_the_words_tests_and_people_look_for() {
        assert!(Connected.label().starts_with("Connected"));
        assert!(Offline { connecting: true }.label().starts_with("Offline"));
        assert!(Offline { connecting: false }.label().starts_with("Offline"));
        assert_eq!(Reconnecting { in_secs: 4 }.label(), "Reconnecting in 4 s");
        assert!(Reconnecting { in_secs: 0 }
            .label()
            .starts_with("Reconnecting"));
    }

    fn tick(offset: u64, price: f64) -> Tick {
        Tick {
            channel: "ticker:AAPL".into(),
            offset,
            symbol: "AAPL".into(),
            price,
            change: 0.0,
            change_pct: 0.0,
            volume: 1,
        }
    }

    #[test]
    fn the_rendered_state_seeds_the_signals_and_ticks_continue_from_its_offset() {
        let owner = Owner::new();
        owner.set();
        let snapshot = Snapshot::Ticker(TickerSnapshot {
            quote: tick(5, 10.0),
            recent: vec![10.0],
        });
        let live = LiveConnection::new(InitialState {
            watchlist: vec!["AAPL".into()],
            tickers: vec![Subscribed {
                channel: "ticker:AAPL".into(),
                epoch: "e".into(),
                offset: 5,
                recovered: false,
                snapshot: Some(snapshot),
            }],
            ..InitialState::default()
        });
        assert_eq!(live.quote("AAPL").get_untracked().unwrap().price, 10.0);
        assert_eq!(live.since("ticker:AAPL").unwrap().offset, 5);
        live.apply(ServerMessage::Tick(tick(5, 99.0)));
        assert_eq!(
            live.quote("AAPL").get_untracked().unwrap().price,
            10.0,
            "offset 5 was rendered"
        );
        live.apply(ServerMessage::Tick(tick(6, 11.0)));
        assert_eq!(live.quote("AAPL").get_untracked().unwrap().price, 11.0);
    }

    fn ann() -> UserRef {
        UserRef {
            id: "guest:ann".into(),
            name: "ann".into(),
        }
    }

    fn signed_in() -> LiveConnection {
        LiveConnection::new(InitialState {
            user: Some(ann()),
            ..InitialState::default()
        })
    }

    fn error(code: ErrorCode, id: &str) -> ErrorBody {
        ErrorBody::new(code, "m").with_id(Some(id.to_owned()))
    }

    fn states(live: &LiveConnection) -> Vec<chat::LineState> {
        live.lines(DEFAULT_ROOM)
            .get_untracked()
            .into_iter()
            .map(|line| line.state)
            .collect()
    }

    #[test]
    fn rate_limited_keeps_the_message_queued_and_pending_other_errors_fail_it() {
        let owner = Owner::new();
        owner.set();
        let live = signed_in();
        live.say("one", "c-1".into());
        live.say("two", "c-2".into());
        assert_eq!(live.outbox_due(0.0).send.len(), 2);
        live.refused(&error(ErrorCode::RateLimited, "c-1"), 10.0);
        assert_eq!(
            states(&live),
            [chat::LineState::Pending, chat::LineState::Pending]
        );
        live.refused(&error(ErrorCode::TooLarge, "c-2"), 20.0);
        assert_eq!(
            states(&live),
            [
                chat::LineState::Pending,
                chat::LineState::Failed("m".into())
            ]
        );
        let again = live.outbox_due(10_000.0).send;
        assert_eq!(again.len(), 1);
        assert_eq!(
            again[0].id.as_deref(),
            Some("c-1"),
            "sent again, not failed"
        );
    }

    #[test]
    fn mark_read_is_queued_with_a_fresh_id_and_a_snapshot_does_not_undo_it() {
        let owner = Owner::new();
        owner.set();
        let live = signed_in();
        let note = |id: &str| Notification {
            channel: "user:guest:ann".into(),
            offset: 1,
            notification_id: id.into(),
            title: "t".into(),
            body: "b".into(),
            created_at: crate::protocol::Timestamp::parse("2026-11-25T17:30:05Z").unwrap(),
        };
        let snapshot = |unread: Vec<Notification>| {
            ServerMessage::Subscribed(crate::protocol::Subscribed {
                channel: "user:guest:ann".into(),
                epoch: "e".into(),
                offset: 2,
                recovered: false,
                snapshot: Some(Snapshot::Unread(crate::protocol::UnreadSnapshot {
                    total_unread: unread.len() as u64,
                    unread,
                })),
            })
        };
        live.apply(snapshot(vec![note("n1"), note("n2")]));
        // Offline: nothing can be sent, and nothing is lost.
        live.mark_read(vec!["n1".into()]);
        live.mark_read(vec!["n2".into()]);
        let due = live.outbox_due(0.0).send;
        let ids: Vec<_> = due.iter().filter_map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1], "each read mark has its own id");
        // Reconnected before the acks: the server still lists them unread.
        live.outbox_disconnected();
        live.apply(snapshot(vec![note("n1"), note("n2")]));
        assert!(live.unread.get_untracked().is_empty());
        assert_eq!(live.total_unread.get_untracked(), 0);
    }

    #[test]
    fn a_refused_note_edit_is_dropped_with_what_follows_and_internal_means_later() {
        let owner = Owner::new();
        owner.set();
        let live = signed_in();
        live.apply(note_snapshot(""));
        live.note_input("abc", (3, 3));
        let sent = live.outbox_due(0.0).send;
        let id = sent[0].id.clone().unwrap();
        assert!(matches!(sent[0].message, ClientMessage::DocUpdate(_)));
        live.note_input("abcd", (4, 4));
        live.refused(&error(ErrorCode::Internal, &id), 10.0);
        assert!(live.outbox_due(20.0).send.is_empty(), "later, not at once");
        let again = live.outbox_due(10_000.0).send;
        assert_eq!(
            again[0].id.as_deref(),
            Some(id.as_str()),
            "the same edit again"
        );
        live.refused(&error(ErrorCode::TooLarge, &id), 10_001.0);
        assert!(
            live.outbox_due(20_000.0).send.is_empty(),
            "dropped, with what followed"
        );
        assert!(live.note_warning.get_untracked().is_some());
    }

    /// The note's `subscribed` with a snapshot holding `text` (typed by
    /// another replica; an empty note's state is the update of nothing).
    fn note_snapshot(text: &str) -> ServerMessage {
        let mut other = Note::new(77);
        let state = other
            .edit(text, text.encode_utf16().count() as u32)
            .unwrap_or(vec![0, 0]);
        ServerMessage::Subscribed(Subscribed {
            channel: Channel::Doc(NOTE_DOC.into()).to_string(),
            epoch: "e".into(),
            offset: 1,
            recovered: false,
            snapshot: Some(Snapshot::Doc(crate::protocol::DocSnapshot {
                state: BASE64.encode(state),
                awareness: "AA==".into(),
            })),
        })
    }

    /// The text a server holding `state_text` ends up with after the edits
    /// the page queued.
    fn text_after_outbox(live: &LiveConnection, state_text: &str) -> String {
        let mut server = Note::new(78);
        let ServerMessage::Subscribed(answer) = note_snapshot(state_text) else {
            unreachable!()
        };
        let Some(Snapshot::Doc(snapshot)) = answer.snapshot else {
            unreachable!()
        };
        server
            .apply_remote(&BASE64.decode(snapshot.state).unwrap())
            .unwrap();
        for envelope in live.outbox_due(0.0).send {
            if let ClientMessage::DocUpdate(update) = envelope.message {
                server
                    .apply_remote(&BASE64.decode(update.update).unwrap())
                    .unwrap();
            }
        }
        server.text()
    }

    #[test]
    fn the_rendered_note_is_read_only_text_until_the_socket_brings_its_state() {
        let owner = Owner::new();
        owner.set();
        let live = LiveConnection::new(InitialState {
            user: Some(ann()),
            note: Some(NotePreview {
                text: "The beginning".into(),
                more: true,
            }),
            ..InitialState::default()
        });
        let shown = format!("The beginning{}", super::super::initial::NOTE_MORE_MARKER);
        assert_eq!(live.note_text.get_untracked(), shown);
        assert!(live.note_cut.get_untracked());
        assert!(!live.note_loaded.get_untracked());
        // The note was rendered without its state: its subscription asks
        // for the snapshot, with no `since`.
        assert_eq!(live.since(&Channel::Doc(NOTE_DOC.into()).to_string()), None);
        // Nothing is measured against the empty replica (it would insert
        // the rendered text again).
        live.note_input(&format!("{shown}!"), (15, 15));
        assert!(live.outbox_due(0.0).send.is_empty());
        assert_eq!(live.note_text.get_untracked(), shown);

        live.apply(note_snapshot("The beginning and the rest"));
        assert!(live.note_loaded.get_untracked());
        assert!(!live.note_cut.get_untracked());
        assert_eq!(live.note_text.get_untracked(), "The beginning and the rest");
        // Now an edit is one change of the whole text, and nothing is doubled.
        live.note_input("The beginning and the rest.", (27, 27));
        assert_eq!(
            text_after_outbox(&live, "The beginning and the rest"),
            "The beginning and the rest."
        );
    }

    #[test]
    fn a_new_replica_is_read_only_again_until_its_snapshot() {
        let owner = Owner::new();
        owner.set();
        let live = signed_in();
        live.apply(note_snapshot("shared text"));
        assert!(live.note_loaded.get_untracked());
        live.signed_out();
        assert!(
            !live.note_loaded.get_untracked(),
            "signed out: a new, empty replica"
        );
        // Signed in again (join sets the user before the socket's welcome):
        // typing before the snapshot changes nothing.
        live.user.set(Some(ann()));
        live.note_input("shared text typed", (17, 17));
        assert!(live.outbox_due(0.0).send.is_empty());
        live.apply(note_snapshot("shared text"));
        live.note_input("shared text typed", (17, 17));
        assert_eq!(text_after_outbox(&live, "shared text"), "shared text typed");
    }

    #[test]
    fn signing_out_drops_the_outbox_and_its_pending_lines() {
        let owner = Owner::new();
        owner.set();
        let live = signed_in();
        live.say("queued while offline", "c-1".into());
        live.signed_out();
        assert!(live.lines(DEFAULT_ROOM).get_untracked().is_empty());
        assert!(
            live.outbox_due(0.0).send.is_empty(),
            "nothing is sent as anyone"
        );
        // A welcome as someone else starts an empty outbox too.
        let live = signed_in();
        live.say("mine", "c-2".into());
        live.welcomed(UserRef {
            id: "guest:bob".into(),
            name: "bob".into(),
        });
        assert!(
            live.outbox_due(0.0).send.is_empty(),
            "ann's message is not bob's"
        );
    }

    #[test]
    fn the_watchlist_refuses_bad_duplicate_and_excess_symbols() {
        let owner = Owner::new();
        owner.set();
        let live = LiveConnection::new(InitialState::default());
        assert_eq!(live.add_symbol(" nvda "), Ok("NVDA".into()));
        assert_eq!(
            live.add_symbol("NVDA"),
            Err(WatchlistError::AlreadyWatched("NVDA".into()))
        );
        assert!(matches!(
            live.add_symbol("not a symbol"),
            Err(WatchlistError::NotASymbol(_))
        ));
        for n in 1..MAX_WATCHLIST {
            live.add_symbol(&format!("S{n}")).unwrap();
        }
        assert_eq!(live.add_symbol("ONEMORE"), Err(WatchlistError::Full));
        live.remove_symbol("NVDA");
        assert!(!live.watchlist.get_untracked().contains(&"NVDA".to_owned()));
    }
}
