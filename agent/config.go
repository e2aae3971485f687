package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/alecthomas/kong"
	"go.yaml.in/yaml/v3"
)

// ConfigError is a problem with the config file: it names the file, the line, the key and
// what is wrong, and makes picket exit with status 2 before anything starts.
type ConfigError struct {
	File string
	Line int
	Key  string
	Err  error
}

// Error reads "config FILE:LINE: key "KEY": what is wrong", leaving out what is unknown.
func (e *ConfigError) Error() string {
	switch {
	case e.Line == 0:
		return fmt.Sprintf("config %s: %v", e.File, e.Err)
	case e.Key == "":
		return fmt.Sprintf("config %s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("config %s:%d: key %q: %v", e.File, e.Line, e.Key, e.Err)
}

// Unwrap returns what is wrong, so errors.Is sees through to, say, fs.ErrNotExist.
func (e *ConfigError) Unwrap() error { return e.Err }

// entry is one setting of the file, flattened to its flag name.
type entry struct {
	value string
	// list holds the items of a YAML sequence, nil for a single value. They are joined
	// only in Resolve, with the separator of the flag they go to.
	list []string
	line int
}

// fileConfig resolves flags from a YAML file. Keys are flag names; nested maps are joined
// with dots, so `path: {procfs: /host/proc}` and `path.procfs: /host/proc` are the same.
//
// Kong applies environment variables while resetting flags to their defaults, and then
// lets resolvers override every flag not given on the command line. Resolve therefore
// steps aside for any flag whose environment variable is set, which gives the documented
// precedence: flag > environment > file > default.
type fileConfig struct {
	path    string
	entries map[string]entry
	// used records the keys that supplied a value, for naming the source of a bad value.
	used map[string]bool
}

// loadConfig reads path. A missing file is not an error unless required (the user named it).
func loadConfig(path string, required bool) (*fileConfig, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !required {
		return nil, nil
	}
	if err != nil {
		return nil, &ConfigError{File: path, Err: err}
	}
	return parseConfig(path, data)
}

func parseConfig(path string, data []byte) (*fileConfig, error) {
	c := &fileConfig{path: path, entries: map[string]entry{}, used: map[string]bool{}}
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &ConfigError{File: path, Err: err}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &ConfigError{File: path, Err: errors.New("not a YAML document")}
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return c, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, &ConfigError{File: path, Line: root.Line, Err: errors.New("the top level must be a map of option names to values")}
	}
	if err := c.flatten("", root); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *fileConfig) flatten(prefix string, m *yaml.Node) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := prefix + k.Value
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			return &ConfigError{File: c.path, Line: k.Line, Key: key, Err: errors.New("keys must be plain names")}
		}
		switch v.Kind {
		case yaml.MappingNode:
			if err := c.flatten(key+".", v); err != nil {
				return err
			}
			continue
		case yaml.AliasNode:
			return &ConfigError{File: c.path, Line: v.Line, Key: key, Err: errors.New("aliases are not supported")}
		}
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			return &ConfigError{File: c.path, Line: v.Line, Key: key, Err: errors.New("no value given")}
		}
		// Values go to kong as the text a user would type after the flag: it parses them
		// with the flag's own type, exactly as on the command line.
		e := entry{line: k.Line}
		switch v.Kind {
		case yaml.ScalarNode:
			e.value = v.Value
		case yaml.SequenceNode:
			e.list = make([]string, len(v.Content))
			for j, it := range v.Content {
				if it.Kind != yaml.ScalarNode {
					return &ConfigError{File: c.path, Line: it.Line, Key: key, Err: errors.New("list items must be plain values")}
				}
				e.list[j] = it.Value
			}
		}
		if prev, dup := c.entries[key]; dup {
			return &ConfigError{File: c.path, Line: k.Line, Key: key, Err: fmt.Errorf("set twice (first on line %d)", prev.line)}
		}
		c.entries[key] = e
	}
	return nil
}

// Validate rejects keys that are no option of picket, so a typo never goes unnoticed.
func (c *fileConfig) Validate(app *kong.Application) error {
	known := map[string]bool{}
	_ = kong.Visit(app, func(n kong.Visitable, next kong.Next) error {
		if f, ok := n.(*kong.Flag); ok && f.Name != "help" && f.Name != "config" {
			known[f.Name] = true
		}
		return next(nil)
	})
	keys := make([]string, 0, len(c.entries))
	for k := range c.entries {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return c.entries[keys[i]].line < c.entries[keys[j]].line })
	for _, k := range keys {
		if !known[k] {
			return &ConfigError{File: c.path, Line: c.entries[k].line, Key: k, Err: errors.New("unknown option (see picket run --help)")}
		}
	}
	return nil
}

// Resolve supplies flag's value from the file unless its environment variable is set.
func (c *fileConfig) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	if setEnv(flag) != "" {
		return nil, nil
	}
	e, ok := c.entries[flag.Name]
	if !ok {
		return nil, nil
	}
	value, err := e.text(flag)
	if err == nil {
		// Parse into a scratch value first, so a wrong type or a value outside the flag's
		// enum is reported with the file and line rather than as a bare flag error.
		scratch := reflect.New(flag.Target.Type()).Elem()
		if err = flag.Parse(kong.Scan().PushTyped(value, kong.FlagValueToken), scratch); err == nil {
			err = checkEnum(flag, scratch)
		} else if inner := errors.Unwrap(err); inner != nil {
			err = inner // kong's "--flag: " prefix: the ConfigError names the key already
		}
	}
	if err != nil {
		return nil, &ConfigError{File: c.path, Line: e.line, Key: flag.Name, Err: err}
	}
	c.used[flag.Name] = true
	return value, nil
}

// text is the entry as the text kong would get after --flag. A list goes only to a list
// flag, its items joined with the flag's separator, each escaped, so that an item holding
// the separator (a regexp with a comma) stays one item.
func (e entry) text(flag *kong.Flag) (string, error) {
	switch {
	case e.list == nil:
		return e.value, nil
	case !flag.IsSlice():
		return "", errors.New("a list, where one value is wanted")
	case flag.Tag.Sep == -1 && len(e.list) > 1:
		return "", errors.New("more than one item, where the option takes one value per occurrence")
	case flag.Tag.Sep == -1:
		return strings.Join(e.list, ""), nil
	}
	return kong.JoinEscaped(e.list, flag.Tag.Sep), nil
}

// checkEnum reports a value that kong parsed but that is not one of the flag's enum values
// (kong checks them only after resolving, and without saying where the value came from).
func checkEnum(flag *kong.Flag, v reflect.Value) error {
	if flag.Enum == "" {
		return nil
	}
	if v.Kind() == reflect.Slice {
		for i := range v.Len() {
			if err := checkEnum(flag, v.Index(i)); err != nil {
				return err
			}
		}
		return nil
	}
	got := fmt.Sprint(v.Interface())
	if !flag.EnumMap()[got] {
		return fmt.Errorf("must be one of %s, got %q", strings.Join(flag.EnumSlice(), ", "), got)
	}
	return nil
}
