// Package pyext is the facade that gopy binds into the dragon_mp Python
// package, plus the C-ABI functions that Python reaches through ctypes.
//
// Two doors into one Go runtime:
//   - gopy functions (control plane): ints, strings and errors only; every
//     error message starts with "E<code>:" so that Python can raise the
//     exception stdlib multiprocessing raises (codes.go);
//   - //export functions (data plane: send, recv, acquire, release): raw
//     pointers and lengths, so payloads are copied once, straight between
//     Python buffers and shared memory, never through the Go heap. They
//     return a negative code on error; dmp_last_error tells the message.
//
// Every entry point recovers panics: a Go panic must become a Python
// exception, never abort the interpreter. No function keeps a pointer it was
// given past its return.
package pyext
