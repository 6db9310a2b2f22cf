// The floor for kmem:rss_stat: the cheapest program oomguard's kind of hook (a classic tracepoint) can be.
TRACEPOINT_PROBE(kmem, rss_stat)
{
    return 0;
}
