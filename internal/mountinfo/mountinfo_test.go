package mountinfo

import "testing"

func TestRootIsMounted(t *testing.T) {
	if ok, err := Mounted("/"); err != nil || !ok {
		t.Fatalf("Mounted(/) = %v, %v; want true", ok, err)
	}
	if ok, err := Mounted(t.TempDir()); err != nil || ok {
		t.Fatalf("a fresh directory: Mounted = %v, %v; want false", ok, err)
	}
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/mnt/a\040b\134c`); got != `/mnt/a b\c` {
		t.Fatalf("unescape = %q", got)
	}
}

func TestOfType(t *testing.T) {
	procs, err := OfType("proc")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range procs {
		found = found || p == "/proc"
	}
	if !found {
		t.Errorf("OfType(proc) = %q, want /proc among them", procs)
	}
	if none, err := OfType("no-such-type"); err != nil || len(none) != 0 {
		t.Errorf("OfType(no-such-type) = %q, %v", none, err)
	}
}
