package metric

import (
	"math"
	"strconv"
	"testing"
)

func TestAppendValue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{0, "0"},
		{math.Copysign(0, -1), "0"},
		{-17, "-17"},
		{0.25, "0.25"},
		{1.5e-7, "1.5e-07"},
		{16777216000, "16777216000"},
		{1<<53 - 1, "9007199254740991"},
		{-(1<<53 - 1), "-9007199254740991"},
		{1 << 53, "9.007199254740992e+15"},
		{1e21, "1e+21"},
		{5e-324, "5e-324"},
		{math.NaN(), "NaN"},
		{math.Inf(1), "+Inf"},
		{math.Inf(-1), "-Inf"},
	} {
		got := string(AppendValue([]byte("x="), tc.v))
		if got != "x="+tc.want {
			t.Errorf("AppendValue(%v) = %q, want %q", tc.v, got, "x="+tc.want)
		}
		if back, err := strconv.ParseFloat(got[2:], 64); err != nil || (back != tc.v && !math.IsNaN(tc.v)) {
			t.Errorf("%q reads back as %v, %v", got, back, err)
		}
	}
}
