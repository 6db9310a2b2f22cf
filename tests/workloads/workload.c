// Workloads with known memory behaviour, for tests and benchmarks.
//   workload poll CALLS      poll() on 64 fds CALLS times: one kmalloc per call
//                            (the kernel keeps ~30 pollfds on its stack and
//                            kmallocs the rest), nothing else in the loop
//   workload poll-for SECS   same, for SECS seconds; prints calls/s
//   workload poll-paced RATE SECS  same, at RATE calls/s for SECS seconds; prints the calls made
//   workload leak MIB SECS [IDLE]  after IDLE seconds of quiet (default 0), grow
//                            the heap by MIB MiB spread over SECS seconds, touching
//                            every page, then sleep until killed
//   workload hog MIB         allocate and touch MIB MiB as fast as possible
//   workload memfd MIB SECS  write MIB MiB into a memfd with write(), spread over SECS
//                            seconds (shared memory charged to the cgroup, no RSS),
//                            then sleep until killed
//   workload spawn N         fork N short-lived children one after another (PID churn)
//   workload sawtooth MIB PERIOD SECS  a garbage-collected heap: grow to MIB MiB over
//                            PERIOD seconds, free it all, again, for SECS seconds
// Its comm is "ogworkload" so tests can recognise it in events.
#define _GNU_SOURCE // memfd_create
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NFDS 64
#define MIB (1024L * 1024L)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void setup_pollfds(struct pollfd *fds)
{
    int pipefd[2];
    if (pipe(pipefd)) { perror("pipe"); exit(2); }
    for (int i = 0; i < NFDS; i++) {
        fds[i].fd = pipefd[0]; // same empty pipe: poll returns at once
        fds[i].events = POLLIN;
    }
}

static void allocate_once(void) // one kmalloc under the caller's own pid: it enters the per-PID map
{
    struct pollfd fds[NFDS];
    setup_pollfds(fds);
    poll(fds, NFDS, 0);
}

static void touch(volatile char *p, long bytes) // volatile: the stores must happen
{
    for (long off = 0; off < bytes; off += 4096)
        p[off] = 1;
}

int main(int argc, char **argv)
{
    prctl(PR_SET_NAME, "ogworkload");
    if (argc == 3 && !strcmp(argv[1], "poll")) {
        struct pollfd fds[NFDS];
        setup_pollfds(fds);
        long calls = atol(argv[2]);
        for (long i = 0; i < calls; i++)
            poll(fds, NFDS, 0);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "poll-for")) {
        struct pollfd fds[NFDS];
        setup_pollfds(fds);
        double end = now() + atof(argv[2]), start = now();
        long calls = 0;
        while (now() < end) {
            for (int i = 0; i < 1000; i++)
                poll(fds, NFDS, 0);
            calls += 1000;
        }
        printf("%.0f\n", calls / (now() - start));
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "poll-paced")) {
        struct pollfd fds[NFDS];
        setup_pollfds(fds);
        double rate = atof(argv[2]), start = now(), end = start + atof(argv[3]);
        long calls = 0;
        while (now() < end) {
            double due = start + calls / rate; // when call number `calls` is due
            double ahead = due - now();
            if (ahead > 0.0005)
                usleep((useconds_t)(ahead * 1e6));
            for (int i = 0; i < 100; i++)
                poll(fds, NFDS, 0);
            calls += 100;
        }
        printf("%ld\n", calls);
        return 0;
    }
    if ((argc == 4 || argc == 5) && !strcmp(argv[1], "leak")) {
        if (argc == 5) {
            touch(malloc(MIB), MIB); // show up in the maps, then stay quiet
            usleep((useconds_t)(atof(argv[4]) * 1e6));
        }
        long total = atol(argv[2]) * MIB;
        double secs = atof(argv[3]);
        long step = MIB;
        long steps = total / step;
        for (long i = 0; i < steps; i++) {
            char *p = malloc(step);
            if (!p) return 3;
            touch(p, step);
            usleep((useconds_t)(secs * 1e6 / steps));
        }
        printf("leaked\n");
        fflush(stdout);
        pause();
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "spike")) {
        // MIB allocated and touched over RISE seconds, held HOLD seconds, then freed: a spike, not a leak.
        // Paced by deadline, not by a sleep per chunk: on a busy machine each wake-up is late, and 200 late
        // sleeps stretched a 1.5 s rise into a 4 s climb (a real trend: a fresh-clone CI run alerted on it).
        long chunks = atol(argv[2]);
        double rise = atof(argv[3]), hold = atof(argv[4]), start = now();
        char **heap = calloc(chunks, sizeof(char *));
        for (long i = 0; i < chunks; i++) {
            heap[i] = malloc(MIB);
            touch(heap[i], MIB);
            double ahead = start + rise * (i + 1) / chunks - now();
            if (ahead > 0)
                usleep((useconds_t)(ahead * 1e6));
        }
        double took = now() - start;
        usleep((useconds_t)(hold * 1e6));
        for (long i = 0; i < chunks; i++)
            free(heap[i]);
        if (took > rise + 1.0) { // not the spike the caller asked for: say so rather than pass for one
            fprintf(stderr, "spike: the rise took %.1fs, not %.1fs (machine overloaded)\n", took, rise);
            return 4;
        }
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "memfd")) {
        int fd = memfd_create("ogcache", 0);
        if (fd < 0) { perror("memfd_create"); return 2; }
        static char chunk[MIB];
        memset(chunk, 1, sizeof(chunk));
        long steps = atol(argv[2]);
        double secs = atof(argv[3]);
        for (long i = 0; i < steps; i++) {
            if (write(fd, chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk)) return 3;
            usleep((useconds_t)(secs * 1e6 / steps));
        }
        pause();
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "pipes")) {
        struct rlimit files;
        getrlimit(RLIMIT_NOFILE, &files);
        files.rlim_cur = files.rlim_max; // as many as allowed: a limit too low shows as exit 3
        setrlimit(RLIMIT_NOFILE, &files);
        static char chunk[16384];
        long pipes = atol(argv[2]) * 64;
        double secs = atof(argv[3]);
        for (long i = 0; i < pipes; i++) {
            int fds[2];
            if (pipe2(fds, O_NONBLOCK)) { perror("pipe"); return 3; }
            fcntl(fds[1], F_SETPIPE_SZ, (int)sizeof(chunk));
            if (write(fds[1], chunk, sizeof(chunk)) <= 0) return 3;
            usleep((useconds_t)(secs * 1e6 / pipes));
        }
        pause();
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "hog")) {
        long total = atol(argv[2]) * MIB;
        for (long done = 0; done < total; done += MIB) {
            char *p = malloc(MIB);
            if (!p) return 3;
            touch(p, MIB);
        }
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "sawtooth")) {
        long chunks = atol(argv[2]);
        double period = atof(argv[3]), end = now() + atof(argv[4]);
        char **heap = calloc(chunks, sizeof(char *));
        while (now() < end) {
            // A cycle ends when its period is up, even if the CPU was too busy to allocate all of it: a
            // starved process must not stretch one climb past the period (a longer climb is a leak's shape).
            double cycle_end = now() + period;
            for (long i = 0; i < chunks && now() < end && now() < cycle_end; i++) {
                heap[i] = malloc(MIB);
                touch(heap[i], MIB);
                usleep((useconds_t)(period * 1e6 / chunks));
            }
            for (long i = 0; i < chunks; i++) {
                free(heap[i]); // large blocks go back to the kernel (munmap)
                heap[i] = NULL;
            }
        }
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "spawn")) {
        long n = atol(argv[2]);
        for (long i = 0; i < n; i++) {
            pid_t child = fork();
            if (child == 0) {
                allocate_once();
                _exit(0);
            }
            if (child < 0 || waitpid(child, NULL, 0) < 0) { perror("spawn"); return 3; }
        }
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "sleepers")) {
        // N children that allocate once each (so they sit in the per-PID maps) and sleep; prints "ready".
        // Run it in a session of its own and kill the process group to end them all.
        long n = atol(argv[2]);
        for (long i = 0; i < n; i++) {
            pid_t child = fork();
            if (child == 0) {
                allocate_once();
                pause();
                _exit(0);
            }
            if (child < 0) { perror("sleepers"); return 3; }
        }
        printf("ready\n");
        fflush(stdout);
        pause();
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "fault-for")) {
        // Page faults for SECS seconds: map 2 MiB, touch every page (one RSS change each), unmap; prints faults/s.
        double secs = atof(argv[2]), start = now();
        long faults = 0;
        while (now() - start < secs) {
            char *p = mmap(NULL, 2 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) return 3;
            for (long off = 0; off < 2 * MIB; off += 4096)
                p[off] = 1;
            munmap(p, 2 * MIB);
            faults += 2 * MIB / 4096;
        }
        printf("%.0f\n", faults / (now() - start));
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "spawn-paced")) {
        // RATE short-lived children per second for SECS seconds, each allocating once and exiting at once.
        long rate = atol(argv[2]);
        double secs = atof(argv[3]);
        long total = (long)(rate * secs), spawned = 0;
        double start = now();
        while (spawned < total) {
            double due = start + (double)spawned / (double)rate;
            double wait = due - now();
            if (wait > 0) usleep((useconds_t)(wait * 1e6));
            pid_t child = fork();
            if (child == 0) {
                allocate_once();
                _exit(0);
            }
            if (child < 0 || waitpid(child, NULL, 0) < 0) { perror("spawn-paced"); return 3; }
            spawned++;
        }
        printf("%ld\n", spawned);
        return 0;
    }
    fprintf(stderr, "usage: workload poll CALLS | poll-for SECS | poll-paced RATE SECS | leak MIB SECS [QUIET] | spike MIB RISE HOLD | "
                    "hog MIB | spawn N | spawn-paced RATE SECS | sleepers N | fault-for SECS | "
                    "sawtooth MIB PERIOD SECS\n");
    return 2;
}
