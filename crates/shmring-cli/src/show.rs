//! How segments are shown: the `ls` table, the `stat` report, and both as
//! JSON.

use std::fmt::Write;

use shmring::segment::{
    HeaderInfo, ObjectKind, ObjectState, PeerState, PeerStatus, SegmentInfo, SegmentState,
    UnlinkPolicy,
};

use crate::escape;
use crate::json::{self, Object};

/// A one-word name for a kind (table columns, JSON).
pub fn kind_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::SpscRing => "spsc-ring",
        ObjectKind::MpmcQueue => "mpmc-queue",
        ObjectKind::Pipe => "pipe",
        ObjectKind::Dict => "dict",
        ObjectKind::Lock => "lock",
        ObjectKind::JoinableQueue => "joinable-queue",
        _ => "unknown",
    }
}

fn policy_name(policy: UnlinkPolicy) -> &'static str {
    match policy {
        UnlinkPolicy::Never => "never",
        UnlinkPolicy::OnCreatorDrop => "on-creator-drop",
        UnlinkPolicy::OnLastPeerDrop => "on-last-peer-drop",
    }
}

/// The state word of `ls`, `stat` and JSON.
pub fn state_name(info: &SegmentInfo) -> &'static str {
    match info.state {
        SegmentState::Initialising => "creating",
        SegmentState::CreatorDied => "creator-died",
        SegmentState::Ready if info.is_abandoned() => "abandoned",
        SegmentState::Ready => "ready",
    }
}

fn peer_state_name(p: &PeerStatus) -> String {
    match p.state {
        PeerState::Attached if p.alive => "alive".into(),
        PeerState::Attached => "dead".into(),
        PeerState::Detached if p.alive => "alive".into(),
        PeerState::Detached => "left".into(),
        PeerState::Unknown(v) if p.alive => format!("alive(state={v})"),
        PeerState::Unknown(v) => format!("dead(state={v})"),
    }
}

/// `1536` → `1.5KiB`; exact below 1 KiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

fn dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

fn capacity_text(o: Option<&ObjectState>) -> String {
    dash(o.and_then(|o| {
        let c = o.capacity?;
        Some(if o.capacity_unit == "bytes" {
            human_bytes(c)
        } else {
            format!("{c} {}", o.capacity_unit)
        })
    }))
}

/// The `ls` table (header line included).
pub fn table(infos: &[SegmentInfo]) -> String {
    let headings = [
        "NAME", "KIND", "SIZE", "CAPACITY", "DEPTH", "PEERS", "OWNER", "CREATOR", "STATE",
    ];
    let rows: Vec<[String; 9]> = infos
        .iter()
        .map(|i| {
            let h = i.header.as_ref();
            let o = i.object.as_ref();
            [
                escape::name(&i.name),
                dash(h.map(|h| kind_name(h.kind).into())),
                human_bytes(i.file_len),
                capacity_text(o),
                dash(o.and_then(|o| o.depth).map(|d| d.to_string())),
                format!("{}/{}", i.alive_peers(), i.dead_peers()),
                i.owner_uid.to_string(),
                dash(h.map(|h| h.creator_pid.to_string())),
                state_name(i).into(),
            ]
        })
        .collect();
    let mut widths = headings.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&headings);
    for row in &rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

fn header_json(h: &HeaderInfo) -> String {
    Object::new()
        .num("version", h.version)
        .num("abi", h.abi)
        .str("kind", kind_name(h.kind))
        .str("unlink_policy", policy_name(h.unlink_policy))
        .num("total_len", h.total_len)
        .num("creator_uid", h.creator_uid)
        .num("creator_pid", h.creator_pid)
        .num("peer_table_offset", h.peer_table_offset)
        .num("peer_rows", h.peer_rows)
        .num("object_offset", h.object_offset)
        .num("object_len", h.object_len)
        .raw("params", json::array(h.params.iter().map(u64::to_string)))
        .finish()
}

fn object_json(o: &ObjectState) -> String {
    let details = o
        .details
        .iter()
        .fold(Object::new(), |obj, &(k, v)| obj.num(k, v));
    Object::new()
        .opt("capacity", o.capacity)
        .str("capacity_unit", o.capacity_unit)
        .opt("depth", o.depth)
        .raw("details", details.finish())
        .raw(
            "note",
            o.note.as_deref().map_or("null".into(), json::string),
        )
        .finish()
}

fn counters_json(c: &shmring::segment::Counters) -> String {
    c.iter()
        .fold(Object::new(), |obj, (k, v)| obj.num(k, v))
        .finish()
}

fn peer_json(p: &PeerStatus) -> String {
    Object::new()
        .num("row", p.row)
        .num("pid", p.pid)
        .num("generation", p.generation)
        .str("state", &peer_state_name(p))
        .bool("alive", p.alive)
        .bool("dead", p.is_dead())
        .num("attached_at_ns", p.attached_at_ns)
        .raw("counters", counters_json(&p.counters))
        .finish()
}

/// One segment as a JSON object. `full` adds the header, the peers and the
/// summed counters (`stat`); `ls` shows the summary fields only.
pub fn info_json(i: &SegmentInfo, full: bool) -> String {
    info_object(i, full).finish()
}

/// [`info_json`]'s object, open for more fields.
pub fn info_object(i: &SegmentInfo, full: bool) -> Object {
    let h = i.header.as_ref();
    let o = i.object.as_ref();
    let mut obj = Object::new()
        .str("name", &i.name)
        .str("state", state_name(i))
        .raw(
            "kind",
            h.map_or("null".into(), |h| json::string(kind_name(h.kind))),
        )
        .num("size", i.file_len)
        .opt("capacity", o.and_then(|o| o.capacity))
        .str("capacity_unit", o.map_or("", |o| o.capacity_unit))
        .opt("depth", o.and_then(|o| o.depth))
        .num("peers_alive", i.alive_peers() as u64)
        .num("peers_dead", i.dead_peers() as u64)
        .num("owner_uid", i.owner_uid)
        .opt("creator_pid", h.map(|h| h.creator_pid.into()))
        .bool("abandoned", i.is_abandoned());
    if full {
        obj = obj
            .num("mode", i.mode)
            .bool("init_locked", i.init_locked)
            .raw("header", h.map_or("null".into(), header_json))
            .raw("object", o.map_or("null".into(), object_json))
            .raw("counters", counters_json(&i.counters()))
            .raw("peers", json::array(i.peers.iter().map(peer_json)));
    }
    obj
}

/// The `stat` report.
pub fn report(i: &SegmentInfo) -> String {
    let mut out = String::new();
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<14} {v}");
    };
    kv("state", state_name(i).into());
    kv(
        "file",
        format!(
            "{} bytes, mode {:04o}, owner uid {}",
            i.file_len, i.mode, i.owner_uid
        ),
    );
    kv(
        "name lock",
        if i.init_locked { "held" } else { "free" }.into(),
    );
    if let Some(h) = &i.header {
        kv("kind", kind_name(h.kind).into());
        kv(
            "header",
            format!(
                "layout version {}, abi {:#010x}, unlink {}",
                h.version,
                h.abi,
                policy_name(h.unlink_policy)
            ),
        );
        kv(
            "creator",
            format!("uid {}, pid {}", h.creator_uid, h.creator_pid),
        );
        kv(
            "peer table",
            format!("{} rows at offset {}", h.peer_rows, h.peer_table_offset),
        );
        kv(
            "object",
            format!("{} bytes at offset {}", h.object_len, h.object_offset),
        );
        kv("params", format!("{:?}", h.params));
    }
    let mut out = format!("segment {}\n{out}", escape::name(&i.name));
    if let Some(o) = &i.object {
        out.push_str("object\n");
        let mut kv = |k: &str, v: String| {
            let _ = writeln!(out, "  {k:<14} {v}");
        };
        kv("capacity", capacity_text(Some(o)));
        kv("depth", dash(o.depth.map(|d| d.to_string())));
        for (k, v) in &o.details {
            kv(k, v.to_string());
        }
        if let Some(note) = &o.note {
            kv("note", escape::text(note));
        }
    }
    if i.state == SegmentState::Ready {
        out.push_str("counters (all rows)\n");
        for (k, v) in i.counters().iter() {
            let _ = writeln!(out, "  {k:<14} {v}");
        }
        let _ = writeln!(
            out,
            "peers ({} alive, {} dead)",
            i.alive_peers(),
            i.dead_peers()
        );
        out.push_str(&peer_table(&i.peers));
    }
    out
}

fn peer_table(peers: &[PeerStatus]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:>4}  {:>8}  {:<6}  {:>10}  {:>10}  {:>12}  {:>12}  {:>8}  {:>8}  {:>8}  {:>9}",
        "ROW",
        "PID",
        "STATE",
        "PUTS",
        "GETS",
        "BYTES_IN",
        "BYTES_OUT",
        "BLOCKED",
        "WAKES",
        "TIMEOUTS",
        "RECOVERED"
    );
    for p in peers {
        let c: Vec<u64> = p.counters.iter().map(|(_, v)| v).collect();
        let _ = writeln!(
            out,
            "  {:>4}  {:>8}  {:<6}  {:>10}  {:>10}  {:>12}  {:>12}  {:>8}  {:>8}  {:>8}  {:>9}",
            p.row,
            p.pid,
            peer_state_name(p),
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            c[6],
            c[7]
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn bytes_are_readable() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1023), "1023B");
        assert_eq!(human_bytes(4096), "4KiB");
        assert_eq!(human_bytes(1536), "1.5KiB");
        assert_eq!(human_bytes(3 << 20), "3MiB");
    }
}
