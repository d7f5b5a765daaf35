package testworld_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/internal/testworld"
)

func TestMain(m *testing.M) {
	testworld.Main(m, func(args []string) int {
		fmt.Print(strings.Join(args, " "))
		return 3
	})
}

// TestCommandReexecutesAsTheChild: Command runs Main's child, not the
// tests, with the arguments given, and its exit status comes back.
func TestCommandReexecutesAsTheChild(t *testing.T) {
	out, err := testworld.Command(context.Background(), "mount", "gs://b/p", os.TempDir()).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("err = %v, want exit status 3", err)
	}
	if want := "mount gs://b/p " + os.TempDir(); string(out) != want {
		t.Fatalf("child printed %q, want %q", out, want)
	}
}
