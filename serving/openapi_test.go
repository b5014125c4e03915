package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// oapiDoc is the parsed /openapi.json.
type oapiDoc map[string]any

func loadOpenAPI(t *testing.T) oapiDoc {
	t.Helper()
	var doc oapiDoc
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

// resolve follows a "#/a/b/c" reference.
func (d oapiDoc) resolve(ref string) (map[string]any, error) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, fmt.Errorf("reference %q is not local", ref)
	}
	var cur any = map[string]any(d)
	for _, p := range strings.Split(ref[2:], "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("reference %q: %q is not in an object", ref, p)
		}
		if cur, ok = m[p]; !ok {
			return nil, fmt.Errorf("reference %q: no %q", ref, p)
		}
	}
	m, ok := cur.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("reference %q is not an object", ref)
	}
	return m, nil
}

func (d oapiDoc) deref(m map[string]any) map[string]any {
	for {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		var err error
		if m, err = d.resolve(ref); err != nil {
			panic(err)
		}
	}
}

// validate checks v (decoded JSON) against schema: the subset of OpenAPI 3.0
// schemas the document uses ($ref, type, nullable, required, properties,
// additionalProperties, items, enum, allOf, minimum, maxLength).
func (d oapiDoc) validate(schema map[string]any, v any, path string) error {
	schema = d.deref(schema)
	if v == nil {
		if schema["nullable"] == true {
			return nil
		}
		if all, ok := schema["allOf"].([]any); !ok || len(all) == 0 {
			if _, typed := schema["type"]; typed {
				return fmt.Errorf("%s: null is not allowed", path)
			}
			return nil
		}
	}
	if all, ok := schema["allOf"].([]any); ok {
		for _, s := range all {
			if err := d.validate(s.(map[string]any), v, path); err != nil {
				return err
			}
		}
	}
	if enum, ok := schema["enum"].([]any); ok && !slices.Contains(enum, v) {
		return fmt.Errorf("%s: %v is not one of %v", path, v, enum)
	}
	switch typ, _ := schema["type"].(string); typ {
	case "":
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %T is not an object", path, v)
		}
		req, _ := schema["required"].([]any)
		for _, r := range req {
			if _, ok := obj[r.(string)]; !ok {
				return fmt.Errorf("%s: required property %q is missing", path, r)
			}
		}
		props, _ := schema["properties"].(map[string]any)
		for k, pv := range obj {
			if ps, ok := props[k].(map[string]any); ok {
				if err := d.validate(ps, pv, path+"."+k); err != nil {
					return err
				}
				continue
			}
			switch ap := schema["additionalProperties"].(type) {
			case bool:
				if !ap {
					return fmt.Errorf("%s: property %q is not documented", path, k)
				}
			case map[string]any:
				if err := d.validate(ap, pv, path+"."+k); err != nil {
					return err
				}
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: %T is not an array", path, v)
		}
		if items, ok := schema["items"].(map[string]any); ok {
			for i, e := range arr {
				if err := d.validate(items, e, path+"["+strconv.Itoa(i)+"]"); err != nil {
					return err
				}
			}
		}
	case "string":
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: %T is not a string", path, v)
		}
		if ml, ok := schema["maxLength"].(float64); ok && float64(len(s)) > ml {
			return fmt.Errorf("%s: longer than %v", path, ml)
		}
		if schema["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				return fmt.Errorf("%s: %q is not a date-time", path, s)
			}
		}
	case "integer", "number":
		n, ok := v.(float64)
		if !ok {
			return fmt.Errorf("%s: %T is not a number", path, v)
		}
		if typ == "integer" && n != float64(int64(n)) {
			return fmt.Errorf("%s: %v is not an integer", path, n)
		}
		if mn, ok := schema["minimum"].(float64); ok && n < mn {
			return fmt.Errorf("%s: %v < minimum %v", path, n, mn)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: %T is not a boolean", path, v)
		}
	default:
		return fmt.Errorf("%s: the validator does not know type %q", path, typ)
	}
	return nil
}

// responseSchema is the JSON schema of the documented response.
func (d oapiDoc) responseSchema(path, method string, status int) (map[string]any, error) {
	var resp map[string]any
	if path == "" { // unrouted: the shared 404
		r, err := d.resolve("#/components/responses/NotFound")
		if err != nil {
			return nil, err
		}
		resp = r
	} else {
		paths, _ := d["paths"].(map[string]any)
		p, ok := paths[path].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("path %s is not documented", path)
		}
		op, ok := p[method].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s %s is not documented", method, path)
		}
		rs, _ := op["responses"].(map[string]any)
		r, ok := rs[strconv.Itoa(status)].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s %s: status %d is not documented", method, path, status)
		}
		resp = d.deref(r)
	}
	content, _ := resp["content"].(map[string]any)
	js, ok := content["application/json"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s %s %d: no application/json content", method, path, status)
	}
	return js["schema"].(map[string]any), nil
}

func TestOpenAPIDocument(t *testing.T) {
	doc := loadOpenAPI(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.") {
		t.Fatalf("openapi version %q", v)
	}
	// Every reference resolves.
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				if _, err := doc.resolve(ref); err != nil {
					t.Error(err)
				}
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(map[string]any(doc))

	// Every endpoint the server mounts is documented, with its error
	// responses.
	paths := doc["paths"].(map[string]any)
	routes := []string{"GET /healthz", "GET /readyz", "GET /metrics", "POST /v1/events",
		"GET /ui", "GET /ui/{file}", "GET /ui/api/samples"} // serving/ui's routes (ui.Route…)
	for p := range (&API{}).routes() {
		routes = append(routes, p)
	}
	for _, r := range routes {
		method, path, _ := strings.Cut(r, " ")
		p, ok := paths[path].(map[string]any)
		if !ok {
			t.Errorf("%s is not documented", path)
			continue
		}
		op, ok := p[strings.ToLower(method)].(map[string]any)
		if !ok {
			t.Errorf("%s is not documented", r)
			continue
		}
		rs, _ := op["responses"].(map[string]any)
		if _, ok := rs["405"]; !ok {
			t.Errorf("%s: 405 is not documented", r)
		}
		if _, ok := rs["200"]; !ok && method == http.MethodGet {
			t.Errorf("%s: 200 is not documented", r)
		}
	}
	if len(paths) != len(routes) {
		t.Errorf("the document has %d paths, the server %d routes", len(paths), len(routes))
	}

	// Served as is.
	f := newFixture(t, store.NewMemory(), APIConfig{})
	r := get(t, f.h, "/openapi.json")
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" || r.body != string(openAPIDoc) {
		t.Fatalf("GET /openapi.json: %d %q", r.status, r.header.Get("Content-Type"))
	}
	if !bytes.Equal(OpenAPI(), openAPIDoc) {
		t.Error("OpenAPI() differs from the embedded document")
	}
}

// Real answers of every endpoint match the schemas the document gives them.
func TestOpenAPIMatchesResponses(t *testing.T) {
	doc := loadOpenAPI(t)
	st := seeded(t, func(testing.TB) store.Store { return store.NewMemory() })
	f := newFixture(t, st, APIConfig{},
		StatusFunc(func(context.Context) (LayerStatus, error) {
			return LayerStatus{Layer: "speed", LastUpdate: testNow, LagRecords: 3, Details: map[string]any{"x": 1}}, nil
		}),
		StatusFunc(func(context.Context) (LayerStatus, error) { return LayerStatus{Layer: "archive"}, fmt.Errorf("down") }))
	empty := newFixture(t, store.NewMemory(), APIConfig{})
	closed := store.NewMemory()
	_ = closed.Close()
	broken := newFixture(t, closed, APIConfig{})

	for _, tc := range []struct {
		h              http.Handler
		method, target string
		path           string // documented path; "" for the shared 404
		status         int
	}{
		{f.h, "GET", "/v1/recommendations?session_id=s-new&k=7", "/v1/recommendations", 200},
		{f.h, "GET", "/v1/recommendations?user_id=nobody", "/v1/recommendations", 200},
		{empty.h, "GET", "/v1/recommendations?user_id=nobody", "/v1/recommendations", 200},
		{f.h, "GET", "/v1/recommendations?k=0", "/v1/recommendations", 400},
		{f.h, "GET", "/v1/recommendations?user_id=u&x=1", "/v1/recommendations", 200},
		{f.h, "GET", "/v1/recommendations?session_id=s-new&k=7&explain=true", "/v1/recommendations", 200},
		{f.h, "GET", "/v1/recommendations?user_id=u&explain=maybe", "/v1/recommendations", 400},
		{f.h, "POST", "/v1/recommendations", "/v1/recommendations", 405},
		{broken.h, "GET", "/v1/recommendations?user_id=u", "/v1/recommendations", 503},
		{f.h, "GET", "/v1/items/i1/similar?k=2", "/v1/items/{item_id}/similar", 200},
		{f.h, "GET", "/v1/items/nope/similar", "/v1/items/{item_id}/similar", 200},
		{empty.h, "GET", "/v1/items/i1/similar", "/v1/items/{item_id}/similar", 200},
		{f.h, "GET", "/v1/items/%ff/similar", "/v1/items/{item_id}/similar", 400},
		{f.h, "DELETE", "/v1/items/i1/similar", "/v1/items/{item_id}/similar", 405},
		{broken.h, "GET", "/v1/items/i1/similar", "/v1/items/{item_id}/similar", 503},
		{f.h, "GET", "/v1/status", "/v1/status", 200},
		{empty.h, "GET", "/v1/status", "/v1/status", 200},
		{broken.h, "GET", "/v1/status", "/v1/status", 200},
		{f.h, "GET", "/v1/status?x", "/v1/status", 200},
		{f.h, "GET", "/healthz", "/healthz", 200},
		{f.h, "GET", "/readyz", "/readyz", 200},
		{f.h, "GET", "/v1/nothing", "", 404},
	} {
		r := do(t, tc.h, tc.method, tc.target)
		if r.status != tc.status {
			t.Errorf("%s %s: status %d, want %d: %s", tc.method, tc.target, r.status, tc.status, r.body)
			continue
		}
		docMethod := strings.ToLower(tc.method)
		if tc.status == http.StatusMethodNotAllowed {
			docMethod = "get" // documented on the operation the path has
		}
		schema, err := doc.responseSchema(tc.path, docMethod, tc.status)
		if err != nil {
			t.Error(err)
			continue
		}
		var body any
		if err := json.Unmarshal([]byte(r.body), &body); err != nil {
			t.Errorf("%s %s: body is not JSON: %v", tc.method, tc.target, err)
			continue
		}
		if err := doc.validate(schema, body, "body"); err != nil {
			t.Errorf("%s %s: %v\n%s", tc.method, tc.target, err, r.body)
		}
	}

	// The documented examples match their schemas too.
	paths := doc["paths"].(map[string]any)
	for path, p := range paths {
		for method, op := range p.(map[string]any) {
			for status, resp := range op.(map[string]any)["responses"].(map[string]any) {
				resp := doc.deref(resp.(map[string]any))
				js, ok := resp["content"].(map[string]any)["application/json"].(map[string]any)
				if !ok || js["example"] == nil {
					continue
				}
				if err := doc.validate(js["schema"].(map[string]any), js["example"], "example"); err != nil {
					t.Errorf("%s %s %s: %v", method, path, status, err)
				}
			}
		}
	}
}
