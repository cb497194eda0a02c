//! Real page faults resolved through the index: a userfaultfd pager over
//! 1k–32k regions laid out like a real process (tests/data/py1.maps, tiled
//! and relocated with MAP_FIXED_NOREPLACE), with worker threads reading and
//! writing real memory (random and sequential), dropping ranges
//! (madvise DONTNEED) and unmapping/remapping regions, while N handler
//! threads resolve the faults. The same run measures the pager with the
//! maple tree, with `RwLock<BTreeMap>`, and with Firecracker's linear
//! `Vec` scan + `HashSet`.
//!
//! `cargo run --release --features uffd --example uffd_pager -- [--regions 1000,4000,16000,32000]
//! [--secs 1] [--handlers 2] [--workers 2] [--json]`

#[cfg(not(target_os = "linux"))]
fn main() {
    println!("uffd_pager: userfaultfd is Linux-only; skipping");
}

#[cfg(target_os = "linux")]
fn main() {
    linux::main()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use clap::Parser;
    use maple_rcu::trace::parse_maps;
    use maple_rcu::uffd::{
        Backing, Image, Index, LinearIndex, Pager, Region, RwLockIndex, TreeIndex, page_size,
    };

    #[derive(Parser, Debug)]
    struct Args {
        /// Region counts to run (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1000,4000,16000,32000")]
        regions: Vec<usize>,
        /// Seconds of faulting per case.
        #[arg(long, default_value_t = 1.0)]
        secs: f64,
        /// Handler threads.
        #[arg(long, default_value_t = 2)]
        handlers: usize,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Layout to tile.
        #[arg(long, default_value = "tests/data/py1.maps")]
        maps: String,
        /// Print one JSON object per case and a summary as the last line.
        #[arg(long)]
        json: bool,
    }

    /// Image pages; region backings start at varying offsets into it.
    const IMAGE_PAGES: u64 = 4096;
    /// Regions are capped at this many pages to bound memory at 32k regions.
    const MAX_REGION_PAGES: u64 = 4;

    /// (offset from base, pages) per region: the real layout's sizes (capped)
    /// and gaps (capped at 16 pages), tiled until `n` regions.
    fn layout(maps: &str, n: usize, ps: u64) -> Vec<(u64, u64)> {
        let text = std::fs::read_to_string(maps).unwrap_or_default();
        let mut entries = parse_maps(&text).unwrap_or_default();
        entries.retain(|e| e.start < 0x7fff_0000_0000);
        entries.sort_by_key(|e| e.start);
        let mut shape: Vec<(u64, u64)> = entries
            .windows(2)
            .map(|w| {
                let pages = (w[0].len() / ps).clamp(1, MAX_REGION_PAGES);
                let gap = (w[1].start.saturating_sub(w[0].end) / ps).min(16);
                (pages, gap)
            })
            .collect();
        if shape.is_empty() {
            shape = vec![(2, 1)];
        }
        let mut out = Vec::with_capacity(n);
        let mut off = 0;
        for &(pages, gap) in shape.iter().cycle().take(n) {
            out.push((off, pages));
            off += (pages + gap.max(1)) * ps;
        }
        out
    }

    fn image_word(k: u64) -> u64 {
        k.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
    }

    fn backing_for(i: usize, image: &Arc<Image>, ps: u64) -> Backing {
        if i % 8 == 7 {
            Backing::Zero
        } else {
            Backing::Image {
                image: image.clone(),
                offset: (i as u64 * 7 % (IMAGE_PAGES - MAX_REGION_PAGES)) * ps,
            }
        }
    }

    #[derive(Default, Debug, Clone)]
    struct Case {
        index: &'static str,
        regions: usize,
        faults: u64,
        wrong: u64,
        secs: f64,
        lat: Vec<u32>,
        handler_cpu_ns: u64,
        handler_faults: u64,
        eagain: u64,
        eexist: u64,
        removes: u64,
        unmaps: u64,
        setup_s: f64,
    }

    impl Case {
        fn faults_per_s(&self) -> f64 {
            self.faults as f64 / self.secs
        }
        fn pct(&self, p: f64) -> u32 {
            if self.lat.is_empty() {
                return 0;
            }
            self.lat[((self.lat.len() - 1) as f64 * p) as usize]
        }
        fn cpu_per_fault_us(&self) -> f64 {
            self.handler_cpu_ns as f64 / self.handler_faults.max(1) as f64 / 1000.0
        }
        fn json(&self) -> String {
            format!(
                "{{\"index\":\"{}\",\"regions\":{},\"faults\":{},\"wrong_pages\":{},\"faults_per_s\":{:.0},\"p50_ns\":{},\"p99_ns\":{},\"handler_cpu_us_per_fault\":{:.2},\"eagain\":{},\"eexist\":{},\"removes\":{},\"unmaps\":{}}}",
                self.index,
                self.regions,
                self.faults,
                self.wrong,
                self.faults_per_s(),
                self.pct(0.5),
                self.pct(0.99),
                self.cpu_per_fault_us(),
                self.eagain,
                self.eexist,
                self.removes,
                self.unmaps
            )
        }
    }

    type RunCase = fn(&Args, usize, &Arc<Image>) -> Option<Case>;

    struct Owned {
        region: Region,
        backing: Backing,
        /// Per page: 0 = missing, expect the backing; 1 = missing, expect
        /// zeros (dropped); 2 = present.
        state: Vec<u8>,
    }

    fn run_case<I: Index + Default>(args: &Args, n: usize, image: &Arc<Image>) -> Option<Case> {
        let ps = page_size();
        let pager = match Pager::new(I::default()) {
            Ok(p) => p,
            Err(e) => {
                println!("userfaultfd is unavailable here: {e}; skipping");
                return None;
            }
        };
        let lay = layout(&args.maps, n, ps);
        let span = lay.last().map(|(o, p)| o + p * ps).unwrap_or(0);
        // Find a free window for the relocated layout, then place each
        // region with MAP_FIXED_NOREPLACE (never over our own mappings).
        // SAFETY: a fresh PROT_NONE reservation, released at once; only
        // its address is used, as a hint.
        let base = unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                span as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            libc::munmap(p, span as usize);
            p as u64
        };
        let t0 = Instant::now();
        let mut owned: Vec<Vec<Owned>> = (0..args.workers).map(|_| Vec::new()).collect();
        for (i, &(off, pages)) in lay.iter().enumerate() {
            let backing = backing_for(i, image, ps);
            match pager.map_at(base + off, pages * ps, backing.clone()) {
                Ok(region) => owned[i % args.workers].push(Owned {
                    region,
                    backing,
                    state: vec![0; pages as usize],
                }),
                Err(e) => eprintln!("region {i} at {:#x}: {e}; skipped", base + off),
            }
        }
        let setup_s = t0.elapsed().as_secs_f64();
        let handlers = pager.spawn(args.handlers).expect("spawn handlers");
        let deadline = Instant::now() + Duration::from_secs_f64(args.secs);
        let t1 = Instant::now();
        let results: Vec<(u64, u64, Vec<u32>, Vec<Owned>)> = std::thread::scope(|s| {
            let hs: Vec<_> = owned
                .into_iter()
                .enumerate()
                .map(|(w, mine)| {
                    let pager = &pager;
                    s.spawn(move || worker(pager, w as u64, mine, deadline))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let secs = t1.elapsed().as_secs_f64();
        let stats = handlers.stop();
        let mut case = Case {
            index: I::NAME,
            regions: n,
            secs,
            setup_s,
            handler_cpu_ns: stats.handler_cpu_ns,
            handler_faults: stats.faults,
            eagain: stats.eagain,
            eexist: stats.eexist,
            removes: stats.removes,
            unmaps: stats.unmaps,
            ..Case::default()
        };
        let mut all = Vec::new();
        for (faults, wrong, lat, mine) in results {
            case.faults += faults;
            case.wrong += wrong;
            case.lat.extend(lat);
            all.extend(mine);
        }
        case.lat.sort_unstable();
        // Close the userfaultfd first: the munmaps below then raise no
        // UNMAP events (nobody would read them).
        drop(pager);
        for o in all {
            // SAFETY: our own mapping; no reference into it is alive.
            unsafe { libc::munmap(o.region.addr as *mut _, o.region.len as usize) };
        }
        Some(case)
    }

    fn worker<I: Index>(
        pager: &Pager<I>,
        w: u64,
        mut mine: Vec<Owned>,
        deadline: Instant,
    ) -> (u64, u64, Vec<u32>, Vec<Owned>) {
        let ps = page_size();
        let zero = vec![0u8; ps as usize];
        let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ (w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut faults, mut wrong) = (0u64, 0u64);
        let mut lat = Vec::with_capacity(1 << 16);
        if mine.is_empty() {
            return (0, 0, lat, mine);
        }
        let mut touch = |o: &mut Owned, j: usize, write: bool, lat: &mut Vec<u32>| {
            let addr = o.region.addr + j as u64 * ps;
            if o.state[j] != 2 {
                let t = Instant::now();
                // SAFETY: a page of a region this worker owns and keeps mapped.
                unsafe { std::ptr::read_volatile(addr as *const u8) };
                let ns = t.elapsed().as_nanos().min(u32::MAX as u128) as u32;
                if lat.len() < (1 << 20) {
                    lat.push(ns);
                }
                faults += 1;
                // SAFETY: as above; the page is present now.
                let page = unsafe { std::slice::from_raw_parts(addr as *const u8, ps as usize) };
                let ok = if o.state[j] == 1 {
                    page == zero.as_slice()
                } else {
                    match &o.backing {
                        Backing::Zero => page == zero.as_slice(),
                        Backing::Image { offset, .. } => {
                            let k0 = (offset + j as u64 * ps) / 8;
                            page.chunks_exact(8).enumerate().all(|(k, c)| {
                                u64::from_le_bytes(c.try_into().unwrap())
                                    == image_word(k0 + k as u64)
                            })
                        }
                    }
                };
                if !ok {
                    wrong += 1;
                }
                o.state[j] = 2;
            }
            if write {
                // SAFETY: a present page this worker owns.
                unsafe { (addr as *mut u64).write_volatile(w) };
            }
        };
        let mut ops = 0u64;
        while !ops.is_multiple_of(64) || Instant::now() < deadline {
            ops += 1;
            let i = (next() % mine.len() as u64) as usize;
            let r = next() % 1000;
            let o = &mut mine[i];
            let n = o.state.len();
            match r {
                0..=19 => {
                    // Drop the whole region (REMOVE event).
                    // SAFETY: our region; no reference into it is alive.
                    let rc = unsafe {
                        libc::madvise(
                            o.region.addr as *mut _,
                            o.region.len as usize,
                            libc::MADV_DONTNEED,
                        )
                    };
                    assert_eq!(rc, 0);
                    o.state.iter_mut().for_each(|s| *s = 1);
                }
                20..=21 => {
                    // Unmap it (UNMAP event) and map it again in place.
                    let Owned {
                        region,
                        backing,
                        state,
                    } = o;
                    // SAFETY: our region; no reference into it is alive.
                    let rc = unsafe { libc::munmap(region.addr as *mut _, region.len as usize) };
                    assert_eq!(rc, 0);
                    match pager.map_at(region.addr, region.len, backing.clone()) {
                        Ok(r) => {
                            *region = r;
                            state.iter_mut().for_each(|s| *s = 0);
                        }
                        Err(e) => {
                            // Something else took the address meanwhile.
                            eprintln!("remap at {:#x}: {e}; region dropped", region.addr);
                            mine.swap_remove(i);
                            if mine.is_empty() {
                                break;
                            }
                        }
                    }
                }
                22..=299 => {
                    for j in 0..n {
                        touch(o, j, false, &mut lat);
                    }
                }
                _ => {
                    let j = (next() % n as u64) as usize;
                    touch(o, j, r % 4 == 0, &mut lat);
                }
            }
        }
        (faults, wrong, lat, mine)
    }

    pub fn main() {
        let args = Args::parse();
        let ps = page_size();
        let image = Arc::new(
            Image::generate((IMAGE_PAGES * ps) as usize, |b| {
                for (k, c) in b.chunks_exact_mut(8).enumerate() {
                    c.copy_from_slice(&image_word(k as u64).to_le_bytes());
                }
            })
            .expect("image"),
        );
        let mut cases: Vec<Case> = Vec::new();
        if !args.json {
            println!(
                "{:>19} {:>7} {:>9} {:>11} {:>8} {:>8} {:>12} {:>6} {:>8}",
                "index",
                "regions",
                "faults",
                "faults/s",
                "p50 ns",
                "p99 ns",
                "cpu/fault us",
                "wrong",
                "setup s"
            );
        }
        for &n in &args.regions {
            let mut three = Vec::new();
            let runs: [RunCase; 3] = [
                run_case::<TreeIndex>,
                run_case::<RwLockIndex>,
                run_case::<LinearIndex>,
            ];
            for run in runs {
                let Some(c) = run(&args, n, &image) else {
                    if args.json {
                        println!(
                            "{{\"skipped\":\"userfaultfd unavailable\",\"faults\":0,\"wrong_pages\":0,\"faults_per_s\":0,\"baseline_linear_faults_per_s\":0,\"baseline_rwlock_faults_per_s\":0,\"regions\":0}}"
                        );
                    }
                    return;
                };
                if args.json {
                    println!("{}", c.json());
                } else {
                    println!(
                        "{:>19} {:>7} {:>9} {:>11.0} {:>8} {:>8} {:>12.2} {:>6} {:>8.3}",
                        c.index,
                        c.regions,
                        c.faults,
                        c.faults_per_s(),
                        c.pct(0.5),
                        c.pct(0.99),
                        c.cpu_per_fault_us(),
                        c.wrong,
                        c.setup_s
                    );
                }
                three.push(c);
            }
            cases.extend(three);
        }
        let wrong: u64 = cases.iter().map(|c| c.wrong).sum();
        let last = |name: &str| {
            cases
                .iter()
                .rev()
                .find(|c| c.index == name)
                .cloned()
                .unwrap_or_default()
        };
        let (t, r, l) = (
            last(TreeIndex::NAME),
            last(RwLockIndex::NAME),
            last(LinearIndex::NAME),
        );
        if args.json {
            println!(
                "{{\"faults\":{},\"wrong_pages\":{},\"faults_per_s\":{:.0},\"baseline_linear_faults_per_s\":{:.0},\"baseline_rwlock_faults_per_s\":{:.0},\"regions\":{},\"p50_ns\":{},\"p99_ns\":{},\"handler_cpu_us_per_fault\":{:.2}}}",
                t.faults,
                wrong,
                t.faults_per_s(),
                l.faults_per_s(),
                r.faults_per_s(),
                t.regions,
                t.pct(0.5),
                t.pct(0.99),
                t.cpu_per_fault_us()
            );
        } else {
            println!("wrong pages in all cases: {wrong} (must be 0)");
        }
        if wrong != 0 {
            std::process::exit(1);
        }
    }
}
