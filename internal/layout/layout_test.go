// Package layout holds a test of the repository's architecture: which
// library package may import which.
package layout

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/relaykit/relay/"

// allowed lists, for each library package, the relay packages its
// non-test files may import. Arrows point one way: listener -> balance
// -> pool, listener -> splice; splice and pool know nothing of each
// other or of what is above them.
var allowed = map[string][]string{
	"splice":                {},
	"pool":                  {},
	"balance":               {"pool"},
	"listener":              {"balance", "pool", "splice", "internal/deadline"},
	"listener/listenertest": {"listener", "balance", "pool", "splice", "internal/deadline"},
	"internal/deadline":     {},
}

// TestImports checks that the library packages import only what the
// layout allows from relay, and from outside it only the standard
// library and golang.org/x/sys.
func TestImports(t *testing.T) {
	root := filepath.Join("..", "..")
	for pkg, ok := range allowed {
		files, err := filepath.Glob(filepath.Join(root, pkg, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files (%v)", pkg, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			ast, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range ast.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				switch {
				case strings.HasPrefix(path, module):
					if dep := strings.TrimPrefix(path, module); !slices.Contains(ok, dep) {
						t.Errorf("%s imports %s: not allowed (allowed: %v)", f, path, ok)
					}
				case strings.HasPrefix(path, "golang.org/x/sys/"):
				case !strings.Contains(strings.SplitN(path, "/", 2)[0], "."):
					// the standard library
				default:
					t.Errorf("%s imports %s: library packages use the standard library and golang.org/x/sys only", f, path)
				}
			}
		}
	}
}
