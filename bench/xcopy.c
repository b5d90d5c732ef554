/*
 * xcopy: the machine's own limit for moving 1 MiB messages between two
 * processes through shared memory with two copies (what a dragon_mp Queue
 * does), next to an in-process memcpy measured in the same run.
 *
 *     cc -O2 -o /tmp/xcopy bench/xcopy.c && /tmp/xcopy [slots] [messages] [MiB | KiB "K"]
 *
 * A producer process copies a source (1 MiB unless given) into a ring of
 * `slots` shared slots of that size; the consumer copies each slot out and
 * frees it. Both spin on
 * shared counters (no futex, no allocation, no Python): an upper bound for
 * any implementation. Two consumer patterns:
 *   single - every message is copied into the same destination buffer;
 *   keep   - destinations alternate between two buffers, as a Python
 *            consumer's `b = q.get()` does (the previous message is alive
 *            while the next one is made).
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static size_t SZ = 1 << 20;         /* message size */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* µs per message of a producer/consumer pair over `slots` shared slots */
static double transfer(int slots, long n, int keep)
{
    char *shm = mmap(NULL, (size_t)slots * SZ + 4096, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    _Atomic long *head = (void *)shm, *tail = (void *)(shm + 64);
    char *ring = shm + 4096;
    memset(ring, 1, (size_t)slots * SZ);
    pid_t pid = fork();
    if (pid == 0) {                             /* producer */
        char *src = malloc(SZ);
        memset(src, 7, SZ);
        for (long i = 0; i < n; i++) {
            while (i - atomic_load(tail) >= slots)
                ;
            memcpy(ring + (i % slots) * (size_t)SZ, src, SZ);
            atomic_store(head, i + 1);
        }
        _exit(0);
    }
    char *dst = malloc(2 * (size_t)SZ);
    memset(dst, 0, 2 * (size_t)SZ);
    long warm = n / 10;
    double t0 = 0;
    for (long i = 0; i < n; i++) {
        while (atomic_load(head) <= i)
            ;
        if (i == warm)
            t0 = now();
        memcpy(dst + (keep ? (i & 1) * (size_t)SZ : 0), ring + (i % slots) * (size_t)SZ, SZ);
        atomic_store(tail, i + 1);
    }
    double us = (now() - t0) / (n - warm) * 1e6;
    waitpid(pid, NULL, 0);
    free(dst);
    munmap(shm, (size_t)slots * SZ + 4096);
    return us;
}

static double memcpy_us(long n)
{
    char *a = malloc(SZ), *b = malloc(SZ);
    memset(a, 1, SZ);
    memset(b, 2, SZ);
    double t0 = now();
    for (long i = 0; i < n; i++) {
        memcpy(b, a, SZ);
        __asm__ volatile("" : : "r"(b) : "memory");
    }
    double us = (now() - t0) / n * 1e6;
    free(a);
    free(b);
    return us;
}

int main(int argc, char **argv)
{
    int slots = argc > 1 ? atoi(argv[1]) : 3;
    long n = argc > 2 ? atol(argv[2]) : 4000;
    char *end = "";
    long kib = argc > 3 ? strtol(argv[3], &end, 10) : 1;
    if (*end == 'K' || *end == 'k')
        end++;                                  /* "64K": KiB */
    else
        kib *= 1024;                            /* plain number: MiB */
    if (slots < 1 || n < 10 || *end || kib < 4 || kib > 1024 * 1024) {
        fprintf(stderr, "usage: xcopy [slots>=1] [messages>=10] [MiB 1..1024, or KiB as 64K]\n");
        return 2;
    }
    SZ = (size_t)kib << 10;
    double ref = memcpy_us(n);
    double single = transfer(slots, n, 0), keep = transfer(slots, n, 1);
    double size_mib = SZ / (double)(1 << 20);
    printf("in-process memcpy %g MiB: %.1f us (%.0f MB/s)\n", size_mib, ref, SZ / ref);
    printf("two processes, %d slots, single destination: %.1f us/MiB = %.0f%% of memcpy\n",
           slots, single / size_mib, 100 * ref / single);
    printf("two processes, %d slots, two alternating destinations: %.1f us/MiB = %.0f%% of memcpy\n",
           slots, keep / size_mib, 100 * ref / keep);
    return 0;
}
