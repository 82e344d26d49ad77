//! The system allocator, with transparent huge pages (THP) requested for every block of at least
//! one huge page.
//!
//! Large tensors (score matrices, activations, value tables) are freshly mapped blocks: with
//! 4 KiB pages, every step faults each of their pages in again. Most Linux systems run THP in
//! `madvise` mode, where a range gets 2 MiB pages only after `madvise(MADV_HUGEPAGE)`. glibc's
//! `glibc.malloc.hugetlb=1` tunable does that for its mappings, but glibc 2.36 (Debian 12)
//! reads the THP mode into an unterminated buffer and, depending on the process's stack
//! contents, skips it in about a third of processes: the half-score GEMM of the retrieval
//! benchmark then took 30 ms instead of 10 (docs/performance-notes.md). This allocator asks for
//! huge pages itself, so every process gets them.
//!
//! Binaries opt in:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: huge_pages::HugePageAlloc = huge_pages::HugePageAlloc;
//!
//! fn main() {
//!     let table = vec![1.0f32; 1 << 20]; // 4 MiB: its two whole huge pages are advised
//!     assert_eq!(table.iter().sum::<f32>(), (1 << 20) as f32);
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout, System};

/// The size of a transparent huge page on x86-64 and 4 KiB-page aarch64 (`hpage_pmd_size`).
pub const HUGE_PAGE: usize = 2 << 20;

/// [`System`], plus `madvise(MADV_HUGEPAGE)` on the whole huge pages inside each block of at
/// least [`HUGE_PAGE`] bytes (Linux; elsewhere exactly `System`).
#[derive(Debug, Default, Clone, Copy)]
pub struct HugePageAlloc;

#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's arguments; `advise` only changes
// the paging advice of memory the block owns and never touches its contents.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is the same as `System`'s.
        let block = unsafe { System.alloc(layout) };
        advise(block, layout.size());
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let block = unsafe { System.alloc_zeroed(layout) };
        advise(block, layout.size());
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: `block` came from `System` (every allocation here does) with this layout.
        unsafe { System.dealloc(block, layout) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is the caller's, checked by `System`.
        let block = unsafe { System.realloc(block, layout, new_size) };
        if new_size > layout.size() {
            advise(block, new_size);
        }
        block
    }
}

/// The whole huge pages inside `[start, start + size)`: `(first, bytes)`, or `None` when the
/// block holds none.
pub fn huge_span(start: usize, size: usize) -> Option<(usize, usize)> {
    let first = start.checked_next_multiple_of(HUGE_PAGE)?;
    let end = start.checked_add(size)? / HUGE_PAGE * HUGE_PAGE;
    (end > first).then(|| (first, end - first))
}

/// Asks for huge pages on the whole huge pages of a block; advice only, so a failure (THP
/// compiled out or set to `never`) changes nothing.
fn advise(block: *mut u8, size: usize) {
    if block.is_null() || size < HUGE_PAGE {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Some((first, bytes)) = huge_span(block as usize, size) {
        #[allow(unsafe_code)]
        // SAFETY: the range lies inside the live block just returned by `System`; advice does
        // not change its contents or its mapping.
        unsafe {
            libc::madvise(first as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_span_is_the_aligned_interior() {
        assert_eq!(huge_span(0, HUGE_PAGE), Some((0, HUGE_PAGE)));
        assert_eq!(huge_span(1, HUGE_PAGE), None);
        assert_eq!(
            huge_span(4096, 3 * HUGE_PAGE),
            Some((HUGE_PAGE, 2 * HUGE_PAGE))
        );
        assert_eq!(
            huge_span(HUGE_PAGE - 1, HUGE_PAGE + 1),
            Some((HUGE_PAGE, HUGE_PAGE))
        );
        assert_eq!(huge_span(usize::MAX - 10, 100), None);
    }

    #[test]
    fn blocks_allocated_through_it_work_at_every_size() {
        for size in [1, 4096, HUGE_PAGE, 3 * HUGE_PAGE + 17] {
            let layout = Layout::from_size_align(size, 64).unwrap();
            #[allow(unsafe_code)]
            // SAFETY: non-zero size; the block is written within its size and freed once.
            unsafe {
                let block = HugePageAlloc.alloc_zeroed(layout);
                assert!(!block.is_null());
                assert!(
                    std::slice::from_raw_parts(block, size)
                        .iter()
                        .all(|&b| b == 0)
                );
                block.write_bytes(7, size);
                let grown = HugePageAlloc.realloc(block, layout, 2 * size);
                assert_eq!(*grown.add(size - 1), 7);
                HugePageAlloc.dealloc(grown, Layout::from_size_align(2 * size, 64).unwrap());
            }
        }
    }
}
