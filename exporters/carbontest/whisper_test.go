package carbontest

import (
	"encoding/binary"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"testing"
)

// The files in testdata were written by Debian's python3-whisper (whisper.create and
// whisper.update with now= set) at t0:
//
//	empty.wsp         1s:10, nothing written
//	two-archives.wsp  1s:10,5s:10; t0-3 → 1.5, t0-2 → -2.25, t0 → 1e300
//	wrapped.wsp       1s:5; t0 … t0+4 → 0 … 4, then t0+8 → 8, which overwrites t0+3's slot
//	                  and leaves t0, t0+1, t0+2 a lap old
const t0 = 1700000000

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseWhisper(t *testing.T) {
	wrapped := readTestdata(t, "wrapped.wsp")
	// wrapped.wsp's ring starts at byte 28; slot 1 holds t0+1.
	misplaced := append([]byte(nil), wrapped...)
	binary.BigEndian.PutUint32(misplaced[28+12:], t0+3) // t0+3 belongs in slot 3
	noArchives := append([]byte(nil), wrapped...)
	binary.BigEndian.PutUint32(noArchives[12:], 0)
	zeroStep := append([]byte(nil), wrapped...)
	binary.BigEndian.PutUint32(zeroStep[16+4:], 0)

	for _, tc := range []struct {
		name string
		in   []byte
		want map[int64]float64
		// short: a file carbon may be creating (errShort), which Points reads as empty.
		short bool
	}{
		{"empty", nil, nil, true},
		{"truncated header", wrapped[:20], nil, true},
		{"header only", wrapped[:28], nil, true},
		{"truncated archive", wrapped[:len(wrapped)-1], nil, true},
		{"garbage", []byte("a.b.c 1 1700000000\na.b.c 2 1700000001\n"), nil, false},
		{"no archives", noArchives, nil, false},
		{"zero step", zeroStep, nil, false},
		{"nothing written", readTestdata(t, "empty.wsp"), map[int64]float64{}, false},
		{"two archives", readTestdata(t, "two-archives.wsp"), map[int64]float64{t0 - 3: 1.5, t0 - 2: -2.25, t0: 1e300}, false},
		{"wrapped", wrapped, map[int64]float64{t0 + 4: 4, t0 + 8: 8}, false},
		{"misplaced point", misplaced, map[int64]float64{t0 + 4: 4, t0 + 8: 8}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseWhisper(tc.in)
			if tc.want == nil {
				if !errors.Is(err, errCorrupt) || errors.Is(err, errShort) != tc.short {
					t.Errorf("parseWhisper() = %v, %v; want an error wrapping errCorrupt, and errShort: %t", got, err, tc.short)
				}
				return
			}
			if err != nil || !maps.Equal(got, tc.want) {
				t.Errorf("parseWhisper() = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func FuzzParseWhisper(f *testing.F) {
	for _, name := range []string{"empty.wsp", "two-archives.wsp", "wrapped.wsp"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pts, err := parseWhisper(b)
		if err != nil {
			return
		}
		step := int64(binary.BigEndian.Uint32(b[headerSize+4:]))
		slots := int64(binary.BigEndian.Uint32(b[headerSize+8:]))
		if int64(len(pts)) > slots {
			t.Errorf("%d points from %d slots", len(pts), slots)
		}
		for ts := range pts {
			if ts == 0 || ts%step != 0 {
				t.Errorf("point at %d, step %d", ts, step)
			}
		}
	})
}
