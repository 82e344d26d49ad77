//! The system allocator, with transparent huge pages (THP) requested for every block of at least
//! one huge page.
//!
//! Large tensors (score matrices, activations, value tables) are freshly mapped blocks: with
//! 4 KiB pages, every step faults each of their pages in again, and random reads of a value
//! table miss the TLB. Most Linux systems run THP in `madvise` mode, where a range gets 2 MiB
//! pages only after `madvise(MADV_HUGEPAGE)`. glibc's `glibc.malloc.hugetlb=1` tunable does that
//! for its mappings, but glibc 2.36 (Debian 12) skipped it in 2 to 3 of every 6 processes we
//! started, and a binary run outside cargo never has the variable: the retrieval benchmark's
//! half-score GEMM then took 30 ms instead of 10
//! (docs/decisions/0006-huge-pages-allocator.md). This allocator asks for huge pages itself.
//!
//! Blocks of at least [`HUGE_PAGE`] bytes are placed on a huge-page boundary (as PyTorch's
//! allocator does), so every whole 2 MiB of them can be a huge page, and are advised. Smaller
//! blocks are exactly [`System`]'s.
//!
//! Binaries opt in:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: huge_pages::HugePageAlloc = huge_pages::HugePageAlloc;
//!
//! fn main() {
//!     // 4 MiB on a 2 MiB boundary: two huge pages
//!     let table = vec![1.0f32; 1 << 20];
//!     assert_eq!(table.as_ptr() as usize % huge_pages::HUGE_PAGE, 0);
//!     assert_eq!(table.iter().sum::<f32>(), (1 << 20) as f32);
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout, System};

/// The size of a transparent huge page on x86-64 and 4 KiB-page aarch64 (`hpage_pmd_size`).
pub const HUGE_PAGE: usize = 2 << 20;

/// [`System`], with blocks of at least [`HUGE_PAGE`] bytes aligned to it and advised for huge
/// pages (Linux; elsewhere only aligned).
#[derive(Debug, Default, Clone, Copy)]
pub struct HugePageAlloc;

/// The layout a block is allocated with: large blocks on a huge-page boundary. A pure function
/// of the caller's layout, so a block's release uses the layout it was allocated with.
fn placed(layout: Layout) -> Layout {
    if layout.size() >= HUGE_PAGE && layout.align() < HUGE_PAGE {
        Layout::from_size_align(layout.size(), HUGE_PAGE).unwrap_or(layout)
    } else {
        layout
    }
}

#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with `placed(layout)`, whose size is the caller's
// and whose alignment is at least the caller's, and releases a block with the placed layout of
// the layout it was allocated with; `advise` only changes the paging advice of memory the
// block owns and never touches its contents.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `placed` keeps the caller's non-zero size and a valid alignment.
        let block = unsafe { System.alloc(placed(layout)) };
        advise(block, layout.size());
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let block = unsafe { System.alloc_zeroed(placed(layout)) };
        advise(block, layout.size());
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: `block` was allocated by `System` with `placed(layout)`.
        unsafe { System.dealloc(block, placed(layout)) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let (old, new) = (placed(layout), placed(new_layout));
        let moved = if old.align() == new.align() {
            // SAFETY: `block` was allocated with `old`; `new_size` is the caller's.
            unsafe { System.realloc(block, old, new_size) }
        } else {
            // Crossing HUGE_PAGE changes the placement: move the block.
            // SAFETY: a fresh block of `new`; both hold at least the smaller size; `block`
            // was allocated with `old` and is released once.
            unsafe {
                let moved = System.alloc(new);
                if !moved.is_null() {
                    std::ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                    System.dealloc(block, old);
                }
                moved
            }
        };
        if moved != block || new_size > layout.size() {
            advise(moved, new_size);
        }
        moved
    }
}

/// The whole huge pages inside `[start, start + size)`: `(first, bytes)`, or `None` when the
/// block holds none.
pub fn huge_span(start: usize, size: usize) -> Option<(usize, usize)> {
    let first = start.checked_next_multiple_of(HUGE_PAGE)?;
    let end = start.checked_add(size)? / HUGE_PAGE * HUGE_PAGE;
    (end > first).then(|| (first, end - first))
}

/// Asks for huge pages on the whole huge pages of a block (all of a placed large block); advice
/// only, so a failure (THP compiled out or set to `never`) changes nothing.
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
        for size in [1, 4096, HUGE_PAGE - 1, HUGE_PAGE, 3 * HUGE_PAGE + 17] {
            let layout = Layout::from_size_align(size, 64).unwrap();
            #[allow(unsafe_code)]
            // SAFETY: non-zero sizes; each block is written within its size and freed once with
            // its layout.
            unsafe {
                let block = HugePageAlloc.alloc_zeroed(layout);
                assert!(!block.is_null());
                if size >= HUGE_PAGE {
                    assert_eq!(block as usize % HUGE_PAGE, 0, "size {size}");
                }
                assert!(
                    std::slice::from_raw_parts(block, size)
                        .iter()
                        .all(|&b| b == 0)
                );
                block.write_bytes(7, size);
                // Grow past the threshold, then shrink below it: the contents move along.
                let grown = HugePageAlloc.realloc(block, layout, 2 * size + HUGE_PAGE);
                assert!(!grown.is_null());
                assert_eq!(grown as usize % HUGE_PAGE, 0, "size {size}");
                assert!(
                    std::slice::from_raw_parts(grown, size)
                        .iter()
                        .all(|&b| b == 7)
                );
                let grown_layout = Layout::from_size_align(2 * size + HUGE_PAGE, 64).unwrap();
                let shrunk = HugePageAlloc.realloc(grown, grown_layout, 100);
                assert!(!shrunk.is_null());
                assert!(
                    std::slice::from_raw_parts(shrunk, 100.min(size))
                        .iter()
                        .all(|&b| b == 7)
                );
                HugePageAlloc.dealloc(shrunk, Layout::from_size_align(100, 64).unwrap());
            }
        }
    }

    /// The kernel records the advice as the `hg` flag of the block's mapping in
    /// `/proc/self/smaps`; without THP in the kernel there is nothing to advise.
    #[cfg(target_os = "linux")]
    #[test]
    fn large_blocks_are_advised() {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
            eprintln!("no transparent huge pages in this kernel: nothing to check");
            return;
        }
        let layout = Layout::from_size_align(8 * HUGE_PAGE, 64).unwrap();
        #[allow(unsafe_code)]
        // SAFETY: a non-zero size, freed once with its layout.
        let block = unsafe { HugePageAlloc.alloc(layout) } as usize;
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        let mut flags = None;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((start, end)) = range.split_once('-')
                && let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                )
            {
                inside = (start..end).contains(&(block + HUGE_PAGE));
            } else if inside && let Some(vm_flags) = line.strip_prefix("VmFlags:") {
                flags = Some(
                    vm_flags
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect::<Vec<_>>(),
                );
            }
        }
        #[allow(unsafe_code)]
        // SAFETY: allocated above with this layout.
        unsafe {
            HugePageAlloc.dealloc(block as *mut u8, layout)
        };
        let flags = flags.expect("the block's mapping is listed in /proc/self/smaps");
        assert!(flags.iter().any(|f| f == "hg"), "VmFlags {flags:?}");
    }
}
