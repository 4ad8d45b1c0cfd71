//! Plumbing shared by every object that lives in a segment (rings, queues,
//! pipes, dicts, locks): create it named or anonymous, open it by name or by
//! inheritance, and hand it to a child. Each object type says only what is
//! its own — its descriptor (kind, header parameters, layout, how to
//! initialise zeroed memory; see [`crate::descriptor`]) and how to attach —
//! and [`impl_segment_constructors!`] writes the public constructors from
//! that.

use std::ptr::NonNull;
use std::sync::Arc;

use crate::attach::AttachError;
use crate::descriptor::Descriptor;
use crate::error::SegmentError;
use crate::segment::{CreateOptions, ObjectKind, OpenOptions, Segment};

/// An object that lives alone in a segment.
pub(crate) trait SegmentObject: Sized {
    /// The typed header parameters and layout of this kind.
    type Descriptor: Descriptor;
    /// The kind written in the segment header and checked on open.
    const KIND: ObjectKind = <Self::Descriptor as Descriptor>::KIND;
    /// What `create` takes.
    type Config;
    /// The descriptor `create` writes for `config` (which `attach` decodes
    /// and checks the object against).
    fn descriptor(config: &Self::Config) -> Result<Self::Descriptor, AttachError>;
    /// Builds the handle over a segment that holds this kind, decoding its
    /// descriptor and validating the object against it.
    fn attach(segment: Arc<Segment>) -> Result<Self, AttachError>;
}

/// Creates the object: named (`Some(name)`) or anonymous (`None`).
pub(crate) fn create<O: SegmentObject>(
    name: Option<&str>,
    config: &O::Config,
    opts: &CreateOptions,
) -> Result<O, AttachError> {
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
    O::attach(Arc::new(segment))
}

/// Opens the object by name.
pub(crate) fn open<O: SegmentObject>(name: &str, opts: &OpenOptions) -> Result<O, AttachError> {
    O::attach(Arc::new(Segment::open(name, O::KIND, opts)?))
}

/// Opens the object a parent handed over through `env_var`.
pub(crate) fn open_inherited<O: SegmentObject>(
    env_var: &str,
    opts: &OpenOptions,
) -> Result<O, AttachError> {
    O::attach(Arc::new(Segment::open_inherited(env_var, O::KIND, opts)?))
}

/// Writes the public constructors of a [`SegmentObject`]: `create`,
/// `create_anonymous`, `open`, `open_inherited` and `share_with_child`. The
/// type needs a `segment: Arc<Segment>` field. Generic types list their
/// parameters first: `impl_segment_constructors!([T: Message] Queue<T>, ..)`.
macro_rules! impl_segment_constructors {
    ($ty:ident, $config:ty, $what:literal) => {
        impl_segment_constructors!([] $ty, $config, $what);
    };
    ([$($generics:tt)*] $ty:ty, $config:ty, $what:literal) => {
        impl<$($generics)*> $ty {
            #[doc = concat!("Creates a named ", $what, " (`O_EXCL`, mode 0600 unless `opts` says otherwise).")]
            ///
            /// # Errors
            ///
            /// An invalid configuration, or a [`crate::SegmentError`] of
            /// creation: the name is taken or invalid, `/dev/shm` has no
            /// room, …
            pub fn create(
                name: &str,
                config: $config,
                opts: &$crate::CreateOptions,
            ) -> Result<$ty, $crate::AttachError> {
                $crate::object::create(Some(name), &config, opts)
            }

            #[doc = concat!("Creates an anonymous ", $what, " (`memfd`), to hand to children with `share_with_child`.")]
            ///
            /// # Errors
            ///
            /// As `create`.
            pub fn create_anonymous(
                config: $config,
                opts: &$crate::CreateOptions,
            ) -> Result<$ty, $crate::AttachError> {
                $crate::object::create(None, &config, opts)
            }

            #[doc = concat!("Opens a ", $what, " another process created, checking its whole layout.")]
            ///
            /// # Errors
            ///
            /// A [`crate::SegmentError`] of opening (not found, another kind,
            /// another owner, a corrupted header, …) or
            /// [`crate::AttachError::Corrupted`].
            pub fn open(name: &str, opts: &$crate::OpenOptions) -> Result<$ty, $crate::AttachError> {
                $crate::object::open(name, opts)
            }

            #[doc = concat!("Opens the ", $what, " a parent handed over with `share_with_child`.")]
            ///
            /// # Errors
            ///
            /// As `open`, or the variable is missing or malformed.
            pub fn open_inherited(
                env_var: &str,
                opts: &$crate::OpenOptions,
            ) -> Result<$ty, $crate::AttachError> {
                $crate::object::open_inherited(env_var, opts)
            }

            #[doc = concat!("Arranges for the child spawned by `cmd` to inherit this ", $what, "; the child calls `open_inherited` with the same `env_var`.")]
            ///
            /// # Errors
            ///
            /// The descriptor could not be prepared.
            pub fn share_with_child(
                &self,
                cmd: &mut std::process::Command,
                env_var: &str,
            ) -> Result<(), $crate::AttachError> {
                Ok(self.segment.share_with_child(cmd, env_var)?)
            }
        }

        impl<$($generics)*> $crate::process::Share for $ty {
            fn share_with_child(
                &self,
                cmd: &mut std::process::Command,
                env_var: &str,
            ) -> Result<(), $crate::AttachError> {
                Ok(self.segment.share_with_child(cmd, env_var)?)
            }
        }
    };
}
pub(crate) use impl_segment_constructors;
