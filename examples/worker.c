/* worker.c -- a C worker of a dragon_mp ProcessGroup (examples/worker_group.py builds and starts it).
 *
 * argv: the descriptors of a task Queue and a result Queue, and how many tasks to take before exiting.
 * Each task is a raw message of text ("17"); the worker answers "<host:pid> <n> <n*n>" on the result
 * queue (host:pid names it across nodes). After its last task it exits 0 and the group, started with
 * restart=True, starts a new worker in its place (as a Pool's maxtasksperchild). It blocks on the task
 * queue until the group stops it.
 *
 * Build by hand: cc worker.c $(python -m dragon_mp.capi --cflags --libs) -o worker */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dragon_mp.h>

static int die(const char *what, int rc)
{
    fprintf(stderr, "worker: %s: %s (%s)\n", what, dmp_strerror(rc), dmp_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s TASK-QUEUE RESULT-QUEUE TASKS\n", argv[0]);
        return 2;
    }
    int rc = dmp_attach();              /* the run named by DRAGON_MP_RUN, which the group gave us */
    if (rc != DMP_OK)
        return die("dmp_attach", rc);
    dmp_queue_t tasks, results;
    if ((rc = dmp_queue_open(argv[1], &tasks)) != DMP_OK)
        return die("dmp_queue_open(tasks)", rc);
    if ((rc = dmp_queue_open(argv[2], &results)) != DMP_OK)
        return die("dmp_queue_open(results)", rc);
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    for (long k = atol(argv[3]); k > 0; k--) {
        void *msg;
        size_t len;
        if ((rc = dmp_queue_recv(tasks, &msg, &len, -1)) != DMP_OK)      /* wait for the next task */
            return die("dmp_queue_recv", rc);
        char text[32] = {0};
        memcpy(text, msg, len < sizeof text - 1 ? len : sizeof text - 1);
        dmp_free(msg);
        long n = atol(text);
        char out[160];
        int m = snprintf(out, sizeof out, "%s:%ld %ld %ld", host, (long)getpid(), n, n * n);
        if ((rc = dmp_queue_send(results, out, (size_t)m, -1)) != DMP_OK)
            return die("dmp_queue_send", rc);
    }
    dmp_detach();                       /* closes both queues */
    return 0;
}
