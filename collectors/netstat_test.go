package collectors

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParseNetstat(t *testing.T) {
	t.Parallel()
	tcp := netstatTable{proto: "Tcp", names: []string{"RtoAlgorithm", "MaxConn", "ActiveOpens"}, values: []float64{1, -1, 18446744073709551615}}
	const tcpLines = "Tcp: RtoAlgorithm MaxConn ActiveOpens\nTcp: 1 -1 18446744073709551615\n"
	for _, tc := range []struct {
		name, in string
		want     []netstatTable
		err      string
	}{
		{name: "empty", err: "empty file"},
		{name: "real", in: tcpLines + "Udp: InDatagrams\nUdp: 7\n", want: []netstatTable{tcp, {proto: "Udp", names: []string{"InDatagrams"}, values: []float64{7}}}},
		{name: "table without fields", in: "Tcp:\nTcp:\n", want: []netstatTable{{proto: "Tcp", names: []string{}, values: []float64{}}}},
		{name: "truncated after names", in: tcpLines + "Udp: InDatagrams NoPorts\n", want: []netstatTable{tcp}, err: "line 4: Udp values missing"},
		{name: "truncated values", in: tcpLines + "Udp: InDatagrams NoPorts\nUdp: 7 1", want: []netstatTable{tcp}, err: "line 4: no newline at end: file truncated"},
		{name: "short values", in: tcpLines + "Udp: InDatagrams NoPorts\nUdp: 7\n", want: []netstatTable{tcp}, err: "line 4: Udp has 2 names but 1 values"},
		{name: "values of another table", in: "Tcp: A\nUdp: 1\n", err: "line 2: Tcp values missing"},
		{name: "garbage", in: "\x00\x01\xff\n", err: "line 1: \"\\x00\\x01\\xff\" does not start a table"},
		{name: "blank line", in: tcpLines + "\n", want: []netstatTable{tcp}, err: "line 3: empty"},
		{name: "bare colon", in: ": A\n: 1\n", err: "line 1: \":\" does not start a table"},
		{name: "not a number", in: "Tcp: A B\nTcp: 1 0x1f\n", err: `line 2: Tcp B "0x1f": invalid syntax`},
		{name: "float", in: "Tcp: A\nTcp: 1.5\n", err: `line 2: Tcp A "1.5": invalid syntax`},
		{name: "too negative", in: "Tcp: A\nTcp: -9223372036854775809\n", err: `line 2: Tcp A "-9223372036854775809": value out of range`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseNetstat(strings.NewReader(tc.in))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			checkErr(t, err, tc.err)
		})
	}
}

func FuzzParseNetstat(f *testing.F) {
	for _, s := range []string{"", "Tcp: A B\nTcp: 1 -1\n", "Tcp: A\n", "Tcp: A\nUdp: 1\n", ":\n:\n", "IpExt: InOctets\nIpExt: 18446744073709551616\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		tables, _ := parseNetstat(strings.NewReader(in))
		for _, tb := range tables {
			if tb.proto == "" || len(tb.names) != len(tb.values) {
				t.Errorf("bad table %+v from %q", tb, in)
			}
		}
	})
}

func TestSnakeCase(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		// /proc/meminfo
		"MemTotal":        "mem_total",
		"MemAvailable":    "mem_available",
		"Active(anon)":    "active_anon",
		"Inactive(file)":  "inactive_file",
		"HugePages_Total": "huge_pages_total",
		"Hugepagesize":    "hugepagesize",
		"DirectMap4k":     "direct_map_4k",
		"DirectMap2M":     "direct_map_2m",
		"DirectMap1G":     "direct_map_1g",
		"KReclaimable":    "k_reclaimable",
		"SUnreclaim":      "s_unreclaim",
		"NFS_Unstable":    "nfs_unstable",
		"Committed_AS":    "committed_as",
		"ShmemPmdMapped":  "shmem_pmd_mapped",
		"SecPageTables":   "sec_page_tables",
		"Percpu":          "percpu",
		// /proc/net/snmp and /proc/net/netstat
		"Ip":                    "ip",
		"IpExt":                 "ip_ext",
		"TcpExt":                "tcp_ext",
		"UdpLite":               "udp_lite",
		"ActiveOpens":           "active_opens",
		"ListenDrops":           "listen_drops",
		"DefaultTTL":            "default_ttl",
		"InCsumErrors":          "in_csum_errors",
		"ReasmOKs":              "reasm_oks",
		"DelayedACKs":           "delayed_acks",
		"TCPSpuriousRTOs":       "tcp_spurious_rtos",
		"TW":                    "tw",
		"TWRecycled":            "tw_recycled",
		"PAWSActive":            "paws_active",
		"IPReversePathFilter":   "ip_reverse_path_filter",
		"TCPHPHits":             "tcp_hp_hits",
		"TCPHPAcks":             "tcp_hp_acks",
		"TCPSACKReneging":       "tcp_sack_reneging",
		"TCPDSACKOldSent":       "tcp_dsack_old_sent",
		"TCPACKSkippedFinWait2": "tcp_ack_skipped_fin_wait_2",
		"TCPMD5NotFound":        "tcp_md5_not_found",
		"TCPReqQFullDoCookies":  "tcp_req_q_full_do_cookies",
		"TCPTimeouts":           "tcp_timeouts",
		"TcpTimeoutRehash":      "tcp_timeout_rehash",
		"InECT0Pkts":            "in_ect0_pkts",
		"InNoECTPkts":           "in_no_ect_pkts",
		"InCEPkts":              "in_ce_pkts",
		"TCPDeliveredCE":        "tcp_delivered_ce",
		"TCPAOBad":              "tcp_ao_bad",
		"PFMemallocDrop":        "pf_memalloc_drop",
		"TSEcrRejected":         "ts_ecr_rejected",
		"MD5SigFallback":        "md5_sig_fallback",
		"TCP":                   "tcp",
		// Not the kernel's
		"":         "",
		"()":       "",
		"__a__b__": "a_b",
		"é":        "",
		"a\x00b":   "a_b",
	} {
		if got := snakeCase(in); got != want {
			t.Errorf("snakeCase(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestFieldNamesBounded checks that the cache of converted names stays bounded when a
// file's names keep changing, and still converts.
func TestFieldNamesBounded(t *testing.T) {
	t.Parallel()
	n := fieldNames{}
	for i := range 3 * maxFieldNames {
		if got := n.get(fmt.Sprintf("K%d", i)); got != fmt.Sprintf("k%d", i) {
			t.Fatalf("get(K%d) = %q", i, got)
		}
		if len(n) > maxFieldNames {
			t.Fatalf("%d names cached, bound %d", len(n), maxFieldNames)
		}
	}
}
