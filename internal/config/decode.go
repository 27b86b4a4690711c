package config

import (
	"encoding"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// decoder copies the generic TOML tree into a Config by its `toml` tags.
//
// BurntSushi/toml's own struct decoding stops at the first type error, and
// its MetaData.Undecoded lists unknown keys without array indices, so the
// decoder walks the tree itself: it reports every type error and unknown key
// with its full path ("backend.server[0].adress") and carries on.
type decoder struct {
	problems []Problem
	set      map[string]bool // key paths present in the file
}

func (d *decoder) problem(path, format string, args ...any) {
	d.problems = append(d.problems, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

var (
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	prefixType          = reflect.TypeFor[netip.Prefix]()
	addrType            = reflect.TypeFor[netip.Addr]()
)

type defaulter interface{ setDefaults() }

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decodeStruct fills the struct dst points to from table m.
func (d *decoder) decodeStruct(path string, m map[string]any, dst any) {
	rv := reflect.ValueOf(dst).Elem()
	rt := rv.Type()
	fields := make(map[string]int, rt.NumField())
	for i := range rt.NumField() {
		tag := rt.Field(i).Tag.Get("toml")
		if tag != "" && tag != "-" && rt.Field(i).IsExported() {
			fields[tag] = i
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := join(path, k)
		i, ok := fields[k]
		if !ok {
			d.problem(p, "unknown key %q", p)
			continue
		}
		d.set[p] = true
		d.decodeValue(p, m[k], rv.Field(i))
	}
}

// decodeValue stores TOML value v into dst, or records why it cannot.
func (d *decoder) decodeValue(path string, v any, dst reflect.Value) {
	t := dst.Type()
	switch {
	case t == prefixType:
		s, ok := d.str(path, v, "a network such as \"192.0.2.0/24\"")
		if !ok {
			return
		}
		p, err := parsePrefix(s)
		if err != nil {
			d.problem(path, "%s", err)
			return
		}
		dst.Set(reflect.ValueOf(p))
		return
	case t == addrType:
		s, ok := d.str(path, v, "an IP address")
		if !ok {
			return
		}
		if s == "" && dst.Kind() == reflect.Struct && !strings.HasSuffix(path, "]") {
			// An empty string leaves a single optional address unset
			// (source_address = ""), as the zero value marshals; list
			// entries must be addresses.
			dst.Set(reflect.ValueOf(netip.Addr{}))
			return
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			d.problem(path, "%q is not an IP address", s)
			return
		}
		dst.Set(reflect.ValueOf(a.WithZone("")))
		return
	case reflect.PointerTo(t).Implements(textUnmarshalerType):
		want := "a string"
		if t == reflect.TypeFor[Duration]() {
			want = "a duration string such as \"5s\""
		}
		s, ok := d.str(path, v, want)
		if !ok {
			return
		}
		if err := dst.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.problem(path, "%s", err)
		}
		return
	}
	switch t.Kind() {
	case reflect.String:
		if s, ok := d.str(path, v, "a string"); ok {
			dst.SetString(s)
		}
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			d.problem(path, "want true or false, got %s", describe(v))
			return
		}
		dst.SetBool(b)
	case reflect.Int:
		n, ok := v.(int64)
		if !ok || n < math.MinInt || n > math.MaxInt {
			d.problem(path, "want an integer, got %s", describe(v))
			return
		}
		dst.SetInt(n)
	case reflect.Float64:
		switch n := v.(type) {
		case float64:
			dst.SetFloat(n)
		case int64:
			dst.SetFloat(float64(n))
		default:
			d.problem(path, "want a number, got %s", describe(v))
		}
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.problem(path, "want a table, got %s", describe(v))
			return
		}
		d.decodeStruct(path, m, dst.Addr().Interface())
	case reflect.Slice:
		d.decodeSlice(path, v, dst)
	default:
		// Unreachable: every Config field has one of the kinds above.
		d.problem(path, "unsupported field type %s", t)
	}
}

func (d *decoder) decodeSlice(path string, v any, dst reflect.Value) {
	var items []any
	switch x := v.(type) {
	case []any:
		items = x
	case []map[string]any:
		for _, m := range x {
			items = append(items, m)
		}
	default:
		if dst.Type().Elem().Kind() == reflect.Struct && dst.Type().Elem() != prefixType && dst.Type().Elem() != addrType {
			d.problem(path, "want an array of tables ([[%s]]), got %s", path, describe(v))
		} else {
			d.problem(path, "want an array, got %s", describe(v))
		}
		return
	}
	out := reflect.MakeSlice(dst.Type(), len(items), len(items))
	for i, item := range items {
		e := out.Index(i)
		if df, ok := e.Addr().Interface().(defaulter); ok {
			df.setDefaults()
		}
		d.decodeValue(path+"["+strconv.Itoa(i)+"]", item, e)
	}
	dst.Set(out)
}

func (d *decoder) str(path string, v any, want string) (string, bool) {
	s, ok := v.(string)
	if !ok {
		d.problem(path, "want %s, got %s", want, describe(v))
	}
	return s, ok
}

// describe names a TOML value's type and, for scalars, its value.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return "string " + strconv.Quote(x)
	case int64:
		return "integer " + strconv.FormatInt(x, 10)
	case float64:
		return "float " + strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return "boolean " + strconv.FormatBool(x)
	case time.Time:
		return "datetime " + x.Format(time.RFC3339)
	case []any, []map[string]any:
		return "array"
	case map[string]any:
		return "table"
	default:
		return fmt.Sprintf("%T", v) // local date/time types
	}
}

// parsePrefix parses "203.0.113.0/24" or a bare address (a /32 or /128). The
// address bits are kept as written: a VIP "203.0.113.100/24" stays .100.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or network", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network in CIDR notation", s)
	}
	return p, nil
}

// finishParse applies the defaults that depend on which keys the file set.
func (d *decoder) finishParse(c *Config) {
	for i := range c.Listeners {
		if !d.set["listener["+strconv.Itoa(i)+"].http2"] {
			c.Listeners[i].HTTP2 = c.Listeners[i].TLS
		}
	}
	for i := range c.RateLimits {
		if key := "rate_limit[" + strconv.Itoa(i) + "].rate"; !d.set[key] {
			d.problem(key, "is required (e.g. \"10/s\" or \"600/m\")")
		}
	}
}
