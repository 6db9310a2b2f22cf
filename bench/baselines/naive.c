// The naive design: classic tracepoint, a random draw on every event, a
// per-PID hash update for each sampled one. N comes from an array map.
BPF_ARRAY(sample_rate, u32, 1);
BPF_HASH(bytes_by_pid, u32, u64, 16384);

TRACEPOINT_PROBE(kmem, kmalloc)
{
    u32 zero = 0;
    u32 *n = sample_rate.lookup(&zero);
    if (!n || !*n || bpf_get_prandom_u32() % *n)
        return 0;
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    u64 init = 0;
    u64 *bytes = bytes_by_pid.lookup_or_try_init(&pid, &init);
    if (bytes)
        __sync_fetch_and_add(bytes, args->bytes_alloc * *n);
    return 0;
}
