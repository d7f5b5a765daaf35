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
