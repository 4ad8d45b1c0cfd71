//! [`SimpleQueue`]: put, get, empty, close.

use std::fmt;
use std::sync::Arc;

use super::Queue;
use super::{queue_setters, GetError, PutError};
use crate::codec::Message;
use crate::object::{
    impl_segment_constructors, CreateError, OpenError, QueueSettings, SegmentObject,
};
use crate::segment::Segment;

/// Python's `multiprocessing.SimpleQueue`: `put`, `get`, `is_empty`,
/// `close`; unbounded, blocking `get`, no timeouts.
///
/// After [`close`](Self::close), `put` and `get` fail with
/// [`PutError::Closed`] and [`GetError::Closed`] (Python:
/// `OSError("handle is closed")`).
///
/// # Examples
///
/// ```
/// use shmring::queue::{GetError, SimpleQueue};
///
/// let q = SimpleQueue::<String>::new()?;
/// q.put("first".to_string())?;
/// assert!(!q.is_empty());
/// assert_eq!(q.get()?, "first");
/// q.close();
/// assert!(matches!(q.get(), Err(GetError::Closed)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SimpleQueue<T> {
    queue: Queue<T>,
    segment: Arc<Segment>,
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue")
            .field("name", &self.segment.name())
            .finish()
    }
}

impl<T: Message> SegmentObject for SimpleQueue<T> {
    type Descriptor = <Queue<T> as SegmentObject>::Descriptor;
    type Config = QueueSettings;

    /// A queue's, without a `maxsize`.
    fn descriptor(options: &QueueSettings) -> Result<Self::Descriptor, CreateError> {
        <Queue<T> as SegmentObject>::descriptor(&QueueSettings {
            maxsize: 0,
            ..*options
        })
    }

    fn attach(segment: Arc<Segment>) -> Result<Self, OpenError> {
        let queue = <Queue<T> as SegmentObject>::attach(segment.clone())?;
        Ok(SimpleQueue { queue, segment })
    }
}

impl_segment_constructors!([T: Message] SimpleQueue<T>, "simple queue");
queue_setters!([T: Message] SimpleQueue<T>);

impl<T: Message> SimpleQueue<T> {
    /// Python's `SimpleQueue()`: a new anonymous unbounded queue, to hand to
    /// children. [`SimpleQueue::builder`] sets its shape, a name, or opens
    /// one.
    ///
    /// # Errors
    ///
    /// The segment could not be created (`/dev/shm` full, descriptor
    /// limit).
    pub fn new() -> Result<SimpleQueue<T>, CreateError> {
        SimpleQueue::builder().anonymous()
    }

    /// Puts `item` (waits only while the producer's ring is out of bytes:
    /// a SimpleQueue has no `maxsize`).
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`] after [`close`](Self::close); encode and size
    /// errors. The item comes back.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.queue.put(item)
    }

    /// Takes the next item, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`GetError::Closed`] after [`close`](Self::close),
    /// [`GetError::ShutDown`] after a shutdown (once drained);
    /// decode errors.
    pub fn get(&self) -> Result<T, GetError> {
        self.queue.get()
    }

    /// Whether the queue looks empty (Python's `empty`): a snapshot.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Closes this handle: its `put` and `get` fail from now on.
    pub fn close(&self) {
        self.queue.close();
    }
}
