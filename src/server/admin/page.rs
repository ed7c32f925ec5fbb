//! Owns the admin pages' HTML: the sign-in form and the live view, rendered
//! on the server from the latest snapshot (so the page is whole before any
//! script runs). `admin.js` then keeps the same elements up to date from the
//! `admin` channel; the ids here are what it writes to. No Leptos: the
//! operators' page adds nothing to the dashboard's bundle.

use std::fmt::Write;

use crate::protocol::admin::{
    AdminSnapshot, ChannelRow, CodeCount, Consumer, InstanceStats, RelayStats, Totals,
    HISTORY_STEP_SECS,
};

/// The chart's drawing box.
const CHART_WIDTH: f64 = 600.0;
const CHART_HEIGHT: f64 = 120.0;

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn document(title: &str, body: &str, script: bool) -> String {
    let script = if script {
        r#"<script type="module" src="/admin/admin.js"></script>"#
    } else {
        ""
    };
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/admin/admin.css\">{script}\
         </head><body>{body}</body></html>"
    )
}

/// The sign-in form; `error` says why the last attempt failed.
pub fn sign_in(error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |error| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(error))
    });
    let body = format!(
        "<main class=\"sign-in\"><h1>Pulse admin</h1>{error}\
         <form method=\"post\" action=\"/admin/session\">\
         <label for=\"admin-key\">Admin key</label>\
         <input id=\"admin-key\" name=\"key\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"hint\">The key the server was started with (<code>--admin-key</code>). \
         It is sent once; the session lasts 8 hours in a cookie scripts cannot read.</p></main>"
    );
    document("Sign in · Pulse admin", &body, false)
}

/// The live view, showing `snapshot` (or zeros before the first one).
pub fn dashboard(snapshot: Option<&AdminSnapshot>) -> String {
    let empty = AdminSnapshot {
        channel: String::new(),
        at_ms: 0,
        instance: String::new(),
        instances: Vec::new(),
        total: Totals::default(),
    };
    let s = snapshot.unwrap_or(&empty);
    let mine = s.instances.first().cloned().unwrap_or_default();
    let t = &s.total;
    let mut body = String::new();
    let _ = write!(
        body,
        "<header><h1>Pulse admin</h1>\
         <p id=\"admin-status\" role=\"status\">{status}</p>\
         <form method=\"post\" action=\"/admin/signout\"><button type=\"submit\">Sign out</button></form>\
         </header><main>",
        status = if snapshot.is_some() { "Live" } else { "Connecting" },
    );
    let _ = write!(
        body,
        "<section tabindex=\"0\" aria-labelledby=\"now-heading\"><h2 id=\"now-heading\">Now</h2>\
         <dl class=\"tiles\">{}{}{}{}{}</dl></section>",
        tile("Connections", "connections", &t.connections.to_string()),
        tile("Messages in per second", "in-rate", &rate(t.in_per_second)),
        tile(
            "Messages out per second",
            "out-rate",
            &rate(t.out_per_second)
        ),
        tile("Delivery p50", "delivery-p50", &millis(t.delivery_p50_ms)),
        tile("Delivery p99", "delivery-p99", &millis(t.delivery_p99_ms)),
    );
    let _ = write!(
        body,
        "<section tabindex=\"0\" aria-labelledby=\"chart-heading\"><h2 id=\"chart-heading\">Connections, last 10 minutes</h2>\
         <figure>{}<figcaption id=\"chart-text\">{}</figcaption></figure></section>",
        chart(&t.history),
        escape(&chart_text(&t.history, t.connections)),
    );
    let _ = write!(
        body,
        "<section tabindex=\"0\" aria-labelledby=\"instances-heading\"><h2 id=\"instances-heading\">Instances</h2>\
         {}</section>",
        table(
            "instances",
            "Each instance and the total",
            &["Instance", "Connections", "WebSocket", "SSE", "In per s", "Out per s", "Delivery p50", "Delivery p99", "Commit p50", "Commit p99", "Leases"],
            &instance_rows(s),
        ),
    );
    let _ = write!(
        body,
        "<section tabindex=\"0\" aria-labelledby=\"relay-heading\"><h2 id=\"relay-heading\">Relay</h2>{}</section>",
        table(
            "relay",
            "Each instance's queue towards Redis (with --redis), its Redis and PostgreSQL round trips, and the total",
            &["Instance", "Ordered waiting", "Ticks waiting", "Awareness waiting", "Lag", "Behind", "Redis RTT", "PostgreSQL RTT"],
            &relay_rows(s),
        ),
    );
    let _ = write!(
        body,
        "<section tabindex=\"0\" aria-labelledby=\"slowest-heading\"><h2 id=\"slowest-heading\">Slowest consumers</h2>{}</section>",
        table(
            "slowest",
            "Connections with the largest outbox backlog on this instance",
            &["Connection", "User", "Queued frames", "Queued bytes"],
            &consumer_rows(&mine.slowest),
        ),
    );
    let _ = write!(
        body,
        "<section tabindex=\"0\" aria-labelledby=\"channels-heading\"><h2 id=\"channels-heading\">Top channels</h2>{}{}</section>",
        table(
            "by-subscribers",
            "Channels by subscribers on this instance",
            &["Channel", "Subscribers", "Messages per s"],
            &channel_rows(&mine.top_by_subscribers),
        ),
        table(
            "by-rate",
            "Channels by message rate on this instance",
            &["Channel", "Subscribers", "Messages per s"],
            &channel_rows(&mine.top_by_rate),
        ),
    );
    let _ = write!(
        body,
        "<section tabindex=\"0\" aria-labelledby=\"codes-heading\"><h2 id=\"codes-heading\">Errors and closes</h2>{}{}</section></main>",
        table("errors", "Error messages sent, by code", &["Code", "Count"], &code_rows(&t.errors)),
        table("closes", "Connections ended, by close code", &["Code", "Count"], &code_rows(&t.closes)),
    );
    document("Pulse admin", &body, true)
}

fn tile(label: &str, id: &str, value: &str) -> String {
    format!(
        "<div><dt>{label}</dt><dd id=\"{id}\">{}</dd></div>",
        escape(value)
    )
}

/// A table with a caption; `id` names its body, which the script refills.
fn table(id: &str, caption: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut html = format!("<table><caption>{caption}</caption><thead><tr>");
    for header in headers {
        let _ = write!(html, "<th scope=\"col\">{header}</th>");
    }
    let _ = write!(html, "</tr></thead><tbody id=\"{id}\">");
    if rows.is_empty() {
        let _ = write!(html, "<tr><td colspan=\"{}\">None</td></tr>", headers.len());
    }
    for row in rows {
        html.push_str("<tr>");
        for (index, cell) in row.iter().enumerate() {
            let tag = if index == 0 { "th scope=\"row\"" } else { "td" };
            let close = if index == 0 { "th" } else { "td" };
            let _ = write!(html, "<{tag}>{}</{close}>", escape(cell));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

pub fn rate(per_second: f64) -> String {
    format!("{per_second:.1}")
}

pub fn millis(ms: Option<f64>) -> String {
    match ms {
        Some(ms) if ms < 10.0 => format!("{ms:.2} ms"),
        Some(ms) => format!("{ms:.0} ms"),
        None => "–".into(),
    }
}

fn instance_rows(s: &AdminSnapshot) -> Vec<Vec<String>> {
    let row = |name: String, i: &InstanceStats| {
        vec![
            name,
            i.connections.to_string(),
            transport(i.by_transport.websocket, i.by_transport.websocket_tls),
            transport(i.by_transport.sse, i.by_transport.sse_tls),
            rate(i.in_per_second),
            rate(i.out_per_second),
            millis(i.delivery_p50_ms),
            millis(i.delivery_p99_ms),
            millis(i.commit_p50_ms),
            millis(i.commit_p99_ms),
            i.leases.join(", "),
        ]
    };
    let mut rows: Vec<Vec<String>> = s
        .instances
        .iter()
        .map(|i| {
            let name = if i.instance == s.instance {
                format!("{} (this one)", short(&i.instance))
            } else {
                short(&i.instance).to_owned()
            };
            row(name, i)
        })
        .collect();
    if s.instances.len() > 1 {
        let t = &s.total;
        rows.push(vec![
            "Total".into(),
            t.connections.to_string(),
            String::new(),
            String::new(),
            rate(t.in_per_second),
            rate(t.out_per_second),
            millis(t.delivery_p50_ms),
            millis(t.delivery_p99_ms),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    rows
}

/// A transport's connections: plain, and how many of them over TLS.
pub fn transport(plain: u64, tls: u64) -> String {
    format!("{} ({tls} TLS)", plain + tls)
}

/// One row per instance with a relay or a round trip to show (none on a
/// single instance with SQLite), and the total when there are several.
fn relay_rows(s: &AdminSnapshot) -> Vec<Vec<String>> {
    let row =
        |name: String, relay: Option<&RelayStats>, redis: Option<f64>, postgres: Option<f64>| {
            let mut row = vec![name];
            match relay {
                Some(RelayStats {
                    depth,
                    lag_seconds,
                    behind,
                }) => row.extend([
                    depth.ordered.to_string(),
                    depth.ticks.to_string(),
                    depth.awareness.to_string(),
                    millis(Some(lag_seconds * 1000.0)),
                    behind.to_string(),
                ]),
                None => row.extend(std::iter::repeat_n("–".to_owned(), 5)),
            }
            row.extend([millis(redis), millis(postgres)]);
            row
        };
    let shown: Vec<&InstanceStats> = s
        .instances
        .iter()
        .filter(|i| i.relay.is_some() || i.redis_rtt_ms.is_some() || i.postgres_rtt_ms.is_some())
        .collect();
    let mut rows: Vec<Vec<String>> = shown
        .iter()
        .map(|i| {
            let name = short(&i.instance).to_owned();
            row(name, i.relay.as_ref(), i.redis_rtt_ms, i.postgres_rtt_ms)
        })
        .collect();
    if shown.len() > 1 {
        let t = &s.total;
        rows.push(row(
            "Total".into(),
            t.relay.as_ref(),
            t.redis_rtt_ms,
            t.postgres_rtt_ms,
        ));
    }
    rows
}

/// The first 8 characters of an instance or connection id.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn consumer_rows(consumers: &[Consumer]) -> Vec<Vec<String>> {
    consumers
        .iter()
        .map(|c| {
            vec![
                short(&c.connection_id).to_owned(),
                c.user.clone().unwrap_or_else(|| "anonymous".into()),
                c.queued_frames.to_string(),
                c.queued_bytes.to_string(),
            ]
        })
        .collect()
}

fn channel_rows(rows: &[ChannelRow]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            vec![
                r.channel.clone(),
                r.subscribers.to_string(),
                rate(r.per_second),
            ]
        })
        .collect()
}

fn code_rows(rows: &[CodeCount]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| vec![r.code.clone(), r.count.to_string()])
        .collect()
}

/// The connections chart: an SVG line over the history, with its text
/// alternative as the SVG's title and the figure's caption.
fn chart(history: &[u64]) -> String {
    format!(
        "<svg id=\"chart\" role=\"img\" aria-labelledby=\"chart-title\" viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\" \
         preserveAspectRatio=\"none\"><title id=\"chart-title\">Connections over the last 10 minutes</title>\
         <polyline id=\"chart-line\" fill=\"none\" points=\"{}\"/></svg>",
        chart_points(history)
    )
}

/// The polyline's points: the newest at the right edge, one step per
/// history point, scaled to the largest value.
pub fn chart_points(history: &[u64]) -> String {
    let top = history.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = CHART_WIDTH / (crate::protocol::admin::HISTORY_POINTS as f64 - 1.0);
    let start = CHART_WIDTH - step * (history.len().saturating_sub(1)) as f64;
    history
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let x = start + step * index as f64;
            let y = CHART_HEIGHT - (*value as f64 / top) * (CHART_HEIGHT - 4.0) - 2.0;
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The chart in words.
pub fn chart_text(history: &[u64], now: u64) -> String {
    match (history.iter().min(), history.iter().max()) {
        (Some(low), Some(high)) => format!(
            "Between {low} and {high} connections over the last {} minutes (one point per {HISTORY_STEP_SECS} s); {now} now.",
            (history.len() as u64 * HISTORY_STEP_SECS).div_ceil(60)
        ),
        _ => format!("No history yet; {now} connections now."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let page = sign_in(Some("<script>"));
        assert!(page.contains("&lt;script&gt;") && !page.contains("<script>"));
    }

    #[test]
    fn the_chart_ends_at_the_right_edge_and_says_its_range() {
        let points = chart_points(&[0, 2, 4]);
        assert!(points.ends_with("600.0,2.0"), "{points}");
        assert_eq!(chart_points(&[]), "");
        let text = chart_text(&[1, 3], 2);
        assert!(text.starts_with("Between 1 and 3 connections"), "{text}");
    }

    #[test]
    fn the_view_renders_every_table_with_a_caption() {
        let page = dashboard(None);
        assert_eq!(page.matches("<caption>").count(), 7);
        assert!(page.contains("id=\"connections\">0<"));
    }

    #[test]
    fn the_relay_table_has_round_trips_and_a_total_row_for_several_instances() {
        let stats = |instance: &str, ordered, rtt| InstanceStats {
            instance: instance.into(),
            relay: Some(RelayStats {
                depth: crate::protocol::admin::RelayDepth {
                    ordered,
                    ticks: 0,
                    awareness: 0,
                },
                lag_seconds: 0.0,
                behind: 0,
            }),
            redis_rtt_ms: Some(rtt),
            postgres_rtt_ms: Some(2.0),
            ..Default::default()
        };
        let instances = vec![stats("aaaaaaaa-1", 2, 0.5), stats("bbbbbbbb-2", 3, 1.25)];
        let snapshot = AdminSnapshot {
            channel: "admin".into(),
            at_ms: 0,
            instance: "aaaaaaaa-1".into(),
            total: Totals::of(&instances),
            instances,
        };
        let rows = relay_rows(&snapshot);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2][0], "Total");
        assert_eq!(rows[2][1], "5", "ordered waiting, summed");
        assert_eq!(rows[2][6], "1.25 ms", "the worst Redis round trip");
        assert_eq!(rows[0][7], "2.00 ms");
        assert!(relay_rows(&AdminSnapshot {
            instances: vec![InstanceStats::default()],
            ..snapshot
        })
        .is_empty());
    }
}
