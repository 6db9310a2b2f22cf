// Baseline for bench/tick_cost.py: oomguard's per-PID maps before they were shared.
// Per-CPU totals (read cost and kernel memory grow with the CPU count) and a
// separate RSS map. Maps only: the bench fills them from user space.
struct alloc_stats {
    u64 bytes[2];
    u64 samples[2];
};
struct rss_stats {
    s64 bytes[4];
};
BPF_TABLE("lru_percpu_hash", u32, struct alloc_stats, allocs, MAX_PIDS);
BPF_TABLE("lru_hash", u32, struct rss_stats, rss, MAX_PIDS);
