//go:build ignore

/*
 * dragon_mp._fastpath, continued: large allocations on huge pages. This file
 * is #included by fastpath.c (one translation unit, split for size).
 *
 * Why. A received message of many MiB becomes a new object: bytes, or the
 * bytearray the unpickler makes (a numpy array is made over it). glibc serves
 * every allocation above 32 MiB (its ceiling for the mmap threshold) with a
 * fresh mmap and unmaps it when freed, so each such object is faulted in 4 KiB
 * page by page while the message is copied into it: on this machine a 64 MiB
 * copy into fresh memory took 29.8 ms against 3.4 ms into memory already
 * touched, and with madvise(MADV_HUGEPAGE) on the fresh mapping first 5.6 ms
 * (one fault per 2 MiB). A 64 MiB Queue message cost ~49 ms end to end, most
 * of it those faults. numpy does the same for its own large arrays.
 *
 * How. configure() wraps CPython's raw allocator (PYMEM_DOMAIN_RAW: what
 * bytes, bytearray and every object allocator use above 512 bytes), as
 * tracemalloc wraps it: each call goes to the allocator that was there, and
 * an allocation of HUGE_ADVISE_MIN bytes or more is then advised as a whole
 * number of 2 MiB pages inside it. Nothing else changes: free() and the
 * memory's owner are the previous allocator's. The kernel follows the advice
 * where transparent huge pages are "madvise" or "always", and ignores it
 * otherwise; the cost is one system call per allocation of 32 MiB or more,
 * and up to 2 MiB of a mostly untouched allocation made resident at once.
 */

#include <sys/mman.h>

#define HUGE_PAGE ((uintptr_t)2 << 20)
#define HUGE_ADVISE_MIN ((size_t)32 << 20)   /* glibc mmaps everything above this */

static PyMemAllocatorEx raw_next;     /* the raw allocator we wrap */
static int raw_wrapped;

/* Advise the whole 2 MiB pages inside [p, p+n). */
static void advise_huge(void *p, size_t n)
{
    uintptr_t lo = ((uintptr_t)p + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    uintptr_t hi = ((uintptr_t)p + n) & ~(HUGE_PAGE - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
}

static void *raw_malloc(void *ctx, size_t n)
{
    void *p = raw_next.malloc(raw_next.ctx, n);
    if (n >= HUGE_ADVISE_MIN && p != NULL)
        advise_huge(p, n);
    return p;
}

static void *raw_calloc(void *ctx, size_t nelem, size_t elsize)
{
    void *p = raw_next.calloc(raw_next.ctx, nelem, elsize);
    if (p != NULL && elsize != 0 && nelem >= HUGE_ADVISE_MIN / elsize)
        advise_huge(p, nelem * elsize);
    return p;
}

static void *raw_realloc(void *ctx, void *ptr, size_t n)
{
    void *p = raw_next.realloc(raw_next.ctx, ptr, n);
    if (n >= HUGE_ADVISE_MIN && p != NULL)
        advise_huge(p, n);
    return p;
}

static void raw_free(void *ctx, void *p)
{
    raw_next.free(raw_next.ctx, p);
}

/* Wrap the raw allocator, once per process (a forked child keeps the wrap). */
static void wrap_raw_allocator(void)
{
    if (raw_wrapped)
        return;
    PyMem_GetAllocator(PYMEM_DOMAIN_RAW, &raw_next);
    /* Same ctx as the wrapped one: a thread reading the allocator while it
     * is replaced (without the GIL) pairs either function with the right ctx. */
    PyMemAllocatorEx ours = {raw_next.ctx, raw_malloc, raw_calloc, raw_realloc, raw_free};
    PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &ours);
    raw_wrapped = 1;
}
