package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// flagsTable renders every flag of serve, wait and check as the README's
// Markdown table, from the cobra commands themselves.
func flagsTable() string {
	root := newRootCommand(io.Discard, io.Discard)
	var order []string
	cmdsOf := map[string][]string{}
	defs := map[string]map[string]string{}
	usages := map[string]map[string]string{}
	for _, name := range []string{"serve", "wait", "check"} {
		cmd, _, err := root.Find([]string{name})
		if err != nil {
			panic(err)
		}
		visit := func(f *pflag.Flag) {
			if _, ok := defs[f.Name]; !ok {
				order = append(order, f.Name)
				defs[f.Name], usages[f.Name] = map[string]string{}, map[string]string{}
			}
			cmdsOf[f.Name] = append(cmdsOf[f.Name], name)
			def := f.DefValue
			if def == "" || def == "[]" {
				def = `""`
			}
			defs[f.Name][name], usages[f.Name][name] = "`"+def+"`", f.Usage
		}
		cmd.LocalFlags().VisitAll(visit)
		cmd.InheritedFlags().VisitAll(visit)
	}
	var b strings.Builder
	b.WriteString("| flag | environment | commands | default | meaning |\n|---|---|---|---|---|\n")
	for _, name := range order {
		flag := "`--" + name + "`"
		if f := root.PersistentFlags().Lookup(name); f != nil && f.Shorthand != "" {
			flag = "`-" + f.Shorthand + "`, " + flag
		}
		if name == "output" {
			flag = "`-o`, " + flag
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s | %s |\n", flag, envName(name), strings.Join(cmdsOf[name], ", "),
			perCommand(cmdsOf[name], defs[name]), strings.ReplaceAll(perCommand(cmdsOf[name], usages[name]), "|", `\|`))
	}
	return b.String()
}

// perCommand gives one value when all commands agree, else "serve: a; wait, check: b".
func perCommand(cmds []string, vals map[string]string) string {
	var distinct []string
	byVal := map[string][]string{}
	for _, c := range cmds {
		v := vals[c]
		if _, ok := byVal[v]; !ok {
			distinct = append(distinct, v)
		}
		byVal[v] = append(byVal[v], c)
	}
	if len(distinct) == 1 {
		return distinct[0]
	}
	parts := make([]string, 0, len(distinct))
	for _, v := range distinct {
		parts = append(parts, strings.Join(byVal[v], ", ")+": "+v)
	}
	return strings.Join(parts, "; ")
}

// The README's flags table is the commands' own: it cannot drift.
func TestREADMEFlagsTable(t *testing.T) {
	b, err := os.ReadFile("README.md")
	require.NoError(t, err)
	const begin, end = "<!-- flags:begin -->\n", "<!-- flags:end -->"
	readme := string(b)
	i, j := strings.Index(readme, begin), strings.Index(readme, end)
	require.True(t, i >= 0 && j > i, "README.md lacks the flags markers")
	want := flagsTable()
	assert.Equal(t, want, readme[i+len(begin):j], "README.md's flags table differs from the commands; replace it with:\n%s", want)
}
