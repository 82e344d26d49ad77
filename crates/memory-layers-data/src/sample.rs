//! A uniform sample of a stream up to a size budget: every item draws a priority, and the items
//! of the lowest priorities whose sizes reach the budget are kept (a bottom-k sample, k set by
//! size). One pass, memory bounded by the budget, each item as likely as any other to be kept
//! whatever its place in the stream.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// An item and its priority; ordered by priority alone.
struct Entry<T> {
    priority: u64,
    size: usize,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.priority == other.priority
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.cmp(&other.priority)
    }
}

/// The sample so far.
pub(crate) struct BottomK<T> {
    budget: usize,
    kept: BinaryHeap<Entry<T>>,
    size: usize,
}

impl<T> BottomK<T> {
    /// An empty sample of up to `budget` (the last item kept may pass it).
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget,
            kept: BinaryHeap::new(),
            size: 0,
        }
    }

    /// Offers `item` of `size` with `priority` (a uniform draw); returns the items that leave
    /// the sample, or `item` itself when it does not enter.
    pub(crate) fn offer(&mut self, item: T, size: usize, priority: u64) -> Vec<T> {
        if self.size >= self.budget && self.kept.peek().is_some_and(|top| priority > top.priority) {
            return vec![item];
        }
        self.kept.push(Entry {
            priority,
            size,
            item,
        });
        self.size += size;
        let mut out = Vec::new();
        while let Some(top) = self.kept.peek() {
            if self.size - top.size < self.budget {
                break;
            }
            let top = self.kept.pop().expect("peeked");
            self.size -= top.size;
            out.push(top.item);
        }
        out
    }

    /// The kept items' total size.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// The kept items, lowest priority first.
    pub(crate) fn into_items(self) -> Vec<T> {
        self.kept
            .into_sorted_vec()
            .into_iter()
            .map(|e| e.item)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_lowest_priorities_up_to_the_budget() {
        let mut sample = BottomK::new(10);
        let mut left = Vec::new();
        // (item, size, priority)
        for (item, size, priority) in [(0, 4, 50), (1, 4, 10), (2, 4, 40), (3, 4, 5), (4, 4, 99)] {
            left.extend(sample.offer(item, size, priority));
        }
        // Priorities 5, 10, 40 reach 12 >= 10; without 40 they hold 8 < 10, so 40 stays.
        assert_eq!(sample.size(), 12);
        assert_eq!(sample.into_items(), vec![3, 1, 2]);
        left.sort_unstable();
        assert_eq!(left, vec![0, 4], "every item leaves or stays, once");
    }

    #[test]
    fn every_place_in_the_stream_is_as_likely_to_be_kept() {
        // 10,000 unit items, a budget of 1,000: each half of the stream keeps about half.
        let mut sample = BottomK::new(1000);
        let mut rng = memory_layers_zoo::SplitMix64::new(3);
        for i in 0..10_000usize {
            sample.offer(i, 1, rng.next_u64());
        }
        let kept = sample.into_items();
        assert_eq!(kept.len(), 1000);
        let first_half = kept.iter().filter(|&&i| i < 5000).count();
        assert!((400..600).contains(&first_half), "{first_half}");
    }
}
