//! Plumbing shared by every object that lives in a segment (rings, queues,
//! pipes, dicts, locks): the one [`Builder`] that creates it named or
//! anonymous and opens it by name or by inheritance, the lifecycle and
//! role errors, and handing it to a child. Each object type says only what
//! is its own — its settings, its descriptor (kind, header parameters,
//! layout, how to initialise zeroed memory; see [`crate::descriptor`]) and
//! how to attach — and [`impl_segment_constructors!`] writes its
//! `builder`, `open` and `share_with_child` from that.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use crate::descriptor::Descriptor;
use crate::error::SegmentError;
use crate::segment::{CreateOptions, ObjectKind, OpenOptions, Segment, UnlinkPolicy};

mod error;
mod settings;

pub use error::{CreateError, OpenError, RoleError};
pub(crate) use settings::{named, PipeSettings, QueueSettings, RingSettings};

/// An object that lives alone in a segment: every type with a
/// [`Builder`]. Public so that code can be generic over `Builder<O>`
/// (`fn f<O: SegmentObject>(b: Builder<O>) -> Builder<O>`); sealed: its
/// descriptor trait is private, so it cannot be implemented outside
/// shmring.
pub trait SegmentObject: Sized {
    /// The typed header parameters and layout of this kind.
    type Descriptor: Descriptor;
    /// The kind written in the segment header and checked on open.
    const KIND: ObjectKind = <Self::Descriptor as Descriptor>::KIND;
    /// What the builder's kind-specific setters fill in.
    type Config: Clone + fmt::Debug + Default;
    /// The descriptor `create` writes for `config` (which `attach` decodes
    /// and checks the object against).
    ///
    /// # Errors
    ///
    /// An invalid setting, named as the user set it.
    #[doc(hidden)]
    fn descriptor(config: &Self::Config) -> Result<Self::Descriptor, CreateError>;
    /// Builds the handle over a segment that holds this kind, decoding its
    /// descriptor and validating the object against it.
    ///
    /// # Errors
    ///
    /// The object disagrees with the header.
    #[doc(hidden)]
    fn attach(segment: Arc<Segment>) -> Result<Self, OpenError>;
}

/// Creates the object: named (`Some(name)`) or anonymous (`None`).
fn create<O: SegmentObject>(
    name: Option<&str>,
    config: &O::Config,
    opts: &CreateOptions,
) -> Result<O, CreateError> {
    let descriptor = O::descriptor(config)?;
    let (len, params) = (descriptor.object_len(), descriptor.encode());
    let init = |base: NonNull<u8>, len: usize| {
        // SAFETY: the segment hands over its zeroed, page-aligned object
        // region before publishing the segment to anyone.
        unsafe { descriptor.init(base, len) }
            .map_err(|reason| SegmentError::InvalidConfig { reason })
    };
    let segment = match name {
        Some(name) => Segment::create(name, O::KIND, params, len, opts, init)?,
        None => Segment::create_anonymous(O::KIND, params, len, opts, init)?,
    };
    Ok(O::attach(Arc::new(segment))?)
}

/// How an object of kind `O` is made or reached: its own settings (see the
/// setters on `Builder<Queue<T>>`, `Builder<Pipe>`, …), the segment's
/// (mode, peer rows, unlink policy, reclaiming, open timeout, foreign
/// owner), then one finisher: [`create`](Builder::create),
/// [`anonymous`](Builder::anonymous), [`open`](Builder::open) or
/// [`open_inherited`](Builder::open_inherited). Get one from the type's
/// `builder()`; a builder can finish any number of times.
///
/// The kind's settings matter only to `create` and `anonymous` (an open
/// reads them from the segment); `open_timeout` and
/// `allow_foreign_owner` only to the opens.
///
/// ```
/// use shmring::queue::Queue;
///
/// let q = Queue::<u64>::builder().maxsize(8).producers(4).anonymous()?;
/// q.put(7)?;
/// assert_eq!(q.maxsize(), 8);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Builder<O: SegmentObject> {
    pub(crate) config: O::Config,
    create: CreateOptions,
    open: OpenOptions,
}

impl<O: SegmentObject> Clone for Builder<O> {
    fn clone(&self) -> Self {
        Builder {
            config: self.config.clone(),
            create: self.create.clone(),
            open: self.open.clone(),
        }
    }
}

impl<O: SegmentObject> fmt::Debug for Builder<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("kind", &O::KIND)
            .field("config", &self.config)
            .field("create", &self.create)
            .field("open", &self.open)
            .finish()
    }
}

impl<O: SegmentObject> Default for Builder<O> {
    fn default() -> Self {
        Builder {
            config: O::Config::default(),
            create: CreateOptions::default(),
            open: OpenOptions::default(),
        }
    }
}

impl<O: SegmentObject> Builder<O> {
    /// Permission bits of a named segment's file (default `0o600`): `0o600`
    /// plus read *and* write for the group and/or others, or nothing more
    /// (see [`CreateOptions::mode`]). Set exactly, whatever the umask.
    pub fn mode(mut self, mode: u32) -> Self {
        self.create.mode = mode;
        self
    }

    /// Rows in the peer table: the most simultaneously attached handles
    /// (default 64, at most [`MAX_PEER_ROWS`](crate::segment::MAX_PEER_ROWS)).
    pub fn peer_rows(mut self, rows: u32) -> Self {
        self.create.peer_rows = rows;
        self
    }

    /// When a named segment's name is removed (default
    /// [`UnlinkPolicy::OnLastPeerDrop`]).
    pub fn unlink(mut self, policy: UnlinkPolicy) -> Self {
        self.create.unlink = policy;
        self
    }

    /// Whether a create reclaims an abandoned segment under its name and
    /// may start the automatic sweep (default `true`; see
    /// [`CreateOptions::reclaim_abandoned`]).
    pub fn reclaim_abandoned(mut self, reclaim: bool) -> Self {
        self.create.reclaim_abandoned = reclaim;
        self
    }

    /// How long an open waits for the segment's name lock (default 5 s, at
    /// least 100 ms; see [`OpenOptions::timeout`]).
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open.timeout = timeout;
        self
    }

    /// Whether an open accepts a segment owned by another uid (default
    /// `false`).
    pub fn allow_foreign_owner(mut self, allow: bool) -> Self {
        self.open.allow_foreign_owner = allow;
        self
    }

    /// Creates the object under `name` (`O_EXCL`; the name appears only once
    /// the object is complete).
    ///
    /// # Errors
    ///
    /// [`CreateError::InvalidOption`] naming the setter whose value is
    /// refused, or [`CreateError::Segment`]: the name is taken or invalid,
    /// `/dev/shm` has no room, the mode is refused, …
    pub fn create(&self, name: &str) -> Result<O, CreateError> {
        create(Some(name), &self.config, &self.create)
    }

    /// Creates an anonymous object (`memfd`), to hand to children as a
    /// process argument or with `share_with_child`.
    ///
    /// # Errors
    ///
    /// As [`create`](Builder::create).
    pub fn anonymous(&self) -> Result<O, CreateError> {
        create(None, &self.config, &self.create)
    }

    /// Opens the object another process created under `name`, checking its
    /// whole layout.
    ///
    /// # Blocking
    ///
    /// Up to `open_timeout` for the segment's name lock (see
    /// [`Segment::open`]); never for a creator.
    ///
    /// # Errors
    ///
    /// [`OpenError::Segment`] (not found, another kind, another owner, a
    /// header of another version, …) or [`OpenError::Corrupted`].
    pub fn open(&self, name: &str) -> Result<O, OpenError> {
        O::attach(Arc::new(Segment::open(name, O::KIND, &self.open)?))
    }

    /// Opens the object a parent handed over through `env_var` (with
    /// `share_with_child`).
    ///
    /// # Errors
    ///
    /// As [`open`](Builder::open), or the variable is missing or malformed.
    pub fn open_inherited(&self, env_var: &str) -> Result<O, OpenError> {
        O::attach(Arc::new(Segment::open_inherited(
            env_var,
            O::KIND,
            &self.open,
        )?))
    }
}

/// Writes `builder()`, `open(name)` and `share_with_child` of a
/// [`SegmentObject`], and its [`Share`](crate::process::Share) impl. The
/// type needs a `segment: Arc<Segment>` field. Generic types list their
/// parameters first: `impl_segment_constructors!([T: Message] Queue<T>, ..)`.
macro_rules! impl_segment_constructors {
    ($ty:ident, $what:literal) => {
        impl_segment_constructors!([] $ty, $what);
    };
    ([$($generics:tt)*] $ty:ty, $what:literal) => {
        impl<$($generics)*> $ty {
            #[doc = concat!("A [`Builder`](crate::Builder) for a ", $what, ": its settings, the segment's, then `create(name)`, `anonymous()`, `open(name)` or `open_inherited(env_var)`.")]
            pub fn builder() -> $crate::Builder<$ty> {
                $crate::Builder::default()
            }

            #[doc = concat!("Opens the ", $what, " another process created under `name`, with the default open options (`builder().open(name)` sets them).")]
            ///
            /// # Blocking
            ///
            /// Up to 5 s for the segment's name lock, held by other
            /// processes for a few system calls; never for a creator.
            ///
            /// # Errors
            ///
            /// [`OpenError::Segment`](crate::OpenError::Segment) (not found,
            /// another kind, another owner, …) or
            /// [`OpenError::Corrupted`](crate::OpenError::Corrupted).
            pub fn open(name: &str) -> Result<$ty, $crate::OpenError> {
                Self::builder().open(name)
            }

            #[doc = concat!("Arranges for the child spawned by `cmd` to inherit this ", $what, "; the child calls `builder().open_inherited(env_var)`. (A process argument does this for you.)")]
            ///
            /// # Errors
            ///
            /// The descriptor could not be prepared.
            pub fn share_with_child(
                &self,
                cmd: &mut std::process::Command,
                env_var: &str,
            ) -> Result<(), $crate::SegmentError> {
                self.segment.share_with_child(cmd, env_var)
            }
        }

        impl<$($generics)*> $crate::process::Share for $ty {
            fn share_with_child(
                &self,
                cmd: &mut std::process::Command,
                env_var: &str,
            ) -> Result<(), $crate::SegmentError> {
                self.segment.share_with_child(cmd, env_var)
            }
        }
    };
}
pub(crate) use impl_segment_constructors;
