// oomguard kernel side: sampled per-process allocation accounting and OOM kill events.
//
// Compiled by bcc at load time (see tracer.py). It reads only tracepoint
// arguments and BPF helpers, never a kernel struct, so it is correct whatever
// header tree compiles it: tracepoint layouts come from tracefs.
//
// Every struct below is declared only here: user space reads them through
// the types bcc generates from this file. The constants shared with user
// space (MAX_PIDS, DEPARTED_MAX, SOURCE_*, NSOURCES, RSS_MEMBERS, RSS_EVERY,
// MAX_CGROUP_FILTERS, FILTER_OFF/INCLUDE/EXCLUDE, DEEP_*) come as -D flags
// from bpf/events.py.

#include <linux/sched.h>

// Per-CPU sampling state, one slot per source.
struct sampler {
    u64 seen;      // events that reached the program
    u64 sampled;   // events recorded in `pids` (after the cgroup filter)
    u32 countdown; // events left until the next sample, this one included
    u32 weight;    // the N in force when the current gap was drawn
};

// Everything known of one process, in one slot of one shared array, so a tick
// reads one table once and its cost grows neither with the CPU count nor with
// a syscall per entry: the array is mmap'ed, user space reads it as memory.
// Each sample adds bytes * weight, so `bytes` is an unbiased estimate of all
// bytes allocated, even while N changes; `rss` is the latest RSS counters,
// in bytes, as rss_stat reported them.
struct pid_stats {
    u32 pid;    // the slot's owner; 0: a free slot
    u32 exited; // set when the process exits: user space reports its last interval, then frees the slot
    u64 bytes[NSOURCES];
    u64 samples[NSOURCES];
    s64 rss[RSS_MEMBERS];
};

// The command and cgroup of a tracked process that exited, kept until user
// space reads them: a process that lived less than one tick is still named.
struct departed {
    char comm[TASK_COMM_LEN];
    u64 cgroup_id; // v2 hierarchy id (the directory's inode number on cgroup2)
};

// One OOM kill, as oom:mark_victim saw it.
struct oom_event {
    u64 timestamp_ns;     // bpf_ktime_get_ns(): CLOCK_MONOTONIC
    u64 cgroup_id;        // trigger's cgroup (v2 hierarchy id)
    u64 total_vm_kb;
    u64 anon_rss_kb;
    u64 file_rss_kb;
    u64 shmem_rss_kb;
    u32 victim_pid;
    u32 victim_uid;
    u32 trigger_pid;
    s32 oom_score_adj;
    char victim_comm[TASK_COMM_LEN];
    char trigger_comm[TASK_COMM_LEN];
};

// Deep sampling: where the suspects allocate. Keyed by process and the two
// stacks of the sampled allocation themselves (user: the code that faulted or
// called; kernel: the path into the allocator), innermost frame first. The
// frames are the key, not ids into a stack map: a stack map keeps one stack
// per hash bucket and refuses (-EEXIST) a second stack that lands in a taken
// bucket, which loses a leak's own stack whenever it collides with another.
struct site_key {
    u32 pid;
    u32 source;
    s32 user_depth;   // frames in `user`, or a negative errno when the stack could not be walked
    s32 kernel_depth;
    u64 user[DEEP_DEPTH];   // bpf_get_stack zeroes what it does not fill, so equal stacks are equal keys
    u64 kernel[DEEP_DEPTH];
};

struct site_stats {
    u64 bytes;   // weighted like `pids`: an unbiased estimate of the bytes allocated there
    u64 samples; // stacks taken: the daemon sets M to keep these within its budget
};

BPF_ARRAY(sample_rate, u32, NSOURCES);                  // N per source, written by the daemon
BPF_PERCPU_ARRAY(sampler, struct sampler, NSOURCES);
BPF_PERCPU_ARRAY(ringbuf_drops, u64, 1);                // OOM events lost to a full ring buffer
// Per-process slots, shared by all CPUs: updated with atomic adds, which only
// sampled events (1 in N) pay, so contention stays as rare as the samples.
// Reading a hash costs a locked bucket walk per tick (~3.5 ms at 16,384
// buckets); this array is read in place through mmap (bench/tick_cost.py).
BPF_F_TABLE("array", u32, struct pid_stats, pids, MAX_PIDS, BPF_F_MMAPABLE);
BPF_HASH(pid_slots, u32, u32, MAX_PIDS); // pid -> its slot in `pids`
// Free slots, pushed by user space at start and when it frees an exited
// process's slot. Empty means MAX_PIDS processes are tracked: a new one is
// then counted in `untracked` and not recorded until a slot frees.
BPF_QUEUE(free_slots, u32, MAX_PIDS);
BPF_PERCPU_ARRAY(untracked, u64, 1);
// Written at exits only, read and emptied each tick; LRU, so a daemon that
// stops reading loses the oldest names, never an exit.
BPF_TABLE("lru_hash", u32, struct departed, departed, DEPARTED_MAX);
BPF_PERCPU_ARRAY(rss_countdown, u32, 1);                // rss_stat changes left until the next recorded one
BPF_RINGBUF_OUTPUT(oom_events, 8);                      // 8 pages: kills are rare
BPF_CGROUP_ARRAY(cgroup_filter, MAX_CGROUP_FILTERS);    // v2 cgroups named by the policy
BPF_ARRAY(filter_config, u32, 2);                       // [0] mode, [1] slots in use
// Processes of cgroups that climb or have an open alert, written by the
// daemon; the value M: one in M of their samples has its stacks taken.
BPF_HASH(deep_pids, u32, u32, DEEP_PIDS_MAX);
BPF_HASH(deep_sites, struct site_key, struct site_stats, DEEP_SITES_MAX);
BPF_PERCPU_ARRAY(site_scratch, struct site_key, 1);     // a key is too big for the 512 B BPF stack

// The current process's slot, taken from `free_slots` at its first record.
// Runs on sampled events and recorded RSS changes only, never on the hot path.
static __always_inline struct pid_stats *slot_of(u32 pid)
{
    u32 *slot = pid_slots.lookup(&pid);
    if (slot)
        return pids.lookup(slot);
    u32 fresh;
    if (free_slots.pop(&fresh) != 0) {
        u32 zero = 0;
        u64 *lost = untracked.lookup(&zero);
        if (lost)
            (*lost)++;
        return NULL;
    }
    if (pid_slots.insert(&pid, &fresh) != 0) { // another thread of this process took a slot first: use it
        free_slots.push(&fresh, 0);
        slot = pid_slots.lookup(&pid);
        return slot ? pids.lookup(slot) : NULL;
    }
    struct pid_stats *p = pids.lookup(&fresh);
    if (p)
        p->pid = pid; // only the thread whose insert won writes the owner
    return p;
}

// Whether the current task passes the policy's cgroup filter. Runs only on
// sampled events (1 in N), never on the hot path.
static __always_inline bool cgroup_allowed(void)
{
    u32 mode_key = 0, count_key = 1;
    u32 *mode = filter_config.lookup(&mode_key);
    u32 *count = filter_config.lookup(&count_key);
    if (!mode || *mode == FILTER_OFF || !count)
        return true;
    bool listed = false;
    for (int i = 0; i < MAX_CGROUP_FILTERS; i++) { // bounded: the verifier needs a constant
        if (i >= *count)
            break;
        if (cgroup_filter.check_current_task(i) == 1) { // current task under cgroup i (or below)
            listed = true;
            break;
        }
    }
    return *mode == FILTER_INCLUDE ? listed : !listed;
}

// bpf_get_stack's answer as a frame count (bytes copied / 8), or its negative errno.
static __always_inline s32 frames_in(long got)
{
    return got < 0 ? got : got / sizeof(u64);
}

// A sampled allocation of a suspect process: its stacks and bytes. Runs on
// sampled events only (1 in N), and walks stacks on 1 in M of a suspect's.
static __always_inline void deep_sample(void *ctx, u32 pid, u32 source, u64 bytes)
{
    u32 *every = deep_pids.lookup(&pid);
    if (!every || *every == 0 || bpf_get_prandom_u32() % *every)
        return;
    u32 zero_key = 0;
    struct site_key *key = site_scratch.lookup(&zero_key);
    if (!key)
        return;
    key->pid = pid;
    key->source = source;
    key->user_depth = frames_in(bpf_get_stack(ctx, key->user, sizeof(key->user), BPF_F_USER_STACK));
    key->kernel_depth = frames_in(bpf_get_stack(ctx, key->kernel, sizeof(key->kernel), 0));
    struct site_stats zero = {};
    struct site_stats *site = deep_sites.lookup_or_try_init(key, &zero);
    if (!site)
        return;
    __sync_fetch_and_add(&site->bytes, bytes * *every); // stands for the 1-in-M it was drawn from
    __sync_fetch_and_add(&site->samples, 1);
}

// Count one event of `source` and, one time in N, charge `bytes` to the
// current process. Inlined with a constant `source`, so indexing is bounded.
static __always_inline void account(void *ctx, u32 source, u64 bytes)
{
    u32 key = source; // a copy for the map key: `source` itself stays a known constant
    struct sampler *s = sampler.lookup(&key);
    if (!s)
        return;
    s->seen++;
    // Hot path: not the sampled event. Per-CPU state, so no atomics; BPF
    // programs do not nest on one CPU, so no lost update either.
    if (s->countdown > 1) {
        s->countdown--;
        return;
    }

    // This event ends a gap. It stands for the `weight` events of that gap.
    u32 weight = s->weight;
    u32 *rate = sample_rate.lookup(&key);
    u32 n = (rate && *rate) ? *rate : 1;
    // Next gap uniform on 1..2N-1: mean exactly N, one random draw per
    // *sample* (not per event), no floating point in the kernel.
    s->countdown = 1 + bpf_get_prandom_u32() % (2 * n - 1);
    s->weight = n;
    if (weight == 0)
        return; // first event on this CPU: no gap was drawn before it
    if (!cgroup_allowed())
        return;

    s->sampled++;
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    struct pid_stats *p = slot_of(pid);
    if (!p)
        return;
    __sync_fetch_and_add(&p->bytes[source], bytes * weight); // other CPUs add to the same entry
    __sync_fetch_and_add(&p->samples[source], 1);
    deep_sample(ctx, pid, source, bytes * weight);
}

// kmalloc(call_site, ptr, bytes_req, bytes_alloc, gfp_flags, node)
RAW_TRACEPOINT_PROBE(kmalloc)
{
    account(ctx, SOURCE_KMALLOC, ctx->args[3]); // bytes_alloc: what the slab really handed out
    return 0;
}

// mm_page_alloc(page, order, gfp_flags, migratetype): user heap growth shows here
RAW_TRACEPOINT_PROBE(mm_page_alloc)
{
    account(ctx, SOURCE_PAGE, (u64)PAGE_SIZE << (u32)ctx->args[1]);
    return 0;
}

// rss_stat fires on every RSS counter change of any mm; keep only the
// current process's own (curr == 1), last value wins. It reports absolute
// values, so recording 1 change in RSS_EVERY (a per-CPU countdown, like the
// allocation sampler's) keeps the latest value to within a few pages while
// the hash update, the costly part, runs on 1 change in RSS_EVERY.
TRACEPOINT_PROBE(kmem, rss_stat)
{
    if (!args->curr)
        return 0;
    u32 slot = 0;
    u32 *left = rss_countdown.lookup(&slot);
    if (!left)
        return 0;
    if (*left > 1) {
        (*left)--;
        return 0;
    }
    *left = RSS_EVERY;
    u32 member = args->member;
    if (member >= RSS_MEMBERS) // bounds the array index for the verifier
        return 0;
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    struct pid_stats *p = slot_of(pid);
    if (p)
        p->rss[member] = args->size; // a plain store: the latest value is the truth
    return 0;
}

// A process's exit marks its entry, so user space finds the exited among the
// map's entries instead of listing /proc (which costs ~20 ms at 10,000
// processes). Only the thread-group leader's exit counts: other threads
// come and go inside a live process.
TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 pid = id >> 32;
    if ((u32)id != pid)
        return 0;
    u32 *slot = pid_slots.lookup(&pid);
    struct pid_stats *p = slot ? pids.lookup(slot) : NULL;
    if (!p)
        return 0;
    p->exited = 1;
    struct departed d = {};
    bpf_get_current_comm(&d.comm, sizeof(d.comm));
    d.cgroup_id = bpf_get_current_cgroup_id();
    departed.update(&pid, &d);
    return 0;
}

// mark_victim runs in the task whose allocation triggered the kill.
TRACEPOINT_PROBE(oom, mark_victim)
{
    struct oom_event *e = oom_events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        u32 zero = 0;
        u64 *drops = ringbuf_drops.lookup(&zero);
        if (drops)
            (*drops)++;
        return 0;
    }
    e->timestamp_ns = bpf_ktime_get_ns();
    e->cgroup_id = bpf_get_current_cgroup_id();
    e->total_vm_kb = args->total_vm;
    e->anon_rss_kb = args->anon_rss;
    e->file_rss_kb = args->file_rss;
    e->shmem_rss_kb = args->shmem_rss;
    e->victim_pid = args->pid;
    e->victim_uid = args->uid;
    e->trigger_pid = bpf_get_current_pid_tgid() >> 32;
    e->oom_score_adj = args->oom_score_adj;
    TP_DATA_LOC_READ_STR(e->victim_comm, comm, sizeof(e->victim_comm));
    bpf_get_current_comm(e->trigger_comm, sizeof(e->trigger_comm));
    oom_events.ringbuf_submit(e, 0);
    return 0;
}
