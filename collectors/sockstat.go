package collectors

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/prometheus/procfs"
)

var sockstatSeries = []Series{
	{Path: "sockstat.sockets.used", Kind: metric.Gauge, Help: "sockets allocated, all families"},
	{Path: "sockstat.<proto>.inuse", Kind: metric.Gauge, Help: "sockets in use (proto: tcp, udp, udplite, raw, frag, and tcp6… from sockstat6)"},
	{Path: "sockstat.<proto>.orphan", Kind: metric.Gauge, Help: "TCP sockets no longer attached to a file descriptor"},
	{Path: "sockstat.<proto>.tw", Kind: metric.Gauge, Help: "TCP sockets in TIME-WAIT"},
	{Path: "sockstat.<proto>.alloc", Kind: metric.Gauge, Help: "TCP sockets allocated, including those not yet or no longer in use"},
	{Path: "sockstat.<proto>.mem_bytes", Kind: metric.Gauge, Unit: "bytes", Help: "memory the protocol's sockets hold (TCP, UDP), counted by the kernel in pages"},
	{Path: "sockstat.<proto>.memory_bytes", Kind: metric.Gauge, Unit: "bytes", Help: "memory held by IP fragments awaiting reassembly"},
}

type sockstatCollector struct {
	fs       procfs.FS
	pageSize float64
}

func newSockstat(o Options) (Collector, error) {
	fs, err := procfs.NewFS(o.ProcFS)
	if err != nil {
		return nil, err
	}
	return &sockstatCollector{fs: fs, pageSize: float64(os.Getpagesize())}, nil
}

// Collect reads /proc/net/sockstat and, when IPv6 is on, /proc/net/sockstat6.
func (c *sockstatCollector) Collect(_ context.Context, s *metric.Sink) error {
	v4, err4 := c.fs.NetSockstat()
	if err4 == nil {
		if v4.Used != nil {
			s.Gauge("used", float64(*v4.Used), metric.Label{Key: "proto", Value: "sockets"})
		}
		c.add(s, v4.Protocols)
	}
	v6, err6 := c.fs.NetSockstat6()
	switch {
	case err6 == nil:
		c.add(s, v6.Protocols)
	case errors.Is(err6, fs.ErrNotExist):
		// A kernel booted with ipv6.disable=1 has no sockstat6.
		err6 = nil
	}
	return errors.Join(err4, err6)
}

func (c *sockstatCollector) add(s *metric.Sink, protos []procfs.NetSockstatProtocol) {
	for _, p := range protos {
		l := []metric.Label{{Key: "proto", Value: strings.ToLower(p.Protocol)}}
		s.Gauge("inuse", float64(p.InUse), l...)
		if p.Orphan != nil {
			s.Gauge("orphan", float64(*p.Orphan), l...)
		}
		if p.TW != nil {
			s.Gauge("tw", float64(*p.TW), l...)
		}
		if p.Alloc != nil {
			s.Gauge("alloc", float64(*p.Alloc), l...)
		}
		if p.Mem != nil {
			s.Gauge("mem_bytes", float64(*p.Mem)*c.pageSize, l...)
		}
		// FRAG's memory is counted in bytes already.
		if p.Memory != nil {
			s.Gauge("memory_bytes", float64(*p.Memory), l...)
		}
	}
}
