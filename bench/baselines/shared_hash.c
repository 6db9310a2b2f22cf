// Baseline for bench/tick_cost.py: oomguard's per-PID map before it became an
// mmap'ed array of slots. One LRU hash shared by all CPUs (no CPU term), read
// each tick with BPF_MAP_LOOKUP_BATCH: a locked walk of every bucket. Maps
// only: the bench fills them from user space.
struct pid_stats {
    u64 bytes[2];
    u64 samples[2];
    s64 rss[4];
    u64 exited;
};
BPF_TABLE("lru_hash", u32, struct pid_stats, pids, MAX_PIDS);
