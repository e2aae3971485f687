package carbontest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// errCorrupt is wrapped by the errors of parseWhisper for a file that is not a whisper file.
var errCorrupt = errors.New("corrupt whisper file")

// errShort is wrapped, with errCorrupt, by the errors of parseWhisper for a file shorter
// than its header or its first archive. whisper.create opens the file empty, writes the
// header, then the last byte of the archives (sparse) or zeros up to it, so a reader that
// comes while carbon creates a series sees such a file.
var errShort = errors.New("shorter than its header or archive")

// Sizes in a whisper file, all numbers big-endian:
//
//	header       aggregation uint32, max retention uint32, xFilesFactor float32, archive count uint32
//	archive info offset uint32, seconds per point uint32, points uint32; one per archive
//	archive      points × (timestamp uint32, value float64), a ring
const (
	headerSize      = 16
	archiveInfoSize = 12
	pointSize       = 12
)

// parseWhisper returns the points of the first, finest archive of the whisper file b, by
// timestamp.
//
// The archive is a ring: a point's slot is its distance in steps from the point in slot 0,
// modulo the number of slots, and a slot holds whatever was last written to it. A slot
// counts only if its timestamp is a step boundary that belongs in that slot, and is within
// one retention of the newest point (else it is a lap old: stale). That is what
// whisper-fetch returns when run at the time of the newest point. Empty slots have
// timestamp 0.
func parseWhisper(b []byte) (map[int64]float64, error) {
	if len(b) < headerSize+archiveInfoSize {
		return nil, fmt.Errorf("%w: %d bytes: %w", errCorrupt, len(b), errShort)
	}
	archives := int64(binary.BigEndian.Uint32(b[12:16]))
	if archives == 0 {
		return nil, fmt.Errorf("%w: no archives", errCorrupt)
	}
	info := b[headerSize:]
	offset := int64(binary.BigEndian.Uint32(info[0:4]))
	step := int64(binary.BigEndian.Uint32(info[4:8]))
	slots := int64(binary.BigEndian.Uint32(info[8:12]))
	// The first archive follows the archive infos.
	if step == 0 || slots == 0 || offset != headerSize+archives*archiveInfoSize {
		return nil, fmt.Errorf("%w: %d archives, the first of %d points of %d s at offset %d",
			errCorrupt, archives, slots, step, offset)
	}
	if offset+slots*pointSize > int64(len(b)) {
		return nil, fmt.Errorf("%w: archive of %d points at offset %d in %d bytes: %w",
			errCorrupt, slots, offset, len(b), errShort)
	}
	ring := b[offset : offset+slots*pointSize]
	point := func(i int64) (int64, float64) {
		p := ring[i*pointSize:]
		return int64(binary.BigEndian.Uint32(p)), math.Float64frombits(binary.BigEndian.Uint64(p[4:]))
	}

	base, _ := point(0)
	newest := int64(0)
	for i := range slots {
		if ts, _ := point(i); ts != 0 && ts%step == 0 && slotOf(ts, base, step, slots) == i {
			newest = max(newest, ts)
		}
	}
	pts := make(map[int64]float64)
	for i := range slots {
		ts, v := point(i)
		if ts != 0 && ts%step == 0 && slotOf(ts, base, step, slots) == i && ts > newest-step*slots {
			pts[ts] = v
		}
	}
	return pts, nil
}

// slotOf is the slot of timestamp ts in a ring of slots steps whose slot 0 holds base.
func slotOf(ts, base, step, slots int64) int64 {
	s := (ts - base) / step % slots
	if s < 0 {
		s += slots
	}
	return s
}
