//! Regions of the bucket-table pool shared by all services. A new table is written into a
//! free region before the service is switched to it; the old region is freed afterwards.

use lb_common::TABLE_POOL_SIZE;

/// First-fit allocator over `[0, TABLE_POOL_SIZE)`.
#[derive(Debug)]
pub struct TablePool {
    /// Free regions (start, length), sorted and coalesced.
    free: Vec<(u32, u32)>,
}

impl Default for TablePool {
    fn default() -> Self {
        Self {
            free: vec![(0, TABLE_POOL_SIZE)],
        }
    }
}

impl TablePool {
    /// A free region of `len` entries: its start.
    pub fn alloc(&mut self, len: u32) -> Option<u32> {
        let i = self.free.iter().position(|(_, l)| *l >= len)?;
        let (start, l) = self.free[i];
        if l == len {
            self.free.remove(i);
        } else {
            self.free[i] = (start + len, l - len);
        }
        Some(start)
    }

    /// Returns a region to the pool.
    pub fn free(&mut self, start: u32, len: u32) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_first_fit_and_coalesces() {
        let mut p = TablePool::default();
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
    }
}
