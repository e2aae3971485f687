// Package table prints a batch as an aligned, sorted table for people to read, as
// `picket once --format table` does. It is not a wire format: names are not sanitized.
package table

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/picket-agent/picket/agent/metric"
)

// Write prints b to w as three aligned columns, NAME, KIND and VALUE, one row per
// sample, sorted by name. NAME is the sample's Graphite path after the host, dotted and
// unsanitized: collector, each label (a Named one as key then value), field. VALUE is
// written by metric.AppendValue, as the wire formats write it, so the table shows what
// would be sent; NaN and ±Inf are printed as such, not dropped.
func Write(w io.Writer, b *metric.Batch) error {
	type row struct{ name, kind, value string }
	rows := make([]row, len(b.Samples))
	for i := range b.Samples {
		s := &b.Samples[i]
		rows[i] = row{name(s), s.Kind.String(), string(metric.AppendValue(nil, s.Value))}
	}
	slices.SortStableFunc(rows, func(a, b row) int { return strings.Compare(a.name, b.name) })

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tVALUE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", printable(r.name), r.kind, r.value)
	}
	return tw.Flush()
}

// name joins the sample's path nodes with dots.
func name(s *metric.Sample) string {
	var b strings.Builder
	b.WriteString(s.Collector)
	for _, l := range s.Labels {
		b.WriteByte('.')
		if l.Named {
			b.WriteString(l.Key)
			b.WriteByte('.')
		}
		b.WriteString(l.Value)
	}
	b.WriteByte('.')
	b.WriteString(s.Field)
	return b.String()
}

// printable returns name quoted, Go style, if it holds a character that cannot be printed
// (a tab or newline would break the columns), and as it is otherwise.
func printable(name string) string {
	if strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(name)
	}
	return name
}
