// A leak through one named function among other allocating ones, for the deep-sampling evidence tests.
//   callsites pages MIB SECS   leak_in_parse_cache() keeps MIB MiB over SECS seconds (touching each page);
//                              churn_render_buffers() maps, touches and unmaps 256 KiB per step, and
//                              warm_lookup_table() fills 8 MiB once: allocating, not leaking
//   callsites pipes MIB SECS   hold_open_pipes() fills MIB MiB of pipe buffers over SECS seconds and never
//                              closes them: kernel memory charged to the cgroup, no process RSS
//   callsites jit KIB SECS LINES  a JVM's shape: allocates KIB KiB of kernel memory a second (pipes) for
//                              SECS seconds through code it wrote into an anonymous executable page, and
//                              writes a /tmp/perf-PID.map of LINES symbols (one names that page), as a JIT
//                              does: naming its stacks loads that whole map (slow, like a JVM's symbols)
// Built with frame pointers (the tests do), so user stacks unwind; every function is kept out of line.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#define MIB (1024L * 1024L)
#define NOINLINE __attribute__((noinline))

NOINLINE static void touch_pages(volatile char *p, long bytes)
{
    for (long off = 0; off < bytes; off += 4096)
        p[off] = 1;
}

NOINLINE static void leak_in_parse_cache(long bytes)
{
    volatile char *p = malloc(bytes);
    if (!p) exit(3);
    for (long off = 0; off < bytes; off += 4096) // the faults happen here, in this function
        p[off] = 1;
}

NOINLINE static void churn_render_buffers(void)
{
    long size = 256 * 1024;
    char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) exit(3);
    touch_pages(p, size);
    munmap(p, size);
}

NOINLINE static void warm_lookup_table(void)
{
    touch_pages(malloc(8 * MIB), 8 * MIB);
}

NOINLINE static void hold_open_pipes(long bytes_each)
{
    static char chunk[65536];
    int fds[2];
    if (pipe2(fds, O_NONBLOCK)) { perror("pipe"); exit(2); }
    fcntl(fds[1], F_SETPIPE_SZ, (int)bytes_each);
    for (long written = 0; written < bytes_each;) {
        long n = write(fds[1], chunk, sizeof(chunk));
        if (n <= 0) break; // full
        written += n;
    }
}

static long jit_bytes;

NOINLINE static void jit_callee(void)
{
    int fds[2];
    if (pipe(fds)) exit(3);
    static char buf[4096];
    for (long done = 0; done < jit_bytes; done += sizeof(buf))
        if (write(fds[1], buf, sizeof(buf)) < 0) break;  // fills the pipe's buffer: kernel memory
    close(fds[0]);
    close(fds[1]);
}

static int jit(long kib, double secs, long lines)
{
    // push rbp; mov rbp, rsp; call rdi; pop rbp; ret: a frame in anonymous memory, as JIT-compiled code has
    static const unsigned char code[] = {0x55, 0x48, 0x89, 0xe5, 0xff, 0xd7, 0x5d, 0xc3};
    unsigned char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) { perror("mmap"); return 3; }
    memcpy(page, code, sizeof(code));
    char path[64];
    snprintf(path, sizeof(path), "/tmp/perf-%d.map", getpid());
    FILE *map = fopen(path, "w");
    if (!map) { perror(path); return 3; }
    for (long i = 0; i < lines; i++)  // symbols of other compiled methods, far from ours
        fprintf(map, "%lx 40 Lcom/example/Service%ld;::handle%ld\n", 0x7f0000000000UL + (unsigned long)i * 64, i % 97, i);
    fprintf(map, "%lx %zx LInterpreter;::jit_compiled_leak\n", (unsigned long)page, sizeof(code));
    fclose(map);
    printf("jit %p\n", (void *)page);
    fflush(stdout);
    void (*call)(void (*)(void)) = (void (*)(void (*)(void)))page;
    jit_bytes = 16 * 4096;  // under a pipe's default 64 KiB
    long rounds = (long)(kib * 1024 * secs / jit_bytes);
    for (long i = 0; i < rounds; i++) {
        call(jit_callee);
        usleep((useconds_t)(secs * 1e6 / (rounds ? rounds : 1)));
    }
    unlink(path);
    return 0;
}

int main(int argc, char **argv)
{
    prctl(PR_SET_NAME, "ogcallsites");
    if (argc == 5 && !strcmp(argv[1], "jit"))
        return jit(atol(argv[2]), atof(argv[3]), atol(argv[4]));
    if (argc != 4) { fprintf(stderr, "usage: callsites pages|pipes MIB SECS | jit KIB SECS LINES\n"); return 2; }
    long mib = atol(argv[2]);
    double secs = atof(argv[3]);
    if (!strcmp(argv[1], "pages")) {
        warm_lookup_table();
        for (long i = 0; i < mib; i++) {
            leak_in_parse_cache(MIB);
            churn_render_buffers();
            usleep((useconds_t)(secs * 1e6 / mib));
        }
    } else if (!strcmp(argv[1], "pipes")) {
        struct rlimit files = {65536, 65536};
        setrlimit(RLIMIT_NOFILE, &files);
        for (long i = 0; i < mib; i++) {
            hold_open_pipes(MIB);
            usleep((useconds_t)(secs * 1e6 / mib));
        }
    } else {
        return 2;
    }
    printf("leaked\n");
    fflush(stdout);
    pause();
    return 0;
}
