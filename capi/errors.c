/* capi/errors.c: the C side of libdragon_mp's error reporting.
 *
 * Why C: the last error message must be per thread (a C program's threads
 * call in concurrently, and a message must not be replaced by another
 * thread's before its caller reads it), which C's __thread gives directly.
 * A cgo call made from an exported Go function runs on the calling C
 * thread, so the Go side sets the message with dmp_set_error_ on the right
 * thread. Also dmp_free, so that a buffer from dmp_queue_recv goes back to
 * the malloc it came from. */

#include <stdlib.h>
#include <string.h>

#include "../include/dragon_mp.h"

static __thread char last_error[1024];

__attribute__((visibility("hidden"))) void dmp_set_error_(const char *msg)
{
    size_t n = strlen(msg);
    if (n >= sizeof last_error)
        n = sizeof last_error - 1;
    memcpy(last_error, msg, n);
    last_error[n] = '\0';
}

const char *dmp_last_error(void)
{
    return last_error;
}

const char *dmp_strerror(int code)
{
    switch (code) {
    case DMP_OK:          return "success";
    case DMP_ETIMEOUT:    return "timed out";
    case DMP_EFULL:       return "queue full";
    case DMP_ECLOSED:     return "queue closed";
    case DMP_EBADDESC:    return "bad descriptor (malformed, another run or kind, or the object is gone)";
    case DMP_ENOTATTACHED: return "not attached to a run (call dmp_attach first)";
    case DMP_ENOSPACE:    return "out of shared memory";
    case DMP_ETOOLARGE:   return "message larger than the run's pool can hold";
    case DMP_EINVAL:      return "invalid argument";
    case DMP_ERELEASE:    return "released too many times";
    case DMP_EREMOTE:     return "object lives on another node, out of reach";
    case DMP_EOS:         return "operating system error";
    case DMP_ENOMEM:      return "out of memory";
    case DMP_EINTERNAL:   return "internal error";
    case DMP_ELOST:       return "the object's node is lost";
    }
    return "unknown error code";
}

void dmp_free(void *buf)
{
    free(buf);
}
