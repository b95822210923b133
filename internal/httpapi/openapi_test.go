package httpapi

// The OpenAPI document (docs/openapi.yaml) is written by hand, so these tests
// keep it from drifting away from the code silently: the routes the server
// registers are exactly the documented operations (read from this package's
// source and checked against the real handler), every problem code of the
// error table and every outcome is documented, with the table's status,
// every {path parameter} is declared, and the documented limits and defaults
// are this package's constants. The document is read with a small reader of
// the YAML subset it uses (block mappings and lists, block scalars), so the
// tests need nothing beyond the standard library.

import (
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnhq/cairn/internal/engine"
	"github.com/cairnhq/cairn/internal/hunt"
)

const openapiPath = "../../docs/openapi.yaml"

// openapiMethods are the operations an OpenAPI path item may hold.
var openapiMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// TestOpenAPIRoutes: every route of the server's routing table (read from
// this package's source) is documented with its method, and every
// documented operation is a route.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	server := sourceRoutes(t)
	// A refactor that hides the table from sourceRoutes must fail here, not
	// pass with nothing compared.
	if len(server) < 10 || !server["POST /v1/hunts/{hunt}/hotspots/{id}/claim"] {
		t.Fatalf("sourceRoutes found %d routes, without the claim route; teach it the new routing table: %v", len(server), sortedKeys(server))
	}
	documented := doc.operations(t)
	for r := range server {
		if !documented[r] {
			t.Errorf("route %s is registered in the server but not documented in %s", r, openapiPath)
		}
	}
	for op := range documented {
		if !server[op] {
			t.Errorf("%s documents %s, which the server does not register", openapiPath, op)
		}
	}
	// The admin realm is its own (auth.go): admin routes take only the admin token.
	for op := range documented {
		method, path, _ := strings.Cut(op, " ")
		sec := doc.at(t, "paths", path, strings.ToLower(method), "security").text()
		if admin := strings.HasPrefix(path, "/v1/admin/"); admin != strings.Contains(sec, "adminBearer") || (admin && strings.Contains(sec, "playerBearer")) {
			t.Errorf("%s: security %q; want adminBearer alone exactly on /v1/admin/ routes", op, strings.TrimSpace(sec))
		}
	}
}

// TestOpenAPIRoutesServed drives the real handler: every documented
// operation is served (neither 404 not_found nor 405), every other method
// on a documented path is 405, and an undocumented path is 404 not_found.
// Requests carry no credentials, so no handler gets past authentication
// except the public ones, which the stub engine answers.
func TestOpenAPIRoutesServed(t *testing.T) {
	doc := loadOpenAPI(t)
	s, err := New(Config{
		Engine:     openapiEngine{},
		Board:      openapiBoard{},
		Secret:     []byte("openapi-test-secret-0123456789abcdef"),
		AdminToken: "openapi-test-admin-token",
		Registry:   prometheus.NewRegistry(), // without one, /metrics is 404 not_found
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	serve := func(method, path string) (int, string) {
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest(method, path, nil))
		var p struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(w.Body.Bytes(), &p) // not every answer is JSON (/metrics)
		return w.Code, p.Code
	}
	ops := doc.operations(t)
	paths := map[string]bool{}
	for op := range ops {
		paths[strings.SplitN(op, " ", 2)[1]] = true
	}
	concrete := strings.NewReplacer("{hunt}", "h1", "{id}", "s1")
	for path := range paths {
		if _, code := serve("GET", concrete.Replace(path)); code == "not_found" {
			// Every method of a path the server lacks is 404 (a path it has
			// answers 405 to methods it lacks), so one message says it all.
			if _, code := serve("POST", concrete.Replace(path)); code == "not_found" {
				t.Errorf("%s is documented, but the server does not serve this path", path)
				continue
			}
		}
		for _, m := range openapiMethods {
			method := strings.ToUpper(m)
			if method == "HEAD" || method == "OPTIONS" || method == "TRACE" {
				continue // HEAD follows GET; the others are not API methods
			}
			status, code := serve(method, concrete.Replace(path))
			switch {
			case ops[method+" "+path] && (status == http.StatusMethodNotAllowed || code == "not_found"):
				t.Errorf("%s %s = %d %s; want the documented operation to be served", method, path, status, code)
			case !ops[method+" "+path] && status != http.StatusMethodNotAllowed:
				t.Errorf("%s %s = %d %s; want 405: the method is not documented on this path", method, path, status, code)
			}
		}
	}
	if status, code := serve("GET", "/v1/openapi-drift-check"); status != http.StatusNotFound || code != "not_found" {
		t.Errorf("GET of an undocumented path = %d %s; want 404 not_found", status, code)
	}
}

// openapiEngine is the least engine New and the public routes need; any
// other method is the nil embedded interface's and panics (answered 500),
// which the routes test would report as a served route, never as a missing one.
type openapiEngine struct{ engine.Engine }

func (openapiEngine) Partitions() int         { return 4 }
func (openapiEngine) Status() []engine.Status { return nil }
func (openapiEngine) Ready() error            { return nil }
func (openapiEngine) Hunt(context.Context, hunt.HuntID) (hunt.Hunt, error) {
	return hunt.Hunt{}, hunt.ErrUnknownHunt
}

type openapiBoard struct{ Board }

func (openapiBoard) Status() []engine.Status { return nil }

// TestOpenAPIProblemCodes: the ProblemCode enum is exactly the codes the
// server answers with (the error table, the internal error, the refused
// outcomes, and any other problemType literal in the source, such as the
// rate limit's), and the table in its description gives each code its status.
func TestOpenAPIProblemCodes(t *testing.T) {
	doc := loadOpenAPI(t)
	want := sourceProblems(t)
	want[problemInternal.code] = problemInternal.status
	for _, row := range problemTable {
		want[row.p.code] = row.p.status
	}
	for o := hunt.Outcome(1); o.Valid(); o++ {
		if p, ok := outcomeProblem(o); ok {
			want[p.code] = p.status
		}
	}
	code := doc.at(t, "components", "schemas", "ProblemCode")
	enum := code.at(t, "enum").scalars()
	for c, status := range want {
		if !slices.Contains(enum, c) {
			t.Errorf("problem code %s (status %d) is not in ProblemCode's enum", c, status)
		}
		row := fmt.Sprintf("| %d | `%s` |", status, c)
		if status == 0 { // a status the source does not spell as an http.Status constant
			row = fmt.Sprintf(" | `%s` |", c)
		}
		if !strings.Contains(code.text(), row) {
			t.Errorf("ProblemCode's description has no row %q", row)
		}
	}
	for _, c := range enum {
		if _, ok := want[c]; !ok {
			t.Errorf("ProblemCode's enum has %s, which no error of the code answers", c)
		}
	}
	pattern, _ := doc.at(t, "components", "schemas", "Problem", "properties", "type").value("pattern")
	re, err := regexp.Compile(pattern)
	if err != nil {
		t.Fatalf("Problem.type pattern %q: %v", pattern, err)
	}
	for c := range want {
		if typ := problemBase + c; !re.MatchString(typ) {
			t.Errorf("problem type %s does not match the documented pattern %s", typ, pattern)
		}
	}
}

// TestOpenAPIOutcomes: the Outcome enum is exactly hunt's outcomes.
func TestOpenAPIOutcomes(t *testing.T) {
	doc := loadOpenAPI(t)
	var want []string
	for o := hunt.Outcome(1); o.Valid(); o++ {
		want = append(want, o.String())
	}
	got := doc.at(t, "components", "schemas", "Outcome", "enum").scalars()
	sort.Strings(want)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("Outcome enum = %v; want %v", got, want)
	}
}

// TestOpenAPIPathParameters: every {name} of a documented path is declared
// as an `in: path` parameter of the path or of each of its operations, and
// nothing else is declared `in: path`.
func TestOpenAPIPathParameters(t *testing.T) {
	doc := loadOpenAPI(t)
	placeholder := regexp.MustCompile(`\{([^}]+)\}`)
	paths := doc.at(t, "paths")
	for _, path := range paths.keys() {
		item := paths.at(t, path)
		shared := doc.pathParams(t, item)
		for _, m := range item.keys() {
			if !slices.Contains(openapiMethods, m) {
				continue
			}
			declared := unionSet(shared, doc.pathParams(t, item.at(t, m)))
			var inPath []string
			for _, g := range placeholder.FindAllStringSubmatch(path, -1) {
				inPath = append(inPath, g[1])
				if !declared[g[1]] {
					t.Errorf("%s %s: path parameter %q is not declared", m, path, g[1])
				}
			}
			for name := range declared {
				if !slices.Contains(inPath, name) {
					t.Errorf("%s %s: declares path parameter %q, which the path does not have", m, path, name)
				}
			}
		}
	}
}

// TestOpenAPILimits: the documented limits, defaults and field lists are the code's.
func TestOpenAPILimits(t *testing.T) {
	doc := loadOpenAPI(t)
	const (
		nearby = "/v1/hunts/{hunt}/hotspots"
		board  = "/v1/hunts/{hunt}/leaderboard"
		ledger = "/v1/wallet/ledger"
	)
	param := func(path, name string) []string {
		return []string{"paths", path, "get", "parameters", "name=" + name, "schema"}
	}
	schema := func(name, prop string) []string {
		return []string{"components", "schemas", name, "properties", prop}
	}
	for _, c := range []struct {
		at   []string
		key  string
		want any
	}{
		{param(nearby, "radius_m"), "default", NearbyRadiusMDefault},
		{param(nearby, "radius_m"), "minimum", 1},
		{param(nearby, "radius_m"), "maximum", engine.NearbyRadiusMMax},
		{param(nearby, "limit"), "default", NearbyLimitDefault},
		{param(nearby, "limit"), "minimum", 1},
		{param(nearby, "limit"), "maximum", engine.NearbyLimitMax},
		{param(board, "limit"), "default", LeaderboardLimitDefault},
		{param(board, "limit"), "minimum", 1},
		{param(board, "limit"), "maximum", LeaderboardLimitMax},
		{param(board, "offset"), "default", 0},
		{param(board, "offset"), "maximum", LeaderboardOffsetMax},
		{param(board, "region"), "maxLength", RegionLenMaxDefault},
		{param(ledger, "limit"), "default", LedgerLimitDefault},
		{param(ledger, "limit"), "minimum", 1},
		{param(ledger, "limit"), "maximum", engine.LedgerLimitMax},
		{[]string{"components", "parameters", "IdempotencyKey", "schema"}, "maxLength", hunt.KeyLenMax},
		{[]string{"components", "parameters", "IdempotencyKey", "schema"}, "minLength", 1},
		{[]string{"components", "schemas", "ID"}, "maxLength", hunt.IDLenMax},
		{[]string{"components", "headers", "RetryAfter"}, "example", hdrRetryAfter[0]},
		{schema("HuntInput", "name"), "maxLength", hunt.NameLenMax},
		{schema("HuntInput", "claim_radius_m"), "default", hunt.ClaimRadiusMDefault},
		{schema("HuntInput", "claim_radius_m"), "maximum", hunt.ClaimRadiusMMax},
		{schema("HuntInput", "max_speed_mps"), "maximum", hunt.MaxSpeedMpsMax},
		{schema("HuntInput", "max_speed_mps"), "default", hunt.MaxSpeedMpsDefault},
		{schema("HotspotInput", "tickets"), "maximum", hunt.TicketsMax},
		{schema("HotspotInput", "reward"), "maximum", hunt.RewardMax},
		{schema("HotspotInput", "points"), "maximum", hunt.PointsMax},
		{schema("SpendRequest", "amount"), "maximum", hunt.AmountMax},
		{schema("SpendRequest", "reason"), "maxLength", hunt.ReasonLenMax},
	} {
		where := strings.Join(c.at, " > ")
		got, ok := doc.at(t, c.at...).value(c.key)
		if want := fmt.Sprint(c.want); !ok || got != want {
			t.Errorf("%s: %s = %q; want %q", where, c.key, got, want)
		}
	}

	// The documented request fields are the decoders' fields.
	for _, c := range []struct {
		schema   string
		fields   []string
		required uint64
	}{
		{"HuntInput", huntFields, 0},
		{"HotspotInput", hotspotFields, hotspotRequired},
	} {
		s := doc.at(t, "components", "schemas", c.schema)
		if got := s.at(t, "properties").keys(); !slices.Equal(got, c.fields) {
			t.Errorf("%s properties = %v; want %v (in the decoder's order)", c.schema, got, c.fields)
		}
		var req []string
		for i, f := range c.fields {
			if c.required&(1<<i) != 0 {
				req = append(req, f)
			}
		}
		got, _ := s.value("required")
		if want := "[" + strings.Join(req, ", ") + "]"; len(req) > 0 && got != want {
			t.Errorf("%s required = %s; want %s", c.schema, got, want)
		}
		if v, _ := s.value("additionalProperties"); v != "false" {
			t.Errorf("%s additionalProperties = %q; want false: the decoder refuses unknown fields", c.schema, v)
		}
	}

	// Limits that the prose states.
	text := doc.flat()
	for _, phrase := range []string{
		fmt.Sprintf("(%d bytes)", BodyLenMaxDefault),
		fmt.Sprintf("%d MiB", ImportBodyLenMaxDefault>>20),
		fmt.Sprintf("at most %d bytes", ImportItemLenMax),
		fmt.Sprintf("chunks of %d hotspots", engine.ImportBatchMax),
		fmt.Sprintf("%d s deadline (`RequestTimeout`)", int(RequestTimeoutDefault.Seconds())),
		fmt.Sprintf("%d minutes (`ImportTimeout`)", int(ImportTimeoutDefault.Minutes())),
		fmt.Sprintf("`AfterWaitMax` (%d s)", int(AfterWaitMaxDefault.Seconds())),
		fmt.Sprintf("every %d s (`HeartbeatEvery`)", int(HeartbeatEveryDefault.Seconds())),
		fmt.Sprintf("more than %d frames (`SubscriberLagMax`)", SubscriberLagMaxDefault),
		fmt.Sprintf("(%d by default, `SubscribersMax`)", SubscribersMaxDefault),
		fmt.Sprintf("At most %d streams per player (`--feed-streams-per-player`) and %d per client address", StreamsPerPlayerMaxDefault, StreamsPerAddressMaxDefault),
		fmt.Sprintf("kept for %d minutes after the hunt's last stream closes (`--feed-retain`)", int(FeedRetainDefault.Minutes())),
		fmt.Sprintf("stops reading for %d s", int(sseWriteTimeout.Seconds())),
		fmt.Sprintf("(at least %d bytes)", SecretLenMin),
		fmt.Sprintf("(%d–%d visible ASCII characters)", AdminTokenLenMin, TokenLenMax),
		fmt.Sprintf("At most %d bytes.", TokenLenMax),
		fmt.Sprintf("%g per second sustained, bursts of %d (`ClaimRate`, `ClaimBurst`", ClaimRateDefault, ClaimBurstDefault),
	} {
		if !strings.Contains(text, phrase) {
			t.Errorf("%s does not state %q", openapiPath, phrase)
		}
	}
}

// TestOpenAPIReader checks the YAML reader on the constructs the document
// uses, including the traps: a block scalar whose lines look like keys,
// quoted keys, list items at the parent's column, and comments.
func TestOpenAPIReader(t *testing.T) {
	src := `# a comment
paths:
  '/a/{x}':
    get:
      description: |
        get: this is text, not an operation
        post: neither is this
      parameters:
      - name: x
        in: path
      - $ref: '#/components/parameters/Y'
  /b:
    post:
      summary: "quoted: value"
components:
  parameters:
    Y:
      name: y
      in: query
  schemas:
    E:
      enum:
        - one
        - 'two'
`
	doc := parseYAML(src)
	if got := doc.at(t, "paths").keys(); !slices.Equal(got, []string{"/a/{x}", "/b"}) {
		t.Errorf("paths keys = %v; want [/a/{x} /b]", got)
	}
	ops := doc.operations(t)
	if len(ops) != 2 || !ops["GET /a/{x}"] || !ops["POST /b"] {
		t.Errorf("operations = %v; want GET /a/{x} and POST /b", sortedKeys(ops))
	}
	if got, _ := doc.at(t, "paths", "/b", "post").value("summary"); got != "quoted: value" {
		t.Errorf("summary = %q; want %q", got, "quoted: value")
	}
	if got := doc.pathParams(t, doc.at(t, "paths", "/a/{x}", "get")); len(got) != 1 || !got["x"] {
		t.Errorf("pathParams = %v; want only x (y is a query parameter)", got)
	}
	if got := doc.at(t, "components", "schemas", "E", "enum").scalars(); !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("enum = %v; want [one two]", got)
	}
	if got, _ := doc.at(t, "paths", "/a/{x}", "get", "parameters", "name=x").value("in"); got != "path" {
		t.Errorf("parameter x in = %q; want path", got)
	}
	if _, ok := doc.root().find("nope"); ok {
		t.Errorf("find(nope) = found; want not found")
	}
}

// ---- the server's routes, from this package's source ----

// sourceRoutes returns "METHOD /path" of every route this package's
// non-test source registers: the elements of every []route literal (and any
// route{...} literal), and every mux.Handle/HandleFunc call whose pattern is
// a string literal with a method. The catch-all "/" is not a route.
func sourceRoutes(t *testing.T) map[string]bool {
	t.Helper()
	routes := map[string]bool{}
	inspectSource(t, func(fset *token.FileSet, n ast.Node) {
		switch n := n.(type) {
		case *ast.CompositeLit:
			if astIsIdent(n.Type, "route") {
				addRouteLit(t, fset, routes, n)
			}
			if at, ok := n.Type.(*ast.ArrayType); ok && astIsIdent(at.Elt, "route") {
				for _, el := range n.Elts {
					if cl, ok := el.(*ast.CompositeLit); ok {
						addRouteLit(t, fset, routes, cl)
					}
				}
			}
		case *ast.CallExpr:
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "HandleFunc" && sel.Sel.Name != "Handle") || len(n.Args) == 0 {
				return
			}
			pattern, ok := astString(n.Args[0])
			if !ok || pattern == "/" {
				return // computed patterns come from the table; "/" is the 404 catch-all
			}
			method, path, ok := strings.Cut(pattern, " ")
			if !ok {
				t.Errorf("%s: pattern %q has no method: document every method it serves and teach this test", fset.Position(n.Pos()), pattern)
				return
			}
			routes[method+" "+strings.TrimSpace(path)] = true
		}
	})
	return routes
}

// sourceProblems returns the code and status of every problemType literal
// in this package's non-test source whose code is a string literal (the
// outcome rows use o.String(); the caller adds those). The status is 0 when
// it is not written as an http.Status constant or an integer.
func sourceProblems(t *testing.T) map[string]int {
	t.Helper()
	statuses := map[string]int{}
	for code := 100; code < 600; code++ {
		if text := http.StatusText(code); text != "" {
			statuses["Status"+strings.NewReplacer(" ", "", "-", "", "'", "").Replace(text)] = code
		}
	}
	out := map[string]int{}
	inspectSource(t, func(fset *token.FileSet, n ast.Node) {
		cl, ok := n.(*ast.CompositeLit)
		if !ok || !astIsIdent(cl.Type, "problemType") || len(cl.Elts) < 2 {
			return
		}
		var statusExpr, codeExpr ast.Expr
		for i, el := range cl.Elts {
			key := [...]string{"status", "code", "", ""}[min(i, 3)]
			if kv, ok := el.(*ast.KeyValueExpr); ok {
				key = kv.Key.(*ast.Ident).Name
				el = kv.Value
			}
			switch key {
			case "status":
				statusExpr = el
			case "code":
				codeExpr = el
			}
		}
		code, ok := astString(codeExpr)
		if !ok {
			return
		}
		status := 0
		switch e := statusExpr.(type) {
		case *ast.SelectorExpr:
			status = statuses[e.Sel.Name]
		case *ast.BasicLit:
			status, _ = strconv.Atoi(e.Value)
		}
		out[code] = status
	})
	if len(out) < 10 {
		t.Fatalf("sourceProblems found %d problemType literals; teach it the new error table", len(out))
	}
	return out
}

// inspectSource calls fn on every node of this package's non-test source.
func inspectSource(t *testing.T, fn func(*token.FileSet, ast.Node)) {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatalf("parsing %s: %v", name, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if n != nil {
				fn(fset, n)
			}
			return true
		})
	}
}

// addRouteLit adds a route{method, path, ...} literal, positional or keyed.
func addRouteLit(t *testing.T, fset *token.FileSet, routes map[string]bool, cl *ast.CompositeLit) {
	t.Helper()
	var method, path string
	for i, el := range cl.Elts {
		key := ""
		if kv, ok := el.(*ast.KeyValueExpr); ok {
			if id, ok := kv.Key.(*ast.Ident); ok {
				key = id.Name
			}
			el = kv.Value
		} else {
			key = [...]string{"method", "path", "", ""}[min(i, 3)]
		}
		s, ok := astString(el)
		switch {
		case key == "method" && ok:
			method = s
		case key == "path" && ok:
			path = s
		case key == "method" || key == "path":
			t.Errorf("%s: route %s is not a string literal; teach this test", fset.Position(el.Pos()), key)
		}
	}
	if method == "" || path == "" {
		t.Errorf("%s: route literal without a literal method and path", fset.Position(cl.Pos()))
		return
	}
	routes[method+" "+path] = true
}

func astIsIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

func astString(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func unionSet(a, b map[string]bool) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// ---- a reader for the YAML subset of the document ----

// yamlLine is one structural line. A list item's "- " counts as
// indentation, so "  - name: x" is the key name at column 4 opening an item.
type yamlLine struct {
	num    int // 1-based, for messages
	indent int
	item   bool
	text   string // without indentation and item marker
	raw    string // the whole line, block scalar lines included after it
}

type yamlDoc struct {
	lines []yamlLine
	src   string
}

// yamlNode is a block: the lines [from, to) whose top level is at indent.
type yamlNode struct {
	doc      *yamlDoc
	from, to int
	indent   int
	name     string // the path to it, for messages
}

func loadOpenAPI(t *testing.T) *yamlDoc {
	t.Helper()
	b, err := os.ReadFile(openapiPath)
	if err != nil {
		t.Fatalf("reading the OpenAPI document: %v", err)
	}
	if i := strings.IndexByte(string(b), '\t'); i >= 0 {
		t.Fatalf("%s has a tab at byte %d; YAML indents with spaces", openapiPath, i)
	}
	d := parseYAML(string(b))
	if v, _ := d.root().value("openapi"); !strings.HasPrefix(v, "3.1.") {
		t.Fatalf("%s: openapi = %q; want 3.1.x", openapiPath, v)
	}
	return d
}

// parseYAML splits src into structural lines. Block scalars (a value of |
// or >, with any chomping indicator) are folded into their key's line, so
// their text never looks like structure; comments and blank lines go.
func parseYAML(src string) *yamlDoc {
	d := &yamlDoc{src: src}
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimRight(lines[i], " \r")
		body := strings.TrimLeft(l, " ")
		if body == "" || body[0] == '#' {
			continue
		}
		yl := yamlLine{num: i + 1, indent: len(l) - len(body), raw: l}
		for strings.HasPrefix(body, "- ") || body == "-" {
			yl.item = true
			body = strings.TrimLeft(strings.TrimPrefix(body, "-"), " ")
			yl.indent = len(l) - len(body)
		}
		yl.text = body
		if _, v, ok := yamlSplitKey(body); ok && (strings.HasPrefix(v, "|") || strings.HasPrefix(v, ">")) {
			keyIndent := yl.indent
			for i+1 < len(lines) {
				next := strings.TrimRight(lines[i+1], " \r")
				nb := strings.TrimLeft(next, " ")
				if nb != "" && len(next)-len(nb) <= keyIndent {
					break
				}
				yl.raw += "\n" + next
				i++
			}
		}
		d.lines = append(d.lines, yl)
	}
	return d
}

// splitKey splits "key: value" (key possibly quoted) into key and value.
func yamlSplitKey(text string) (key, value string, ok bool) {
	if text == "" {
		return "", "", false
	}
	if q := text[0]; q == '\'' || q == '"' {
		end := strings.IndexByte(text[1:], q)
		if end < 0 || !strings.HasPrefix(text[end+2:], ":") {
			return "", "", false
		}
		return text[1 : end+1], strings.TrimSpace(text[end+3:]), true
	}
	if strings.HasSuffix(text, ":") && !strings.Contains(text, ": ") {
		return text[:len(text)-1], "", true
	}
	k, v, found := strings.Cut(text, ": ")
	return k, strings.TrimSpace(v), found
}

func yamlUnquote(v string) string {
	if len(v) >= 2 && (v[0] == '\'' || v[0] == '"') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

func (d *yamlDoc) root() yamlNode {
	return yamlNode{doc: d, from: 0, to: len(d.lines), indent: 0, name: "(root)"}
}

// flat is the document's text with every run of white space made one
// space, so prose can be searched across line breaks.
func (d *yamlDoc) flat() string { return strings.Join(strings.Fields(d.src), " ") }

// at walks keys from the root; a step "name=x" picks the list item whose name is x.
func (d *yamlDoc) at(t *testing.T, path ...string) yamlNode {
	t.Helper()
	return d.root().at(t, path...)
}

func (n yamlNode) at(t *testing.T, path ...string) yamlNode {
	t.Helper()
	for _, step := range path {
		next, ok := n.find(step)
		if !ok {
			t.Fatalf("%s: no %q in %s", openapiPath, step, n.name)
		}
		n = next
	}
	return n
}

// find returns the child block named step.
func (n yamlNode) find(step string) (yamlNode, bool) {
	if k, v, ok := strings.Cut(step, "="); ok {
		for _, it := range n.items() {
			if got, _ := it.value(k); got == v {
				it.name = n.name + " > " + step
				return it, true
			}
		}
		return yamlNode{}, false
	}
	for i := n.from; i < n.to; i++ {
		l := n.doc.lines[i]
		if l.indent != n.indent {
			continue
		}
		if k, _, ok := yamlSplitKey(l.text); ok && k == step {
			end := n.end(i)
			child := yamlNode{doc: n.doc, from: i + 1, to: end, name: n.name + " > " + step}
			if i+1 < end {
				child.indent = n.doc.lines[i+1].indent
			}
			return child, true
		}
	}
	return yamlNode{}, false
}

// end is the index after the block of line i (its children).
func (n yamlNode) end(i int) int {
	in := n.doc.lines[i].indent
	j := i + 1
	for j < n.to && n.doc.lines[j].indent > in {
		j++
	}
	return j
}

// keys lists the mapping keys of the block's top level, in order.
func (n yamlNode) keys() []string {
	var out []string
	for i := n.from; i < n.to; i++ {
		l := n.doc.lines[i]
		if l.indent != n.indent {
			continue
		}
		if k, _, ok := yamlSplitKey(l.text); ok {
			out = append(out, k)
		}
	}
	return out
}

// value is the scalar of "key: value" at the block's top level, unquoted.
func (n yamlNode) value(key string) (string, bool) {
	for i := n.from; i < n.to; i++ {
		l := n.doc.lines[i]
		if l.indent != n.indent {
			continue
		}
		if k, v, ok := yamlSplitKey(l.text); ok && k == key {
			return yamlUnquote(v), true
		}
	}
	return "", false
}

// items lists the block's list items; each is a block starting at its "- " line.
func (n yamlNode) items() []yamlNode {
	var out []yamlNode
	for i := n.from; i < n.to; i++ {
		l := n.doc.lines[i]
		if !l.item || l.indent != n.indent {
			continue
		}
		j := i + 1
		for j < n.to && (n.doc.lines[j].indent > l.indent || (n.doc.lines[j].indent == l.indent && !n.doc.lines[j].item)) {
			j++
		}
		out = append(out, yamlNode{doc: n.doc, from: i, to: j, indent: l.indent, name: fmt.Sprintf("%s[line %d]", n.name, l.num)})
	}
	return out
}

// scalars lists the block's scalar list items, unquoted.
func (n yamlNode) scalars() []string {
	var out []string
	for _, it := range n.items() {
		out = append(out, yamlUnquote(n.doc.lines[it.from].text))
	}
	return out
}

// text is the block's source, block scalars included.
func (n yamlNode) text() string {
	var b strings.Builder
	for i := n.from; i < n.to; i++ {
		b.WriteString(n.doc.lines[i].raw)
		b.WriteByte('\n')
	}
	return b.String()
}

// operations lists "METHOD /path" of every operation under paths.
func (d *yamlDoc) operations(t *testing.T) map[string]bool {
	t.Helper()
	paths := d.at(t, "paths")
	out := map[string]bool{}
	for _, p := range paths.keys() {
		for _, m := range paths.at(t, p).keys() {
			if slices.Contains(openapiMethods, m) {
				out[strings.ToUpper(m)+" "+p] = true
			}
		}
	}
	return out
}

// pathParams lists the names of the `in: path` parameters a path item or an
// operation declares, following $refs to components/parameters.
func (d *yamlDoc) pathParams(t *testing.T, n yamlNode) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	params, ok := n.find("parameters")
	if !ok {
		return out
	}
	for _, p := range params.items() {
		if ref, ok := p.value("$ref"); ok {
			name, found := strings.CutPrefix(ref, "#/components/parameters/")
			if !found {
				t.Fatalf("%s: parameter $ref %q is not to #/components/parameters/", n.name, ref)
			}
			p = d.at(t, "components", "parameters", name)
		}
		if in, _ := p.value("in"); in == "path" {
			name, _ := p.value("name")
			out[name] = true
		}
	}
	return out
}
