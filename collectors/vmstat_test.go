package collectors

import (
	"slices"
	"strings"
	"testing"
)

func TestParseVmstat(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []vmstatField
		wantErr string
	}{
		{
			name: "realistic",
			in:   "nr_free_pages 868540\npgmajfault 151\noom_kill 0\n",
			want: []vmstatField{{"nr_free_pages", 868540}, {"pgmajfault", 151}, {"oom_kill", 0}},
		},
		{name: "empty", in: "", wantErr: "empty file"},
		{
			name:    "truncated",
			in:      "nr_free_pages 868540\npgmaj",
			want:    []vmstatField{{"nr_free_pages", 868540}},
			wantErr: "line 2: no newline at end: file truncated",
		},
		{name: "garbage", in: "\x00\xff binary junk\n", wantErr: "line 1: \x00\xff: strconv.ParseUint"},
		{name: "no value", in: "pgfault\n", wantErr: "line 1: want \"name value\""},
		{name: "two spaces", in: "pgfault  1\n", wantErr: "line 1: pgfault: strconv.ParseUint"},
		{name: "negative", in: "nr_free_pages -1\n", wantErr: "line 1: nr_free_pages: strconv.ParseUint"},
		{name: "overflow", in: "pgfault 18446744073709551616\n", wantErr: "value out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseVmstat(strings.NewReader(tc.in))
			checkErr(t, err, tc.wantErr)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestVmstatIsGauge(t *testing.T) {
	for name, want := range map[string]bool{
		"nr_free_pages":           true,
		"nr_kernel_stack":         true,
		"nr_dirty_threshold":      true,
		"nr_unstable":             true,
		"workingset_nodes":        true,
		"nr_dirtied":              false,
		"nr_written":              false,
		"nr_vmscan_write":         false,
		"nr_foll_pin_acquired":    false,
		"nr_tlb_remote_flush":     false,
		"workingset_refault_file": false,
		"numa_hit":                false,
		"pgmajfault":              false,
		"pswpin":                  false,
		"oom_kill":                false,
		"thp_fault_alloc":         false,
	} {
		if got := vmstatIsGauge(name); got != want {
			t.Errorf("vmstatIsGauge(%q) = %v, want %v", name, got, want)
		}
	}
}

func FuzzParseVmstat(f *testing.F) {
	f.Add("nr_free_pages 868540\npgmajfault 151\n")
	f.Add("pgfault\n")
	f.Add("nr_free_pages 8685")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		fields, err := parseVmstat(strings.NewReader(in))
		if err == nil && len(fields) == 0 {
			t.Errorf("no fields and no error")
		}
		for _, fl := range fields {
			if fl.Name == "" {
				t.Errorf("empty name in %q", in)
			}
		}
	})
}
