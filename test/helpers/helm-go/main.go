// Renders a chart's templates with Go's text/template, Sprig and Helm's own template functions, the way
// Helm's engine does (pkg/engine: missingkey=zero, "<no value>" removed, include/required/fail/toYaml), to
// cross-check test/helpers/go-template.ts. Reads {"chartDir", "values", "release", "chart"} as JSON on stdin
// and prints {"<file>": "<rendered text>"} or {"error": "..."}.
//
// Builds without modules against Debian's packages (golang-go, golang-github-masterminds-sprig-dev,
// golang-github-ghodss-yaml-dev, whose Marshal is sigs.k8s.io/yaml's):
//   GO111MODULE=off GOPATH=/usr/share/gocode go run test/helpers/helm-go/main.go < input.json
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"github.com/ghodss/yaml"
)

type input struct {
	ChartDir string                 `json:"chartDir"`
	Values   map[string]interface{} `json:"values"`
	Release  map[string]interface{} `json:"release"`
	Chart    map[string]interface{} `json:"chart"`
}

func fail(err error) {
	out, _ := json.Marshal(map[string]string{"error": err.Error()})
	os.Stdout.Write(out)
	os.Exit(0)
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail(err)
	}
	files, err := filepath.Glob(filepath.Join(in.ChartDir, "templates", "*"))
	if err != nil {
		fail(err)
	}
	sort.Strings(files)
	chartName := fmt.Sprint(in.Chart["Name"])

	t := template.New("gotpl").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = func(v interface{}) string {
		data, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(data), "\n")
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	funcs["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(warn)
		} else if s, ok := val.(string); ok && s == "" {
			return val, errors.New(warn)
		}
		return val, nil
	}
	funcs["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }
	t.Funcs(funcs)

	names := []string{}
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			fail(err)
		}
		name := chartName + "/templates/" + filepath.Base(file)
		if _, err := t.New(name).Parse(string(text)); err != nil {
			fail(err)
		}
		names = append(names, name)
	}
	out := map[string]string{}
	for _, name := range names {
		base := filepath.Base(name)
		if strings.HasPrefix(base, "_") {
			continue
		}
		vals := map[string]interface{}{
			"Values":   in.Values,
			"Release":  in.Release,
			"Chart":    in.Chart,
			"Template": map[string]interface{}{"Name": name, "BasePath": chartName + "/templates"},
		}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, name, vals); err != nil {
			fail(err)
		}
		out["templates/"+base] = strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	data, _ := json.Marshal(out)
	os.Stdout.Write(data)
}
