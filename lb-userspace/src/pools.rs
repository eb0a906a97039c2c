//! Allocation of map slots: regions of the list and bucket-table pools shared by all services
//! (a new list or table is written into a free region before the service is switched to it,
//! and the old region is freed once no packet can still read it), and service and real server
//! ids.

/// First-fit allocator of regions in `[0, size)`.
#[derive(Clone, Debug)]
pub struct RegionPool {
    /// Free regions (start, length), sorted and coalesced.
    free: Vec<(u32, u32)>,
}

impl RegionPool {
    /// A pool of `size` free entries.
    pub fn new(size: u32) -> Self {
        Self {
            free: vec![(0, size)],
        }
    }

    /// A free region of `len` entries: its start (0 for an empty region, which takes nothing).
    pub fn alloc(&mut self, len: u32) -> Option<u32> {
        if len == 0 {
            return Some(0);
        }
        let i = self.free.iter().position(|(_, l)| *l >= len)?;
        let (start, l) = self.free[i];
        if l == len {
            self.free.remove(i);
        } else {
            self.free[i] = (start + len, l - len);
        }
        Some(start)
    }

    /// Takes the region `[start, start + len)` if it is free (a daemon adopting its
    /// predecessor's tables); whether it was.
    pub fn reserve(&mut self, start: u32, len: u32) -> bool {
        if len == 0 {
            return true;
        }
        let Some(i) = self
            .free
            .iter()
            .position(|(s, l)| *s <= start && start + len <= s + l)
        else {
            return false;
        };
        let (s, l) = self.free.remove(i);
        let pieces = [(s, start - s), (start + len, s + l - start - len)];
        self.free.extend(pieces.into_iter().filter(|(_, l)| *l > 0));
        self.free.sort_unstable();
        true
    }

    /// Returns a region to the pool.
    pub fn free(&mut self, start: u32, len: u32) {
        if len == 0 {
            return;
        }
        let i = self.free.partition_point(|(s, _)| *s < start);
        self.free.insert(i, (start, len));
        // Merge with the next, then with the previous region.
        if i + 1 < self.free.len() && start + len == self.free[i + 1].0 {
            self.free[i].1 += self.free.remove(i + 1).1;
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == start {
            self.free[i - 1].1 += self.free.remove(i).1;
        }
    }
}

/// Ids below a maximum, lowest free first.
#[derive(Clone, Debug)]
pub struct IdPool {
    next: u32,
    max: u32,
    free: std::collections::BTreeSet<u32>,
}

impl IdPool {
    /// Ids `0..max`.
    pub fn new(max: u32) -> Self {
        Self {
            next: 0,
            max,
            free: Default::default(),
        }
    }

    /// A free id.
    pub fn alloc(&mut self) -> Option<u32> {
        if let Some(id) = self.free.pop_first() {
            return Some(id);
        }
        (self.next < self.max).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// Returns an id.
    pub fn free(&mut self, id: u32) {
        self.free.insert(id);
    }

    /// Takes `id` if it is free (a daemon adopting its predecessor's ids); whether it was.
    pub fn take(&mut self, id: u32) -> bool {
        if id >= self.max {
            return false;
        }
        if id >= self.next {
            self.free.extend(self.next..id);
            self.next = id + 1;
            return true;
        }
        self.free.remove(&id)
    }
}

#[cfg(test)]
mod tests {
    use lb_common::TABLE_POOL_SIZE;

    use super::*;

    #[test]
    fn allocates_first_fit_and_coalesces() {
        let mut p = RegionPool::new(TABLE_POOL_SIZE);
        let a = p.alloc(256).unwrap();
        let b = p.alloc(1021).unwrap();
        let c = p.alloc(256).unwrap();
        assert_eq!((a, b, c), (0, 256, 1277));
        p.free(b, 1021);
        assert_eq!(p.alloc(300), Some(256), "first fit reuses the hole");
        p.free(256, 300);
        p.free(a, 256);
        p.free(c, 256);
        assert_eq!(p.free, vec![(0, TABLE_POOL_SIZE)]);
        assert_eq!(p.alloc(TABLE_POOL_SIZE + 1), None);
        assert_eq!(p.alloc(0), Some(0));
        assert!(p.reserve(1000, 24) && !p.reserve(1010, 2));
        assert_eq!(p.free, vec![(0, 1000), (1024, TABLE_POOL_SIZE - 1024)]);
        p.free(1000, 24);
        p.free(0, 0);
        assert_eq!(
            p.free,
            vec![(0, TABLE_POOL_SIZE)],
            "empty regions take and give back nothing"
        );
    }
}

#[cfg(test)]
mod id_tests {
    use super::IdPool;

    #[test]
    fn reuses_lowest_free_id_and_stops_at_max() {
        let mut p = IdPool::new(3);
        assert_eq!(
            (p.alloc(), p.alloc(), p.alloc(), p.alloc()),
            (Some(0), Some(1), Some(2), None)
        );
        p.free(2);
        p.free(0);
        assert_eq!((p.alloc(), p.alloc(), p.alloc()), (Some(0), Some(2), None));
        let mut p = IdPool::new(10);
        assert!(p.take(3) && !p.take(3) && p.take(1) && !p.take(10));
        assert_eq!(
            (p.alloc(), p.alloc(), p.alloc()),
            (Some(0), Some(2), Some(4))
        );
    }
}
