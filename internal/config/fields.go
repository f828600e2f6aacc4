package config

import (
	"flag"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Setting describes one configuration setting, derived from Config's tags.
type Setting struct {
	Name    string // TOML key
	Env     string // environment variable
	Flag    string // command-line flag, without dashes
	Help    string
	Default string
}

// Settings lists every setting in the order Config declares them.
func Settings() []Setting {
	def := Default()
	v := reflect.ValueOf(&def).Elem()
	t := v.Type()
	out := make([]Setting, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("toml")
		out = append(out, Setting{
			Name:    name,
			Env:     "LARDER_" + strings.ToUpper(name),
			Flag:    strings.ReplaceAll(name, "_", "-"),
			Help:    f.Tag.Get("help"),
			Default: formatValue(v.Field(i)),
		})
	}
	return out
}

// ApplyEnv applies every LARDER_* variable in environ that names a setting.
func (c *Config) ApplyEnv(environ []string) error {
	for i, s := range Settings() {
		val := lookupEnvOK(environ, s.Env)
		if val == nil {
			continue
		}
		if err := setValue(reflect.ValueOf(c).Elem().Field(i), *val); err != nil {
			return fmt.Errorf("environment %s: %w", s.Env, err)
		}
	}
	return nil
}

func lookupEnvOK(environ []string, name string) *string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return &v
		}
	}
	return nil
}

// Flags registers a flag for every setting on fs. The flags write into c when
// fs parses, so call it after Load and Validate after parsing. Only flags
// present on the command line change c.
func (c *Config) Flags(fs *flag.FlagSet) {
	for i, s := range Settings() {
		fs.Var(fieldFlag{reflect.ValueOf(c).Elem().Field(i)}, s.Flag, s.Help)
	}
}

type fieldFlag struct{ v reflect.Value }

func (f fieldFlag) String() string {
	if !f.v.IsValid() {
		return ""
	}
	return formatValue(f.v)
}

func (f fieldFlag) Set(s string) error { return setValue(f.v, s) }

// IsBoolFlag lets a true/false setting's flag stand alone (--chunking
// means --chunking=true).
func (f fieldFlag) IsBoolFlag() bool { return f.v.IsValid() && f.v.Kind() == reflect.Bool }

func setValue(v reflect.Value, s string) error {
	switch p := v.Addr().Interface().(type) {
	case *ByteSize:
		return p.UnmarshalText([]byte(s))
	case *Duration:
		return p.UnmarshalText([]byte(s))
	case *string:
		*p = s
	case *float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		*p = x
	case *bool:
		x, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		*p = x
	case *int:
		x, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		*p = x
	default:
		return fmt.Errorf("unsupported setting type %s", v.Type())
	}
	return nil
}

func formatValue(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case ByteSize:
		return x.String()
	case Duration:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	default:
		return fmt.Sprint(x)
	}
}

// ByteSize is a number of bytes, written as an integer with an optional
// unit: 512, 64KiB, 1.5GiB, 10MB (KiB, MiB, GiB and TiB are powers of 1024;
// KB, MB, GB and TB powers of 1000).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// UnmarshalText parses a size such as "64MiB".
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	mult := 1.0
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(x) || x < 0 || x*mult > 1<<62 {
		return fmt.Errorf("%q is not a size such as 512, 64KiB or 2GiB", string(text))
	}
	*b = ByteSize(x * mult)
	return nil
}

// String formats b with the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// Duration is a time.Duration written as Go writes them: 30s, 5m, 1h30m.
type Duration time.Duration

// UnmarshalText parses a duration such as "30s".
func (d *Duration) UnmarshalText(text []byte) error {
	x, err := time.ParseDuration(strings.TrimSpace(string(text)))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 30s or 5m", string(text))
	}
	*d = Duration(x)
	return nil
}

// String formats d as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }
