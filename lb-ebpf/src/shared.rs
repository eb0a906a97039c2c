//! Fields of map values that several CPUs use at once, accessed as Relaxed atomics.
//! Read-modify-write goes through core's atomics (BPF atomic instructions). Plain loads and
//! stores are volatile accesses, the kernel's READ_ONCE/WRITE_ONCE: LLVM's BPF back end selects
//! no instruction for an atomic load or store below cpu v4, and an aligned BPF load or store of
//! a u32 or u64 is one instruction, single-copy atomic.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// A shared u32 field.
#[derive(Clone, Copy)]
pub struct SharedU32(*mut u32);

impl SharedU32 {
    /// The field at `field`.
    ///
    /// # Safety
    /// `field` is 4-aligned and stays valid memory while the value is used (a map value
    /// pointer, for the program run).
    #[inline(always)]
    pub unsafe fn at(field: *mut u32) -> Self {
        Self(field)
    }

    /// The field's value.
    #[inline(always)]
    pub fn load(self) -> u32 {
        // SAFETY: `at`'s guarantee.
        unsafe { self.0.read_volatile() }
    }

    /// Sets the field.
    #[inline(always)]
    pub fn store(self, value: u32) {
        // SAFETY: `at`'s guarantee.
        unsafe { self.0.write_volatile(value) }
    }

    #[inline(always)]
    fn atomic(self) -> &'static AtomicU32 {
        // SAFETY: `at`'s guarantee; the reference is used for one operation only.
        unsafe { AtomicU32::from_ptr(self.0) }
    }

    /// Adds `value`, wrapping.
    #[inline(always)]
    pub fn add(self, value: u32) {
        self.atomic().fetch_add(value, Relaxed);
    }

    /// Subtracts `value`, wrapping.
    #[inline(always)]
    pub fn sub(self, value: u32) {
        self.atomic().fetch_sub(value, Relaxed);
    }

    /// Replaces `current` with `new`; false if the field held something else.
    #[inline(always)]
    pub fn compare_exchange(self, current: u32, new: u32) -> bool {
        self.atomic()
            .compare_exchange(current, new, Relaxed, Relaxed)
            .is_ok()
    }
}

/// A shared u64 field.
#[derive(Clone, Copy)]
pub struct SharedU64(*mut u64);

impl SharedU64 {
    /// The field at `field`.
    ///
    /// # Safety
    /// `field` is 8-aligned and stays valid memory while the value is used (a map value
    /// pointer, for the program run).
    #[inline(always)]
    pub unsafe fn at(field: *mut u64) -> Self {
        Self(field)
    }

    /// The field's value.
    #[inline(always)]
    pub fn load(self) -> u64 {
        // SAFETY: `at`'s guarantee.
        unsafe { self.0.read_volatile() }
    }

    /// Sets the field.
    #[inline(always)]
    pub fn store(self, value: u64) {
        // SAFETY: `at`'s guarantee.
        unsafe { self.0.write_volatile(value) }
    }

    /// Replaces `current` with `new`; on failure, the value the field held instead.
    #[inline(always)]
    pub fn compare_exchange(self, current: u64, new: u64) -> Result<(), u64> {
        // SAFETY: `at`'s guarantee; the reference is used for this operation only.
        let atomic = unsafe { AtomicU64::from_ptr(self.0) };
        atomic
            .compare_exchange(current, new, Relaxed, Relaxed)
            .map(drop)
    }
}
