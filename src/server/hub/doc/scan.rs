//! The pre-scan of a client's Yjs v1 update: reads it the way yrs'
//! `Update::decode_v1` will (same fields, same order), without yrs and
//! without allocating by any count the client wrote, and refuses it unless
//! every count is bounded by the bytes that follow it (yrs reserves maps and
//! vectors by those counts: 85 bytes claiming 2^31 structs cost hundreds of
//! milliseconds and megabytes). What it reads is kept as the update's
//! [`Shape`]: per client the clock range, each block's range and the ids it
//! refers to, and the deletions, which `admission.rs` checks against the
//! document before anything is applied.

use std::collections::HashSet;

use super::lib0::{ReadError, Reader};

/// The deepest nesting of `Any` values (arrays and maps) an update may hold;
/// yrs decodes them recursively, so a deep one would overflow the stack.
pub const MAX_ANY_DEPTH: usize = 32;

/// One block's id: a Yjs client and a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id {
    pub client: u64,
    pub clock: u32,
}

/// A block of the update: its client's clocks `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub client: u64,
    pub start: u32,
    pub end: u32,
}

/// The blocks of one client, contiguous: `blocks[first..first + count]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub client: u64,
    pub start: u32,
    pub end: u32,
    pub first: usize,
    pub count: usize,
}

/// What an update holds, as far as integrating it goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    pub runs: Vec<Run>,
    pub blocks: Vec<Block>,
    /// The ids blocks refer to (origin, right origin, parent), by block index.
    pub refs: Vec<(usize, Id)>,
    /// Deleted ranges `(client, start, end)`, none empty.
    pub deletes: Vec<(u64, u32, u32)>,
}

/// Why an update was refused by the pre-scan (it is `invalid`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("{0}")]
    Read(#[from] ReadError),
    #[error("it claims {what} more than its bytes can hold")]
    Count { what: &'static str },
    #[error("it lists Yjs client {0} twice")]
    Twice(u64),
    #[error("it skips clocks of Yjs client {0} inside itself")]
    Skips(u64),
    #[error("a block of Yjs client {0} runs past the largest clock")]
    Clock(u64),
    #[error("it nests values deeper than {MAX_ANY_DEPTH}")]
    Deep,
    #[error("unknown content ({0})")]
    Content(u8),
    #[error("bytes follow its end")]
    Trailing,
}

const GC: u8 = 0;
const DELETED: u8 = 1;
const JSON: u8 = 2;
const BINARY: u8 = 3;
const STRING: u8 = 4;
const EMBED: u8 = 5;
const FORMAT: u8 = 6;
const TYPE: u8 = 7;
const ANY: u8 = 8;
const DOC: u8 = 9;
const SKIP: u8 = 10;
const HAS_ORIGIN: u8 = 0b1000_0000;
const HAS_RIGHT_ORIGIN: u8 = 0b0100_0000;
const HAS_PARENT_SUB: u8 = 0b0010_0000;

/// Refuses `count` unless each of its items, at `least` bytes each, fits in
/// what is left.
fn bounded(
    reader: &Reader<'_>,
    count: u64,
    least: usize,
    what: &'static str,
) -> Result<usize, ScanError> {
    let count = usize::try_from(count).map_err(|_| ScanError::Count { what })?;
    if count.saturating_mul(least) > reader.remaining() {
        return Err(ScanError::Count { what });
    }
    Ok(count)
}

/// Reads a whole Yjs v1 update; see the module's documentation.
pub fn scan(bytes: &[u8]) -> Result<Shape, ScanError> {
    let mut reader = Reader::new(bytes);
    let mut shape = Shape::default();
    let mut seen = HashSet::new();
    // A client takes at least three bytes (count, id, clock) and a block two.
    let clients = reader.var_u32()?;
    let clients = bounded(&reader, clients.into(), 3, "clients")?;
    for _ in 0..clients {
        let count = reader.var_u32()?;
        let count = bounded(&reader, count.into(), 2, "blocks")?;
        let client = reader.var_u64()?;
        let start = reader.var_u32()?;
        if !seen.insert(client) {
            return Err(ScanError::Twice(client));
        }
        if count == 0 {
            return Err(ScanError::Count { what: "no blocks" });
        }
        let first = shape.blocks.len();
        let mut clock = start;
        for _ in 0..count {
            let refs = shape.refs.len();
            let len = block(&mut reader, &mut shape, client)?;
            if len == 0 {
                // yrs drops an empty item and does not advance the clock.
                shape.refs.truncate(refs);
                continue;
            }
            let end = clock.checked_add(len).ok_or(ScanError::Clock(client))?;
            shape.blocks.push(Block {
                client,
                start: clock,
                end,
            });
            clock = end;
        }
        let count = shape.blocks.len() - first;
        shape.runs.push(Run {
            client,
            start,
            end: clock,
            first,
            count,
        });
    }
    delete_set(&mut reader, &mut shape)?;
    if reader.remaining() != 0 {
        return Err(ScanError::Trailing);
    }
    Ok(shape)
}

/// Reads one block of `client`; returns its length. The ids it refers to
/// are recorded against the block about to be pushed.
fn block(reader: &mut Reader<'_>, shape: &mut Shape, client: u64) -> Result<u32, ScanError> {
    let index = shape.blocks.len();
    let info = reader.u8()?;
    match info {
        SKIP => return Err(ScanError::Skips(client)),
        GC => {
            let len = reader.var_u32()?;
            return if len == 0 {
                Err(ScanError::Count {
                    what: "an empty block",
                })
            } else {
                Ok(len)
            };
        }
        _ => {}
    }
    let mut refer = |id| shape.refs.push((index, id));
    let copies_parent = info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) != 0;
    if info & HAS_ORIGIN != 0 {
        refer(read_id(reader)?);
    }
    if info & HAS_RIGHT_ORIGIN != 0 {
        refer(read_id(reader)?);
    }
    if !copies_parent {
        if reader.var_u32()? == 1 {
            reader.string()?;
        } else {
            refer(read_id(reader)?);
        }
        if info & HAS_PARENT_SUB != 0 {
            reader.string()?;
        }
    }
    content(reader, info & 0b1111)
}

fn read_id(reader: &mut Reader<'_>) -> Result<Id, ScanError> {
    let client = reader.var_u64()?;
    let clock = reader.var_u32()?;
    Ok(Id { client, clock })
}

/// Reads an item's content; returns its length (as yrs counts it: UTF-16
/// units for strings, values for arrays, 1 for the rest).
fn content(reader: &mut Reader<'_>, kind: u8) -> Result<u32, ScanError> {
    Ok(match kind {
        DELETED => reader.var_u32()?,
        JSON => {
            // yrs reads one string more than the count says.
            let count = reader.var_u32()?;
            if count >= i32::MAX as u32 {
                return Err(ScanError::Count {
                    what: "JSON values",
                });
            }
            let count = bounded(reader, u64::from(count) + 1, 1, "JSON values")?;
            for _ in 0..count {
                reader.string()?;
            }
            count as u32
        }
        BINARY => {
            reader.buf()?;
            1
        }
        STRING => {
            let text = reader.string()?;
            u32::try_from(text.encode_utf16().count())
                .map_err(|_| ScanError::Count { what: "characters" })?
        }
        EMBED => {
            reader.string()?;
            1
        }
        FORMAT => {
            reader.string()?;
            reader.string()?;
            1
        }
        TYPE => {
            match reader.u8()? {
                // Array, map, text, fragment, hook, XML text, subdocument, undefined.
                0 | 1 | 2 | 4 | 5 | 6 | 9 | 15 => {}
                // An XML element has a name.
                3 => {
                    reader.string()?;
                }
                other => return Err(ScanError::Content(other)),
            }
            1
        }
        ANY => {
            let count = reader.var_u32()?;
            let count = bounded(reader, count.into(), 1, "values")?;
            for _ in 0..count {
                any(reader, 0)?;
            }
            count as u32
        }
        DOC => {
            reader.string()?;
            any(reader, 0)?;
            1
        }
        other => return Err(ScanError::Content(other)),
    })
}

/// Reads one lib0 `Any` value, nested at most [`MAX_ANY_DEPTH`] deep.
fn any(reader: &mut Reader<'_>, depth: usize) -> Result<(), ScanError> {
    if depth >= MAX_ANY_DEPTH {
        return Err(ScanError::Deep);
    }
    match reader.u8()? {
        // undefined, null, false, true
        127 | 126 | 121 | 120 => {}
        125 => reader.var_i64()?,
        124 => {
            reader.take(4)?;
        }
        123 | 122 => {
            reader.take(8)?;
        }
        119 => {
            reader.string()?;
        }
        118 => {
            let count = reader.var_u64()?;
            // A key takes a byte at least, a value one more.
            let count = bounded(reader, count, 2, "map entries")?;
            for _ in 0..count {
                reader.string()?;
                any(reader, depth + 1)?;
            }
        }
        117 => {
            let count = reader.var_u64()?;
            let count = bounded(reader, count, 1, "array values")?;
            for _ in 0..count {
                any(reader, depth + 1)?;
            }
        }
        116 => {
            reader.buf()?;
        }
        other => return Err(ScanError::Content(other)),
    }
    Ok(())
}

/// Reads the delete set: clients, each with its ranges.
fn delete_set(reader: &mut Reader<'_>, shape: &mut Shape) -> Result<(), ScanError> {
    let clients = reader.var_u32()?;
    // A client takes two bytes at least (id, count); a range two (clock, length).
    let clients = bounded(reader, clients.into(), 2, "deleting clients")?;
    let mut seen = HashSet::new();
    for _ in 0..clients {
        let client = reader.var_u64()?;
        if !seen.insert(client) {
            return Err(ScanError::Twice(client));
        }
        let ranges = reader.var_u32()?;
        let ranges = bounded(reader, ranges.into(), 2, "deleted ranges")?;
        for _ in 0..ranges {
            let start = reader.var_u32()?;
            let len = reader.var_u32()?;
            // yrs keeps an empty range past the document's clock pending.
            if len == 0 {
                return Err(ScanError::Count {
                    what: "an empty deleted range",
                });
            }
            let end = start.checked_add(len).ok_or(ScanError::Clock(client))?;
            shape.deletes.push((client, start, end));
        }
    }
    Ok(())
}
