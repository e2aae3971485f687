package agent

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// byteSize is a size in bytes written as a number with an optional binary unit: 4096,
// 64KiB, 512MiB, 2GiB.
type byteSize int64

var byteUnits = []struct {
	suffix string
	n      int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}, {"", 1}}

// UnmarshalText parses a size; kong uses it for the flag, the environment and the file.
func (b *byteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	for _, u := range byteUnits {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a size (a whole number with an optional KiB, MiB, GiB or TiB)", s)
		}
		if n <= 0 || n > math.MaxInt64/u.n {
			return fmt.Errorf("size %q must be positive and under 8 EiB", s)
		}
		*b = byteSize(n * u.n)
		return nil
	}
	return fmt.Errorf("%q is not a size", s)
}
