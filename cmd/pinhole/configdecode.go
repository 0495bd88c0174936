package main

// Configuration errors, in one format for decoding and value problems:
//
//	FILE:LINE: key.path: problem
//
// Decoding problems (unknown keys, wrong types, bare numbers for durations,
// duplicate keys) are found by walking the YAML node tree alongside the Go
// type of Config by reflection over its `yaml` struct tags, so a key added
// to any section is checked, suggested and located without changes here.
// Value problems come from the Validate and CheckFiles methods, whose
// messages start with the key path; the line is looked up in the node tree.

import (
	"cmp"
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// configError is one problem at one place of one file.
type configError struct {
	file string
	line int    // 0: unknown
	path string // key path, "" for the whole file
	msg  string
	// covers is a key path whose value error would only repeat this
	// one: the key an unknown key was probably meant to be.
	covers string
}

func (e configError) String() string {
	var b strings.Builder
	b.WriteString(e.file)
	if e.line > 0 {
		b.WriteString(":" + strconv.Itoa(e.line))
	}
	b.WriteString(": ")
	if e.path != "" {
		b.WriteString(e.path + ": ")
	}
	b.WriteString(e.msg)
	return b.String()
}

// configErrors is every problem of a file, sorted by line.
type configErrors []configError

func (es configErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.String()
	}
	return strings.Join(lines, "\n")
}

func (es configErrors) sorted() configErrors {
	slices.SortStableFunc(es, func(a, b configError) int {
		// Errors without a line (missing keys) go last.
		la, lb := a.line, b.line
		if la == 0 {
			la = 1 << 30
		}
		if lb == 0 {
			lb = 1 << 30
		}
		return cmp.Compare(la, lb)
	})
	return es
}

var (
	durationType      = reflect.TypeFor[time.Duration]()
	unmarshalerType   = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkNode reports every decoding problem of the document n against t,
// and turns the offending values into nulls (and drops repeated keys) so
// that n then decodes into t without error.
func checkNode(file string, n *yaml.Node, t reflect.Type) configErrors {
	w := &walker{file: file, dups: map[*yaml.Node]bool{}}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	w.walk(n, t, "")
	if len(w.dups) > 0 {
		removeKeys(n, w.dups, map[*yaml.Node]bool{})
	}
	return w.errs
}

// removeKeys deletes the key/value pairs whose key node is in keys.
func removeKeys(n *yaml.Node, keys, seen map[*yaml.Node]bool) {
	if seen[n] {
		return
	}
	seen[n] = true
	if n.Kind == yaml.MappingNode {
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !keys[n.Content[i]] {
				kept = append(kept, n.Content[i], n.Content[i+1])
			}
		}
		n.Content = kept
	}
	for _, c := range n.Content {
		removeKeys(c, keys, seen)
	}
}

type walker struct {
	file string
	errs configErrors
	dups map[*yaml.Node]bool // keys defined a second time in their mapping
}

func (w *walker) add(n *yaml.Node, path, format string, a ...any) {
	w.errs = append(w.errs, configError{file: w.file, line: n.Line, path: path, msg: fmt.Sprintf(format, a...)})
}

// drop makes a value yaml would refuse a null, so that the rest of the
// document still decodes and its values can be validated in the same run.
func drop(n *yaml.Node) {
	*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // null leaves the zero value
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		w.duration(n, path)
		return
	}
	pt := reflect.PointerTo(t)
	if pt.Implements(unmarshalerType) || (n.Kind == yaml.ScalarNode && pt.Implements(textUnmarshalType)) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.add(n, path, "%s", yamlMessage(err))
			drop(n)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if !w.expect(n, yaml.MappingNode, path, "a mapping of keys") {
			return
		}
		fields, open := yamlFields(t)
		seen := map[string]int{}
		w.mapping(n, func(k, v *yaml.Node) {
			key := k.Value
			if first, dup := seen[key]; dup {
				w.add(k, join(path, key), "defined twice (first at line %d)", first)
				w.dups[k] = true // yaml refuses duplicates
				return
			}
			seen[key] = k.Line
			ft, ok := fields[key]
			if !ok {
				if !open {
					best := suggest(key, fields)
					w.add(k, join(path, key), "unknown key%s", didYouMean(best))
					if best != "" {
						w.errs[len(w.errs)-1].covers = join(path, best)
					}
				}
				return
			}
			w.walk(v, ft, join(path, key))
		})
	case reflect.Map:
		if !w.expect(n, yaml.MappingNode, path, "a mapping") {
			return
		}
		seen := map[string]int{}
		w.mapping(n, func(k, v *yaml.Node) {
			if first, dup := seen[k.Value]; dup {
				w.add(k, join(path, k.Value), "defined twice (first at line %d)", first)
				w.dups[k] = true
				return
			}
			seen[k.Value] = k.Line
			w.walk(k, t.Key(), join(path, k.Value))
			w.walk(v, t.Elem(), join(path, k.Value))
		})
	case reflect.Slice, reflect.Array:
		if !w.expect(n, yaml.SequenceNode, path, "a list") {
			return
		}
		for i, e := range n.Content {
			w.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Interface:
	default:
		if !w.expect(n, yaml.ScalarNode, path, kindName(t)) {
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.add(n, path, "%s is not %s", quoteScalar(n), kindName(t))
			drop(n)
		}
	}
}

// mapping calls f for each key/value of n, following `<<` merge keys.
func (w *walker) mapping(n *yaml.Node, f func(k, v *yaml.Node)) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			for v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			if v.Kind == yaml.MappingNode {
				w.mapping(v, f)
			}
			continue
		}
		f(k, v)
	}
}

func (w *walker) expect(n *yaml.Node, kind yaml.Kind, path, want string) bool {
	if n.Kind == kind {
		return true
	}
	got := map[yaml.Kind]string{yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list", yaml.ScalarNode: quoteScalar(n)}[n.Kind]
	w.add(n, path, "expected %s, got %s", want, cmp.Or(got, "something else"))
	drop(n)
	return false
}

// duration accepts only Go duration strings; a bare number gets a hint
// with the unit added, since seconds, not nanoseconds, is what one means.
func (w *walker) duration(n *yaml.Node, path string) {
	if !w.expect(n, yaml.ScalarNode, path, "a duration such as 30s") {
		return
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		w.add(n, path, "%s has no unit: write %ss", n.Value, n.Value)
		drop(n)
		return
	}
	if _, err := time.ParseDuration(n.Value); err != nil {
		w.add(n, path, "%s is not a duration: write a number with a unit, such as 30s, 5m or 1h30m", quoteScalar(n))
		drop(n)
	}
}

// yamlFields maps the YAML keys of struct t (inline fields flattened) to
// their types; open is true when an inline map takes any other key.
func yamlFields(t reflect.Type) (fields map[string]reflect.Type, open bool) {
	fields = map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if slices.Contains(strings.Split(opts, ","), "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Struct:
				inner, innerOpen := yamlFields(ft)
				for k, v := range inner {
					fields[k] = v
				}
				open = open || innerOpen
			case reflect.Map:
				open = true
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // yaml's default key
		}
		fields[name] = f.Type
	}
	return fields, open
}

func didYouMean(key string) string {
	if key == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", key)
}

// suggest returns the known key closest to key by edit distance, when one
// is close enough to be a likely typo, or a known key that is a prefix of
// key or has key as its prefix; else "".
func suggest(key string, fields map[string]reflect.Type) string {
	best, bestD := "", 0
	for k := range fields {
		d := editDistance(strings.ToLower(key), k)
		if best == "" || d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > max(2, len(key)/3) {
		// Not a typo; maybe a longer or shorter form ("minimum" for "min").
		best = ""
		for k := range fields {
			if len(k) >= 3 && (strings.HasPrefix(key, k) || strings.HasPrefix(k, key) && len(key) >= 3) && (best == "" || len(k) < len(best) || len(k) == len(best) && k < best) {
				best = k
			}
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return "a " + t.String()
}

func quoteScalar(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return "a non-scalar"
	}
	return strconv.Quote(n.Value)
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?(?:line (\d+): )?`)

// yamlMessage strips yaml's "yaml: line N: " prefix from err.
func yamlMessage(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return yamlLine.ReplaceAllString(te.Errors[0], "")
	}
	return yamlLine.ReplaceAllString(err.Error(), "")
}

// yamlError turns a YAML syntax or decoding error into configErrors with
// the line yaml reported.
func yamlError(file string, err error) configErrors {
	msgs := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var out configErrors
	for _, m := range msgs {
		line := 0
		if sm := yamlLine.FindStringSubmatch(m); sm != nil && sm[1] != "" {
			line, _ = strconv.Atoi(sm[1])
		}
		out = append(out, configError{file: file, line: line, msg: yamlLine.ReplaceAllString(m, "")})
	}
	return out
}

// keyPrefix matches the key path a Validate or CheckFiles message starts
// with: "registrar.listen[0].address: ...".
var keyPrefix = regexp.MustCompile(`^([a-z0-9_]+(?:\[\d+\])*(?:\.[a-z0-9_]+(?:\[\d+\])*)*): `)

// valueErrors turns the errors of Validate and CheckFiles into
// configErrors located in the document root. A message "a.b: c.d: x"
// whose inner key c.d is a key of section a.b (a nested section's own
// Validate, wrapped by its parent) becomes "a.b.c.d: x"; a wrapped join
// of several errors is split, each getting the wrapper's prefix.
func valueErrors(file string, root *yaml.Node, t reflect.Type, err error) configErrors {
	var out configErrors
	for _, msg := range flattenMessages(err) {
		path := ""
		if m := keyPrefix.FindStringSubmatch(msg); m != nil {
			path, msg = m[1], msg[len(m[0]):]
			for {
				m := keyPrefix.FindStringSubmatch(msg)
				if m == nil || !hasKey(t, path, m[1]) {
					break
				}
				path, msg = path+"."+m[1], msg[len(m[0]):]
			}
		}
		line := 0
		if path != "" {
			line = lineOf(root, path)
		}
		out = append(out, configError{file: file, line: line, path: path, msg: msg})
	}
	return out
}

// flattenMessages returns one message per leaf error of err. A leaf of a
// joined error wrapped by fmt.Errorf("prefix: %w", join) gets the prefix.
func flattenMessages(err error) []string {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, flattenMessages(e)...)
		}
		return out
	}
	if inner := errors.Unwrap(err); inner != nil {
		if _, ok := inner.(interface{ Unwrap() []error }); ok {
			if prefix, ok := strings.CutSuffix(err.Error(), inner.Error()); ok {
				var out []string
				for _, m := range flattenMessages(inner) {
					out = append(out, prefix+m)
				}
				return out
			}
		}
	}
	return []string{err.Error()}
}

// hasKey reports whether key path sub (its first component) is a key of the
// struct that path leads to in t.
func hasKey(t reflect.Type, path, sub string) bool {
	for _, part := range strings.Split(path, ".") {
		name, idx, _ := strings.Cut(part, "[")
		ft, ok := structField(t, name)
		if !ok {
			return false
		}
		t = ft
		for ; idx != ""; _, idx, _ = strings.Cut(idx, "[") {
			t = deref(t)
			if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
				return false
			}
			t = t.Elem()
		}
	}
	first, _, _ := strings.Cut(sub, ".")
	first, _, _ = strings.Cut(first, "[")
	_, ok := structField(t, first)
	return ok
}

func structField(t reflect.Type, name string) (reflect.Type, bool) {
	t = deref(t)
	if t.Kind() != reflect.Struct {
		return nil, false
	}
	fields, _ := yamlFields(t)
	ft, ok := fields[name]
	return ft, ok
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}
