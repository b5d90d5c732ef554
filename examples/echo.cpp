// echo.cpp -- a C++ program answering a Python program through dragon_mp Queues (docs/c_api.md).
//
// argv: the descriptors of an input Queue, an output Queue and a Lock. It takes every message from the
// input and sends it back on the output, unchanged, holding the Lock while it does; an empty message
// ends it (it is echoed too). tests/test_capi.py runs it with messages of 0 B to 64 MiB.
//
// Build: c++ -std=c++17 echo.cpp $(python -m dragon_mp.capi --cflags --libs) -o echo

#include <cstdio>
#include <mutex>

#include <dragon_mp.hpp>

int main(int argc, char **argv)
{
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s IN-QUEUE OUT-QUEUE LOCK\n", argv[0]);
        return 2;
    }
    try {
        dragon_mp::Run run;                       // attached until the end of main
        dragon_mp::Queue in(argv[1]), out(argv[2]);
        dragon_mp::Lock lock(argv[3]);
        for (;;) {
            std::vector<unsigned char> msg = in.recv();
            {
                std::lock_guard<dragon_mp::Lock> held(lock);
                out.send(msg.data(), msg.size());
            }
            if (msg.empty())
                return 0;
        }
    } catch (const dragon_mp::Error &e) {
        std::fprintf(stderr, "echo: %s (code %d)\n", e.what(), e.code());
        return 1;
    }
}
