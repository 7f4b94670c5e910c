//! The steady scrape path allocates per scrape and per chunk, never per line.
//! A counting allocator counts only the current thread's allocations, so
//! tests running in parallel don't disturb it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use truenas_net_exporter::composer::compose;
use truenas_net_exporter::model::labels::LabelSettings;
use truenas_net_exporter::scrape::{Scrape, join_and_write};
use truenas_net_exporter::synthetic;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    /// Bytes this thread holds (allocated minus freed, as asked for).
    static HELD: Cell<isize> = const { Cell::new(0) };
}

fn held(change: isize) {
    HELD.with(|h| h.set(h.get() + change));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        held(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        held(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        held(new_size as isize - layout.size() as isize);
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
    let before = HELD.with(Cell::get);
    let table = compose(&topology, &[&owners], &settings);
    let table_bytes = HELD.with(Cell::get) - before;
    eprintln!("label table at 10,000 interfaces: {table_bytes} bytes held");
    let mut out = Vec::new();
    join_and_write(&netdev, &table, &settings, &mut out);
    let size = out.len();
    out.clear();

    let before = allocations();
    let stats = join_and_write(&netdev, &table, &settings, &mut out);
    let whole = allocations() - before;
    assert_eq!(stats.interfaces, 10_000);
    assert_eq!(out.len(), size);
    eprintln!("a whole scrape into a warm buffer: {whole} allocations");
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
    eprintln!("streamed: {streamed} allocations for {chunks} chunks");
    assert!(
        streamed <= chunks + 2,
        "{streamed} allocations for {chunks} chunks"
    );
}
