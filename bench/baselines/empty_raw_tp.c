// The floor: the cheapest program that can be attached to kmem:kmalloc.
RAW_TRACEPOINT_PROBE(kmalloc)
{
    return 0;
}
