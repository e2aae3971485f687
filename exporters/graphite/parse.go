package graphite

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/picket-agent/picket/agent/metric"
)

// Parser reads lines of Graphite's plaintext protocol into samples, as carbon and
// carbon-c-relay read them: the plain form
//
//	<path> <value> [<timestamp>]
//
// and the tagged form, whose path is <name>;<key>=<value>;… .
//
// The relay parses hundreds of thousands of lines a second from untrusted local clients,
// mostly of the same few thousand series again and again. So a Parser remembers what it
// made of the paths it has seen, and a line of a known series allocates nothing. That memory
// is bounded whatever a client sends: past maxSeries paths or maxSeriesBytes bytes, the
// Parser forgets them all and starts again.
//
// The zero Parser is ready to use. A Parser is not safe for concurrent use: each connection
// has its own.
type Parser struct {
	series      map[string]series
	seriesBytes int
	name        []byte // scratch: a name being normalised
}

// series is what a path is made into: the sample's Collector and Labels. Both are shared by
// every sample of the series, so nobody may modify them.
type series struct {
	name   string
	labels []metric.Label
}

const (
	// maxSeries bounds the paths a Parser remembers: more than a host's applications send
	// in one interval, few enough to be a megabyte or two.
	maxSeries = 1 << 14
	// maxSeriesBytes bounds the bytes those paths hold (an estimate: the strings, and
	// seriesOverhead for each entry and label), so that long paths cannot make a Parser big.
	maxSeriesBytes = 4 << 20
	seriesOverhead = 64
)

// maxUnixSeconds is the last second whose Unix nanoseconds an int64 holds, in 2262: a
// Sample's Time cannot be later.
const maxUnixSeconds = math.MaxInt64 / 1e9

// Parse parses one line (without its "\n"; a trailing "\r" is ignored) into *s. Fields are
// separated by runs of spaces and tabs. now is when the line arrived, in Unix nanoseconds:
// the sample's Time when the line has no timestamp or -1 for one.
//
// The sample is a gauge of Origin metric.Graphite, its Collector the path normalised as
// carbon-c-relay does (empty nodes dropped, every character of a node outside
// [A-Za-z0-9_:#-] made '_'), and for a tagged line its Labels the tags, sorted by key and
// kept verbatim. Collector and Labels may be shared with other samples of the same series:
// they must not be modified.
//
// An error says what is wrong with the line, quoting the part at fault cut to maxQuote
// bytes; *s is then left as it was.
func (p *Parser) Parse(line []byte, now int64, s *metric.Sample) error {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	var f [3][]byte
	n := 0
	for i := 0; ; {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i == len(line) {
			break
		}
		j := i
		for j < len(line) && line[j] != ' ' && line[j] != '\t' {
			j++
		}
		if n < len(f) {
			f[n] = line[i:j]
		}
		n++
		i = j
	}
	if n != 2 && n != 3 {
		return fmt.Errorf("line %s: %d fields, want <path> <value> [<timestamp>]", quote(line), n)
	}
	v, ok := parseDecimal(f[1])
	if !ok {
		return fmt.Errorf("value %s is not a finite number", quote(f[1]))
	}
	t := now
	if n == 3 {
		var err error
		if t, err = parseTimestamp(f[2], now); err != nil {
			return err
		}
	}
	sr, err := p.lookup(f[0])
	if err != nil {
		return err
	}
	*s = metric.Sample{Collector: sr.name, Labels: sr.labels, Value: v, Kind: metric.Gauge, Origin: metric.Graphite, Time: t}
	return nil
}

// parseTimestamp reads Unix seconds as carbon does, int(float(b)): a fraction is truncated.
// -1 means now, as some clients send it.
func parseTimestamp(b []byte, now int64) (int64, error) {
	v, ok := parseDecimal(b)
	if !ok {
		return 0, fmt.Errorf("timestamp %s is not a number of Unix seconds", quote(b))
	}
	sec := math.Trunc(v)
	switch {
	case sec == -1:
		return now, nil
	case sec <= 0:
		return 0, fmt.Errorf("timestamp %s is not after 1970 (nor -1, which means now)", quote(b))
	case sec > maxUnixSeconds:
		return 0, fmt.Errorf("timestamp %s is after 2262, the last year Unix nanoseconds hold", quote(b))
	}
	return int64(sec) * 1e9, nil
}

// lookup returns the series of a path, from the cache when the path was seen before.
// Indexing the map with string(path) does not allocate.
func (p *Parser) lookup(path []byte) (series, error) {
	if sr, ok := p.series[string(path)]; ok {
		return sr, nil
	}
	key := string(path)
	sr, err := p.parsePath(key)
	if err != nil {
		return series{}, err
	}
	size := len(key) + seriesOverhead*(1+len(sr.labels))
	if len(sr.name) != len(key) {
		size += len(sr.name) // normalised into a string of its own
	}
	if p.series == nil {
		p.series = make(map[string]series)
	}
	if len(p.series) >= maxSeries || p.seriesBytes+size > maxSeriesBytes {
		clear(p.series)
		p.seriesBytes = 0
	}
	p.series[key] = sr
	p.seriesBytes += size
	return sr, nil
}

// parsePath checks a path and makes it into a series. The name and the tags are parts of
// path where they need no change, so that they share its memory.
func (p *Parser) parsePath(path string) (series, error) {
	for i, r := range path {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(path[i:]); n == 1 {
				return series{}, fmt.Errorf("path %s is not valid UTF-8 (byte %#02x at offset %d)", quote(path), path[i], i)
			}
		}
		if unicode.IsControl(r) {
			return series{}, fmt.Errorf("path %s has control character %U at offset %d", quote(path), r, i)
		}
	}
	name, tags, tagged := strings.Cut(path, ";")
	var sr series
	if isNormalPath(name) {
		sr.name = name
	} else {
		p.name = appendNormalPath(p.name[:0], name)
		if len(p.name) == 0 {
			return series{}, fmt.Errorf("path %s has no node", quote(path))
		}
		sr.name = string(p.name)
	}
	if !tagged {
		return sr, nil
	}
	sr.labels = make([]metric.Label, 0, strings.Count(tags, ";")+1)
	for {
		tag, rest, more := strings.Cut(tags, ";")
		l, err := parseTag(tag, path)
		if err != nil {
			return series{}, err
		}
		sr.labels = append(sr.labels, l)
		if !more {
			break
		}
		tags = rest
	}
	// Carbon stores a series' tags sorted by key; one key twice is not one series.
	slices.SortFunc(sr.labels, func(a, b metric.Label) int { return strings.Compare(a.Key, b.Key) })
	for i := 1; i < len(sr.labels); i++ {
		if sr.labels[i].Key == sr.labels[i-1].Key {
			return series{}, fmt.Errorf("path %s has tag key %s twice", quote(path), quote(sr.labels[i].Key))
		}
	}
	return sr, nil
}

// parseTag checks one key=value tag of path as Graphite does: a key of at least one
// character, none of ";!^=", and not "name", which Graphite keeps for the series name; a
// value of at least one character, no ';', not starting with '~'.
func parseTag(tag, path string) (metric.Label, error) {
	k, v, ok := strings.Cut(tag, "=")
	switch {
	case tag == "":
		return metric.Label{}, fmt.Errorf("path %s has an empty tag", quote(path))
	case !ok:
		return metric.Label{}, fmt.Errorf("tag %s is not key=value", quote(tag))
	case k == "":
		return metric.Label{}, fmt.Errorf("tag %s has an empty key", quote(tag))
	case strings.ContainsAny(k, "!^"):
		return metric.Label{}, fmt.Errorf("tag key %s has one of ';!^=', which Graphite forbids", quote(k))
	case k == "name":
		return metric.Label{}, fmt.Errorf(`tag %s: the key "name" is Graphite's, for the series name`, quote(tag))
	case v == "":
		return metric.Label{}, fmt.Errorf("tag %s has an empty value", quote(tag))
	case v[0] == '~':
		return metric.Label{}, fmt.Errorf("tag value %s starts with '~', which Graphite forbids", quote(v))
	}
	return metric.Label{Key: k, Value: v}, nil
}

// normalByte is true for each byte that a node of a relayed path keeps: carbon-c-relay's set,
// [A-Za-z0-9_:#-], a little wider than AppendNode's.
var normalByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_:#-", byte(c)) >= 0
	}
	return t
}()

// isNormalPath reports whether name needs no normalising: nodes of normalByte only, none of
// them empty. Most paths are, and then the name is the path itself.
func isNormalPath(name string) bool {
	dot := true // as if after a dot, so that a leading dot counts as an empty node
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '.':
			if dot {
				return false
			}
			dot = true
		case normalByte[c]:
			dot = false
		default:
			return false
		}
	}
	return !dot
}

// appendNormalPath appends name normalised as carbon-c-relay does: empty nodes dropped ("a..b"
// is "a.b", leading and trailing dots go), and within a node each character outside
// normalByte made '_', one for each character rather than byte ("café" is "caf_"). A name of
// no node appends nothing.
func appendNormalPath(dst []byte, name string) []byte {
	start := len(dst)
	inNode := false
	for _, r := range name {
		if r == '.' {
			inNode = false
			continue
		}
		if !inNode && len(dst) > start {
			dst = append(dst, '.')
		}
		inNode = true
		if r < utf8.RuneSelf && normalByte[r] {
			dst = append(dst, byte(r))
		} else {
			dst = append(dst, '_')
		}
	}
	return dst
}

// pow10 holds the powers of ten that a float64 holds exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseDecimal reads b as a finite decimal number: an optional sign, digits with an optional
// point (at least one digit, before or after it), an optional exponent. That is what
// carbon's float(), carbon-c-relay's strtod and go-carbon's strconv.ParseFloat all read,
// less their own extras (underscores, hexadecimal, "inf", "nan"). Numbers beyond
// float64's range are refused as infinite.
//
// It gives the float64 that strconv.ParseFloat gives, bit for bit, without the allocation
// of converting b to a string: most values (counts, gauges with a few decimals) have a
// mantissa below 2^53 and a decimal exponent within ±22, and both then are exact float64s,
// so one multiplication or division rounds exactly as ParseFloat does (Clinger's fast
// path, ParseFloat's own first try). Anything else goes to ParseFloat.
func parseDecimal(b []byte) (float64, bool) {
	i := 0
	neg := false
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	var mant uint64
	digits, exp := 0, 0
	exact := true // mant holds every digit
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		digits++
		if mant < 1e18 {
			mant = mant*10 + uint64(b[i]-'0')
		} else {
			exact = false
		}
	}
	if i < len(b) && b[i] == '.' {
		for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			digits++
			if mant < 1e18 {
				mant = mant*10 + uint64(b[i]-'0')
				exp--
			} else {
				exact = false
			}
		}
	}
	if digits == 0 {
		return 0, false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		e, edigits := 0, 0
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			edigits++
			if e < 1e6 { // far past float64's range either way: ParseFloat decides
				e = e*10 + int(b[i]-'0')
			}
		}
		if edigits == 0 {
			return 0, false
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if i != len(b) {
		return 0, false
	}
	if exact && mant < 1<<53 && exp >= -22 && exp <= 22 {
		f := float64(mant)
		if exp < 0 {
			f /= pow10[-exp]
		} else {
			f *= pow10[exp]
		}
		if neg {
			f = -f
		}
		return f, true
	}
	f, err := strconv.ParseFloat(string(b), 64)
	return f, err == nil
}

// maxQuote is how much of a line's offending part an error quotes: enough to recognise it,
// short enough to keep a log line short whatever a client sends.
const maxQuote = 64

// quote returns s quoted with %q, cut to maxQuote bytes at a character boundary and marked
// "..." when longer.
func quote[T ~string | ~[]byte](s T) string {
	if len(s) <= maxQuote {
		return strconv.Quote(string(s))
	}
	n := maxQuote
	for n > maxQuote-utf8.UTFMax && !utf8.RuneStart(s[n]) {
		n--
	}
	return strconv.Quote(string(s[:n])) + "..."
}
