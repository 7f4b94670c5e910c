//! The steady scrape path allocates per scrape and per chunk, never per line.
//! A counting allocator counts only the current thread's allocations, so
//! tests running in parallel don't disturb it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use truenas_net_exporter::compose::compose;
use truenas_net_exporter::labels::LabelSettings;
use truenas_net_exporter::scrape::{Scrape, join_and_write};
use truenas_net_exporter::synthetic;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn ten_thousand_interfaces_without_per_line_allocation() {
    let (netdev, topology, owners) = synthetic::host(10_000);
    let settings = LabelSettings::default();
    let table = compose(&topology, &[&owners], &settings);
    let mut out = Vec::new();
    join_and_write(&netdev, &table, &settings, &mut out);
    let size = out.len();
    out.clear();

    let before = allocations();
    let stats = join_and_write(&netdev, &table, &settings, &mut out);
    let whole = allocations() - before;
    assert_eq!(stats.interfaces, 10_000);
    assert_eq!(out.len(), size);
    assert!(
        whole <= 2,
        "{whole} allocations for 90,000 lines into a warm buffer"
    );

    // Streamed as the server does: one allocation per chunk.
    let before = allocations();
    let mut scrape = Scrape::new(&netdev, &table, &settings);
    let mut chunks = 0;
    let mut bytes = 0;
    loop {
        let mut chunk = Vec::with_capacity(136 * 1024);
        let more = scrape.write_chunk(&mut chunk, 128 * 1024);
        bytes += chunk.len();
        chunks += 1;
        if !more {
            break;
        }
    }
    let streamed = allocations() - before;
    assert_eq!(bytes, size);
    assert!(
        streamed <= chunks + 2,
        "{streamed} allocations for {chunks} chunks"
    );
}
