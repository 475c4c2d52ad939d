package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// mainArgsEnv makes the test binary run main with the given
// space-separated arguments instead of the tests, so that the tests can
// check main's exit status in a child process.
const mainArgsEnv = "PROXY_TEST_MAIN_ARGS"

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(mainArgsEnv); ok {
		os.Args = append([]string{"proxy"}, strings.Fields(args)...)
		childMain()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// runMain runs main in a child process with args and returns its exit
// status and stderr.
func runMain(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), mainArgsEnv+"="+strings.Join(args, " "))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode(), stderr.String()
	default:
		t.Fatalf("running main %q: %v; stderr:\n%s", args, err, stderr.String())
		return 0, ""
	}
}

func TestMainExitStatus(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
		says string // stderr contains
	}{
		{"help", []string{"-h"}, 0, ""},
		{"bad flag value", []string{"-spares", "x"}, 2, `invalid value "x" for flag -spares`},
		{"bad combination", []string{"-reuse", "verified"}, 2, "-fence-send"},
		{"negative client keepalive", []string{"-client-keepalive", "-1s"}, 2, "-client-keepalive"},
		{"bad key-exchange group", []string{"-upstream", "127.0.0.1:1", "-upstream-tls", "-upstream-tls-curves", "X25519,X448"}, 2, `unknown group "X448"`},
		{"unreachable metrics address", []string{"-listen", "127.0.0.1:0", "-metrics", "192.0.2.1:1"}, 1, "-metrics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, stderr := runMain(t, tt.args...)
			if got != tt.want {
				t.Errorf("main %q: exit status %d; want %d; stderr:\n%s", tt.args, got, tt.want, stderr)
			}
			if !strings.Contains(stderr, tt.says) {
				t.Errorf("main %q: stderr %q; want it to contain %q", tt.args, stderr, tt.says)
			}
		})
	}
}
