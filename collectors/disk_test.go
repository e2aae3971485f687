package collectors

import "testing"

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
			if parseErrText(err) != tc.want {
				t.Errorf("error %q, want %q", parseErrText(err), tc.want)
			}
		})
	}
}
