package collectors

import (
	"reflect"
	"strings"
	"testing"
)

func TestDeviceFilter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, include, exclude string
		kept, dropped          []string
	}{
		{
			name:    "net defaults",
			exclude: DefaultNetExclude,
			kept:    []string{"lo", "eth0", "eth0.100", "ens5", "docker0", "wlan0", "bond0", "br-1a2b3c"},
			dropped: []string{"veth3f2a1b0", "cali8d2e1f0a3b4", "flannel.1", "cni0", "vxlan.calico", "tap0", "kube-ipvs0", "lxcb12ef0", "cilium_host", "gke1234", "vnet0"},
		},
		{
			name:    "disk defaults",
			exclude: DefaultDiskExclude,
			kept:    []string{"sda", "sdaa", "vda", "xvda", "hda", "nvme0n1", "nvme10n2", "mmcblk0", "dm-0", "md0", "loop", "zram"},
			dropped: []string{"loop0", "ram0", "zram0", "fd0", "sr0", "nbd12", "sda1", "sdaa12", "vda1", "xvda1", "hda3", "nvme0n1p1", "mmcblk0p2"},
		},
		{
			name:    "empty include keeps all",
			kept:    []string{"", "anything", "loop0"},
			dropped: nil,
		},
		{
			name:    "include only, unanchored",
			include: `eth`,
			kept:    []string{"eth0", "veth0"},
			dropped: []string{"lo", "ens5"},
		},
		{
			name:    "exclude wins over include",
			include: `^(eth|veth)`,
			exclude: `^veth`,
			kept:    []string{"eth0"},
			dropped: []string{"veth0", "lo"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := newDeviceFilter("collector.net.device", tc.include, tc.exclude)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range tc.kept {
				if !f.keep(n) {
					t.Errorf("%q left out", n)
				}
			}
			for _, n := range tc.dropped {
				if f.keep(n) {
					t.Errorf("%q kept", n)
				}
			}
		})
	}
}

func TestDeviceFilterBadPattern(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		new  func(Options) (Collector, error)
		set  func(*Options)
		want string
	}{
		{"net include", newNet, func(o *Options) { o.NetInclude = `(eth` }, "collector.net.device-include: error parsing regexp: missing closing ): `(eth`"},
		{"net exclude", newNet, func(o *Options) { o.NetExclude = `[veth` }, "collector.net.device-exclude: error parsing regexp: missing closing ]: `[veth`"},
		{"disk include", newDisk, func(o *Options) { o.DiskInclude = `+sd` }, "collector.disk.device-include: error parsing regexp: missing argument to repetition operator: `+`"},
		{"disk exclude", newDisk, func(o *Options) { o.DiskExclude = `\p{loop}` }, "collector.disk.device-exclude: error parsing regexp: invalid character class range: `\\p{loop}`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions("testdata/disk/real")
			tc.set(&o)
			_, err := tc.new(o)
			checkErr(t, err, tc.want)
		})
	}
}

func TestParseDiskstats(t *testing.T) {
	t.Parallel()
	const (
		v44  = "   8       0 sda 198322 3301 9912344 120334 402211 330122 22013344 1990233 0 440123 2110567\n"
		v419 = "   8       0 sda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n"
		v55  = " 254       0 vda 17309 4862 981362 21799 1343 9318 615304 1350 0 4852 23377 4356 48 123296 226 4 0\n"
	)
	sda44 := diskstat{name: "sda", counters: 11, values: [17]uint64{198322, 3301, 9912344, 120334, 402211, 330122, 22013344, 1990233, 0, 440123, 2110567}}
	sda419 := diskstat{name: "sda", counters: 15, values: [17]uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}}
	vda55 := diskstat{name: "vda", counters: 17, values: [17]uint64{17309, 4862, 981362, 21799, 1343, 9318, 615304, 1350, 0, 4852, 23377, 4356, 48, 123296, 226, 4, 0}}
	for _, tc := range []struct {
		name, in string
		want     []diskstat
		err      string
	}{
		{name: "empty", err: "empty file"},
		{name: "linux 4.4", in: v44, want: []diskstat{sda44}},
		{name: "linux 4.19", in: v419, want: []diskstat{sda419}},
		{name: "linux 5.5", in: v55 + v44, want: []diskstat{vda55, sda44}},
		{
			name: "newer kernel, more counters",
			in:   " 254 0 vda 17309 4862 981362 21799 1343 9318 615304 1350 0 4852 23377 4356 48 123296 226 4 0 77 88\n",
			want: []diskstat{vda55},
		},
		{name: "truncated", in: v55 + " 254 16 vdb 2203 12 120334 1203 331 22 8812", want: []diskstat{vda55}, err: "line 2: no newline at end: file truncated"},
		{name: "short line", in: v55 + " 254 16 vdb 2203 12 120334\n", want: []diskstat{vda55}, err: "line 2: vdb: 3 counters, want 11, 15 or 17"},
		{name: "between versions", in: " 254 16 vdb 1 2 3 4 5 6 7 8 9 10 11 12 13\n", err: "line 1: vdb: 13 counters, want 11, 15 or 17"},
		{name: "no name", in: "254 16\n", err: "line 1: 2 fields, want major, minor, name and counters"},
		{name: "garbage", in: "\x00\xff\xfe\n", err: "line 1: 1 fields, want major, minor, name and counters"},
		{name: "not a number", in: " 254 16 vdb 2203 12 eleven 1203 331 22 8812 402 0 1220 1605\n", err: `line 1: vdb: field 3 "eleven": invalid syntax`},
		{name: "negative", in: " 254 16 vdb 2203 12 1 1203 331 22 8812 402 -1 1220 1605\n", err: `line 1: vdb: field 9 "-1": invalid syntax`},
		{name: "too large", in: " 254 16 vdb 18446744073709551616 12 1 1203 331 22 8812 402 0 1220 1605\n", err: `line 1: vdb: field 1 "18446744073709551616": value out of range`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDiskstats(strings.NewReader(tc.in))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			checkErr(t, err, tc.err)
		})
	}
}

func FuzzParseDiskstats(f *testing.F) {
	f.Add(" 254       0 vda 17309 4862 981362 21799 1343 9318 615304 1350 0 4852 23377 4356 48 123296 226 4 0\n")
	f.Add("   8       0 sda 198322 3301 9912344 120334 402211 330122 22013344 1990233 0 440123 2110567\n")
	f.Add(" 254 16 vdb 2203 12 120334")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		stats, _ := parseDiskstats(strings.NewReader(in))
		for _, d := range stats {
			if d.name == "" {
				t.Errorf("empty device name from %q", in)
			}
			if d.counters != diskBaseCounters && d.counters != diskDiscardCounters && d.counters != diskFlushCounters {
				t.Errorf("%s: %d counters from %q", d.name, d.counters, in)
			}
			for _, v := range d.values[d.counters:] {
				if v != 0 {
					t.Errorf("%s: value past the line's counters from %q", d.name, in)
				}
			}
		}
	})
}
