// Package graphite encodes samples as Graphite plaintext lines, in the classic dotted-path
// form and in the tagged form. The encoders are pure appenders into a caller-owned buffer
// and allocate nothing per datapoint.
package graphite

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/picket-agent/picket/agent/metric"
)

// nodeByte is 1 for each byte that may appear in a path node or tag as is, 0 otherwise.
var nodeByte = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			t[c] = 1
		}
	}
	return t
}()

// AppendNode appends s to dst as one path node: every character outside [A-Za-z0-9_-]
// becomes '_', so "eth0.100" gives "eth0_100" and "/var/lib" gives "_var_lib".
//
// The rule works on characters, not bytes: a multi-byte UTF-8 character becomes a single
// '_', so "café" gives "caf_" rather than "caf__" and the node length does not depend on
// the encoding. A byte that is not valid UTF-8 becomes '_' on its own. An empty s gives "_",
// so a path never has an empty node.
func AppendNode(dst []byte, s string) []byte {
	if isNode(s) {
		return append(dst, s...)
	}
	return appendDirtyNode(dst, s)
}

// isNode reports whether s is a node already: not empty, and nothing to replace. Most
// nodes (field names, interface names, the host) are, and then AppendNode copies them in
// one append. The loop has no early exit, which keeps isNode small enough to inline;
// nodes are short, so scanning to the end costs little.
func isNode(s string) bool {
	ok := uint8(1)
	for i := 0; i < len(s); i++ {
		ok &= nodeByte[s[i]]
	}
	return ok == 1 && s != ""
}

// appendDirtyNode is AppendNode for a string that needs changing.
func appendDirtyNode(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, '_')
	}
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && nodeByte[s[j]] == 1 {
			j++
		}
		dst = append(dst, s[i:j]...)
		if j == len(s) {
			break
		}
		dst = append(dst, '_')
		if s[j] < utf8.RuneSelf {
			i = j + 1
			continue
		}
		_, n := utf8.DecodeRuneInString(s[j:])
		i = j + n
	}
	return dst
}

// appendPrefix appends the dot-separated prefix p, sanitizing each node and keeping the
// dots, followed by a dot. An empty prefix appends nothing, so the path starts at the host.
func appendPrefix(dst []byte, p string) []byte {
	if p == "" {
		return dst
	}
	return append(appendPath(dst, p), '.')
}

// appendPath appends the dot-separated path p, sanitizing each node and keeping the dots.
// An empty node, p itself included, becomes "_".
func appendPath(dst []byte, p string) []byte {
	if isPath(p) {
		return append(dst, p...)
	}
	for {
		i := strings.IndexByte(p, '.')
		if i < 0 {
			break
		}
		dst = AppendNode(dst, p[:i])
		dst = append(dst, '.')
		p = p[i+1:]
	}
	return AppendNode(dst, p)
}

// isPath reports whether p is a valid dotted path already: nodes that need no change,
// none of them empty. Checking it in one pass and copying it in one append is cheaper
// than taking it apart node by node, which only a prefix that fails this check needs.
func isPath(p string) bool {
	dot := true // as if after a dot, so that a leading dot counts as an empty node
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '.':
			if dot {
				return false
			}
			dot = true
		case nodeByte[p[i]] == 1:
			dot = false
		default:
			return false
		}
	}
	return !dot
}

// AppendPlain appends s as one plaintext line to dst:
//
//	<prefix>.<host>.<collector>.<label nodes…>.<field> <value> <ts>\n
//
// ts is in Unix seconds. A Named label adds two nodes, its key then its value; any other
// label adds its value alone. prefix may hold several dot-separated nodes
// ("<api-key>.hosts"): each is sanitized and the dots are kept. Every other part is one
// node, sanitized with AppendNode, so a host name "web1.example.com" becomes
// "web1_example_com". An empty prefix is left out.
//
// A NaN or infinite value cannot be sent: AppendPlain then returns dst unchanged and false,
// and the caller counts the datapoint as dropped.
func AppendPlain(dst []byte, prefix, host string, s *metric.Sample, ts int64) ([]byte, bool) {
	if !s.Finite() {
		return dst, false
	}
	dst = appendPrefix(dst, prefix)
	dst = AppendNode(dst, host)
	dst = append(dst, '.')
	dst = AppendNode(dst, s.Collector)
	for i := range s.Labels {
		l := &s.Labels[i]
		dst = append(dst, '.')
		if l.Named {
			dst = AppendNode(dst, l.Key)
			dst = append(dst, '.')
		}
		dst = AppendNode(dst, l.Value)
	}
	dst = append(dst, '.')
	dst = AppendNode(dst, s.Field)
	return appendValueTime(dst, s.Value, ts), true
}

// AppendTagged appends s as one line of Graphite's tagged plaintext form to dst:
//
//	<collector>.<field>;host=<host>;<key>=<value>… <value> <ts>\n
//
// The tags follow host in label order. Every label becomes a tag, Named or not: Named only
// shapes the dotted path of AppendPlain. Tag keys and values are sanitized like path nodes,
// which keeps out every character Graphite forbids in tags (';', '~', '!', '^', '=',
// spaces) and never leaves a tag value empty. Label keys must not be "host" or "name":
// Graphite keeps one value per tag key and reserves "name" for the path.
//
// NaN and infinite values are refused as in AppendPlain.
func AppendTagged(dst []byte, host string, s *metric.Sample, ts int64) ([]byte, bool) {
	if !s.Finite() {
		return dst, false
	}
	dst = AppendNode(dst, s.Collector)
	dst = append(dst, '.')
	dst = AppendNode(dst, s.Field)
	dst = append(dst, ";host="...)
	dst = AppendNode(dst, host)
	for i := range s.Labels {
		l := &s.Labels[i]
		dst = append(dst, ';')
		dst = AppendNode(dst, l.Key)
		dst = append(dst, '=')
		dst = AppendNode(dst, l.Value)
	}
	return appendValueTime(dst, s.Value, ts), true
}

// AppendRelayed appends a sample that an application sent to picket's relay as one
// plaintext line to dst. The application named it, so the line carries neither picket's
// prefix nor the host: prefix is the relay's own (an API key, say, or nothing). ts is in
// Unix seconds.
//
// A Graphite line goes out as it came in, its path and tags written verbatim after the
// prefix (the relay admitted only what carbon accepts), in the tagged form if it came so:
//
//	<prefix>.<path>;<key>=<value>… <value> <ts>\n
//
// An Influx field becomes a path of the measurement's dot-separated nodes, then its tags
// sorted by key, then the field key, each sanitized with AppendNode. A field key "value"
// is left out, as Telegraf's Graphite serializer does, so a Graphite line that went
// through InfluxDB comes back under the same name:
//
//	<prefix>.<measurement>.<key>.<value>….<field> <value> <ts>\n
//
// With tagged, its tags become Graphite tags instead, sorted by key, a tag keyed "name"
// (which Graphite reserves for the path) as "name_":
//
//	<prefix>.<measurement>.<field>;<key>=<value>… <value> <ts>\n
//
// A sample of up to 8 tags is written without allocating. NaN and infinite values are
// refused as in AppendPlain.
func AppendRelayed(dst []byte, prefix string, tagged bool, s *metric.Sample, ts int64) ([]byte, bool) {
	if !s.Finite() {
		return dst, false
	}
	dst = appendPrefix(dst, prefix)
	if s.Origin == metric.Graphite {
		dst = append(dst, s.Collector...)
		for i := range s.Labels {
			l := &s.Labels[i]
			dst = append(dst, ';')
			dst = append(dst, l.Key...)
			dst = append(dst, '=')
			dst = append(dst, l.Value...)
		}
		return appendValueTime(dst, s.Value, ts), true
	}
	dst = appendPath(dst, s.Collector)
	var buf [8]int
	order := sortLabels(buf[:0], s.Labels)
	if !tagged {
		for _, i := range order {
			l := &s.Labels[i]
			dst = append(dst, '.')
			dst = AppendNode(dst, l.Key)
			dst = append(dst, '.')
			dst = AppendNode(dst, l.Value)
		}
	}
	if s.Field != "value" {
		dst = append(dst, '.')
		dst = AppendNode(dst, s.Field)
	}
	if tagged {
		for _, i := range order {
			l := &s.Labels[i]
			dst = append(dst, ';')
			if l.Key == "name" {
				dst = append(dst, "name_"...)
			} else {
				dst = AppendNode(dst, l.Key)
			}
			dst = append(dst, '=')
			dst = AppendNode(dst, l.Value)
		}
	}
	return appendValueTime(dst, s.Value, ts), true
}

// sortLabels appends the indexes of labels to order, sorted by key, and leaves labels,
// which samples share, as they are. Insertion sort: a line has a handful of tags at most.
func sortLabels(order []int, labels []metric.Label) []int {
	for i := range labels {
		order = append(order, i)
		for j := len(order) - 1; j > 0 && labels[order[j]].Key < labels[order[j-1]].Key; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	return order
}

// appendValueTime ends a line, plain or tagged alike: " <value> <ts>\n".
func appendValueTime(dst []byte, v float64, ts int64) []byte {
	dst = append(dst, ' ')
	dst = metric.AppendValue(dst, v)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, ts, 10)
	return append(dst, '\n')
}
