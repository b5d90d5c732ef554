/* c_producer.c -- a C program feeding a Python Pool through a dragon_mp Queue.
 *
 * examples/c_producer.py builds and starts it (read that first): it passes the descriptor of a Queue
 * in argv[1] and a count in argv[2]. This program sends that many work items, each a raw message of
 * text ("17"), then an empty message meaning "no more", and exits. Python reads them with
 * q.get_bytes() and hands them to its Pool.
 *
 * Build by hand: cc c_producer.c $(python -m dragon_mp.capi --cflags --libs) -o c_producer */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dragon_mp.h>

static int die(const char *what, int rc)
{
    fprintf(stderr, "c_producer: %s: %s (%s)\n", what, dmp_strerror(rc), dmp_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s QUEUE-DESCRIPTOR COUNT\n", argv[0]);
        return 2;
    }
    int rc = dmp_attach();          /* the run named by DRAGON_MP_RUN, which our parent gave us */
    if (rc != DMP_OK)
        return die("dmp_attach", rc);
    dmp_queue_t q;
    if ((rc = dmp_queue_open(argv[1], &q)) != DMP_OK)
        return die("dmp_queue_open", rc);

    long count = atol(argv[2]);
    for (long i = 0; i < count; i++) {
        char item[32];
        int n = snprintf(item, sizeof item, "%ld", i);
        if ((rc = dmp_queue_send(q, item, (size_t)n, -1)) != DMP_OK)
            return die("dmp_queue_send", rc);
    }
    if ((rc = dmp_queue_send(q, NULL, 0, -1)) != DMP_OK)     /* the end */
        return die("dmp_queue_send", rc);

    dmp_queue_close(q);
    dmp_detach();
    return 0;
}
