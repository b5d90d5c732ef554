package main

import (
	"bytes"
	"fmt"
	"math/bits"
	"reflect"
	"strings"
	"unicode"

	"github.com/dragon-mp/dragon_mp/gocore/channel"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
	"github.com/dragon-mp/dragon_mp/gocore/shmsync"
)

// chanWord says how one word of channel.Layout() appears in the header:
// as the macro named macro (printed with format), or as the offset of the
// header field field.
type chanWord struct {
	macro, format, field string
}

// chanWords covers every word of channel.Layout(), in its order; a word
// added there without an entry here stops the generator.
var chanWords = [channel.LayoutWords]chanWord{
	channel.LayoutHeaderSize:     {macro: "DMP_CHAN_HEADER_SIZE", format: "%d"},
	channel.LayoutChunkHeader:    {macro: "DMP_CHAN_CHUNK_HEADER", format: "%d"},
	channel.LayoutSlotHeader:     {macro: "DMP_CHAN_SLOT_HEADER", format: "%d"},
	channel.LayoutFlagLarge:      {macro: "DMP_CHAN_FLAG_LARGE", format: "%du"},
	channel.LayoutMagic:          {macro: "DMP_CHAN_MAGIC", format: "0x%016xULL"},
	channel.LayoutVersion:        {macro: "DMP_CHAN_VERSION", format: "%d"},
	channel.LayoutOffMagic:       {field: "magic"},
	channel.LayoutOffVersion:     {field: "version"},
	channel.LayoutOffMu:          {field: "mu"},
	channel.LayoutOffCapacity:    {field: "capacity"},
	channel.LayoutOffCount:       {field: "count"},
	channel.LayoutOffInline:      {field: "inline"},
	channel.LayoutOffSlotSize:    {field: "slotSize"},
	channel.LayoutOffChunkSlots:  {field: "chunkSlots"},
	channel.LayoutOffClosed:      {field: "closed"},
	channel.LayoutOffNeSeq:       {field: "neSeq"},
	channel.LayoutOffNeWaiters:   {field: "neWaiters"},
	channel.LayoutOffNfSeq:       {field: "nfSeq"},
	channel.LayoutOffNfWaiters:   {field: "nfWaiters"},
	channel.LayoutOffHead:        {field: "head"},
	channel.LayoutOffHeadIdx:     {field: "headIdx"},
	channel.LayoutOffTail:        {field: "tail"},
	channel.LayoutOffTailIdx:     {field: "tailIdx"},
	channel.LayoutOffSpare:       {field: "spare"},
	channel.LayoutMutexContended: {macro: "DMP_MUTEX_CONTENDED", format: "0x%08xu"},
	channel.LayoutOffTag:         {field: "tag"},
}

// Stated here, not read: gocore/channel writes these as slice bounds
// (see doc.go).
const (
	chunkOffNext = 0 // a chunk's first word: the offset of the next chunk, 0 = none
	slotOffLen   = 0 // a slot's payload length, uint64
	slotOffFlags = 8 // a slot's flags, uint32 (DMP_CHAN_FLAG_LARGE)
)

// chanHeaderField is the field of channel.Channel that points to the header.
const chanHeaderField = "h"

// cKeywords are Go field names that cannot be C field names as they are.
var cKeywords = map[string]bool{"inline": true, "default": true, "register": true, "volatile": true}

// cName is the C name of a Go field: snake case, "_" appended to a C keyword.
func cName(goName string) string {
	var b strings.Builder
	for i, r := range goName {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	s := b.String()
	if cKeywords[s] {
		s += "_"
	}
	return s
}

// cType is the C type of a field of Go type t: a fixed-width unsigned
// integer, or a struct of one such word (shmsync.Mutex) as that word.
func cType(t reflect.Type) (ctype, note string, err error) {
	switch t.Kind() {
	case reflect.Uint32:
		return "uint32_t", "", nil
	case reflect.Uint64:
		return "uint64_t", "", nil
	case reflect.Struct:
		if t.NumField() == 1 && t.Size() == t.Field(0).Type.Size() {
			inner, _, err := cType(t.Field(0).Type)
			return inner, t.String(), err
		}
	}
	return "", "", fmt.Errorf("no C type for a field of Go type %s", t)
}

// cStruct writes the C struct of the Go struct type t, with padding where
// Go leaves a gap and static assertions on its size and every offset.
func cStruct(w *bytes.Buffer, name, what string, t reflect.Type) error {
	if t.Kind() != reflect.Struct {
		return fmt.Errorf("%s is not a struct", t)
	}
	fmt.Fprintf(w, "/* %s (%d bytes) */\ntypedef struct {\n", what, t.Size())
	var asserts bytes.Buffer
	pos := uintptr(0)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		ctype, note, err := cType(f.Type)
		if err != nil {
			return fmt.Errorf("%s.%s: %w", t, f.Name, err)
		}
		if f.Offset > pos {
			fmt.Fprintf(w, "    uint8_t pad_%d_[%d];\n", pos, f.Offset-pos)
		}
		decl := fmt.Sprintf("    %s %s;", ctype, cName(f.Name))
		comment := fmt.Sprintf("+%d", f.Offset)
		if note != "" {
			comment += " " + note
		}
		fmt.Fprintf(w, "%-32s /* %s */\n", decl, comment)
		fmt.Fprintf(&asserts, "_Static_assert(offsetof(%s, %s) == %d, \"%s.%s\");\n",
			name, cName(f.Name), f.Offset, t, f.Name)
		pos = f.Offset + f.Type.Size()
	}
	if t.Size() > pos {
		fmt.Fprintf(w, "    uint8_t pad_%d_[%d];\n", pos, t.Size()-pos)
	}
	fmt.Fprintf(w, "} %s;\n", name)
	fmt.Fprintf(w, "_Static_assert(sizeof(%s) == %d, \"%s\");\n", name, t.Size(), t)
	w.Write(asserts.Bytes())
	w.WriteByte('\n')
	return nil
}

// chanHeaderType is gocore/channel's header struct, reached through the
// exported Channel's pointer to it.
func chanHeaderType() (reflect.Type, error) {
	f, ok := reflect.TypeFor[channel.Channel]().FieldByName(chanHeaderField)
	if !ok || f.Type.Kind() != reflect.Pointer || f.Type.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("channel.Channel has no field %s pointing to the header struct", chanHeaderField)
	}
	return f.Type.Elem(), nil
}

// checkChanLayout checks the header struct against channel.Layout().
func checkChanLayout(hdr reflect.Type, layout [channel.LayoutWords]uint64) error {
	if uint64(hdr.Size()) != layout[channel.LayoutHeaderSize] {
		return fmt.Errorf("channel.Layout() says the header has %d bytes, the struct %d",
			layout[channel.LayoutHeaderSize], hdr.Size())
	}
	for i, w := range chanWords {
		if w.macro == "" && w.field == "" {
			return fmt.Errorf("channel.Layout() word %d is not in chanWords", i)
		}
		if w.field == "" {
			continue
		}
		f, ok := hdr.FieldByName(w.field)
		if !ok {
			return fmt.Errorf("the channel header has no field %s", w.field)
		}
		if uint64(f.Offset) != layout[i] {
			return fmt.Errorf("channel.Layout() word %d: offset %d, but the header's %s is at %d",
				i, layout[i], w.field, f.Offset)
		}
	}
	return nil
}

// addressBits derives runtime.Address's bit fields from its exported API.
func addressBits() (nodeShift, offsetBits, unitShift int, err error) {
	nodeShift = bits.TrailingZeros64(uint64(runtime.MakeAddress(1, 0, 0)))
	top := runtime.MakeAddress(0, 0, runtime.MaxOffset-1)
	offsetBits = bits.OnesCount64(uint64(top))
	unitShift = bits.TrailingZeros64(runtime.MaxOffset) - offsetBits
	if uint64(top) != 1<<offsetBits-1 || top.Offset() != runtime.MaxOffset-1<<unitShift ||
		runtime.MakeAddress(1, 0, 0).Node() != 1 {
		return 0, 0, 0, fmt.Errorf("runtime.Address is not node | generation | offset>>unit as expected")
	}
	return nodeShift, offsetBits, unitShift, nil
}

const preamble = `// Code generated by "go run ./pyext/internal/layoutgen"; DO NOT EDIT.

/*
 * The shared-memory layout that dragon_mp._fastpath (pyext/fastpath*.c)
 * works on, written from the Go definitions by pyext/internal/layoutgen (see
 * its doc.go): gocore/channel's header, gocore/shmsync's Semaphore,
 * RecursiveLock and Event, runtime.Address's bit fields. Go is the only
 * definition; after changing it, run go run ./pyext/internal/layoutgen from
 * the repository root (its test fails until then). The protocol steps on
 * these words (what is read, CASed and woken, in which order) are code, kept
 * in sync by hand: see "KEEP IN SYNC" in gocore/channel and gocore/shmsync.
 */

#ifndef DMP_LAYOUT_H
#define DMP_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

`

// Header returns the text of pyext/layout.h.
func Header() ([]byte, error) {
	var w bytes.Buffer
	w.WriteString(preamble)

	hdr, err := chanHeaderType()
	if err != nil {
		return nil, err
	}
	layout := channel.Layout()
	if err := checkChanLayout(hdr, layout); err != nil {
		return nil, err
	}
	w.WriteString("/* ---- gocore/channel */\n\n")
	if err := cStruct(&w, "dmp_chan_header", "gocore/channel's header: a channel's first bytes", hdr); err != nil {
		return nil, err
	}
	w.WriteString("/* channel.Layout()'s constants */\n")
	for i, cw := range chanWords {
		if cw.macro != "" {
			fmt.Fprintf(&w, "#define %s "+cw.format+"\n", cw.macro, layout[i])
		}
	}
	fmt.Fprintf(&w, "\n/* Not in channel.Layout(): slice bounds in gocore/channel/channel.go */\n")
	fmt.Fprintf(&w, "#define DMP_CHAN_CHUNK_OFF_NEXT %d    /* uint64_t: the next chunk's offset, 0 = none */\n", chunkOffNext)
	fmt.Fprintf(&w, "#define DMP_CHAN_SLOT_OFF_LEN %d      /* uint64_t: the payload's length */\n", slotOffLen)
	fmt.Fprintf(&w, "#define DMP_CHAN_SLOT_OFF_FLAGS %d    /* uint32_t: DMP_CHAN_FLAG_LARGE */\n", slotOffFlags)
	w.WriteString("\n/* channel.Layout() as this build sees it, in the order of the channel.Layout*\n" +
		" * constants: compared with the loaded library's (dmp_chan_layout) at init(). */\n")
	fmt.Fprintf(&w, "#define DMP_CHAN_LAYOUT_WORDS %d\n#define DMP_CHAN_LAYOUT { \\\n", channel.LayoutWords)
	for i, cw := range chanWords {
		item := cw.macro
		if i == channel.LayoutHeaderSize {
			item = "sizeof(dmp_chan_header)"
		} else if cw.field != "" {
			item = fmt.Sprintf("offsetof(dmp_chan_header, %s)", cName(cw.field))
		}
		sep := ","
		if i == len(chanWords)-1 {
			sep = ""
		}
		fmt.Fprintf(&w, "    %s%s \\\n", item, sep)
	}
	w.WriteString("}\n\n")

	w.WriteString("/* ---- gocore/shmsync */\n\n")
	for _, s := range []struct {
		name, what string
		t          reflect.Type
	}{
		{"dmp_semaphore", "shmsync.Semaphore", reflect.TypeFor[shmsync.Semaphore]()},
		{"dmp_rlock", "shmsync.RecursiveLock", reflect.TypeFor[shmsync.RecursiveLock]()},
		{"dmp_event", "shmsync.Event", reflect.TypeFor[shmsync.Event]()},
	} {
		if err := cStruct(&w, s.name, s.what, s.t); err != nil {
			return nil, err
		}
	}

	nodeShift, offsetBits, unitShift, err := addressBits()
	if err != nil {
		return nil, err
	}
	w.WriteString("/* ---- gocore/runtime: an Address is node | generation | pool offset >> unit */\n\n")
	fmt.Fprintf(&w, "#define DMP_ADDR_NODE_SHIFT %d     /* bits 63..%d: the node */\n", nodeShift, nodeShift)
	fmt.Fprintf(&w, "#define DMP_ADDR_OFFSET_BITS %d    /* bits %d..0: the pool offset >> DMP_ADDR_UNIT_SHIFT */\n",
		offsetBits, offsetBits-1)
	fmt.Fprintf(&w, "#define DMP_ADDR_UNIT_SHIFT %d\n", unitShift)
	w.WriteString("\n#endif /* DMP_LAYOUT_H */\n")
	return w.Bytes(), nil
}
