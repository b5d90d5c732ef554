//go:build ignore

// Not part of the Go package pyext (see fastpath.c): setup.py builds this
// file as the CPython extension dragon_mp._zygote_loop.

/*
 * dragon_mp._zygote_loop: the zygote's steady-state cycle, in C.
 *
 * Why C: the zygote forks a spare for every start, so every page its event
 * loop writes is shared with a live child again and costs a copy-on-write
 * fault (~2 us on the VMs we measure on). A Python loop touches ~240 pages a
 * start (frames, refcounts of the objects it uses); this loop touches its
 * own few. dragon_mp.zygote_server keeps the design and everything that
 * needs Python; this module does, without creating a Python object:
 *
 *   accept -> check the peer's uid -> watch the requester (pidfd) ->
 *   read the request -> hand it to the spare (message, descriptors, then
 *   the connection) -> reply {'pid', 'server'} with the child's pidfd ->
 *   reap the child -> send {'exitcode'} -> fork the next spare when idle.
 *
 * serve() returns to Python only for what Python does:
 *   ("spare", fd)   in a spare this loop just forked: Python takes it from
 *                   there (fd: its end of the socketpair to the zygote);
 *   ("request", conn, requester, msg, fds)
 *                   a request the fast path does not take: a zygote part to
 *                   import or compile, a new context, or no fresh spare;
 *   ("idle",)       nothing to do and Python asked (it has preloads left);
 *   ("watch", fd)   a descriptor Python asked to watch (watch_fd) is readable:
 *                   the socket of a template being made (zygote_server).
 * Python reports what it did with adopt_child() (a child it forked) and
 * assign_spare() (a request it handed to the spare after all). There is
 * no other loop: the zygote does not start without this module.
 *
 * State: C globals, one zygote per process. Descriptor tables are indexed
 * by descriptor number. Replies are pickles (protocol 2) built by hand,
 * which the requester (dragon_mp.zygote.request) unpickles like any other.
 *
 * Lock order: none; single-threaded, the GIL held throughout (the zygote
 * has no other thread; a blocking epoll_wait with the GIL held is fine).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

#define MAX_MSG (1 << 20) /* dragon_mp.zygote.MAX_MSG */
#define MAX_FDS 256       /* dragon_mp.zygote.MAX_FDS */
#define HEAD_SIZE 16      /* dragon_mp.zygote.HEAD: <4sIII */
#define MAGIC "DZy2"      /* dragon_mp.zygote.MAGIC */
#define START_SIZE 8      /* dragon_mp.zygote.START: <ii, then an int32 per descriptor */
#define MAX_FD_NUM 65536  /* descriptor tables; a larger number is refused */

enum kind { K_NONE, K_LISTEN, K_OWNER, K_PENDING, K_CHILD, K_REQUESTER, K_HANDED, K_WATCH };

struct child {         /* by pidfd */
    pid_t pid;         /* 0: slot free */
    int conn;          /* request connection, -1: none (a spare, or released) */
    pid_t requester;
};

#define MAX_REQUESTERS 1024  /* processes with children alive at once; more: refused */

static int ep = -1, listen_fd = -1, owner_fd = -1;
static pid_t zygote_pid;
static uid_t my_uid;
static unsigned char *kinds;         /* by fd */
static struct child *children;       /* by pidfd */
static struct {
    pid_t pid;
    int pidfd;
} requesters[MAX_REQUESTERS];        /* watched requesters, in no order */
static int nrequesters;
static pid_t *pending_requester;     /* by conn fd, K_PENDING */

/* The spare: a child forked ahead, waiting on sock for a request. */
static struct {
    pid_t pid; /* 0: none */
    int pidfd, sock;
    long long state; /* Python's state when it was forked */
} spare;

/* The zygote's end of the socketpair of the spare just handed a request,
 * until the spare has taken it (closed its end). The next spare is forked
 * only then: a fork right after the hand-off ran while the woken spare
 * waited for a CPU (the scheduler puts it on the waker's), ~0.1-0.4 ms. */
static int handed = -1;
static double last_request;          /* monotonic seconds */
static char *last_ctx;               /* context bytes Python has taken on */
static Py_ssize_t last_ctx_len = -1; /* -1: none */
static char *msgbuf;                 /* MAX_MSG */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int valid_fd(int fd) { return fd >= 0 && fd < MAX_FD_NUM; }

static int watch(int fd, enum kind k) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)fd};
    if (!valid_fd(fd) || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -1;
    kinds[fd] = k;
    return 0;
}

static void unwatch_close(int fd) {
    if (fd < 0)
        return;
    if (valid_fd(fd) && kinds[fd] != K_NONE) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        kinds[fd] = K_NONE;
    }
    close(fd);
}

static void close_fds(const int *fds, int n) {
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

/* -- messages -------------------------------------------------------------- */

/* sendmsg of buf with nfds descriptors (SCM_RIGHTS; none if nfds is 0). */
static ssize_t send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds) {
    char cbuf[CMSG_SPACE(sizeof(int) * (MAX_FDS + 1))];
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        memset(cbuf, 0, sizeof cbuf);
        mh.msg_control = cbuf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    return sendmsg(sock, &mh, MSG_NOSIGNAL);
}

/* recvmsg into msgbuf with up to max descriptors (close-on-exec), stored in
 * fds (*nfds of them, also when it fails later); *truncated: the message or
 * its descriptors did not fit. Returns recvmsg's result (-1: errno). */
static ssize_t recv_with_fds(int sock, int flags, int *fds, int max, int *nfds, int *truncated) {
    char cbuf[CMSG_SPACE(sizeof(int) * (MAX_FDS + 1))];
    struct iovec iov = {.iov_base = msgbuf, .iov_len = MAX_MSG};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = CMSG_SPACE(sizeof(int) * max)};
    ssize_t n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
    *nfds = 0;
    *truncated = 0;
    if (n < 0)
        return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(fds + *nfds, CMSG_DATA(c), sizeof(int) * k);
            *nfds += k;
        }
    *truncated = (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
    return n;
}

/* A request's head (dragon_mp.zygote.HEAD): the lengths of its zygote part
 * and context, and its number of descriptors. */
struct head {
    uint32_t nz, nc, nf;
};

/* 0 if msg (n bytes) starts with a head (magic checked), -1 if not. */
static int parse_head(const char *msg, ssize_t n, struct head *h) {
    if (n < HEAD_SIZE || memcmp(msg, MAGIC, 4) != 0)
        return -1;
    memcpy(&h->nz, msg + 4, 4);
    memcpy(&h->nc, msg + 8, 4);
    memcpy(&h->nf, msg + 12, 4);
    return 0;
}

/* Replies: pickle.loads gives {'pid': n, 'server': m} / {'exitcode': n}
 * (key2 NULL: one item). */
static size_t put_item(char *buf, const char *key, int32_t value) {
    size_t klen = strlen(key), n = 0;
    uint32_t k = (uint32_t)klen, v = (uint32_t)value;
    buf[n++] = 'X';                                     /* BINUNICODE */
    memcpy(buf + n, &k, 4), n += 4;                     /* little-endian on our targets */
    memcpy(buf + n, key, klen), n += klen;
    buf[n++] = 'J';                                     /* BININT */
    memcpy(buf + n, &v, 4), n += 4;
    buf[n++] = 's';                                     /* SETITEM */
    return n;
}

static int send_dict_int(int conn, const char *key, int32_t value, const char *key2,
                         int32_t value2, int pass_fd) {
    char buf[96];
    size_t n = 0;
    memcpy(buf + n, "\x80\x02}", 3), n += 3;            /* PROTO 2, EMPTY_DICT */
    n += put_item(buf + n, key, value);
    if (key2)
        n += put_item(buf + n, key2, value2);
    buf[n++] = '.';                                     /* STOP */
    return send_with_fds(conn, buf, n, &pass_fd, pass_fd >= 0) < 0 ? -1 : 0;
}

/* -- children and requesters -------------------------------------------- */

static int pidfd_of(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

static void kill_pidfd(int pidfd) { syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0); }

/* Watch a requester (once per pid); -1 if it is gone already. */
static int watch_requester(pid_t pid) {
    for (int i = 0; i < nrequesters; i++)
        if (requesters[i].pid == pid)
            return 0;
    int fd = pidfd_of(pid);
    if (fd < 0)
        return -1;
    if (nrequesters == MAX_REQUESTERS || watch(fd, K_REQUESTER) < 0) {
        close(fd);
        return -1;
    }
    requesters[nrequesters].pid = pid;
    requesters[nrequesters++].pidfd = fd;
    return 0;
}

/* Track a started child, tie it to its requester and reply with its pid and pidfd. */
static void started(pid_t pid, int pidfd, int conn, pid_t requester) {
    /* Watched at accept, but not by a template, which got the request that
     * made it from the zygote that forked it (zygote_server): watch it here. */
    if (requester > 0 && watch_requester(requester) < 0) {
        kill_pidfd(pidfd);
        requester = 0;
    }
    children[pidfd].pid = pid;
    children[pidfd].conn = conn;
    children[pidfd].requester = requester;
    /* 'server': the process that forked it (this zygote, or a template). */
    if (send_dict_int(conn, "pid", pid, "server", zygote_pid, pidfd) < 0) {
        /* The requester is gone or gave up: its child must not run on. */
        kill_pidfd(pidfd);
        close(conn);
        children[pidfd].conn = -1;
    }
}

static void reap(int pidfd) {
    struct child c = children[pidfd];
    int status = 0, code;
    if (spare.pid && spare.pidfd == pidfd) { /* died while waiting: fork another */
        close(spare.sock);
        spare.pid = 0;
    }
    unwatch_close(pidfd);
    children[pidfd].pid = 0;
    if (waitpid(c.pid, &status, 0) < 0)
        code = -SIGKILL;
    else if (WIFSIGNALED(status))
        code = -WTERMSIG(status);
    else
        code = WEXITSTATUS(status);
    if (c.conn >= 0) {
        send_dict_int(c.conn, "exitcode", code, NULL, 0, -1);
        close(c.conn);
    }
}

static void requester_gone(int pidfd) {
    pid_t pid = 0;
    for (int i = 0; i < nrequesters; i++)
        if (requesters[i].pidfd == pidfd) {
            pid = requesters[i].pid;
            requesters[i] = requesters[--nrequesters];
            break;
        }
    unwatch_close(pidfd);
    for (int fd = 0; fd < MAX_FD_NUM; fd++)
        if (kinds[fd] == K_CHILD && children[fd].pid && children[fd].requester == pid)
            kill_pidfd(fd); /* reaped (and reported to nobody) when its pidfd fires */
}

/* -- the spare ------------------------------------------------------------ */

static void drop_spare(void) {
    if (!spare.pid)
        return;
    close(spare.sock); /* the spare reads EOF and exits; reaped as a child */
    kill_pidfd(spare.pidfd);
    spare.pid = 0;
}

/* Fork a spare. In the child: returns its socket (>= 0). In the zygote: -1,
 * with an exception set only on a Python-level error (NULL-safe checks). */
static int fork_spare(long long state, int *in_child) {
    int sv[2];
    *in_child = 0;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    PyOS_BeforeFork();
    pid_t pid = fork();
    if (pid == 0) {
        PyOS_AfterFork_Child();
        /* PDEATHSIG first: a forked copy never outlives the zygote. */
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != zygote_pid)
            _exit(1);
        close(sv[0]);
        *in_child = 1;
        return sv[1];
    }
    PyOS_AfterFork_Parent();
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return -1;
    }
    int pidfd = pidfd_of(pid);
    if (pidfd < 0 || watch(pidfd, K_CHILD) < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        if (pidfd >= 0)
            close(pidfd);
        close(sv[0]);
        return -1;
    }
    children[pidfd].pid = pid;
    children[pidfd].conn = -1;
    children[pidfd].requester = 0;
    spare.pid = pid;
    spare.pidfd = pidfd;
    spare.sock = sv[0];
    spare.state = state;
    return -1;
}

/* Hand a request to the spare: 1 done (fds closed, reply sent), 0 no fresh spare. */
static int hand_to_spare(long long state, int conn, pid_t requester, const char *msg, size_t len,
                         const int *fds, int nfds) {
    if (!spare.pid || spare.state != state) {
        drop_spare();
        return 0;
    }
    int all[MAX_FDS + 1]; /* the request's descriptors, then its connection */
    memcpy(all, fds, sizeof(int) * nfds);
    all[nfds] = conn;
    int sent = send_with_fds(spare.sock, msg, len, all, nfds + 1) >= 0;
    if (sent && handed < 0) {
        struct epoll_event ev = {.events = EPOLLRDHUP, .data.u64 = (uint64_t)spare.sock};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, spare.sock, &ev) == 0) {
            kinds[spare.sock] = K_HANDED;
            handed = spare.sock;
        } else
            close(spare.sock);
    } else
        close(spare.sock);
    pid_t pid = spare.pid;
    int pidfd = spare.pidfd;
    spare.pid = 0;
    if (!sent) {
        kill_pidfd(pidfd);
        return 0;
    }
    close_fds(fds, nfds);
    started(pid, pidfd, conn, requester);
    return 1;
}

/* -- requests --------------------------------------------------------------- */

struct request {
    int conn;
    pid_t requester;
    ssize_t len;
    int fds[MAX_FDS];
    int nfds;
};

/* Read a request from conn: 1 read, 0 not there yet, -1 broken (conn closed). */
static int read_request(int conn, struct request *r, int flags) {
    int truncated;
    ssize_t n = recv_with_fds(conn, flags, r->fds, MAX_FDS, &r->nfds, &truncated);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        close(conn);
        return -1;
    }
    if (n == 0 || truncated) {
        close_fds(r->fds, r->nfds);
        close(conn);
        return -1;
    }
    r->conn = conn;
    r->len = n;
    return 1;
}

/* The fast path; 1: served, 0: for Python. */
static int serve_request(long long state, struct request *r) {
    struct head h;
    last_request = now();
    if (parse_head(msgbuf, r->len, &h) < 0)
        return 0; /* Python rejects it the same way as before */
    if (h.nz != 0 || h.nf != (uint32_t)r->nfds || (uint64_t)HEAD_SIZE + h.nc > (uint64_t)r->len)
        return 0;
    if (last_ctx_len != (Py_ssize_t)h.nc || memcmp(last_ctx, msgbuf + HEAD_SIZE, h.nc) != 0)
        return 0; /* a new context: Python takes on its environment first */
    return hand_to_spare(state, r->conn, r->requester, msgbuf, r->len, r->fds, r->nfds);
}

static PyObject *request_for_python(struct request *r) {
    PyObject *fds = PyList_New(r->nfds);
    if (!fds)
        return NULL;
    for (int i = 0; i < r->nfds; i++)
        PyList_SET_ITEM(fds, i, PyLong_FromLong(r->fds[i]));
    return Py_BuildValue("(siiy#N)", "request", r->conn, (int)r->requester, msgbuf,
                         (Py_ssize_t)r->len, fds);
}

/* An accepted connection: the peer's uid checked, its requester watched. 1 ok. */
static int accept_one(int *conn_out, pid_t *requester) {
    int conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0)
        return 0;
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (!valid_fd(conn) || getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 ||
        cr.uid != my_uid || watch_requester(cr.pid) < 0) {
        close(conn);
        return 0;
    }
    *conn_out = conn;
    *requester = cr.pid;
    return 1;
}

/* -- module functions ------------------------------------------------------- */

static PyObject *py_setup(PyObject *self, PyObject *args) {
    if (!PyArg_ParseTuple(args, "iii", &listen_fd, &owner_fd, &zygote_pid))
        return NULL;
    if (ep >= 0)
        return PyErr_Format(PyExc_RuntimeError, "the zygote loop is set up already");
    kinds = calloc(MAX_FD_NUM, 1);
    children = calloc(MAX_FD_NUM, sizeof *children);
    pending_requester = calloc(MAX_FD_NUM, sizeof *pending_requester);
    msgbuf = malloc(MAX_MSG);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!kinds || !children || !pending_requester || !msgbuf || ep < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    my_uid = getuid();
    int fl = fcntl(listen_fd, F_GETFL);   /* accept never blocks, whatever the epoll said */
    if (fl < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    last_request = now();
    if (watch(listen_fd, K_LISTEN) < 0 || watch(owner_fd, K_OWNER) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* serve(state, spares, spare_idle, idle_return) -> ("spare", fd) | ("request", ...) | ("idle",) */
static PyObject *py_serve(PyObject *self, PyObject *args) {
    long long state;
    int spares, idle_return;
    double spare_idle;
    if (!PyArg_ParseTuple(args, "Lpdp", &state, &spares, &spare_idle, &idle_return))
        return NULL;
    if (ep < 0)
        return PyErr_Format(PyExc_RuntimeError, "setup() first");
    struct epoll_event evs[64];
    struct request r;
    for (;;) {
        double busy_for = last_request + spare_idle - now();
        if (spare.pid && (busy_for <= 0 || spare.state != state))
            drop_spare(); /* idle: give its memory back; or stale */
        int want_spare = spares && !spare.pid && busy_for > 0 && handed < 0 &&
                         kinds[listen_fd] == K_LISTEN; /* no spare while another process serves */
        int timeout = -1;
        if (idle_return || want_spare)
            timeout = 0;
        else if (spare.pid)
            timeout = (int)(busy_for * 1000) + 1;
        int n = epoll_wait(ep, evs, 64, timeout);
        if (n < 0) {
            if (errno != EINTR)
                return PyErr_SetFromErrno(PyExc_OSError);
            if (PyErr_CheckSignals() < 0)
                return NULL;
            continue;
        }
        if (n == 0) {
            if (idle_return)
                return Py_BuildValue("(s)", "idle");
            if (want_spare) {
                int in_child;
                int fd = fork_spare(state, &in_child);
                if (in_child)
                    return Py_BuildValue("(si)", "spare", fd);
                if (!spare.pid)
                    spares = 0; /* could not fork: serve by Python's path from now */
            }
            continue;
        }
        for (int i = 0; i < n; i++) {
            int fd = (int)evs[i].data.u64;
            switch (kinds[fd]) {
            case K_LISTEN:
                if (!accept_one(&r.conn, &r.requester))
                    break;
                /* The requester sends right after connecting: try at once. */
                switch (read_request(r.conn, &r, MSG_DONTWAIT)) {
                case 0:
                    pending_requester[r.conn] = r.requester;
                    if (watch(r.conn, K_PENDING) < 0)
                        close(r.conn);
                    break;
                case 1:
                    if (!serve_request(state, &r))
                        return request_for_python(&r);
                    break;
                }
                break;
            case K_PENDING: {
                pid_t who = pending_requester[fd];
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                kinds[fd] = K_NONE;
                int got = read_request(fd, &r, MSG_DONTWAIT);
                if (got == 0) { /* spurious: wait again */
                    watch(fd, K_PENDING);
                    break;
                }
                if (got < 0)
                    break;
                r.requester = who;
                if (!serve_request(state, &r))
                    return request_for_python(&r);
                break;
            }
            case K_CHILD:
                reap(fd);
                break;
            case K_REQUESTER:
                requester_gone(fd);
                break;
            case K_HANDED: /* the spare has the request: the next may be forked */
                unwatch_close(fd);
                handed = -1;
                break;
            case K_WATCH:
                return Py_BuildValue("(si)", "watch", fd);
            case K_OWNER:
                /* The run's owner is gone: so is the zygote, and its children
                 * with it (PR_SET_PDEATHSIG). */
                _exit(0);
            default:
                break;
            }
        }
    }
}

/* set_context(bytes): the context Python has taken on (the fast path serves only it). */
static PyObject *py_set_context(PyObject *self, PyObject *args) {
    const char *data;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "y#", &data, &len))
        return NULL;
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return PyErr_NoMemory();
    memcpy(copy, data, len);
    free(last_ctx);
    last_ctx = copy;
    last_ctx_len = len;
    Py_RETURN_NONE;
}

/* assign_spare(state, conn, requester, msg, fds) -> bool: hand a request Python read to the spare. */
static PyObject *py_assign_spare(PyObject *self, PyObject *args) {
    long long state;
    int conn, requester;
    const char *msg;
    Py_ssize_t len;
    PyObject *fdlist;
    if (!PyArg_ParseTuple(args, "Liiy#O!", &state, &conn, &requester, &msg, &len, &PyList_Type,
                          &fdlist))
        return NULL;
    int fds[MAX_FDS], nfds = (int)PyList_GET_SIZE(fdlist);
    if (nfds > MAX_FDS)
        return PyErr_Format(PyExc_ValueError, "too many descriptors");
    for (int i = 0; i < nfds; i++) {
        fds[i] = (int)PyLong_AsLong(PyList_GET_ITEM(fdlist, i));
        if (PyErr_Occurred())
            return NULL;
    }
    last_request = now();
    return PyBool_FromLong(hand_to_spare(state, conn, requester, msg, len, fds, nfds));
}

/* adopt_child(pid, conn, requester): a child Python forked for a request; replies. */
static PyObject *py_adopt_child(PyObject *self, PyObject *args) {
    int pid, conn, requester;
    if (!PyArg_ParseTuple(args, "iii", &pid, &conn, &requester))
        return NULL;
    int pidfd = pidfd_of(pid);
    if (pidfd < 0 || watch(pidfd, K_CHILD) < 0) { /* cannot happen for our own unreaped child */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        if (pidfd >= 0)
            close(pidfd);
        close(conn);
        Py_RETURN_NONE;
    }
    started(pid, pidfd, conn, requester);
    Py_RETURN_NONE;
}

/* take_request(sock, avoid) -> None | (ctx, data_fd, tracker_fd, status_fd, avoid_taken)
 *
 * In a spare: wait on sock for the request the zygote hands over (message,
 * descriptors, then the request's connection), close sock, and install the
 * descriptors at their targets as zygote_child.install_fds does (the status
 * connection above every target, close-on-exec). None: the zygote discarded
 * the spare.
 * avoid_taken: avoid (a descriptor the spare opened) is now a target. */
static PyObject *py_take_request(PyObject *self, PyObject *args) {
    int sock, avoid;
    if (!PyArg_ParseTuple(args, "ii", &sock, &avoid))
        return NULL;
    if (!msgbuf && !(msgbuf = malloc(MAX_MSG)))
        return PyErr_NoMemory();
    int fds[MAX_FDS + 1], nfds, truncated;
    ssize_t n;
    do {
        n = recv_with_fds(sock, 0, fds, MAX_FDS + 1, &nfds, &truncated);
        if (n < 0 && errno == EINTR && PyErr_CheckSignals() < 0)
            return NULL;
    } while (n < 0 && errno == EINTR);
    int err = errno;
    close(sock);
    if (n < 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (n == 0 && nfds == 0)
        Py_RETURN_NONE;
    struct head h;
    uint32_t nf;
    int32_t data_fd, tracker_fd, targets[MAX_FDS];
    if (truncated || parse_head(msgbuf, n, &h) < 0)
        goto malformed;
    nf = h.nf;
    if (nfds < 1 || nf != (uint32_t)(nfds - 1) ||
        (uint64_t)HEAD_SIZE + h.nz + h.nc + START_SIZE + 4ull * nf != (uint64_t)n)
        goto malformed;
    const char *start = msgbuf + HEAD_SIZE + h.nz + h.nc;
    memcpy(&data_fd, start, 4);
    memcpy(&tracker_fd, start + 4, 4);
    memcpy(targets, start + START_SIZE, 4 * nf);
    int top = 2, status = fds[nf], avoid_taken = 0;
    for (uint32_t i = 0; i < nf; i++) {
        if (targets[i] < 0 || targets[i] >= MAX_FD_NUM)
            goto malformed;
        top = targets[i] > top ? targets[i] : top;
        top = fds[i] > top ? fds[i] : top;
        avoid_taken |= targets[i] == avoid;
    }
    top = (status > top ? status : top) + 1;
    /* Out of the way of every target first, then in place. */
    int moved_status = fcntl(status, F_DUPFD_CLOEXEC, top);
    if (moved_status < 0)
        goto failed;
    close(status);
    int moved[MAX_FDS];
    for (uint32_t i = 0; i < nf; i++) {
        if ((moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, top)) < 0)
            goto failed;
        close(fds[i]);
        fds[i] = moved[i];
    }
    for (uint32_t i = 0; i < nf; i++) {
        if (dup2(moved[i], targets[i]) < 0) /* inheritable, as in an exec'd child */
            goto failed;
        close(moved[i]);
    }
    for (int fd = 0; fd < 3; fd++) { /* a standard stream the requester had closed */
        int passed = 0;
        for (uint32_t i = 0; i < nf; i++)
            passed |= targets[i] == fd;
        if (!passed)
            close(fd);
    }
    return Py_BuildValue("(y#iiiO)", msgbuf + HEAD_SIZE + h.nz, (Py_ssize_t)h.nc, data_fd, tracker_fd,
                         moved_status, avoid_taken ? Py_True : Py_False);
malformed:
    close_fds(fds, nfds);
    return PyErr_Format(PyExc_ValueError, "malformed request");
failed:
    return PyErr_SetFromErrno(PyExc_OSError);
}


/* listening(on): accept requests (True), or leave them in the socket's
 * backlog for another process that listens on the same socket (False: a
 * template forked from this zygote serves them; the spare is dropped). */
static PyObject *py_listening(PyObject *self, PyObject *args) {
    int on;
    if (!PyArg_ParseTuple(args, "p", &on))
        return NULL;
    if (ep < 0)
        return PyErr_Format(PyExc_RuntimeError, "setup() first");
    if (on && kinds[listen_fd] != K_LISTEN) {
        if (watch(listen_fd, K_LISTEN) < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
    } else if (!on && kinds[listen_fd] == K_LISTEN) {
        epoll_ctl(ep, EPOLL_CTL_DEL, listen_fd, NULL);
        kinds[listen_fd] = K_NONE;
        drop_spare();
    }
    Py_RETURN_NONE;
}

/* watch_fd(fd) / unwatch_fd(fd): serve() returns ("watch", fd) while fd is
 * readable; unwatch_fd stops that (the descriptor stays open: Python's). */
static PyObject *py_watch_fd(PyObject *self, PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i", &fd))
        return NULL;
    if (ep < 0)
        return PyErr_Format(PyExc_RuntimeError, "setup() first");
    if (watch(fd, K_WATCH) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *py_unwatch_fd(PyObject *self, PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i", &fd))
        return NULL;
    if (ep >= 0 && valid_fd(fd) && kinds[fd] == K_WATCH) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        kinds[fd] = K_NONE;
    }
    Py_RETURN_NONE;
}

/* reset(): in a copy forked from the zygote that becomes a zygote itself (a
 * template, zygote_server): forget the zygote's children, requesters and
 * spare (the caller has closed their descriptors, the epoll's included), so
 * that setup() can run again. The context taken on stays. */
static PyObject *py_reset(PyObject *self, PyObject *args) {
    free(kinds);
    free(children);
    free(pending_requester);
    free(msgbuf);
    kinds = NULL;
    children = NULL;
    pending_requester = NULL;
    msgbuf = NULL;
    ep = listen_fd = owner_fd = -1;
    nrequesters = 0;
    memset(&spare, 0, sizeof spare);
    handed = -1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", py_setup, METH_VARARGS, "setup(listen_fd, owner_pidfd, zygote_pid)"},
    {"serve", py_serve, METH_VARARGS,
     "serve(state, spares, spare_idle, idle_return) -> ('spare', fd) | ('request', conn, "
     "requester, msg, fds) | ('idle',)"},
    {"set_context", py_set_context, METH_VARARGS, "set_context(ctx): the context taken on"},
    {"assign_spare", py_assign_spare, METH_VARARGS,
     "assign_spare(state, conn, requester, msg, fds) -> bool"},
    {"adopt_child", py_adopt_child, METH_VARARGS, "adopt_child(pid, conn, requester)"},
    {"take_request", py_take_request, METH_VARARGS,
     "take_request(sock, avoid) -> None | (ctx, data_fd, tracker_fd, status_fd, avoid_taken)"},
    {"listening", py_listening, METH_VARARGS, "listening(on): accept requests or not"},
    {"watch_fd", py_watch_fd, METH_VARARGS, "watch_fd(fd): serve() returns ('watch', fd)"},
    {"unwatch_fd", py_unwatch_fd, METH_VARARGS, "unwatch_fd(fd)"},
    {"reset", py_reset, METH_NOARGS, "reset(): forget the state of the zygote this was forked from"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "dragon_mp._zygote_loop",
    "The zygote's steady-state cycle in C (see pyext/zygote_loop.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__zygote_loop(void) { return PyModule_Create(&module); }
