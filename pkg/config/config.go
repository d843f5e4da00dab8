// Package config loads a service's configuration from environment variables
// into a struct, with caarlos0/env tags, and reports every bad value at once.
//
// Contract:
//   - Load reads only the variables the struct names (env:"NAME" tags, with
//     envPrefix on nested structs), through the getenv function it is given,
//     so that run(ctx, args, getenv, stdout) stays testable and nothing reads
//     os.Getenv behind the caller's back (STYLE.md, habit 2).
//   - A variable set to the empty string counts as unset: its envDefault
//     applies, and a required one is reported missing.
//   - Every problem is reported, one line per variable, in the form
//     "NAME: what is wrong (got "value")"; secrets are never echoed (a field
//     tagged secret:"true" shows as "***").
//   - After parsing, a struct that implements Validator is asked for
//     cross-field problems, which are appended in the same format.
package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/caarlos0/env/v11"
)

// Validator is implemented by configuration structs that have rules beyond
// a single value's syntax (ranges, one field depending on another). Each
// returned error is reported on its own line; name the variable in it.
type Validator interface {
	Validate() []error
}

// Error is every problem found while loading, one per line.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.Problems, "\n  ")
}

// Load fills a T from the variables getenv returns. T must be a struct.
func Load[T any](getenv func(string) string) (T, error) {
	var cfg T
	params, err := env.GetFieldParams(&cfg)
	if err != nil {
		return cfg, fmt.Errorf("config: %T: %w", cfg, err)
	}
	values := make(map[string]string, len(params))
	for _, p := range params {
		if p.Key == "" {
			continue
		}
		if v := getenv(p.Key); v != "" {
			values[p.Key] = v
		}
	}
	fields := fieldKeys(reflect.TypeOf(cfg), "")
	var problems []string
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: values}); err != nil {
		var agg env.AggregateError
		if errors.As(err, &agg) {
			for _, e := range agg.Errors {
				problems = append(problems, describe(e, fields, values))
			}
		} else {
			problems = append(problems, err.Error())
		}
	}
	if v, ok := any(&cfg).(Validator); ok && len(problems) == 0 {
		for _, e := range v.Validate() {
			problems = append(problems, e.Error())
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return cfg, &Error{Problems: problems}
	}
	return cfg, nil
}

type fieldInfo struct {
	key    string
	secret bool
}

// fieldKeys maps Go field names to their variable names, following envPrefix
// into nested structs, so that a parse error can name the variable.
func fieldKeys(t reflect.Type, prefix string) map[string]fieldInfo {
	out := map[string]fieldInfo{}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return out
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if p, ok := f.Tag.Lookup("envPrefix"); ok {
			for k, v := range fieldKeys(f.Type, prefix+p) {
				out[k] = v
			}
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" {
			if f.Type.Kind() == reflect.Struct {
				for k, v := range fieldKeys(f.Type, prefix) {
					out[k] = v
				}
			}
			continue
		}
		out[f.Name] = fieldInfo{key: prefix + name, secret: f.Tag.Get("secret") == "true"}
	}
	return out
}

func describe(err error, fields map[string]fieldInfo, values map[string]string) string {
	var (
		notSet env.VarIsNotSetError
		empty  env.EmptyVarError
		parse  env.ParseError
	)
	switch {
	case errors.As(err, &notSet):
		return notSet.Key + ": required, not set"
	case errors.As(err, &empty):
		return empty.Key + ": must not be empty"
	case errors.As(err, &parse):
		info, ok := fields[parse.Name]
		if !ok {
			return fmt.Sprintf("%s: %v", parse.Name, parse.Err)
		}
		got := values[info.key]
		if info.secret {
			got = "***"
		}
		return fmt.Sprintf("%s: %s (got %q)", info.key, cleanParseErr(parse.Err), got)
	default:
		return err.Error()
	}
}

// cleanParseErr strips the strconv noise ("strconv.ParseInt: parsing "x":")
// so the line says what a person must fix.
func cleanParseErr(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "strconv.") {
		msg = msg[i+2:]
	}
	if strings.Contains(msg, "time: invalid duration") {
		return "not a duration (use e.g. 500ms, 30s, 5m)"
	}
	switch msg {
	case "invalid syntax":
		return "not a number"
	case "value out of range":
		return "number out of range"
	}
	return msg
}
