//! `segment_bytes`: arbitrary bytes as a segment file, opened as every kind
//! and read through every path.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::input::Input;
use crate::shm_file::{fresh_name, ShmFile};
use shmring::dict::Dict;
use shmring::lock::{Lock, RLock};
use shmring::mpmc;
use shmring::pipe::{End, Pipe};
use shmring::queue::{JoinableQueue, Queue, SimpleQueue};
use shmring::segment::UnlinkPolicy;
use shmring::spsc;
use shmring_core::wait::Until;

type Bytes = Vec<u8>;

/// Most iterations of any read loop (a ring of the sizes the fuzzer makes
/// holds far fewer records).
const ROUNDS: usize = 4096;

/// The segment options of every template: two peer rows, the name gone
/// with its creator, and no sweeping of /dev/shm from inside a fuzz
/// iteration.
macro_rules! templated {
    ($builder:expr) => {
        $builder
            .peer_rows(2)
            .unlink(UnlinkPolicy::OnCreatorDrop)
            .reclaim_abandoned(false)
    };
}

/// The file of a segment made by `make`, with the object in it used a
/// little, as it lies in `/dev/shm` while its creator is alive.
fn template<O>(make: impl FnOnce(&str) -> Option<O>) -> Bytes {
    let name = fresh_name("template");
    let object = make(&name);
    let bytes = std::fs::read(format!("/dev/shm{name}")).unwrap_or_default();
    drop(object);
    bytes
}

/// Valid segment files of every kind, with some content: the starting
/// points of the fuzzer's patches (and its seed corpus).
pub fn segment_templates() -> &'static [Bytes] {
    static TEMPLATES: OnceLock<Vec<Bytes>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        vec![
            template(|n| {
                let r = templated!(spsc::Ring::builder().ring_bytes(256).max_message(64))
                    .create(n)
                    .ok()?;
                let mut p = r.producer().ok()?;
                for m in [&b"a"[..], &[7; 64], &[9; 30], &[]] {
                    p.try_push(m).ok()?;
                }
                r.consumer().ok()?.try_pop(&mut Vec::new()).ok()?;
                Some(r)
            }),
            template(|n| {
                let builder = mpmc::ByteQueue::builder()
                    .producers(2)
                    .ring_bytes(256)
                    .max_message(64);
                let q = templated!(builder).create(n).ok()?;
                let mut p = q.producer().ok()?;
                for m in [&b"hello"[..], &[1; 64], &[]] {
                    p.try_push(m).ok()?;
                }
                Some(q)
            }),
            template(|n| {
                let builder = Pipe::builder()
                    .duplex(true)
                    .ring_bytes(256)
                    .fragment_bytes(16);
                let pipe = templated!(builder).create(n).ok()?;
                let mut second = pipe.connection(End::Second).ok()?;
                second.send_bytes(&[3; 40], 0, None).ok()?;
                second.send_bytes(b"short", 0, None).ok()?;
                let first = pipe.connection(End::First).ok()?;
                Some((pipe, first, second))
            }),
            template(|n| {
                let builder = Dict::<Bytes, Bytes>::builder()
                    .capacity(8)
                    .max_key(8)
                    .max_value(16);
                let d = templated!(builder).create(n).ok()?;
                for i in 0..6u8 {
                    d.insert(&vec![i; 1 + usize::from(i)], &vec![i; 3]).ok()?;
                }
                d.remove(&vec![2; 3]).ok()?;
                Some(d)
            }),
            template(|n| templated!(Lock::builder()).create(n).ok()),
            template(|n| templated!(RLock::builder()).create(n).ok()),
            template(|n| {
                let builder = JoinableQueue::<Bytes>::builder()
                    .maxsize(0)
                    .max_message(64)
                    .ring_bytes(256)
                    .producers(2);
                let q = templated!(builder).create(n).ok()?;
                q.put(b"task".to_vec()).ok()?;
                Some(q)
            }),
        ]
    })
}

/// Writes bytes decoded from `data` as a segment file, then opens it as
/// every kind of object and runs every read path (and a few writes) on
/// what opens.
///
/// The first byte picks the mode: even, the rest of `data` is the file;
/// odd, the next byte picks a valid template (see [`segment_templates`])
/// and the rest are patches `(offset: u16, len: 1..=8, bytes)` over it, or
/// a change of the file's length.
///
/// # Panics
///
/// Never, unless opening or reading mishandles hostile bytes (a finding).
pub fn segment_bytes(data: &[u8]) {
    let mut input = Input::new(data);
    let bytes = match input.byte() % 2 {
        0 => input.rest().to_vec(),
        _ => patched(&mut input),
    };
    let Ok(file) = ShmFile::new(&bytes) else {
        return;
    };
    open_everything(&file.name);
}

fn patched(input: &mut Input<'_>) -> Bytes {
    let templates = segment_templates();
    let mut bytes = templates[usize::from(input.byte()) % templates.len()].clone();
    if bytes.is_empty() {
        return bytes;
    }
    while let Some(op) = input.op() {
        if op == 0xff {
            // Resize: truncate or extend (by up to a few pages).
            let n = usize::from(input.u16());
            let len = if n % 2 == 0 {
                bytes.len().saturating_sub(n % 9000)
            } else {
                bytes.len() + n % 9000
            };
            bytes.resize(len, 0);
            continue;
        }
        let len = 1 + usize::from(op % 8);
        let at = usize::from(input.u16()) % bytes.len().max(1);
        let at = if op & 0x80 == 0 { at & !7 } else { at };
        for (i, b) in input.take(len).iter().enumerate() {
            if let Some(slot) = bytes.get_mut(at + i) {
                *slot = *b;
            }
        }
    }
    bytes
}

fn open_everything(name: &str) {
    let mut buf = Vec::new();
    if let Ok(ring) = spsc::Ring::builder()
        .open_timeout(Duration::ZERO)
        .open(name)
    {
        let _ = (ring.len(), ring.is_empty(), ring.is_full(), ring.config());
        if let Ok(mut c) = ring.consumer() {
            for _ in 0..ROUNDS {
                if c.try_pop(&mut buf).is_err() {
                    break;
                }
            }
            if let Ok(grant) = c.read() {
                assert!(grant.len() <= ring.config().max_record as usize);
            }
            let _ = c.try_pop_many(ROUNDS, |p| buf.extend_from_slice(p));
            let _ = c.pop(&mut buf, Until::Now);
        }
        if let Ok(mut p) = ring.producer() {
            let _ = p.try_push(b"x");
            let _ = p.try_push_many([&b"yy"[..], &[]]);
            let _ = p.push(b"z", Until::Now);
        }
    }
    if let Ok(queue) = mpmc::ByteQueue::builder()
        .open_timeout(Duration::ZERO)
        .open(name)
    {
        let _ = (
            queue.len(),
            queue.is_empty(),
            queue.is_closed(),
            queue.max_len(),
        );
        let mut c = queue.consumer();
        for _ in 0..ROUNDS {
            if c.try_pop(&mut buf).is_err() {
                break;
            }
        }
        let _ = c.pop(&mut buf, Until::Now);
        if let Ok(mut p) = queue.producer() {
            let _ = (p.is_full(), p.try_push(b"q"), p.push(b"r", Until::Now));
        }
    }
    if let Ok(q) = Queue::<Bytes>::builder()
        .open_timeout(Duration::ZERO)
        .open(name)
    {
        let _ = (
            q.len(),
            q.is_empty(),
            q.is_full(),
            q.is_closed(),
            q.maxsize(),
        );
        for _ in 0..ROUNDS {
            if q.try_get().is_err() {
                break;
            }
        }
        let _ = q.get_timeout(Duration::ZERO);
        let _ = q.try_put(b"p".to_vec());
    }
    if let Ok(q) = JoinableQueue::<Bytes>::builder()
        .open_timeout(Duration::ZERO)
        .open(name)
    {
        let _ = (q.len(), q.is_empty(), q.is_full(), q.unfinished_tasks());
        for _ in 0..ROUNDS {
            if q.try_get().is_err() {
                break;
            }
        }
        let _ = (
            q.task_done(),
            q.try_put(b"j".to_vec()),
            q.join_timeout(Duration::ZERO),
        );
    }
    if let Ok(q) = SimpleQueue::<Bytes>::builder()
        .open_timeout(Duration::ZERO)
        .open(name)
    {
        let _ = q.is_empty();
    }
    open_pipe(name);
    open_dict(name);
    if let Ok(lock) = Lock::builder().open_timeout(Duration::ZERO).open(name) {
        let _ = (
            lock.is_locked(),
            lock.recoveries(),
            lock.try_acquire().map(|g| g.leak()),
            lock.release(),
        );
    }
    if let Ok(lock) = RLock::builder().open_timeout(Duration::ZERO).open(name) {
        let _ = (
            lock.is_owned(),
            lock.try_acquire().map(|g| g.leak()),
            lock.try_acquire().map(|g| g.leak()),
        );
        let _ = (lock.release(), lock.release(), lock.release());
    }
}

fn open_pipe(name: &str) {
    let Ok(pipe) = Pipe::builder().open_timeout(Duration::ZERO).open(name) else {
        return;
    };
    // Closed both ways before anything is read, so no call can wait for a
    // peer: reads drain then see end of file, sends see a broken pipe.
    let [duplex, _, _, stride, ..] = pipe.segment().params();
    for i in 0..=duplex.min(1) as usize {
        let at = i * stride as usize;
        // SAFETY: `Pipe::open` validated ring `i` at `i * stride` inside the
        // object region (page-aligned, all atomics); its closed flags are
        // the u32 at offset 32 (pinned by the asserts in core's `ring`).
        let flags = unsafe {
            &*pipe
                .segment()
                .object_ptr()
                .as_ptr()
                .add(at + 32)
                .cast::<AtomicU32>()
        };
        // ORDERING: Release — as the ring's own close, before any read.
        flags.fetch_or(3, Ordering::Release);
    }
    for end in [End::First, End::Second] {
        let Ok(mut conn) = pipe.connection(end) else {
            continue;
        };
        let mut into = [0u8; 24];
        for round in 0..ROUNDS {
            let done = match round % 4 {
                0 => conn.recv_bytes(None).is_err(),
                1 => conn.recv_bytes(Some(20)).is_err(),
                2 => conn.recv_bytes_into(&mut into, 3).is_err(),
                _ => conn.recv::<Bytes>().is_err(),
            };
            if done && !matches!(conn.poll(), Ok(true)) {
                break;
            }
            if done && round > 8 {
                break;
            }
        }
        let _ = conn.send_bytes(b"hi", 0, None);
    }
}

fn open_dict(name: &str) {
    let Ok(dict) = Dict::<Bytes, Bytes>::builder()
        .open_timeout(Duration::ZERO)
        .open(name)
    else {
        return;
    };
    let _ = (dict.len(), dict.is_empty(), dict.items(), dict.keys());
    let _ = (
        dict.values(),
        dict.get(&vec![1; 2]),
        dict.contains_key(&vec![3; 4]),
    );
    let _ = dict.insert(&vec![9; 3], &vec![8; 4]);
    let _ = dict.remove(&vec![0; 1]);
    let _ = (dict.popitem(), dict.pop(&vec![4; 5]));
    let _ = dict.setdefault(&vec![5; 2], &vec![1]);
    let _ = dict.update_with(&vec![6; 2], |v| {
        let mut v = v.unwrap_or_default();
        v.push(1);
        Some(v)
    });
    let _ = (dict.to_hash_map(), dict.clear(), dict.len());
}
