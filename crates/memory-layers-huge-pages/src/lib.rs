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
//! Blocks of at least [`MAPPED`] bytes (on Linux) are mappings of their own, as glibc makes
//! most blocks that large: fresh pages, which the kernel zeroes on first touch, so a zeroed
//! block (`vec![0.0; n]`, a zeros tensor) costs no pass of its own. `System` only guarantees
//! zeros at a 2 MiB alignment by writing them, a second pass over hundreds of MB per step.
//!
//! Binaries opt in:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: memory_layers_huge_pages::HugePageAlloc = memory_layers_huge_pages::HugePageAlloc;
//!
//! fn main() {
//!     // 4 MiB on a 2 MiB boundary: two huge pages
//!     let table = vec![1.0f32; 1 << 20];
//!     assert_eq!(table.as_ptr() as usize % memory_layers_huge_pages::HUGE_PAGE, 0);
//!     assert_eq!(table.iter().sum::<f32>(), (1 << 20) as f32);
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout, System};

/// The size of a transparent huge page on x86-64 and 4 KiB-page aarch64 (`hpage_pmd_size`).
pub const HUGE_PAGE: usize = 2 << 20;

/// [`System`], with blocks of at least [`HUGE_PAGE`] bytes aligned to it and advised for huge
/// pages (Linux; elsewhere only aligned), and blocks of at least [`MAPPED`] bytes mapped on
/// their own (Linux).
#[derive(Debug, Default, Clone, Copy)]
pub struct HugePageAlloc;

/// Blocks from this size on are mapped on their own, zeroed by the kernel (Linux): glibc's
/// largest threshold for mapping a block (`M_MMAP_THRESHOLD`'s maximum on 64-bit). Smaller
/// blocks keep glibc's reuse of its heap.
pub const MAPPED: usize = 32 << 20;

/// Whether a block is one of its own mappings: a pure function of the caller's layout, as
/// [`placed`] is. Page alignment is what a mapping gives; larger alignments go to `System`.
fn mapped(layout: Layout) -> bool {
    cfg!(target_os = "linux") && layout.size() >= MAPPED && layout.align() <= 4096
}

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
// SAFETY: blocks that are not `mapped` are forwarded to `System` with `placed(layout)`, whose
// size is the caller's and whose alignment is at least the caller's, and released with the
// placed layout of the layout they were allocated with; `mapped` blocks are page-aligned
// anonymous mappings of at least their size, unmapped with the length they were mapped with.
// `mapped` and `placed` depend on the layout alone, so a block is always released the way it
// was allocated. `advise` only changes the paging advice of memory the block owns.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if mapped(layout) {
            return map(layout.size());
        }
        // SAFETY: `placed` keeps the caller's non-zero size and a valid alignment.
        let block = unsafe { System.alloc(placed(layout)) };
        advise(block, layout.size());
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if mapped(layout) {
            // Fresh anonymous pages read as zeros.
            return map(layout.size());
        }
        // SAFETY: as for `alloc`.
        let block = unsafe { System.alloc_zeroed(placed(layout)) };
        advise(block, layout.size());
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if mapped(layout) {
            // SAFETY: `block` was mapped by `map` (or moved by `remap`) for this size.
            return unsafe { unmap(block, layout.size()) };
        }
        // SAFETY: `block` was allocated by `System` with `placed(layout)`.
        unsafe { System.dealloc(block, placed(layout)) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if mapped(layout) && mapped(new_layout) {
            // SAFETY: `block` is a mapping of `layout.size()`.
            return unsafe { remap(block, layout.size(), new_size) };
        }
        let (old, new) = (placed(layout), placed(new_layout));
        if mapped(layout) || mapped(new_layout) || old.align() != new.align() {
            // The block changes kind or placement: move it.
            // SAFETY: a fresh block of `new_layout`; both hold at least the smaller size;
            // `block` was allocated with `layout` and is released once.
            return unsafe {
                let moved = self.alloc(new_layout);
                if !moved.is_null() {
                    std::ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                    self.dealloc(block, layout);
                }
                moved
            };
        }
        // SAFETY: `block` was allocated with `old`; `new_size` is the caller's.
        let moved = unsafe { System.realloc(block, old, new_size) };
        if moved != block || new_size > layout.size() {
            advise(moved, new_size);
        }
        moved
    }
}

/// The length a block of `size` bytes is mapped with: whole huge pages, so its last one can be
/// a huge page too (the remainder past `size` takes memory only once that page is touched).
#[cfg(target_os = "linux")]
fn mapped_len(size: usize) -> usize {
    size.next_multiple_of(HUGE_PAGE)
}

/// A fresh anonymous mapping of at least `size` bytes on a huge-page boundary, advised; null
/// when the kernel refuses. Maps a huge page more than needed and unmaps the unaligned ends.
#[cfg(target_os = "linux")]
fn map(size: usize) -> *mut u8 {
    let len = mapped_len(size);
    #[allow(unsafe_code)]
    // SAFETY: a new private anonymous mapping; the unmapped ends lie inside it and outside the
    // aligned `len` bytes that are returned.
    unsafe {
        let raw = libc::mmap(
            std::ptr::null_mut(),
            len + HUGE_PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if raw == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        let raw = raw as usize;
        let start = raw.next_multiple_of(HUGE_PAGE);
        if start > raw {
            libc::munmap(raw as *mut libc::c_void, start - raw);
        }
        // The rest of the extra huge page: never empty, as `raw` is page-aligned.
        libc::munmap((start + len) as *mut libc::c_void, raw + HUGE_PAGE - start);
        advise(start as *mut u8, len);
        start as *mut u8
    }
}

#[cfg(not(target_os = "linux"))]
fn map(_: usize) -> *mut u8 {
    unreachable!("blocks are mapped on Linux only")
}

/// Releases a block made by [`map`] or [`remap`] for `size` bytes.
///
/// # Safety
/// `block` is such a block, not used after this.
#[allow(unsafe_code)]
unsafe fn unmap(block: *mut u8, size: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: the caller's block is a mapping of `mapped_len(size)` bytes.
    unsafe {
        libc::munmap(block.cast(), mapped_len(size));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (block, size);
}

/// Resizes a block made by [`map`] or [`remap`] without copying its pages (`mremap`): shrunk in
/// place, grown in place where the address space after it is free, else moved to wherever the
/// kernel finds room (page-aligned, which is all `mapped` blocks ask; a moved block may lose
/// its huge-page placement). Null, with the block untouched, when the kernel refuses.
///
/// # Safety
/// `block` is such a block of `size` bytes; on success it is not used after this.
#[allow(unsafe_code)]
unsafe fn remap(block: *mut u8, size: usize, new_size: usize) -> *mut u8 {
    #[cfg(target_os = "linux")]
    // SAFETY: the caller's block is a mapping of `mapped_len(size)` bytes. Without
    // `MREMAP_FIXED` the kernel unmaps nothing outside it, and a failed call leaves it as it was.
    unsafe {
        let (old, new) = (mapped_len(size), mapped_len(new_size));
        let flags = if new > old { libc::MREMAP_MAYMOVE } else { 0 };
        let moved = libc::mremap(block.cast(), old, new, flags);
        if moved == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        moved.cast()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (block, size, new_size);
        unreachable!("blocks are mapped on Linux only")
    }
}

/// The whole huge pages inside `[start, start + size)`: `(first, bytes)`, or `None` when the
/// block holds none.
pub fn huge_span(start: usize, size: usize) -> Option<(usize, usize)> {
    let first = start.checked_next_multiple_of(HUGE_PAGE)?;
    let end = start.checked_add(size)? / HUGE_PAGE * HUGE_PAGE;
    (end > first).then(|| (first, end - first))
}

/// Asks for huge pages on the whole huge pages of a block (all of a placed or mapped large
/// block); advice only, so a failure (THP compiled out or set to `never`) changes nothing.
fn advise(block: *mut u8, size: usize) {
    if block.is_null() || size < HUGE_PAGE {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Some((first, bytes)) = huge_span(block as usize, size) {
        #[allow(unsafe_code)]
        // SAFETY: the range lies inside the live block just allocated or mapped; advice does
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

    /// Zeroed blocks read as zeros, also where freed memory is handed out again, and a block's
    /// contents follow it through growth and shrinking across both thresholds (`HUGE_PAGE`,
    /// `MAPPED`).
    #[test]
    fn blocks_allocated_through_it_work_at_every_size() {
        let sizes = [1, 4096, HUGE_PAGE - 1, HUGE_PAGE, 3 * HUGE_PAGE + 17];
        for size in sizes.into_iter().chain([MAPPED - 1, MAPPED, MAPPED + 17]) {
            let layout = Layout::from_size_align(size, 64).unwrap();
            let zeros = |block: *mut u8| {
                #[allow(unsafe_code)]
                // SAFETY: a live block of `size` bytes.
                let bytes = unsafe { std::slice::from_raw_parts(block, size) };
                assert!(bytes.iter().all(|&b| b == 0), "size {size}");
            };
            #[allow(unsafe_code)]
            // SAFETY: non-zero sizes; each block is written within its size and freed once with
            // its layout.
            unsafe {
                let block = HugePageAlloc.alloc_zeroed(layout);
                assert!(!block.is_null());
                if size >= HUGE_PAGE {
                    assert_eq!(block as usize % HUGE_PAGE, 0, "size {size}");
                }
                zeros(block);
                block.write_bytes(7, size);
                HugePageAlloc.dealloc(block, layout);
                let mut block = HugePageAlloc.alloc_zeroed(layout);
                zeros(block);
                block.write_bytes(7, size);
                // Grow past the thresholds, shrink to just above the size, then below them:
                // the contents move along.
                let mut layout = layout;
                for new_size in [2 * size + HUGE_PAGE, size + 1, 100] {
                    let moved = HugePageAlloc.realloc(block, layout, new_size);
                    assert!(!moved.is_null());
                    // A mapped block that moves keeps page alignment only.
                    let new_layout = Layout::from_size_align(new_size, 64).unwrap();
                    let alignment = if new_size >= HUGE_PAGE && !mapped(new_layout) {
                        HUGE_PAGE
                    } else {
                        64
                    };
                    assert_eq!(moved as usize % alignment, 0, "size {size} → {new_size}");
                    let kept = std::slice::from_raw_parts(moved, size.min(new_size));
                    assert!(kept.iter().all(|&b| b == 7), "size {size} → {new_size}");
                    (block, layout) = (moved, new_layout);
                }
                HugePageAlloc.dealloc(block, layout);
            }
        }
    }

    /// The VM flags of the mapping that holds `address`, from `/proc/self/smaps`.
    #[cfg(target_os = "linux")]
    fn vm_flags(address: usize) -> Vec<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((start, end)) = range.split_once('-')
                && let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                )
            {
                inside = (start..end).contains(&address);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.split_whitespace().map(str::to_owned).collect();
            }
        }
        panic!("no mapping holds {address:#x} in /proc/self/smaps")
    }

    /// The kernel records the advice as the `hg` flag of the block's mapping in
    /// `/proc/self/smaps`, for placed and for mapped blocks; without THP in the kernel there is
    /// nothing to advise.
    #[cfg(target_os = "linux")]
    #[test]
    fn large_blocks_are_advised() {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
            eprintln!("no transparent huge pages in this kernel: nothing to check");
            return;
        }
        for size in [8 * HUGE_PAGE, MAPPED] {
            let layout = Layout::from_size_align(size, 64).unwrap();
            #[allow(unsafe_code)]
            // SAFETY: a non-zero size, freed once with its layout.
            let block = unsafe { HugePageAlloc.alloc(layout) };
            let flags = vm_flags(block as usize + HUGE_PAGE);
            #[allow(unsafe_code)]
            // SAFETY: allocated above with this layout.
            unsafe {
                HugePageAlloc.dealloc(block, layout)
            };
            assert!(
                flags.iter().any(|f| f == "hg"),
                "size {size}: VmFlags {flags:?}"
            );
        }
    }

    /// A zeroed mapped block is not written: none of its pages is resident until it is used
    /// (`System` would have written the zeros, faulting every page in).
    #[cfg(target_os = "linux")]
    #[test]
    fn large_zeroed_blocks_are_not_written() {
        let layout = Layout::from_size_align(MAPPED, 64).unwrap();
        #[allow(unsafe_code)]
        // SAFETY: a non-zero size; `mincore` fills one byte per page of the block into a buffer
        // of that many bytes; the block is freed once with its layout.
        unsafe {
            let page = usize::try_from(libc::sysconf(libc::_SC_PAGESIZE)).unwrap();
            let block = HugePageAlloc.alloc_zeroed(layout);
            assert!(!block.is_null());
            let mut resident = vec![0u8; MAPPED.div_ceil(page)];
            let rc = libc::mincore(block.cast(), MAPPED, resident.as_mut_ptr());
            let touched = resident.iter().filter(|&&r| r & 1 == 1).count();
            HugePageAlloc.dealloc(block, layout);
            assert_eq!(rc, 0, "mincore");
            assert_eq!(touched, 0, "{touched} of {} pages resident", resident.len());
        }
    }
}
