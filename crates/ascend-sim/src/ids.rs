//! The id space of one resource of one organization.
//!
//! A record is known by its *index* `0..len`; its id is a pure function of
//! the index and ids strictly ascend with it, so "the first record with an
//! id above X" is arithmetic plus at most one probe, never a search through
//! data. Like the real API, one resource mixes id lengths: a few legacy
//! 3-4 digit ids (always including both `999` and `1000`, to catch clients
//! that compare ids as text), a band of 6-digit ids, then 13-digit ids like
//! `7000000457903`. Ids are not contiguous.

use crate::hash::{below, hash3};

/// One run of ids: index `start + j` has id `base + j * stride + jitter(j)`,
/// where `jitter < stride`, so ids strictly ascend.
#[derive(Clone, Debug)]
struct Segment {
    start: u64,
    count: u64,
    base: u64,
    stride: u64,
}

/// Maps record indexes to ids and back.
#[derive(Clone, Debug)]
pub(crate) struct IdSpace {
    segments: Vec<Segment>,
    len: u64,
    jitter_seed: u64,
}

const JITTER_STREAM: u64 = 0x1D5;

impl IdSpace {
    /// The id space of `len` records; `org_index` and `res_index` keep the
    /// 13-digit ids of different organizations and resources apart.
    pub(crate) fn new(len: u64, org_seed: u64, org_index: u64, res_index: u64) -> Self {
        let mut segments = Vec::new();
        let mut start = 0;
        if len >= 10 {
            let count = (len / 40).clamp(4, 200);
            segments.push(Segment {
                start,
                count,
                base: 1000 - count / 2,
                stride: 1,
            });
            start += count;
        }
        if len >= 40 {
            let count = len / 8;
            segments.push(Segment {
                start,
                count,
                base: 200_000,
                stride: 2,
            });
            start += count;
        }
        let base = 7_000_000_000_000
            + org_index % 100 * 10_000_000_000
            + res_index * 100_000_000
            + 100
            + below(hash3(org_seed, JITTER_STREAM, res_index), 400);
        segments.push(Segment {
            start,
            count: len - start,
            base,
            stride: 3,
        });
        Self {
            segments,
            len,
            jitter_seed: hash3(org_seed, JITTER_STREAM, res_index + 1000),
        }
    }

    fn seg_id(&self, seg: &Segment, j: u64) -> u64 {
        let jitter = if seg.stride > 1 {
            below(hash3(self.jitter_seed, seg.start, j), seg.stride)
        } else {
            0
        };
        seg.base + j * seg.stride + jitter
    }

    /// The id of the record at `index` (`index < len`).
    pub(crate) fn id(&self, index: u64) -> u64 {
        for seg in self.segments.iter().rev() {
            if index >= seg.start {
                return self.seg_id(seg, index - seg.start);
            }
        }
        0
    }

    /// The largest generated id (0 when empty).
    pub(crate) fn max_id(&self) -> u64 {
        if self.len == 0 {
            0
        } else {
            self.id(self.len - 1)
        }
    }

    /// The index of the first record whose id is `>= id` (`len` if none).
    pub(crate) fn first_at_or_after(&self, id: u64) -> u64 {
        for seg in &self.segments {
            if seg.count == 0 {
                continue;
            }
            let last = self.seg_id(seg, seg.count - 1);
            if id > last {
                continue;
            }
            if id <= seg.base {
                return seg.start;
            }
            let j = ((id - seg.base) / seg.stride).min(seg.count - 1);
            return if self.seg_id(seg, j) >= id {
                seg.start + j
            } else {
                seg.start + j + 1
            };
        }
        self.len
    }

    /// The index of the record with exactly this id, if generated.
    pub(crate) fn index_of(&self, id: u64) -> Option<u64> {
        let i = self.first_at_or_after(id);
        (i < self.len && self.id(i) == id).then_some(i)
    }

    /// Indexes `a..b` of the records with ids in `lo..=hi`.
    pub(crate) fn index_range(&self, lo: u64, hi: u64) -> (u64, u64) {
        if lo > hi {
            return (0, 0);
        }
        let a = self.first_at_or_after(lo);
        let b = if hi == u64::MAX {
            self.len
        } else {
            self.first_at_or_after(hi + 1)
        };
        (a, b.max(a))
    }

    /// How many records are in the legacy band of 3-4 digit ids.
    pub(crate) fn legacy_count(&self) -> u64 {
        self.segments
            .first()
            .filter(|s| s.stride == 1)
            .map_or(0, |s| s.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_strictly_ascend_and_vary_in_length() {
        for len in [0u64, 1, 3, 9, 10, 39, 40, 1000, 20_000] {
            let space = IdSpace::new(len, 99, 2, 5);
            let mut prev = None;
            let mut lengths = std::collections::BTreeSet::new();
            for i in 0..len {
                let id = space.id(i);
                if let Some(p) = prev {
                    assert!(id > p, "len {len}: id({i}) = {id} <= {p}");
                }
                prev = Some(id);
                lengths.insert(id.to_string().len());
                assert_eq!(space.index_of(id), Some(i));
                assert_eq!(space.first_at_or_after(id), i);
                assert_eq!(
                    space.index_of(id + 1).is_some(),
                    i + 1 < len && space.id(i + 1) == id + 1
                );
            }
            if len >= 40 {
                assert!(lengths.contains(&13) && lengths.contains(&6) && lengths.contains(&4));
                assert!(lengths.contains(&3), "no 3-digit id in {len}");
                assert_eq!(space.index_of(999).map(|i| space.id(i)), Some(999));
                assert_eq!(space.index_of(1000).map(|i| space.id(i)), Some(1000));
                assert!(space.legacy_count() > 0);
            }
            if len > 0 {
                assert_eq!(space.max_id().to_string().len(), 13);
            }
        }
    }

    #[test]
    fn first_at_or_after_handles_gaps_and_ends() {
        let space = IdSpace::new(5000, 1, 0, 3);
        assert_eq!(space.first_at_or_after(0), 0);
        assert_eq!(space.first_at_or_after(u64::MAX), 5000);
        assert_eq!(space.first_at_or_after(space.max_id() + 1), 5000);
        // every id between two consecutive ids maps to the later one
        for i in 0..4999 {
            let (a, b) = (space.id(i), space.id(i + 1));
            let mid = a + (b - a).div_ceil(2);
            assert_eq!(space.first_at_or_after(mid), i + 1, "between {a} and {b}");
        }
        let (a, b) = space.index_range(1000, 200_010);
        assert!(space.id(a) >= 1000 && (a == 0 || space.id(a - 1) < 1000));
        assert!(space.id(b - 1) <= 200_010 && space.id(b) > 200_010);
        assert_eq!(space.index_range(5, 4), (0, 0));
    }
}
