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

func (e *ConfigError) Error() string {
	switch {
	case e.Line == 0:
		return fmt.Sprintf("config %s: %v", e.File, e.Err)
	case e.Key == "":
		return fmt.Sprintf("config %s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("config %s:%d: key %q: %v", e.File, e.Line, e.Key, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// entry is one setting of the file, flattened to its flag name.
type entry struct {
	value string
	line  int
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
		var val string
		switch v.Kind {
		case yaml.ScalarNode:
			val = v.Value
		case yaml.SequenceNode:
			// Kong splits list flags on commas; hand it the items it would have been given.
			items := make([]string, len(v.Content))
			for j, it := range v.Content {
				if it.Kind != yaml.ScalarNode {
					return &ConfigError{File: c.path, Line: it.Line, Key: key, Err: errors.New("list items must be plain values")}
				}
				items[j] = it.Value
			}
			val = strings.Join(items, ",")
		}
		if prev, dup := c.entries[key]; dup {
			return &ConfigError{File: c.path, Line: k.Line, Key: key, Err: fmt.Errorf("set twice (first on line %d)", prev.line)}
		}
		c.entries[key] = entry{value: val, line: k.Line}
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
	for _, env := range flag.Envs {
		if _, set := os.LookupEnv(env); set {
			return nil, nil
		}
	}
	e, ok := c.entries[flag.Name]
	if !ok {
		return nil, nil
	}
	// Parse into a scratch value first, so a wrong type is reported with the file and line
	// rather than as a bare flag error.
	scratch := reflect.New(flag.Target.Type()).Elem()
	if err := flag.Parse(kong.Scan().PushTyped(e.value, kong.FlagValueToken), scratch); err != nil {
		return nil, &ConfigError{File: c.path, Line: e.line, Key: flag.Name, Err: err}
	}
	c.used[flag.Name] = true
	return e.value, nil
}
