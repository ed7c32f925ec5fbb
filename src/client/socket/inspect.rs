//! Tells the protocol inspector (plain JavaScript served by
//! `server/inspector/`, outside the bundle) what it cannot read from frames:
//! the reconnection machine's phase with its next backoff and the transport
//! (`pulse:connection`), and the envelopes the outbox holds
//! (`pulse:outbox`), as `CustomEvent`s on `document`, sent only when what
//! they say changed: never per frame.

use crate::client::reconnect::Phase;
use crate::client::transport::Transport;

/// What was last told, so only changes are sent.
#[derive(Default)]
pub(super) struct Told {
    connection: String,
    outbox: String,
}

impl Told {
    /// `{"state", "transport", "retryAt"?, "backoffMs"?}`.
    pub(super) fn connection(&mut self, phase: Phase, transport: Transport) {
        let (state, transport) = (phase.name(), transport.name());
        let json = match phase {
            Phase::Waiting { until_ms, delay_ms } => format!(
                r#"{{"state":"{state}","transport":"{transport}","retryAt":{until_ms},"backoffMs":{delay_ms}}}"#
            ),
            _ => format!(r#"{{"state":"{state}","transport":"{transport}"}}"#),
        };
        if json != self.connection {
            dispatch("pulse:connection", &json);
            self.connection = json;
        }
    }

    /// `{"pending": [{"id", "type"}]}`.
    pub(super) fn outbox(&mut self, pending: &[(String, &'static str)]) {
        let entries: Vec<String> = pending
            .iter()
            .map(|(id, kind)| {
                let id = serde_json::to_string(id).unwrap_or_default();
                format!(r#"{{"id":{id},"type":"{kind}"}}"#)
            })
            .collect();
        let json = format!(r#"{{"pending":[{}]}}"#, entries.join(","));
        if json != self.outbox {
            dispatch("pulse:outbox", &json);
            self.outbox = json;
        }
    }
}

fn dispatch(name: &str, json: &str) {
    let Ok(detail) = js_sys::JSON::parse(json) else {
        return;
    };
    let init = web_sys::CustomEventInit::new();
    init.set_detail(&detail);
    if let Ok(event) = web_sys::CustomEvent::new_with_event_init_dict(name, &init) {
        let _ = leptos::prelude::document().dispatch_event(&event);
    }
}
