package pyext

/*
#include <stdint.h>
*/
import "C"

import "unsafe"

// dmp_sendv sends the concatenation of nparts buffers as one message,
// copying each once into the channel (Python frames a large payload with a
// few header bytes without joining them into a new object first).
//
//export dmp_sendv
func dmp_sendv(addr C.uint64_t, bufs *unsafe.Pointer, lens *C.uint64_t, nparts C.uint64_t,
	timeoutNs C.int64_t) (rc int64) {
	defer cRecover(&rc)
	if isRemote(int64(addr)) {
		return remoteSendv(int64(addr), bufs, lens, nparts, duration(timeoutNs))
	}
	c, err := channelAt(int64(addr))
	if err != nil {
		return cCode(err)
	}
	if nparts > 64 {
		return cCode(errInvalid)
	}
	ptrs := unsafe.Slice(bufs, int(nparts))
	sizes := unsafe.Slice(lens, int(nparts))
	parts := make([][]byte, nparts)
	for i := range parts {
		if sizes[i] > 0 {
			parts[i] = unsafe.Slice((*byte)(ptrs[i]), int(sizes[i]))
		}
	}
	if err := c.SendParts(duration(timeoutNs), parts...); err != nil {
		return cCode(err)
	}
	return 0
}
