// dragon_mp.hpp -- a thin C++ layer over dragon_mp.h: RAII handles and exceptions.
//
// dragon_mp::Run attaches for its lifetime; dragon_mp::Queue and dragon_mp::Lock open a descriptor
// and close it in their destructors (move-only); every failure throws dragon_mp::Error, which carries
// the DMP_E* code and the library's message. A timeout is not a failure: recv/send/acquire with a
// timeout return false (or an empty optional) when it elapses. docs/c_api.md has a complete program.
#ifndef DRAGON_MP_HPP
#define DRAGON_MP_HPP

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dragon_mp.h"

namespace dragon_mp {

// Error is a failed call: code() is its DMP_E* code, what() its message.
class Error : public std::runtime_error {
public:
    Error(int code, const std::string &what) : std::runtime_error(what), code_(code) {}
    int code() const noexcept { return code_; }

private:
    int code_;
};

namespace detail {
inline void check(int rc, const char *call)
{
    if (rc != DMP_OK) {
        const char *msg = dmp_last_error();
        throw Error(rc, std::string(call) + ": " + dmp_strerror(rc) + (msg && *msg ? std::string(": ") + msg : ""));
    }
}

inline int64_t ns(std::chrono::nanoseconds t) { return t.count() < 0 ? 0 : static_cast<int64_t>(t.count()); }
}  // namespace detail

// Run is this process's attachment to the run named by its environment, for the object's lifetime.
class Run {
public:
    Run() { detail::check(dmp_attach(), "dmp_attach"); }
    ~Run() { dmp_detach(); }
    Run(const Run &) = delete;
    Run &operator=(const Run &) = delete;
};

// Queue is an open dragon_mp Queue (Python: Queue.descriptor()); messages are raw bytes.
class Queue {
public:
    explicit Queue(const std::string &descriptor)
    {
        detail::check(dmp_queue_open(descriptor.c_str(), &q_), "dmp_queue_open");
    }
    ~Queue() { close(); }
    Queue(Queue &&o) noexcept : q_(std::exchange(o.q_, 0)) {}
    Queue &operator=(Queue &&o) noexcept
    {
        if (this != &o) {
            close();
            q_ = std::exchange(o.q_, 0);
        }
        return *this;
    }
    Queue(const Queue &) = delete;
    Queue &operator=(const Queue &) = delete;

    // Send len bytes, waiting as long as it takes on a full bounded queue.
    void send(const void *buf, size_t len) { detail::check(dmp_queue_send(q_, buf, len, -1), "dmp_queue_send"); }
    void send(const std::string &s) { send(s.data(), s.size()); }
    // false when a bounded queue stayed full for the timeout.
    bool send(const void *buf, size_t len, std::chrono::nanoseconds timeout)
    {
        int rc = dmp_queue_send(q_, buf, len, detail::ns(timeout));
        if (rc == DMP_EFULL)
            return false;
        detail::check(rc, "dmp_queue_send");
        return true;
    }

    // The next message, waiting as long as it takes.
    std::vector<unsigned char> recv()
    {
        auto m = recv_for(-1);
        return std::move(*m);
    }
    // The next message, or nothing when the queue stayed empty for the timeout.
    std::optional<std::vector<unsigned char>> recv(std::chrono::nanoseconds timeout)
    {
        return recv_for(detail::ns(timeout));
    }

    size_t size() const
    {
        size_t n = 0;
        detail::check(dmp_queue_len(q_, &n), "dmp_queue_len");
        return n;
    }

    dmp_queue_t handle() const noexcept { return q_; }

private:
    std::optional<std::vector<unsigned char>> recv_for(int64_t timeout_ns)
    {
        void *buf = nullptr;
        size_t len = 0;
        int rc = dmp_queue_recv(q_, &buf, &len, timeout_ns);
        if (rc == DMP_ETIMEOUT)
            return std::nullopt;
        detail::check(rc, "dmp_queue_recv");
        const unsigned char *p = static_cast<const unsigned char *>(buf);
        std::vector<unsigned char> out;
        try {
            out.assign(p, p + len);
        } catch (...) {
            dmp_free(buf);
            throw;
        }
        dmp_free(buf);
        return out;
    }

    void close() noexcept
    {
        if (q_)
            dmp_queue_close(std::exchange(q_, 0));
    }

    dmp_queue_t q_ = 0;
};

// Lock is an open dragon_mp Lock, Semaphore or BoundedSemaphore (Python: lock.descriptor()); it meets
// the BasicLockable/Lockable requirements, so std::lock_guard and std::unique_lock work with it.
class Lock {
public:
    explicit Lock(const std::string &descriptor)
    {
        detail::check(dmp_lock_open(descriptor.c_str(), &l_), "dmp_lock_open");
    }
    ~Lock()
    {
        if (l_)
            dmp_lock_close(l_);
    }
    Lock(Lock &&o) noexcept : l_(std::exchange(o.l_, 0)) {}
    Lock(const Lock &) = delete;
    Lock &operator=(const Lock &) = delete;
    Lock &operator=(Lock &&) = delete;

    void lock() { detail::check(dmp_lock_acquire(l_, -1), "dmp_lock_acquire"); }
    bool try_lock() { return try_lock_for(std::chrono::nanoseconds(0)); }
    // false when it stayed held for the timeout.
    bool try_lock_for(std::chrono::nanoseconds timeout)
    {
        int rc = dmp_lock_acquire(l_, detail::ns(timeout));
        if (rc == DMP_ETIMEOUT)
            return false;
        detail::check(rc, "dmp_lock_acquire");
        return true;
    }
    void unlock() { detail::check(dmp_lock_release(l_), "dmp_lock_release"); }

private:
    dmp_lock_t l_ = 0;
};

}  // namespace dragon_mp

#endif  // DRAGON_MP_HPP
