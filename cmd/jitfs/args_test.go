package main

import (
	"errors"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"300GiB": 300 << 30, "512MiB": 512 << 20, "10G": 10 << 30, "4096": 4096, "1.5KiB": 1536, "2TB": 2e12} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-1GiB", "0"} {
		if _, err := parseSize(bad); !errors.Is(err, errUsage) {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func TestParseGSURL(t *testing.T) {
	cases := []struct{ in, bucket, prefix string }{
		{"gs://b", "b", ""}, {"gs://b/", "b", ""}, {"gs://b/show", "b", "show/"}, {"gs://b/show/sh010/", "b", "show/sh010/"},
	}
	for _, c := range cases {
		b, p, err := parseGSURL(c.in)
		if err != nil || b != c.bucket || p != c.prefix {
			t.Errorf("parseGSURL(%q) = %q %q %v", c.in, b, p, err)
		}
	}
	for _, bad := range []string{"s3://b", "gs://", "gs:///x", "gs://b/../etc", "gs://b/a//c", "/tmp"} {
		if _, _, err := parseGSURL(bad); !errors.Is(err, errUsage) {
			t.Errorf("parseGSURL(%q) accepted", bad)
		}
	}
}

func TestFlagsAfterPositionals(t *testing.T) {
	fl := newFlags("x")
	size := fl.String("cache-size", "", "")
	pos, err := parseArgs(fl, []string{"gs://b", "--cache-size", "1GiB", "/mnt"})
	if err != nil || len(pos) != 2 || pos[1] != "/mnt" || *size != "1GiB" {
		t.Fatalf("%v %v %q", pos, err, *size)
	}
}
